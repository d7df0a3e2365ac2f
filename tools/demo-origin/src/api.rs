//! JSON endpoints for tests: what reached the origin, and instructions on demand.

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::instruct::Instructions;
use crate::session::{PREFIX, SessionView};

/// `GET /api/whoami`: the session as the origin understands it, every `x-session-*` request
/// header verbatim (a repeated header becomes an array; `x_session_*` spellings too, which
/// CGI-style servers read as the same variable), and the raw `Cookie` header.
pub(crate) async fn whoami(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let session = SessionView::from_headers(&headers);
    let mut session_headers = Map::new();
    for name in headers.keys() {
        if !name.as_str().replace('_', "-").starts_with(PREFIX) {
            continue;
        }
        let mut values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|value| Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let value = if values.len() == 1 {
            values.remove(0)
        } else {
            Value::Array(values)
        };
        session_headers.insert(name.as_str().to_owned(), value);
    }
    let cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    let cookie_header = if cookies.is_empty() {
        Value::Null
    } else {
        Value::String(cookies.join("; "))
    };
    no_store(Json(json!({
        "session_id": session.id,
        "user": session.user,
        "data": session.data,
        "session_headers": session_headers,
        "cookie_header": cookie_header,
        "method": method.as_str(),
        "uri": uri.to_string(),
    })))
}

/// Headers `raw` may not set: they would corrupt the HTTP message itself.
const FRAMING: [HeaderName; 3] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// Body of `POST /api/instruct`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Instruct {
    /// `x-session-set`, as ASCII JSON (any JSON, so non-objects can be sent too).
    set: Option<Value>,
    /// `x-session-incr`, as ASCII JSON.
    incr: Option<Value>,
    /// `x-session-login`, percent-encoded when not plain ASCII.
    login: Option<String>,
    /// `x-session-logout`, verbatim.
    logout: Option<String>,
    /// More headers, verbatim (UTF-8 bytes allowed), sent after the others in name order; an
    /// array value sends the header repeatedly. Framing headers are refused.
    raw: Option<Map<String, Value>>,
    /// Status of the answer (200..=599), 200 by default.
    status: Option<u16>,
}

/// `POST /api/instruct`: answers with the instruction headers described by the JSON body and
/// echoes them: `{"status": 200, "headers": [["x-session-set", "{...}"], ...]}`. A body that
/// cannot be followed gets a 400 with `{"error": "..."}` and no instruction.
pub(crate) async fn instruct(body: Bytes) -> Response {
    match build(&body) {
        Ok((status, instructions)) => {
            let sent: Vec<Value> = instructions
                .headers()
                .iter()
                .map(|(name, value)| {
                    json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())])
                })
                .collect();
            let mut response = if matches!(status.as_u16(), 204 | 205 | 304) {
                status.into_response()
            } else {
                (
                    status,
                    Json(json!({ "status": status.as_u16(), "headers": sent })),
                )
                    .into_response()
            };
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            for (name, value) in instructions.headers() {
                headers.append(name, value.clone());
            }
            response
        }
        Err(error) => no_store((StatusCode::BAD_REQUEST, Json(json!({ "error": error })))),
    }
}

fn build(body: &[u8]) -> Result<(StatusCode, Instructions), String> {
    let request: Instruct =
        serde_json::from_slice(body).map_err(|err| format!("invalid body: {err}"))?;
    let status = match request.status {
        None => StatusCode::OK,
        Some(code @ 200..=599) => {
            StatusCode::from_u16(code).map_err(|err| format!("invalid status: {err}"))?
        }
        Some(code) => return Err(format!("status {code} is outside 200..=599")),
    };
    let mut instructions = Instructions::default();
    if let Some(set) = &request.set {
        instructions = instructions.set(set);
    }
    if let Some(incr) = &request.incr {
        instructions = instructions.incr(incr);
    }
    if let Some(user) = &request.login {
        instructions = instructions
            .login(user)
            .map_err(|err| format!("invalid login: {err}"))?;
    }
    if let Some(scope) = &request.logout {
        instructions = instructions
            .logout(scope)
            .map_err(|err| format!("invalid logout: {err}"))?;
    }
    for (name, value) in request.raw.iter().flatten() {
        let header_name = HeaderName::try_from(name.as_str())
            .map_err(|err| format!("invalid raw header name {name:?}: {err}"))?;
        if FRAMING.contains(&header_name) {
            return Err(format!(
                "raw header {name:?} would break the response framing"
            ));
        }
        let values = match value {
            Value::Array(values) => values.iter().collect(),
            one => vec![one],
        };
        for value in values {
            let Value::String(text) = value else {
                return Err(format!("raw header {name:?}: values are strings"));
            };
            let header_value = HeaderValue::from_bytes(text.as_bytes())
                .map_err(|err| format!("invalid raw header value for {name:?}: {err}"))?;
            instructions = instructions.raw(header_name.clone(), header_value);
        }
    }
    Ok((status, instructions))
}

fn no_store(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
