//! [`Pool`]: keep-alive HTTP/1.1 connections to one plain `http://`
//! origin, on hyper's connection API: a request takes the connection used
//! last, the response body gives it back when it ends.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::BoxError;

/// The idle connections to one origin, most recently used last.
pub(crate) struct Pool<B> {
    shared: Arc<Shared<B>>,
}

struct Shared<B> {
    /// The origin's `host:port`, what the connections connect to.
    address: String,
    authority: Authority,
    /// The `Host` header the origin gets (its port only when not 80).
    host: HeaderValue,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<Vec<Idle<B>>>,
    reaping: AtomicBool,
}

struct Idle<B> {
    sender: SendRequest<B>,
    since: Instant,
}

/// A connection taken from the [`Pool`] (or just made) for one request.
pub(crate) struct Pooled<B> {
    sender: SendRequest<B>,
    pool: Weak<Shared<B>>,
    reused: bool,
}

/// Why a request through the [`Pool`] got no response head.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection: the TCP connect failed (or timed out).
    Connect(std::io::Error),
    /// The request failed on its connection.
    Request(hyper::Error),
}

impl<B> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B> Pool<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A pool for `origin` when it is a plain `http://` URL with a host;
    /// `None` otherwise (`https://` origins go through hyper-util's client).
    pub(crate) fn for_origin(
        origin: &str,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Option<Self> {
        let uri: Uri = origin.parse().ok()?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        let authority = uri.authority()?.clone();
        let port = authority.port_u16().unwrap_or(80);
        // `host()` keeps an IPv6 address's brackets, as `Host` and connect want them.
        let host = authority.host();
        let host = if port == 80 {
            HeaderValue::from_str(host).ok()?
        } else {
            HeaderValue::from_str(&format!("{host}:{port}")).ok()?
        };
        Some(Self {
            shared: Arc::new(Shared {
                address: format!("{}:{port}", authority.host()),
                authority,
                host,
                connect_timeout,
                idle_timeout,
                idle: Mutex::new(Vec::new()),
                reaping: AtomicBool::new(false),
            }),
        })
    }

    /// True when `uri` (absolute) is this pool's origin.
    pub(crate) fn serves(&self, uri: &Uri) -> bool {
        uri.scheme() == Some(&Scheme::HTTP) && uri.authority() == Some(&self.shared.authority)
    }

    /// Sends `request` (its URI absolute, on this pool's origin) on an idle
    /// connection or a new one, and returns the response with the
    /// connection, to give back when the response body has ended. A request
    /// that an idle connection closed by the origin did not take is sent
    /// again on another.
    pub(crate) async fn send(
        &self,
        mut request: Request<B>,
    ) -> std::result::Result<(Response<Incoming>, Pooled<B>), SendError> {
        origin_form(request.uri_mut());
        request
            .headers_mut()
            .entry(http::header::HOST)
            .or_insert_with(|| self.shared.host.clone());
        loop {
            let mut pooled = match self.take() {
                Some(pooled) => pooled,
                None => self.connect().await?,
            };
            match pooled.sender.try_send_request(request).await {
                Ok(response) => return Ok((response, pooled)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if pooled.reused => request = unsent,
                    _ => return Err(SendError::Request(e.into_error())),
                },
            }
        }
    }

    /// The idle connection used last, if it is ready for a request.
    fn take(&self) -> Option<Pooled<B>> {
        let mut idle = self.shared.lock();
        while let Some(Idle { sender, since }) = idle.pop() {
            if since.elapsed() >= self.shared.idle_timeout {
                // The others have been idle longer.
                idle.clear();
                return None;
            }
            if sender.is_ready() {
                return Some(Pooled {
                    sender,
                    pool: Arc::downgrade(&self.shared),
                    reused: true,
                });
            }
        }
        None
    }

    /// A new connection (TCP_NODELAY), its I/O driven by a task of its own.
    async fn connect(&self) -> std::result::Result<Pooled<B>, SendError> {
        let shared = &self.shared;
        let connect = TcpStream::connect(shared.address.as_str());
        let stream = match tokio::time::timeout(shared.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            Err(_) => {
                return Err(SendError::Connect(std::io::ErrorKind::TimedOut.into()));
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Request)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                log::debug!("edge-session-host: origin connection ended: {e}");
            }
        });
        self.reap();
        Ok(Pooled {
            sender,
            pool: Arc::downgrade(shared),
            reused: false,
        })
    }

    /// Starts, once, the task that closes the connections idle for longer
    /// than the idle timeout; it ends with the pool.
    fn reap(&self) {
        if self.shared.reaping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(&self.shared);
        let every = self.shared.idle_timeout / 4;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(shared) = pool.upgrade() else { return };
                let timeout = shared.idle_timeout;
                shared
                    .lock()
                    .retain(|idle| idle.since.elapsed() < timeout && !idle.sender.is_closed());
            }
        });
    }
}

impl<B> Shared<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle<B>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<B: Send + 'static> Pooled<B> {
    /// Back to the pool: its response has ended, the connection is kept
    /// alive. Once ready for the next request (at once, mostly; a
    /// connection still sending the request body waits for its end).
    pub(crate) fn give_back(self) {
        let Self {
            mut sender, pool, ..
        } = self;
        if sender.is_ready() {
            put(&pool, sender);
        } else if !sender.is_closed() {
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    put(&pool, sender);
                }
            });
        }
    }
}

