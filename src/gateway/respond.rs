//! The gateway's own answers: JSON bodies, and the error codes with their
//! HTTP statuses.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::error::Error;

/// The `code` of every error the gateway answers, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: a malformed API request.
    BadRequest,
    /// 401: the browser API needs a signed-in session.
    Unauthenticated,
    /// 401: the admin API needs `Authorization: Bearer $ADMIN_TOKEN`.
    Unauthorized,
    /// 403: a state-changing API call that is not same-origin (CSRF defence).
    CrossOrigin,
    /// 404: no such API route, or no such session.
    NotFound,
    /// 404: the admin API is disabled (no `ADMIN_TOKEN`).
    AdminDisabled,
    /// 405: the route exists with other methods.
    MethodNotAllowed,
    /// 413: the request body is over the limit.
    BodyTooLarge,
    /// 431: the request headers are over the limit.
    HeadersTooLarge,
    /// 502: the origin's response body is over the limit.
    OriginResponseTooLarge,
    /// 502: the origin could not be reached, or failed before its response
    /// headers.
    OriginUnavailable,
    /// 504: the origin did not accept the connection or send its response
    /// headers in time (`SESSION_ORIGIN_CONNECT_TIMEOUT_MS`,
    /// `SESSION_ORIGIN_TIMEOUT_MS`).
    OriginTimeout,
    /// 502: the origin sent a malformed or refused `x-session-*` instruction;
    /// nothing was applied.
    BadSessionInstruction,
    /// 503: the session store is unavailable (with `Retry-After`).
    StoreUnavailable,
    /// 500: anything else.
    Internal,
}

impl ErrorCode {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated | ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::CrossOrigin => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::AdminDisabled => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::OriginUnavailable
            | ErrorCode::BadSessionInstruction
            | ErrorCode::OriginResponseTooLarge => StatusCode::BAD_GATEWAY,
            ErrorCode::OriginTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `code` string in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::CrossOrigin => "cross_origin",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AdminDisabled => "admin_disabled",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::OriginResponseTooLarge => "origin_response_too_large",
            ErrorCode::OriginUnavailable => "origin_unavailable",
            ErrorCode::OriginTimeout => "origin_timeout",
            ErrorCode::BadSessionInstruction => "bad_session_instruction",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The answer to a session store error: `503 store_unavailable` with
/// `Retry-After` when the store could not be reached, else `500 internal`.
/// Shared by the gateway and the adapters' own wrappers.
pub fn store_error_response(error: &Error, retry_after_secs: u32) -> Response<Bytes> {
    if error.is_unavailable() {
        log::warn!("edge-session: session store unavailable: {error}");
        let mut response = error_response(
            ErrorCode::StoreUnavailable,
            "the session store is unavailable",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        response
    } else {
        log::error!("edge-session: unexpected session store error: {error}");
        error_response(ErrorCode::Internal, "internal error")
    }
}

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON error response `{"error": message, "code": code}`.
pub fn error_response(code: ErrorCode, message: &str) -> Response<Bytes> {
    json_response(
        code.status(),
        &serde_json::json!({ "error": message, "code": code.as_str() }),
    )
}
