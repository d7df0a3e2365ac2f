//! Cookie parsing and verification (`edge_session::cookie`).
//!
//! Input: the first byte picks a mode (`b'0'..=b'3'` in the seeds, any byte
//! modulo 4), the rest is its data:
//!
//! - `0`: the rest as one cookie value for [`CookieCodec::verify`];
//! - `1`: the rest as a whole `Cookie` request header for
//!   [`CookieCodec::from_header`];
//! - `2`: round trip: 32 bytes of token secret (zero-padded), a flags byte
//!   (bit 0: bound to a user, bit 1: signed by the old key, bit 2: tamper), a
//!   tamper position and byte, then the user id: the signed cookie must verify
//!   to the same token, and a changed cookie must not;
//! - `3`: the rest as a `SESSION_SECRETS` key ring spec for [`KeyRing::parse`].
//!
//! Invariants: nothing panics; a value that verifies is the canonical
//! signature of its token (no second cookie for one session); a token signed
//! by an old key verifies and asks to be re-signed.
#![no_main]

use edge_session::fuzzing;
use edge_session::{CookieCodec, CookieConfig, KeyRing, SessionToken, UserTag};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

/// Two keys: `new` signs, `old` only verifies (a rotation in progress).
const RING: &str = "new:bmV3LWtleS1mb3ItZnV6emluZy0zMi1ieXRlcy1sb25nLSE=,\
                    old:b2xkLWtleS1mb3ItZnV6emluZy0zMi1ieXRlcy1sb25nLSEh";
const OLD: &str = "old:b2xkLWtleS1mb3ItZnV6emluZy0zMi1ieXRlcy1sb25nLSEh";

struct Codecs {
    /// The ring in use: `new` then `old`.
    rotated: CookieCodec,
    /// Before the rotation: `old` alone.
    old: CookieCodec,
}

static CODECS: LazyLock<Codecs> = LazyLock::new(|| {
    let codec = |spec: &str| {
        CookieCodec::new(
            CookieConfig::default(),
            KeyRing::parse(spec).expect("fixed key ring"),
        )
        .expect("default cookie config")
    };
    Codecs {
        rotated: codec(RING),
        old: codec(OLD),
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => verify(&String::from_utf8_lossy(rest)),
        1 => header(&String::from_utf8_lossy(rest)),
        2 => round_trip(rest),
        _ => key_ring(&String::from_utf8_lossy(rest)),
    }
});

/// A value that verifies must be the one the codec would write for its
/// token; one that asks to be re-signed (an older key, or a signature made
/// before the deployment was part of it) must verify cleanly once re-signed.
fn verify(value: &str) {
    let codecs = &*CODECS;
    let Some(verified) = codecs.rotated.verify(value) else {
        return;
    };
    if verified.needs_resign {
        let resigned = codecs.rotated.sign(&verified.token);
        let again = codecs
            .rotated
            .verify(&resigned)
            .expect("a re-signed cookie verifies");
        assert!(
            !again.needs_resign,
            "a re-signed cookie asks to be re-signed again"
        );
        assert_eq!(again.token, verified.token);
    } else {
        assert_eq!(
            codecs.rotated.sign(&verified.token),
            value,
            "a second valid cookie for one token"
        );
    }
}

fn header(header: &str) {
    let codecs = &*CODECS;
    if let Some(found) = codecs.rotated.from_header(header) {
        // Whatever it picked verifies again once re-signed.
        let resigned = codecs.rotated.sign(&found.token);
        let again = codecs
            .rotated
            .verify(&resigned)
            .expect("re-signed cookie verifies");
        assert_eq!(again.token, found.token);
        assert!(!again.needs_resign);
    }
}

fn round_trip(data: &[u8]) {
    let codecs = &*CODECS;
    let mut secret = [0u8; 32];
    let n = data.len().min(32);
    secret[..n].copy_from_slice(&data[..n]);
    let tail = data.get(32..).unwrap_or_default();
    let flags = tail.first().copied().unwrap_or(0);
    let position = usize::from(tail.get(1).copied().unwrap_or(0));
    let byte = tail.get(2).copied().unwrap_or(0);
    let user = String::from_utf8_lossy(tail.get(3..).unwrap_or_default());
    let user_tag = (flags & 1 != 0).then(|| UserTag::of(&user));
    let old_key = flags & 2 != 0;
    let token: SessionToken = fuzzing::token(secret, user_tag);

    let signer = if old_key {
        &codecs.old
    } else {
        &codecs.rotated
    };
    let value = signer.sign(&token);
    let verified = codecs
        .rotated
        .verify(&value)
        .expect("a signed cookie verifies");
    assert_eq!(verified.token, token);
    assert_eq!(verified.needs_resign, old_key);
    assert_eq!(verified.token.handle(), token.handle());

    let name = &codecs.rotated.config().name;
    let in_header = format!("theme=dark; {name}={value}; other=1");
    let found = codecs
        .rotated
        .from_header(&in_header)
        .expect("found in a Cookie header");
    assert_eq!(found.token, token);
    let set_cookie = codecs.rotated.set_cookie(&token, u64::from(flags));
    assert!(set_cookie.starts_with(&format!("{name}={};", codecs.rotated.sign(&token))));

    if flags & 4 != 0 && !value.is_empty() {
        let mut tampered = value.clone().into_bytes();
        let i = position % tampered.len();
        if tampered[i] != byte {
            tampered[i] = byte;
            if let Ok(tampered) = String::from_utf8(tampered) {
                assert!(
                    codecs.rotated.verify(&tampered).is_none(),
                    "a changed cookie verified: {tampered:?}"
                );
            }
        }
    }
}

fn key_ring(spec: &str) {
    let Ok(ring) = KeyRing::parse(spec) else {
        return;
    };
    let kids: Vec<String> = ring.kids().map(str::to_owned).collect();
    assert!(!kids.is_empty());
    assert_eq!(kids[0], ring.primary_kid());
    assert!(kids.iter().all(|k| {
        !k.is_empty()
            && k.len() <= 16
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }));
    let codec = CookieCodec::new(CookieConfig::default(), ring).expect("default config");
    let token = fuzzing::token([7; 32], None);
    let value = codec.sign(&token);
    assert!(value.starts_with(&format!("{}.", kids[0])));
    assert_eq!(codec.verify(&value).expect("verifies").token, token);
}
