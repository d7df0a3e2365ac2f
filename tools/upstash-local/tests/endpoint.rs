//! The endpoint against its own redis-server, over real HTTP.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use redis::AsyncCommands as _;
use serde_json::{Value as Json, json};
use support::{Env, TOKEN};
use upstash_local::{Fault, Route};

const UNAUTHORIZED: &str = r#"{"error":"WRONGPASS invalid or missing auth token"}"#;

fn b64(text: &str) -> Json {
    Json::String(STANDARD.encode(text))
}

#[tokio::test]
async fn auth_header_query_token_and_header_wins() {
    let env = Env::start().await;
    let body = json!(["SET", "k", "v"]);

    let missing = env.send(env.http.post(env.url("/")).json(&body)).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.text(), UNAUTHORIZED);

    let bad = env
        .send(env.http.post(env.url("/")).bearer_auth("wrong").json(&body))
        .await;
    assert_eq!((bad.status, bad.text().as_str()), (401, UNAUTHORIZED));

    let not_bearer = env
        .send(
            env.http
                .post(env.url("/"))
                .header("authorization", format!("Basic {TOKEN}"))
                .json(&body),
        )
        .await;
    assert_eq!(not_bearer.status, 401);

    let query = env
        .send(
            env.http
                .post(env.url(&format!("/?_token={TOKEN}")))
                .json(&body),
        )
        .await;
    assert_eq!((query.status, query.json()), (200, json!({"result": "OK"})));

    let bad_query = env
        .send(env.http.post(env.url("/?_token=nope")).json(&body))
        .await;
    assert_eq!(bad_query.status, 401);

    // A wrong header is not rescued by a right query token...
    let header_wins = env
        .send(
            env.http
                .post(env.url(&format!("/?_token={TOKEN}")))
                .bearer_auth("wrong")
                .json(&body),
        )
        .await;
    assert_eq!(header_wins.status, 401);
    // ...and a right header ignores a wrong query token.
    let header_ok = env
        .send(
            env.http
                .post(env.url("/?_token=wrong"))
                .bearer_auth(TOKEN)
                .json(&body),
        )
        .await;
    assert_eq!(header_ok.status, 200);

    // Every route is protected.
    for path in ["/pipeline", "/multi-exec", "/get/k"] {
        let reply = env
            .send(env.http.post(env.url(path)).json(&json!([["GET", "k"]])))
            .await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (401, UNAUTHORIZED),
            "{path}"
        );
    }
    let mut direct = env.redis.direct().await;
    let stored: Option<String> = direct.get("k").await.expect("GET");
    assert_eq!(stored.as_deref(), Some("v"));
}

#[tokio::test]
async fn single_command_result_mapping() {
    let env = Env::start().await;
    assert_eq!(env.cmd(json!(["SET", "s", "héllo ✓"])).await, json!("OK"));
    assert_eq!(env.cmd(json!(["GET", "s"])).await, json!("héllo ✓"));
    assert_eq!(env.cmd(json!(["GET", "missing"])).await, Json::Null);
    assert_eq!(env.cmd(json!(["INCR", "n"])).await, json!(1));
    assert_eq!(env.cmd(json!(["INCRBY", "n", 41])).await, json!(42));
    assert_eq!(
        env.cmd(json!(["INCRBYFLOAT", "f", 1.5])).await,
        json!("1.5")
    );
    assert_eq!(env.cmd(json!(["PING"])).await, json!("PONG"));
    assert_eq!(env.cmd(json!(["TYPE", "s"])).await, json!("string"));
    assert_eq!(
        env.cmd(json!(["RPUSH", "l", "a", "b", "c"])).await,
        json!(3)
    );
    assert_eq!(
        env.cmd(json!(["LRANGE", "l", 0, -1])).await,
        json!(["a", "b", "c"])
    );
    assert_eq!(
        env.cmd(json!(["HSET", "h", "f1", "v1", "f2", 2])).await,
        json!(2)
    );
    assert_eq!(
        env.cmd(json!(["HGETALL", "h"])).await,
        json!(["f1", "v1", "f2", "2"])
    );
    assert_eq!(
        env.cmd(json!(["HMGET", "h", "f1", "nope", "f2"])).await,
        json!(["v1", null, "2"])
    );
    assert_eq!(
        env.cmd(json!(["ZADD", "z", 1.5, "a", 2, "b"])).await,
        json!(2)
    );
    assert_eq!(env.cmd(json!(["ZSCORE", "z", "a"])).await, json!("1.5"));
    assert_eq!(
        env.cmd(json!(["ZRANGE", "z", 0, -1, "WITHSCORES"])).await,
        json!(["a", "1.5", "b", "2"])
    );
    // Nested arrays with nulls and integers, from a script.
    assert_eq!(
        env.cmd(json!(["EVAL", "return {1, {'x', false, 3}, 'y'}", 0]))
            .await,
        json!([1, ["x", null, 3], "y"])
    );
    // Numbers in commands are decimal text.
    assert_eq!(env.cmd(json!(["SET", "num", 1e3])).await, json!("OK"));
    assert_eq!(env.cmd(json!(["GET", "num"])).await, json!("1000"));
    assert_eq!(env.cmd(json!(["SET", "num", 0.25])).await, json!("OK"));
    assert_eq!(env.cmd(json!(["GET", "num"])).await, json!("0.25"));
    // The official JS client passes booleans through as JSON booleans.
    assert_eq!(env.cmd(json!(["SET", "flag", true])).await, json!("OK"));
    assert_eq!(env.cmd(json!(["GET", "flag"])).await, json!("true"));
    assert_eq!(
        env.cmd(json!(["SET", "ttl", "v", "EX", 100])).await,
        json!("OK")
    );
    let ttl = env.cmd(json!(["TTL", "ttl"])).await;
    assert!(
        ttl.as_i64().is_some_and(|t| (99..=100).contains(&t)),
        "{ttl}"
    );
}

