//! edge-session as an AWS Lambda function behind API Gateway.
//!
//! Two uses:
//!
//! - **The gateway function** (the `edge-session-lambda` binary,
//!   `template.yaml` at the repository root): every request of a REST API,
//!   an HTTP API or a Function URL goes through the core's
//!   [`Gateway`](edge_session::gateway::Gateway) (origin proxy to
//!   `ORIGIN_URL`, browser API, admin API), configured from environment
//!   variables at cold start ([`Env`], [`secrets`]). Its [`ResponseMode`]
//!   (`SESSION_LAMBDA_STREAMING`) says how it answers: buffered
//!   ([`handle_event`]: event JSON in, response JSON out, the origin's body
//!   collected, at most 6 MB) for the HTTP API, or streamed
//!   ([`stream_event`]: a metadata prelude, then the origin's body as it
//!   arrives, see [`streaming`]) for a Function URL with `InvokeMode:
//!   RESPONSE_STREAM` or a REST API in `STREAM` mode. Malformed events are
//!   answered 400 either way; [`handle`] and [`handle_streaming`] are the
//!   same over a `lambda_http` request; the conversions are in [`event`].
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
mod handler;
mod logging;
pub mod secrets;
pub mod sessions;
pub mod streaming;

pub use event::{BadEvent, EventKind, app_path};
pub use function::{
    Env, GatewayFunction, InitError, Invocation, LambdaGateway, ResponseMode, gateway, http_client,
    store,
};
pub use handler::{BUFFERED_PAYLOAD_LIMIT, handle, handle_event, handle_streaming, stream_event};
pub use logging::init_logging;
pub use sessions::{SessionResponse, Sessions, WithSessions, with_sessions};
