//! Tests of the demo origin: routes in process (`oneshot`), a real listener, and the binary.

mod api;
mod app;
mod binary;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

/// A 64-hex session handle as the gateway sends it.
const SID: &str = "5f1d3c0e9a8b7c6d5e4f30211203f4e5d6c7b8a9f0e1d2c3b4a5968778695a4b";

/// One request through the whole router, in process.
async fn send(request: Request<Body>) -> Response<Body> {
    match demo_origin::router().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// `GET path` with these headers.
async fn get(path: &str, headers: &[(&str, &str)]) -> Response<Body> {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request.body(Body::empty()).expect("request")).await
}

/// A form `POST` with these headers.
async fn post_form(path: &str, form: &str, headers: &[(&str, &str)]) -> Response<Body> {
    let mut request =
        Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request.body(Body::from(form.to_owned())).expect("request")).await
}

/// The body as text.
async fn text(response: Response<Body>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

/// The body as JSON.
async fn json(response: Response<Body>) -> serde_json::Value {
    let body = text(response).await;
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

/// A header's single value as text, if present.
fn header<'r>(headers: &'r HeaderMap, name: &str) -> Option<&'r str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    assert!(values.next().is_none(), "{name} sent more than once");
    Some(value.to_str().expect("ASCII header"))
}

/// Names of the `x-session-*` instruction headers of a response.
fn instruction_names(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("x-session-"))
        .collect()
}

/// Asserts a `303 See Other` to `/` carrying exactly this one instruction.
fn assert_back_home_with(response: &Response<Body>, name: &str, value: &str) {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(response.headers(), "location"), Some("/"));
    assert_eq!(header(response.headers(), name), Some(value), "{name}");
    assert_eq!(instruction_names(response.headers()), [name]);
}