#[tokio::test]
async fn single_command_errors_are_http_400() {
    let env = Env::start().await;
    env.cmd(json!(["SET", "s", "v"])).await;
    let wrongtype = env.post("/", json!(["LPUSH", "s", "x"])).await;
    assert_eq!(wrongtype.status, 400);
    assert_eq!(
        wrongtype.json(),
        json!({"error": "WRONGTYPE Operation against a key holding the wrong kind of value"})
    );
    let unknown = env.post("/", json!(["NOSUCHCOMMAND", "x"])).await;
    assert_eq!(unknown.status, 400);
    let message = unknown.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with("ERR unknown command 'NOSUCHCOMMAND'"),
        "{message}"
    );
    let arity = env.post("/", json!(["GET"])).await;
    assert_eq!(
        (arity.status, arity.json()),
        (
            400,
            json!({"error": "ERR wrong number of arguments for 'get' command"})
        )
    );
    let not_int = env.post("/", json!(["INCR", "s"])).await;
    assert_eq!(
        (not_int.status, not_int.json()),
        (
            400,
            json!({"error": "ERR value is not an integer or out of range"})
        )
    );
    assert_eq!(
        wrongtype.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
}

#[tokio::test]
async fn pipeline_items_errors_and_not_atomic() {
    let env = Env::start().await;
    let reply = env
        .post(
            "/pipeline",
            json!([
                ["SET", "a", "1"],
                ["INCR", "a"],
                ["LPUSH", "a", "x"],
                ["BLPOP", "q", 0],
                ["GET", "a"],
                ["GET", "missing"],
                ["HGETALL", "missing"],
                ["NOSUCH"],
            ]),
        )
        .await;
    assert_eq!(reply.status, 200);
    let items = reply.json();
    assert_eq!(items[0], json!({"result": "OK"}));
    assert_eq!(items[1], json!({"result": 2}));
    assert_eq!(
        items[2],
        json!({"error": "WRONGTYPE Operation against a key holding the wrong kind of value"})
    );
    assert_eq!(
        items[3],
        json!({"error": "ERR Command is not available: 'blpop'"})
    );
    // Commands after a failed one still ran: a pipeline is not a transaction.
    assert_eq!(items[4], json!({"result": "2"}));
    assert_eq!(items[5], json!({"result": null}));
    assert_eq!(items[6], json!({"result": []}));
    assert!(
        items[7]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("ERR unknown command"))
    );
    assert_eq!(items.as_array().map(Vec::len), Some(8));
    assert_eq!(
        env.server.faults().stats().commands,
        7,
        "refused commands never reach Redis"
    );
}

