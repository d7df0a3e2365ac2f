//! Read-your-writes across instances: a per-request `upstash-sync-token`.
//!
//! On a replicated (global) Upstash database, writes go to the primary and
//! reads may be served by a replica that has not caught up yet. Every REST
//! response carries an `upstash-sync-token`; a request that sends one back is
//! answered only once its replica has caught up with it. Within one process
//! the [`RestBackend`](super::RestBackend) does that by itself, but on the
//! edge the next request of the same user may land on another isolate, so the
//! token has to travel with the user: [`SessionStore::begin`] and
//! [`SessionStore::commit`] carry it in a small cookie next to the session
//! cookie (see [`crate::request`]).
//!
//! A backend is shared by every request of an isolate, so the token of one
//! request must not leak into another running at the same time. A
//! [`SyncToken`] is therefore one request's own: the store calls of that
//! request run inside [`SyncToken::scope`], and while (and only while) that
//! future is being polled, the REST backend sends the request's token instead
//! of the isolate-wide one, and records each response's token in it. This
//! needs no lock between requests and no spawned task, and works the same on
//! native targets and on wasm32. Backends without sync tokens ignore it.
//!
//! [`SessionStore::begin`]: crate::SessionStore::begin
//! [`SessionStore::commit`]: crate::SessionStore::commit
//!
//! ```no_run
//! # async fn run(backend: &edge_session::backend::RestBackend) -> edge_session::Result<()> {
//! use edge_session::backend::{Command, SyncToken, query};
//!
//! // The token this user's previous request ended with (e.g. from a cookie).
//! let sync = SyncToken::new(Some("0000000000000000000000a1".to_owned()));
//! let name = sync.scope(query(backend, Command::new("GET").arg("name"))).await?;
//! // The newest token, to hand to the user's next request.
//! let next = sync.get();
//! # let _ = (name, next); Ok(()) }
//! ```

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

thread_local! {
    /// The token of the request whose future this thread is polling, if any.
    static CURRENT: RefCell<Option<SyncToken>> = const { RefCell::new(None) };
}

/// The `upstash-sync-token` of one request (see the [module docs](self)).
/// Clones share the same token.
#[derive(Clone, Default)]
pub struct SyncToken {
    slot: Arc<Mutex<Option<String>>>,
}

impl SyncToken {
    /// A request's token, starting at `token` (`None`: the request knows of
    /// no earlier write).
    pub fn new(token: Option<String>) -> Self {
        Self {
            slot: Arc::new(Mutex::new(token)),
        }
    }

    /// The newest token: the one given at the start, or the one of the
    /// latest response received inside [`SyncToken::scope`].
    pub fn get(&self) -> Option<String> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the token.
    pub fn set(&self, token: Option<String>) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = token;
    }

    /// Runs `future` with this token as the current request's: backends
    /// called from it send and update this token.
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped {
            token: self.clone(),
            future: Box::pin(future),
        }
    }

    /// The token of the request being polled on this thread, if any.
    #[cfg_attr(not(feature = "rest"), allow(dead_code))]
    pub(crate) fn current() -> Option<SyncToken> {
        CURRENT.with(|current| current.borrow().clone())
    }
}

impl fmt::Debug for SyncToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret: an opaque replication position.
        f.debug_tuple("SyncToken").field(&self.get()).finish()
    }
}

/// The future returned by [`SyncToken::scope`].
#[must_use = "futures do nothing unless polled"]
pub struct Scoped<F> {
    token: SyncToken,
    future: Pin<Box<F>>,
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Puts the previous current token back, also when the poll panics.
struct Restore(Option<SyncToken>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let previous = CURRENT.with(|current| current.replace(Some(this.token.clone())));
        let _restore = Restore(previous);
        this.future.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Reads the current token when polled, then yields once, then reads again.
    async fn observe() -> (Option<String>, Option<String>) {
        let first = SyncToken::current().and_then(|t| t.get());
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
        let second = SyncToken::current().and_then(|t| t.get());
        (first, second)
    }

    #[test]
    fn interleaved_requests_each_see_their_own_token() {
        let a = SyncToken::new(Some("a".into()));
        let b = SyncToken::new(Some("b".into()));
        // `join` polls one, then the other, then the first again: they interleave.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut both = std::pin::pin!(futures_util::future::join(
            a.scope(observe()),
            b.scope(observe())
        ));
        let ((a1, a2), (b1, b2)) = loop {
            if let Poll::Ready(out) = both.as_mut().poll(&mut cx) {
                break out;
            }
        };
        assert_eq!((a1.as_deref(), a2.as_deref()), (Some("a"), Some("a")));
        assert_eq!((b1.as_deref(), b2.as_deref()), (Some("b"), Some("b")));
        assert!(SyncToken::current().is_none(), "restored after each poll");
    }

    #[test]
    fn nested_scopes_restore_the_outer_one() {
        let outer = SyncToken::new(Some("outer".into()));
        let inner = SyncToken::new(Some("inner".into()));
        let seen = futures_util::FutureExt::now_or_never(outer.scope(async {
            let inside = inner
                .scope(async { SyncToken::current().and_then(|t| t.get()) })
                .await;
            (inside, SyncToken::current().and_then(|t| t.get()))
        }))
        .unwrap();
        assert_eq!(seen, (Some("inner".into()), Some("outer".into())));
        inner.set(None);
        assert_eq!(inner.get(), None);
        assert_eq!(format!("{outer:?}"), r#"SyncToken(Some("outer"))"#);
    }
}
