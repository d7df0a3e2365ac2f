//! Store outages and durability, against real servers: a redis-server with
//! AOF (`appendfsync always`) that the tests stop, kill and restart on the
//! same port and directory, the local REST endpoint with injected faults
//! (5xx, hangs, cut JSON), the demo origin, and the gateway in process.
//!
//! Each outage test runs under both policies (`SESSION_STORE_OUTAGE`):
//! statuses, the header the origin gets, the cookie left alone, the number
//! of attempts (counted at the REST endpoint), the latency bound, and
//! recovery with the same cookie and data without rebuilding anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_session::backend::{DirectBackend, RestBackend, RestConfig};
use edge_session::gateway::{Gateway, GatewayConfig};
use edge_session::{
    AnyBackend, Backend as _, Changes, ClientInfo, KeyRing, SessionStore, SessionToken,
};
use futures::StreamExt as _;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use upstash_local::Fault;

use crate::gateway::{get, instruct, json_body, set_cookie};
use crate::support::gateway::TestGateway;
use crate::support::{Kind, REST_TOKEN, SECRETS, free_port, test_config, wait_ready};

/// Per-attempt timeout of the backends under test.
const TIMEOUT: Duration = Duration::from_millis(400);
/// Extra attempts after a retryable failure.
const RETRIES: u32 = 2;
/// The correctness bound on one store step: every attempt timing out, plus
/// generous slack for backoff and a loaded machine. Not a speed target.
fn step_bound() -> Duration {
    TIMEOUT * (RETRIES + 1) + Duration::from_secs(2)
}

/// A redis-server with AOF on (`appendfsync always`) that can be stopped,
/// killed and started again on the same port and directory.
struct AofRedis {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl AofRedis {
    fn start() -> Self {
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("edge-session-outage-{}-{port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut redis = Self {
                child: None,
                dir,
                port,
            };
            if redis.spawn() {
                return redis;
            }
        }
        panic!("could not start redis-server");
    }

    /// Starts the server on `self.port` over `self.dir`; waits until it
    /// answers PING (after loading the AOF).
    fn spawn(&mut self) -> bool {
        let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        let url = self.url();
        let child = self.child.insert(child);
        if wait_ready(child, &url, Duration::from_secs(15)) {
            return true;
        }
        if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
            self.child = None;
        }
        false
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            // The port may linger for a moment after a kill.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not come back on port {}", self.port);
    }

    /// `kill -9`: no chance to flush anything.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A clean stop (`SHUTDOWN`): Redis fsyncs the AOF and exits.
    fn shutdown(&mut self) {
        let _ = redis::cmd("SHUTDOWN").query::<()>(&mut self.inspect());
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server did not shut down");
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn inspect(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn pttl(&self, key: &str) -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query(&mut self.inspect())
            .unwrap()
    }
}

impl Drop for AofRedis {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The backend under test over `redis` (and the REST endpoint for `Rest`).
async fn backend(
    kind: Kind,
    redis: &AofRedis,
    timeout: Duration,
    retries: u32,
) -> (Option<upstash_local::Server>, AnyBackend) {
    match kind {
        Kind::Direct => (
            None,
            AnyBackend::Direct(
                DirectBackend::connect_with(&redis.url(), timeout, retries)
                    .await
                    .unwrap(),
            ),
        ),
        Kind::Rest => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = upstash_local::spawn(
                listener,
                upstash_local::Options::new(redis.url(), REST_TOKEN),
            )
            .await
            .unwrap();
            let mut config = RestConfig::new(server.url(), REST_TOKEN);
            config.timeout = timeout;
            config.max_retries = retries;
            config.backoff = Duration::from_millis(20);
            (
                Some(server),
                AnyBackend::Rest(RestBackend::new(config).unwrap()),
            )
        }
    }
}

async fn start_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(demo_origin::serve(listener));
    origin
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    FailClosed,
    FailOpen,
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// redis-server killed (REST: behind the endpoint; direct: the backend's own server).
    RedisStopped,
    /// The REST endpoint answers 503 to everything.
    ServerError,
    /// The REST endpoint never answers.
    Hang,
    /// The REST endpoint answers 200 with cut JSON.
    MalformedJson,
}

struct Rig {
    redis: AofRedis,
    rest: Option<upstash_local::Server>,
    store: SessionStore<AnyBackend>,
    gateway: TestGateway<AnyBackend>,
}