#[tokio::test]
async fn multi_exec_atomic_runtime_errors_and_discards() {
    let env = Env::start().await;
    let reply = env
        .post(
            "/multi-exec",
            json!([
                ["SET", "a", "x"],
                ["INCR", "a"],
                ["SET", "b", "y"],
                ["GET", "b"]
            ]),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!([
            {"result": "OK"},
            {"error": "ERR value is not an integer or out of range"},
            {"result": "OK"},
            {"result": "y"},
        ])
    );

    // A syntax error while queueing: Redis discards the whole transaction.
    let discarded = env
        .post(
            "/multi-exec",
            json!([["SET", "c", "1"], ["GET"], ["SET", "d", "1"]]),
        )
        .await;
    assert_eq!(discarded.status, 400);
    let error = discarded.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.starts_with("EXECABORT"), "{error}");
    assert!(
        error.contains("wrong number of arguments for 'get' command"),
        "{error}"
    );
    assert_eq!(discarded.json().as_object().map(|o| o.len()), Some(1));

    // A command Upstash refuses discards it too, before anything reaches Redis.
    let refused = env
        .post("/multi-exec", json!([["SET", "e", "1"], ["WATCH", "e"]]))
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("ERR Command is not available: 'watch'"))
    );

    let mut direct = env.redis.direct().await;
    let exists: i64 = direct.exists(&["c", "d", "e"]).await.expect("EXISTS");
    assert_eq!(exists, 0, "nothing of a discarded transaction ran");

    // The shared connection is not left inside a transaction.
    assert_eq!(env.cmd(json!(["SET", "after", "1"])).await, json!("OK"));
    assert_eq!(env.cmd(json!(["GET", "after"])).await, json!("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_do_not_interleave() {
    let env = std::sync::Arc::new(Env::start().await);
    let mut tasks = Vec::new();
    for t in 0..16 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..10 {
                let tag = format!("t{t}r{round}");
                let commands: Vec<Json> = (0..8)
                    .map(|i| json!(["RPUSH", "log", format!("{tag}-{i}")]))
                    .chain([json!(["INCR", "counter"]), json!(["INCR", "counter"])])
                    .collect();
                let reply = env.post("/multi-exec", Json::Array(commands)).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                let items = reply.json();
                // The two INCRs of one transaction are consecutive.
                let first = items[8]["result"].as_i64().expect("INCR result");
                assert_eq!(items[9]["result"].as_i64(), Some(first + 1));
                // Plain commands from the same task in between transactions.
                let reply = env
                    .post(
                        "/pipeline",
                        json!([["INCR", "counter"], ["RPUSH", "log", "solo"]]),
                    )
                    .await;
                assert_eq!(reply.status, 200);
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let log = env.cmd(json!(["LRANGE", "log", 0, -1])).await;
    let log: Vec<&str> = log
        .as_array()
        .expect("array")
        .iter()
        .filter_map(Json::as_str)
        .filter(|entry| *entry != "solo")
        .collect();
    assert_eq!(log.len(), 16 * 10 * 8);
    for chunk in log.chunks(8) {
        let tag = chunk[0].rsplit_once('-').map(|(tag, _)| tag).expect("tag");
        for (i, entry) in chunk.iter().enumerate() {
            assert_eq!(
                *entry,
                format!("{tag}-{i}"),
                "interleaved transaction: {chunk:?}"
            );
        }
    }
    assert_eq!(
        env.cmd(json!(["GET", "counter"])).await,
        json!((16 * 10 * 3).to_string())
    );
}

#[tokio::test]
async fn base64_encoding_rule() {
    let env = Env::start().await;
    // Top-level OK status is not encoded.
    let set = env.post_b64("/", json!(["SET", "k", "OK"])).await;
    assert_eq!(set.json(), json!({"result": "OK"}));
    // A stored value that happens to be "OK" is a string: encoded.
    assert_eq!(
        env.post_b64("/", json!(["GET", "k"])).await.json(),
        json!({"result": "T0s="})
    );
    // Other status replies are encoded.
    assert_eq!(
        env.post_b64("/", json!(["PING"])).await.json(),
        json!({"result": b64("PONG")})
    );
    // Integers and null are not.
    assert_eq!(
        env.post_b64("/", json!(["INCR", "n"])).await.json(),
        json!({"result": 1})
    );
    assert_eq!(
        env.post_b64("/", json!(["GET", "nope"])).await.json(),
        json!({"result": null})
    );
    // Nested arrays: every string, an OK status inside an array included.
    let nested = env
        .post_b64(
            "/",
            json!([
                "EVAL",
                "return {'a', {redis.status_reply('OK'), 7, false}, 'é'}",
                0
            ]),
        )
        .await;
    assert_eq!(
        nested.json(),
        json!({"result": [b64("a"), [b64("OK"), 7, null], b64("é")]})
    );
    // Errors are not encoded.
    let error = env.post_b64("/", json!(["INCR", "k"])).await;
    assert_eq!(
        (error.status, error.json()),
        (
            400,
            json!({"error": "ERR value is not an integer or out of range"})
        )
    );
    // Pipeline and transaction items follow the same rule, item by item.
    let pipeline = env
        .post_b64(
            "/pipeline",
            json!([
                ["SET", "x", "1"],
                ["GET", "x"],
                ["LPUSH", "x", "y"],
                ["HGETALL", "nope"]
            ]),
        )
        .await;
    assert_eq!(
        pipeline.json(),
        json!([
            {"result": "OK"},
            {"result": b64("1")},
            {"error": "WRONGTYPE Operation against a key holding the wrong kind of value"},
            {"result": []},
        ])
    );
    let transaction = env
        .post_b64(
            "/multi-exec",
            json!([["SET", "y", "é"], ["MGET", "x", "y", "nope"]]),
        )
        .await;
    assert_eq!(
        transaction.json(),
        json!([{"result": "OK"}, {"result": [b64("1"), b64("é"), null]}])
    );
}

#[tokio::test]
async fn invalid_utf8_is_lossy_without_base64() {
    let env = Env::start().await;
    let mut direct = env.redis.direct().await;
    let bytes: &[u8] = &[b'a', 0xff, 0xfe, b'b'];
    let () = direct.set("bin", bytes).await.expect("SET");
    assert_eq!(
        env.cmd(json!(["GET", "bin"])).await,
        json!("a\u{fffd}\u{fffd}b")
    );
    assert_eq!(
        env.post_b64("/", json!(["GET", "bin"])).await.json(),
        json!({"result": STANDARD.encode(bytes)})
    );
    // A raw body through path style stores bytes as they are.
    let reply = env
        .send(
            env.http
                .post(env.url("/set/raw"))
                .bearer_auth(TOKEN)
                .body(vec![0u8, 0xc3, 0x28, b'z']),
        )
        .await;
    assert_eq!(reply.json(), json!({"result": "OK"}));
    let stored: Vec<u8> = direct.get("raw").await.expect("GET");
    assert_eq!(stored, [0u8, 0xc3, 0x28, b'z']);
}

#[tokio::test]
async fn sync_token_on_every_response_and_changing() {
    let env = Env::start().await;
    let mut seen = Vec::new();
    let replies = [
        env.post("/", json!(["SET", "a", "b"])).await,
        env.post("/", json!(["GET", "a"])).await,
        env.post("/pipeline", json!([["GET", "a"]])).await,
        env.post("/multi-exec", json!([["GET", "a"]])).await,
        env.post("/", json!(["NOSUCH"])).await,
        env.send(env.http.post(env.url("/"))).await,
        env.send(env.http.delete(env.url("/"))).await,
        env.send(env.http.get(env.url("/get/a")).bearer_auth(TOKEN))
            .await,
    ];
    for reply in &replies {
        let token = reply.sync_token();
        assert!(!token.is_empty());
        seen.push(token);
    }
    let sent_back = env
        .send(
            env.http
                .post(env.url("/"))
                .bearer_auth(TOKEN)
                .header("upstash-sync-token", seen[0].clone())
                .json(&json!(["GET", "a"])),
        )
        .await;
    assert_eq!(sent_back.json(), json!({"result": "b"}));
    seen.push(sent_back.sync_token());
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "tokens change: {seen:?}");
}

#[tokio::test]
async fn body_limit_default_ten_mib() {
    let env = Env::start().await;
    let big = "x".repeat(10 * 1024 * 1024);
    let reply = env.post("/", json!(["SET", "big", big])).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json(),
        json!({"error": "ERR max request size exceeded"})
    );
    let fits = "y".repeat(9 * 1024 * 1024);
    let reply = env.post("/", json!(["SET", "big", fits])).await;
    assert_eq!(reply.json(), json!({"result": "OK"}));
    assert_eq!(
        env.cmd(json!(["STRLEN", "big"])).await,
        json!(9 * 1024 * 1024)
    );
    let mut direct = env.redis.direct().await;
    let len: i64 = direct.strlen("big").await.expect("STRLEN");
    assert_eq!(len, 9 * 1024 * 1024, "the oversized SET did not run");
}

