//! [`OriginClient`]: the origin over pooled HTTP/1.1 keep-alive
//! connections, both bodies streamed: a plain `http://` origin through the
//! host's own pool (`pool.rs`) on hyper's connection API (a request takes the
//! connection used last, no task or hash lookup of its own), an `https://`
//! one through hyper-util's client.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use edge_session::gateway::{GatewayConfig, Upstream};
use edge_session::{Error, Result};
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::oneshot;

use crate::body::{BodyTooLarge, BoxError, Capped, Direction};
use crate::pool::{Pool, Pooled, SendError};

/// How long an idle keep-alive connection to the origin stays in the pool.
pub const ORIGIN_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The body of an origin response: the origin's own stream, cut off past
/// `SESSION_MAX_BODY_BYTES` when that is set. Its connection goes back to
/// the pool when it ends (`B` is the type of the request bodies).
#[derive(Debug)]
pub struct OriginBody<B = Incoming> {
    body: Capped<Incoming>,
    /// Given back to the pool at the body's end.
    pooled: Option<Pooled<Capped<B>>>,
}

/// The origin behind the host: a pooled HTTP/1.1 client (keep-alive
/// connections, closed after [`ORIGIN_IDLE_TIMEOUT`] idle) that streams the
/// request body to the origin and returns as soon as the response head is
/// in, with the response body as a stream.
///
/// Timeouts and limits come from the [`GatewayConfig`]:
/// - `origin_connect_timeout` (`SESSION_ORIGIN_CONNECT_TIMEOUT_MS`) bounds
///   the TCP connect: [`Error::OriginTimeout`] past it.
/// - `origin_timeout` (`SESSION_ORIGIN_TIMEOUT_MS`) bounds the wait for the
///   response head, counted from the moment the request body has been sent
///   in full (a slow upload is not the origin's delay):
///   [`Error::OriginTimeout`] past it.
/// - `max_body_bytes` (`SESSION_MAX_BODY_BYTES`) caps both bodies while they
///   stream: an upload past it fails with [`Error::TooLarge`] (`what:
///   "request body"`), a response body past it is cut off.
#[derive(Debug, Clone)]
pub struct OriginClient<B = Incoming> {
    /// A plain `http://` origin's connections.
    pool: Option<Pool<Capped<B>>>,
    /// Any other origin (`https://`).
    client: Client<HttpsConnector<HttpConnector>, Capped<B>>,
    connect_timeout: Duration,
    head_timeout: Duration,
    max_body_bytes: Option<u64>,
}

impl<B> OriginClient<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A client with the timeouts and the body limit of `config`. `https://`
    /// origins are verified against Mozilla's root certificates
    /// (webpki-roots); the origin never gets HTTP/2.
    pub fn new(config: &GatewayConfig) -> Result<Self> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.origin_connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::Config {
                name: "ORIGIN_URL",
                reason: format!("no TLS client for https origins: {e}"),
            })?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(ORIGIN_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(https);
        let pool = config.origin.url().ok().and_then(|origin| {
            Pool::for_origin(origin, config.origin_connect_timeout, ORIGIN_IDLE_TIMEOUT)
        });
        Ok(Self {
            pool,
            client,
            connect_timeout: config.origin_connect_timeout,
            head_timeout: config.origin_timeout,
            max_body_bytes: config.max_body_bytes,
        })
    }
}

impl<B> Upstream<B> for OriginClient<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Body = OriginBody<B>;

    async fn forward(&self, request: Request<B>) -> Result<Response<OriginBody<B>>> {
        self.send(request, None).await
    }
}

