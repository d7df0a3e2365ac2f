//! One request through the gateway: the request head to
//! [`Gateway::prepare`], the origin reached with the client's own body
//! stream, the origin's response head to [`Gateway::finish`], and the
//! origin's response answered re-headed, its body stream (or WebSocket)
//! untouched. No byte of a proxied body enters wasm memory.

use bytes::Bytes;
use edge_session::backend::Backend;
use edge_session::gateway::{ErrorCode, Finished, Gateway, Prepared, error_response};
use http::StatusCode;
use worker::{Request, Response, ResponseBody, ResponseBuilder};

use crate::headers::{js_headers, own_response, reheaded, request_head, response_head};
use crate::origin::{self, Target};

/// The answer of `gateway` to `request`, the origin reached through
/// `target`. Never fails: errors are the gateway's JSON answers.
pub(crate) async fn proxy<B: Backend>(
    gateway: &Gateway<B>,
    target: &Target,
    request: Request,
) -> Response {
    match forward(gateway, target, request).await {
        Ok(response) => response,
        Err(response) => own(response),
    }
}

async fn forward<B: Backend>(
    gateway: &Gateway<B>,
    target: &Target,
    request: Request,
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
    let response = origin::send(target, &head, inner.body(), gateway.config().origin_timeout)
        .await
        .map_err(|e| gateway.origin_error(&e))?;
    let switched = response.status_code() == StatusCode::SWITCHING_PROTOCOLS.as_u16();
    let websocket = switched && pending.is_upgrade();
    if switched && !websocket {
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
    let head = match gateway.finish(pending, origin_head).await {
        Finished::Pass(head) => head,
        Finished::Replace(answer) => {
            discard(&response);
            return Err(answer);
        }
    };
    let answer = if websocket {
        // The headers are in `head` already: `websocket()` consumes the response.
        match response.websocket() {
            Some(socket) => js_headers(&head.headers).map(|headers| {
                ResponseBuilder::new()
                    .with_status(head.status.as_u16())
                    .with_headers(headers)
                    .with_websocket(socket)
                    .empty()
            }),
            None => {
                return Err(gateway.origin_error(&edge_session::Error::Origin {
                    reason: "it answered 101 without a WebSocket".to_owned(),
                    source: None,
                }));
            }
        }
    } else {
        reheaded(response, &head)
    };
    answer.map_err(|e| {
        log::error!("edge-session: the response could not be made: {e}");
        error_response(ErrorCode::Internal, "internal error")
    })
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
