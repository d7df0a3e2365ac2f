//! What a careful reverse proxy does to the heads it passes on: request
//! paths in one canonical form, forwarding headers of its own, and personal
//! responses kept out of shared caches.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The forwarding headers a client could send to pass as someone else.
const FORWARDING: [HeaderName; 5] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// False for a path that a server behind the gateway could resolve to
/// another path than the one the gateway's prefix checks saw: a `.` or `..`
/// segment, an empty segment (`//`) but a trailing one, a backslash, or a
/// percent-encoded dot, slash or backslash.
pub(crate) fn path_is_canonical(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') {
        return false;
    }
    let encoded_separator = |w: &[u8]| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e' | b'f') | (b'5', b'c')
            )
    };
    if bytes.windows(3).any(encoded_separator) {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Makes the forwarding headers the gateway's own. Unless `trust` (a proxy
/// of the operator's sits in front and sets them), a client's
/// `X-Forwarded-*`, `Forwarded` and `X-Real-IP` are removed first. Then
/// `X-Forwarded-For` ends with `client` (appended, as proxies do), and
/// `X-Forwarded-Proto` and `X-Forwarded-Host` are set from the request
/// (kept as the trusted proxy sent them when `trust`).
pub(crate) fn set_forwarding(
    headers: &mut HeaderMap,
    client: Option<IpAddr>,
    proto: &str,
    host: Option<HeaderValue>,
    trust: bool,
) {
    if !trust && headers.keys().any(|name| FORWARDING.contains(name)) {
        for name in &FORWARDING {
            headers.remove(name);
        }
    }
    let xff = X_FORWARDED_FOR;
    if let Some(ip) = client {
        let mut chain = String::new();
        for before in headers.get_all(&xff).iter().filter_map(|v| v.to_str().ok()) {
            chain.push_str(before);
            chain.push_str(", ");
        }
        push_ip(&mut chain, ip);
        if let Ok(value) = HeaderValue::from_str(&chain) {
            headers.insert(xff, value);
        }
    }
    let proto_name = X_FORWARDED_PROTO;
    if !headers.contains_key(&proto_name)
        && let Ok(value) = HeaderValue::from_str(proto)
    {
        headers.insert(proto_name, value);
    }
    let host_name = X_FORWARDED_HOST;
    if let Some(host) = host
        && !headers.contains_key(&host_name)
    {
        headers.insert(host_name, host);
    }
}

/// Appends `ip` as text (an IPv4 address without `fmt`, which is slow).
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Keeps a personal response out of shared caches: `Cache-Control` gets
/// `private` (and loses `public`, `s-maxage` and `proxy-revalidate`, which
/// speak to shared caches; `no-store`, `max-age` and the rest stay), and
/// `Vary` gets `Cookie`.
pub(crate) fn mark_private(headers: &mut HeaderMap) {
    let mut directives: Vec<String> = vec!["private".to_owned()];
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let name = directive
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !matches!(
                name.as_str(),
                "public" | "private" | "s-maxage" | "proxy-revalidate"
            ) {
                directives.push(directive.to_owned());
            }
        }
    }
    if let Ok(value) = HeaderValue::from_str(&directives.join(", ")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    let vary: Vec<String> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if vary
        .iter()
        .any(|v| v == "*" || v.eq_ignore_ascii_case("cookie"))
    {
        return;
    }
    let mut vary = vary;
    vary.push("Cookie".to_owned());
    if let Ok(value) = HeaderValue::from_str(&vary.join(", ")) {
        headers.insert(header::VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_paths_pass() {
        for ok in ["/", "/a", "/a/b/", "/static/app.js", "/a.b/..c", "/%41"] {
            assert!(path_is_canonical(ok), "{ok}");
        }
        for bad in [
            "/static/../admin",
            "/static/%2e%2e/admin",
            "/static/%2E%2e/admin",
            "//admin",
            "/a//b",
            "/./a",
            "/a/..",
            "/a%2fb",
            "/a\\b",
            "",
        ] {
            assert!(!path_is_canonical(bad), "{bad}");
        }
    }

    #[test]
    fn forwarding_headers_are_the_gateways() {
        let client: IpAddr = "192.0.2.7".parse().unwrap_or_else(|e| panic!("{e}"));
        let spoofed = || {
            let mut h = HeaderMap::new();
            for (name, value) in [
                ("x-forwarded-for", "6.6.6.6"),
                ("forwarded", "for=6.6.6.6"),
                ("x-real-ip", "6.6.6.6"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
            ] {
                h.insert(name, HeaderValue::from_static(value));
            }
            h
        };
        let mut h = spoofed();
        set_forwarding(
            &mut h,
            Some(client),
            "http",
            Some(HeaderValue::from_static("shop.example")),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert!(h.get("forwarded").is_none() && h.get("x-real-ip").is_none());
        let mut trusted = spoofed();
        set_forwarding(&mut trusted, Some(client), "http", None, true);
        assert_eq!(trusted["x-forwarded-for"], "6.6.6.6, 192.0.2.7");
        assert_eq!(trusted["x-forwarded-proto"], "https");
        assert_eq!(trusted["forwarded"], "for=6.6.6.6");
        let mut bare = spoofed();
        set_forwarding(&mut bare, None, "https", None, false);
        assert!(bare.get("x-forwarded-for").is_none() && bare.get("x-forwarded-host").is_none());
    }

    #[test]
    fn personal_responses_are_private_and_vary_on_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600, s-maxage=900"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        mark_private(&mut h);
        assert_eq!(h[header::CACHE_CONTROL], "private, max-age=600");
        assert_eq!(h[header::VARY], "Accept-Encoding, Cookie");
        let mut no_store = HeaderMap::new();
        no_store.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        no_store.insert(header::VARY, HeaderValue::from_static("cookie"));
        mark_private(&mut no_store);
        assert_eq!(no_store[header::CACHE_CONTROL], "private, no-store");
        assert_eq!(no_store[header::VARY], "cookie");
        let mut none = HeaderMap::new();
        mark_private(&mut none);
        assert_eq!(none[header::CACHE_CONTROL], "private");
        assert_eq!(none[header::VARY], "Cookie");
    }
}
