//! Header values as JavaScript holds them: ByteStrings, one char per byte
//! (`0x00..=0xFF`), mapped to bytes and back as latin-1 so that a value that
//! is not UTF-8 passes the Worker unchanged.

/// The bytes of a ByteString, one per char, or `None` when a char is over
/// `0xFF` (not a ByteString).
pub fn latin1_bytes(text: &str) -> Option<Vec<u8>> {
    text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// The ByteString of `bytes`: one char per byte.
pub fn latin1_string(bytes: &[u8]) -> String {
    bytes.iter().copied().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_char_per_byte_both_ways() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        let text = latin1_string(&bytes);
        assert_eq!(text.chars().count(), 256);
        assert_eq!(latin1_bytes(&text), Some(bytes));
        // UTF-8 bytes stay bytes: "é" sent as C3 A9 is two chars, and back.
        assert_eq!(latin1_string("é".as_bytes()), "\u{c3}\u{a9}");
        assert_eq!(latin1_bytes("\u{c3}\u{a9}"), Some("é".as_bytes().to_vec()));
        assert_eq!(latin1_bytes("caf\u{e9}"), Some(b"caf\xe9".to_vec()));
        assert_eq!(latin1_bytes("\u{100}"), None);
    }
}
