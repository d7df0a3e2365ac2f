//! Size limits, compression, API limits, and subnet / user-agent binding,
//! on both backends against a real redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use edge_session::gateway::{ClientAddr, Gateway, GatewayConfig, MAX_INSTRUCTION_BYTES};
use edge_session::{
    Changes, ClientInfo, CookieConfig, Error, KeyRing, SessionConfig, SessionEvent, SessionStore,
    SessionToken,
};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::gateway::{
    RecordingOrigin as Origin, TestGateway, browser_get as get, error_code as code, gateway_with,
};
use crate::support::{Harness, Kind, SECRETS, Store, test_config};

both_backends!(
    large_values_are_stored_compressed_and_read_back,
    incompressible_and_small_values_stay_plain,
    indexed_and_incremented_fields_stay_plain,
    a_corrupted_compressed_value_is_a_decode_error,
    a_compressed_bomb_is_refused_not_inflated,
    the_session_size_limit_refuses_and_writes_nothing,
    the_size_limit_counts_what_is_stored_after_compression,
    binding_is_off_by_default,
    subnet_binding_allows_the_same_network_only,
    ipv6_subnet_binding_covers_a_64,
    user_agent_binding,
    gateway_sends_inflated_data_and_stores_compressed,
    gateway_binding_uses_the_adapter_ip_or_a_trusted_header,
    gateway_request_and_response_limits,
);

fn stored(h: &Harness, token: &SessionToken, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(h.store.layout().session(token))
        .arg(field)
        .query(&mut h.inspect())
        .unwrap()
}

fn strlen(h: &Harness, token: &SessionToken, field: &str) -> usize {
    redis::cmd("HSTRLEN")
        .arg(h.store.layout().session(token))
        .arg(field)
        .query(&mut h.inspect())
        .unwrap()
}

fn hset(h: &Harness, token: &SessionToken, field: &str, value: &str) {
    let _: i64 = redis::cmd("HSET")
        .arg(h.store.layout().session(token))
        .arg(field)
        .arg(value)
        .query(&mut h.inspect())
        .unwrap();
}

/// A cart of `n` similar items: compressible JSON.
fn cart(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"sku": format!("SKU-{i:05}"), "qty": i % 3 + 1, "note": "gift wrap"}))
            .collect(),
    )
}

fn random_text(len: usize) -> String {
    use base64::Engine as _;
    let mut bytes = vec![0u8; len * 3 / 4 + 3];
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ len as u64;
    for b in &mut bytes {
        // xorshift64*: incompressible enough for deflate, deterministic.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        *b = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
    }
    let mut text = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    text.truncate(len);
    text
}

fn at(ip: &str, ua: Option<&str>) -> ClientInfo {
    ClientInfo::with_user_agent(ua).with_ip(Some(ip.parse::<IpAddr>().unwrap()))
}

fn events(store: Store) -> (Store, Arc<Mutex<Vec<SessionEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let store = store.with_hooks(Arc::new(move |e: &SessionEvent| {
        sink.lock().unwrap().push(e.clone());
    }));
    (store, seen)
}

fn mismatches(seen: &Mutex<Vec<SessionEvent>>) -> Vec<(String, Option<String>, &'static str)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            SessionEvent::BindingMismatch {
                handle,
                user,
                reason,
            } => Some((handle.to_string(), user.clone(), *reason)),
            _ => None,
        })
        .collect()
}

