//! API Gateway and Function URL events to `http` types and back.
//!
//! Requests: the event's JSON is checked first ([`parse_event`]) so that
//! nothing `lambda_http` would refuse with a panic (a body flagged base64 that
//! is not, a host or query that makes no URI, a path without its leading `/`)
//! reaches it: such events are answered `400 bad_request`. The checked event is
//! then converted by `lambda_http` itself (cookies of HTTP API events become a
//! `Cookie` header, base64 bodies are decoded, the `RequestContext` and raw
//! path are kept in the extensions), and [`to_gateway_request`] takes the path
//! the application sees (without the API Gateway stage), the query, and the
//! whole body.
//!
//! Responses ([`encode_response`]): REST API (payload 1.0) answers carry every
//! header in `multiValueHeaders`, so several `Set-Cookie` headers survive;
//! HTTP API and Function URL answers (payload 2.0) carry `Set-Cookie` in the
//! `cookies` array and other repeated headers joined with `, `. A body that is
//! valid UTF-8 is sent as text, anything else base64-encoded
//! (`isBase64Encoded`); the REST API needs `BinaryMediaTypes: ['*/*']` (see
//! `template.yaml`) to decode it.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use http::header::{self, HeaderValue};
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The payload format of an event, which decides the response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// API Gateway REST API, payload format 1.0: the response carries
    /// `multiValueHeaders`.
    RestApi,
    /// API Gateway HTTP API or Lambda Function URL, payload format 2.0: the
    /// response carries `Set-Cookie` values in `cookies`.
    HttpApi,
}

impl EventKind {
    /// The kind of an event's JSON: payload 2.0 events have `"version":
    /// "2.0"` (some emulators add a top-level `httpMethod` to them too),
    /// REST API events (and HTTP API payload 1.0 ones) a top-level
    /// `httpMethod`.
    pub fn from_event(event: &Value) -> Option<Self> {
        let object = event.as_object()?;
        let version = object.get("version").and_then(Value::as_str);
        if version == Some("2.0") {
            Some(EventKind::HttpApi)
        } else if object.contains_key("httpMethod") {
            Some(EventKind::RestApi)
        } else if object
            .get("requestContext")
            .and_then(|c| c.get("http"))
            .is_some()
        {
            Some(EventKind::HttpApi)
        } else {
            None
        }
    }

