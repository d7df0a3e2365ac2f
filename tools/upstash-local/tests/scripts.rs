//! Upstash's `#!lua flags=allow-key-locking`: stripped before Redis sees it, while clients keep
//! naming the script by the SHA1 of the text they sent.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value as Json, json};
use support::Env;

const WRITE: &str = "#!lua flags=allow-key-locking\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])";
const READ: &str = "#!lua flags=no-writes,allow-key-locking\nreturn redis.call('GET', KEYS[1])";
const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// The SHA1 Redis itself computes for `text` (`redis.sha1hex`).
async fn sha1(env: &Env, text: &str) -> String {
    let mut direct = env.redis.direct().await;
    redis::cmd("EVAL")
        .arg("return redis.sha1hex(ARGV[1])")
        .arg(0)
        .arg(text)
        .query_async(&mut direct)
        .await
        .unwrap()
}

#[tokio::test]
async fn redis_itself_refuses_the_flag() {
    let env = Env::start().await;
    let mut direct = env.redis.direct().await;
    let refused: redis::RedisResult<i64> = redis::cmd("EVAL")
        .arg(WRITE)
        .arg(1)
        .arg("k")
        .arg(1)
        .query_async(&mut direct)
        .await;
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("allow-key-locking"), "{message}");
}

#[tokio::test]
async fn eval_script_load_and_evalsha_with_allow_key_locking() {
    let env = Env::start().await;
    let sha = sha1(&env, WRITE).await;

    assert_eq!(env.cmd(json!(["EVAL", WRITE, 1, "n", 2])).await, json!(2));
    // EVAL caches the script under the client's SHA1, as Redis would.
    assert_eq!(env.cmd(json!(["EVALSHA", sha, 1, "n", 3])).await, json!(5));

    let loaded = env.cmd(json!(["SCRIPT", "LOAD", WRITE])).await;
    assert_eq!(loaded, json!(sha), "SCRIPT LOAD answers sha1(original)");
    let upper = sha.to_ascii_uppercase();
    assert_eq!(
        env.cmd(json!(["evalsha", upper, 1, "n", 1])).await,
        json!(6)
    );
    assert_eq!(
        env.cmd(json!(["SCRIPT", "EXISTS", sha, "0".repeat(40)]))
            .await,
        json!([1, 0])
    );
    // The same in a pipeline (base64: the answer is encoded like Redis's own) and in a
    // transaction.
    let pipeline = env
        .post_b64(
            "/pipeline",
            json!([["SCRIPT", "LOAD", READ], ["EVALSHA", sha, 1, "n", 1]]),
        )
        .await;
    let read_sha = sha1(&env, READ).await;
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&read_sha);
    assert_eq!(pipeline.json(), json!([{"result": encoded}, {"result": 7}]));
    let multi = env
        .post(
            "/multi-exec",
            json!([["SCRIPT", "LOAD", WRITE], ["EVALSHA", read_sha, 1, "n"]]),
        )
        .await;
    assert_eq!(multi.json(), json!([{"result": sha}, {"result": "7"}]));

    // Unknown SHA1s still get NOSCRIPT, so the clients reload.
    let missing = env.post("/", json!(["EVALSHA", "f".repeat(40), 0])).await;
    assert_eq!(
        (missing.status, missing.json()),
        (400, json!({"error": NOSCRIPT}))
    );
    // After SCRIPT FLUSH too: the client's fall-back (EVALSHA, NOSCRIPT, EVAL, EVALSHA) works.
    env.cmd(json!(["SCRIPT", "FLUSH"])).await;
    let flushed = env.post("/", json!(["EVALSHA", sha, 1, "n", 1])).await;
    assert_eq!(flushed.json(), json!({"error": NOSCRIPT}));
    assert_eq!(env.cmd(json!(["EVAL", WRITE, 1, "n", 1])).await, json!(8));
    assert_eq!(env.cmd(json!(["EVALSHA", sha, 1, "n", 1])).await, json!(9));
}

#[tokio::test]
async fn the_other_flags_and_plain_scripts_are_kept() {
    let env = Env::start().await;
    // no-writes stays: the script may not write.
    let refused = env
        .post(
            "/",
            json!([
                "EVAL",
                "#!lua flags=allow-key-locking,no-writes\nreturn redis.call('SET', KEYS[1], 1)",
                1,
                "k"
            ]),
        )
        .await;
    assert_eq!(refused.status, 400);
    let message = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(
        message.contains("Write commands are not allowed"),
        "{message}"
    );
    // Line numbers are those of the client's text.
    let failing = env
        .post(
            "/",
            json!(["EVAL", "#!lua flags=allow-key-locking\n\nerror('boom')", 0]),
        )
        .await;
    let message = failing.json()["error"].as_str().unwrap().to_owned();
    assert!(message.contains("user_script:3: boom"), "{message}");
    // Another unknown flag is Redis's to refuse.
    let unknown = env
        .post(
            "/",
            json!(["EVAL", "#!lua flags=no-such-flag\nreturn 1", 0]),
        )
        .await;
    let message = unknown.json()["error"].as_str().unwrap().to_owned();
    assert!(message.contains("no-such-flag"), "{message}");
    // Scripts without the flag go through untouched: Redis's own SHA1.
    let plain = "return 1";
    assert_eq!(
        env.cmd(json!(["SCRIPT", "LOAD", plain])).await,
        json!(sha1(&env, plain).await)
    );
}

#[tokio::test]
async fn flagged_scripts_under_the_lagging_replica() {
    let env = Env::start_with(|options| options.with_lagging_replica(1)).await;
    let read_sha = env.cmd(json!(["SCRIPT", "LOAD", READ])).await;
    let write_sha = env.cmd(json!(["SCRIPT", "LOAD", WRITE])).await;
    env.cmd(json!(["SET", "k", "5"])).await;
    // A no-writes script reads the replica (stale); a write script (no no-writes flag) is
    // refused there as a whole and runs on the primary.
    assert_eq!(
        env.cmd(json!(["EVALSHA", read_sha, 1, "k"])).await,
        Json::Null
    );
    assert_eq!(
        env.cmd(json!(["EVALSHA", write_sha, 1, "k", 1])).await,
        json!(6)
    );
    let (_, replica_reads) = env.server.replica_counts().unwrap();
    assert_eq!(replica_reads, 1);
}
