//! # edge-session
//!
//! A session store for serverless and edge runtimes (Cloudflare Workers, AWS
//! Lambda): any stateless instance recognises a returning user with one round
//! trip to Redis over HTTP (Upstash-style REST) or TCP, with no sticky routing,
//! no sweep jobs and no persistent connections.
//!
//! - [`cookie`]: 256-bit tokens in HMAC-SHA256 signed cookies, with a key ring
//!   for rotation. Bad cookies are anonymous visitors and cost no Redis call.
//! - [`session`]: the session model (one Redis hash per session, one JSON text
//!   per field, metadata fields) and field-level [`Changes`].
//! - [`store`]: the operations, each one atomic Lua script in one round trip:
//!   load + slide, write, create, login with regeneration, logout, device
//!   listing, revocation, logout-all.
//! - [`request`]: the per-request flow, [`SessionStore::begin`] and
//!   [`SessionStore::commit`].
//! - [`backend`]: the REST backend (native and wasm32) and the direct Redis
//!   backend (native, feature `direct`).
//! - [`query`]: cross-session queries (secondary indexes), counts and
//!   analytics, without scanning keys; [`maintenance`]: offline re-indexing
//!   and the audit.
//! - [`hooks`]: session lifecycle events for the embedding code.
//! - [`lock`]: lease locks for the rare critical section that needs one.
//! - [`keys`]: the Redis key layout, ready for Redis Cluster.
//! - [`gateway`]: the HTTP-level session gateway shared by the Worker and
//!   Lambda packagings (origin proxy, browser API, admin API).
//! - [`config`]: settings from environment variables.
//!
//! ```no_run
//! # async fn run() -> edge_session::Result<()> {
//! use edge_session::{Settings, SessionStore};
//!
//! let settings = Settings::from_env()?;
//! let backend = settings.backend.connect().await?;
//! let store = SessionStore::new(backend, settings.session, settings.keys)?;
//! # let _ = store; Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backend;
pub mod config;
pub mod cookie;
mod error;
pub mod gateway;
pub mod hooks;
pub mod keys;
pub mod lock;
pub mod maintenance;
pub mod platform;
pub mod query;
pub mod request;
mod script;
pub mod session;
pub mod store;

/// Entry points for the fuzz targets in `fuzz/` (see the README's "Fuzzing"
/// section). **Not public API**: hidden from the docs, no stability promise,
/// may change or go away in any release.
#[doc(hidden)]
pub mod fuzzing {
    use crate::cookie::{SECRET_BYTES, SessionToken, UserTag};
    use crate::gateway::Instructions;
    use crate::request::Logout;

    #[cfg(feature = "rest")]
    pub use crate::backend::rest::Route as RestRoute;

    /// A session token with a chosen secret (real ones come from the CSPRNG),
    /// so that a target can sign and verify tokens derived from its input.
    pub fn token(secret: [u8; SECRET_BYTES], user_tag: Option<UserTag>) -> SessionToken {
        SessionToken::from_secret(secret, user_tag)
    }

    /// The parts of parsed `x-session-*` instructions: fields to set, fields
    /// to increment, the user to log in, the logout scope.
    pub type InstructionParts<'a> = (
        &'a [(String, serde_json::Value)],
        &'a [(String, i64)],
        Option<&'a str>,
        Option<Logout>,
    );

    /// What [`Instructions::take`] parsed, for checking its invariants.
    pub fn instruction_parts(instructions: &Instructions) -> InstructionParts<'_> {
        (
            &instructions.set,
            &instructions.incr,
            instructions.login.as_deref(),
            instructions.logout,
        )
    }

    /// The REST backend's decoder of one HTTP response (status and body) into
    /// `expected` replies (Upstash base64 encoding).
    #[cfg(feature = "rest")]
    pub fn decode_rest_response(
        route: RestRoute,
        status: u16,
        body: &[u8],
        expected: usize,
    ) -> crate::Result<Vec<crate::backend::Reply>> {
        crate::backend::rest::decode_response(route, status, body, expected)
    }
}

pub use backend::{AnyBackend, Backend};
pub use config::{BackendConfig, IndexSpec, LoginCarry, SessionConfig, Settings};
pub use cookie::{
    CookieCodec, CookieConfig, KeyRing, SameSitePolicy, SessionHandle, SessionToken, UserTag,
};
pub use error::{Error, Result, ServerError};
pub use hooks::{Hooks, SessionEvent};
pub use lock::{LockGuard, LockOptions};
pub use maintenance::{AuditReport, ReindexReport};
pub use query::{Counts, DailyStats, Page, SessionSummary, Stats, ValueCount};
pub use request::{Commit, Logout, RequestSession};
pub use session::{Applied, Changes, ClientInfo, DeviceSession, Op, Session, Timestamp};
pub use store::SessionStore;
pub use store::Touch;
