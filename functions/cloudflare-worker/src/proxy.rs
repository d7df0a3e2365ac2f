//! One request through the gateway: the request head to
//! [`Gateway::prepare`], the origin reached with the client's own body
//! stream, the origin's response head to [`Gateway::finish`], and the
//! origin's response answered re-headed, its body stream (or WebSocket)
//! untouched. No byte of a proxied body enters wasm memory.

use bytes::Bytes;
use edge_session::Touch;
use edge_session::backend::Backend;
use edge_session::gateway::{ErrorCode, Finished, Gateway, Prepared, error_response};
use http::{StatusCode, response};
use worker::{Request, Response, ResponseBody, ResponseBuilder};

use crate::body::capped_response;
use crate::headers::{js_headers, own_response, reheaded, request_head, response_head};
use crate::origin::{self, Failure, Target};

/// The answer of `gateway` to `request`, the origin reached through
/// `target`, and the slide the read found due (for `ctx.wait_until`). Never
/// fails: errors are the gateway's JSON answers.
pub(crate) async fn proxy<B: Backend>(
    gateway: &Gateway<B>,
    target: &Target,
    request: Request,
) -> (Response, Option<Touch>) {
    let mut touch = None;
    let response = match forward(gateway, target, request, &mut touch).await {
        Ok(response) => response,
        Err(response) => own(response),
    };
    (response, touch)
}

async fn forward<B: Backend>(
    gateway: &Gateway<B>,
    target: &Target,
    request: Request,
    touch: &mut Option<Touch>,
) -> Result<Response, http::Response<Bytes>> {
    let inner = request.inner();
    let head = request_head(inner).map_err(|e| {
        log::debug!("edge-session: request head refused: {e}");
        error_response(ErrorCode::BadRequest, "the request is not valid HTTP")
    })?;
    let (head, pending) = match gateway.prepare(head).await {
        Prepared::Respond(response) => return Err(response),
        Prepared::Forward { request, pending } => (request, pending),
    };
    let limit = gateway.config().max_body_bytes;
    let timeout = gateway.config().origin_timeout;
    let response = origin::send(target, &head, inner.body(), timeout, limit)
        .await
        .map_err(|failure| match failure {
            Failure::Origin(e) => gateway.origin_error(&e),
            Failure::UploadTooLarge { limit } => error_response(
                ErrorCode::BodyTooLarge,
                &format!("the request body is over the limit of {limit} bytes"),
            ),
            Failure::UploadBroken => {
                log::debug!("edge-session: the client's upload broke off");
                error_response(ErrorCode::BadRequest, "the request body could not be read")
            }
        })?;
    let status = response.status_code();
    if status != StatusCode::SWITCHING_PROTOCOLS.as_u16() && !(200..=599).contains(&status) {
        // A Worker cannot answer with it (and workerd may hand back an interim status).
        discard(&response);
        return Err(gateway.origin_error(&edge_session::Error::Origin {
            reason: format!("it answered with status {status}"),
            source: None,
        }));
    }
    let switched = status == StatusCode::SWITCHING_PROTOCOLS.as_u16();
    let websocket = switched && pending.is_upgrade();
    if switched && !websocket {
        discard(&response);
        return Err(gateway.origin_error(&edge_session::Error::Origin {
            reason: "it switched protocols on a request that asked for no upgrade".to_owned(),
            source: None,
        }));
    }
    let origin_head = response_head(&response).map_err(|e| {
        gateway.origin_error(&edge_session::Error::Origin {
            reason: format!("bad response head: {e}"),
            source: None,
        })
    })?;
    let (finished, due) = gateway.finish_deferred(pending, origin_head).await;
    *touch = due;
    let head = match finished {
        Finished::Pass(head) => head,
        Finished::Replace(answer) => {
            discard(&response);
            return Err(answer);
        }
    };
    let answer = if websocket {
        // The headers are in `head` already: `websocket()` consumes the response.
        let Some(socket) = response.websocket() else {
            return Err(gateway.origin_error(&edge_session::Error::Origin {
                reason: "it answered 101 without a WebSocket".to_owned(),
                source: None,
            }));
        };
        js_headers(&head.headers).map(|headers| {
            ResponseBuilder::new()
                .with_status(head.status.as_u16())
                .with_headers(headers)
                .with_websocket(socket)
                .empty()
        })
    } else {
        pass(response, &head, limit)
    };
    answer.map_err(|e| {
        log::error!("edge-session: the response could not be made: {e}");
        error_response(ErrorCode::Internal, "internal error")
    })
}

/// The origin's `response` with the finished `head`, its body stream as it
/// is, or held to `limit` as it streams when its length is undeclared.
fn pass(
    response: Response,
    head: &response::Parts,
    limit: Option<u64>,
) -> worker::Result<Response> {
    let undeclared = !head.headers.contains_key(http::header::CONTENT_LENGTH)
        && !matches!(head.status.as_u16(), 204 | 205 | 304);
    if let (Some(limit), ResponseBody::Stream(body), true) = (limit, response.body(), undeclared)
        && let Some(capped) = capped_response(body, limit)
    {
        let headers = js_headers(&head.headers)?;
        return Ok(ResponseBuilder::new()
            .with_status(head.status.as_u16())
            .with_headers(headers)
            .stream(capped));
    }
    reheaded(response, head)
}

/// Cancels the body of an origin response that is not passed on.
fn discard(response: &Response) {
    if let ResponseBody::Stream(stream) = response.body() {
        drop(stream.cancel());
    }
}

/// One of the gateway's own answers as a Worker response.
pub(crate) fn own(response: http::Response<Bytes>) -> Response {
    own_response(response).unwrap_or_else(|e| {
        log::error!("edge-session: the response could not be made: {e}");
        ResponseBuilder::new()
            .with_status(500)
            .fixed(b"internal error".to_vec())
    })
}
