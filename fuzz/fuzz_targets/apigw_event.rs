//! API Gateway and Function URL event parsing (`edge_session_lambda::event`).
//!
//! Input: the invocation's event JSON, as the Lambda runtime hands it over:
//! REST API (payload 1.0), HTTP API (payload 2.0) or Function URL events, or
//! anything else.
//!
//! Invariants: [`parse_event`] returns a request or a [`BadEvent`] (answered
//! 400), never a panic, also not one inside `lambda_http` that its
//! `catch_unwind` would hide (libFuzzer's panic hook aborts on any panic, and
//! release Lambda builds abort on panic too); the kind it reports is the one
//! the JSON announces; the accepted request converts to the gateway's request
//! with a path that starts with `/`; a response encodes in the event's
//! format.
#![no_main]

use edge_session_lambda::event::{EventKind, encode_response, parse_event, to_gateway_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let announced = EventKind::from_event(&event);
    let Ok((kind, request)) = parse_event(event) else {
        return;
    };
    assert_eq!(Some(kind), announced);
    assert_eq!(EventKind::of(&request), Some(kind));
    let Ok(request) = to_gateway_request(request) else {
        return;
    };
    assert!(request.uri().path().starts_with('/'), "{}", request.uri());
    assert!(!request.headers().contains_key(http::header::CONTENT_LENGTH));

    let response = http::Response::builder()
        .header("set-cookie", "a=1")
        .header("set-cookie", "b=2")
        .body(request.into_body())
        .expect("a valid response");
    let encoded = encode_response(Some(kind), response);
    match kind {
        EventKind::RestApi => assert_eq!(
            encoded["multiValueHeaders"]["set-cookie"]
                .as_array()
                .map(Vec::len),
            Some(2)
        ),
        EventKind::HttpApi => assert_eq!(encoded["cookies"].as_array().map(Vec::len), Some(2)),
    }
});
