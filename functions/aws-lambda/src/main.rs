//! The gateway as an AWS Lambda function (`provided.al2023`): configuration
//! read once at cold start, then one invocation at a time, answered buffered
//! or streamed as `SESSION_LAMBDA_STREAMING` says.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use edge_session_lambda::{GatewayFunction, init_logging};
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = Instant::now();
    init_logging();
    // The response mode must match how the function is invoked, which it
    // cannot see: a wrong value is an init error, not a guess.
    let function = match GatewayFunction::from_env() {
        Ok(function) => Arc::new(function),
        Err(e) => {
            log::error!("edge-session: the gateway cannot start: {e}");
            return Err(e.into());
        }
    };
    let mode = function.mode().as_str();
    // Build the client, the store and the gateway now, during the init phase.
    // A failure is logged; requests then answer 500 and retry the build.
    // Boxed: the gateway's futures are large; keep them off the stack and
    // out of the compiler's layout recursion.
    match Box::pin(function.gateway()).await {
        Ok(_) => log::info!(
            "edge-session: gateway ready in {} us ({mode} responses)",
            started.elapsed().as_micros()
        ),
        Err(e) => log::error!("edge-session: the gateway cannot start: {e}"),
    }
    // The raw event, not lambda_http::run: a malformed event becomes a 400
    // response instead of an invocation error (see `event::parse_event`).
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let function = Arc::clone(&function);
        async move {
            Ok::<_, lambda_runtime::Error>(Box::pin(function.invoke(event.payload)).await)
        }
    }))
    .await
}