    /// The kind of a converted request, from its `RequestContext` extension.
    pub fn of(request: &lambda_http::Request) -> Option<Self> {
        match request.request_context_ref()? {
            RequestContext::ApiGatewayV1(_) => Some(EventKind::RestApi),
            RequestContext::ApiGatewayV2(_) => Some(EventKind::HttpApi),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

/// Why an event was refused (answered `400 bad_request`). The message never
/// quotes the event: it may hold cookies or tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEvent(&'static str);

impl BadEvent {
    /// The reason, safe to log and to send back.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for BadEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BadEvent {}

const NOT_HTTP: BadEvent =
    BadEvent("the event is not an API Gateway (REST or HTTP API) or Lambda Function URL request");

/// Checks an event and converts it with `lambda_http`.
pub fn parse_event(mut event: Value) -> Result<(EventKind, lambda_http::Request), BadEvent> {
    let kind = EventKind::from_event(&event).ok_or(NOT_HTTP)?;
    match kind {
        EventKind::RestApi => {
            if let Some(object) = event.as_object_mut() {
                unshadow_multi_value_headers(object);
            }
            let typed = ApiGatewayProxyRequest::deserialize(&event).map_err(|_| {
                BadEvent("malformed REST API event: a field has the wrong type, or a header name or value, or the method, is invalid")
            })?;
            check_rest(&typed)?;
        }
        EventKind::HttpApi => {
            let typed = ApiGatewayV2httpRequest::deserialize(&event).map_err(|_| {
                BadEvent("malformed HTTP API event: a field has the wrong type, or a header name or value, or the method, is invalid")
            })?;
            check_http(&typed)?;
        }
    }
    let text = event.to_string();
    // The checks above cover every panic of the conversion we know of, and
    // they are the real guard: `cargo lambda build --release` compiles with
    // panic=abort, where a panic ends the execution environment. Under
    // panic=unwind (tests, debug builds) a new one is still only a 400 here.
    let request = std::panic::catch_unwind(|| lambda_http::request::from_str(&text))
        .map_err(|_| BadEvent("the event could not be converted to an HTTP request"))?
        .map_err(|_| NOT_HTTP)?;
    if EventKind::of(&request) != Some(kind) {
        return Err(NOT_HTTP);
    }
    Ok((kind, request))
}

/// REST API events carry each header in `headers` (its last value) and in
/// `multiValueHeaders` (all values); `lambda_http` lets the single value
/// replace the list. A header sent several times (e.g. `Cookie` split by an
/// HTTP/2 client) would lose all but its last value, so the single value is
/// dropped where the list has more.
fn unshadow_multi_value_headers(event: &mut Map<String, Value>) {
    let repeated: Vec<String> = match event.get("multiValueHeaders").and_then(Value::as_object) {
        Some(multi) => multi
            .iter()
            .filter(|(_, v)| v.as_array().is_some_and(|a| a.len() > 1))
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect(),
        None => return,
    };
    if let Some(single) = event.get_mut("headers").and_then(Value::as_object_mut) {
        single.retain(|k, _| !repeated.contains(&k.to_ascii_lowercase()));
    }
}

fn check_body(body: Option<&str>, base64: bool) -> Result<(), BadEvent> {
    if let (Some(body), true) = (body, base64) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| BadEvent("the body is flagged base64 but is not valid base64"))?;
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), BadEvent> {
    if path.is_empty() || path.starts_with('/') {
        Ok(())
    } else {
        Err(BadEvent("the request path does not start with /"))
    }
}

fn check_rest(event: &ApiGatewayProxyRequest) -> Result<(), BadEvent> {
    check_body(event.body.as_deref(), event.is_base64_encoded)?;
    let raw_path = event.path.as_deref().unwrap_or_default();
    check_path(raw_path)?;
    // The query is rebuilt form-encoded by lambda_http: always a valid URI part.
    check_uri(
        &path_with_stage(event.request_context.stage.as_deref(), raw_path),
        &event.headers,
        event.request_context.domain_name.as_deref(),
        None,
    )
}

fn check_http(event: &ApiGatewayV2httpRequest) -> Result<(), BadEvent> {
    check_body(event.body.as_deref(), event.is_base64_encoded)?;
    let raw_path = event.raw_path.as_deref().unwrap_or_default();
    check_path(raw_path)?;
    check_uri(
        &path_with_stage(event.request_context.stage.as_deref(), raw_path),
        &event.headers,
        event.request_context.domain_name.as_deref(),
        event.raw_query_string.as_deref(),
    )
}

/// The path as lambda_http builds its URI (it adds the stage unless
/// `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set).
fn path_with_stage(stage: Option<&str>, path: &str) -> String {
    if std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_some() {
        return path.to_owned();
    }
    match stage {
        None | Some("$default") => path.to_owned(),
        Some(stage) if path.starts_with(&format!("/{stage}/")) => path.to_owned(),
        Some(stage) => format!("/{stage}{path}"),
    }
}

/// Builds the URI the way lambda_http does and checks it parses (lambda_http
/// unwraps both steps).
fn check_uri(
    path: &str,
    headers: &HeaderMap,
    domain: Option<&str>,
    raw_query: Option<&str>,
) -> Result<(), BadEvent> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(domain);
    let base = match host {
        None => url::Url::parse(&format!("http://localhost{path}")).map(|u| u.path().to_owned()),
        Some(host) => {
            let scheme = headers
                .get("x-forwarded-proto")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("https");
            url::Url::parse(&format!("{scheme}://{host}{path}")).map(String::from)
        }
    }
    .map_err(|_| BadEvent("the request's host, scheme or path does not form a valid URL"))?;
    let uri = match raw_query {
        Some(query) if !query.is_empty() => format!("{base}?{query}"),
        _ => base,
    };
    http::Uri::try_from(uri)
        .map(|_| ())
        .map_err(|_| BadEvent("the request's path or query string is not a valid URI"))
}

/// Characters percent-encoded in the path given to the gateway (raw paths
/// from API Gateway may hold spaces and the like).
const PATH_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// The path the application sees: without the API Gateway stage.
///
/// - REST API: the event's `path`, which never holds the stage (lambda_http
///   puts the stage back into the URI, as the browser saw it; its
///   `raw_http_path` is the path without it).
/// - HTTP API: `rawPath`, which holds the stage on the default
///   `execute-api` domain for a stage other than `$default`; it is removed
///   there. On a custom domain the API mapping already removed it.
/// - Function URL: `rawPath` (stage `$default`).
pub fn app_path(request: &lambda_http::Request) -> String {
    let raw = request.raw_http_path();
    let path = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(_)) => raw.to_owned(),
        Some(RequestContext::ApiGatewayV2(context)) => {
            let default_domain = context
                .domain_name
                .as_deref()
                .is_some_and(|d| d.contains(".execute-api."));
            match context.stage.as_deref() {
                Some(stage) if default_domain && stage != "$default" => {
                    strip_stage(raw, stage).to_owned()
                }
                _ => raw.to_owned(),
            }
        }
        #[allow(unreachable_patterns)]
        _ if raw.is_empty() => request.uri().path().to_owned(),
        _ => raw.to_owned(),
    };
    if path.is_empty() {
        "/".to_owned()
    } else {
        path
    }
}

