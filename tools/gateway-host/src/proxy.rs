//! [`HostGateway`]: one request through the gateway and the origin, bodies
//! streamed, WebSocket upgrades bridged.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use std::sync::Arc;

use edge_session::gateway::{
    ClientAddr, ErrorCode, Finished, Gateway, GatewayBody, Prepared, error_response,
};
use edge_session::{AnyBackend, Backend, Error, Result};
use http::{Extensions, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt as _, Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::origin::{OriginBody, OriginClient, UPLOAD_FAILED};

/// The body of the host's responses: the origin's stream, or the gateway's
/// own small answer.
pub type HostBody = GatewayBody<OriginBody>;

/// The gateway with its origin: what [`crate::serve`] serves.
#[derive(Debug)]
pub struct HostGateway<B = AnyBackend> {
    gateway: Arc<Gateway<B>>,
    origin: OriginClient,
}

impl<B: Backend + 'static> HostGateway<B> {
    /// `gateway` with an [`OriginClient`] built from its configuration; its
    /// origin must be an `ORIGIN_URL` (`http://` or `https://`).
    pub fn new(gateway: Gateway<B>) -> Result<Self> {
        gateway.config().origin.url()?;
        let origin = OriginClient::new(gateway.config())?;
        Ok(Self {
            gateway: Arc::new(gateway),
            origin,
        })
    }

    /// The gateway.
    pub fn gateway(&self) -> &Gateway<B> {
        &self.gateway
    }

    /// Handles one request from a client at `client` (the TCP peer; it
    /// becomes the request's [`ClientAddr`]): [`Gateway::prepare`], the
    /// origin, [`Gateway::finish_deferred`]. Never fails: errors are JSON
    /// answers. A slide the session's read found due runs in a spawned task
    /// the response does not wait for ([`Gateway::after_response`]).
    ///
    /// The request body goes to the origin and the origin's body to the
    /// client as streams, nothing buffered. A WebSocket handshake the origin
    /// accepts (`101`) is answered `101`, then a spawned task copies bytes
    /// both ways between the client's and the origin's upgraded connections
    /// until either side closes.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: Option<IpAddr>,
    ) -> Response<HostBody> {
        let (mut parts, body) = request.into_parts();
        if let Some(ip) = client {
            parts.extensions.insert(ClientAddr(ip));
        }
        let (head, pending) = match self.gateway.prepare(parts).await {
            Prepared::Respond(response) => {
                linger(body);
                return own(response);
            }
            Prepared::Forward { request, pending } => (request, pending),
        };
        let mut request = Request::from_parts(head, body);
        // Taken before forwarding: hyper hands the client's connection over
        // once the 101 has been written.
        let client_upgrade = pending
            .is_upgrade()
            .then(|| hyper::upgrade::on(&mut request));
        *request.extensions_mut() = Extensions::new();
        // Only a body that streams can go over the limit (one with a
        // `Content-Length` over it never gets here).
        let (rest, mut left) =
            if self.gateway.config().max_body_bytes.is_some() && !request.body().is_end_stream() {
                let (rest, left) = oneshot::channel();
                (Some(rest), Some(left))
            } else {
                (None, None)
            };
        let mut response = match self.origin.send(request, rest).await {
            Ok(response) => response,
            Err(e) => {
                // An upload over the limit: read on, for the client to read its 413.
                if let Some(rest) = left.as_mut().and_then(|left| left.try_recv().ok()) {
                    linger(rest);
                }
                return own(self.forward_error(&e));
            }
        };
        let origin_upgrade = (response.status() == StatusCode::SWITCHING_PROTOCOLS)
            .then(|| hyper::upgrade::on(&mut response));
        let upgrades = match (client_upgrade, origin_upgrade) {
            (Some(client), Some(origin)) => Some((client, origin)),
            (None, Some(_)) => {
                return own(self.gateway.origin_error(&Error::Origin {
                    reason: "it switched protocols on a request that asked for no upgrade"
                        .to_owned(),
                    source: None,
                }));
            }
            _ => None,
        };
        let (head, body) = response.into_parts();
        let (finished, touch) = self.gateway.finish_deferred(pending, head).await;
        if touch.is_some() {
            let gateway = Arc::clone(&self.gateway);
            tokio::spawn(async move { gateway.after_response(touch).await });
        }
        match finished {
            Finished::Pass(head) => {
                if let Some((client, origin)) = upgrades {
                    tokio::spawn(bridge(client, origin));
                }
                Response::from_parts(head, Either::Left(body))
            }
            // The origin's upgraded connection, if any, is dropped: closed.
            Finished::Replace(response) => own(response),
        }
    }

    /// The answer when the origin gave no response head: `413
    /// body_too_large` for an upload over `SESSION_MAX_BODY_BYTES`, `400
    /// bad_request` when the client's upload broke off, else the gateway's
    /// origin errors (`504 origin_timeout`, `502 origin_unavailable`).
    fn forward_error(&self, error: &Error) -> Response<Bytes> {
        match error {
            Error::TooLarge { limit, .. } => error_response(
                ErrorCode::BodyTooLarge,
                &format!("the request body is over the limit of {limit} bytes"),
            ),
            Error::Origin { reason, .. } if reason == UPLOAD_FAILED => {
                log::debug!("edge-session-host: {error}");
                error_response(ErrorCode::BadRequest, "the request body could not be read")
            }
            _ => self.gateway.origin_error(error),
        }
    }
}

/// The gateway's own answer as a [`HostBody`].
fn own(response: Response<Bytes>) -> Response<HostBody> {
    response.map(|body| Either::Right(Full::new(body)))
}

/// How long the unread body of a request the gateway answered itself is
/// read and thrown away, at most (see `linger`).
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// How much of it is read and thrown away, at most.
pub const LINGER_BYTES: u64 = 64 * 1024 * 1024;

/// Reads the body of a request answered without the origin (a refusal,
/// `413 body_too_large` by its `Content-Length` or for a chunked upload cut
/// off at the limit, an API route) and throws it away, for [`LINGER_TIME`] and [`LINGER_BYTES`] at most:
/// a client still sending it then gets to read the answer (and keeps its
/// connection), instead of a connection closed under its upload. Past
/// either bound the connection is closed.
fn linger(body: Incoming) {
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0u64;
        let drained = tokio::time::timeout(LINGER_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > LINGER_BYTES {
                    break;
                }
            }
        });
        let _ = drained.await;
    });
}

/// Copies bytes both ways between the client's and the origin's upgraded
/// connections until one side closes (then the other is closed too).
async fn bridge(client: OnUpgrade, origin: OnUpgrade) {
    let (client, origin) = match tokio::try_join!(client, origin) {
        Ok(both) => both,
        Err(e) => {
            log::debug!("edge-session-host: upgrade not completed: {e}");
            return;
        }
    };
    let (mut client, mut origin) = (TokioIo::new(client), TokioIo::new(origin));
    match tokio::io::copy_bidirectional(&mut client, &mut origin).await {
        Ok((up, down)) => {
            log::debug!(
                "edge-session-host: upgraded connection closed ({up} bytes up, {down} down)"
            );
        }
        Err(e) => log::debug!("edge-session-host: upgraded connection ended: {e}"),
    }
}