fn put<B>(pool: &Weak<Shared<B>>, sender: SendRequest<B>) {
    if let Some(shared) = pool.upgrade() {
        shared.lock().push(Idle {
            sender,
            since: Instant::now(),
        });
    }
}

/// `/path?query`, as a request to an origin server has it (RFC 9112 3.2.1).
fn origin_form(uri: &mut Uri) {
    let path = match uri.path_and_query() {
        Some(path) if path.as_str() != "/" => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(path.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    };
    *uri = path;
}

impl<B> fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("origin", &self.shared.authority)
            .field("idle", &self.shared.lock().len())
            .finish()
    }
}

impl<B> fmt::Debug for Pooled<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("reused", &self.reused)
            .finish()
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "could not connect: {e}"),
            SendError::Request(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(e) => Some(e),
            SendError::Request(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Empty, Full};
    use hyper::server::conn::http1 as server;
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// An origin answering `ok` on keep-alive connections; counts them.
    async fn origin() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|request: Request<Incoming>| async move {
                        let host = request.headers()[http::header::HOST].clone();
                        let path = request.uri().to_string();
                        let mut response = Response::new(Full::new(Bytes::from(path)));
                        response.headers_mut().insert("x-host", host);
                        Ok::<_, Infallible>(response)
                    });
                    let _ = server::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, connections)
    }

    fn pool(url: &str) -> Pool<Empty<Bytes>> {
        Pool::for_origin(url, Duration::from_secs(5), Duration::from_secs(60)).unwrap()
    }

    fn get(url: &str, path: &str) -> Request<Empty<Bytes>> {
        Request::get(format!("{url}{path}"))
            .body(Empty::new())
            .unwrap()
    }

    /// Sends, reads the body to its end and gives the connection back as
    /// the origin body does.
    async fn fetch(pool: &Pool<Empty<Bytes>>, request: Request<Empty<Bytes>>) -> (String, String) {
        let (response, pooled) = pool.send(request).await.unwrap();
        let host = response.headers()["x-host"].to_str().unwrap().to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        pooled.give_back();
        (String::from_utf8(body.to_vec()).unwrap(), host)
    }

    #[tokio::test]
    async fn requests_in_turn_share_one_connection_in_origin_form_with_the_host() {
        let (url, connections) = origin().await;
        let pool = pool(&url);
        let authority = url.trim_start_matches("http://").to_owned();
        for path in ["/a?b=1", "/", "/c/d"] {
            let (seen, host) = fetch(&pool, get(&url, path)).await;
            assert_eq!((seen.as_str(), host.as_str()), (path, authority.as_str()));
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert!(pool.serves(&format!("{url}/x").parse().unwrap()));
        assert!(!pool.serves(&"http://example.com/x".parse().unwrap()));
    }

    #[tokio::test]
    async fn requests_at_once_get_a_connection_each_then_reuse_them() {
        let (url, connections) = origin().await;
        let pool = pool(&url);
        let (a, b) = tokio::join!(pool.send(get(&url, "/a")), pool.send(get(&url, "/b")));
        let ((a, first), (b, second)) = (a.unwrap(), b.unwrap());
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        for (response, pooled) in [(a, first), (b, second)] {
            response.into_body().collect().await.unwrap();
            pooled.give_back();
        }
        fetch(&pool, get(&url, "/c")).await;
        fetch(&pool, get(&url, "/d")).await;
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_whose_response_was_not_read_is_not_reused() {
        let (url, connections) = origin().await;
        let pool = pool(&url);
        let (response, pooled) = pool.send(get(&url, "/unread")).await.unwrap();
        drop((response, pooled));
        fetch(&pool, get(&url, "/next")).await;
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    /// An origin that answers one request per connection and then closes
    /// it without saying so (`Connection: close`), as a keep-alive timeout
    /// does.
    async fn closing_origin() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let response = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-host: h\r\n\r\nok";
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn idle_connections_the_origin_closed_are_not_failures() {
        let url = closing_origin().await;
        let pool = pool(&url);
        for _ in 0..20 {
            assert_eq!(fetch(&pool, get(&url, "/")).await.0, "ok");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fetch(&pool, get(&url, "/")).await.0, "ok");
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let pool = pool(&url);
        let error = pool.send(get(&url, "/")).await.unwrap_err();
        assert!(matches!(error, SendError::Connect(_)), "{error}");
    }

    #[test]
    fn only_plain_http_origins_get_a_pool() {
        let timeouts = (Duration::from_secs(1), Duration::from_secs(1));
        let pool = |url| Pool::<Empty<Bytes>>::for_origin(url, timeouts.0, timeouts.1);
        assert!(pool("https://example.com").is_none());
        assert!(pool("http://example.com/base").is_some());
        let ipv6 = pool("http://[::1]:8080").unwrap();
        assert_eq!(ipv6.shared.address, "[::1]:8080");
        assert_eq!(ipv6.shared.host, "[::1]:8080");
        let default_port = pool("http://example.com:80").unwrap();
        assert_eq!(default_port.shared.host, "example.com");
        assert_eq!(default_port.shared.address, "example.com:80");
    }
}
