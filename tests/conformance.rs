//! One conformance suite, run against both backends (direct Redis and the
//! local Upstash-compatible REST endpoint, both in front of a real
//! redis-server started by the test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use edge_session::backend::{Command, Retry, Value};
use edge_session::{
    Backend, Changes, ClientInfo, Error, Logout, SessionConfig, SessionToken, UserTag,
};
use futures::StreamExt;

use crate::support::{
    Harness, Kind, ROTATED, SECRETS, assert_secure_cookie, cookie_header, test_config,
};

both_backends!(
    a_signed_in_read_is_one_hgetall,
    a_session_from_before_exp_still_loads,
    anonymous_requests_make_no_redis_calls,
    a_visitor_who_stores_nothing_gets_no_session,
    first_write_creates_a_session_and_cookie,
    round_trips_per_operation,
    sliding_ttl_moves_on_read,
    touch_interval_throttles_the_slide,
    touch_interval_throttles_a_write_slide,
    absolute_lifetime_caps_sliding,
    write_after_expiry_does_not_resurrect,
    regenerate_keeps_data_and_kills_the_old_token,
    cluster_mode_login_moves_data_in_two_steps,
    device_list_revoke_one_others_and_all,
    logout_destroys_and_clears_the_cookie,
    concurrent_increments_are_exact,
    concurrent_writers_of_different_fields_lose_nothing,
    optimistic_compare_and_set,
    limits_refuse_and_write_nothing,
    rotated_key_still_works_and_is_resigned,
    undecodable_field_is_reported,
    token_is_hashed_at_rest,
    transactions_and_pipelines,
    mixed_workload_leaves_no_key_without_ttl,
    active_session_count_matches_a_brute_force_count,
    active_session_count_on_cluster_mode,
);

fn short_lifetimes(idle_secs: u64, absolute_secs: u64) -> SessionConfig {
    let mut config = test_config();
    config.idle_ttl = Duration::from_secs(idle_secs);
    config.absolute_ttl = Duration::from_secs(absolute_secs);
    config
}

async fn new_session(h: &Harness, field: &str, value: serde_json::Value) -> SessionToken {
    let mut changes = Changes::new();
    changes.set_json(field, &value).unwrap();
    h.store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap()
        .0
}

async fn anonymous_requests_make_no_redis_calls(kind: Kind) {
    let h = Harness::start(kind).await;
    h.redis.reset_stats();
    let codec = h.store.cookies();
    let valid = codec.sign(&SessionToken::generate(None));
    let other_key = edge_session::CookieCodec::new(
        edge_session::CookieConfig::default(),
        edge_session::KeyRing::parse("zz:QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=").unwrap(),
    )
    .unwrap()
    .sign(&SessionToken::generate(None));
    let mut forged = valid.clone().into_bytes();
    let last = forged.len() - 5;
    forged[last] = if forged[last] == b'x' { b'y' } else { b'x' };
    let forged = String::from_utf8(forged).unwrap();
    let headers = [
        None,
        Some(String::new()),
        Some("theme=dark".to_owned()),
        Some("__Host-session=garbage".to_owned()),
        Some(format!("__Host-session={forged}")),
        Some(format!("__Host-session={}", &valid[..valid.len() - 10])),
        Some(format!("__Host-session={other_key}")),
        Some(format!("__Host-session={}", "A".repeat(10_000))),
    ];
    for header in &headers {
        let request = h
            .store
            .begin(header.as_deref(), ClientInfo::default())
            .await
            .unwrap();
        assert!(request.session().is_none());
        let commit = h.store.commit(request).await.unwrap();
        assert!(commit.set_cookie.is_none(), "{header:?}");
    }
    assert_eq!(
        h.trips(),
        0,
        "anonymous requests must not reach the backend"
    );
    assert_eq!(
        h.redis.store_commands(),
        0,
        "{:?}",
        h.redis.command_counts()
    );
    assert!(h.data_keys().is_empty());
}

async fn a_visitor_who_stores_nothing_gets_no_session(kind: Kind) {
    let h = Harness::start(kind).await;
    for _ in 0..20 {
        let request = h.store.begin(None, ClientInfo::default()).await.unwrap();
        let commit = h.store.commit(request).await.unwrap();
        assert!(commit.set_cookie.is_none() && commit.handle.is_none());
    }
    assert!(h.data_keys().is_empty());
    assert_eq!(h.trips(), 0);
}