impl Rig {
    async fn start(kind: Kind, policy: Policy) -> Self {
        Self::start_with(kind, policy, TIMEOUT, RETRIES, None).await
    }

    async fn start_with(
        kind: Kind,
        policy: Policy,
        timeout: Duration,
        retries: u32,
        deadline_ms: Option<u64>,
    ) -> Self {
        let redis = AofRedis::start();
        let (rest, backend) = backend(kind, &redis, timeout, retries).await;
        let store =
            SessionStore::new(backend, test_config(), KeyRing::parse(SECRETS).unwrap()).unwrap();
        store.preload_scripts().await.unwrap();
        let origin = start_origin().await;
        let outage = match policy {
            Policy::FailClosed => "fail-closed",
            Policy::FailOpen => "fail-open",
        };
        let config = GatewayConfig::from_lookup(|name| match name {
            "ORIGIN_URL" => Some(origin.clone()),
            "SESSION_STORE_OUTAGE" => Some(outage.to_owned()),
            "SESSION_STORE_DEADLINE_MS" => deadline_ms.map(|ms| ms.to_string()),
            _ => None,
        })
        .unwrap();
        let gateway = TestGateway::reqwest(Gateway::new(store.clone(), config));
        Self {
            redis,
            rest,
            store,
            gateway,
        }
    }

    fn faults(&self) -> &upstash_local::Faults {
        self.rest.as_ref().expect("a REST rig").faults()
    }

    /// HTTP requests that reached the REST endpoint so far (0 for direct).
    fn attempts(&self) -> u64 {
        self.rest.as_ref().map_or(0, |r| r.faults().requests())
    }

    async fn send(&self, request: Request<Bytes>) -> Response<Bytes> {
        self.gateway.handle(request).await
    }

    fn begin(&mut self, outage: Outage) {
        match outage {
            Outage::RedisStopped => self.redis.kill9(),
            Outage::ServerError => self.faults().inject_always(Fault::status(503)),
            Outage::Hang => self.faults().inject_always(Fault::Hang),
            Outage::MalformedJson => self.faults().inject_always(Fault::MalformedJson),
        }
    }

    async fn end(&mut self, outage: Outage) {
        match outage {
            Outage::RedisStopped => {
                self.redis.restart();
                if self.rest.is_some() {
                    self.wait_for_rest().await;
                }
            }
            _ => self.faults().clear(),
        }
    }

