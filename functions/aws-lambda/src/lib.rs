//! edge-session as an AWS Lambda function behind API Gateway.
//!
//! Two uses:
//!
//! - **The gateway function** (the `edge-session-lambda` binary,
//!   `template.yaml` at the repository root): every request of a REST API,
//!   an HTTP API or a Function URL goes through the core's
//!   [`Gateway`](edge_session::gateway::Gateway) (origin proxy to
//!   `ORIGIN_URL`, browser API, admin API), configured from environment
//!   variables at cold start ([`Env`], [`secrets`]). [`handle_event`] is the
//!   whole invocation (event JSON in, response JSON out, malformed events
//!   answered 400), [`handle`] the same over a `lambda_http` request; the
//!   conversions are in [`event`].
//! - **Sessions inside your own `lambda_http` function**:
//!   `lambda_http::run(with_sessions(store, service_fn(handler)))`, the
//!   handler reading and changing the session through [`Sessions`] (see
//!   [`sessions`]).
//!
//! Everything is built once per execution environment (one HTTP client for
//! the REST backend, the origin and the secret lookups) and shared by the
//! invocations. Session logic lives in the core crate only.

#![forbid(unsafe_code)]

pub mod event;
mod function;
mod logging;
pub mod secrets;
pub mod sessions;

pub use event::{BadEvent, EventKind, app_path};
pub use function::{
    Env, GatewayFunction, InitError, LambdaGateway, gateway, handle, handle_event, http_client,
    store,
};
pub use logging::init_logging;
pub use sessions::{SessionResponse, Sessions, WithSessions, with_sessions};
