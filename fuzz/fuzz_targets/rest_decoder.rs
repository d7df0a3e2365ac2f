//! The REST backend's response decoder (`edge_session::backend::rest`).
//!
//! Input: three header bytes, then the response body. Byte 0 modulo 4 picks
//! the shape (`0` single command, `1` pipeline, `2` multi-exec, `3` a
//! base64 round trip of the body), byte 1 modulo 8 the HTTP status (`0`: 200,
//! `1`: 400, `2`: 401, `3`: 500, `4`: 503, `5`: 404, `6`: 429, `7`: 302),
//! byte 2 modulo 16 the number of replies expected. ASCII digits select the
//! same way (`b'0' % 4 == 0`), so seeds read like `010{"result":"OK"}`.
//!
//! Invariants: the decoder returns replies or a typed error, never a panic;
//! a batch decodes to exactly the expected number of replies, a single
//! command to one; 401 is always `Unauthorized`, 5xx never decodes; any bytes
//! Upstash sends base64-encoded come back unchanged.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use edge_session::Error;
use edge_session::backend::Value;
use edge_session::fuzzing::{RestRoute, decode_rest_response};
use libfuzzer_sys::fuzz_target;

const STATUS: [u16; 8] = [200, 400, 401, 500, 503, 404, 429, 302];

fuzz_target!(|data: &[u8]| {
    let [shape, status, expected, body @ ..] = data else {
        return;
    };
    let status = STATUS[usize::from(status % 8)];
    let expected = usize::from(expected % 16);
    let route = match shape % 4 {
        0 => RestRoute::Single,
        1 => RestRoute::Pipeline,
        2 => RestRoute::MultiExec,
        _ => return round_trip(body),
    };
    let result = decode_rest_response(route, status, body, expected);
    match &result {
        Ok(replies) => {
            assert!(status == 200 || status == 400, "decoded a {status}");
            match route {
                RestRoute::Single => assert_eq!(replies.len(), 1),
                _ => assert_eq!(replies.len(), expected),
            }
        }
        Err(Error::Unauthorized) => assert_eq!(status, 401),
        Err(e) => {
            assert_ne!(status, 401);
            if status >= 500 {
                assert!(e.is_retryable(), "a {status} is retryable: {e:?}");
            }
        }
    }
});

/// Arbitrary bytes, encoded as Upstash does, decode to themselves, alone, in
/// an array, and in a pipeline answer.
fn round_trip(bytes: &[u8]) {
    let encoded = serde_json::Value::String(STANDARD.encode(bytes));
    let single = serde_json::json!({ "result": encoded }).to_string();
    let replies = decode_rest_response(RestRoute::Single, 200, single.as_bytes(), 1)
        .expect("an encoded string decodes");
    assert_eq!(replies, vec![Ok(Value::Bytes(bytes.to_vec()))]);

    let batch = serde_json::json!([
        { "result": [encoded, null, 1] },
        { "error": "ERR x" },
    ])
    .to_string();
    let replies = decode_rest_response(RestRoute::Pipeline, 200, batch.as_bytes(), 2)
        .expect("an encoded batch decodes");
    assert_eq!(
        replies[0],
        Ok(Value::Array(vec![
            Value::Bytes(bytes.to_vec()),
            Value::Nil,
            Value::Int(1)
        ]))
    );
    assert!(replies[1].is_err());
}