fn strip_stage<'a>(path: &'a str, stage: &str) -> &'a str {
    match path.strip_prefix('/').and_then(|p| p.strip_prefix(stage)) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// Converts a `lambda_http` request into the request the gateway handles:
/// same scheme and host (the gateway's own origin, for its CSRF check), the
/// path without the stage, the query, every header (the `Cookie` header
/// included, built from `cookies` on HTTP APIs) but `Content-Length`, and the
/// decoded body.
pub fn to_gateway_request(request: lambda_http::Request) -> Result<http::Request<Bytes>, BadEvent> {
    let path = percent_encoding::utf8_percent_encode(&app_path(&request), PATH_ENCODE).to_string();
    let uri = request.uri();
    let mut target = String::with_capacity(path.len() + 64);
    if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
        target.push_str(scheme);
        target.push_str("://");
        target.push_str(authority.as_str());
    }
    target.push_str(&path);
    if let Some(query) = uri.query().filter(|q| !q.is_empty()) {
        target.push('?');
        target.push_str(query);
    }
    let target: http::Uri = target
        .parse()
        .map_err(|_| BadEvent("the request's path or query string is not a valid URI"))?;
    let (mut parts, body) = request.into_parts();
    parts.uri = target;
    // The body is whole and decoded: its length is recomputed when it is sent.
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(http::Request::from_parts(parts, body_bytes(body)))
}

/// The bytes of a `lambda_http` body.
pub fn body_bytes(body: Body) -> Bytes {
    match body {
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    }
}

/// Encodes a response in the event's payload format. `None` (an event that
/// could not be read) gives the shape both formats accept: single-valued
/// `headers`.
pub fn encode_response(kind: Option<EventKind>, response: http::Response<Bytes>) -> Value {
    let (parts, body) = response.into_parts();
    let (body, base64) = match std::str::from_utf8(&body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&body),
            true,
        ),
    };
    let mut out = Map::new();
    out.insert("statusCode".to_owned(), json!(parts.status.as_u16()));
    match kind {
        Some(EventKind::RestApi) => {
            let mut multi = Map::new();
            for name in parts.headers.keys() {
                let values: Vec<Value> = text_values(&parts.headers, name)
                    .into_iter()
                    .map(Value::String)
                    .collect();
                if !values.is_empty() {
                    multi.insert(name.as_str().to_owned(), Value::Array(values));
                }
            }
            out.insert("multiValueHeaders".to_owned(), Value::Object(multi));
        }
        Some(EventKind::HttpApi) | None => {
            let mut single = Map::new();
            let mut cookies = Vec::new();
            for name in parts.headers.keys() {
                let values = text_values(&parts.headers, name);
                if *name == header::SET_COOKIE && kind.is_some() {
                    cookies.extend(values.into_iter().map(Value::String));
                } else if !values.is_empty() {
                    single.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
                }
            }
            out.insert("headers".to_owned(), Value::Object(single));
            if kind.is_some() {
                out.insert("cookies".to_owned(), Value::Array(cookies));
            }
        }
    }
    out.insert("body".to_owned(), Value::String(body));
    out.insert("isBase64Encoded".to_owned(), Value::Bool(base64));
    Value::Object(out)
}

