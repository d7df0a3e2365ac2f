//! The response side of the header contract: instructions the gateway applies and strips.

use std::fmt::Write as _;

use axum::http::{HeaderName, HeaderValue, header::InvalidHeaderValue};
use serde_json::Value;

use crate::session::encode_user;

/// `{"field": value, ...}`: write fields; `null` deletes one.
pub(crate) const SESSION_SET: HeaderName = HeaderName::from_static("x-session-set");
/// `{"field": n, ...}`: atomic integer increments.
pub(crate) const SESSION_INCR: HeaderName = HeaderName::from_static("x-session-incr");
/// `<user id>`: sign in (create or regenerate the session and bind the user).
pub(crate) const SESSION_LOGIN: HeaderName = HeaderName::from_static("x-session-login");
/// `current` or `all`.
pub(crate) const SESSION_LOGOUT: HeaderName = HeaderName::from_static("x-session-logout");

/// Instruction headers of one response, in the order they are sent.
#[derive(Debug, Default)]
pub(crate) struct Instructions {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Instructions {
    /// `x-session-set` with this JSON (normally an object).
    pub(crate) fn set(mut self, fields: &Value) -> Self {
        self.headers.push((SESSION_SET, json_header(fields)));
        self
    }

    /// `x-session-incr` with this JSON (normally an object of integers).
    pub(crate) fn incr(mut self, fields: &Value) -> Self {
        self.headers.push((SESSION_INCR, json_header(fields)));
        self
    }

    /// `x-session-login`, the user id percent-encoded when it is not plain ASCII (the rule of
    /// `x-session-user`).
    pub(crate) fn login(mut self, user: &str) -> Result<Self, InvalidHeaderValue> {
        let value = HeaderValue::try_from(encode_user(user))?;
        self.headers.push((SESSION_LOGIN, value));
        Ok(self)
    }

    /// `x-session-logout` with this value, verbatim.
    pub(crate) fn logout(mut self, scope: &str) -> Result<Self, InvalidHeaderValue> {
        self.headers
            .push((SESSION_LOGOUT, HeaderValue::try_from(scope)?));
        Ok(self)
    }

    /// Any header, verbatim (for malformed instructions in tests).
    pub(crate) fn raw(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The headers, in order.
    pub(crate) fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}

/// JSON as a header value: ASCII only, so it is always a valid header value.
fn json_header(value: &Value) -> HeaderValue {
    let text = ascii_json(value);
    // ascii_json only emits printable ASCII, which every header value may hold.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("null"))
}

/// Serializes JSON with every character outside printable ASCII escaped as `\uXXXX` (UTF-16,
/// surrogate pairs above the BMP). serde_json already escapes controls; DEL and non-ASCII can
/// only appear inside strings, where an escape means the same character.
pub(crate) fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    if text.bytes().all(|b| b < 0x7f) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if c < '\u{7f}' {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ascii_json_escapes_everything_outside_printable_ascii() {
        let value = json!({"cart": ["café", "😀", "a\u{7f}b", "tab\t", "<&>"], "ü": 1});
        let text = ascii_json(&value);
        assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text}");
        assert!(text.contains("caf\\u00e9"));
        assert!(text.contains("\\ud83d\\ude00"));
        assert!(text.contains("a\\u007fb"));
        assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(value));
        assert_eq!(ascii_json(&json!({"a": 1})), r#"{"a":1}"#);
    }
}
