//! The lagging-replica emulation: stale reads without a recent sync token, fresh ones with it.

#![allow(clippy::unwrap_used)]

mod support;

use redis::AsyncCommands as _;
use serde_json::{Value as Json, json};
use support::{Env, Reply};

async fn lagging() -> Env {
    Env::start_with(|options| options.with_lagging_replica(1)).await
}

/// `POST path` with the bearer token, the body, and `token` as `upstash-sync-token` if given.
async fn post(env: &Env, path: &str, body: Json, token: Option<&str>) -> Reply {
    let reply = env.post_synced(path, body.clone(), token).await;
    assert!(
        reply.status == 200,
        "{body}: {} {}",
        reply.status,
        reply.text()
    );
    reply
}

async fn get(env: &Env, key: &str, token: Option<&str>) -> Json {
    post(env, "/", json!(["GET", key]), token).await.json()["result"].clone()
}

#[tokio::test]
async fn reads_lag_unless_they_carry_a_recent_token() {
    let env = lagging().await;
    let first = post(&env, "/", json!(["SET", "k", "v1"]), None).await;
    let t1 = first.sync_token();

    // No token: the replica, synced at start, does not have the write yet.
    assert_eq!(get(&env, "k", None).await, Json::Null);
    // A token from another server says nothing about this one's writes.
    assert_eq!(
        get(&env, "k", Some("ffffffffffffffffffffffff")).await,
        Json::Null
    );
    // The write's token: the replica catches up first.
    assert_eq!(get(&env, "k", Some(&t1)).await, json!("v1"));

    let second = post(&env, "/", json!(["SET", "k", "v2"]), Some(&t1)).await;
    let t2 = second.sync_token();
    assert!(t2 > t1);
    // Without a token, or with one older than the write: as of the last sync.
    assert_eq!(get(&env, "k", None).await, json!("v1"));
    assert_eq!(get(&env, "k", Some(&t1)).await, json!("v1"));
    // Reads in a pipeline lag the same way; a pipeline with a write goes to the primary.
    let stale = post(
        &env,
        "/pipeline",
        json!([["GET", "k"], ["EXISTS", "k"]]),
        None,
    )
    .await;
    assert_eq!(stale.json(), json!([{"result": "v1"}, {"result": 1}]));
    let mixed = post(
        &env,
        "/pipeline",
        json!([["GET", "k"], ["INCR", "n"]]),
        None,
    )
    .await;
    assert_eq!(mixed.json(), json!([{"result": "v2"}, {"result": 1}]));
    // The newest token sees everything.
    assert_eq!(get(&env, "k", Some(&t2)).await, json!("v2"));

    let (syncs, replica_reads) = env.server.replica_counts().unwrap();
    assert_eq!(syncs, 3, "at start, then for t1 and for t2");
    assert_eq!(replica_reads, 7);
    // The replica is database 1 of the same Redis, the primary database 0.
    let mut direct = env.redis.direct().await;
    let _: () = redis::cmd("SELECT")
        .arg(1)
        .query_async(&mut direct)
        .await
        .unwrap();
    let replicated: Option<String> = direct.get("k").await.unwrap();
    assert_eq!(replicated.as_deref(), Some("v2"));
}

#[tokio::test]
async fn scripts_read_on_the_replica_and_write_on_the_primary() {
    let env = lagging().await;
    post(&env, "/", json!(["SET", "k", "new"]), None).await;
    let read = json!(["EVAL", "return redis.call('GET', KEYS[1])", 1, "k"]);
    assert_eq!(
        post(&env, "/", read.clone(), None).await.json()["result"],
        Json::Null
    );

    // A script that writes is refused by the read-only replica and runs on the primary.
    let write = json!([
        "EVAL",
        "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])",
        1,
        "w",
        "written"
    ]);
    let wrote = post(&env, "/", write, None).await;
    assert_eq!(wrote.json()["result"], json!("written"));
    let mut direct = env.redis.direct().await;
    let on_primary: Option<String> = direct.get("w").await.unwrap();
    assert_eq!(on_primary.as_deref(), Some("written"));
    // Its token covers both writes.
    assert_eq!(
        post(&env, "/", read, Some(&wrote.sync_token()))
            .await
            .json()["result"],
        json!("new")
    );
    // Transactions always run on the primary.
    let multi = post(&env, "/multi-exec", json!([["GET", "w"]]), None).await;
    assert_eq!(multi.json(), json!([{"result": "written"}]));
}

#[tokio::test]
async fn the_replica_catches_up_on_demand_and_lag_is_off_by_default() {
    let env = lagging().await;
    post(&env, "/", json!(["SET", "k", "v"]), None).await;
    assert_eq!(get(&env, "k", None).await, Json::Null);
    assert!(env.server.sync_replica().await.unwrap());
    assert_eq!(get(&env, "k", None).await, json!("v"));

    let plain = Env::start().await;
    post(&plain, "/", json!(["SET", "k", "v"]), None).await;
    assert_eq!(get(&plain, "k", None).await, json!("v"));
    assert_eq!(plain.server.replica_counts(), None);
    assert!(!plain.server.sync_replica().await.unwrap());
}