async fn first_write_creates_a_session_and_cookie(kind: Kind) {
    let h = Harness::start(kind).await;
    let mut request = h
        .store
        .begin(None, ClientInfo::with_user_agent(Some("test-agent/1")))
        .await
        .unwrap();
    request.changes().set("cart", &["apple", "pear"]).unwrap();
    request.changes().incr("visits", 1).unwrap();
    let commit = h.store.commit(request).await.unwrap();
    let set_cookie = commit.set_cookie.expect("a new session sets a cookie");
    assert_secure_cookie(&set_cookie);
    let max_age: u64 = set_cookie
        .split("Max-Age=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("a persistent cookie has a Max-Age");
    assert!(
        max_age <= h.store.config().absolute_ttl.as_secs(),
        "the cookie never outlives the absolute expiry: {set_cookie}"
    );
    let header = cookie_header(&set_cookie);
    let request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    let session = request.session().expect("the cookie finds the session");
    assert_eq!(
        session.get::<Vec<String>>("cart").unwrap().unwrap(),
        ["apple", "pear"]
    );
    assert_eq!(session.get::<i64>("visits").unwrap(), Some(1));
    assert_eq!(session.user_agent(), Some("test-agent/1"));
    assert_eq!(session.user(), None);
    assert_eq!(session.version(), 1);
    assert!(session.created() <= session.last_seen());
    assert!(session.expires() <= session.absolute_expiry());
    assert_eq!(Some(session.handle()), commit.handle.as_ref());
    let (data, invalid) = session.data();
    assert_eq!(data.len(), 2);
    assert!(invalid.is_empty());
}

async fn round_trips_per_operation(kind: Kind) {
    let h = Harness::start(kind).await;
    h.store.preload_scripts().await.unwrap();
    let store = &h.store;
    let client = ClientInfo::default();
    let measure = |label: &str, expected: usize, before: usize| {
        let used = h.trips() - before;
        assert_eq!(used, expected, "{label}: {used} round trips");
    };

    let t = h.trips();
    let mut changes = Changes::new();
    changes.set("a", &1).unwrap();
    let (token, _) = store.create(None, &changes, &client).await.unwrap();
    measure("create", 1, t);

    let t = h.trips();
    store.load(&token).await.unwrap().unwrap();
    // The test config slides on every read: HGETALL, then the slide.
    measure("load + due slide", 2, t);

    let t = h.trips();
    let mut changes = Changes::new();
    changes
        .set("b", &2)
        .unwrap()
        .delete("a")
        .unwrap()
        .incr("n", 5)
        .unwrap();
    store.apply(&token, &changes).await.unwrap();
    measure("set + delete + incr + slide", 1, t);

    let t = h.trips();
    let (user_token, _) = store
        .login(Some(&token), "alice", &Changes::new(), &client)
        .await
        .unwrap();
    measure("login (regenerate)", 1, t);

    let t = h.trips();
    let header = cookie_header(&store.cookies().set_cookie(&user_token, 60));
    let mut request = store.begin(Some(&header), client.clone()).await.unwrap();
    request.changes().incr("n", 1).unwrap();
    store.commit(request).await.unwrap();
    measure("begin + commit with a write", 2, t);

    let t = h.trips();
    store.devices("alice").await.unwrap();
    measure("device list", 1, t);

    let t = h.trips();
    store.destroy(&user_token).await.unwrap();
    measure("logout", 1, t);

    let t = h.trips();
    store.logout_all("alice").await.unwrap();
    measure("logout-all", 1, t);
}

async fn sliding_ttl_moves_on_read(kind: Kind) {
    let h = Harness::with_config(kind, short_lifetimes(4, 60)).await;
    let token = new_session(&h, "x", serde_json::json!(1)).await;
    let key = h.store.layout().session(&token);
    let first = h.store.load(&token).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = h.pttl(&key);
    assert!(before < 3000 && before > 0, "{before}");
    let second = h.store.load(&token).await.unwrap().unwrap();
    let after = h.pttl(&key);
    assert!(
        after > 3500,
        "the read must push the TTL back up: {before} -> {after}"
    );
    assert!(second.expires() > first.expires());
    assert!(second.last_seen() > first.last_seen());
    // The data was not rewritten by the touch.
    assert_eq!(second.version(), first.version());
    // Keep it alive past its original idle timeout by reading.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(h.store.load(&token).await.unwrap().is_some());
    }
    // Then stop reading: it expires.
    tokio::time::sleep(Duration::from_millis(4300)).await;
    assert!(h.store.load(&token).await.unwrap().is_none());
}

async fn touch_interval_throttles_the_slide(kind: Kind) {
    let mut config = short_lifetimes(30, 60);
    config.touch_interval = Duration::from_secs(20);
    let h = Harness::with_config(kind, config).await;
    let token = new_session(&h, "x", serde_json::json!(1)).await;
    let key = h.store.layout().session(&token);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = h.pttl(&key);
    h.redis.reset_stats();
    let s = h.store.load(&token).await.unwrap().unwrap();
    let after = h.pttl(&key);
    assert!(
        after <= before,
        "no slide inside the touch interval: {before} -> {after}"
    );
    let counts = h.redis.command_counts();
    assert!(
        !counts.contains_key("hset") && !counts.contains_key("pexpireat"),
        "{counts:?}"
    );
    assert!(
        s.expires().as_millis() >= s.loaded_at().as_millis() + u64::try_from(after).unwrap() - 50
    );
}

