//! Sessions inside a `lambda_http` function of your own.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use edge_session_lambda::{Sessions, with_sessions};
//! use lambda_http::{Body, Error, Request, Response, service_fn};
//!
//! async fn handler(request: Request) -> Result<Response<Body>, Error> {
//!     let session = Sessions::of(&request);
//!     let visits: i64 = session.get("visits")?.unwrap_or(0) + 1;
//!     session.incr("visits", 1)?;
//!     Ok(Response::new(Body::from(format!("visit {visits}"))))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     let client = edge_session_lambda::http_client()?;
//!     let env = edge_session_lambda::Env::load(&client).await?;
//!     let store = Arc::new(edge_session_lambda::store(&env, &client).await?);
//!     lambda_http::run(with_sessions(store, service_fn(handler))).await
//! }
//! ```
//!
//! Before the handler runs, the wrapper verifies the session cookie and loads
//! the session ([`SessionStore::begin`]: no Redis call without a valid cookie,
//! one with). The handler reads and changes it through the [`Sessions`]
//! handle in the request's extensions. After the handler, the wrapper commits
//! the changes ([`SessionStore::commit`]: nothing when nothing changed, else
//! one round trip) and adds the `Set-Cookie` header to the response. If the
//! store is unavailable, the answer is `503 store_unavailable` with
//! `Retry-After` (before the handler when loading, instead of the handler's
//! response when committing). A handler error is returned as is, with nothing
//! committed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_session::gateway::{client_info, cookie_header, store_error_response};
use edge_session::{Backend, Logout, RequestSession, SessionStore};
use http::header::{self, HeaderValue};
use lambda_http::{Body, IntoResponse, Request, Response, Service};

/// The session of the current request, in the request's extensions while a
/// handler wrapped by [`with_sessions`] runs. Cheap to clone; every clone is
/// the same session.
///
/// Reads ([`get`](Self::get), [`user`](Self::user), [`id`](Self::id)) see the
/// session as loaded when the request arrived; changes are applied together
/// after the handler returns. Changes made after that are ignored (and
/// logged).
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Mutex<Option<RequestSession>>>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("session", &*self.lock())
            .finish()
    }
}

impl Sessions {
    fn new(session: RequestSession) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Some(session))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<RequestSession>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Option<RequestSession> {
        self.lock().take()
    }

    /// The session handle of `request`. Outside [`with_sessions`] (no handle
    /// in the extensions) it is a detached, anonymous session whose changes
    /// go nowhere.
    pub fn of<B>(request: &http::Request<B>) -> Self {
        match request.extensions().get::<Sessions>() {
            Some(s) => s.clone(),
            None => {
                log::warn!("edge-session: Sessions::of outside with_sessions: changes are ignored");
                Self {
                    inner: Arc::new(Mutex::new(None)),
                }
            }
        }
    }

    /// Runs `f` on the request's session (the whole
    /// [`RequestSession`] API); `None` once the session was committed.
    pub fn with<R>(&self, f: impl FnOnce(&mut RequestSession) -> R) -> Option<R> {
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(session) => Some(f(session)),
            None => {
                log::warn!(
                    "edge-session: session used after its commit (or outside with_sessions): ignored"
                );
                None
            }
        }
    }

    /// A field of the session as loaded (`Ok(None)` when absent or anonymous).
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        field: &str,
    ) -> edge_session::Result<Option<T>> {
        self.with(|s| s.get(field)).unwrap_or(Ok(None))
    }

    /// Sets a field (JSON) on commit. Refused at once when the name or the
    /// size is invalid.
    pub fn set<T: serde::Serialize + ?Sized>(
        &self,
        field: &str,
        value: &T,
    ) -> edge_session::Result<()> {
        self.with(|s| s.changes().set(field, value).map(|_| ()))
            .unwrap_or(Ok(()))
    }

    /// Deletes a field on commit.
    pub fn delete(&self, field: &str) -> edge_session::Result<()> {
        self.with(|s| s.changes().delete(field).map(|_| ()))
            .unwrap_or(Ok(()))
    }

    /// Adds `by` to an integer field on commit (atomic in Redis).
    pub fn incr(&self, field: &str, by: i64) -> edge_session::Result<()> {
        self.with(|s| s.changes().incr(field, by).map(|_| ()))
            .unwrap_or(Ok(()))
    }

    /// Signs `user` in on commit: a new token (the old one dies), data kept.
    pub fn login(&self, user: impl Into<String>) {
        let user = user.into();
        self.with(|s| s.login(user));
    }

    /// Signs out on commit: this session, or every session of its user.
    pub fn logout(&self, scope: Logout) {
        self.with(|s| s.logout(scope));
    }

    /// The signed-in user, if any.
    pub fn user(&self) -> Option<String> {
        self.with(|s| s.user().map(str::to_owned)).flatten()
    }

    /// The session's non-secret id (64 hex characters), if there is a live
    /// session.
    pub fn id(&self) -> Option<String> {
        self.with(|s| s.handle().map(|h| h.as_str().to_owned()))
            .flatten()
    }
}