    /// The REST endpoint reconnects to a restarted Redis on its own (its
    /// connection manager), which takes a moment: waits until it answers a
    /// PING, without touching the gateway.
    async fn wait_for_rest(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ping = [edge_session::backend::Command::new("PING")];
            let answer = self
                .store
                .backend()
                .pipeline(&ping, edge_session::backend::Retry::Idempotent)
                .await;
            if answer.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the REST endpoint did not reconnect"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn header<'r>(response: &'r Response<Bytes>, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Signs in as `user` and counts to 2 in field `n`; returns the cookie and
/// the session id.
async fn signed_in_with_data(rig: &Rig, user: &str) -> (String, String) {
    let response = rig.send(instruct(None, json!({ "login": user }))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = set_cookie(&response)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        let response = rig.send(get("/incr", Some(&cookie))).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let me = rig.send(get("/api/whoami", Some(&cookie))).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me = json_body(&me);
    assert_eq!(me["data"], json!({ "n": 2 }), "{me}");
    (cookie, me["session_id"].as_str().unwrap().to_owned())
}

/// One outage from start to recovery under one policy.
async fn outage_scenario(kind: Kind, policy: Policy, outage: Outage) {
    let mut rig = Rig::start(kind, policy).await;
    let (cookie, id) = signed_in_with_data(&rig, "olga").await;
    let with_other = format!("{cookie}; theme=dark");
    rig.begin(outage);

    // A signed-in read: bounded attempts, bounded latency, then the policy.
    let before = rig.attempts();
    let started = Instant::now();
    let response = rig.send(get("/api/whoami", Some(&with_other))).await;
    let elapsed = started.elapsed();
    let attempts = rig.attempts() - before;
    assert!(elapsed < step_bound(), "{outage:?}: took {elapsed:?}");
    if kind == Kind::Rest {
        let most = if outage == Outage::MalformedJson {
            1 // a cut reply is not retried: the command may have run
        } else {
            u64::from(RETRIES) + 1
        };
        assert!(
            (1..=most).contains(&attempts),
            "{outage:?}: {attempts} attempts, at most {most}"
        );
        if matches!(outage, Outage::ServerError | Outage::Hang) {
            assert_eq!(attempts, most, "{outage:?}: every retry is used");
        }
    }
    assert!(
        set_cookie(&response).is_none(),
        "the cookie is never touched"
    );
    match policy {
        Policy::FailClosed => {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(json_body(&response)["code"], json!("store_unavailable"));
            assert_eq!(header(&response, "retry-after"), Some("5"));
        }
        Policy::FailOpen => {
            assert_eq!(response.status(), StatusCode::OK);
            let body = json_body(&response);
            assert_eq!(
                body["session_headers"],
                json!({ "x-session-store": "unavailable" }),
                "{body}"
            );
            assert_eq!(body["user"], Value::Null);
            assert_eq!(
                body["cookie_header"],
                json!("theme=dark"),
                "the token never reaches the origin"
            );
        }
    }

    // Writes, a login and a logout from the origin: refused or dropped, the
    // cookie neither replaced nor cleared.
    for (request, instruction) in [
        (get("/incr", Some(&cookie)), "x-session-incr"),
        (
            instruct(Some(&cookie), json!({ "set": { "theme": "dark" } })),
            "x-session-set",
        ),
        (
            instruct(Some(&cookie), json!({ "login": "mallory" })),
            "x-session-login",
        ),
        (
            instruct(Some(&cookie), json!({ "logout": "all" })),
            "x-session-logout",
        ),
    ] {
        let before = rig.attempts();
        let response = rig.send(request).await;
        let cookie = set_cookie(&response);
        if policy == Policy::FailOpen && instruction == "x-session-logout" {
            // A dropped logout still clears the cookie in the browser.
            assert!(
                cookie.is_some_and(|c| c.contains("Max-Age=0")),
                "{instruction}"
            );
        } else {
            assert!(cookie.is_none(), "{instruction}");
        }
        assert!(rig.attempts() - before <= u64::from(RETRIES) + 1);
        match policy {
            Policy::FailClosed => {
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(header(&response, "x-session-dropped"), None);
            }
            Policy::FailOpen => {
                assert_eq!(response.status(), StatusCode::OK, "{instruction}");
                assert_eq!(header(&response, "x-session-dropped"), Some(instruction));
                assert!(
                    !response.headers().contains_key(instruction),
                    "instructions never reach the client"
                );
            }
        }
    }

    // The APIs answer 503 under both policies.
    let response = rig.send(get("/_session", Some(&cookie))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), Some("5"));

    // Anonymous visitors never needed the store.
    let before = rig.attempts();
    let response = rig.send(get("/api/whoami", None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(&response)["session_headers"], json!({}));
    assert_eq!(rig.attempts(), before);

    // Recovery: same gateway, same cookie, same session, same data.
    rig.end(outage).await;
    let response = rig.send(get("/api/whoami", Some(&cookie))).await;
    assert_eq!(response.status(), StatusCode::OK, "{outage:?}: recovered");
    let me = json_body(&response);
    assert_eq!(me["session_id"], json!(id));
    assert_eq!(me["user"], json!("olga"));
    assert_eq!(
        me["data"],
        json!({ "n": 2 }),
        "nothing of the outage applied"
    );
    let response = rig.send(get("/incr", Some(&cookie))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-session-dropped"), None);
    let me = json_body(&rig.send(get("/api/whoami", Some(&cookie))).await);
    assert_eq!(me["data"], json!({ "n": 3 }));
    assert_eq!(rig.store.devices("olga").await.unwrap().len(), 1);
}

macro_rules! outage_tests {
    ($kind:expr, $($name:ident: $outage:expr),* $(,)?) => {
        mod fail_closed {
            use super::super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { outage_scenario($kind, Policy::FailClosed, $outage).await })*
        }
        mod fail_open {
            use super::super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { outage_scenario($kind, Policy::FailOpen, $outage).await })*
        }
    };
}

mod rest {
    outage_tests!(
        Kind::Rest,
        redis_stopped: Outage::RedisStopped,
        server_error: Outage::ServerError,
        hanging_endpoint: Outage::Hang,
        malformed_json: Outage::MalformedJson,
    );
}

mod direct {
    outage_tests!(Kind::Direct, redis_stopped: Outage::RedisStopped);
}

/// The deadline bounds a store step even when timeout × attempts would not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_bounds_retries_that_would_take_longer() {
    let timeout = Duration::from_millis(1000);
    let deadline = Duration::from_millis(1200);
    for policy in [Policy::FailClosed, Policy::FailOpen] {
        let mut rig = Rig::start_with(Kind::Rest, policy, timeout, 5, Some(1200)).await;
        let (cookie, _) = signed_in_with_data(&rig, "dora").await;
        rig.begin(Outage::Hang);
        let before = rig.attempts();
        let started = Instant::now();
        let response = rig.send(get("/api/whoami", Some(&cookie))).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed >= deadline && elapsed < deadline + Duration::from_secs(2),
            "{elapsed:?}"
        );
        assert!(rig.attempts() - before <= 2, "the deadline cut the retries");
        let expected = match policy {
            Policy::FailClosed => StatusCode::SERVICE_UNAVAILABLE,
            Policy::FailOpen => StatusCode::OK,
        };
        assert_eq!(response.status(), expected);
        // The APIs too.
        let started = Instant::now();
        let response = rig.send(get("/_session", Some(&cookie))).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < deadline + Duration::from_secs(2));
        rig.end(Outage::Hang).await;
        let me = json_body(&rig.send(get("/api/whoami", Some(&cookie))).await);
        assert_eq!(me["data"], json!({ "n": 2 }));
    }
}

