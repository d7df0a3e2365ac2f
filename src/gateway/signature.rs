//! Origin authentication: with `SESSION_ORIGIN_SECRET` set, every request
//! the gateway sends to the origin carries
//!
//! ```text
//! x-session-signature: t=<unix seconds>,v1=<64 hex digits>
//! ```
//!
//! the HMAC-SHA256, keyed with the secret, of
//!
//! ```text
//! edge-session-v1\n<METHOD>\n<path and query as sent to the origin>\n<t>\n
//! <name>:<value>\n   (one line per x-session-* header sent, names sorted, the signature itself left out)
//! ```
//!
//! The origin recomputes it with [`verify`] (or the Node and Python snippets
//! in the README) and refuses a request whose signature is missing, wrong or
//! older than its replay window ([`DEFAULT_WINDOW`]). A client cannot forge
//! one without the secret, cannot move one to another method, path or
//! identity, and cannot reuse one after the window. Without a secret, the
//! origin must be reachable only through the gateway (firewall, Cloudflare
//! Tunnel or mTLS, a private VPC).

use std::time::Duration;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

use super::headers::is_session_header;
use crate::error::{Error, Result};

/// The request header that carries the signature.
pub const SIGNATURE: &str = "x-session-signature";

/// The replay window [`verify`] allows by default: a signature is accepted
/// up to 60 s after it was made (and 60 s before, for clock skew).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

type HmacSha256 = Hmac<Sha256>;

/// The HMAC over the canonical text of a request head.
fn mac(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    t: u64,
    headers: &HeaderMap,
) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(format!("edge-session-v1\n{method}\n{path_and_query}\n{t}\n").as_bytes());
    let mut names: Vec<&str> = headers
        .keys()
        .filter(|name| is_session_header(name) && name.as_str() != SIGNATURE)
        .map(http::HeaderName::as_str)
        .collect();
    names.sort_unstable();
    for name in names {
        mac.update(name.as_bytes());
        mac.update(b":");
        for (i, value) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                mac.update(b", ");
            }
            mac.update(value.as_bytes());
        }
        mac.update(b"\n");
    }
    mac
}

/// The `x-session-signature` value for a request head made at `t` (Unix
/// seconds).
pub fn sign(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    t: u64,
    headers: &HeaderMap,
) -> String {
    let tag = mac(secret, method, path_and_query, t, headers)
        .finalize()
        .into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// Checks the `x-session-signature` of a request head the origin received:
/// `now` is the origin's clock (Unix seconds), `window` the replay window.
/// [`Error::Signature`] says why a request is refused.
pub fn verify(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    now: u64,
    window: Duration,
) -> Result<()> {
    let refuse = |reason: &'static str| Err(Error::Signature { reason });
    let mut values = headers.get_all(SIGNATURE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return refuse("missing, or sent more than once");
    };
    let Some((t, tag)) = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("t="))
        .and_then(|v| v.split_once(",v1="))
    else {
        return refuse("malformed");
    };
    let (Ok(t), Ok(tag)) = (t.parse::<u64>(), hex::decode(tag)) else {
        return refuse("malformed");
    };
    if now.abs_diff(t) > window.as_secs() {
        return refuse("outside the replay window");
    }
    match mac(secret, method, path_and_query, t, headers).verify_slice(&tag) {
        Ok(()) => Ok(()),
        Err(_) => refuse("does not match"),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn signed(t: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-session-user", HeaderValue::from_static("alice"));
        h.insert("x-session-id", HeaderValue::from_static("abc"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        let sig = sign(SECRET, "GET", "/a?b=1", t, &h);
        h.insert(
            SIGNATURE,
            HeaderValue::from_str(&sig).unwrap_or_else(|e| panic!("{e}")),
        );
        h
    }

    fn check(h: &HeaderMap, method: &str, path: &str, now: u64) -> std::result::Result<(), String> {
        verify(SECRET, method, path, h, now, DEFAULT_WINDOW).map_err(|e| e.to_string())
    }

    #[test]
    fn a_signed_head_verifies_and_every_change_is_refused() {
        let h = signed(1_000_000);
        assert_eq!(check(&h, "GET", "/a?b=1", 1_000_030), Ok(()));
        assert!(
            check(&h, "POST", "/a?b=1", 1_000_000).is_err_and(|e| e.contains("does not match"))
        );
        assert!(check(&h, "GET", "/a?b=2", 1_000_000).is_err());
        assert!(check(&h, "GET", "/a?b=1", 1_000_061).is_err_and(|e| e.contains("replay window")));
        let mut other_user = h.clone();
        other_user.insert("x-session-user", HeaderValue::from_static("admin"));
        assert!(check(&other_user, "GET", "/a?b=1", 1_000_000).is_err());
        let mut added = h.clone();
        added.insert("x-session-data", HeaderValue::from_static("{}"));
        assert!(check(&added, "GET", "/a?b=1", 1_000_000).is_err());
        let mut removed = h.clone();
        removed.remove("x-session-id");
        assert!(check(&removed, "GET", "/a?b=1", 1_000_000).is_err());
        // Other headers may change on the way (proxies add their own).
        let mut proxied = h.clone();
        proxied.insert("via", HeaderValue::from_static("1.1 cdn"));
        assert_eq!(check(&proxied, "GET", "/a?b=1", 1_000_000), Ok(()));
        let none = HeaderMap::new();
        assert!(check(&none, "GET", "/", 0).is_err_and(|e| e.contains("missing")));
        let mut bad = HeaderMap::new();
        bad.insert(SIGNATURE, HeaderValue::from_static("t=x,v1=zz"));
        assert!(check(&bad, "GET", "/", 0).is_err_and(|e| e.contains("malformed")));
    }

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // The README's Node and Python snippets compute this same value.
        let mut h = HeaderMap::new();
        h.insert("x-session-user", HeaderValue::from_static("alice"));
        let expected = {
            let mut mac = HmacSha256::new_from_slice(SECRET).unwrap_or_else(|e| panic!("{e}"));
            mac.update(b"edge-session-v1\nGET\n/\n7\nx-session-user:alice\n");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(
            sign(SECRET, "GET", "/", 7, &h),
            format!("t=7,v1={expected}")
        );
    }
}