async fn large_values_are_stored_compressed_and_read_back(kind: Kind) {
    let h = Harness::start(kind).await;
    let big = cart(120);
    let raw = big.to_string();
    assert!(raw.len() > 5000 && raw.len() < 16384, "{}", raw.len());
    let mut changes = Changes::new();
    changes.set("cart", &big).unwrap();
    changes.set("theme", "dark").unwrap();
    let (token, _) = h
        .store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    let in_redis = strlen(&h, &token, "cart");
    assert!(
        in_redis * 4 < raw.len(),
        "stored {in_redis} bytes for {} bytes of JSON",
        raw.len()
    );
    assert!(stored(&h, &token, "cart").unwrap().starts_with("~z:"));
    assert_eq!(stored(&h, &token, "theme").unwrap(), "\"dark\"");

    let session = h.store.load(&token).await.unwrap().unwrap();
    assert_eq!(session.get::<Value>("cart").unwrap(), Some(big.clone()));
    assert_eq!(session.get_raw("cart"), Some(raw.as_str()));
    let (data, invalid) = session.data();
    assert!(invalid.is_empty());
    assert_eq!(data["cart"], big);
    assert_eq!(data["theme"], "dark");

    // A write (apply) and a login carry the compressed value along.
    let bigger = cart(150);
    let mut changes = Changes::new();
    changes.set("cart", &bigger).unwrap();
    h.store.apply(&token, &changes).await.unwrap();
    assert!(strlen(&h, &token, "cart") * 4 < bigger.to_string().len());
    let user_token = h.sign_in(Some(&token), "alice").await;
    let session = h.store.load(&user_token).await.unwrap().unwrap();
    assert_eq!(session.get::<Value>("cart").unwrap(), Some(bigger));
    assert!(stored(&h, &user_token, "cart").unwrap().starts_with("~z:"));
}

async fn incompressible_and_small_values_stay_plain(kind: Kind) {
    let h = Harness::start(kind).await;
    let noise = random_text(6000);
    let mut changes = Changes::new();
    changes.set("noise", &noise).unwrap();
    changes.set("small", &"x".repeat(1000)).unwrap();
    let (token, _) = h
        .store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    // Deflate cannot win on random base64: stored as its JSON text.
    assert_eq!(
        stored(&h, &token, "noise").unwrap(),
        serde_json::to_string(&noise).unwrap()
    );
    // At or under the threshold (1024 bytes of JSON): stored as is.
    assert_eq!(strlen(&h, &token, "small"), 1002);
    let session = h.store.load(&token).await.unwrap().unwrap();
    assert_eq!(session.get::<String>("noise").unwrap(), Some(noise));

    // Compression off (0): even compressible values stay plain.
    let mut config = test_config();
    config.compress_bytes = 0;
    let plain = h.other_store(config, SECRETS).await;
    let mut changes = Changes::new();
    changes.set("cart", &cart(100)).unwrap();
    let (token, _) = plain
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(strlen(&h, &token, "cart"), cart(100).to_string().len());
}

async fn indexed_and_incremented_fields_stay_plain(kind: Kind) {
    let mut config = test_config();
    config.indexes = edge_session::IndexSpec::parse_list("skus[]").unwrap();
    config.compress_bytes = 16;
    let h = Harness::with_config(kind, config).await;
    let skus: Vec<String> = (0..40).map(|i| format!("SKU-{i:05}")).collect();
    let mut changes = Changes::new();
    changes.set("skus", &skus).unwrap();
    changes.set("visits", &-9_007_199_254_740_990i64).unwrap();
    changes.set("other", &skus).unwrap();
    let (token, _) = h
        .store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(
        stored(&h, &token, "skus").unwrap(),
        serde_json::to_string(&skus).unwrap()
    );
    assert!(stored(&h, &token, "other").unwrap().starts_with("~z:"));
    // The index saw the plain value.
    let page = h.store.query("skus", "SKU-00007", 0, 10).await.unwrap();
    assert_eq!(page.sessions.len(), 1);
    // An integer longer than the threshold is still incrementable.
    let mut incr = Changes::new();
    incr.incr("visits", 1).unwrap();
    let applied = h.store.apply(&token, &incr).await.unwrap();
    assert_eq!(applied.increments, [-9_007_199_254_740_989]);
    // Set and incremented in the same write: never compressed.
    let mut both = Changes::new();
    both.set("n", &0).unwrap();
    both.incr("n", 5).unwrap();
    let applied = h.store.apply(&token, &both).await.unwrap();
    assert_eq!(applied.increments, [5]);
}

