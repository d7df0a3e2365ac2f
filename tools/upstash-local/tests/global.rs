//! A global database, emulated: a far primary (`Options::with_primary_delay`, binary
//! `--primary-delay-ms`) that writes and scripts wait for while reads are answered at once,
//! alone and together with the lagging replica.
//!
//! Timing assertions are generous and relative: a delayed request can never be faster than the
//! delay (a lower bound the server guarantees), reads must stay well under it and at least four
//! times faster than writes at the median, and "delayed once" is checked against the sum of the
//! per-command delays it would otherwise pay.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use support::{Env, Reply, TOKEN};
use upstash_local::Stats;

const DELAY: Duration = Duration::from_millis(80);
const RUNS: usize = 7;

async fn far_primary() -> Env {
    Env::start_with(|options| options.with_primary_delay(DELAY)).await
}

/// `POST path`, timed; panics on anything but HTTP 200.
async fn timed(env: &Env, path: &str, body: Json, token: Option<&str>) -> (Duration, Reply) {
    let started = Instant::now();
    let reply = env.post_synced(path, body.clone(), token).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{body}: {}", reply.text());
    (took, reply)
}

/// The median and the minimum of `RUNS` timed requests.
async fn latency(env: &Env, path: &str, body: &Json) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        times.push(timed(env, path, body.clone(), None).await.0);
    }
    times.sort();
    (times[RUNS / 2], times[0])
}

/// (delayed, immediate) since the last call.
fn counts(env: &Env) -> (u64, u64) {
    let stats: Stats = env.server.faults().reset_stats();
    (stats.delayed, stats.immediate)
}

#[tokio::test]
async fn reads_are_answered_at_once_and_writes_wait_for_the_primary() {
    let env = far_primary().await;
    env.cmd(json!(["HSET", "h", "a", "1", "b", "2"])).await;
    let sha = env
        .cmd(json!([
            "SCRIPT",
            "LOAD",
            "return redis.call('INCR', KEYS[1])"
        ]))
        .await;
    counts(&env);

    let (read_p50, _) = latency(&env, "/", &json!(["HGETALL", "h"])).await;
    assert_eq!(counts(&env), (0, RUNS as u64));
    let (write_p50, write_min) = latency(&env, "/", &json!(["HSET", "h", "c", "3"])).await;
    assert_eq!(counts(&env), (RUNS as u64, 0));
    let (script_p50, script_min) = latency(&env, "/", &json!(["EVALSHA", sha, 1, "n"])).await;
    assert_eq!(counts(&env), (RUNS as u64, 0));
    assert_eq!(env.cmd(json!(["GET", "n"])).await, json!(RUNS.to_string()));

    eprintln!(
        "primary delay {DELAY:?}: HGETALL p50 {read_p50:?}, HSET p50 {write_p50:?}, \
         EVALSHA p50 {script_p50:?}"
    );
    assert!(write_min >= DELAY, "a write waits the delay: {write_min:?}");
    assert!(
        script_min >= DELAY,
        "a script waits the delay: {script_min:?}"
    );
    assert!(
        read_p50 < Duration::from_millis(40),
        "a read is answered at once: {read_p50:?}"
    );
    assert!(
        read_p50 * 4 <= write_p50,
        "reads {read_p50:?} vs writes {write_p50:?}"
    );
}

