//! Test support: a redis-server of our own on a free port, the local REST
//! endpoint and the demo origin in process, the gateway over them, and
//! events built from the checked-in fixtures.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use edge_session_lambda::streaming::ResponseStream;
use edge_session_lambda::{Env, LambdaGateway};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

pub const SECRETS: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const REST_TOKEN: &str = "lambda-test-rest-token";
pub const ADMIN: &str = "admin-token-0123456789";

/// The checked-in fixtures.
pub mod fixtures {
    pub const REST_API: &str = include_str!("../fixtures/rest-api.json");
    pub const REST_API_BASE64: &str = include_str!("../fixtures/rest-api-base64.json");
    pub const HTTP_API: &str = include_str!("../fixtures/http-api.json");
    pub const HTTP_API_STAGE: &str = include_str!("../fixtures/http-api-stage.json");
    pub const FUNCTION_URL: &str = include_str!("../fixtures/function-url.json");
    /// What `cargo lambda watch` sends for `/lambda-url/<fn>/...` (payload 2.0
    /// with the deprecated top-level `httpMethod`).
    pub const FUNCTION_URL_CARGO_LAMBDA: &str =
        include_str!("../fixtures/function-url-cargo-lambda.json");
    pub const MALFORMED: [(&str, &str); 8] = [
        (
            "not-http",
            include_str!("../fixtures/malformed-not-http.json"),
        ),
        (
            "bad-base64",
            include_str!("../fixtures/malformed-bad-base64.json"),
        ),
        (
            "bad-host",
            include_str!("../fixtures/malformed-bad-host.json"),
        ),
        (
            "bad-query",
            include_str!("../fixtures/malformed-bad-query.json"),
        ),
        (
            "bad-path",
            include_str!("../fixtures/malformed-bad-path.json"),
        ),
        (
            "bad-method",
            include_str!("../fixtures/malformed-bad-method.json"),
        ),
        (
            "bad-header",
            include_str!("../fixtures/malformed-bad-header.json"),
        ),
        (
            "bad-scheme",
            include_str!("../fixtures/malformed-bad-scheme.json"),
        ),
    ];
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server of our own (temp dir, free port), killed and removed on drop.
pub struct RedisServer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> Self {
        let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "edge-session-lambda-test-{}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (apt-get install redis-server)");
            let mut server = Self { child, dir, port };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("could not start redis-server");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.command("PING").starts_with("+PONG") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// One inline command, its raw reply ("" when unreachable).
    pub fn command(&self, command: &str) -> String {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream
            .write_all(format!("{command}\r\n").as_bytes())
            .is_err()
        {
            return String::new();
        }
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Number of keys in the database.
    pub fn key_count(&self) -> u64 {
        let reply = self.command("DBSIZE");
        reply
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap_or(u64::MAX)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// An outage: the server is gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server, the REST endpoint in front of it, the demo origin and
/// the gateway over them, built from variables as the function does.
pub struct Rig {
    pub redis: RedisServer,
    pub rest: upstash_local::Server,
    pub origin: String,
    pub env: Env,
    pub gateway: LambdaGateway,
}

pub async fn start_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(demo_origin::serve(listener));
    origin
}

pub async fn start_rest(redis: &RedisServer) -> upstash_local::Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    upstash_local::spawn(
        listener,
        upstash_local::Options::new(redis.url(), REST_TOKEN),
    )
    .await
    .unwrap()
}

impl Rig {
    pub async fn start() -> Self {
        Self::with(&[]).await
    }

    /// With extra variables (or overrides).
    pub async fn with(extra: &[(&str, &str)]) -> Self {
        let redis = RedisServer::start();
        let rest = start_rest(&redis).await;
        let origin = start_origin().await;
        let mut vars = vec![
            ("SESSION_SECRETS".to_owned(), SECRETS.to_owned()),
            ("UPSTASH_REDIS_REST_URL".to_owned(), rest.url()),
            ("UPSTASH_REDIS_REST_TOKEN".to_owned(), REST_TOKEN.to_owned()),
            ("ORIGIN_URL".to_owned(), origin.clone()),
            ("ADMIN_TOKEN".to_owned(), ADMIN.to_owned()),
            ("SESSION_TOUCH_INTERVAL".to_owned(), "0".to_owned()),
        ];
        for (k, v) in extra {
            vars.retain(|(name, _)| name != k);
            vars.push(((*k).to_owned(), (*v).to_owned()));
        }
        let env = Env::from_pairs(vars);
        let client = edge_session_lambda::http_client().unwrap();
        let gateway = edge_session_lambda::gateway(&env, client).await.unwrap();
        Self {
            redis,
            rest,
            origin,
            env,
            gateway,
        }
    }