async fn a_corrupted_compressed_value_is_a_decode_error(kind: Kind) {
    let h = Harness::start(kind).await;
    let mut changes = Changes::new();
    changes.set("cart", &cart(50)).unwrap();
    changes.set("theme", "dark").unwrap();
    let (token, _) = h
        .store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    let good = stored(&h, &token, "cart").unwrap();
    assert!(good.starts_with("~z:"));
    // Truncated deflate stream, bad base64, not UTF-8 once inflated.
    let not_utf8 = {
        use base64::Engine as _;
        let deflated = miniz_oxide::deflate::compress_to_vec(&[0xff, 0xfe, 0xfd], 6);
        format!(
            "~z:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(deflated)
        )
    };
    for bad in [&good[..good.len() / 2], "~z:***", not_utf8.as_str()] {
        hset(&h, &token, "cart", bad);
        let session = h.store.load(&token).await.unwrap().unwrap();
        let e = session.get::<Value>("cart").unwrap_err();
        assert!(
            matches!(&e, Error::Decode { field, .. } if field == "cart"),
            "{e:?}"
        );
        let (data, invalid) = session.data();
        assert_eq!(invalid, ["cart"]);
        assert_eq!(data["theme"], "dark", "one bad field hides no other");
    }
}

async fn a_compressed_bomb_is_refused_not_inflated(kind: Kind) {
    let mut config = test_config();
    config.max_session_bytes = 64 * 1024;
    let h = Harness::with_config(kind, config).await;
    let mut changes = Changes::new();
    changes.set("theme", "dark").unwrap();
    let (token, _) = h
        .store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    // 8 MiB of zeros deflate to about 8 KiB: far past the inflate bound.
    let bomb = {
        use base64::Engine as _;
        let zeros = vec![b'0'; 8 << 20];
        let deflated = miniz_oxide::deflate::compress_to_vec(&zeros, 9);
        assert!(deflated.len() < 64 * 1024);
        format!(
            "~z:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(deflated)
        )
    };
    hset(&h, &token, "bomb", &bomb);
    let session = h.store.load(&token).await.unwrap().unwrap();
    let e = session.get::<Value>("bomb").unwrap_err();
    let reason = std::error::Error::source(&e).unwrap().to_string();
    assert!(reason.contains("limit of 65536 bytes"), "{reason}");
    assert_eq!(session.data().1, ["bomb"]);
}

