//! Redis replies as Upstash puts them in JSON.
//!
//! - nil is `null`, integers are numbers, every string kind (bulk, status, verbatim, big number,
//!   RESP3 double) is a JSON string, arrays nest with `null` elements allowed;
//! - RESP3 maps and sets are flattened to arrays, as RESP2 sends them, booleans become `1`/`0`;
//! - with `Upstash-Encoding: base64` every string is base64 (standard alphabet, padded), except
//!   an `OK` status reply at the top level of a command's result; without it, bytes that are not
//!   UTF-8 are replaced by U+FFFD.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use redis::{ServerError, Value};
use serde_json::{Value as Json, json};

/// How strings in results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// UTF-8, invalid sequences replaced by U+FFFD.
    Lossy,
    /// Base64, standard alphabet, padded.
    Base64,
}

impl Encoding {
    fn string(self, bytes: &[u8]) -> Json {
        match self {
            Self::Lossy => Json::String(String::from_utf8_lossy(bytes).into_owned()),
            Self::Base64 => Json::String(STANDARD.encode(bytes)),
        }
    }
}

/// The text of a server error as Redis sent it, e.g. `ERR unknown command 'x'`.
pub(crate) fn error_text(err: &ServerError) -> String {
    match err.details() {
        Some(details) => format!("{} {}", err.code(), details),
        None => err.code().to_owned(),
    }
}

/// The `result` of one command: `value` is its reply (not an error).
pub(crate) fn result(value: Value, encoding: Encoding) -> Json {
    match value {
        // The top-level OK exemption: the official clients test for the literal "OK".
        Value::Okay => Json::String("OK".to_owned()),
        Value::SimpleString(text) if text == "OK" => Json::String(text),
        other => nested(other, encoding),
    }
}

fn nested(value: Value, encoding: Encoding) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Int(int) => json!(int),
        Value::BulkString(bytes) => encoding.string(&bytes),
        Value::SimpleString(text) => encoding.string(text.as_bytes()),
        Value::Okay => encoding.string(b"OK"),
        Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
            Json::Array(items.into_iter().map(|v| nested(v, encoding)).collect())
        }
        Value::Map(pairs) => Json::Array(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [nested(k, encoding), nested(v, encoding)])
                .collect(),
        ),
        Value::Attribute { data, .. } => nested(*data, encoding),
        Value::Double(double) => encoding.string(double_text(double).as_bytes()),
        Value::Boolean(flag) => json!(i64::from(flag)),
        Value::VerbatimString { text, .. } => encoding.string(text.as_bytes()),
        Value::BigNumber(digits) => encoding.string(&digits),
        // An error inside an array (a script returning a table holding an error reply):
        // errors are never encoded.
        Value::ServerError(err) => Json::String(error_text(&err)),
        // `Value` is non-exhaustive: a reply kind added later shows up as its debug text.
        other => encoding.string(format!("{other:?}").as_bytes()),
    }
}

/// A RESP3 double as Redis writes it in RESP2 (`inf`, `-inf`, `nan`, shortest round-trip text).
fn double_text(double: f64) -> String {
    if double.is_nan() {
        "nan".to_owned()
    } else if double.is_infinite() {
        if double > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        double.to_string()
    }
}

/// One item of a `/pipeline` or `/multi-exec` answer: `{"result": ..}` or `{"error": ..}`.
pub(crate) fn item(value: Value, encoding: Encoding) -> Json {
    match value {
        Value::ServerError(err) => json!({ "error": error_text(&err) }),
        other => json!({ "result": result(other, encoding) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn lossy_mapping() {
        let value = Value::Array(vec![
            b("héllo"),
            Value::Nil,
            Value::Int(-7),
            Value::Array(vec![Value::BulkString(vec![b'a', 0xff, b'b']), Value::Okay]),
            Value::Double(1.5),
            Value::Boolean(true),
            Value::Map(vec![(b("f"), b("v"))]),
        ]);
        assert_eq!(
            result(value, Encoding::Lossy),
            json!([
                "héllo",
                null,
                -7,
                ["a\u{fffd}b", "OK"],
                "1.5",
                1,
                ["f", "v"]
            ])
        );
    }

    #[test]
    fn base64_everything_but_top_level_ok() {
        assert_eq!(result(Value::Okay, Encoding::Base64), json!("OK"));
        assert_eq!(
            result(Value::SimpleString("OK".into()), Encoding::Base64),
            json!("OK")
        );
        assert_eq!(
            result(Value::SimpleString("PONG".into()), Encoding::Base64),
            json!("UE9ORw==")
        );
        // A stored value "OK" is a bulk string: encoded.
        assert_eq!(result(b("OK"), Encoding::Base64), json!("T0s="));
        assert_eq!(
            result(
                Value::Array(vec![Value::Okay, b("ab"), Value::Int(1), Value::Nil]),
                Encoding::Base64
            ),
            json!(["T0s=", "YWI=", 1, null])
        );
        assert_eq!(
            result(Value::BulkString(vec![0xff, 0xfe]), Encoding::Base64),
            json!("//4=")
        );
    }

    #[test]
    fn doubles() {
        assert_eq!(double_text(f64::INFINITY), "inf");
        assert_eq!(double_text(f64::NEG_INFINITY), "-inf");
        assert_eq!(double_text(3.0), "3");
        assert_eq!(double_text(0.1), "0.1");
    }
}
