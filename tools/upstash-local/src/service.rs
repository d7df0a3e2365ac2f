//! The HTTP side: routing, auth, body limit, faults, and the three command routes.

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt as _;
use redis::Value;
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use crate::backend::{Backend, Transaction};
use crate::command::{self, Command};
use crate::encode::{self, Encoding};
use crate::faults::{Fault, Faults, PlannedFault, Route};
use crate::replica::{Replica, Served};
use crate::routing::CommandTable;
use crate::scripts::{self, Scripts};

const SYNC_TOKEN: HeaderName = HeaderName::from_static("upstash-sync-token");
const ENCODING: HeaderName = HeaderName::from_static("upstash-encoding");
const RESPONSE_FORMAT: HeaderName = HeaderName::from_static("upstash-response-format");
const UNAUTHORIZED: &str = "WRONGPASS invalid or missing auth token";
const TOO_LARGE: &str = "ERR max request size exceeded";
const SHUTTING_DOWN: &str = "ERR upstash-local is shutting down";
/// How much of an oversized body is still read (and thrown away) before answering, so that a
/// client still busy sending it gets the error instead of a reset connection.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Everything a request handler needs.
pub(crate) struct App {
    pub(crate) token: String,
    pub(crate) max_body_bytes: usize,
    pub(crate) fault_endpoint: bool,
    pub(crate) backend: Backend,
    pub(crate) faults: Faults,
    pub(crate) sync_tokens: SyncTokens,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The lagging replica, when emulated (`Options::lagging_replica`).
    pub(crate) replica: Option<Arc<Replica>>,
    /// Redis's command table: which commands are reads and which need the primary.
    pub(crate) commands: Arc<CommandTable>,
    /// The emulated round trip to a far primary (`Options::primary_delay`).
    pub(crate) primary_delay: Option<Duration>,
    /// Scripts rewritten for Redis (`allow-key-locking`).
    pub(crate) scripts: Scripts,
}

impl App {
    /// Resolves once the server is shutting down.
    async fn shutting_down(&self) {
        let mut shutdown = self.shutdown.clone();
        // An error means the sender is gone, which also means shutting down.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    }
}

/// Opaque, monotonically increasing `upstash-sync-token` values: a random per-server prefix and
/// a counter, in hex.
pub(crate) struct SyncTokens {
    prefix: u32,
    counter: AtomicU64,
}

impl SyncTokens {
    pub(crate) fn new() -> Self {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            prefix: (random >> 32) as u32,
            counter: AtomicU64::new(0),
        }
    }

    /// The next token, with its number.
    fn next(&self) -> (u64, String) {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        (n, format!("{:08x}{:016x}", self.prefix, n))
    }

    /// The number of the newest token handed out.
    pub(crate) fn current(&self) -> u64 {
        self.counter.load(Ordering::SeqCst)
    }

    /// The number in `token` if this server issued it.
    fn parse(&self, token: &str) -> Option<u64> {
        let token = token.trim();
        if token.len() != 24 || !token.is_ascii() || token[..8] != format!("{:08x}", self.prefix) {
            return None;
        }
        u64::from_str_radix(&token[8..], 16).ok()
    }
}

/// Marks a response whose request was served by the primary (lag emulation).
#[derive(Debug, Clone, Copy)]
struct ServedByPrimary;

/// What the lag emulation needs to know about one request.
struct ReadContext {
    /// The number of the request's sync token, if this server issued it.
    token: Option<u64>,
    /// Set once a command of the request went to the primary.
    primary: std::sync::atomic::AtomicBool,
}