async fn touch_interval_throttles_a_write_slide(kind: Kind) {
    let mut config = short_lifetimes(30, 60);
    config.touch_interval = Duration::from_secs(2);
    let h = Harness::with_config(kind, config).await;
    let token = h.sign_in(None, "ann").await;
    let key = h.store.layout().session(&token);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = h.pttl(&key);
    h.redis.reset_stats();
    let mut changes = Changes::new();
    changes.incr("n", 1).unwrap();
    let applied = h.store.apply(&token, &changes).await.unwrap();
    assert_eq!(applied.increments, vec![1]);
    let after = h.pttl(&key);
    assert!(
        after <= before,
        "no slide inside the touch interval: {before} -> {after}"
    );
    let counts = h.redis.command_counts();
    for slide_only in ["pexpireat", "zadd", "pfadd"] {
        assert!(!counts.contains_key(slide_only), "{counts:?}");
    }
    assert_eq!(counts.get("hset"), Some(&1), "the write alone: {counts:?}");
    let expires = applied.expires.as_millis();
    let expected = applied.now.as_millis() + u64::try_from(after).unwrap();
    assert!(
        expires.abs_diff(expected) <= 50,
        "the reply's expiry is the key's: {expires} vs {expected}"
    );
    // Past the interval, the next write slides again (and re-scores the
    // user's device set).
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let before = h.pttl(&key);
    let applied = h.store.apply(&token, &changes).await.unwrap();
    assert_eq!(applied.increments, vec![2]);
    let after = h.pttl(&key);
    assert!(after > before + 1000, "slid: {before} -> {after}");
    // The device set's score is the expiry the slide wrote, exactly
    // (`devices()` reports now + PTTL, which may be a millisecond off).
    let set = h.store.layout().devices(token.user_tag().unwrap());
    let score: u64 = redis::cmd("ZSCORE")
        .arg(&set)
        .arg(token.handle().as_str())
        .query(&mut h.inspect())
        .unwrap();
    assert_eq!(score, applied.expires.as_millis());
    assert_eq!(h.store.devices("ann").await.unwrap().len(), 1);
}

