//! Heads between the Workers runtime and the `http` types of the gateway.
//!
//! Only heads are converted: bodies stay JavaScript streams.
//!
//! Header values are mapped as [`crate::text`] says (workerd speaks UTF-8 on
//! the wire). Repeated headers stay separate `http` values; JavaScript
//! `Headers` joins the repeats of any header but `Set-Cookie` with `", "` (the
//! Fetch standard), and gives each `Set-Cookie` on its own through
//! `getSetCookie()`, which is how they are read here.

use bytes::Bytes;
use edge_session::gateway::ClientAddr;
use http::header::{HeaderMap, HeaderName, HeaderValue, SET_COOKIE};
use http::{request, response};
use worker::js_sys::{Array, Function, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::web_sys;
use worker::{Response, ResponseBuilder};

use crate::text::{value_bytes, value_text};

/// A JavaScript `Headers` as a [`HeaderMap`]: every `Set-Cookie` a value of
/// its own, the other repeats as JavaScript joined them. A header whose name
/// or value `http` refuses is left out (JavaScript never makes one). Values
/// are the UTF-8 of their strings (see [`crate::text`]).
pub fn header_map(headers: &web_sys::Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in worker::Headers(headers.clone()).entries() {
        if name.eq_ignore_ascii_case(SET_COOKIE.as_str()) {
            continue; // each one from getSetCookie() below
        }
        if let Some((name, value)) = header(&name, &value) {
            map.append(name, value);
        }
    }
    for cookie in set_cookies(headers) {
        if let Ok(value) = HeaderValue::from_bytes(value_bytes(&cookie)) {
            map.append(SET_COOKIE, value);
        }
    }
    map
}

fn header(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    let value = HeaderValue::from_bytes(value_bytes(value)).ok()?;
    Some((name, value))
}

/// Every `Set-Cookie` of `headers`, one string each: `getSetCookie()` (the
/// Fetch standard), else workerd's older `getAll("set-cookie")`.
fn set_cookies(headers: &web_sys::Headers) -> Vec<String> {
    let call = |method: &str, args: &Array| -> Option<Array> {
        let function = Reflect::get(headers, &JsValue::from_str(method))
            .ok()?
            .dyn_into::<Function>()
            .ok()?;
        function.apply(headers, args).ok()?.dyn_into::<Array>().ok()
    };
    let cookies = call("getSetCookie", &Array::new()).or_else(|| {
        call(
            "getAll",
            &Array::of1(&JsValue::from_str(SET_COOKIE.as_str())),
        )
    });
    cookies
        .map(|a| a.iter().filter_map(|v| v.as_string()).collect())
        .unwrap_or_default()
}

/// A new JavaScript `Headers` holding `map`, every value appended on its own
/// (see [`crate::text`]).
pub fn js_headers(map: &HeaderMap) -> worker::Result<worker::Headers> {
    let headers = worker::Headers::new();
    for (name, value) in map {
        headers.append(name.as_str(), &value_text(value.as_bytes()))?;
    }
    Ok(headers)
}

/// The head of an incoming request, for [`edge_session::gateway::Gateway::prepare`]:
/// its method, absolute URL and headers, and the client IP
/// (`CF-Connecting-IP`, which Cloudflare sets on every request and a client
/// cannot) as a [`ClientAddr`] extension. The body is left in the request.
pub fn request_head(request: &web_sys::Request) -> Result<request::Parts, http::Error> {
    let headers = header_map(&request.headers());
    let (mut parts, ()) = http::Request::builder()
        .method(request.method().as_str())
        .uri(request.url())
        .body(())?
        .into_parts();
    if let Some(ip) = headers
        .get("cf-connecting-ip")
        .and_then(|ip| ip.to_str().ok())
        .and_then(|ip| ip.trim().parse().ok())
    {
        parts.extensions.insert(ClientAddr(ip));
    }
    parts.headers = headers;
    Ok(parts)
}

/// The status and headers of a response (the origin's), for
/// [`edge_session::gateway::Gateway::finish`].
pub fn response_head(response: &Response) -> Result<response::Parts, http::Error> {
    let (mut parts, ()) = http::Response::builder()
        .status(response.status_code())
        .body(())?
        .into_parts();
    parts.headers = header_map(&response.headers().0);
    Ok(parts)
}

/// One of the gateway's own answers (small JSON bodies) as a Worker response.
pub fn own_response(response: http::Response<Bytes>) -> worker::Result<Response> {
    let (parts, body) = response.into_parts();
    let builder = ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers(js_headers(&parts.headers)?);
    Ok(if body.is_empty() {
        builder.empty()
    } else {
        builder.fixed(body.to_vec())
    })
}

/// `response` (the origin's, as fetched) with the status and headers of
/// `head`: its body stream is kept as it is, never read. The fetched
/// response's own headers are immutable, so `head` becomes a new `Headers`.
pub fn reheaded(response: Response, head: &response::Parts) -> worker::Result<Response> {
    Ok(response
        .with_headers(js_headers(&head.headers)?)
        .with_status(head.status.as_u16()))
}
