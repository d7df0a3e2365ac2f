//! End-to-end tests of the `edge-session` binary against a real
//! `redis-server` each test starts on a free port, directly and through the
//! local Upstash-compatible REST endpoint. Data is seeded through the library.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use edge_session::backend::DirectBackend;
use edge_session::{
    AnyBackend, Changes, ClientInfo, IndexSpec, KeyRing, SessionConfig, SessionStore, SessionToken,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_edge-session");
const REST_TOKEN: &str = "test-rest-token";
const SECRETS: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// A session id that names no session.
const BOGUS_ID: &str = "{0000000000000000000000000000000000000000000000000000000000000000}";

/// Runs each named `async fn name(kind: Kind)` as one test per backend.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod direct {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Direct).await })*
        }
        mod rest {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Rest).await })*
        }
    };
}

both_backends!(
    sessions_list_and_revoke,
    query_counts_active_stats,
    reindex_after_declaring_an_index,
    audit_finds_and_fixes_problems,
    unreachable_or_refused_store_exits_3,
);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server of our own, killed and removed on drop.
struct RedisServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "edge-session-cli-test-{}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let child = std::process::Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/test installs it)");
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
                return false; // port taken: try another one
            }
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    Rest,
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit code: {self:?}");
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        self
    }
}

/// A redis-server, the REST endpoint in front of it for `Kind::Rest`, and
/// the environment that points the binary at one of them.
struct Setup {
    redis: RedisServer,
    rest: Option<upstash_local::Server>,
}

impl Setup {
    async fn start(kind: Kind) -> Self {
        let redis = RedisServer::start();
        let rest = match kind {
            Kind::Direct => None,
            Kind::Rest => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let options = upstash_local::Options::new(redis.url(), REST_TOKEN);
                Some(upstash_local::spawn(listener, options).await.unwrap())
            }
        };
        Self { redis, rest }
    }

    /// The backend variables (and the indexes the seeding store declares).
    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("SESSION_INDEXES".to_owned(), "tenant,cart[]".to_owned())];
        match &self.rest {
            None => env.push(("REDIS_URL".to_owned(), self.redis.url())),
            Some(rest) => {
                env.push(("UPSTASH_REDIS_REST_URL".to_owned(), rest.url()));
                env.push(("UPSTASH_REDIS_REST_TOKEN".to_owned(), REST_TOKEN.to_owned()));
            }
        }
        env
    }

    async fn cli(&self, args: &[&str]) -> Run {
        self.cli_env(args, &[]).await
    }

    /// Runs the binary with the backend variables plus `extra` (which wins).
    async fn cli_env(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut env = self.env();
        for (name, value) in extra {
            env.retain(|(n, _)| n != name);
            env.push(((*name).to_owned(), (*value).to_owned()));
        }
        run(args, &env).await
    }

    /// A store over the same Redis, for seeding (direct backend).
    async fn store(&self, indexes: &str) -> SessionStore<AnyBackend> {
        self.store_with(indexes, "es:").await
    }

    async fn store_with(&self, indexes: &str, prefix: &str) -> SessionStore<AnyBackend> {
        let mut config = SessionConfig::default();
        config.touch_interval = Duration::ZERO;
        config.indexes = IndexSpec::parse_list(indexes).unwrap();
        config.key_prefix = prefix.to_owned();
        let backend = DirectBackend::connect(&self.redis.url()).await.unwrap();
        SessionStore::new(
            AnyBackend::Direct(backend),
            config,
            KeyRing::parse(SECRETS).unwrap(),
        )
        .unwrap()
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(self.redis.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn pttl(&self, key: &str) -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query(&mut self.redis())
            .unwrap()
    }
}