async fn the_session_size_limit_refuses_and_writes_nothing(kind: Kind) {
    let mut config = test_config();
    config.max_session_bytes = 4096;
    config.compress_bytes = 0;
    let h = Harness::with_config(kind, config).await;
    let text = |n: usize| "a".repeat(n);

    // A create over the limit: no session at all.
    let mut changes = Changes::new();
    changes.set("a", &text(3000)).unwrap();
    changes.set("b", &text(2000)).unwrap();
    let keys_before = h.data_keys();
    let e = h
        .store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap_err();
    let message = e.to_string();
    assert!(
        matches!(e, Error::TooLarge { what: "session data", limit: 4096, actual } if actual == 2 + 3002 + 2002),
        "{e:?}"
    );
    assert!(message.contains("limit of 4096 bytes"), "{message}");
    assert_eq!(h.data_keys(), keys_before);

    // A write that would pass it: nothing of it is written.
    let mut changes = Changes::new();
    changes.set("a", &text(3000)).unwrap();
    let (token, applied) = h
        .store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    let mut more = Changes::new();
    more.set("c", &1).unwrap().set("b", &text(2000)).unwrap();
    let e = h.store.apply(&token, &more).await.unwrap_err();
    assert!(e.to_string().contains("4096"), "{e}");
    let session = h.store.load(&token).await.unwrap().unwrap();
    assert_eq!(session.version(), applied.version);
    assert_eq!(session.raw_fields().len(), 1);
    assert_eq!(stored(&h, &token, "c"), None);

    // Replacing a value counts the difference; up to the limit is fine.
    let mut replace = Changes::new();
    replace.set("a", &text(4000)).unwrap();
    h.store.apply(&token, &replace).await.unwrap();
    let mut grow = Changes::new();
    grow.set("a", &text(4095)).unwrap();
    assert!(matches!(
        h.store.apply(&token, &grow).await,
        Err(Error::TooLarge { .. })
    ));
    // An increment that lengthens a number counts too.
    let mut to_the_edge = Changes::new();
    to_the_edge
        .set("a", &text(4091))
        .unwrap()
        .set("n", &9)
        .unwrap();
    h.store.apply(&token, &to_the_edge).await.unwrap();
    let mut incr = Changes::new();
    incr.incr("n", 1).unwrap();
    assert!(matches!(
        h.store.apply(&token, &incr).await,
        Err(Error::TooLarge { .. })
    ));

    // A login that would carry the data past the limit keeps the old session.
    let mut login_changes = Changes::new();
    login_changes.set("extra", &text(100)).unwrap();
    assert!(matches!(
        h.store
            .login(
                Some(&token),
                "alice",
                &login_changes,
                &ClientInfo::default()
            )
            .await,
        Err(Error::TooLarge { .. })
    ));
    assert!(h.store.load(&token).await.unwrap().is_some());

    // Data written past a lowered limit: shrinking writes still go through.
    let mut lower = test_config();
    lower.max_session_bytes = 1000;
    lower.compress_bytes = 0;
    let strict = h.other_store(lower, SECRETS).await;
    let mut shrink = Changes::new();
    shrink.set("a", &text(2000)).unwrap();
    strict.apply(&token, &shrink).await.unwrap();
    let mut still_over = Changes::new();
    still_over.set("x", &1).unwrap();
    assert!(matches!(
        strict.apply(&token, &still_over).await,
        Err(Error::TooLarge { limit: 1000, .. })
    ));
}

async fn the_size_limit_counts_what_is_stored_after_compression(kind: Kind) {
    let mut config = test_config();
    config.max_session_bytes = 4096;
    let h = Harness::with_config(kind, config).await;
    // 15 KB of JSON deflate far under 4 KiB: accepted.
    let big = cart(320);
    assert!(big.to_string().len() > 14_000);
    let mut changes = Changes::new();
    changes.set("cart", &big).unwrap();
    let (token, _) = h
        .store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    assert!(strlen(&h, &token, "cart") < 4096);
    let session = h.store.load(&token).await.unwrap().unwrap();
    assert_eq!(session.get::<Value>("cart").unwrap(), Some(big));
    // Incompressible data is counted as is: refused.
    let mut noise = Changes::new();
    noise.set("noise", &random_text(5000)).unwrap();
    assert!(matches!(
        h.store.apply(&token, &noise).await,
        Err(Error::TooLarge {
            what: "session data",
            ..
        })
    ));
    // The per-field limit is about the JSON as written, before compression.
    let mut huge = Changes::new();
    huge.set("cart", &cart(400)).unwrap();
    assert!(matches!(
        h.store.apply(&token, &huge).await,
        Err(Error::TooLarge {
            what: "session field value",
            limit: 16384,
            ..
        })
    ));
}

async fn binding_is_off_by_default(kind: Kind) {
    let h = Harness::start(kind).await;
    let (store, seen) = events(h.store.clone());
    let mut changes = Changes::new();
    changes.set("theme", "dark").unwrap();
    let (token, _) = store
        .create(None, &changes, &at("203.0.113.7", Some("Phone/1")))
        .await
        .unwrap();
    assert_eq!(stored(&h, &token, "_bnet"), None);
    assert_eq!(stored(&h, &token, "_bua"), None);
    let (session, mismatch) = store
        .load_for(&token, &at("198.51.100.1", Some("Laptop/2")))
        .await
        .unwrap();
    assert!(session.is_some() && !mismatch);
    assert!(mismatches(&seen).is_empty());
}

