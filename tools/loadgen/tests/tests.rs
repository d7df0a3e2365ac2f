//! The CI-sized load: 20 clients for 5 s through the native gateway host
//! (REST backend over upstash-local, in front of the demo origin) against a
//! redis-server of the test's own. Checks correctness only: no errors, no
//! lost increments, no stale reads, no key without a TTL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Redis {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = std::env::temp_dir().join(format!(
                "edge-session-loadgen-{}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let binary =
                std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
            let mut child = Command::new(binary)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .args(["--appendonly", "yes", "--appendfsync", "everysec"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    && let Ok(mut c) = client.get_connection()
                    && redis::cmd("PING").query::<String>(&mut c).is_ok()
                {
                    return Self { child, dir, port };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start redis-server");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_for_five_seconds_lose_nothing() {
    let redis = Redis::start();
    let rest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest = upstash_local::spawn(
        rest_listener,
        upstash_local::Options::new(redis.url(), "load-test-token"),
    )
    .await
    .unwrap();
    let origin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", origin_listener.local_addr().unwrap());
    tokio::spawn(demo_origin::serve(origin_listener));

    let env: HashMap<&str, String> = HashMap::from([
        ("ORIGIN_URL", origin),
        ("UPSTASH_REDIS_REST_URL", rest.url()),
        ("UPSTASH_REDIS_REST_TOKEN", "load-test-token".to_owned()),
        (
            "SESSION_SECRETS",
            "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned(),
        ),
    ]);
    let gateway = edge_session_host::gateway_from_lookup(|name| env.get(name).cloned())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(edge_session_host::serve(listener, gateway, async {
        let _ = stopped.await;
    }));

    let mut config = edge_session_loadgen::LoadConfig::new(url);
    config.clients = 20;
    config.duration = Duration::from_secs(5);
    config.redis_url = Some(redis.url());
    let summary = edge_session_loadgen::run(config).await.unwrap();
    assert!(summary.is_clean(), "{summary}");
    assert!(
        summary.requests >= 20,
        "every client got through: {summary}"
    );
    assert!(summary.increments_acknowledged > 0 && summary.writes < summary.requests);
    // 20 sessions, 20 device sets, the global indexes and statistics.
    assert!(summary.keys.unwrap() >= 40, "{summary}");

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
