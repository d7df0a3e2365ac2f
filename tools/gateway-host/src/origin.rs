//! [`OriginClient`]: the origin over a pooled hyper client (HTTP/1.1
//! keep-alive, `http://` and `https://`), both bodies streamed.

use std::error::Error as StdError;
use std::time::Duration;

use edge_session::gateway::{GatewayConfig, Upstream};
use edge_session::{Error, Result};
use http::{Request, Response, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::oneshot;

use crate::body::{BodyTooLarge, BoxError, Capped, Direction};

/// How long an idle keep-alive connection to the origin stays in the pool.
pub const ORIGIN_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The body of an origin response: the origin's own stream, cut off past
/// `SESSION_MAX_BODY_BYTES` when that is set.
pub type OriginBody = Capped<Incoming>;

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
        Ok(Self {
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
    type Body = OriginBody;

    async fn forward(&self, request: Request<B>) -> Result<Response<OriginBody>> {
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
    ) -> Result<Response<OriginBody>> {
        let (mut parts, body) = request.into_parts();
        // The origin gets HTTP/1.1 whatever the client spoke.
        parts.version = Version::HTTP_11;
        let (end, ended) = oneshot::channel();
        let mut body = Capped::new(body, self.max_body_bytes, Direction::Upload).until_end(end);
        if let Some(rest) = rest {
            body = body.rest_to(rest);
        }
        let response = self.client.request(Request::from_parts(parts, body));
        // The head timeout starts once the request body is over (sent,
        // failed or dropped): the time to upload it is the client's.
        let head_deadline = async {
            let _ = ended.await;
            tokio::time::sleep(self.head_timeout).await;
        };
        let response = tokio::select! {
            response = response => response.map_err(|e| self.request_error(e))?,
            () = head_deadline => {
                return Err(Error::OriginTimeout { ms: millis(self.head_timeout) });
            }
        };
        let limit = self.max_body_bytes;
        Ok(response.map(|body| Capped::new(body, limit, Direction::Download)))
    }
}

impl<B> OriginClient<B> {
    /// The error for a request that got no response head.
    fn request_error(&self, error: hyper_util::client::legacy::Error) -> Error {
        if let Some(too_large) = find::<BodyTooLarge>(&error) {
            return Error::TooLarge {
                what: too_large.what,
                limit: usize::try_from(too_large.limit).unwrap_or(usize::MAX),
                actual: usize::try_from(too_large.limit.saturating_add(1)).unwrap_or(usize::MAX),
            };
        }
        if error.is_connect() {
            let timed_out = find::<std::io::Error>(&error)
                .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
            if timed_out {
                return Error::OriginTimeout {
                    ms: millis(self.connect_timeout),
                };
            }
            return Error::Origin {
                reason: "could not connect".to_owned(),
                source: Some(Box::new(error)),
            };
        }
        let reason = if upload_failed(&error) {
            UPLOAD_FAILED
        } else {
            "the request failed"
        };
        Error::Origin {
            reason: reason.to_owned(),
            source: Some(Box::new(error)),
        }
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