#[tokio::test]
async fn pipelines_wait_once_if_any_command_needs_the_primary() {
    let env = far_primary().await;
    env.cmd(json!(["SET", "k", "v"])).await;
    counts(&env);

    let reads = json!([
        ["GET", "k"],
        ["PTTL", "k"],
        ["HMGET", "h", "a"],
        ["ZRANGE", "z", 0, -1]
    ]);
    let (reads_p50, _) = latency(&env, "/pipeline", &reads).await;
    assert_eq!(counts(&env), (0, RUNS as u64));

    // Four writes and a read: one wait for the whole pipeline, not one per command.
    let writes = json!([
        ["INCR", "a"],
        ["INCR", "b"],
        ["GET", "k"],
        ["SET", "c", "1"],
        ["DEL", "d"]
    ]);
    let (writes_p50, writes_min) = latency(&env, "/pipeline", &writes).await;
    assert_eq!(counts(&env), (RUNS as u64, 0), "counted once per request");
    eprintln!(
        "primary delay {DELAY:?}: read-only pipeline p50 {reads_p50:?}, \
         pipeline with 4 writes p50 {writes_p50:?}"
    );
    assert!(reads_p50 < Duration::from_millis(40), "{reads_p50:?}");
    assert!(writes_min >= DELAY, "{writes_min:?}");
    assert!(
        writes_p50 < DELAY * 4,
        "waited once, not per write: {writes_p50:?}"
    );

    // Every transaction goes to the primary, even one of reads only.
    let (took, reply) = timed(&env, "/multi-exec", json!([["GET", "k"]]), None).await;
    assert_eq!(reply.json(), json!([{"result": "v"}]));
    assert!(took >= DELAY, "{took:?}");
    assert_eq!(counts(&env), (1, 0));
}

#[tokio::test]
async fn classification_follows_redis_command_flags() {
    // No delay: the counters classify all the same.
    let env = Env::start_with(|options| options.with_fault_endpoint(true)).await;
    env.cmd(json!(["SET", "k", "v"])).await;
    counts(&env);
    for read in [
        json!(["GET", "k"]),
        json!(["HGETALL", "h"]),
        json!(["HMGET", "h", "a", "b"]),
        json!(["PTTL", "k"]),
        json!(["ZRANGE", "z", 0, -1, "WITHSCORES"]),
        json!(["EXISTS", "k"]),
        json!(["OBJECT", "ENCODING", "k"]),
        json!(["EVAL_RO", "return redis.call('GET', KEYS[1])", 1, "k"]),
        json!(["PING"]),
    ] {
        env.post("/", read.clone()).await;
        assert_eq!(counts(&env), (0, 1), "{read} is answered at once");
    }
    for write in [
        json!(["SET", "k", "v2"]),
        json!(["HSET", "h", "a", "1"]),
        json!(["PEXPIRE", "k", 100_000]),
        json!(["DEL", "nothing"]),
        json!(["ZADD", "z", 1, "m"]),
        json!(["EVAL", "return 1", 0]),
        json!(["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", 0]),
        json!(["SCRIPT", "LOAD", "return 1"]),
        json!(["PUBLISH", "channel", "message"]),
        json!(["NOSUCHCOMMAND", "k"]),
    ] {
        env.post("/", write.clone()).await;
        assert_eq!(counts(&env), (1, 0), "{write} needs the primary");
    }
    // Path style is classified too; refused or malformed requests never reach Redis.
    env.send(env.http.get(env.url("/get/k")).bearer_auth(TOKEN))
        .await;
    assert_eq!(counts(&env), (0, 1));
    env.post("/", json!(["BLPOP", "k", 0])).await;
    env.post("/pipeline", json!([["WATCH", "k"]])).await;
    env.post("/", json!({"not": "a command"})).await;
    assert_eq!(counts(&env), (0, 0));

    // Over HTTP, in /__stats.
    env.post("/pipeline", json!([["GET", "k"], ["SET", "k", "v3"]]))
        .await;
    env.post("/pipeline", json!([["GET", "k"], ["TTL", "k"]]))
        .await;
    let stats = env
        .send(env.http.get(env.url("/__stats")).bearer_auth(TOKEN))
        .await
        .json();
    assert_eq!(
        (&stats["delayed"], &stats["immediate"]),
        (&json!(1), &json!(1))
    );
}

