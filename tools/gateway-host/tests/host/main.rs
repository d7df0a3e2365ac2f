//! The `edge-session-host` binary as a deployment runs it: a process started
//! with the gateway's environment variables plus `GATEWAY_LISTEN` and
//! `GATEWAY_LOG`, in front of an origin of the test's own or the demo
//! origin, over a redis-server of the test's own (direct backend). Requests
//! go over real HTTP/1.1 connections (hyper's client), so keep-alive and
//! streaming are what a client sees, and the process gets a real SIGTERM.
//!
//! `support` is the harness, `streaming` the bodies both ways and WebSocket,
//! `faults` the origin's and the client's failures, timeouts and limits,
//! `memory` the host's memory while 1 GiB streams through it each way,
//! `security` the security review's findings as the binary serves them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;
mod memory;
mod security;
mod streaming;
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::net::TcpStream;

use support::{Host, MIB, Origin, Redis, SECRETS};

#[tokio::test]
async fn a_session_lives_across_requests_on_one_keep_alive_connection() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let host = Host::start(&origin.url, &redis, &[]).await;
    let mut connection = host.connect().await;

    let anonymous = connection.get("/me", None).await;
    assert_eq!(
        (anonymous.status, anonymous.body.as_str()),
        (StatusCode::OK, "-")
    );
    assert!(anonymous.session_cookie().is_none());

    let login = connection.post("/login", None, Vec::new()).await;
    assert_eq!(login.status, StatusCode::OK);
    let cookie = login.session_cookie().expect("a session cookie on login");

    // Same connection (hyper's http1 sender has exactly one): the host kept it open.
    for _ in 0..3 {
        let me = connection.get("/me", Some(&cookie)).await;
        assert_eq!((me.status, me.body.as_str()), (StatusCode::OK, "alice"));
    }
}

/// A read that finds the slide due is answered from one HGETALL; the slide
/// (`_exp` moves on) runs in a task the host spawns, not before the answer.
#[tokio::test]
async fn a_due_slide_runs_after_the_response() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let host = Host::start(&origin.url, &redis, &[("SESSION_TOUCH_INTERVAL", "1")]).await;
    let mut connection = host.connect().await;
    let login = connection.post("/login", None, Vec::new()).await;
    let cookie = login.session_cookie().expect("a session cookie on login");
    let key = redis.cli(&["--scan", "--pattern", "es:s:*"]);
    let exp = || redis.cli(&["HGET", &key, "_exp"]).parse::<u64>().unwrap();
    let before = exp();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let me = connection.get("/me", Some(&cookie)).await;
    assert_eq!((me.status, me.body.as_str()), (StatusCode::OK, "alice"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while exp() == before {
        assert!(Instant::now() < deadline, "the due slide never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(exp() > before);
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let mut host = Host::start(&origin.url, &redis, &[]).await;
    let mut connection = host.connect().await;

    let started = origin.slow_started.clone();
    let in_flight = tokio::spawn(async move { connection.get("/slow", None).await });
    started.notified().await; // the request reached the origin
    host.terminate();
    // The host stops accepting (it drops its listener) but waits for /slow.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(host.addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        host.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    origin.slow_release.notify_one();

    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "slow done")
    );
    let status = tokio::time::timeout(Duration::from_secs(30), host.child.wait())
        .await
        .expect("exit within 30 s of the last response")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn request_bodies_follow_session_max_body_bytes() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let limit = (12 * MIB).to_string();
    let host = Host::start(&origin.url, &redis, &[("SESSION_MAX_BODY_BYTES", &limit)]).await;

    // Over the former fixed 10 MiB of the host, under the configured limit.
    let mut connection = host.connect().await;
    let answer = connection.post("/echo", None, vec![b'x'; 11 * MIB]).await;
    assert_eq!(
        (answer.status, answer.body),
        (StatusCode::OK, (11 * MIB).to_string())
    );
    let answer = connection.post("/echo", None, vec![b'x'; 12 * MIB]).await;
    assert_eq!(
        (answer.status, answer.body),
        (StatusCode::OK, (12 * MIB).to_string())
    );

    let mut connection = host.connect().await;
    let answer = connection
        .post("/echo", None, vec![b'x'; 12 * MIB + 1])
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let error: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(error["code"], "body_too_large", "{error}");
}

#[tokio::test]
async fn the_peer_address_binds_sessions_to_their_subnet() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let host = Host::start(&origin.url, &redis, &[("SESSION_BIND_SUBNET", "true")]).await;

    let mut home = host.connect_from([127, 0, 0, 1].into()).await;
    let cookie = home
        .post("/login", None, Vec::new())
        .await
        .session_cookie()
        .expect("a session cookie on login");
    assert_eq!(home.get("/me", Some(&cookie)).await.body, "alice");
    // Same /24: still bound.
    let mut neighbour = host.connect_from([127, 0, 0, 2].into()).await;
    assert_eq!(neighbour.get("/me", Some(&cookie)).await.body, "alice");
    // Another /24: the session is not handed out.
    let mut elsewhere = host.connect_from([127, 0, 1, 1].into()).await;
    assert_eq!(elsewhere.get("/me", Some(&cookie)).await.body, "-");
    assert_eq!(home.get("/me", Some(&cookie)).await.body, "alice");
}

#[tokio::test]
async fn bad_configuration_stops_the_host_with_a_message() {
    let run = |vars: &[(&str, &str)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_edge-session-host"))
            .env_clear()
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let base = [
        ("ORIGIN_URL", "http://127.0.0.1:1"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("SESSION_SECRETS", SECRETS),
        ("GATEWAY_LISTEN", "127.0.0.1:0"),
    ];

    let (ok, stderr) = run(&[&base[..], &[("GATEWAY_LOG", "loud")]].concat());
    assert!(!ok && stderr.contains("--log"), "{stderr}");

    let (ok, stderr) = run(&[base[0], base[1], base[3]]);
    assert!(!ok && stderr.contains("SESSION_SECRETS"), "{stderr}");

    let (ok, stderr) = run(&base[1..]);
    assert!(!ok && stderr.contains("ORIGIN_URL"), "{stderr}");

    let (ok, stderr) = run(&[&base[..3], &[("GATEWAY_LISTEN", "nowhere")]].concat());
    assert!(!ok && stderr.contains("nowhere"), "{stderr}");
}
