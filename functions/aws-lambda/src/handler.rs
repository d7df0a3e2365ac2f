//! One invocation through the gateway, in either response mode.
//!
//! Both modes convert the event the same way ([`crate::event`]: malformed
//! events are answered `400 bad_request`), hand the request to the core
//! gateway, which loads the session before the origin is called and commits
//! the origin's instructions before the response head goes out, and reach
//! the origin at `ORIGIN_URL` over reqwest. The request body is the event's,
//! whole (Lambda does not stream requests; the platform caps it at 6 MB).
//!
//! - **Buffered** ([`handle_event`], [`handle`]): the origin's body is
//!   collected before the origin's instructions are committed, and the
//!   answer is one JSON payload in the event's format. Lambda refuses a
//!   synchronous response payload over 6 MB, so a body that cannot fit once
//!   encoded (Content-Length or bytes read) is answered `502
//!   origin_response_too_large` without reading further and with nothing
//!   committed.
//! - **Streamed** ([`stream_event`], [`handle_streaming`]): the origin's body
//!   goes out as it arrives, behind the prelude (see [`crate::streaming`]).

use bytes::Bytes;
use edge_session::Error;
use edge_session::gateway::{
    ClientAddr, ErrorCode, Finished, GatewayBody, Prepared, ReqwestBody, Upstream as _,
    error_response,
};
use http::header::{self, HeaderValue};
use http::{Response, response};
use http_body_util::{BodyExt as _, Either, Full, LengthLimitError};
use lambda_http::lambda_runtime::StreamResponse;
use serde_json::Value;

use crate::LambdaGateway;
use crate::event::{self, BadEvent, EventKind};
use crate::streaming::{self, ResponseStream};

/// Lambda's limit on a synchronous (buffered) response payload, the JSON
/// document the function returns: 6 MB (6 MiB; Lambda's own error message
/// counts 6291556 bytes).
pub const BUFFERED_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// Room kept in the payload for what the gateway adds after the body is
/// read (cookies, cache headers) and for the JSON around the body.
const PAYLOAD_RESERVE: usize = 8 * 1024;