    /// One invocation, as the runtime makes it (buffered mode).
    pub async fn invoke(&self, event: &Event) -> Reply {
        let value = edge_session_lambda::handle_event(&self.gateway, event.json.clone()).await;
        Reply::new(event.kind, value)
    }

    /// One invocation in streaming mode: the prelude, and the body to read.
    pub async fn stream(&self, event: &Event) -> Streamed {
        self.stream_json(event.json.clone()).await
    }

    /// One streamed invocation of any JSON event.
    pub async fn stream_json(&self, event: Value) -> Streamed {
        let started = Instant::now();
        let response = edge_session_lambda::stream_event(&self.gateway, event).await;
        // Exactly what lambda_runtime serializes before the 8 NUL bytes.
        let prelude = serde_json::to_value(&response.metadata_prelude).unwrap();
        Streamed {
            prelude,
            stream: response.stream,
            started,
        }
    }
}

/// A streamed response: the metadata prelude as JSON, and the body stream.
pub struct Streamed {
    pub prelude: Value,
    stream: ResponseStream,
    /// When the invocation started.
    pub started: Instant,
}

/// What a streamed body delivered, and when.
#[derive(Debug)]
pub struct Received {
    pub bytes: Vec<u8>,
    /// Time from the invocation to each chunk.
    pub chunks: Vec<(Duration, usize)>,
}

impl Received {
    pub fn first(&self) -> Duration {
        self.chunks.first().map(|c| c.0).unwrap_or_default()
    }

    pub fn last(&self) -> Duration {
        self.chunks.last().map(|c| c.0).unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

impl Streamed {
    pub fn status(&self) -> u64 {
        self.prelude["statusCode"].as_u64().unwrap()
    }

    /// A header of the prelude: always one string (several values joined).
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.prelude["headers"].get(name)?;
        Some(
            value
                .as_str()
                .unwrap_or_else(|| panic!("{name}: not a string: {value}"))
                .to_owned(),
        )
    }

    /// Every header of the prelude (names and string values).
    pub fn headers(&self) -> Vec<(String, String)> {
        self.prelude["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .unwrap_or_else(|| panic!("{k}: not a string: {v}"));
                (k.clone(), v.to_owned())
            })
            .collect()
    }

    /// The prelude's `cookies`: one `Set-Cookie` each.
    pub fn cookies(&self) -> Vec<String> {
        self.prelude["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookies()
            .into_iter()
            .find(|c| c.starts_with("__Host-session="))
    }

    /// `name=value` of the session cookie set.
    pub fn cookie(&self) -> String {
        let set = self.session_cookie().expect("a session cookie is set");
        set.split(';').next().unwrap().to_owned()
    }

    /// The next chunk, if any.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        self.stream.next().await.map(|chunk| chunk.unwrap())
    }

    /// Reads the body to its end (within `limit`: no hang).
    pub async fn receive(mut self, limit: Duration) -> Received {
        let mut received = Received {
            bytes: Vec::new(),
            chunks: Vec::new(),
        };
        let read = async {
            while let Some(chunk) = self.next_chunk().await {
                received.chunks.push((self.started.elapsed(), chunk.len()));
                received.bytes.extend_from_slice(&chunk);
            }
        };
        tokio::time::timeout(limit, read)
            .await
            .expect("the stream ended in time");
        received
    }
}

/// Which fixture family an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// REST API (payload 1.0), stage `prod`.
    Rest,
    /// HTTP API (payload 2.0).
    Http,
}

/// An event built from a fixture.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    pub json: Value,
    /// Stage prefix of the raw path of a staged HTTP API event.
    raw_prefix: String,
}

impl Event {
    pub fn rest() -> Self {
        Self::from_fixture(fixtures::REST_API)
    }

    pub fn http() -> Self {
        Self::from_fixture(fixtures::HTTP_API)
    }

    pub fn http_stage() -> Self {
        let mut e = Self::from_fixture(fixtures::HTTP_API_STAGE);
        e.raw_prefix = "/prod".to_owned();
        e
    }

    pub fn function_url() -> Self {
        Self::from_fixture(fixtures::FUNCTION_URL)
    }

    pub fn cargo_lambda() -> Self {
        Self::from_fixture(fixtures::FUNCTION_URL_CARGO_LAMBDA)
    }

    pub fn from_fixture(text: &str) -> Self {
        let json: Value = serde_json::from_str(text).unwrap();
        let kind = if json["version"] != json!("2.0") && json.get("httpMethod").is_some() {
            Kind::Rest
        } else {
            Kind::Http
        };
        Self {
            kind,
            json,
            raw_prefix: String::new(),
        }
    }

    pub fn text(&self) -> String {
        self.json.to_string()
    }