/// Wraps `service` (any `lambda_http` handler, e.g. `service_fn(handler)`)
/// so that each request carries its session in its extensions (see
/// [`Sessions`]), and the changes are committed and the cookie set on the
/// response. Pass the result to `lambda_http::run`.
pub fn with_sessions<B, S>(store: Arc<SessionStore<B>>, service: S) -> WithSessions<B, S> {
    WithSessions {
        store,
        service,
        retry_after_secs: 5,
    }
}

/// The service [`with_sessions`] returns.
pub struct WithSessions<B, S> {
    store: Arc<SessionStore<B>>,
    service: S,
    retry_after_secs: u32,
}

impl<B, S: Clone> Clone for WithSessions<B, S> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            service: self.service.clone(),
            retry_after_secs: self.retry_after_secs,
        }
    }
}

impl<B, S> fmt::Debug for WithSessions<B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithSessions")
            .field("retry_after_secs", &self.retry_after_secs)
            .finish_non_exhaustive()
    }
}

impl<B, S> WithSessions<B, S> {
    /// `Retry-After` seconds of a `503 store_unavailable` (default 5).
    #[must_use]
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = secs;
        self
    }
}

/// The response of a [`WithSessions`] service: the handler's response plus
/// the session cookie, or the error response that replaced it. Converted by
/// `lambda_http` like the handler's own response.
#[derive(Debug)]
pub struct SessionResponse<R> {
    inner: Outcome<R>,
}

#[derive(Debug)]
enum Outcome<R> {
    Handled {
        response: R,
        set_cookie: Option<HeaderValue>,
    },
    Refused(http::Response<Bytes>),
}

impl<R> SessionResponse<R> {
    /// The `Set-Cookie` value added to the response, if any.
    pub fn set_cookie(&self) -> Option<&HeaderValue> {
        match &self.inner {
            Outcome::Handled { set_cookie, .. } => set_cookie.as_ref(),
            Outcome::Refused(_) => None,
        }
    }
}

impl<R: IntoResponse> IntoResponse for SessionResponse<R> {
    fn into_response(self) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        match self.inner {
            Outcome::Handled {
                response,
                set_cookie,
            } => {
                let response = response.into_response();
                Box::pin(async move {
                    let mut response = response.await;
                    if let Some(cookie) = set_cookie {
                        response.headers_mut().append(header::SET_COOKIE, cookie);
                    }
                    response
                })
            }
            Outcome::Refused(response) => {
                let (parts, body) = response.into_parts();
                let body = Body::Text(String::from_utf8_lossy(&body).into_owned());
                Box::pin(std::future::ready(Response::from_parts(parts, body)))
            }
        }
    }
}

impl<B, S, R> Service<Request> for WithSessions<B, S>
where
    B: Backend + Send + Sync + 'static,
    S: Service<Request, Response = R> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    R: IntoResponse + Send,
{
    type Response = SessionResponse<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let store = Arc::clone(&self.store);
        let retry_after = self.retry_after_secs;
        // The ready service handles this request; a fresh clone waits for the next.
        let fresh = self.service.clone();
        let mut service = std::mem::replace(&mut self.service, fresh);
        Box::pin(async move {
            let headers = request.headers();
            let cookie = cookie_header(headers);
            let client = client_info(headers).with_ip(source_ip(&request));
            let session = match store.begin(cookie.as_deref(), client).await {
                Ok(session) => Sessions::new(session),
                Err(e) => return Ok(refused(&e, retry_after)),
            };
            request.extensions_mut().insert(session.clone());
            let response = service.call(request).await?;
            let set_cookie = match session.take() {
                Some(s) => match store.commit(s).await {
                    Ok(commit) => commit
                        .set_cookie
                        .and_then(|c| HeaderValue::from_str(&c).ok()),
                    Err(e) => return Ok(refused(&e, retry_after)),
                },
                None => None,
            };
            Ok(SessionResponse {
                inner: Outcome::Handled {
                    response,
                    set_cookie,
                },
            })
        })
    }
}

/// The client IP API Gateway saw (the request context's source IP), for
/// subnet binding (`SESSION_BIND_SUBNET`). `None` outside API Gateway.
pub fn source_ip(request: &Request) -> Option<std::net::IpAddr> {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let ip = match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.as_deref(),
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref(),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    ip?.trim().parse().ok()
}

fn refused<R>(error: &edge_session::Error, retry_after: u32) -> SessionResponse<R> {
    let response = store_error_response(error, retry_after);
    SessionResponse {
        inner: Outcome::Refused(response),
    }
}