/// Converts a `lambda_http` request for the gateway: the stage removed
/// ([`event::to_gateway_request`]), the client's address (API Gateway's
/// source IP) as a [`ClientAddr`], `Content-Length` set to the decoded
/// body's length (so `SESSION_MAX_BODY_BYTES` refuses an upload before the
/// origin is called), and no connection upgrade: a Lambda invocation is one
/// request and one response, WebSockets cannot go through it.
fn gateway_request(request: lambda_http::Request) -> Result<http::Request<Full<Bytes>>, BadEvent> {
    let ip = crate::sessions::source_ip(&request);
    let mut request = event::to_gateway_request(request)?;
    if let Some(ip) = ip {
        request.extensions_mut().insert(ClientAddr(ip));
    }
    let headers = request.headers_mut();
    headers.remove(header::UPGRADE);
    headers.remove(header::CONNECTION);
    let length = request.body().len();
    if length > 0 {
        request
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(request.map(Full::new))
}

/// Handles one `lambda_http` request, buffered: the whole response. Never
/// fails: a request that cannot be converted is a `400 bad_request`.
pub async fn handle(gateway: &LambdaGateway, request: lambda_http::Request) -> Response<Bytes> {
    match gateway_request(request) {
        Ok(request) => buffered(gateway, request).await,
        Err(bad) => error_response(ErrorCode::BadRequest, bad.reason()),
    }
}

/// Handles one `lambda_http` request, streamed: the response as soon as the
/// origin's head is in, the origin's body untouched. Never fails: a request
/// that cannot be converted is a `400 bad_request`.
pub async fn handle_streaming(
    gateway: &LambdaGateway,
    request: lambda_http::Request,
) -> Response<GatewayBody<ReqwestBody>> {
    match gateway_request(request) {
        Ok(request) => gateway.gateway().handle(gateway.upstream(), request).await,
        Err(bad) => own(error_response(ErrorCode::BadRequest, bad.reason())),
    }
}

fn own(response: Response<Bytes>) -> Response<GatewayBody<ReqwestBody>> {
    response.map(|body| Either::Right(Full::new(body)))
}

/// Handles one invocation, buffered: the event's JSON in, the response's
/// JSON out, in the event's payload format. Never fails: a malformed event
/// is a `400 bad_request`.
pub async fn handle_event(gateway: &LambdaGateway, event: Value) -> Value {
    // What the event looks like, for the format of a refusal.
    let kind = EventKind::from_event(&event);
    match event::parse_event(event) {
        Ok((kind, request)) => event::encode_response(Some(kind), handle(gateway, request).await),
        Err(bad) => {
            log::warn!("edge-session: refused a malformed event: {bad}");
            event::encode_response(kind, error_response(ErrorCode::BadRequest, bad.reason()))
        }
    }
}

/// Handles one invocation, streamed: the prelude and the body stream for
/// `lambda_runtime`. Never fails: a malformed event is a `400 bad_request`.
pub async fn stream_event(gateway: &LambdaGateway, event: Value) -> StreamResponse<ResponseStream> {
    match event::parse_event(event) {
        Ok((_, request)) => streaming::stream_response(handle_streaming(gateway, request).await),
        Err(bad) => {
            log::warn!("edge-session: refused a malformed event: {bad}");
            streaming::own_response(error_response(ErrorCode::BadRequest, bad.reason()))
        }
    }
}

/// The gateway around the origin with the origin's body collected before
/// its instructions are committed (see the module docs).
async fn buffered(gateway: &LambdaGateway, request: http::Request<Full<Bytes>>) -> Response<Bytes> {
    let core = gateway.gateway();
    let (parts, body) = request.into_parts();
    let (head, pending) = match core.prepare(parts).await {
        Prepared::Respond(response) => return response,
        Prepared::Forward { request, pending } => (request, pending),
    };
    let response = match gateway
        .upstream()
        .forward(http::Request::from_parts(head, body))
        .await
    {
        Ok(response) => response,
        Err(e) => return core.origin_error(&e),
    };
    let (head, body) = response.into_parts();
    let body = match collect(gateway, &head, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    match core.finish(pending, head).await {
        Finished::Pass(head) => Response::from_parts(head, body),
        Finished::Replace(response) => response,
    }
}

/// The origin's body, whole, if its response can fit in a buffered payload
/// (and under `SESSION_MAX_BODY_BYTES`); else the refusal, decided from
/// `Content-Length` before reading when the origin sent one.
async fn collect(
    gateway: &LambdaGateway,
    head: &response::Parts,
    mut body: ReqwestBody,
) -> Result<Bytes, Response<Bytes>> {
    let core = gateway.gateway();
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let (Some(limit), Some(declared)) = (core.config().max_body_bytes, declared)
        && declared > limit
    {
        return Err(core.origin_error(&too_large(limit, declared)));
    }
    let head_len = head_len(head);
    let room = BUFFERED_PAYLOAD_LIMIT.saturating_sub(head_len + PAYLOAD_RESERVE);
    // Even text that needs no escaping takes its length in the payload.
    if declared.is_some_and(|d| d > room as u64) {
        return Err(payload_too_large(declared));
    }
    let mut buffer = Vec::with_capacity(declared.map_or(0, |d| d as usize));
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    if buffer.len() + data.len() > room {
                        return Err(payload_too_large(declared));
                    }
                    buffer.extend_from_slice(&data);
                }
            }
            Err(e) if is_length_limit(e.as_ref()) => {
                let limit = core.config().max_body_bytes.unwrap_or_default();
                return Err(core.origin_error(&too_large(limit, limit.saturating_add(1))));
            }
            Err(e) => {
                return Err(core.origin_error(&Error::Origin {
                    reason: "the origin's response body failed midway".to_owned(),
                    source: Some(e),
                }));
            }
        }
    }
    if event::encoded_body_len(&buffer) > room {
        return Err(payload_too_large(declared));
    }
    Ok(Bytes::from(buffer))
}

fn too_large(limit: u64, actual: u64) -> Error {
    Error::TooLarge {
        what: "origin response body",
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
        actual: usize::try_from(actual).unwrap_or(usize::MAX),
    }
}

fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// The bytes a response head takes in the payload, generously (JSON quoting
/// and escaping).
fn head_len(head: &response::Parts) -> usize {
    head.headers
        .iter()
        .map(|(name, value)| 2 * (name.as_str().len() + value.len()) + 8)
        .sum()
}

/// `502 origin_response_too_large` for a body that cannot fit in Lambda's
/// synchronous response payload.
fn payload_too_large(declared: Option<u64>) -> Response<Bytes> {
    let size = declared.map_or_else(String::new, |d| format!(" ({d} bytes)"));
    log::warn!(
        "edge-session: origin response{size} refused: over the {BUFFERED_PAYLOAD_LIMIT}-byte payload limit of a buffered Lambda response"
    );
    error_response(
        ErrorCode::OriginResponseTooLarge,
        &format!(
            "the origin's response is over the 6 MB ({BUFFERED_PAYLOAD_LIMIT} bytes, once encoded) payload limit of a buffered Lambda response; serve it through the streaming function (Function URL or REST API)"
        ),
    )
}