#[tokio::test]
async fn body_limit_is_configurable_and_covers_every_route() {
    let env = Env::start_with(|options| options.with_max_body_bytes(100)).await;
    let long = "z".repeat(100);
    for path in ["/", "/pipeline", "/multi-exec", "/set/k"] {
        let body = if path.contains("pipeline") || path.contains("multi") {
            json!([["SET", "k", long]])
        } else {
            json!(["SET", "k", long])
        };
        let reply = env.post(path, body).await;
        assert_eq!(
            (reply.status, reply.json()),
            (400, json!({"error": "ERR max request size exceeded"})),
            "{path}"
        );
    }
    assert_eq!(env.cmd(json!(["SET", "k", "short"])).await, json!("OK"));
}

#[tokio::test]
async fn refused_commands() {
    let env = Env::start().await;
    for command in [
        json!(["BLPOP", "q", 0]),
        json!(["brpop", "q", 1]),
        json!(["BLMOVE", "a", "b", "LEFT", "RIGHT", 0]),
        json!(["BZPOPMIN", "z", 0]),
        json!(["XREAD", "BLOCK", 0, "STREAMS", "s", "$"]),
        json!([
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            10,
            "STREAMS",
            "s",
            ">"
        ]),
        json!(["WATCH", "k"]),
        json!(["UNWATCH"]),
        json!(["MULTI"]),
        json!(["EXEC"]),
        json!(["DISCARD"]),
        json!(["SELECT", 1]),
        json!(["SUBSCRIBE", "c"]),
        json!(["PSUBSCRIBE", "c*"]),
        json!(["MONITOR"]),
        json!(["HELLO", 3]),
        json!(["CLIENT", "REPLY", "OFF"]),
    ] {
        let reply = env.post("/", command.clone()).await;
        assert_eq!(reply.status, 400, "{command}");
        let error = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.starts_with("ERR Command is not available"),
            "{command}: {error}"
        );
    }
    // Non-blocking relatives still work, and the connection is healthy.
    assert!(
        env.cmd(json!(["XADD", "s", "*", "f", "v"]))
            .await
            .is_string()
    );
    let read = env
        .cmd(json!(["XREAD", "COUNT", 1, "STREAMS", "s", "0"]))
        .await;
    assert_eq!(read[0][0], json!("s"));
    assert_eq!(env.cmd(json!(["LPOP", "q"])).await, Json::Null);
    assert_eq!(env.server.faults().stats().commands, 3);
}