impl ReadContext {
    fn new(app: &App, headers: &HeaderMap) -> Self {
        let token = headers
            .get(SYNC_TOKEN)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| app.sync_tokens.parse(value));
        Self {
            token,
            primary: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn mark(&self, response: &mut Response) {
        if self.primary.load(Ordering::SeqCst) {
            response.extensions_mut().insert(ServedByPrimary);
        }
    }
}

/// Runs commands (not a transaction): on the lagging replica when it serves them, else on Redis.
async fn run(
    app: &App,
    commands: &[&Command],
    context: &ReadContext,
) -> redis::RedisResult<Vec<Value>> {
    if let Some(replica) = &app.replica {
        let current = app.sync_tokens.current();
        if let Served::Replica(replies) = replica.serve(commands, context.token, current).await? {
            return Ok(replies);
        }
    }
    context.primary.store(true, Ordering::SeqCst);
    app.backend.pipeline(commands).await
}

/// The server is shutting down while a request waited for the primary.
struct ShuttingDown;

impl ShuttingDown {
    fn reply(&self) -> (StatusCode, Json) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": SHUTTING_DOWN }),
        )
    }
}

/// The way to the primary region (`Options::primary_delay`). A request that needs the primary
/// (a transaction, or any command that writes or runs a script, see `routing.rs`) waits the
/// delay once before it runs; a request of reads only goes on at once. Both are counted.
async fn reach_primary(
    app: &App,
    commands: &[&Command],
    transaction: bool,
) -> Result<(), ShuttingDown> {
    let needs_primary = transaction
        || commands
            .iter()
            .any(|command| app.commands.needs_primary(command));
    app.faults.count_primary(needs_primary);
    match app.primary_delay {
        Some(delay) if needs_primary && !delay.is_zero() => tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = app.shutting_down() => Err(ShuttingDown),
        },
        _ => Ok(()),
    }
}

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// Where a request goes, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Command(Route),
    Faults,
    Stats,
    StatsReset,
    NotFound,
}

fn classify(method: &Method, path: &str, fault_endpoint: bool) -> Target {
    match path {
        "/" if method == Method::POST || method == Method::PUT => Target::Command(Route::Single),
        "/pipeline" => Target::Command(Route::Pipeline),
        "/multi-exec" => Target::Command(Route::MultiExec),
        "/__faults" if fault_endpoint => Target::Faults,
        "/__stats" if fault_endpoint => Target::Stats,
        "/__stats/reset" if fault_endpoint => Target::StatsReset,
        _ if path.starts_with("/__") => Target::NotFound,
        _ => Target::Command(Route::PathStyle),
    }
}

async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let mut response = dispatch(&app, request).await;
    let (number, token) = app.sync_tokens.next();
    if let Some(replica) = &app.replica
        && response.extensions().get::<ServedByPrimary>().is_some()
    {
        replica.note_write(number);
    }
    if let Ok(token) = HeaderValue::from_str(&token) {
        response.headers_mut().insert(SYNC_TOKEN, token);
    }
    response
}

