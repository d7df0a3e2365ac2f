//! The gateway in one call for packagings whose bodies are [`http_body`]
//! bodies (the native host, the Lambda, tests): [`Gateway::handle`] runs
//! [`Gateway::prepare`], the origin through an [`Upstream`], and
//! [`Gateway::finish`], and gives the origin's body back untouched.

use std::future::Future;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};

use super::Gateway;
use super::proxy::{Finished, Prepared};
use crate::backend::Backend;
use crate::error::Result;
use crate::platform::{MaybeSend, MaybeSync};

/// The origin behind the gateway, for request bodies of type `B`.
pub trait Upstream<B>: MaybeSend + MaybeSync {
    /// The origin's response body, passed to the client untouched.
    type Body;

    /// Sends `request` (its URI is the full origin URL, its body the
    /// client's) and returns the origin's response as soon as its head is in,
    /// without following redirects. A failure to connect or to get the head
    /// in time is [`crate::Error::Origin`] or [`crate::Error::OriginTimeout`].
    fn forward(
        &self,
        request: Request<B>,
    ) -> impl Future<Output = Result<Response<Self::Body>>> + MaybeSend;
}

/// The body of a response of [`Gateway::handle`]: the origin's own body, or
/// the gateway's small JSON answer.
pub type GatewayBody<T> = Either<T, Full<Bytes>>;

/// The gateway's own answer as a [`GatewayBody`].
fn own<T>(response: Response<Bytes>) -> Response<GatewayBody<T>> {
    response.map(|body| Either::Right(Full::new(body)))
}

impl<Bk: Backend> Gateway<Bk> {
    /// Handles one request: the session is loaded before the origin is
    /// called, the origin's instructions are committed before its response
    /// head goes out, and both bodies stream through untouched. Never fails:
    /// errors become JSON error responses.
    pub async fn handle<B, U: Upstream<B>>(
        &self,
        upstream: &U,
        request: Request<B>,
    ) -> Response<GatewayBody<U::Body>> {
        let (parts, body) = request.into_parts();
        let (request, pending) = match self.prepare(parts).await {
            Prepared::Respond(response) => return own(response),
            Prepared::Forward { request, pending } => (request, pending),
        };
        let response = match upstream.forward(Request::from_parts(request, body)).await {
            Ok(response) => response,
            Err(e) => return own(self.origin_error(&e)),
        };
        let (head, body) = response.into_parts();
        match self.finish(pending, head).await {
            Finished::Pass(head) => Response::from_parts(head, Either::Left(body)),
            Finished::Replace(response) => own(response),
        }
    }
}