#[tokio::test]
async fn methods_and_malformed_bodies() {
    let env = Env::start().await;
    for method in ["DELETE", "PATCH", "OPTIONS"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let reply = env
            .send(
                env.http
                    .request(method.clone(), env.url("/"))
                    .bearer_auth(TOKEN),
            )
            .await;
        assert_eq!(reply.status, 405, "{method}");
        assert!(reply.json()["error"].is_string());
    }
    // PUT is POST.
    let put = env
        .send(
            env.http
                .put(env.url("/"))
                .bearer_auth(TOKEN)
                .json(&json!(["SET", "p", "1"])),
        )
        .await;
    assert_eq!(put.json(), json!({"result": "OK"}));
    // HEAD is answered without a body.
    let head = env
        .send(env.http.head(env.url("/get/p")).bearer_auth(TOKEN))
        .await;
    assert_eq!((head.status, head.body.len()), (200, 0));

    for (path, body) in [
        ("/", "not json"),
        ("/", "{\"a\":1}"),
        ("/", "[]"),
        ("/", "[{\"a\": 1}]"),
        ("/", "[\"GET\", null]"),
        ("/", "[\"GET\", [\"k\"]]"),
        ("/", ""),
        ("/pipeline", "[\"GET\", \"k\"]"),
        ("/pipeline", "[]"),
        ("/pipeline", "[[]]"),
        ("/pipeline", "{}"),
        ("/multi-exec", "[[\"GET\", \"k\"], 3]"),
        ("/multi-exec", "nope"),
    ] {
        let reply = env
            .send(
                env.http
                    .post(env.url(path))
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        assert_eq!(reply.status, 400, "{path} {body}");
        assert!(
            reply.json()["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("ERR")),
            "{path} {body}: {}",
            reply.text()
        );
    }
    // Raw RESP2 responses are not implemented: say so instead of answering JSON.
    let resp2 = env
        .send(
            env.http
                .post(env.url("/"))
                .bearer_auth(TOKEN)
                .header("upstash-response-format", "resp2")
                .json(&json!(["GET", "p"])),
        )
        .await;
    assert_eq!(resp2.status, 400);
    assert_eq!(env.server.faults().stats().commands, 2);
}

#[tokio::test]
async fn path_style_commands() {
    let env = Env::start().await;
    let reply = env
        .send(env.http.get(env.url("/set/foo/bar")).bearer_auth(TOKEN))
        .await;
    assert_eq!(reply.json(), json!({"result": "OK"}));
    let reply = env
        .send(env.http.get(env.url(&format!("/get/foo?_token={TOKEN}"))))
        .await;
    assert_eq!(reply.json(), json!({"result": "bar"}));
    let reply = env
        .send(
            env.http
                .post(env.url("/set/spaced%20key?EX=100"))
                .bearer_auth(TOKEN)
                .body("raw body value"),
        )
        .await;
    assert_eq!(reply.json(), json!({"result": "OK"}));
    assert_eq!(
        env.cmd(json!(["GET", "spaced key"])).await,
        json!("raw body value")
    );
    let ttl = env.cmd(json!(["TTL", "spaced key"])).await;
    assert!(ttl.as_i64().is_some_and(|t| t > 0), "{ttl}");
    let error = env
        .send(env.http.get(env.url("/incr/foo")).bearer_auth(TOKEN))
        .await;
    assert_eq!(error.status, 400);
    let empty = env
        .send(env.http.get(env.url("/")).bearer_auth(TOKEN))
        .await;
    assert_eq!(empty.status, 400);
    assert_eq!(env.server.faults().requests_to(Route::PathStyle), 5);
}

#[tokio::test]
async fn scripts_eval_evalsha_noscript() {
    let env = Env::start().await;
    let script = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    let sha = env.cmd(json!(["SCRIPT", "LOAD", script])).await;
    let sha = sha.as_str().expect("sha").to_owned();
    assert_eq!(sha.len(), 40);
    assert_eq!(env.cmd(json!(["EVALSHA", sha, 1, "c", 5])).await, json!(5));
    assert_eq!(env.cmd(json!(["EVAL", script, 1, "c", 2])).await, json!(7));
    assert_eq!(
        env.cmd(json!([
            "SCRIPT",
            "EXISTS",
            sha,
            "0000000000000000000000000000000000000000"
        ]))
        .await,
        json!([1, 0])
    );
    let missing = env
        .post(
            "/",
            json!(["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", 0]),
        )
        .await;
    assert_eq!(
        (missing.status, missing.json()),
        (
            400,
            json!({"error": "NOSCRIPT No matching script. Please use EVAL."})
        )
    );
    // NOSCRIPT as a pipeline item too.
    let pipeline = env
        .post(
            "/pipeline",
            json!([
                ["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", 0],
                ["GET", "c"]
            ]),
        )
        .await;
    assert_eq!(
        pipeline.json(),
        json!([
            {"error": "NOSCRIPT No matching script. Please use EVAL."},
            {"result": "7"},
        ])
    );
    let failing = env
        .post("/", json!(["EVAL", "return redis.call('NOPE')", 0]))
        .await;
    assert_eq!(failing.status, 400);
    let message = failing.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with("ERR") && message.contains("Unknown Redis command"),
        "{message}"
    );
    let custom = env
        .post(
            "/",
            json!(["EVAL", "return redis.error_reply('MYERR custom')", 0]),
        )
        .await;
    assert_eq!(custom.json(), json!({"error": "MYERR custom"}));
}

#[tokio::test]
async fn fault_status_then_recovery() {
    let env = Env::start().await;
    env.server.faults().inject(Fault::status(503), 2);
    env.server.faults().inject(Fault::status(500), 1);
    for expected in [503, 503, 500] {
        let reply = env.post("/", json!(["SET", "k", "v"])).await;
        assert_eq!(reply.status, expected);
        assert!(reply.json()["error"].is_string());
        assert!(!reply.sync_token().is_empty());
    }
    let mut direct = env.redis.direct().await;
    let exists: bool = direct.exists("k").await.expect("EXISTS");
    assert!(!exists, "a failed request never ran its command");
    assert_eq!(env.cmd(json!(["SET", "k", "v"])).await, json!("OK"));
    let stats = env.server.faults().stats();
    assert_eq!(
        (stats.requests, stats.faults_injected, stats.commands),
        (4, 3, 1)
    );

    env.server.faults().inject_always(Fault::status(503));
    for _ in 0..3 {
        assert_eq!(
            env.post("/pipeline", json!([["GET", "k"]])).await.status,
            503
        );
    }
    env.server.faults().clear();
    assert_eq!(
        env.post("/pipeline", json!([["GET", "k"]])).await.status,
        200
    );
}

#[tokio::test]
async fn fault_delay_and_hang() {
    let env = Env::start().await;
    env.server
        .faults()
        .inject(Fault::delay(Duration::from_millis(300)), 1);
    let started = Instant::now();
    let reply = env.post("/", json!(["SET", "d", "1"])).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.json(), json!({"result": "OK"}));

    env.server.faults().inject(Fault::Hang, 1);
    let started = Instant::now();
    let hung = env
        .http
        .post(env.url("/"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_millis(300))
        .json(&json!(["SET", "h", "1"]))
        .send()
        .await;
    assert!(hung.is_err_and(|err| err.is_timeout()));
    assert!(started.elapsed() >= Duration::from_millis(300));
    let mut direct = env.redis.direct().await;
    let exists: bool = direct.exists("h").await.expect("EXISTS");
    assert!(!exists);
    // The next request is served normally.
    assert_eq!(env.cmd(json!(["GET", "d"])).await, json!("1"));
}

#[tokio::test]
async fn fault_hang_ends_at_shutdown() {
    let env = Env::start().await;
    env.server.faults().inject_always(Fault::Hang);
    let request = env
        .http
        .post(env.url("/"))
        .bearer_auth(TOKEN)
        .json(&json!(["PING"]))
        .send();
    let request = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let Env { server, redis, .. } = env;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown in time")
        .expect("shutdown");
    let response = request.await.expect("task");
    if let Ok(response) = response {
        assert_eq!(response.status().as_u16(), 503);
    }
    drop(redis);
}

#[tokio::test]
async fn fault_malformed_json_and_plain_text() {
    let env = Env::start().await;
    env.server.faults().inject(Fault::MalformedJson, 1);
    let cut = env.post("/", json!(["SET", "m", "1"])).await;
    assert_eq!(cut.status, 200);
    assert!(
        serde_json::from_slice::<Json>(&cut.body).is_err(),
        "{}",
        cut.text()
    );
    assert!(cut.text().starts_with('{'));
    // The command itself ran.
    assert_eq!(env.cmd(json!(["GET", "m"])).await, json!("1"));

    env.server.faults().inject(Fault::plain_text(502), 1);
    let gateway = env.post("/pipeline", json!([["GET", "m"]])).await;
    assert_eq!(gateway.status, 502);
    assert!(serde_json::from_slice::<Json>(&gateway.body).is_err());
    assert_eq!(gateway.text(), "502 Bad Gateway\n");
    assert!(
        gateway
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain"))
    );
}

#[tokio::test]
async fn request_counters_per_route() {
    let env = Env::start().await;
    env.post("/", json!(["SET", "a", "1"])).await;
    env.post("/pipeline", json!([["GET", "a"], ["GET", "a"]]))
        .await;
    env.post("/multi-exec", json!([["GET", "a"]])).await;
    env.send(env.http.get(env.url("/get/a")).bearer_auth(TOKEN))
        .await;
    env.send(env.http.post(env.url("/"))).await; // 401 counts too
    let faults = env.server.faults();
    assert_eq!(faults.requests(), 5);
    assert_eq!(faults.requests_to(Route::Single), 2);
    assert_eq!(faults.requests_to(Route::Pipeline), 1);
    assert_eq!(faults.requests_to(Route::MultiExec), 1);
    assert_eq!(faults.requests_to(Route::PathStyle), 1);
    assert_eq!(faults.stats().commands, 5);
    let before = faults.reset_stats();
    assert_eq!(before.requests, 5);
    assert_eq!(faults.requests(), 0);
}

#[tokio::test]
async fn http_fault_control_endpoint() {
    let env = Env::start_with(|options| options.with_fault_endpoint(true)).await;
    let control = |method: reqwest::Method, path: &str| {
        env.http.request(method, env.url(path)).bearer_auth(TOKEN)
    };
    // Behind the token.
    let unauthorized = env.send(env.http.get(env.url("/__stats"))).await;
    assert_eq!(unauthorized.status, 401);

    let planned = env
        .send(control(reqwest::Method::POST, "/__faults").json(&json!([
            {"mode": "status", "status": 503, "times": 1},
            {"mode": "plain_text", "status": 502, "times": 1},
            {"mode": "delay", "ms": 50, "times": 1},
        ])))
        .await;
    assert_eq!(planned.status, 200, "{}", planned.text());
    assert_eq!(planned.json()["pending"].as_array().map(Vec::len), Some(3));
    assert_eq!(env.post("/", json!(["PING"])).await.status, 503);
    assert_eq!(env.post("/", json!(["PING"])).await.status, 502);
    assert_eq!(
        env.post("/", json!(["PING"])).await.json(),
        json!({"result": "PONG"})
    );
    assert_eq!(env.post("/", json!(["PING"])).await.status, 200);

    let always = env
        .send(control(reqwest::Method::POST, "/__faults").json(&json!({"mode": "malformed_json"})))
        .await;
    assert_eq!(always.status, 200);
    let pending = env.send(control(reqwest::Method::GET, "/__faults")).await;
    assert_eq!(
        pending.json(),
        json!({"pending": [{"mode": "malformed_json", "times": null}]})
    );
    assert!(serde_json::from_slice::<Json>(&env.post("/", json!(["PING"])).await.body).is_err());
    assert!(serde_json::from_slice::<Json>(&env.post("/", json!(["PING"])).await.body).is_err());
    let cleared = env
        .send(control(reqwest::Method::POST, "/__faults").json(&json!({"mode": "clear"})))
        .await;
    assert_eq!(cleared.json(), json!({"pending": []}));
    assert_eq!(env.post("/", json!(["PING"])).await.status, 200);

    let bad = env
        .send(control(reqwest::Method::POST, "/__faults").json(&json!({"mode": "explode"})))
        .await;
    assert_eq!(bad.status, 400);

    let stats = env.send(control(reqwest::Method::GET, "/__stats")).await;
    let stats = stats.json();
    assert_eq!(stats["requests"], json!(7), "{stats}");
    assert_eq!(stats["single"], json!(7));
    assert_eq!(stats["faults_injected"], json!(5));
    let reset = env
        .send(control(reqwest::Method::POST, "/__stats/reset"))
        .await;
    assert_eq!(reset.json()["requests"], json!(7));
    let stats = env.send(control(reqwest::Method::GET, "/__stats")).await;
    assert_eq!(stats.json()["requests"], json!(0));
    // Control requests are not counted and never get faults.
    env.server.faults().inject_always(Fault::status(500));
    assert_eq!(
        env.send(control(reqwest::Method::GET, "/__stats"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn control_endpoints_are_404_without_the_flag() {
    let env = Env::start().await;
    for (method, path) in [
        (reqwest::Method::GET, "/__stats"),
        (reqwest::Method::POST, "/__faults"),
        (reqwest::Method::GET, "/__faults"),
        (reqwest::Method::POST, "/__stats/reset"),
    ] {
        let reply = env
            .send(
                env.http
                    .request(method, env.url(path))
                    .bearer_auth(TOKEN)
                    .json(&json!({"mode": "hang"})),
            )
            .await;
        assert_eq!(reply.status, 404, "{path}");
    }
    assert!(env.server.faults().pending().is_empty());
}

#[tokio::test]
async fn spawn_fails_without_redis_and_with_empty_token() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let result = upstash_local::spawn(
        listener,
        upstash_local::Options::new(format!("redis://127.0.0.1:{port}"), TOKEN),
    )
    .await;
    assert!(result.is_err());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let result = upstash_local::spawn(
        listener,
        upstash_local::Options::new("redis://127.0.0.1:1", ""),
    )
    .await;
    assert_eq!(
        result.map(|_| ()).map_err(|err| err.kind()),
        Err(std::io::ErrorKind::InvalidInput)
    );
}

#[tokio::test]
async fn binary_serves_until_sigterm() {
    let redis = support::RedisServer::start();
    let mut binary = support::Binary::start(&redis, &["--enable-faults"]).await;
    let url = binary.url.clone();
    let http = reqwest::Client::new();
    let reply = http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!(["SET", "from-binary", "1"]))
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status().as_u16(), 200);
    let stats = http
        .get(format!("{url}/__stats"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("stats")
        .json::<Json>()
        .await
        .expect("stats JSON");
    assert_eq!(stats["requests"], json!(1));

    let status = std::process::Command::new("kill")
        .args(["-TERM", &binary.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = binary.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "upstash-local ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