    pub fn method(mut self, method: &str) -> Self {
        match self.kind {
            Kind::Rest => {
                self.json["httpMethod"] = json!(method);
                self.json["requestContext"]["httpMethod"] = json!(method);
            }
            Kind::Http => self.json["requestContext"]["http"]["method"] = json!(method),
        }
        self
    }

    /// The path as the application sees it (the stage is added as API
    /// Gateway would).
    pub fn path(mut self, path: &str) -> Self {
        match self.kind {
            Kind::Rest => {
                self.json["path"] = json!(path);
                self.json["requestContext"]["path"] = json!(format!("/prod{path}"));
            }
            Kind::Http => {
                let raw = format!("{}{path}", self.raw_prefix);
                self.json["rawPath"] = json!(raw);
                self.json["requestContext"]["http"]["path"] = json!(raw);
            }
        }
        self
    }

    /// The query string (`a=1&b=2`, no escapes needed), as each event kind
    /// carries it.
    pub fn query(mut self, query: &str) -> Self {
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let single: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        match self.kind {
            Kind::Rest => {
                let multi: serde_json::Map<String, Value> = pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), json!([v])))
                    .collect();
                self.json["queryStringParameters"] = Value::Object(single);
                self.json["multiValueQueryStringParameters"] = Value::Object(multi);
            }
            Kind::Http => {
                self.json["rawQueryString"] = json!(query);
                self.json["queryStringParameters"] = Value::Object(single);
            }
        }
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.json["headers"][name] = json!(value);
        if self.kind == Kind::Rest {
            self.json["multiValueHeaders"][name] = json!([value]);
        }
        self
    }

    /// The `Cookie` header (REST API) or the `cookies` array (HTTP API).
    pub fn cookie(mut self, cookie: &str) -> Self {
        match self.kind {
            Kind::Rest => return self.header("Cookie", cookie),
            Kind::Http => {
                let crumbs: Vec<&str> = cookie.split("; ").collect();
                self.json["cookies"] = json!(crumbs);
            }
        }
        self
    }

    pub fn json_body(mut self, body: &Value) -> Self {
        self.json["body"] = json!(body.to_string());
        self.json["isBase64Encoded"] = json!(false);
        self.header("content-type", "application/json")
    }

    pub fn base64_body(mut self, body: &[u8]) -> Self {
        self.json["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
        self.json["isBase64Encoded"] = json!(true);
        self
    }

    /// `POST /api/instruct`: the demo origin answers with these instructions.
    pub fn instruct(self, instructions: &Value) -> Self {
        self.method("POST")
            .path("/api/instruct")
            .json_body(instructions)
    }
}

/// A response as API Gateway receives it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: Kind,
    pub json: Value,
}

impl Reply {
    pub fn new(kind: Kind, json: Value) -> Self {
        Self { kind, json }
    }

    pub fn status(&self) -> u64 {
        self.json["statusCode"].as_u64().unwrap()
    }

    /// Every value of a header (Set-Cookie included), in either format.
    pub fn headers(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        if name == "set-cookie" {
            return self.set_cookies();
        }
        match self.kind {
            Kind::Rest => self.json["multiValueHeaders"][&name]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default(),
            Kind::Http => self.json["headers"][&name]
                .as_str()
                .map(|v| vec![v.to_owned()])
                .unwrap_or_default(),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// `cookies` (payload 2.0) or `multiValueHeaders["set-cookie"]` (1.0).
    pub fn set_cookies(&self) -> Vec<String> {
        let list = match self.kind {
            Kind::Rest => {
                assert!(
                    self.json.get("cookies").is_none(),
                    "REST API answers have no cookies field"
                );
                &self.json["multiValueHeaders"]["set-cookie"]
            }
            Kind::Http => {
                assert!(
                    self.json["headers"].get("set-cookie").is_none(),
                    "HTTP API answers carry Set-Cookie in cookies only"
                );
                &self.json["cookies"]
            }
        };
        list.as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    /// The session cookie set, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with("__Host-session="))
    }

    /// `name=value` of the session cookie set (for the next request).
    pub fn cookie(&self) -> String {
        let set = self.session_cookie().expect("a session cookie is set");
        set.split(';').next().unwrap().to_owned()
    }

    pub fn body_bytes(&self) -> Vec<u8> {
        let body = self.json["body"].as_str().unwrap_or_default();
        if self.json["isBase64Encoded"] == json!(true) {
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap()
        } else {
            body.as_bytes().to_vec()
        }
    }

    pub fn body(&self) -> Value {
        serde_json::from_slice(&self.body_bytes()).unwrap_or(Value::Null)
    }
}

/// Asserts the session cookie attributes of a `Set-Cookie` value.
pub fn assert_secure_cookie(set_cookie: &str) {
    for attr in [
        "__Host-session=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(set_cookie.contains(attr), "{set_cookie} lacks {attr}");
    }
}