async fn absolute_lifetime_caps_sliding(kind: Kind) {
    let h = Harness::with_config(kind, short_lifetimes(2, 3)).await;
    let token = new_session(&h, "x", serde_json::json!(1)).await;
    let key = h.store.layout().session(&token);
    let start = std::time::Instant::now();
    let mut last_abs = None;
    while start.elapsed() < Duration::from_millis(2600) {
        let s = h
            .store
            .load(&token)
            .await
            .unwrap()
            .expect("alive before its absolute expiry");
        assert!(s.expires() <= s.absolute_expiry());
        let remaining = s.loaded_at().until(s.absolute_expiry()).as_millis();
        assert!(i128::from(h.pttl(&key)) <= i128::try_from(remaining).unwrap() + 5);
        last_abs.get_or_insert(s.absolute_expiry());
        assert_eq!(
            Some(s.absolute_expiry()),
            last_abs,
            "absolute expiry never moves"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        h.store.load(&token).await.unwrap().is_none(),
        "sliding never passes the absolute expiry"
    );
    // A read does not delete: the key is gone by its own TTL.
    assert!(!h.data_keys().contains(&key));
}

async fn write_after_expiry_does_not_resurrect(kind: Kind) {
    let h = Harness::with_config(kind, short_lifetimes(1, 60)).await;
    let token = new_session(&h, "x", serde_json::json!(1)).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut changes = Changes::new();
    changes.set("x", &2).unwrap().incr("n", 1).unwrap();
    assert!(matches!(
        h.store.apply(&token, &changes).await,
        Err(Error::SessionGone)
    ));
    assert!(
        h.data_keys().is_empty(),
        "the write must not recreate a partial hash"
    );

    // Destroyed, not expired: same.
    let token = new_session(&h, "x", serde_json::json!(1)).await;
    assert!(h.store.destroy(&token).await.unwrap());
    assert!(matches!(
        h.store.apply(&token, &changes).await,
        Err(Error::SessionGone)
    ));
    assert!(h.data_keys().is_empty());

    // Past its absolute expiry while the key still exists: buried on touch.
    let token = new_session(&h, "x", serde_json::json!(1)).await;
    let key = h.store.layout().session(&token);
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("_abs")
        .arg(1)
        .query(&mut h.inspect())
        .unwrap();
    assert!(matches!(
        h.store.apply(&token, &changes).await,
        Err(Error::SessionGone)
    ));
    assert!(h.data_keys().is_empty());

    // Through the request flow, the data goes to a fresh session, never the old one.
    let token = new_session(&h, "x", serde_json::json!(1)).await;
    let header = cookie_header(&h.store.cookies().set_cookie(&token, 60));
    let mut request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert!(request.session().is_some());
    h.store.destroy(&token).await.unwrap();
    request.changes().set("late", &true).unwrap();
    let commit = h.store.commit(request).await.unwrap();
    assert_ne!(commit.handle, Some(token.handle()));
    assert!(h.store.load(&token).await.unwrap().is_none());
}

async fn regenerate_keeps_data_and_kills_the_old_token(kind: Kind) {
    let h = Harness::start(kind).await;
    let client = ClientInfo::with_user_agent(Some("phone"));
    let anon = new_session(&h, "cart", serde_json::json!(["book"])).await;
    let old_key = h.store.layout().session(&anon);

    let header = cookie_header(&h.store.cookies().set_cookie(&anon, 60));
    let mut request = h.store.begin(Some(&header), client.clone()).await.unwrap();
    request.login("alice");
    request.changes().set("theme", &"dark").unwrap();
    let commit = h.store.commit(request).await.unwrap();
    let new_header = cookie_header(commit.set_cookie.as_deref().unwrap());
    assert_ne!(new_header, header, "login issues a new token");
    assert_eq!(commit.user.as_deref(), Some("alice"));

    // The old token is dead at once, its key gone.
    assert!(h.store.load(&anon).await.unwrap().is_none());
    assert!(!h.all_keys().contains(&old_key));
    let old = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert!(old.session().is_none());

    // The new one has the data, the user, and sits in alice's device set.
    let request = h
        .store
        .begin(Some(&new_header), ClientInfo::default())
        .await
        .unwrap();
    let s = request.session().unwrap();
    assert_eq!(s.user(), Some("alice"));
    assert_eq!(s.get::<Vec<String>>("cart").unwrap().unwrap(), ["book"]);
    assert_eq!(s.get::<String>("theme").unwrap().as_deref(), Some("dark"));
    let devices = h.store.devices("alice").await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(&devices[0].handle, s.handle());
    assert_eq!(devices[0].user_agent.as_deref(), Some("phone"));

    // Logging in again as someone else moves the session out of alice's set,
    // and carries none of alice's data (tests/security_store.rs).
    let bob_token = {
        let token = h.store.cookies().from_header(&new_header).unwrap().token;
        h.store
            .login(Some(&token), "bob", &Changes::new(), &client)
            .await
            .unwrap()
            .0
    };
    assert!(h.store.devices("alice").await.unwrap().is_empty());
    let bob = h.store.load(&bob_token).await.unwrap().unwrap();
    assert_eq!(bob.user(), Some("bob"));
    assert_eq!(bob.get::<Vec<String>>("cart").unwrap(), None);
}

async fn cluster_mode_login_moves_data_in_two_steps(kind: Kind) {
    let mut config = test_config();
    config.cluster = true;
    let h = Harness::with_config(kind, config).await;
    h.store.preload_scripts().await.unwrap();
    let anon = new_session(&h, "cart", serde_json::json!([1, 2])).await;
    let before = h.trips();
    let token = h.sign_in(Some(&anon), "carol").await;
    assert_eq!(
        h.trips() - before,
        3,
        "take, create (with the take's global updates), the create's global updates"
    );
    assert!(h.store.load(&anon).await.unwrap().is_none());
    let s = h.store.load(&token).await.unwrap().unwrap();
    assert_eq!(s.get::<Vec<i64>>("cart").unwrap().unwrap(), [1, 2]);
    // Same user again: same slot, one step (and its global updates).
    let before = h.trips();
    let again = h.sign_in(Some(&token), "carol").await;
    assert_eq!(h.trips() - before, 2);
    assert!(h.store.load(&token).await.unwrap().is_none());
    assert_eq!(h.store.devices("carol").await.unwrap().len(), 1);
    assert_eq!(
        edge_session::keys::KeyLayout::hash_tag(&h.store.layout().session(&again)),
        UserTag::of("carol").as_str()
    );
}

async fn device_list_revoke_one_others_and_all(kind: Kind) {
    let h = Harness::start(kind).await;
    let mut tokens = Vec::new();
    for agent in ["laptop", "phone", "tablet", "tv"] {
        let (t, _) = h
            .store
            .login(
                None,
                "dave",
                &Changes::new(),
                &ClientInfo::with_user_agent(Some(agent)),
            )
            .await
            .unwrap();
        tokens.push(t);
    }
    let eve = h.sign_in(None, "eve").await;
    let devices = h.store.devices("dave").await.unwrap();
    assert_eq!(devices.len(), 4);
    let agents: BTreeSet<_> = devices
        .iter()
        .filter_map(|d| d.user_agent.clone())
        .collect();
    assert_eq!(agents.len(), 4);
    assert!(
        devices
            .iter()
            .all(|d| d.expires <= d.absolute_expiry && d.created <= d.last_seen)
    );

    // Revoke one.
    assert!(h.store.revoke("dave", &tokens[0].handle()).await.unwrap());
    assert!(!h.store.revoke("dave", &tokens[0].handle()).await.unwrap());
    assert!(h.store.load(&tokens[0]).await.unwrap().is_none());
    assert_eq!(h.store.devices("dave").await.unwrap().len(), 3);
    // Another user's handle cannot be revoked through dave.
    assert!(!h.store.revoke("dave", &eve.handle()).await.unwrap());
    assert!(h.store.load(&eve).await.unwrap().is_some());

    // Revoke all others.
    assert_eq!(
        h.store
            .revoke_others("dave", &tokens[1].handle())
            .await
            .unwrap(),
        2
    );
    assert!(h.store.load(&tokens[1]).await.unwrap().is_some());
    assert!(h.store.load(&tokens[2]).await.unwrap().is_none());
    assert_eq!(h.store.devices("dave").await.unwrap().len(), 1);

    // A stale entry (session deleted behind our back) is never listed and is pruned.
    let t5 = h.sign_in(None, "dave").await;
    let _: () = redis::cmd("DEL")
        .arg(h.store.layout().session(&t5))
        .query(&mut h.inspect())
        .unwrap();
    assert_eq!(h.store.devices("dave").await.unwrap().len(), 1);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(h.store.layout().devices(&UserTag::of("dave")))
        .arg(0)
        .arg(-1)
        .query(&mut h.inspect())
        .unwrap();
    assert_eq!(members, [tokens[1].handle().to_string()]);

    // Logout everywhere through the request flow.
    let header = cookie_header(&h.store.cookies().set_cookie(&tokens[1], 60));
    h.sign_in(None, "dave").await;
    let mut request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    request.logout(Logout::All);
    let commit = h.store.commit(request).await.unwrap();
    assert_eq!(commit.destroyed, 2);
    assert!(commit.set_cookie.unwrap().contains("Max-Age=0"));
    assert!(h.store.devices("dave").await.unwrap().is_empty());
    assert_eq!(h.store.logout_all("dave").await.unwrap(), 0);
    // Eve is untouched.
    assert!(h.store.load(&eve).await.unwrap().is_some());
}

async fn logout_destroys_and_clears_the_cookie(kind: Kind) {
    let h = Harness::start(kind).await;
    let token = h.sign_in(None, "frank").await;
    let header = cookie_header(&h.store.cookies().set_cookie(&token, 60));
    let mut request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    request.logout(Logout::Current);
    let commit = h.store.commit(request).await.unwrap();
    assert_eq!(commit.destroyed, 1);
    assert!(commit.set_cookie.unwrap().contains("Max-Age=0"));
    assert!(
        h.data_keys().is_empty(),
        "session and device set are gone: {:?}",
        h.data_keys()
    );
    // The stale cookie now reads as anonymous and is cleared again.
    let request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert!(request.session().is_none());
    let commit = h.store.commit(request).await.unwrap();
    assert!(commit.set_cookie.unwrap().contains("Max-Age=0"));
}

async fn concurrent_increments_are_exact(kind: Kind) {
    let h = Harness::start(kind).await;
    let token = new_session(&h, "n", serde_json::json!(0)).await;
    let results: Vec<i64> = futures::stream::iter(0..200)
        .map(|_| {
            let store = h.store.clone();
            let token = token.clone();
            async move {
                let mut changes = Changes::new();
                changes.incr("n", 1).unwrap();
                store.apply(&token, &changes).await.unwrap().increments[0]
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let s = h.store.load(&token).await.unwrap().unwrap();
    assert_eq!(s.get::<i64>("n").unwrap(), Some(200));
    let distinct: BTreeSet<i64> = results.into_iter().collect();
    assert_eq!(
        distinct,
        (1..=200).collect(),
        "every increment saw its own value"
    );
    assert_eq!(s.version(), 201);
}

async fn concurrent_writers_of_different_fields_lose_nothing(kind: Kind) {
    let mut config = test_config();
    config.max_fields = 128;
    let h = Harness::with_config(kind, config).await;
    let token = new_session(&h, "base", serde_json::json!("kept")).await;
    futures::stream::iter(0..100)
        .map(|i| {
            let store = h.store.clone();
            let token = token.clone();
            async move {
                let mut changes = Changes::new();
                changes.set(&format!("f{i}"), &i).unwrap();
                store.apply(&token, &changes).await.unwrap();
            }
        })
        .buffer_unordered(100)
        .collect::<Vec<()>>()
        .await;
    let s = h.store.load(&token).await.unwrap().unwrap();
    for i in 0..100 {
        assert_eq!(
            s.get::<i32>(&format!("f{i}")).unwrap(),
            Some(i),
            "f{i} lost"
        );
    }
    assert_eq!(s.get::<String>("base").unwrap().as_deref(), Some("kept"));
}

async fn optimistic_compare_and_set(kind: Kind) {
    let h = Harness::start(kind).await;
    let token = new_session(&h, "list", serde_json::json!([])).await;
    let s = h.store.load(&token).await.unwrap().unwrap();
    let mut first = Changes::new();
    first.set("list", &[1]).unwrap().expect_version(s.version());
    h.store.apply(&token, &first).await.unwrap();
    // A second writer that read the same version loses, and writes nothing.
    let mut stale = Changes::new();
    stale.set("list", &[2]).unwrap().expect_version(s.version());
    match h.store.apply(&token, &stale).await {
        Err(Error::Conflict { expected, found }) => assert_eq!((expected, found), (1, 2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        h.store
            .load(&token)
            .await
            .unwrap()
            .unwrap()
            .get::<Vec<i32>>("list")
            .unwrap()
            .unwrap(),
        [1]
    );

    // Under contention, read-modify-write with retries loses no element.
    futures::stream::iter(0..20)
        .map(|i| {
            let store = h.store.clone();
            let token = token.clone();
            async move {
                store
                    .update_field(&token, "list", 200, |list: Option<Vec<i32>>| {
                        let mut list = list.unwrap_or_default();
                        list.push(100 + i);
                        list
                    })
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(20)
        .collect::<Vec<()>>()
        .await;
    let list: Vec<i32> = h
        .store
        .load(&token)
        .await
        .unwrap()
        .unwrap()
        .get("list")
        .unwrap()
        .unwrap();
    assert_eq!(list.len(), 21, "{list:?}");
    assert_eq!(list.iter().copied().collect::<BTreeSet<_>>().len(), 21);
}

async fn limits_refuse_and_write_nothing(kind: Kind) {
    let mut config = test_config();
    config.max_fields = 3;
    config.max_value_bytes = 100;
    let h = Harness::with_config(kind, config).await;
    let token = new_session(&h, "a", serde_json::json!("x")).await;
    let trips = h.trips();
    let mut big = Changes::new();
    big.set("b", &"y".repeat(200)).unwrap();
    let err = h.store.apply(&token, &big).await.unwrap_err();
    assert!(err.to_string().contains("limit of 100 bytes"), "{err}");
    assert_eq!(h.trips(), trips, "refused before any Redis call");

    let mut many = Changes::new();
    many.set("b", &1)
        .unwrap()
        .set("c", &2)
        .unwrap()
        .set("d", &3)
        .unwrap();
    let err = h.store.apply(&token, &many).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooManyFields {
                limit: 3,
                actual: 4
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("limit of 3"));
    // Replacing and deleting stays within the limit.
    let mut swap = Changes::new();
    swap.delete("a")
        .unwrap()
        .set("b", &1)
        .unwrap()
        .set("c", &2)
        .unwrap()
        .set("d", &3)
        .unwrap();
    h.store.apply(&token, &swap).await.unwrap();

    let mut text = Changes::new();
    text.set("b", &"not a number")
        .unwrap()
        .incr("b", 1)
        .unwrap();
    let before = h.store.load(&token).await.unwrap().unwrap();
    assert!(
        matches!(h.store.apply(&token, &text).await, Err(Error::NotAnInteger { field }) if field == "b")
    );
    let after = h.store.load(&token).await.unwrap().unwrap();
    assert_eq!(
        before.raw_fields(),
        after.raw_fields(),
        "nothing half-applied"
    );
    assert_eq!(before.version(), after.version());

    assert!(matches!(
        Changes::new().set("_ver", &1),
        Err(Error::InvalidField { .. })
    ));
    let long_user = "u".repeat(1000);
    let err = h
        .store
        .login(None, &long_user, &Changes::new(), &ClientInfo::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limit of 256 bytes"), "{err}");
}

async fn rotated_key_still_works_and_is_resigned(kind: Kind) {
    let h = Harness::start(kind).await;
    let token = new_session(&h, "x", serde_json::json!(1)).await;
    let old_header = cookie_header(&h.store.cookies().set_cookie(&token, 60));
    assert!(old_header.contains("=k1."));
    let rotated = h.other_store(test_config(), ROTATED).await;
    let request = rotated
        .begin(Some(&old_header), ClientInfo::default())
        .await
        .unwrap();
    assert!(
        request.session().is_some(),
        "a cookie of the previous key still works"
    );
    let commit = rotated.commit(request).await.unwrap();
    let resigned = commit.set_cookie.expect("re-signed with the new key");
    assert!(resigned.contains("=k2."), "{resigned}");
    let header = cookie_header(&resigned);
    let request = rotated
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(
        request.handle(),
        Some(&token.handle()),
        "same session, new signature"
    );
    assert!(rotated.commit(request).await.unwrap().set_cookie.is_none());
    // The old ring does not know k2.
    assert!(h.store.cookies().from_header(&header).is_none());
    let _ = SECRETS;
}

async fn undecodable_field_is_reported(kind: Kind) {
    let h = Harness::start(kind).await;
    let token = new_session(&h, "good", serde_json::json!({"a": 1})).await;
    let key = h.store.layout().session(&token);
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("bad")
        .arg("{not json")
        .query(&mut h.inspect())
        .unwrap();
    let s = h.store.load(&token).await.unwrap().unwrap();
    assert!(
        matches!(s.get::<serde_json::Value>("bad"), Err(Error::Decode { field, .. }) if field == "bad")
    );
    let (data, invalid) = s.data();
    assert_eq!(data["good"], serde_json::json!({"a": 1}));
    assert_eq!(invalid, ["bad"]);
}

async fn token_is_hashed_at_rest(kind: Kind) {
    let h = Harness::start(kind).await;
    let token = h.sign_in(None, "grace").await;
    let cookie = h.store.cookies().sign(&token);
    let secret = cookie.split('.').nth(2).unwrap().to_owned();
    let mut dump = String::new();
    let mut c = h.inspect();
    for key in h.data_keys() {
        dump.push_str(&key);
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut c).unwrap();
        let values: Vec<String> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL").arg(&key).query(&mut c).unwrap(),
            _ => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .unwrap(),
        };
        dump.push_str(&values.join(" "));
    }
    assert!(dump.contains(token.handle().as_str()));
    assert!(
        !dump.contains(&secret) && !dump.contains(&cookie),
        "Redis holds a usable cookie"
    );
}

async fn transactions_and_pipelines(kind: Kind) {
    let h = Harness::start(kind).await;
    let backend = h.store.backend();
    let replies = backend
        .transaction(
            &[
                Command::new("SET").arg("t:a").arg("5"),
                Command::new("INCR").arg("t:a"),
                Command::new("HSET").arg("t:a").arg("f").arg("v"),
                Command::new("GET").arg("t:a"),
            ],
            Retry::Idempotent,
        )
        .await
        .unwrap();
    assert_eq!(replies[0], Ok(Value::Okay));
    assert_eq!(replies[1], Ok(Value::Int(6)));
    assert!(
        replies[2].as_ref().unwrap_err().code() == "WRONGTYPE",
        "runtime error per item"
    );
    assert_eq!(replies[3].as_ref().unwrap().as_int(), Some(6));
    let replies = backend
        .pipeline(
            &[
                Command::new("SET").arg("t:b").arg("héllo"),
                Command::new("GET").arg("t:b"),
                Command::new("HGETALL").arg("t:none"),
                Command::new("NOSUCHCOMMAND"),
            ],
            Retry::Idempotent,
        )
        .await
        .unwrap();
    assert_eq!(replies[1].as_ref().unwrap().as_str(), Some("héllo"));
    assert_eq!(replies[2], Ok(Value::Array(vec![])));
    assert!(replies[3].is_err());
    let _: () = redis::cmd("DEL")
        .arg("t:a")
        .arg("t:b")
        .query(&mut h.inspect())
        .unwrap();
}

async fn mixed_workload_leaves_no_key_without_ttl(kind: Kind) {
    let h = Harness::start(kind).await;
    h.store.preload_scripts().await.unwrap();
    let sessions = 10_000;
    futures::stream::iter(0..sessions)
        .map(|i| {
            let store = h.store.clone();
            async move {
                let client = ClientInfo::default();
                let mut changes = Changes::new();
                changes.set("cart", &[i]).unwrap();
                let (token, _) = store.create(None, &changes, &client).await.unwrap();
                match i % 10 {
                    0..=3 => {}
                    4 | 5 => {
                        let mut more = Changes::new();
                        more.incr("n", 1).unwrap().delete("cart").unwrap();
                        store.apply(&token, &more).await.unwrap();
                    }
                    6 | 7 => {
                        let user = format!("user{}", i % 997);
                        let (t, _) = store
                            .login(Some(&token), &user, &Changes::new(), &client)
                            .await
                            .unwrap();
                        store.load(&t).await.unwrap().unwrap();
                        if i % 20 == 6 {
                            store.destroy(&t).await.unwrap();
                        }
                    }
                    8 => {
                        store.destroy(&token).await.unwrap();
                    }
                    _ => {
                        let user = format!("user{}", i % 997);
                        store
                            .login(Some(&token), &user, &Changes::new(), &client)
                            .await
                            .unwrap();
                        if i % 100 == 9 {
                            store.logout_all(&user).await.unwrap();
                        }
                    }
                }
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let keys = h.all_keys();
    assert!(keys.len() > 5_000, "{} keys", keys.len());
    let mut c = h.inspect();
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("PTTL").arg(key);
    }
    let ttls: Vec<i64> = pipe.query(&mut c).unwrap();
    let without: Vec<_> = keys.iter().zip(&ttls).filter(|(_, t)| **t < 0).collect();
    assert!(
        without.is_empty(),
        "keys without TTL: {:?}",
        &without[..without.len().min(5)]
    );
    assert!(
        keys.iter().all(|k| k.starts_with("es:s:{")
            || k.starts_with("es:u:{")
            || k.starts_with("es:{g}:"))
    );
}

/// Live sessions counted the slow way: every session hash in the database.
fn brute_force_live_sessions(h: &Harness) -> u64 {
    h.all_keys()
        .iter()
        .filter(|k| k.starts_with("es:s:"))
        .count() as u64
}

async fn check_active_count(h: &Harness) {
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(new_session(h, "i", serde_json::json!(i)).await);
    }
    assert_eq!(h.store.active_sessions().await.unwrap(), 12);
    let alice = h.sign_in(Some(&tokens[0]), "alice").await;
    h.sign_in(Some(&tokens[1]), "bob").await;
    h.sign_in(Some(&tokens[2]), "bob").await;
    h.sign_in(None, "bob").await;
    h.store.destroy(&tokens[3]).await.unwrap();
    h.store.load(&alice).await.unwrap().unwrap();
    let mut changes = Changes::new();
    changes.incr("n", 1).unwrap();
    h.store.apply(&alice, &changes).await.unwrap();
    assert_eq!(
        h.store.active_sessions().await.unwrap(),
        brute_force_live_sessions(h)
    );
    assert_eq!(h.store.logout_all("bob").await.unwrap(), 3);
    assert_eq!(brute_force_live_sessions(h), 9);
    assert_eq!(h.store.active_sessions().await.unwrap(), 9);
    // Expiry is counted too: sessions with a short idle timeout drop out.
    let mut short = test_config();
    short.idle_ttl = Duration::from_secs(1);
    short.absolute_ttl = Duration::from_secs(60);
    short.cluster = h.store.config().cluster;
    let other = h.other_store(short, SECRETS).await;
    let mut changes = Changes::new();
    changes.set("x", &1).unwrap();
    other
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(h.store.active_sessions().await.unwrap(), 10);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(h.store.active_sessions().await.unwrap(), 9);
    assert_eq!(brute_force_live_sessions(h), 9);
}

async fn active_session_count_matches_a_brute_force_count(kind: Kind) {
    let h = Harness::start(kind).await;
    check_active_count(&h).await;
}

async fn active_session_count_on_cluster_mode(kind: Kind) {
    let mut config = test_config();
    config.cluster = true;
    let h = Harness::with_config(kind, config).await;
    check_active_count(&h).await;
}

fn hget(h: &Harness, key: &str, field: &str) -> Option<u64> {
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query(&mut h.inspect())
        .unwrap()
}

/// A signed-in read whose slide is not due is exactly one HGETALL: no
/// script, no TIME, and a commit without changes adds nothing.
async fn a_signed_in_read_is_one_hgetall(kind: Kind) {
    let mut config = test_config();
    config.touch_interval = Duration::from_secs(60);
    let h = Harness::with_config(kind, config).await;
    let token = new_session(&h, "x", serde_json::json!(1)).await;
    let key = h.store.layout().session(&token);
    let exp = hget(&h, &key, "_exp").expect("create writes _exp");
    let header = cookie_header(&h.store.cookies().set_cookie(&token, 60));
    h.redis.reset_stats();
    let trips = h.trips();
    let request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(request.get::<i64>("x").unwrap(), Some(1));
    assert!(!request.slide_due());
    assert_eq!(request.session().unwrap().expires().as_millis(), exp);
    let commit = h.store.commit(request).await.unwrap();
    assert!(commit.touch.is_none());
    assert_eq!(h.trips() - trips, 1);
    let counts = h.redis.command_counts();
    assert_eq!(counts.get("hgetall"), Some(&1), "{counts:?}");
    assert_eq!(h.redis.store_commands(), 1, "{counts:?}");
    // The library's load too.
    h.redis.reset_stats();
    h.store.load(&token).await.unwrap().unwrap();
    assert_eq!(
        h.redis.store_commands(),
        1,
        "{:?}",
        h.redis.command_counts()
    );
}

/// A session written before `_exp` existed is no logout: its first read
/// takes the load-and-slide script, which writes `_exp`; later reads are
/// plain.
async fn a_session_from_before_exp_still_loads(kind: Kind) {
    let mut config = test_config();
    config.touch_interval = Duration::from_secs(60);
    let h = Harness::with_config(kind, config).await;
    let token = new_session(&h, "x", serde_json::json!(7)).await;
    let key = h.store.layout().session(&token);
    let _: i64 = redis::cmd("HDEL")
        .arg(&key)
        .arg("_exp")
        .query(&mut h.inspect())
        .unwrap();
    let header = cookie_header(&h.store.cookies().set_cookie(&token, 60));
    let request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(request.get::<i64>("x").unwrap(), Some(7));
    let exp = hget(&h, &key, "_exp").expect("the fallback writes _exp");
    assert_eq!(request.session().unwrap().expires().as_millis(), exp);
    h.redis.reset_stats();
    let request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(request.get::<i64>("x").unwrap(), Some(7));
    assert_eq!(
        h.redis.store_commands(),
        1,
        "{:?}",
        h.redis.command_counts()
    );
}