/// Runs the binary with exactly `env` (nothing inherited but `PATH`).
async fn run(args: &[&str], env: &[(String, String)]) -> Run {
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the binary did not finish within 60 s")
        .unwrap();
    Run {
        code: output.status.code().expect("killed by a signal"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn changes(pairs: &[(&str, Value)]) -> Changes {
    let mut changes = Changes::new();
    for (field, value) in pairs {
        changes.set_json(field, value).unwrap();
    }
    changes
}

fn handles(sessions: &Value) -> BTreeSet<String> {
    sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handle"].as_str().unwrap().to_owned())
        .collect()
}

fn set_of(tokens: &[&SessionToken]) -> BTreeSet<String> {
    tokens.iter().map(|t| t.handle().to_string()).collect()
}

async fn sessions_list_and_revoke(kind: Kind) {
    let setup = Setup::start(kind).await;
    let store = setup.store("").await;
    let phone = ClientInfo::with_user_agent(Some("Phone/1.0"));
    let (a1, _) = store
        .create(Some("alice"), &Changes::new(), &phone)
        .await
        .unwrap();
    let (a2, _) = store
        .create(Some("alice"), &Changes::new(), &ClientInfo::default())
        .await
        .unwrap();
    let (b1, _) = store
        .create(Some("bob"), &Changes::new(), &ClientInfo::default())
        .await
        .unwrap();

    let listed = setup
        .cli(&["--json", "sessions", "list", "--user", "alice"])
        .await
        .expect(0)
        .json();
    assert_eq!(listed["user"], "alice");
    assert_eq!(handles(&listed["sessions"]), set_of(&[&a1, &a2]));
    let phone_entry = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["handle"] == a1.handle().as_str())
        .unwrap();
    assert_eq!(phone_entry["user_agent"], "Phone/1.0");
    // Raw milliseconds in JSON.
    let created = phone_entry["created"].as_u64().unwrap();
    let expires = phone_entry["expires"].as_u64().unwrap();
    // The idle timeout (the expiry is read back from the key's TTL: a
    // millisecond may be lost).
    let idle = 30 * 60 * 1000;
    assert!(
        (idle - 1000..=idle).contains(&(expires - created)),
        "{phone_entry}"
    );

    // Tables: both handles, times in RFC 3339.
    let table = setup
        .cli(&["sessions", "list", "--user", "alice"])
        .await
        .expect(0);
    assert!(table.stdout.contains(a1.handle().as_str()), "{table:?}");
    assert!(table.stdout.contains(a2.handle().as_str()), "{table:?}");
    assert!(table.stdout.contains("Phone/1.0"), "{table:?}");
    assert!(table.stdout.contains("2 live sessions"), "{table:?}");
    assert!(table.stdout.contains("Z "), "RFC 3339 times: {table:?}");

    // Revoke one: exit 0, then exit 1 when it no longer exists.
    let revoked = setup
        .cli(&[
            "--json",
            "sessions",
            "revoke",
            "--user",
            "alice",
            "--id",
            a1.handle().as_str(),
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(revoked["revoked"], 1);
    let again = setup
        .cli(&[
            "sessions",
            "revoke",
            "--user",
            "alice",
            "--id",
            a1.handle().as_str(),
        ])
        .await
        .expect(1);
    assert!(again.stdout.contains("nothing revoked"), "{again:?}");
    // Another user's session is not alice's to revoke.
    setup
        .cli(&[
            "sessions",
            "revoke",
            "--user",
            "alice",
            "--id",
            b1.handle().as_str(),
        ])
        .await
        .expect(1);
    assert!(store.load(&a1).await.unwrap().is_none());
    assert!(store.load(&b1).await.unwrap().is_some());
    let listed = setup
        .cli(&["--json", "sessions", "list", "--user", "alice"])
        .await
        .expect(0)
        .json();
    assert_eq!(handles(&listed["sessions"]), set_of(&[&a2]));

    // Revoke all: the count, exit 0 even when there was nothing left.
    let (_a3, _) = store
        .create(Some("alice"), &Changes::new(), &ClientInfo::default())
        .await
        .unwrap();
    let all = setup
        .cli(&["--json", "sessions", "revoke", "--user", "alice", "--all"])
        .await
        .expect(0)
        .json();
    assert_eq!(all["revoked"], 2);
    let none = setup
        .cli(&["sessions", "revoke", "--user", "alice", "--all"])
        .await
        .expect(0);
    assert!(none.stdout.contains("revoked 0 sessions"), "{none:?}");
    let empty = setup
        .cli(&["sessions", "list", "--user", "alice"])
        .await
        .expect(0);
    assert!(empty.stdout.contains("no live sessions"), "{empty:?}");
    let bob = setup
        .cli(&["--json", "sessions", "list", "--user", "bob"])
        .await
        .expect(0)
        .json();
    assert_eq!(handles(&bob["sessions"]), set_of(&[&b1]));
}

async fn query_counts_active_stats(kind: Kind) {
    let setup = Setup::start(kind).await;
    let store = setup.store("tenant,cart[]").await;
    let none = ClientInfo::default();
    let acme = || changes(&[("tenant", "acme".into())]);
    let (anon1, _) = store.create(None, &acme(), &none).await.unwrap();
    let (alice, _) = store.create(Some("alice"), &acme(), &none).await.unwrap();
    let (bob, _) = store.create(Some("bob"), &acme(), &none).await.unwrap();
    let (carol, _) = store
        .create(
            Some("carol"),
            &changes(&[
                ("tenant", "globex".into()),
                ("cart", serde_json::json!(["book", "pen"])),
            ]),
            &none,
        )
        .await
        .unwrap();
    let (anon2, _) = store
        .create(
            None,
            &changes(&[
                ("tenant", "globex".into()),
                ("cart", serde_json::json!(["book"])),
            ]),
            &none,
        )
        .await
        .unwrap();

    // query: every page, pages, and an array index.
    let page = setup
        .cli(&["--json", "query", "tenant", "acme"])
        .await
        .expect(0)
        .json();
    assert_eq!(handles(&page["sessions"]), set_of(&[&anon1, &alice, &bob]));
    assert_eq!(page["total"], 3);
    assert_eq!(page["next_cursor"], Value::Null);
    let users: BTreeSet<_> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user"].as_str().unwrap_or("-").to_owned())
        .collect();
    assert_eq!(users, ["-", "alice", "bob"].map(str::to_owned).into());

    let first = setup
        .cli(&["--json", "query", "tenant", "acme", "--limit", "2"])
        .await
        .expect(0)
        .json();
    assert_eq!(first["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(first["next_cursor"], 2);
    let second = setup
        .cli(&[
            "--json", "query", "tenant", "acme", "--limit", "2", "--cursor", "2",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(second["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_cursor"], Value::Null);
    let mut both = handles(&first["sessions"]);
    both.extend(handles(&second["sessions"]));
    assert_eq!(both, set_of(&[&anon1, &alice, &bob]));
    let all = setup
        .cli(&[
            "--json",
            "query",
            "tenant",
            "acme",
            "--limit",
            "2",
            "--all-pages",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(handles(&all["sessions"]), set_of(&[&anon1, &alice, &bob]));
    assert_eq!(all["next_cursor"], Value::Null);

    let books = setup
        .cli(&["--json", "query", "cart", "book"])
        .await
        .expect(0)
        .json();
    assert_eq!(handles(&books["sessions"]), set_of(&[&carol, &anon2]));
    let pens = setup
        .cli(&["--json", "query", "cart", "pen"])
        .await
        .expect(0)
        .json();
    assert_eq!(handles(&pens["sessions"]), set_of(&[&carol]));
    let nobody = setup
        .cli(&["--json", "query", "tenant", "initech"])
        .await
        .expect(0)
        .json();
    assert_eq!(nobody["sessions"], serde_json::json!([]));
    assert_eq!(nobody["total"], 0);

    let table = setup
        .cli(&["query", "tenant", "acme", "--limit", "2"])
        .await
        .expect(0);
    assert!(table.stdout.contains("alice") || table.stdout.contains("bob"));
    assert!(table.stdout.contains("--cursor 2"), "{table:?}");

    // counts
    let counts = setup
        .cli(&["--json", "counts", "tenant"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        counts,
        serde_json::json!({
            "field": "tenant",
            "distinct": 2,
            "top": [{"value": "acme", "sessions": 3}, {"value": "globex", "sessions": 2}],
        })
    );
    let top1 = setup
        .cli(&["--json", "counts", "cart", "--top", "1"])
        .await
        .expect(0)
        .json();
    assert_eq!(top1["distinct"], 2);
    assert_eq!(
        top1["top"],
        serde_json::json!([{"value": "book", "sessions": 2}])
    );
    let table = setup.cli(&["counts", "tenant"]).await.expect(0);
    assert!(table.stdout.contains("acme"), "{table:?}");
    assert!(table.stdout.contains("2 distinct values"), "{table:?}");

    // active
    let active = setup
        .cli(&["--json", "active", "--since", "600"])
        .await
        .expect(0)
        .json();
    let everyone = set_of(&[&anon1, &alice, &bob, &carol, &anon2]);
    assert_eq!(handles(&active["sessions"]), everyone);
    let active = setup
        .cli(&["--json", "active", "--limit", "2", "--all-pages"])
        .await
        .expect(0)
        .json();
    assert_eq!(handles(&active["sessions"]), everyone);

    // stats
    let stats = setup.cli(&["--json", "stats"]).await.expect(0).json();
    assert_eq!(stats["active_sessions"], 5, "{stats}");
    assert_eq!(stats["active_last_10_minutes"], 5, "{stats}");
    let days = stats["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days[0]["created"], 5, "{stats}");
    assert_eq!(days[0]["logins"], 3, "{stats}");
    assert_eq!(days[0]["distinct_users"], 3, "{stats}");
    assert!(days[1..].iter().all(|d| d["created"] == 0));
    assert!(stats["now"].as_u64().unwrap() > 1_700_000_000_000);
    // Scalar indexes only.
    assert_eq!(
        stats["fields"],
        serde_json::json!([{
            "field": "tenant",
            "distinct": 2,
            "top": [{"value": "acme", "sessions": 3}, {"value": "globex", "sessions": 2}],
        }])
    );
    let table = setup
        .cli_env(&["stats"], &[("SESSION_STATS_DAYS", "2")])
        .await
        .expect(0);
    assert!(table.stdout.contains("live sessions"), "{table:?}");
    assert!(table.stdout.contains("globex"), "{table:?}");

    // A dead session disappears from every figure.
    store.destroy(&bob).await.unwrap();
    let page = setup
        .cli(&["--json", "query", "tenant", "acme"])
        .await
        .expect(0)
        .json();
    assert_eq!(handles(&page["sessions"]), set_of(&[&anon1, &alice]));
    let stats = setup.cli(&["--json", "stats"]).await.expect(0).json();
    assert_eq!(stats["active_sessions"], 4);
}

async fn reindex_after_declaring_an_index(kind: Kind) {
    let setup = Setup::start(kind).await;
    // Sessions written while no index was declared.
    let store = setup.store("").await;
    let mut tokens = Vec::new();
    for user in [Some("alice"), None, Some("bob")] {
        let (token, _) = store
            .create(
                user,
                &changes(&[("tenant", "acme".into())]),
                &ClientInfo::default(),
            )
            .await
            .unwrap();
        tokens.push(token);
    }
    let (_other, _) = store
        .create(
            None,
            &changes(&[("tenant", "globex".into())]),
            &ClientInfo::default(),
        )
        .await
        .unwrap();
    let before = setup
        .cli(&["--json", "--indexes", "tenant", "query", "tenant", "acme"])
        .await
        .expect(0)
        .json();
    assert_eq!(before["sessions"], serde_json::json!([]));

    let report = setup
        .cli(&["--json", "reindex", "--indexes", "tenant"])
        .await
        .expect(0)
        .json();
    assert_eq!(report["sessions_indexed"], 4, "{report}");
    assert!(report["scanned_keys"].as_u64().unwrap() >= 4, "{report}");

    let after = setup
        .cli(&["--json", "--indexes", "tenant", "query", "tenant", "acme"])
        .await
        .expect(0)
        .json();
    let expected: BTreeSet<_> = tokens.iter().map(|t| t.handle().to_string()).collect();
    assert_eq!(handles(&after["sessions"]), expected);
    let counts = setup
        .cli(&["--json", "--indexes", "tenant", "counts", "tenant"])
        .await
        .expect(0)
        .json();
    assert_eq!(counts["distinct"], 2);

    // Running it again is harmless; the table form says what it did.
    let again = setup
        .cli(&["reindex", "--indexes", "tenant"])
        .await
        .expect(0);
    assert!(
        again.stdout.contains("re-indexed 4 live sessions"),
        "{again:?}"
    );
}

async fn audit_finds_and_fixes_problems(kind: Kind) {
    let setup = Setup::start(kind).await;
    let store = setup.store("tenant,cart[]").await;
    let clean = setup.cli(&["audit"]).await.expect(0);
    assert!(clean.stdout.contains("clean"), "{clean:?}");

    let two_fields = changes(&[
        ("tenant", "acme".into()),
        ("cart", serde_json::json!(["book"])),
    ]);
    let (alice, _) = store
        .create(Some("alice"), &two_fields, &ClientInfo::default())
        .await
        .unwrap();
    let (_anon, _) = store
        .create(
            None,
            &changes(&[("tenant", "acme".into())]),
            &ClientInfo::default(),
        )
        .await
        .unwrap();
    setup.cli(&["audit"]).await.expect(0);

    // Break it: a session without TTL, index entries naming no session, a
    // key edge-session does not write.
    let alice_key = store.layout().session(&alice);
    let later = 4_000_000_000_000_u64;
    let mut redis = setup.redis();
    let _: () = redis::pipe()
        .cmd("PERSIST")
        .arg(&alice_key)
        .cmd("ZADD")
        .arg("es:{g}:ix:tenant:acme")
        .arg(later)
        .arg(BOGUS_ID)
        .cmd("ZADD")
        .arg("es:{g}:active")
        .arg(later)
        .arg(BOGUS_ID)
        .cmd("SET")
        .arg("es:junk")
        .arg("x")
        .query(&mut redis)
        .unwrap();
    assert_eq!(setup.pttl(&alice_key), -1);

    let report = setup.cli(&["--json", "audit"]).await.expect(1).json();
    assert_eq!(report["keys_without_ttl"], serde_json::json!([alice_key]));
    let orphans: BTreeSet<(String, String)> = report["orphaned_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["index"].as_str().unwrap().to_owned(),
                o["member"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("es:{g}:active".to_owned(), BOGUS_ID.to_owned()),
        ("es:{g}:ix:tenant:acme".to_owned(), BOGUS_ID.to_owned()),
    ]
    .into();
    assert_eq!(orphans, expected, "{report}");
    assert_eq!(report["unknown_keys"], serde_json::json!(["es:junk"]));
    assert_eq!(report["oversized_sessions"], serde_json::json!([]));
    assert_eq!(report["fixed"], 0);

    let table = setup.cli(&["audit"]).await.expect(1);
    for needle in [alice_key.as_str(), BOGUS_ID, "es:junk", "problems found"] {
        assert!(table.stdout.contains(needle), "{needle}: {table:?}");
    }
    // Nothing was changed without --fix.
    assert_eq!(setup.pttl(&alice_key), -1);

    let fixed = setup
        .cli(&["--json", "audit", "--fix"])
        .await
        .expect(0)
        .json();
    assert_eq!(fixed["fixed"], 3, "{fixed}");
    let ttl = setup.pttl(&alice_key);
    assert!(ttl > 0 && ttl <= 30 * 60 * 1000, "{ttl}");
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg("es:{g}:active")
        .arg(BOGUS_ID)
        .query(&mut redis)
        .unwrap();
    assert_eq!(score, None);
    assert!(store.load(&alice).await.unwrap().is_some());

    let rerun = setup.cli(&["--json", "audit"]).await.expect(0).json();
    assert_eq!(rerun["keys_without_ttl"], serde_json::json!([]));
    assert_eq!(rerun["orphaned_entries"], serde_json::json!([]));
    // Not ours: reported, never touched, not a failure.
    assert_eq!(rerun["unknown_keys"], serde_json::json!(["es:junk"]));
    let table = setup.cli(&["audit"]).await.expect(0);
    assert!(table.stdout.contains("clean"), "{table:?}");

    // Oversized sessions (with a lower limit) are reported and never
    // trimmed: --fix cannot repair them, so it exits 1.
    let oversized = setup
        .cli_env(
            &["--json", "audit", "--fix"],
            &[("SESSION_MAX_FIELDS", "1")],
        )
        .await
        .expect(1)
        .json();
    let sizes = oversized["oversized_sessions"].as_array().unwrap();
    assert_eq!(sizes.len(), 1, "{oversized}");
    assert_eq!(sizes[0]["key"], alice_key.as_str());
    assert_eq!(sizes[0]["fields"], 2);
    assert!(store.load(&alice).await.unwrap().is_some());
}

async fn unreachable_or_refused_store_exits_3(kind: Kind) {
    let setup = Setup::start(kind).await;
    let closed = format!("127.0.0.1:{}", free_port());
    let quick = [
        ("SESSION_STORE_RETRIES", "0"),
        ("SESSION_STORE_TIMEOUT_MS", "2000"),
    ];
    let (flag, url) = match kind {
        Kind::Direct => ("--redis-url", format!("redis://{closed}")),
        Kind::Rest => ("--rest-url", format!("http://{closed}")),
    };
    for command in [
        &["stats"][..],
        &["audit"],
        &["sessions", "list", "--user", "a"],
    ] {
        let mut args = vec![flag, url.as_str()];
        args.extend_from_slice(command);
        let run = setup.cli_env(&args, &quick).await.expect(3);
        assert!(run.stderr.starts_with("error: "), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    match kind {
        Kind::Rest => {
            // A refused token is a store failure too, and never printed.
            let run = setup
                .cli_env(
                    &["stats"],
                    &[("UPSTASH_REDIS_REST_TOKEN", "wrong-token-123")],
                )
                .await
                .expect(3);
            assert!(run.stderr.contains("refused the token"), "{run:?}");
            assert!(!run.stderr.contains("wrong-token-123"), "{run:?}");
        }
        Kind::Direct => {
            // A server that goes away between runs.
            let mut setup = setup;
            let _ = setup.redis.child.kill();
            let _ = setup.redis.child.wait();
            setup.cli_env(&["stats"], &quick).await.expect(3);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_configuration_errors_exit_2() {
    let setup = Setup::start(Kind::Direct).await;
    let handle = "ab".repeat(32);
    let usage: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["sessions"],
        &["sessions", "list"],
        &["sessions", "revoke", "--user", "a"],
        &[
            "sessions", "revoke", "--user", "a", "--all", "--id", &handle,
        ],
        &["sessions", "revoke", "--user", "a", "--id", "not-a-handle"],
        &[
            "sessions",
            "revoke",
            "--user",
            "a",
            "--id",
            &handle.to_uppercase(),
        ],
        &["query", "tenant"],
        &["query", "tenant", "acme", "--limit", "0"],
        &["query", "tenant", "acme", "--limit", "1001"],
        &["query", "tenant", "acme", "--cursor", "-1"],
        &["query", "tenant", "acme", "--cursor", "2", "--all-pages"],
        &["counts", "tenant", "--top", "0"],
        &["counts", "tenant", "--top", "x"],
        &["active", "--since", "1w"],
        &["audit", "--fix=maybe"],
        &[
            "--redis-url",
            "redis://a",
            "--rest-url",
            "http://b",
            "stats",
        ],
    ];
    for args in usage {
        let run = setup.cli(args).await.expect(2);
        assert!(run.stderr.starts_with("error: "), "{run:?}");
        assert!(run.stderr.contains("--help"), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    // Input the store refuses before any round trip.
    let long_value = "v".repeat(300);
    let refused: &[&[&str]] = &[
        &["query", "nosuchfield", "x"],
        &["counts", "nosuchfield"],
        &["query", "tenant", &long_value],
        &["sessions", "list", "--user", ""],
        &["sessions", "list", "--user", "a\u{7}b"],
        &["--json", "sessions", "revoke", "--user", "", "--all"],
    ];
    for args in refused {
        let run = setup.cli(args).await.expect(2);
        assert!(run.stderr.starts_with("error: "), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    // Configuration.
    let url = setup.redis.url();
    let bad_env: &[&[(&str, &str)]] = &[
        &[("REDIS_URL", "not a url")],
        &[("REDIS_URL", "")],
        &[("REDIS_URL", &url), ("SESSION_INDEXES", "a:b")],
        &[("REDIS_URL", &url), ("SESSION_BACKEND", "carrier-pigeon")],
        &[("REDIS_URL", &url), ("SESSION_KEY_PREFIX", "{x}")],
        &[("REDIS_URL", &url), ("SESSION_IDLE_TTL", "soon")],
        &[("REDIS_URL", &url), ("SESSION_STATS_DAYS", "0")],
        &[("SESSION_BACKEND", "rest")],
    ];
    for extra in bad_env {
        let run = setup.cli_env(&["stats"], extra).await.expect(2);
        assert!(
            run.stderr.starts_with("error: invalid configuration"),
            "{extra:?}: {run:?}"
        );
    }
    let run = run_clean(&["stats"]).await.expect(2);
    assert!(run.stderr.contains("REDIS_URL"), "{run:?}");

    // Help and version succeed and document the exit codes.
    let help = setup.cli(&["--help"]).await.expect(0);
    for needle in [
        "Exit codes",
        "sessions",
        "reindex",
        "--redis-url",
        "SESSION_SECRETS",
    ] {
        assert!(help.stdout.contains(needle), "{needle}: {help:?}");
    }
    setup.cli(&["--version"]).await.expect(0);
    let sub = setup.cli(&["sessions", "revoke", "--help"]).await.expect(0);
    assert!(sub.stdout.contains("--all"), "{sub:?}");
}

/// Runs the binary with no configuration at all.
async fn run_clean(args: &[&str]) -> Run {
    run(args, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_the_environment() {
    let setup = Setup::start(Kind::Rest).await;
    let store = setup.store("tenant").await;
    let (token, _) = store
        .create(
            Some("alice"),
            &changes(&[("tenant", "acme".into())]),
            &ClientInfo::default(),
        )
        .await
        .unwrap();
    let dead = format!("127.0.0.1:{}", free_port());
    let dead_redis = format!("redis://{dead}");
    let dead_rest = format!("http://{dead}");
    let quick = ("SESSION_STORE_RETRIES", "0");

    // The environment points at nothing; the flags point at the servers.
    // SESSION_SECRETS is ignored, even when invalid.
    let broken_env = [
        ("REDIS_URL", dead_redis.as_str()),
        ("UPSTASH_REDIS_REST_URL", dead_rest.as_str()),
        ("UPSTASH_REDIS_REST_TOKEN", "wrong-token-456"),
        ("SESSION_BACKEND", "rest"),
        ("SESSION_INDEXES", "plan"),
        ("SESSION_SECRETS", "not a key ring"),
        quick,
    ];
    let redis_url = setup.redis.url();
    let direct = setup
        .cli_env(
            &[
                "--json",
                "--redis-url",
                &redis_url,
                "--indexes",
                "tenant",
                "query",
                "tenant",
                "acme",
            ],
            &broken_env,
        )
        .await
        .expect(0)
        .json();
    assert_eq!(handles(&direct["sessions"]), set_of(&[&token]));

    let rest_url = setup.rest.as_ref().unwrap().url();
    let rest = setup
        .cli_env(
            &[
                "stats",
                "--json",
                "--rest-url",
                &rest_url,
                "--rest-token",
                REST_TOKEN,
                "--indexes",
                "tenant",
            ],
            &broken_env,
        )
        .await
        .expect(0)
        .json();
    assert_eq!(rest["active_sessions"], 1);
    assert_eq!(rest["fields"][0]["field"], "tenant");
    // Without the flags, the environment is used (and fails).
    setup.cli_env(&["stats"], &broken_env).await.expect(3);

    // --prefix: another application's sessions under another prefix.
    let other = setup.store_with("tenant", "app2:").await;
    for _ in 0..2 {
        other
            .create(
                None,
                &changes(&[("tenant", "acme".into())]),
                &ClientInfo::default(),
            )
            .await
            .unwrap();
    }
    let mine = setup.cli(&["--json", "stats"]).await.expect(0).json();
    assert_eq!(mine["active_sessions"], 1);
    let theirs = setup
        .cli_env(
            &["--json", "stats", "--prefix", "app2:"],
            &[("SESSION_KEY_PREFIX", "es:")],
        )
        .await
        .expect(0)
        .json();
    assert_eq!(theirs["active_sessions"], 2);
    let env_prefix = setup
        .cli_env(&["--json", "stats"], &[("SESSION_KEY_PREFIX", "app2:")])
        .await
        .expect(0)
        .json();
    assert_eq!(env_prefix["active_sessions"], 2);
    // The audit of one prefix leaves the other alone.
    let audit = setup.cli(&["--json", "audit"]).await.expect(0).json();
    assert_eq!(audit["unknown_keys"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_stderr_gets_no_progress_on_long_scans() {
    // stderr is a pipe here: no spinner is drawn, even for long commands.
    let setup = Setup::start(Kind::Direct).await;
    let store = setup.store("tenant").await;
    for i in 0..1200 {
        store
            .create(
                None,
                &changes(&[("tenant", format!("t{}", i % 7).into())]),
                &ClientInfo::default(),
            )
            .await
            .unwrap();
    }
    let reindex = setup.cli(&["reindex"]).await.expect(0);
    assert!(reindex.stderr.is_empty(), "{reindex:?}");
    assert!(
        reindex.stdout.contains("re-indexed 1200 live sessions"),
        "{reindex:?}"
    );
    let audit = setup.cli(&["--json", "audit"]).await.expect(0);
    assert!(audit.stderr.is_empty(), "{audit:?}");
    let report = audit.json();
    assert!(report["scanned_keys"].as_u64().unwrap() >= 1200);
    let all = setup
        .cli(&[
            "--json",
            "query",
            "tenant",
            "t3",
            "--all-pages",
            "--limit",
            "50",
        ])
        .await
        .expect(0)
        .json();
    // i % 7 == 3 for i = 3, 10, ..., 1193.
    assert_eq!(all["sessions"].as_array().unwrap().len(), 171);
    assert_eq!(all["total"], 171);
}