/// The store fails after the origin answered (the load worked, the write
/// did not): fail-closed answers 503, fail-open delivers the origin's
/// response without the write and without a cookie change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_after_the_origin_answered() {
    for policy in [Policy::FailClosed, Policy::FailOpen] {
        let rig = Rig::start(Kind::Rest, policy).await;
        let (cookie, id) = signed_in_with_data(&rig, "wanda").await;
        // The load is served (a zero delay), then every request fails.
        rig.faults().inject(Fault::delay(Duration::ZERO), 1);
        rig.faults().inject_always(Fault::status(503));
        let before = rig.attempts();
        let response = rig.send(get("/incr", Some(&cookie))).await;
        assert_eq!(
            rig.attempts() - before,
            2,
            "one load, one write attempt (an increment is not replayed after a 5xx)"
        );
        assert!(set_cookie(&response).is_none());
        match policy {
            Policy::FailClosed => {
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            }
            Policy::FailOpen => {
                assert_eq!(response.status(), StatusCode::OK);
                assert_eq!(response.body().as_ref(), b"ok");
                assert_eq!(
                    header(&response, "x-session-dropped"),
                    Some("x-session-incr")
                );
            }
        }
        rig.faults().clear();
        let me = json_body(&rig.send(get("/api/whoami", Some(&cookie))).await);
        assert_eq!(me["session_id"], json!(id));
        assert_eq!(me["data"], json!({ "n": 2 }));
    }
}

/// One acknowledged session of the durability test.
struct Acked {
    token: SessionToken,
    i: u64,
    /// Increments acknowledged.
    n: AtomicU64,
    /// Increments that failed without an answer (they may have been applied).
    unsure: AtomicU64,
    /// `_abs` as read back before the first restart (0: not read).
    absolute: u64,
}

