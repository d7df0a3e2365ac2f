//! The request side of the header contract: what the gateway tells the origin about the session.

use axum::http::HeaderMap;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};

/// Non-secret handle of the session (64 hex chars).
pub(crate) const SESSION_ID: &str = "x-session-id";
/// The bound user id, percent-encoded (controls, `%`, non-ASCII).
pub(crate) const SESSION_USER: &str = "x-session-user";
/// The session's fields as an ASCII-only JSON object.
pub(crate) const SESSION_DATA: &str = "x-session-data";
/// Sent instead of `x-session-data` when the data is too large for a header: its size in bytes.
pub(crate) const SESSION_DATA_OMITTED: &str = "x-session-data-omitted";
/// Every header of the contract starts with this.
pub(crate) const PREFIX: &str = "x-session-";

/// Bytes escaped in a user id: controls and `%` (so decoding is exact); every non-ASCII byte
/// is always escaped too.
const USER_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// What the gateway says about the visitor's session. Built defensively: a missing, repeated or
/// malformed header counts as absent, never as an error.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionView {
    /// `x-session-id`, if present.
    pub(crate) id: Option<String>,
    /// `x-session-user`, decoded, if present and not empty.
    pub(crate) user: Option<String>,
    /// `x-session-data` when it is a JSON object; `None` when missing or invalid.
    pub(crate) data: Option<Map<String, Value>>,
    /// The gateway left the data out (too large for a header): it exists but cannot be read.
    pub(crate) data_omitted: bool,
}

impl SessionView {
    /// Reads the three headers. Each must occur exactly once to count.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let id = single_utf8(headers, SESSION_ID)
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty());
        let user = single_utf8(headers, SESSION_USER)
            .map(|user| decode_user(user.trim()))
            .filter(|user| !user.is_empty());
        let data = single_utf8(headers, SESSION_DATA).and_then(|text| {
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Some(map),
                _ => None,
            }
        });
        let data_omitted = data.is_none() && headers.contains_key(SESSION_DATA_OMITTED);
        Self {
            id,
            user,
            data,
            data_omitted,
        }
    }

    /// A field of the session data.
    pub(crate) fn field(&self, name: &str) -> Option<&Value> {
        self.data.as_ref().and_then(|data| data.get(name))
    }

    /// The `counter` field; 0 when missing or not an integer.
    pub(crate) fn counter(&self) -> i64 {
        self.field("counter").and_then(Value::as_i64).unwrap_or(0)
    }

    /// The `cart` field; empty when missing or not an array. Items are kept as stored.
    pub(crate) fn cart(&self) -> Vec<Value> {
        match self.field("cart") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        }
    }
}

/// The header's value if it occurs exactly once and is UTF-8.
fn single_utf8<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    std::str::from_utf8(first.as_bytes()).ok()
}

/// Decodes `x-session-user`: the gateway percent-encodes controls, `%` and every non-ASCII
/// byte, so decoding is exact. A value that does not decode to UTF-8 is kept as sent.
pub(crate) fn decode_user(raw: &str) -> String {
    match percent_decode_str(raw).decode_utf8() {
        Ok(decoded) => decoded.into_owned(),
        Err(_) => raw.to_owned(),
    }
}

/// Encodes a user id for `x-session-login` by the same rule as the gateway's `x-session-user`
/// (controls, `%` and non-ASCII percent-encoded), so any id fits in a header and decodes back
/// exactly. Printable ASCII without `%` goes out unchanged.
pub(crate) fn encode_user(user: &str) -> String {
    utf8_percent_encode(user, USER_ESCAPES).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn user_ids_round_trip() {
        for user in [
            "alice",
            "José",
            "100%",
            "José 100%",
            "名前",
            "a b",
            "<b>&",
            "a\nb",
            "%C3%A9",
        ] {
            let encoded = encode_user(user);
            assert!(
                encoded.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{encoded}"
            );
            assert_eq!(decode_user(&encoded), user, "{user}");
        }
        assert_eq!(encode_user("alice <b>"), "alice <b>");
        assert_eq!(encode_user("José 100%"), "Jos%C3%A9 100%25");
        // What does not decode to UTF-8 is kept as sent.
        assert_eq!(decode_user("%FF%FE"), "%FF%FE");
        assert_eq!(decode_user("100%"), "100%");
    }

    #[test]
    fn bad_or_repeated_headers_are_absent() {
        let mut headers = HeaderMap::new();
        headers.insert(SESSION_DATA, HeaderValue::from_static("[1,2]"));
        assert!(SessionView::from_headers(&headers).data.is_none());
        headers.insert(SESSION_DATA, HeaderValue::from_static("{\"a\":"));
        assert!(SessionView::from_headers(&headers).data.is_none());
        headers.insert(
            SESSION_DATA,
            HeaderValue::from_static("{\"cart\":\"x\",\"counter\":\"7\"}"),
        );
        let view = SessionView::from_headers(&headers);
        assert!(view.cart().is_empty());
        assert_eq!(view.counter(), 0);
        headers.append(SESSION_DATA, HeaderValue::from_static("{}"));
        assert!(SessionView::from_headers(&headers).data.is_none());
        if let Ok(value) = HeaderValue::from_bytes(b"\xff\xfe") {
            headers.insert(SESSION_USER, value);
        }
        assert!(SessionView::from_headers(&headers).user.is_none());
        headers.insert(SESSION_USER, HeaderValue::from_static("Jos%C3%A9"));
        assert_eq!(
            SessionView::from_headers(&headers).user.as_deref(),
            Some("José")
        );
    }
}