async fn subnet_binding_allows_the_same_network_only(kind: Kind) {
    let mut config = test_config();
    config.bind_subnet = true;
    let h = Harness::with_config(kind, config).await;
    let (store, seen) = events(h.store.clone());
    let mut changes = Changes::new();
    changes.set("theme", "dark").unwrap();
    let (token, _) = store
        .login(None, "alice", &changes, &at("203.0.113.7", None))
        .await
        .unwrap();
    let net = stored(&h, &token, "_bnet").unwrap();
    assert_eq!(net.len(), 64);
    assert!(!net.contains("203.0.113"), "no IP in Redis");
    let cookie = format!("__Host-session={}", store.cookies().sign(&token));

    // Another host of the same /24: the session.
    let same = store
        .begin(Some(&cookie), at("203.0.113.200", None))
        .await
        .unwrap();
    assert_eq!(same.user(), Some("alice"));

    // Another network: anonymous, reported, the session left intact.
    let mut elsewhere = store
        .begin(Some(&cookie), at("198.51.100.7", None))
        .await
        .unwrap();
    assert!(elsewhere.session().is_none());
    assert_eq!(elsewhere.get::<String>("theme").unwrap(), None);
    assert_eq!(
        mismatches(&seen),
        [(
            token.handle().to_string(),
            Some("alice".to_owned()),
            "subnet"
        )]
    );
    // It can neither end that session nor clear the cookie.
    elsewhere.logout(edge_session::Logout::All);
    let commit = store.commit(elsewhere).await.unwrap();
    assert_eq!(commit.set_cookie, None);
    assert_eq!(commit.destroyed, 0);
    let (back, mismatch) = store
        .load_for(&token, &at("203.0.113.8", None))
        .await
        .unwrap();
    assert!(back.is_some() && !mismatch);
    // A write from elsewhere goes to a fresh anonymous session.
    let mut other = store
        .begin(Some(&cookie), at("198.51.100.7", None))
        .await
        .unwrap();
    other.changes().set("theme", "light").unwrap();
    let commit = store.commit(other).await.unwrap();
    assert_ne!(commit.handle, Some(token.handle()));
    assert_eq!(commit.user, None);
    let original = store.load(&token).await.unwrap().unwrap();
    assert_eq!(
        original.get::<String>("theme").unwrap().as_deref(),
        Some("dark")
    );
    // No known client IP: a bound session cannot be checked, so it is not used.
    let (none, mismatch) = store
        .load_for(&token, &ClientInfo::default())
        .await
        .unwrap();
    assert!(none.is_none() && mismatch);
}

async fn ipv6_subnet_binding_covers_a_64(kind: Kind) {
    let mut config = test_config();
    config.bind_subnet = true;
    let h = Harness::with_config(kind, config).await;
    let (store, seen) = events(h.store.clone());
    let mut changes = Changes::new();
    changes.set("theme", "dark").unwrap();
    let (token, _) = store
        .create(None, &changes, &at("2001:db8:aa:bb::1", None))
        .await
        .unwrap();
    for (ip, ok) in [
        ("2001:db8:aa:bb:1234:5678:9abc:def0", true),
        ("2001:db8:aa:bc::1", false),
        ("203.0.113.7", false),
    ] {
        let (session, mismatch) = store.load_for(&token, &at(ip, None)).await.unwrap();
        assert_eq!(session.is_some(), ok, "{ip}");
        assert_eq!(mismatch, !ok, "{ip}");
    }
    assert_eq!(mismatches(&seen).len(), 2);
    assert!(
        mismatches(&seen)
            .iter()
            .all(|(_, user, reason)| user.is_none() && *reason == "subnet")
    );
}