async fn create_acked(store: &SessionStore<AnyBackend>, i: u64, with_n: bool) -> Acked {
    let mut changes = Changes::new();
    changes.set("i", &i).unwrap();
    changes.set("name", &format!("session-{i}")).unwrap();
    if with_n {
        changes.incr("n", 1).unwrap();
    }
    // A create that fails is not acknowledged: try again (a new token).
    loop {
        match store.create(None, &changes, &ClientInfo::default()).await {
            Ok((token, _)) => {
                return Acked {
                    token,
                    i,
                    n: AtomicU64::new(u64::from(with_n)),
                    unsure: AtomicU64::new(0),
                    absolute: 0,
                };
            }
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn incr_acked(store: &SessionStore<AnyBackend>, acked: &Acked) {
    let mut changes = Changes::new();
    changes.incr("n", 1).unwrap();
    loop {
        match store.apply(&acked.token, &changes).await {
            Ok(_) => {
                acked.n.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                acked.unsure.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Every acknowledged session is there with its data, a TTL and its `_abs`.
async fn verify_all(redis: &AofRedis, store: &SessionStore<AnyBackend>, all: &[Arc<Acked>]) {
    for acked in all {
        let session = store
            .load(&acked.token)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("session {} lost", acked.i));
        assert_eq!(session.get::<u64>("i").unwrap(), Some(acked.i));
        assert_eq!(
            session.get::<String>("name").unwrap(),
            Some(format!("session-{}", acked.i))
        );
        let n = session.get::<u64>("n").unwrap().unwrap_or(0);
        let (at_least, unsure) = (
            acked.n.load(Ordering::SeqCst),
            acked.unsure.load(Ordering::SeqCst),
        );
        assert!(
            n >= at_least && n <= at_least + unsure,
            "session {}: n = {n}, acknowledged {at_least}, unsure {unsure}",
            acked.i
        );
        if acked.absolute != 0 {
            assert_eq!(session.absolute_expiry().as_millis(), acked.absolute);
        }
        assert!(session.absolute_expiry() > session.loaded_at());
        let pttl = redis.pttl(&store.layout().session(&acked.token));
        assert!(pttl > 0, "session {} has no TTL ({pttl})", acked.i);
    }
}

const DURABLE_SESSIONS: u64 = 2_000;

async fn acknowledged_writes_survive_restarts(kind: Kind) {
    let mut redis = AofRedis::start();
    let (_rest, backend) = backend(kind, &redis, Duration::from_secs(2), 2).await;
    let mut config = test_config();
    config.touch_interval = Duration::from_secs(60);
    let store = SessionStore::new(backend, config, KeyRing::parse(SECRETS).unwrap()).unwrap();
    store.preload_scripts().await.unwrap();

    // Phase 1: half the sessions, a quarter of them with three increments.
    let half = DURABLE_SESSIONS / 2;
    let mut all: Vec<Arc<Acked>> = futures::stream::iter(0..half)
        .map(|i| {
            let store = store.clone();
            async move {
                let acked = create_acked(&store, i, i % 4 == 0).await;
                if i % 4 == 0 {
                    incr_acked(&store, &acked).await;
                    incr_acked(&store, &acked).await;
                }
                acked
            }
        })
        .buffer_unordered(32)
        .map(Arc::new)
        .collect()
        .await;
    for acked in &mut all {
        let session = store.load(&acked.token).await.unwrap().unwrap();
        Arc::get_mut(acked).unwrap().absolute = session.absolute_expiry().as_millis();
    }

    // A clean restart.
    redis.shutdown();
    redis.restart();
    verify_all(&redis, &store, &all).await;

    // Phase 2: the other half plus increments on phase-1 sessions, with a
    // `kill -9` in the middle; the workload goes on through the outage.
    let done = Arc::new(AtomicUsize::new(0));
    let workload = {
        let (store, done) = (store.clone(), Arc::clone(&done));
        let old: Vec<Arc<Acked>> = all.iter().filter(|a| a.i % 4 == 0).cloned().collect();
        tokio::spawn(async move {
            futures::stream::iter(half..DURABLE_SESSIONS)
                .map(|i| {
                    let (store, done) = (store.clone(), Arc::clone(&done));
                    let old = Arc::clone(&old[usize::try_from(i % 250).unwrap()]);
                    async move {
                        let acked = create_acked(&store, i, i % 2 == 0).await;
                        incr_acked(&store, &old).await;
                        done.fetch_add(1, Ordering::SeqCst);
                        Arc::new(acked)
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        })
    };
    let third = usize::try_from(half / 3).unwrap();
    while done.load(Ordering::SeqCst) < third {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.kill9();
    let killed_at = done.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    let second = workload.await.unwrap();
    assert!(
        killed_at < usize::try_from(half).unwrap(),
        "the kill happened mid-workload ({killed_at} of {half} done)"
    );
    all.extend(second);
    assert_eq!(all.len(), usize::try_from(DURABLE_SESSIONS).unwrap());
    verify_all(&redis, &store, &all).await;

    // kill -9 once more with nothing in flight: still all there.
    redis.kill9();
    redis.restart();
    verify_all(&redis, &store, &all).await;

    // The same store keeps working, without being rebuilt.
    let fresh = create_acked(&store, DURABLE_SESSIONS, true).await;
    incr_acked(&store, &fresh).await;
    verify_all(&redis, &store, &[Arc::new(fresh)]).await;
}

mod durability {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct() {
        acknowledged_writes_survive_restarts(Kind::Direct).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rest() {
        acknowledged_writes_survive_restarts(Kind::Rest).await;
    }
}
