//! Upstash-style REST backend (reqwest; native and wasm32).
//!
//! Wire rules followed here (see the project's protocol notes):
//! - `POST /` for one command, `POST /pipeline` for a batch, `POST /multi-exec`
//!   for a transaction; bodies are JSON arrays of strings.
//! - `Authorization: Bearer <token>` and `Upstash-Encoding: base64` on every
//!   request; every string in a reply is base64, except a top-level `"OK"`
//!   (an encoded `"T0s="` is accepted too).
//! - The `upstash-sync-token` of the last response is sent back with the next
//!   request, which gives read-your-writes on replicated databases. Inside a
//!   [`SyncToken::scope`] the request's own token is sent and updated
//!   instead, which carries read-your-writes across instances.
//! - Each attempt has a timeout; network errors, timeouts and 5xx are retried
//!   with exponential backoff, a bounded number of times (only connection
//!   refusals for batches that are not idempotent).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use super::{Backend, Command, Reply, Retry, SyncToken, Value};
use crate::error::{Error, Result, ServerError};
use crate::platform::{fill_random, is_connect_error, sleep, with_timeout};

const SYNC_TOKEN: &str = "upstash-sync-token";

/// Settings of the REST backend.
#[derive(Clone)]
#[non_exhaustive]
pub struct RestConfig {
    /// Base URL (`UPSTASH_REDIS_REST_URL`), e.g. `https://eu1-x.upstash.io`.
    pub url: String,
    /// Bearer token (`UPSTASH_REDIS_REST_TOKEN`). Never printed.
    pub token: String,
    /// Time allowed for one HTTP attempt. Default 3 s.
    pub timeout: Duration,
    /// Extra attempts after a retryable failure. Default 2.
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each further one. Default 50 ms.
    pub backoff: Duration,
}

impl RestConfig {
    /// Settings for `url` and `token` with the default timeout and retries.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            timeout: Duration::from_secs(3),
            max_retries: 2,
            backoff: Duration::from_millis(50),
        }
    }
}

impl fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestConfig")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// The REST backend. Cheap to clone; build it once and share it.
#[derive(Clone)]
pub struct RestBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    base: String,
    auth: HeaderValue,
    config: RestConfig,
    sync_token: Mutex<Option<String>>,
}

impl fmt::Debug for RestBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The endpoint a request goes to, which decides the response's shape.
/// Public only for the fuzz targets ([`crate::fuzzing::RestRoute`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /`: one command, one `{"result"|"error": ...}` object.
    Single,
    /// `POST /pipeline`: an array of such objects, one per command.
    Pipeline,
    /// `POST /multi-exec`: the same array, or one error for the whole
    /// transaction.
    MultiExec,
}

impl RestBackend {
    /// A backend with a new HTTP client.
    pub fn new(config: RestConfig) -> Result<Self> {
        Self::with_client(reqwest::Client::new(), config)
    }