async fn user_agent_binding(kind: Kind) {
    let mut config = test_config();
    config.bind_user_agent = true;
    let h = Harness::with_config(kind, config).await;
    let (store, seen) = events(h.store.clone());
    let mut changes = Changes::new();
    changes.set("theme", "dark").unwrap();
    let (token, _) = store
        .login(
            None,
            "bob",
            &changes,
            &ClientInfo::with_user_agent(Some("Phone/1")),
        )
        .await
        .unwrap();
    assert!(stored(&h, &token, "_bua").is_some());
    assert_eq!(stored(&h, &token, "_bnet"), None, "subnet binding is off");
    let (same, _) = store
        .load_for(&token, &at("198.51.100.1", Some("Phone/1")))
        .await
        .unwrap();
    assert!(same.is_some(), "another IP is fine with only UA binding");
    let (changed, mismatch) = store
        .load_for(&token, &ClientInfo::with_user_agent(Some("Phone/2")))
        .await
        .unwrap();
    assert!(changed.is_none() && mismatch);
    assert_eq!(
        mismatches(&seen),
        [(
            token.handle().to_string(),
            Some("bob".to_owned()),
            "user_agent"
        )]
    );
    // The device list still shows the session: it was not destroyed.
    assert_eq!(store.devices("bob").await.unwrap().len(), 1);
}

