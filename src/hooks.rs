//! Session lifecycle events, for the embedding code to log or publish.
//!
//! ```
//! use std::sync::Arc;
//! use edge_session::hooks::{Hooks, SessionEvent};
//!
//! struct Log;
//! impl Hooks for Log {
//!     fn on_event(&self, event: &SessionEvent) {
//!         eprintln!("session event: {}", event.kind());
//!     }
//! }
//! # fn wire<B: edge_session::Backend>(store: edge_session::SessionStore<B>) {
//! let store = store.with_hooks(Arc::new(Log));
//! # let _ = store; }
//! ```
//!
//! Hooks run after the operation succeeded in Redis, synchronously and
//! before the operation returns: keep them quick. To publish an event over
//! the network, hand it to a queue or to `ctx.wait_until` on Workers (or a
//! spawned task on Lambda) instead of awaiting inside the hook. Events carry
//! handles (the non-secret SHA-256 of a token) and user ids, never tokens.

use crate::cookie::SessionHandle;
use crate::platform::{MaybeSend, MaybeSync};

/// Something that happened to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session was created (a visitor's first write, or a login without a
    /// session).
    Created {
        /// The new session.
        handle: SessionHandle,
        /// The user it is bound to, if any.
        user: Option<String>,
    },
    /// A login replaced a session with a new one under a new token (the old
    /// token is dead).
    Regenerated {
        /// The session that ended.
        old: SessionHandle,
        /// The new session (holding the old one's data as `SESSION_LOGIN_CARRY`
        /// says when the old one was anonymous or the same user's, else none).
        new: SessionHandle,
        /// The user now signed in.
        user: String,
    },
    /// A session was destroyed: logout, or revocation by its user or an
    /// administrator.
    Destroyed {
        /// The session.
        handle: SessionHandle,
        /// The user, when known (revocations).
        user: Option<String>,
    },
    /// Every session of a user was revoked.
    LoggedOutEverywhere {
        /// The user.
        user: String,
        /// How many sessions ended.
        sessions: u64,
    },
    /// A live session was presented from another network or user agent than
    /// the one it is bound to (`SESSION_BIND_SUBNET`,
    /// `SESSION_BIND_USER_AGENT`): the request was treated as anonymous. The
    /// session itself is left intact for its rightful user.
    BindingMismatch {
        /// The session.
        handle: SessionHandle,
        /// Its user, if it is bound to one.
        user: Option<String>,
        /// What did not match: `"subnet"` or `"user_agent"`.
        reason: &'static str,
    },
}

impl SessionEvent {
    /// A short name: `created`, `regenerated`, `destroyed`,
    /// `logged_out_everywhere`, `binding_mismatch`.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionEvent::Created { .. } => "created",
            SessionEvent::Regenerated { .. } => "regenerated",
            SessionEvent::Destroyed { .. } => "destroyed",
            SessionEvent::LoggedOutEverywhere { .. } => "logged_out_everywhere",
            SessionEvent::BindingMismatch { .. } => "binding_mismatch",
        }
    }
}

/// Receives [`SessionEvent`]s; see [`crate::SessionStore::with_hooks`].
pub trait Hooks: MaybeSend + MaybeSync {
    /// Called once per event, after the change is stored.
    fn on_event(&self, event: &SessionEvent);
}

impl<F> Hooks for F
where
    F: Fn(&SessionEvent) + MaybeSend + MaybeSync,
{
    fn on_event(&self, event: &SessionEvent) {
        self(event);
    }
}