impl<B> OriginClient<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// [`Upstream::forward`], and when the request body goes over the
    /// limit, what is left of it goes to `rest` (see [`Capped::rest_to`]).
    pub async fn send(
        &self,
        request: Request<B>,
        rest: Option<oneshot::Sender<B>>,
    ) -> Result<Response<OriginBody<B>>> {
        let (mut parts, body) = request.into_parts();
        // The origin gets HTTP/1.1 whatever the client spoke.
        parts.version = Version::HTTP_11;
        let body = Capped::new(body, self.max_body_bytes, Direction::Upload);
        // The head timeout starts once the request body is over (sent,
        // failed or dropped): the time to upload it is the client's.
        let (body, ended) = if body.is_end_stream() {
            (body, None)
        } else {
            let (end, ended) = oneshot::channel();
            (body.until_end(end), Some(ended))
        };
        let body = match rest {
            Some(rest) => body.rest_to(rest),
            None => body,
        };
        let request = Request::from_parts(parts, body);
        let head_deadline = async {
            if let Some(ended) = ended {
                let _ = ended.await;
            }
            tokio::time::sleep(self.head_timeout).await;
        };
        let timed_out = || Error::OriginTimeout {
            ms: millis(self.head_timeout),
        };
        let (response, pooled) = match &self.pool {
            Some(pool) if pool.serves(request.uri()) => tokio::select! {
                sent = pool.send(request) => match sent {
                    Ok((response, pooled)) => (response, Some(pooled)),
                    Err(e) => return Err(self.send_error(e)),
                },
                () = head_deadline => return Err(timed_out()),
            },
            _ => tokio::select! {
                response = self.client.request(request) => {
                    (response.map_err(|e| self.request_error(e))?, None)
                }
                () = head_deadline => return Err(timed_out()),
            },
        };
        // An upgraded connection is not the pool's any more.
        let pooled = pooled.filter(|_| response.status() != StatusCode::SWITCHING_PROTOCOLS);
        let limit = self.max_body_bytes;
        Ok(response
            .map(|body| OriginBody::new(Capped::new(body, limit, Direction::Download), pooled)))
    }
}

impl<B> OriginClient<B> {
    /// The error for a request through hyper-util's client that got no
    /// response head.
    fn request_error(&self, error: hyper_util::client::legacy::Error) -> Error {
        let connect = error.is_connect();
        self.origin_error(Box::new(error), connect)
    }

    /// The error for a request through the pool that got no response head.
    fn send_error(&self, error: SendError) -> Error {
        let connect = matches!(error, SendError::Connect(_));
        self.origin_error(Box::new(error), connect)
    }

    /// [`Error::TooLarge`] for an upload over the limit,
    /// [`Error::OriginTimeout`] for a connect that timed out, else
    /// [`Error::Origin`] (its reason [`UPLOAD_FAILED`] when the client's
    /// body failed).
    fn origin_error(&self, error: Box<dyn StdError + Send + Sync>, connect: bool) -> Error {
        if let Some(too_large) = find::<BodyTooLarge>(&*error) {
            return Error::TooLarge {
                what: too_large.what,
                limit: usize::try_from(too_large.limit).unwrap_or(usize::MAX),
                actual: usize::try_from(too_large.limit.saturating_add(1)).unwrap_or(usize::MAX),
            };
        }
        if connect {
            let timed_out = find::<std::io::Error>(&*error)
                .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
            if timed_out {
                return Error::OriginTimeout {
                    ms: millis(self.connect_timeout),
                };
            }
            return Error::Origin {
                reason: "could not connect".to_owned(),
                source: Some(error),
            };
        }
        let reason = if upload_failed(&*error) {
            UPLOAD_FAILED
        } else {
            "the request failed"
        };
        Error::Origin {
            reason: reason.to_owned(),
            source: Some(error),
        }
    }
}

impl<B: Send + 'static> OriginBody<B> {
    fn new(body: Capped<Incoming>, pooled: Option<Pooled<Capped<B>>>) -> Self {
        let mut this = Self { body, pooled };
        if this.body.is_end_stream() {
            this.give_back();
        }
        this
    }

    /// The response is over: its connection can take the next request.
    fn give_back(&mut self) {
        if let Some(pooled) = self.pooled.take() {
            pooled.give_back();
        }
    }

    /// The data bytes passed through so far.
    pub fn bytes_seen(&self) -> u64 {
        self.body.bytes_seen()
    }
}

impl<B: Send + 'static> Body for OriginBody<B> {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            // A failed or cut-off body leaves its connection unusable:
            // dropped, closed.
            Some(Err(_)) => this.pooled = None,
            None => this.give_back(),
            Some(Ok(_)) if this.body.is_end_stream() => this.give_back(),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The [`Error::Origin`] reason when the client's request body failed
/// (the client went away or sent a broken body) and not the origin.
pub(crate) const UPLOAD_FAILED: &str = "the client's request body failed";

/// True when a request failed because its body did, i.e. on the client's
/// side: hyper's "user body" error, a user error with the body's own
/// error as its source (hyper's other user errors have none).
fn upload_failed(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>()
            && hyper.is_user()
            && hyper.source().is_some()
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// The first error of type `T` in `error`'s source chain, itself included.
fn find<'e, T: StdError + 'static>(error: &'e (dyn StdError + 'static)) -> Option<&'e T> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