fn cookie_of(response: &Response<Bytes>) -> String {
    let set = response.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn gateway_sends_inflated_data_and_stores_compressed(kind: Kind) {
    let h = Harness::start(kind).await;
    let origin = Origin::default();
    let gateway = gateway_with(h.store.clone(), origin.clone(), &[]);
    let big = cart(100);
    let set = json!({ "cart": big, "theme": "dark" }).to_string();
    origin.answer_with(&[("x-session-set", &set)], Bytes::from_static(b"ok"));
    let response = gateway
        .handle(get("/", None).body(Bytes::new()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = cookie_of(&response);
    let token = h.store.cookies().from_header(&cookie).unwrap().token;
    assert!(strlen(&h, &token, "cart") * 4 < big.to_string().len());

    origin.answer_with(&[], Bytes::from_static(b"ok"));
    let response = gateway
        .handle(get("/", Some(&cookie)).body(Bytes::new()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let sent = origin.last();
    let data: Value = serde_json::from_slice(sent["x-session-data"].as_bytes()).unwrap();
    assert_eq!(data["cart"], big);
    assert_eq!(data["theme"], "dark");

    // The browser API shows the same data (its fields are declared public).
    let gateway = gateway_with(
        h.store.clone(),
        origin.clone(),
        &[("SESSION_PUBLIC_FIELDS", "cart")],
    );
    let user_token = h.sign_in(Some(&token), "carol").await;
    let cookie = format!("__Host-session={}", h.store.cookies().sign(&user_token));
    let response = gateway
        .handle(get("/_session", Some(&cookie)).body(Bytes::new()).unwrap())
        .await;
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["fields"]["cart"], big);

    // A session write past the hard limit is the origin's fault: 502, and
    // the log names the limit.
    let mut config = test_config();
    config.max_session_bytes = 2048;
    let small = h.other_store(config, SECRETS).await;
    let gateway = gateway_with(small, origin.clone(), &[]);
    let set = json!({ "noise": random_text(3000) }).to_string();
    origin.answer_with(&[("x-session-set", &set)], Bytes::new());
    let response = gateway
        .handle(get("/", Some(&cookie)).body(Bytes::new()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(code(&response), "bad_session_instruction");
    // The limit goes to the log; the browser sees the code only.
    assert!(
        !String::from_utf8_lossy(response.body()).contains("2048"),
        "{:?}",
        response.body()
    );
    assert_eq!(stored(&h, &user_token, "noise"), None);
}

async fn gateway_binding_uses_the_adapter_ip_or_a_trusted_header(kind: Kind) {
    let mut config = test_config();
    config.bind_subnet = true;
    let h = Harness::with_config(kind, config).await;
    let (store, seen) = events(h.store.clone());
    let origin = Origin::default();
    let gateway = gateway_with(store.clone(), origin.clone(), &[]);
    let from = |ip: &str, cookie: Option<&str>| {
        let mut r = get("/", cookie).body(Bytes::new()).unwrap();
        r.extensions_mut().insert(ClientAddr(ip.parse().unwrap()));
        r
    };
    origin.answer_with(&[("x-session-login", "dave")], Bytes::new());
    let response = gateway.handle(from("192.0.2.10", None)).await;
    let cookie = cookie_of(&response);

    origin.answer_with(&[], Bytes::new());
    gateway.handle(from("192.0.2.99", Some(&cookie))).await;
    assert_eq!(origin.last()["x-session-user"], "dave");
    let response = gateway.handle(from("198.51.100.10", Some(&cookie))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(origin.last().get("x-session-id").is_none(), "anonymous");
    assert!(
        response.headers().get("set-cookie").is_none(),
        "cookie kept"
    );
    assert_eq!(mismatches(&seen).len(), 1);
    // The browser API: not signed in from there.
    let mut api = from("198.51.100.10", Some(&cookie));
    *api.uri_mut() = "/_session".parse().unwrap();
    assert_eq!(gateway.handle(api).await.status(), StatusCode::UNAUTHORIZED);

    // X-Forwarded-For is ignored unless configured...
    let mut spoofed = get("/", Some(&cookie))
        .header("x-forwarded-for", "192.0.2.10")
        .body(Bytes::new())
        .unwrap();
    spoofed
        .extensions_mut()
        .insert(ClientAddr("198.51.100.10".parse().unwrap()));
    gateway.handle(spoofed).await;
    assert!(origin.last().get("x-session-id").is_none());
    // ...and when configured, its last entry (the trusted proxy's) counts.
    let trusting = gateway_with(
        store,
        origin.clone(),
        &[("SESSION_CLIENT_IP_HEADER", "X-Forwarded-For")],
    );
    let via = |xff: &str| {
        get("/", Some(&cookie))
            .header("x-forwarded-for", xff)
            .body(Bytes::new())
            .unwrap()
    };
    trusting.handle(via("198.51.100.1, 192.0.2.77")).await;
    assert_eq!(origin.last()["x-session-user"], "dave");
    trusting.handle(via("192.0.2.77, 198.51.100.1")).await;
    assert!(origin.last().get("x-session-user").is_none());
}

/// A raw HTTP/1.1 server answering every request with a `len`-byte body,
/// chunked when `chunked`.
async fn big_origin(len: usize, chunked: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let body = vec![b'x'; len];
                let head = if chunked {
                    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                        .to_owned()
                } else {
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")
                };
                let _ = socket.write_all(head.as_bytes()).await;
                if chunked {
                    for piece in body.chunks(4096) {
                        let _ = socket
                            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                            .await;
                        let _ = socket.write_all(piece).await;
                        let _ = socket.write_all(b"\r\n").await;
                    }
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                } else {
                    let _ = socket.write_all(&body).await;
                }
            });
        }
    });
    url
}

async fn gateway_request_and_response_limits(kind: Kind) {
    let h = Harness::start(kind).await;
    let origin = Origin::default();
    let gateway = gateway_with(
        h.store.clone(),
        origin.clone(),
        &[("SESSION_MAX_BODY_BYTES", "10000")],
    );
    let trips = h.trips();

    // 431: headers over 32 KiB in all.
    let mut builder = get("/", None);
    for i in 0..40 {
        builder = builder.header(format!("x-big-{i}"), "v".repeat(1000));
    }
    let response = gateway.handle(builder.body(Bytes::new()).unwrap()).await;
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(code(&response), "headers_too_large");

    // 413: a proxied body over SESSION_MAX_BODY_BYTES, an API body over 1 KiB.
    let post = |path: &str, len: usize| {
        get(path, None)
            .method(Method::POST)
            .header("sec-fetch-site", "same-origin")
            .header("content-length", len)
            .body(Bytes::from(vec![b'x'; len]))
            .unwrap()
    };
    let response = gateway.handle(post("/upload", 10_001)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&response), "body_too_large");
    assert!(String::from_utf8_lossy(response.body()).contains("limit of 10000 bytes"));
    assert!(origin.seen.lock().unwrap().is_empty(), "nothing forwarded");
    let response = gateway.handle(post("/_session/logout", 1025)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.trips(), trips, "no store call for refused requests");
    // At the limits: through.
    origin.answer_with(&[], Bytes::from_static(b"ok"));
    assert_eq!(
        gateway.handle(post("/upload", 10_000)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        gateway
            .handle(post("/_session/logout", 1024))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // 502: an origin response body over the limit.
    origin.answer_with(&[], Bytes::from(vec![b'x'; 10_001]));
    let response = gateway
        .handle(get("/", None).body(Bytes::new()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(code(&response), "origin_response_too_large");

    // 502: an instruction header over 64 KiB, nothing applied.
    let huge = format!("{{\"a\":\"{}\"}}", "v".repeat(MAX_INSTRUCTION_BYTES));
    origin.answer_with(&[("x-session-set", &huge)], Bytes::new());
    let response = gateway
        .handle(get("/", None).body(Bytes::new()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(code(&response), "bad_session_instruction");
    assert!(!String::from_utf8_lossy(response.body()).contains("65536"));
    assert!(response.headers().get("set-cookie").is_none());

    // Through reqwest: an origin Content-Length over the limit is refused
    // before any byte; a chunked body is cut off where it passes the limit.
    for chunked in [false, true] {
        let url = big_origin(50_000, chunked).await;
        let limited = |limit: &str| {
            let limit = limit.to_owned();
            let config = GatewayConfig::from_lookup(|name| match name {
                "ORIGIN_URL" => Some(url.clone()),
                "SESSION_MAX_BODY_BYTES" => Some(limit.clone()),
                _ => None,
            })
            .unwrap();
            TestGateway::reqwest(Gateway::new(h.store.clone(), config))
        };
        let gateway = limited("20000");
        let response = gateway
            .try_handle(get("/", None).body(Bytes::new()).unwrap())
            .await;
        if chunked {
            let cut = response.err().map(|e| format!("{e:?}"));
            assert!(
                cut.as_ref().is_some_and(|e| e.contains("LengthLimit")),
                "{cut:?}"
            );
        } else {
            let response = response.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
            assert_eq!(code(&response), "origin_response_too_large");
        }
        let gateway = limited("50000");
        let response = gateway
            .handle(get("/", None).body(Bytes::new()).unwrap())
            .await;
        assert_eq!(response.status(), StatusCode::OK, "chunked {chunked}");
        assert_eq!(response.body().len(), 50_000);
    }
}

/// A cookie configuration that could produce a `Set-Cookie` over 4096 bytes
/// is refused when the store is built.
#[test]
fn an_oversized_cookie_configuration_is_refused_at_start_up() {
    let mut config = SessionConfig::default();
    let mut cookie = CookieConfig::default();
    cookie.name = "sid".to_owned();
    cookie.path = format!("/{}", "p".repeat(4000));
    config.cookie = cookie;
    let ring = KeyRing::parse(SECRETS).unwrap();
    let settings_error = config.validate().unwrap_err().to_string();
    assert!(
        settings_error.contains("SESSION_COOKIE_PATH"),
        "{settings_error}"
    );
    assert!(settings_error.contains("4096"), "{settings_error}");
    let backend = edge_session::backend::RestBackend::new(edge_session::backend::RestConfig::new(
        "http://127.0.0.1:9",
        "token",
    ))
    .unwrap();
    assert!(matches!(
        SessionStore::new(backend, config, ring),
        Err(Error::Config { .. })
    ));
}