async fn dispatch(app: &App, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method;
    let target = classify(&method, parts.uri.path(), app.fault_endpoint);
    if let Target::Command(route) = target {
        app.faults.count_request(route);
    }
    if ![Method::HEAD, Method::GET, Method::POST, Method::PUT].contains(&method) {
        let mut response = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "ERR method not allowed" }),
            false,
        );
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("HEAD, GET, POST, PUT"),
        );
        return response;
    }
    if target == Target::NotFound {
        return error_response(StatusCode::NOT_FOUND, "ERR not found");
    }

    let mut query_token = None;
    let mut query = Vec::new();
    for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        if key == "_token" {
            query_token.get_or_insert(value.into_owned());
        } else {
            query.push((key.into_owned(), value.into_owned()));
        }
    }
    if !authorized(&app.token, &parts.headers, query_token.as_deref()) {
        return error_response(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    }

    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let body = match read_body(body, content_length, app.max_body_bytes).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return error_response(StatusCode::BAD_REQUEST, TOO_LARGE),
        Err(BodyError::Read) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &command::malformed("could not read the request body"),
            );
        }
    };

    let route = match target {
        Target::Command(route) => route,
        Target::Faults | Target::Stats | Target::StatsReset => {
            return control(app, target, &method, &body);
        }
        Target::NotFound => return error_response(StatusCode::NOT_FOUND, "ERR not found"),
    };

    let mut truncate = false;
    match app.faults.take() {
        None => {}
        Some(Fault::Status { status }) => {
            return error_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &format!("ERR upstash-local injected fault: HTTP {status}"),
            );
        }
        Some(Fault::PlainText { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = format!(
                "{} {}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error")
            );
            return response(status, "text/plain; charset=utf-8", text.into_bytes());
        }
        Some(Fault::Hang) => {
            app.shutting_down().await;
            return shutting_down_response();
        }
        Some(Fault::Delay { ms }) => {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                () = app.shutting_down() => return shutting_down_response(),
            }
        }
        Some(Fault::MalformedJson) => truncate = true,
    }

    if parts
        .headers
        .get(RESPONSE_FORMAT)
        .is_some_and(|format| !format.as_bytes().eq_ignore_ascii_case(b"json"))
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            "ERR upstash-local only implements the JSON response format",
        );
    }
    let encoding = match parts.headers.get(ENCODING) {
        Some(value)
            if value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"base64") =>
        {
            Encoding::Base64
        }
        _ => Encoding::Lossy,
    };

    let context = ReadContext::new(app, &parts.headers);
    let (status, json) = match route {
        Route::Single => single(app, command::parse_single(&body), encoding, &context).await,
        Route::PathStyle => {
            let raw_arg = (method == Method::POST || method == Method::PUT).then_some(&body[..]);
            let parsed = command::parse_path(parts.uri.path(), raw_arg, &query);
            single(app, parsed, encoding, &context).await
        }
        Route::Pipeline => pipeline(app, &body, encoding, &context).await,
        Route::MultiExec => multi_exec(app, &body, encoding, &context).await,
    };
    let mut response = json_response(status, &json, truncate);
    context.mark(&mut response);
    response
}

/// Bearer token in `Authorization`, else `?_token=`. A present header decides on its own.
fn authorized(expected: &str, headers: &HeaderMap, query_token: Option<&str>) -> bool {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Some((scheme, token)) = value.to_str().ok().and_then(|v| v.trim().split_once(' '))
        else {
            return false;
        };
        return scheme.eq_ignore_ascii_case("bearer") && same(token.trim(), expected);
    }
    query_token.is_some_and(|token| same(token, expected))
}

/// Compares without stopping at the first difference.
fn same(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

enum BodyError {
    TooLarge,
    Read,
}

async fn read_body(
    mut body: Body,
    content_length: Option<u64>,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let drain_limit = limit.saturating_add(DRAIN_LIMIT);
    if content_length.is_some_and(|len| len > drain_limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut bytes = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            bytes = Vec::new();
            if total > drain_limit {
                break;
            }
        } else {
            bytes.extend_from_slice(&data);
        }
    }
    if total > limit {
        Err(BodyError::TooLarge)
    } else {
        Ok(bytes)
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(status: StatusCode, json: &Json, truncate: bool) -> Response {
    let mut body = serde_json::to_vec(json).unwrap_or_else(|_| b"{}".to_vec());
    if truncate {
        body.truncate(body.len() / 2);
    }
    response(status, "application/json", body)
}

fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }), false)
}

fn shutting_down_response() -> Response {
    error_response(StatusCode::SERVICE_UNAVAILABLE, SHUTTING_DOWN)
}

fn redis_failure(err: &redis::RedisError) -> (StatusCode, Json) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "error": format!("ERR upstash-local: Redis request failed: {err}") }),
    )
}

fn bad_request(message: String) -> (StatusCode, Json) {
    (StatusCode::BAD_REQUEST, json!({ "error": message }))
}