#[tokio::test]
async fn read_your_writes_with_a_far_primary_and_a_lagging_replica() {
    let env =
        Env::start_with(|options| options.with_lagging_replica(1).with_primary_delay(DELAY)).await;
    let (took, wrote) = timed(&env, "/", json!(["HSET", "s", "user", "ada"]), None).await;
    assert!(took >= DELAY, "{took:?}");
    let token = wrote.sync_token();

    // Without the token: at once, from the replica, stale.
    let (took, stale) = timed(&env, "/", json!(["HGET", "s", "user"]), None).await;
    assert_eq!(stale.json()["result"], Json::Null);
    assert!(took < Duration::from_millis(40), "{took:?}");
    // With it: still without waiting for the primary, and fresh.
    let (took, fresh) = timed(&env, "/", json!(["HGET", "s", "user"]), Some(&token)).await;
    assert_eq!(fresh.json()["result"], json!("ada"));
    assert!(took < Duration::from_millis(40), "{took:?}");

    // A script writes on the primary (after the delay); its token covers the write for a
    // read-only pipeline, which is not delayed.
    let script = json!([
        "EVAL",
        "return redis.call('HSET', KEYS[1], 'n', ARGV[1])",
        1,
        "s",
        7
    ]);
    let (took, ran) = timed(&env, "/", script, Some(&token)).await;
    assert!(took >= DELAY, "{took:?}");
    let reads = json!([["HGET", "s", "n"], ["HLEN", "s"]]);
    let (_, stale) = timed(&env, "/pipeline", reads.clone(), Some(&token)).await;
    assert_eq!(stale.json(), json!([{"result": null}, {"result": 1}]));
    let (took, fresh) = timed(&env, "/pipeline", reads, Some(&ran.sync_token())).await;
    assert_eq!(fresh.json(), json!([{"result": "7"}, {"result": 2}]));
    assert!(took < Duration::from_millis(40), "{took:?}");

    let stats = env.server.faults().stats();
    assert_eq!((stats.delayed, stats.immediate), (2, 4));
    let (syncs, replica_reads) = env.server.replica_counts().unwrap();
    assert_eq!(
        (syncs, replica_reads),
        (3, 4),
        "at start, then once per new token"
    );
}

#[tokio::test]
async fn a_request_waiting_for_the_primary_ends_at_shutdown() {
    let env = Env::start_with(|options| options.with_primary_delay(Duration::from_secs(60))).await;
    let request = env
        .http
        .post(env.server.url())
        .bearer_auth(TOKEN)
        .json(&json!(["SET", "k", "v"]))
        .send();
    let pending = tokio::spawn(request);
    // Let it reach the wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.server.faults().stats().delayed == 0 {
        assert!(Instant::now() < deadline, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let Env { server, redis, .. } = env;
    server.shutdown().await.unwrap();
    let reply = pending.await.unwrap().unwrap();
    assert_eq!(reply.status().as_u16(), 503);
    assert_eq!(
        reply.json::<Json>().await.unwrap(),
        json!({"error": "ERR upstash-local is shutting down"})
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The write never ran.
    let mut direct = redis.direct().await;
    let value: Option<String> = redis::AsyncCommands::get(&mut direct, "k").await.unwrap();
    assert_eq!(value, None);
}

#[tokio::test]
async fn binary_primary_delay_flag() {
    let redis = support::RedisServer::start();
    let binary =
        support::Binary::start(&redis, &["--enable-faults", "--primary-delay-ms", "80"]).await;
    let http = reqwest::Client::new();
    let post = |body: Json| {
        let request = http.post(&binary.url).bearer_auth(TOKEN).json(&body);
        async move {
            let started = Instant::now();
            let reply = request.send().await.unwrap();
            assert_eq!(reply.status().as_u16(), 200);
            started.elapsed()
        }
    };
    assert!(post(json!(["SET", "k", "v"])).await >= DELAY);
    assert!(post(json!(["GET", "k"])).await < Duration::from_millis(40));
    let stats: Json = http
        .get(format!("{}/__stats", binary.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&stats["delayed"], &stats["immediate"]),
        (&json!(1), &json!(1))
    );
}
