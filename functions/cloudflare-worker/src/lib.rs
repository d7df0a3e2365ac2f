//! edge-session as a Cloudflare Worker.
//!
//! With the default `gateway` feature this crate *is* the Worker: every
//! request goes through [`edge_session::gateway::Gateway`] (origin proxy,
//! browser API, admin API), configured from the Worker's vars and secrets.
//! The gateway reads and changes heads only: the client's body stream goes to
//! the origin, and the origin's body stream (or WebSocket) to the client, as
//! the runtime's own streams; no byte of a body enters wasm memory (see
//! `body`). The origin's response head is awaited for at most
//! `SESSION_ORIGIN_TIMEOUT_MS` once the upload is in (`504 origin_timeout`).
//! With `SESSION_LOG_EVENTS=true` the session lifecycle events are logged
//! after the response, in `ctx.waitUntil` (see `events`).
//!
//! The origin is, by the Worker's vars:
//! - `ORIGIN_URL`: a base URL; the request's path and query are appended.
//! - `ORIGIN_SERVICE`: the name of a service binding (another Worker); the
//!   request keeps its own URL.
//! - neither: the request's own URL. A Worker on a route reaches the zone's
//!   origin server this way.
//!
//! Without the feature (`default-features = false`) it is a library for
//! writing your own Worker with sessions: `settings` reads the
//! configuration from `Env`, `store` builds the store once per isolate,
//! `headers` converts heads between `worker` and `http` types, and
//! `handle` runs the whole gateway inside a `fetch` handler of your own.
//! (The crate holds only [`text`] on targets other than wasm32.)
//! Session logic lives in the core crate only.

#![forbid(unsafe_code)]

pub mod text;

// A Worker only exists on wasm32: on other targets these modules are left
// out, so native workspace builds skip them (their futures are not `Send`).
#[cfg(target_arch = "wasm32")]
pub mod body;
#[cfg(target_arch = "wasm32")]
pub mod events;
#[cfg(target_arch = "wasm32")]
pub mod headers;
#[cfg(target_arch = "wasm32")]
pub mod origin;
#[cfg(target_arch = "wasm32")]
mod proxy;
#[cfg(target_arch = "wasm32")]
mod worker_gateway;

#[cfg(target_arch = "wasm32")]
pub use worker_gateway::*;