/// `POST /` and path style: HTTP 400 with `{"error"}` when the command fails.
async fn single(
    app: &App,
    parsed: Result<Command, String>,
    encoding: Encoding,
    context: &ReadContext,
) -> (StatusCode, Json) {
    let command = match parsed.and_then(|command| command.check_allowed().map(|()| command)) {
        Ok(command) => command,
        Err(message) => return bad_request(message),
    };
    let prepared = app.scripts.prepare(command);
    let command = [&prepared.command];
    app.faults.count_commands(1);
    if let Err(stopping) = reach_primary(app, &command, false).await {
        return stopping.reply();
    }
    match run(app, &command, context).await {
        Ok(mut replies) => match replies
            .pop()
            .map(|reply| scripts::client_reply(prepared.answer_sha.as_deref(), reply))
        {
            Some(Value::ServerError(err)) => bad_request(encode::error_text(&err)),
            Some(value) => (
                StatusCode::OK,
                json!({ "result": encode::result(value, encoding) }),
            ),
            None => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": "ERR upstash-local: no reply from Redis" }),
            ),
        },
        Err(err) => redis_failure(&err),
    }
}

/// `POST /pipeline`: every command runs in order (refused ones are skipped), HTTP 200 with one
/// item per command.
async fn pipeline(
    app: &App,
    body: &[u8],
    encoding: Encoding,
    context: &ReadContext,
) -> (StatusCode, Json) {
    let commands = match command::parse_batch(body) {
        Ok(commands) => commands,
        Err(message) => return bad_request(message),
    };
    let checks: Vec<Result<(), String>> = commands.iter().map(Command::check_allowed).collect();
    let (allowed, answers): (Vec<Command>, Vec<Option<String>>) = commands
        .into_iter()
        .zip(&checks)
        .filter(|(_, check)| check.is_ok())
        .map(|(command, _)| {
            let prepared = app.scripts.prepare(command);
            (prepared.command, prepared.answer_sha)
        })
        .unzip();
    let allowed: Vec<&Command> = allowed.iter().collect();
    let mut replies = if allowed.is_empty() {
        Vec::new().into_iter().zip(answers)
    } else {
        app.faults.count_commands(allowed.len());
        if let Err(stopping) = reach_primary(app, &allowed, false).await {
            return stopping.reply();
        }
        match run(app, &allowed, context).await {
            Ok(replies) => replies.into_iter().zip(answers),
            Err(err) => return redis_failure(&err),
        }
    };
    let items = checks
        .into_iter()
        .map(|check| match check {
            Err(message) => json!({ "error": message }),
            Ok(()) => match replies.next() {
                Some((value, answer)) => {
                    encode::item(scripts::client_reply(answer.as_deref(), value), encoding)
                }
                None => json!({ "error": "ERR upstash-local: no reply from Redis" }),
            },
        })
        .collect();
    (StatusCode::OK, Json::Array(items))
}

/// `POST /multi-exec`: atomic; HTTP 400 with one `{"error"}` when the transaction is discarded.
async fn multi_exec(
    app: &App,
    body: &[u8],
    encoding: Encoding,
    context: &ReadContext,
) -> (StatusCode, Json) {
    let commands = match command::parse_batch(body) {
        Ok(commands) => commands,
        Err(message) => return bad_request(message),
    };
    if let Some(message) = commands.iter().find_map(|c| c.check_allowed().err()) {
        return bad_request(format!(
            "EXECABORT Transaction discarded because of: {message}"
        ));
    }
    let (commands, answers): (Vec<Command>, Vec<Option<String>>) = commands
        .into_iter()
        .map(|command| {
            let prepared = app.scripts.prepare(command);
            (prepared.command, prepared.answer_sha)
        })
        .unzip();
    app.faults.count_commands(commands.len());
    let refs: Vec<&Command> = commands.iter().collect();
    if let Err(stopping) = reach_primary(app, &refs, true).await {
        return stopping.reply();
    }
    context.primary.store(true, Ordering::SeqCst);
    match app.backend.transaction(&commands).await {
        Ok(Transaction::Executed(replies)) => (
            StatusCode::OK,
            Json::Array(
                replies
                    .into_iter()
                    .enumerate()
                    .map(|(i, value)| {
                        let answer = answers.get(i).and_then(Option::as_deref);
                        encode::item(scripts::client_reply(answer, value), encoding)
                    })
                    .collect(),
            ),
        ),
        Ok(Transaction::Discarded(message)) => bad_request(message),
        Err(err) => redis_failure(&err),
    }
}