/// The length of `body` in a buffered response payload: its JSON string
/// (quotes and escapes) when it is UTF-8 text, else its base64 encoding (see
/// [`encode_response`]).
pub fn encoded_body_len(body: &[u8]) -> usize {
    match std::str::from_utf8(body) {
        Ok(text) => {
            2 + text
                .bytes()
                .map(|b| match b {
                    b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
                    0x00..=0x1f => 6,
                    _ => 1,
                })
                .sum::<usize>()
        }
        Err(_) => body.len().div_ceil(3) * 4 + 2,
    }
}

/// The values of a header that JSON can carry (UTF-8); others are dropped
/// with a warning.
pub(crate) fn text_values(headers: &HeaderMap, name: &header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v: &HeaderValue| match std::str::from_utf8(v.as_bytes()) {
            Ok(text) => Some(text.to_owned()),
            Err(_) => {
                log::warn!("edge-session: dropped a non-UTF-8 value of response header {name}");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stages_are_stripped_on_whole_segments() {
        assert_eq!(strip_stage("/prod/a", "prod"), "/a");
        assert_eq!(strip_stage("/prod", "prod"), "/");
        assert_eq!(strip_stage("/prod/", "prod"), "/");
        assert_eq!(strip_stage("/production/a", "prod"), "/production/a");
        assert_eq!(strip_stage("/a/prod", "prod"), "/a/prod");
    }

    #[test]
    fn binary_bodies_are_base64_and_text_is_kept() {
        let response = http::Response::builder()
            .header("content-type", "application/octet-stream")
            .body(Bytes::from_static(&[0xff, 0x00, 0x80]))
            .unwrap();
        let out = encode_response(Some(EventKind::HttpApi), response);
        assert_eq!(out["isBase64Encoded"], json!(true));
        assert_eq!(out["body"], json!("/wCA"));
        let response = http::Response::new(Bytes::from("Zoë"));
        let out = encode_response(Some(EventKind::RestApi), response);
        assert_eq!(out["isBase64Encoded"], json!(false));
        assert_eq!(out["body"], json!("Zoë"));
    }

    #[test]
    fn encoded_lengths_match_the_payload() {
        for body in [
            &b"plain text"[..],
            b"quote \" backslash \\ newline \n tab \t bell \x07 nul \x00",
            "Zoë ✓".as_bytes(),
            &[0xff, 0x00, 0x80, 0x01],
            &[0xff, 0x00, 0x80, 0x01, 0x02],
            b"",
        ] {
            let response = http::Response::new(Bytes::copy_from_slice(body));
            let encoded = encode_response(Some(EventKind::HttpApi), response);
            assert_eq!(
                encoded_body_len(body),
                encoded["body"].to_string().len(),
                "{body:?}"
            );
        }
    }

    #[test]
    fn repeated_headers_per_format() {
        let response = http::Response::builder()
            .status(201)
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .header("vary", "accept")
            .header("vary", "cookie")
            .header("x-latin1", HeaderValue::from_bytes(b"caf\xe9").unwrap())
            .body(Bytes::new())
            .unwrap();
        let v2 = encode_response(Some(EventKind::HttpApi), response.clone());
        assert_eq!(v2["statusCode"], json!(201));
        assert_eq!(v2["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(v2["headers"]["vary"], json!("accept, cookie"));
        assert!(v2["headers"].get("set-cookie").is_none());
        assert!(v2["headers"].get("x-latin1").is_none());
        let v1 = encode_response(Some(EventKind::RestApi), response);
        assert_eq!(v1["multiValueHeaders"]["set-cookie"], json!(["a=1", "b=2"]));
        assert_eq!(v1["multiValueHeaders"]["vary"], json!(["accept", "cookie"]));
        assert!(v1.get("headers").is_none() && v1.get("cookies").is_none());
    }
}
