//! The header work of the gateway: what is removed from and added to the
//! request head sent to the origin, and to the response head sent back.

use std::net::IpAddr;

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::instructions;
use super::respond::{ErrorCode, error_response};
use crate::error::Error;
use crate::session::{ClientInfo, Session};

/// Request header: the session's non-secret handle.
pub const SESSION_ID: &str = "x-session-id";
/// Request header: the bound user id.
pub const SESSION_USER: &str = "x-session-user";
/// Request header: the session fields as a JSON object.
pub const SESSION_DATA: &str = "x-session-data";
/// Request header sent instead of `x-session-data` when the data is larger
/// than the header limit: the size in bytes of the JSON that was left out.
pub const SESSION_DATA_OMITTED: &str = "x-session-data-omitted";

/// Request header sent to the origin, with the value `unavailable`, when the
/// store could not be reached and [`OutagePolicy::FailOpen`](super::OutagePolicy::FailOpen) let the request
/// through anonymous.
pub const SESSION_STORE: &str = "x-session-store";
/// Response header (to the client) listing the origin's instructions that
/// were not applied because the store was unavailable under
/// [`OutagePolicy::FailOpen`](super::OutagePolicy::FailOpen), e.g. `x-session-incr, x-session-set`.
pub const SESSION_DROPPED: &str = "x-session-dropped";

/// Largest `x-session-data` value sent to the origin.
pub const MAX_DATA_HEADER_BYTES: usize = 16 * 1024;

/// Largest total of a request's header names and values: past it the
/// gateway answers `431 headers_too_large` before any other work.
pub const MAX_REQUEST_HEADER_BYTES: usize = 32 * 1024;
/// Largest value of one `x-session-*` instruction header from the origin:
/// past it the response is `502 bad_session_instruction`, nothing applied.
pub const MAX_INSTRUCTION_BYTES: usize = 64 * 1024;
/// Largest request body of the browser and admin APIs (their routes take no
/// body): past it, `413 body_too_large`.
pub const MAX_API_BODY_BYTES: usize = 1024;
/// The client's IP address as the packaging established it, put in the
/// request's extensions before [`Gateway::handle`](super::Gateway::handle): the Worker takes it from
/// `CF-Connecting-IP` (set by Cloudflare), the Lambda from the API Gateway
/// request context's source IP. Used for subnet binding
/// (`SESSION_BIND_SUBNET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client's IP address: from `trusted_header` when one is configured
/// (`SESSION_CLIENT_IP_HEADER`, a header set by a trusted proxy in front of
/// the gateway, such as `x-forwarded-for`; its last comma-separated entry, the
/// one that proxy added), else the packaging's [`ClientAddr`]. A header any
/// client can send is never read unless configured.
pub fn client_ip(
    headers: &HeaderMap,
    extensions: &http::Extensions,
    trusted_header: Option<&HeaderName>,
) -> Option<IpAddr> {
    if let Some(name) = trusted_header {
        return headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok());
    }
    extensions.get::<ClientAddr>().map(|addr| addr.0)
}

/// The instruction headers present in an origin response, in contract order.
pub(crate) fn instruction_names(headers: &HeaderMap) -> Vec<&'static str> {
    [
        instructions::SET,
        instructions::INCR,
        instructions::LOGIN,
        instructions::LOGOUT,
    ]
    .into_iter()
    .filter(|name| headers.contains_key(*name))
    .collect()
}

/// Logs the instructions a fail-open response drops and names them in
/// `x-session-dropped`.
pub(crate) fn mark_dropped(headers: &mut HeaderMap, dropped: &[&str], error: &Error) {
    if dropped.is_empty() {
        return;
    }
    let list = dropped.join(", ");
    log::warn!(
        "edge-session: session store unavailable (fail-open): the origin's {list} not applied: {error}"
    );
    if let Ok(value) = HeaderValue::from_str(&list) {
        headers.insert(HeaderName::from_static(SESSION_DROPPED), value);
    }
}

/// `502 bad_session_instruction` when an instruction header of the origin's
/// response is longer than [`MAX_INSTRUCTION_BYTES`].
pub(crate) fn oversized_instruction(headers: &HeaderMap) -> Option<Response<Bytes>> {
    let (name, value) = headers
        .iter()
        .filter(|(name, _)| is_session_header(name))
        .find(|(_, value)| value.len() > MAX_INSTRUCTION_BYTES)?;
    let message = format!(
        "{name}: {} bytes, over the limit of {MAX_INSTRUCTION_BYTES} bytes",
        value.len()
    );
    log::error!("edge-session: origin sent a refused session instruction: {message}");
    // The sizes go to the log; the browser gets the code.
    Some(error_response(
        ErrorCode::BadSessionInstruction,
        "the origin sent a session instruction the gateway refused",
    ))
}

/// True for a header name that is, or that a CGI-style server (Python
/// wsgiref, gunicorn < 22, Rack, PHP, IIS) reads as, an `x-session-*` header:
/// those servers map `x_session_user` and `x-session-user` to the same
/// variable.
pub(crate) fn is_session_header(name: &HeaderName) -> bool {
    let name = name.as_str().as_bytes();
    name.len() >= PREFIX.len()
        && name[..PREFIX.len()]
            .iter()
            .zip(PREFIX)
            .all(|(have, want)| have == want || (*have == b'_' && *want == b'-'))
}

const PREFIX: &[u8] = b"x-session-";