/// `/__faults` and `/__stats` (only with the fault endpoint enabled).
fn control(app: &App, target: Target, method: &Method, body: &[u8]) -> Response {
    let read = *method == Method::GET || *method == Method::HEAD;
    match (target, read) {
        (Target::Faults, true) => {}
        (Target::Faults, false) => {
            if let Err(message) = plan_faults(&app.faults, body) {
                return error_response(StatusCode::BAD_REQUEST, &message);
            }
        }
        (Target::Stats, true) => {
            return json_response(StatusCode::OK, &json!(app.faults.stats()), false);
        }
        (Target::StatsReset, false) => {
            return json_response(StatusCode::OK, &json!(app.faults.reset_stats()), false);
        }
        _ => {
            return error_response(StatusCode::METHOD_NOT_ALLOWED, "ERR method not allowed");
        }
    }
    json_response(
        StatusCode::OK,
        &json!({ "pending": app.faults.pending() }),
        false,
    )
}

/// Body of `POST /__faults`: `{"mode":"clear"}`, one planned fault such as
/// `{"mode":"status","status":503,"times":2}`, or an array of them (queued in order).
fn plan_faults(faults: &Faults, body: &[u8]) -> Result<(), String> {
    let json: Json =
        serde_json::from_slice(body).map_err(|err| command::malformed(&err.to_string()))?;
    let items = match json {
        Json::Array(items) => items,
        other => vec![other],
    };
    let mut planned = Vec::with_capacity(items.len());
    for item in items {
        if item.get("mode").and_then(Json::as_str) == Some("clear") {
            planned.push(None);
        } else {
            let fault: PlannedFault =
                serde_json::from_value(item).map_err(|err| format!("ERR invalid fault: {err}"))?;
            planned.push(Some(fault));
        }
    }
    for item in planned {
        match item {
            None => faults.clear(),
            Some(fault) => faults.plan(fault),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            classify(&Method::POST, "/", false),
            Target::Command(Route::Single)
        );
        assert_eq!(
            classify(&Method::GET, "/", false),
            Target::Command(Route::PathStyle)
        );
        assert_eq!(
            classify(&Method::GET, "/get/k", false),
            Target::Command(Route::PathStyle)
        );
        assert_eq!(classify(&Method::GET, "/__stats", false), Target::NotFound);
        assert_eq!(classify(&Method::GET, "/__stats", true), Target::Stats);
        assert_eq!(classify(&Method::POST, "/__faults", true), Target::Faults);
    }

    #[test]
    fn auth_rules() {
        let mut headers = HeaderMap::new();
        assert!(!authorized("t", &headers, None));
        assert!(authorized("t", &headers, Some("t")));
        assert!(!authorized("t", &headers, Some("x")));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(authorized("t", &headers, None));
        assert!(authorized("t", &headers, Some("x")));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer x"));
        assert!(!authorized("t", &headers, Some("t")), "the header wins");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic t"));
        assert!(!authorized("t", &headers, None));
    }

    #[test]
    fn sync_tokens_increase() {
        let tokens = SyncTokens::new();
        let ((n, a), (m, b)) = (tokens.next(), tokens.next());
        assert_eq!(a.len(), 24);
        assert!(b > a);
        assert_eq!((tokens.parse(&a), tokens.parse(&b)), (Some(n), Some(m)));
        assert_eq!(tokens.current(), m);
        assert_eq!(
            tokens.parse("00000000000000000000000a"),
            None,
            "another server's"
        );
        assert_eq!(tokens.parse(""), None);
    }
}