    /// A backend over an existing HTTP client (share one client per process).
    pub fn with_client(client: reqwest::Client, config: RestConfig) -> Result<Self> {
        let base = config.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::config(
                "UPSTASH_REDIS_REST_URL",
                "must be an http:// or https:// URL",
            ));
        }
        if config.token.is_empty() {
            return Err(Error::config("UPSTASH_REDIS_REST_TOKEN", "is empty"));
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", config.token)).map_err(|_| {
                Error::config(
                    "UPSTASH_REDIS_REST_TOKEN",
                    "contains characters not allowed in a header",
                )
            })?;
        auth.set_sensitive(true);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                base,
                auth,
                config,
                sync_token: Mutex::new(None),
            }),
        })
    }

    /// The last `upstash-sync-token` received, if any.
    pub fn sync_token(&self) -> Option<String> {
        self.inner.sync_token.lock().ok().and_then(|t| t.clone())
    }

    /// Replaces the sync token sent with the next request. It is shared by
    /// every request of this backend: to carry one user's token across
    /// instances, use a per-request [`SyncToken`] instead.
    pub fn set_sync_token(&self, token: Option<String>) {
        if let Ok(mut slot) = self.inner.sync_token.lock() {
            *slot = token;
        }
    }

    async fn send(&self, route: Route, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let body = match route {
            Route::Single => serde_json::to_vec(commands[0].parts()),
            _ => serde_json::to_vec(&commands.iter().map(Command::parts).collect::<Vec<_>>()),
        }
        .map_err(|e| Error::protocol_with("could not encode the request", e))?;
        let config = &self.inner.config;
        let mut attempt = 0;
        loop {
            let result =
                with_timeout(config.timeout, self.attempt(route, &body, commands.len())).await;
            let error = match result {
                Ok(replies) => return Ok(replies),
                Err(error) => error,
            };
            let may_retry = match retry {
                Retry::Idempotent => error.is_retryable(),
                Retry::Once => matches!(&error, Error::Transport(e) if is_connect_error(e)),
            };
            if !may_retry || attempt >= config.max_retries {
                return Err(error);
            }
            sleep(backoff(config.backoff, attempt)).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, route: Route, body: &[u8], expected: usize) -> Result<Vec<Reply>> {
        let path = match route {
            Route::Single => "/",
            Route::Pipeline => "/pipeline",
            Route::MultiExec => "/multi-exec",
        };
        let mut request = self
            .inner
            .client
            .post(format!("{}{path}", self.inner.base))
            .header(AUTHORIZATION, self.inner.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("upstash-encoding", "base64")
            .body(body.to_vec());
        // The current request's own token (carried across instances) wins
        // over this isolate's last one; see `super::sync`.
        let scope = SyncToken::current();
        let sent = scope
            .as_ref()
            .and_then(SyncToken::get)
            .or_else(|| self.sync_token());
        if let Some(token) = sent {
            request = request.header(SYNC_TOKEN, token);
        }
        let response = request.send().await.map_err(Error::Transport)?;
        if let Some(token) = response
            .headers()
            .get(SYNC_TOKEN)
            .and_then(|v| v.to_str().ok())
        {
            self.set_sync_token(Some(token.to_owned()));
            if let Some(scope) = &scope {
                scope.set(Some(token.to_owned()));
            }
        }
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(Error::Transport)?;
        decode_response(route, status, &bytes, expected)
    }
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    let mut jitter = [0u8; 1];
    fill_random(&mut jitter);
    let exp = base.saturating_mul(1u32 << attempt.min(10));
    exp + exp.mul_f64(f64::from(jitter[0]) / 512.0)
}

/// Turns an HTTP status and body into replies.
pub(crate) fn decode_response(
    route: Route,
    status: u16,
    body: &[u8],
    expected: usize,
) -> Result<Vec<Reply>> {
    if status == 401 {
        return Err(Error::Unauthorized);
    }
    let parsed: std::result::Result<serde_json::Value, _> = serde_json::from_slice(body);
    let error_text = parsed
        .as_ref()
        .ok()
        .and_then(|j| j.get("error"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    if status >= 500 || (status != 200 && status != 400) {
        return Err(Error::Http {
            status,
            message: error_text.unwrap_or_default().chars().take(200).collect(),
        });
    }
    let json = parsed.map_err(|e| Error::protocol_with("the response body is not JSON", e))?;
    match (route, status) {
        (Route::Single, 200 | 400) => Ok(vec![decode_item(&json)?]),
        (Route::Pipeline | Route::MultiExec, 200) => {
            let items = json
                .as_array()
                .ok_or(Error::protocol("a batch response is not an array"))?;
            if items.len() != expected {
                return Err(Error::protocol(
                    "a batch response has the wrong number of items",
                ));
            }
            items.iter().map(decode_item).collect()
        }
        (_, _) => match error_text {
            // A discarded transaction or a refused batch.
            Some(text) => Err(Error::Redis(ServerError::new(text))),
            None => Err(Error::Http {
                status,
                message: String::new(),
            }),
        },
    }
}

fn decode_item(item: &serde_json::Value) -> Result<Reply> {
    if let Some(text) = item.get("error").and_then(serde_json::Value::as_str) {
        return Ok(Err(ServerError::new(text)));
    }
    let result = item
        .get("result")
        .ok_or(Error::protocol("an item has neither result nor error"))?;
    Ok(Ok(decode_value(result, true)?))
}

fn decode_value(value: &serde_json::Value, top: bool) -> Result<Value> {
    use serde_json::Value as J;
    Ok(match value {
        J::Null => Value::Nil,
        J::Number(n) => Value::Int(
            n.as_i64()
                .ok_or(Error::protocol("a number reply is not an integer"))?,
        ),
        J::String(s) => match STANDARD.decode(s) {
            Ok(bytes) => Value::Bytes(bytes),
            Err(_) if top && s == "OK" => Value::Okay,
            Err(e) => return Err(Error::protocol_with("a string reply is not base64", e)),
        },
        J::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| decode_value(v, false))
                .collect::<Result<_>>()?,
        ),
        J::Bool(_) | J::Object(_) => {
            return Err(Error::protocol("unexpected JSON type in a reply"));
        }
    })
}

impl Backend for RestBackend {
    async fn pipeline(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        let route = if commands.len() == 1 {
            Route::Single
        } else {
            Route::Pipeline
        };
        self.send(route, commands, retry).await
    }

    async fn transaction(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        self.send(Route::MultiExec, commands, retry).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn single(status: u16, body: &str) -> Result<Vec<Reply>> {
        decode_response(Route::Single, status, body.as_bytes(), 1)
    }

    #[test]
    fn decodes_the_base64_rule() {
        assert_eq!(
            single(200, r#"{"result":"OK"}"#).unwrap(),
            vec![Ok(Value::Okay)]
        );
        assert_eq!(
            single(200, r#"{"result":"T0s="}"#).unwrap(),
            vec![Ok(Value::Bytes(b"OK".to_vec()))]
        );
        assert_eq!(
            single(200, r#"{"result":["aGk=",null,3,["w6k="]]}"#).unwrap(),
            vec![Ok(Value::Array(vec![
                Value::Bytes(b"hi".to_vec()),
                Value::Nil,
                Value::Int(3),
                Value::Array(vec![Value::Bytes("é".as_bytes().to_vec())]),
            ]))]
        );
        // A nested "OK" is always encoded; a raw one is a protocol error.
        assert!(single(200, r#"{"result":["OK"]}"#).is_err());
    }

    #[test]
    fn maps_errors() {
        assert_eq!(
            single(400, r#"{"error":"NOSCRIPT No matching script"}"#).unwrap()[0]
                .as_ref()
                .unwrap_err()
                .code(),
            "NOSCRIPT"
        );
        assert!(matches!(single(401, "{}"), Err(Error::Unauthorized)));
        let e = single(503, "upstream down").unwrap_err();
        assert!(e.is_retryable() && e.is_unavailable());
        assert!(matches!(
            single(200, "{not json"),
            Err(Error::Protocol { .. })
        ));
        assert!(matches!(
            decode_response(Route::MultiExec, 400, br#"{"error":"EXECABORT x"}"#, 2),
            Err(Error::Redis(_))
        ));
        assert!(decode_response(Route::Pipeline, 200, br#"[{"result":1}]"#, 2).is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let backend =
            RestBackend::new(RestConfig::new("http://127.0.0.1:1", "supersecret-token")).unwrap();
        assert!(!format!("{backend:?}").contains("supersecret"));
    }

    #[test]
    fn backoff_grows() {
        let base = Duration::from_millis(10);
        assert!(backoff(base, 0) < Duration::from_millis(16));
        assert!(backoff(base, 3) >= Duration::from_millis(80));
    }
}
