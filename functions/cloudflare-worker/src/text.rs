//! Header values between `http` bytes and JavaScript strings.
//!
//! The Fetch standard makes header values ByteStrings (one char per byte,
//! latin-1), but workerd decodes the header bytes it receives as UTF-8 and
//! encodes the strings it sends as UTF-8: `c3 a9` reaches JavaScript as the
//! one char `é` (U+00E9), a byte that is not UTF-8 arrives as U+FFFD before
//! any Worker code runs, and U+00E9 leaves as `c3 a9`
//! (<https://github.com/cloudflare/workerd/issues/6927>). So:
//!
//! - from JavaScript, a value's bytes are the UTF-8 of its string: the bytes
//!   that were on the wire whenever they were UTF-8, and never a header left
//!   out (a char over U+00FF is no error);
//! - to JavaScript, UTF-8 bytes become that text (sent as the same bytes),
//!   and other bytes one char per byte (latin-1: the ByteString of the
//!   standard, which a runtime that follows it sends unchanged).
//!
//! Either way a value the Worker passes on leaves as it arrived.

use std::borrow::Cow;

/// The bytes of a header value JavaScript holds as `text`.
pub fn value_bytes(text: &str) -> &[u8] {
    text.as_bytes()
}

/// The JavaScript string of the header value `bytes`: the text when they
/// are UTF-8, else one char per byte.
pub fn value_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().copied().map(char::from).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_values_pass_as_text() {
        assert_eq!(value_text("café €".as_bytes()), "café €");
        assert_eq!(value_bytes("café €"), "café €".as_bytes());
        assert_eq!(value_text(b"plain"), "plain");
    }

    #[test]
    fn other_bytes_are_one_char_each() {
        let bytes: Vec<u8> = (0x80u8..=0xff).collect();
        let text = value_text(&bytes);
        assert_eq!(text.chars().count(), bytes.len());
        assert!(
            text.chars()
                .zip(&bytes)
                .all(|(c, b)| u32::from(c) == u32::from(*b))
        );
        assert_eq!(value_text(b"caf\xe9"), "caf\u{e9}");
    }
}