/// Removes every `x-session-*` header, with `_` read as `-` (clients may
/// not spoof them, not even as `x_session_user`).
pub fn strip_session_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_session_header(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// All `Cookie` request headers joined into one value (`None` without any).
pub fn cookie_header(headers: &HeaderMap) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Removes the session cookie from the `Cookie` header sent to the origin:
/// the origin gets the non-secret handle, never the token.
pub(crate) fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let Some(all) = cookie_header(headers) else {
        return;
    };
    let kept: Vec<&str> = all
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split('=').next().map(str::trim) != Some(name))
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

/// The client info recorded for new sessions, from the request headers.
pub fn client_info(headers: &HeaderMap) -> ClientInfo {
    ClientInfo::with_user_agent(
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Characters percent-encoded in `x-session-user` (a comma too, so that a
/// joined repeat can never look like one value).
const USER_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(b',');

pub(crate) fn add_session_headers(headers: &mut HeaderMap, session: &Session) {
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set(SESSION_ID, session.handle().as_str());
    if let Some(user) = session.user() {
        let encoded = percent_encoding::utf8_percent_encode(user, USER_ENCODE).to_string();
        set(SESSION_USER, &encoded);
    }
    let (data, invalid) = session.data();
    if !invalid.is_empty() {
        log::warn!(
            "edge-session: session fields {invalid:?} are not valid JSON and were left out of {SESSION_DATA}"
        );
    }
    let json = ascii_json(&serde_json::Value::Object(data));
    if json.len() <= MAX_DATA_HEADER_BYTES {
        set(SESSION_DATA, &json);
    } else {
        set(SESSION_DATA_OMITTED, &json.len().to_string());
    }
}

/// JSON text with every non-ASCII character escaped as `\uXXXX`, so it is a
/// valid header value.
pub fn ascii_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

pub(crate) fn append_set_cookie(headers: &mut HeaderMap, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.append(header::SET_COOKIE, value);
    }
}

/// Headers that speak to the next hop only. `Expect: 100-continue` is
/// answered by the hop that receives it (the platform or the host's HTTP
/// server), never forwarded.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::EXPECT,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// True when `headers` ask for a protocol upgrade (`Connection: upgrade` and
/// an `Upgrade` header): a WebSocket handshake.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
/// With `upgrade` (a WebSocket handshake, or the origin's `101` answer to
/// one) `Upgrade` is kept and `Connection: upgrade` set, so the next hop
/// sees the handshake.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most heads have none: one pass over their few names, no lookups.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    let kept = upgrade.then(|| headers.remove(header::UPGRADE)).flatten();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(protocol) = kept {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The response head the client gets: no hop-by-hop header (but an
/// upgrade's), no `x-session-*` header.
pub(crate) fn clean_response(headers: &mut HeaderMap, upgrade: bool) {
    remove_hop_by_hop(headers, upgrade);
    strip_session_headers(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_json_escapes_non_ascii() {
        let v = serde_json::json!({"name": "Zoë 🚀", "n": 1});
        let text = ascii_json(&v);
        assert!(text.is_ascii());
        assert!(text.contains("\\ud83d\\ude80"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).ok(),
            Some(v)
        );
    }

    #[test]
    fn the_session_cookie_is_removed_others_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-session=secret; b=2"),
        );
        remove_cookie(&mut h, "__Host-session");
        assert_eq!(
            h.get(header::COOKIE).map(|v| v.as_bytes()),
            Some(&b"a=1; b=2"[..])
        );
        let mut only = HeaderMap::new();
        only.insert(header::COOKIE, HeaderValue::from_static("__Host-session=x"));
        remove_cookie(&mut only, "__Host-session");
        assert!(only.get(header::COOKIE).is_none());
    }

    #[test]
    fn dropped_instructions_are_named_in_contract_order() {
        let mut headers = HeaderMap::new();
        headers.insert(instructions::LOGOUT, HeaderValue::from_static("current"));
        headers.insert(instructions::SET, HeaderValue::from_static("{}"));
        headers.insert("x-session-other", HeaderValue::from_static("1"));
        let names = instruction_names(&headers);
        assert_eq!(names, [instructions::SET, instructions::LOGOUT]);
        let mut response = HeaderMap::new();
        mark_dropped(&mut response, &names, &Error::Timeout { ms: 5 });
        assert_eq!(response[SESSION_DROPPED], "x-session-set, x-session-logout");
        let mut untouched = HeaderMap::new();
        mark_dropped(&mut untouched, &[], &Error::Timeout { ms: 5 });
        assert!(untouched.is_empty());
    }

    #[test]
    fn hop_by_hop_headers_go_but_an_upgrade_stays() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade, x-secret"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("sec-websocket-key", HeaderValue::from_static("k"));
        assert!(is_upgrade(&h));
        let mut plain = h.clone();
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert!(h.get("x-secret").is_none() && h.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(h["sec-websocket-key"], "k");
        remove_hop_by_hop(&mut plain, false);
        assert!(plain.get(header::UPGRADE).is_none() && plain.get(header::CONNECTION).is_none());
        assert!(!is_upgrade(&plain));
    }

    #[test]
    fn session_headers_are_stripped_with_underscores_too() {
        let mut h = HeaderMap::new();
        for name in [
            "x-session-user",
            "x_session_user",
            "X_Session-Data",
            "x-session_id",
        ] {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                HeaderValue::from_static("admin"),
            );
        }
        h.insert("x-sessions", HeaderValue::from_static("kept"));
        h.insert("x_other", HeaderValue::from_static("kept"));
        strip_session_headers(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-sessions", "x_other"]);
    }
}
