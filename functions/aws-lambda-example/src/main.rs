//! Sessions inside a Lambda function of your own, with `lambda_http`: the
//! store is built once per execution environment, every request gets its
//! session in its extensions, and the changes are committed (and the cookie
//! set) after the handler.
//!
//! - `GET /` counts your visits in the session.
//! - `POST /login?user=NAME` signs you in (the session is regenerated, its
//!   data kept).
//! - `POST /logout` signs you out.
//!
//! Configuration: the variables of the gateway function without
//! `ORIGIN_URL` (`SESSION_SECRETS`, `UPSTASH_REDIS_REST_URL`,
//! `UPSTASH_REDIS_REST_TOKEN`, or references to secrets such as
//! `SESSION_SECRETS_SECRET_ID`).
//!
//! Run it locally with
//! `cargo lambda watch --manifest-path functions/aws-lambda-example/Cargo.toml --env-file ENV`
//! (from the workspace root, whose own package would otherwise be the one
//! run) and `curl http://127.0.0.1:9000/lambda-url/edge-session-lambda-example/`;
//! `scripts/test-lambda` does exactly this.

#![forbid(unsafe_code)]

use std::sync::Arc;

use edge_session::Logout;
use edge_session_lambda::{Env, Sessions, http_client, init_logging, store, with_sessions};
use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use serde_json::json;

async fn handler(request: Request) -> Result<Response<Body>, Error> {
    let session = Sessions::of(&request);
    // The path as the application sees it: no API Gateway stage.
    let path = edge_session_lambda::app_path(&request);
    let body = match (request.method().as_str(), path.as_str()) {
        ("GET", "/") => {
            let visits = session.get::<i64>("visits")?.unwrap_or(0) + 1;
            session.incr("visits", 1)?; // atomic in Redis, applied after the handler
            json!({ "user": session.user(), "visits": visits })
        }
        ("POST", "/login") => {
            let user = request
                .query_string_parameters_ref()
                .and_then(|q| q.first("user").map(str::to_owned))
                .unwrap_or_default();
            if user.is_empty() {
                return json_response(400, &json!({ "error": "?user=NAME is required" }));
            }
            session.login(user.clone());
            json!({ "signed_in": user })
        }
        ("POST", "/logout") => {
            session.logout(Logout::Current);
            json!({ "signed_out": true })
        }
        _ => return json_response(404, &json!({ "error": "not found" })),
    };
    json_response(200, &body)
}

fn json_response(status: u16, body: &serde_json::Value) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Body::from(body.to_string()))?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    init_logging();
    // Once per execution environment: one HTTP client, secrets read, store built.
    let client = http_client()?;
    let env = Env::load(&client).await?;
    let store = Arc::new(store(&env, &client).await?);
    lambda_http::run(with_sessions(store, service_fn(handler))).await
}
