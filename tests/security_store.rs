//! Store-side findings of the security review (issue 13, items 5, 6 and 9),
//! each with the test that failed before its fix:
//!
//! - a login never carries another user's data into the new session, and
//!   `SESSION_LOGIN_CARRY` picks what an anonymous or same-user session passes
//!   on (index entries included), on both backends and on a Redis Cluster
//!   (where a login across slots is take + create);
//! - `SESSION_MAX_SESSIONS_PER_USER` caps a user's sessions at login, and
//!   logout-all / revoke-others end any number of sessions in short script
//!   calls (100,000 sessions, every call under 50 ms of Redis time, read from
//!   `SLOWLOG`);
//! - user ids with leading or trailing whitespace are refused at sign-in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_session::config::{LoginCarry, REVOKE_BATCH};
use edge_session::{
    Changes, ClientInfo, Error, IndexSpec, Logout, SessionConfig, SessionEvent, SessionStore,
    SessionToken, UserTag,
};
use futures::StreamExt;

use crate::support::{Harness, Kind, Store, cookie_header, counting, test_config};

both_backends!(
    a_login_never_carries_another_users_data,
    login_carry_picks_the_fields_that_survive,
    sessions_per_user_are_capped_at_login,
    revoke_others_and_logout_all_work_in_batches,
    user_ids_with_edge_whitespace_are_refused,
    logout_all_of_many_sessions_stays_in_short_script_calls,
);

/// The same tests on a local 3-master Redis Cluster (cluster mode: a login
/// across slots is take.lua then create.lua).
mod cluster {
    macro_rules! on_cluster {
        ($($name:ident),* $(,)?) => {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::support::cluster::on_cluster(super::$name(crate::support::Kind::Direct))
                    .await
            })*
        };
    }
    on_cluster!(
        a_login_never_carries_another_users_data,
        login_carry_picks_the_fields_that_survive,
        sessions_per_user_are_capped_at_login,
        revoke_others_and_logout_all_work_in_batches,
    );
}

fn indexed(mut config: SessionConfig) -> SessionConfig {
    config.indexes = IndexSpec::parse_list("tenant,cart[]").unwrap();
    config
}

fn changes(fields: serde_json::Value) -> Changes {
    let mut changes = Changes::new();
    for (name, value) in fields.as_object().unwrap() {
        changes.set_json(name, value).unwrap();
    }
    changes
}

async fn login(
    store: &Store,
    current: Option<&SessionToken>,
    user: &str,
    fields: serde_json::Value,
) -> SessionToken {
    store
        .login(current, user, &changes(fields), &ClientInfo::default())
        .await
        .unwrap()
        .0
}

/// The user fields of a live session, as JSON.
async fn fields_of(store: &Store, token: &SessionToken) -> serde_json::Value {
    let session = store.load(token).await.unwrap().expect("a live session");
    serde_json::Value::Object(session.data().0)
}

async fn query(h: &Harness, field: &str, value: &str) -> BTreeSet<String> {
    h.store
        .query(field, value, 0, 1000)
        .await
        .unwrap()
        .sessions
        .iter()
        .map(|s| s.handle.as_str().to_owned())
        .collect()
}

fn handles(tokens: &[&SessionToken]) -> BTreeSet<String> {
    tokens
        .iter()
        .map(|t| t.handle().as_str().to_owned())
        .collect()
}

/// Records the lifecycle events of a clone of the harness's store.
fn recording(h: &Harness) -> (Store, Arc<Mutex<Vec<SessionEvent>>>) {
    let events: Arc<Mutex<Vec<SessionEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let store = h
        .store
        .clone()
        .with_hooks(Arc::new(move |e: &SessionEvent| {
            sink.lock().unwrap().push(e.clone());
        }));
    (store, events)
}

/// Item 5: alice sets `role` and signs out without logout; bob signs in
/// from the same browser (her cookie). Before the fix bob's session held
/// alice's `role`, her cart and her index entries.
async fn a_login_never_carries_another_users_data(kind: Kind) {
    let h = Harness::with_config(kind, indexed(test_config())).await;
    let store = &h.store;
    // Anonymous -> alice: the visitor's cart comes along (default `all`).
    let anon = store
        .create(
            None,
            &changes(serde_json::json!({ "cart": ["book"] })),
            &ClientInfo::default(),
        )
        .await
        .unwrap()
        .0;
    let alice = login(store, Some(&anon), "alice", serde_json::json!({})).await;
    assert_eq!(
        fields_of(store, &alice).await,
        serde_json::json!({ "cart": ["book"] })
    );
    let mut more = Changes::new();
    more.set("role", "admin")
        .unwrap()
        .set("tenant", "acme")
        .unwrap();
    store.apply(&alice, &more).await.unwrap();
    // Same user again: everything stays.
    let alice = login(store, Some(&alice), "alice", serde_json::json!({})).await;
    assert_eq!(
        fields_of(store, &alice).await,
        serde_json::json!({ "cart": ["book"], "role": "admin", "tenant": "acme" })
    );
    assert_eq!(query(&h, "tenant", "acme").await, handles(&[&alice]));

    // Bob from alice's session: only his own login changes.
    let bob = login(
        store,
        Some(&alice),
        "bob",
        serde_json::json!({ "theme": "dark" }),
    )
    .await;
    let session = store.load(&bob).await.unwrap().unwrap();
    assert_eq!(session.user(), Some("bob"));
    assert_eq!(
        serde_json::Value::Object(session.data().0),
        serde_json::json!({ "theme": "dark" }),
        "nothing of alice's session reaches bob's"
    );
    // Alice's session is gone (fixation defence as before), with its index
    // entries, and bob's new session got none of hers.
    assert!(store.load(&alice).await.unwrap().is_none());
    assert!(query(&h, "tenant", "acme").await.is_empty());
    assert!(query(&h, "cart", "book").await.is_empty());
    assert!(store.devices("alice").await.unwrap().is_empty());
    assert_eq!(store.devices("bob").await.unwrap().len(), 1);

    // The request flow (what the gateway's x-session-login runs) too.
    let mut more = Changes::new();
    more.set("role", "billing").unwrap();
    store.apply(&bob, &more).await.unwrap();
    let header = cookie_header(&store.cookies().set_cookie(&bob, 60));
    let mut request = store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(request.user(), Some("bob"));
    request.login("carol");
    let commit = store.commit(request).await.unwrap();
    let carol_header = cookie_header(commit.set_cookie.as_deref().unwrap());
    let carol = store
        .begin(Some(&carol_header), ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(carol.user(), Some("carol"));
    assert!(carol.session().unwrap().data().0.is_empty());
    assert!(store.load(&bob).await.unwrap().is_none());
}

/// `SESSION_LOGIN_CARRY`: a list keeps only its fields (and only their index
/// entries); `none` starts every login empty.
async fn login_carry_picks_the_fields_that_survive(kind: Kind) {
    let mut config = indexed(test_config());
    config.login_carry = LoginCarry::parse("cart, theme").unwrap();
    let h = Harness::with_config(kind, config.clone()).await;
    let store = &h.store;
    let visitor = serde_json::json!({ "cart": ["tea"], "tenant": "acme", "role": "x" });
    let anon = store
        .create(None, &changes(visitor.clone()), &ClientInfo::default())
        .await
        .unwrap()
        .0;
    let ann = login(store, Some(&anon), "ann", serde_json::json!({ "n": 1 })).await;
    assert_eq!(
        fields_of(store, &ann).await,
        serde_json::json!({ "cart": ["tea"], "n": 1 })
    );
    assert_eq!(query(&h, "cart", "tea").await, handles(&[&ann]));
    assert!(
        query(&h, "tenant", "acme").await.is_empty(),
        "no index entry for a field that was not carried"
    );
    // The same rule for a re-login of the same user.
    let mut more = Changes::new();
    more.set("tenant", "acme")
        .unwrap()
        .set("theme", "dark")
        .unwrap();
    store.apply(&ann, &more).await.unwrap();
    let ann = login(store, Some(&ann), "ann", serde_json::json!({})).await;
    assert_eq!(
        fields_of(store, &ann).await,
        serde_json::json!({ "cart": ["tea"], "theme": "dark" }),
        "n (written by the first login) and tenant are not in the list"
    );
    assert!(query(&h, "tenant", "acme").await.is_empty());
    // Another user still gets nothing, listed fields included.
    let bea = login(store, Some(&ann), "bea", serde_json::json!({})).await;
    assert_eq!(fields_of(store, &bea).await, serde_json::json!({}));
    assert!(query(&h, "cart", "tea").await.is_empty());

    // `none`: nothing survives, not even from an anonymous session.
    config.login_carry = LoginCarry::None;
    let none = h.other_store(config, crate::support::SECRETS).await;
    let anon = none
        .create(None, &changes(visitor), &ClientInfo::default())
        .await
        .unwrap()
        .0;
    let cat = login(&none, Some(&anon), "cat", serde_json::json!({ "k": true })).await;
    assert_eq!(
        fields_of(&none, &cat).await,
        serde_json::json!({ "k": true })
    );
    assert!(none.load(&anon).await.unwrap().is_none());
    assert!(query(&h, "tenant", "acme").await.is_empty());
    assert!(h.data_keys().iter().all(|k| h.pttl(k) > 0));
}

/// Item 6: with `SESSION_MAX_SESSIONS_PER_USER=3`, the 4th login ends the
/// user's session that expires soonest (the first of the device set), in the
/// login's own script; the device list keeps 3.
async fn sessions_per_user_are_capped_at_login(kind: Kind) {
    let mut config = indexed(test_config());
    config.max_sessions_per_user = 3;
    let h = Harness::with_config(kind, config).await;
    let (store, events) = recording(&h);
    let mut tokens = Vec::new();
    for agent in ["laptop", "phone", "tablet"] {
        let (token, _) = store
            .login(
                None,
                "dana",
                &changes(serde_json::json!({ "tenant": "acme" })),
                &ClientInfo::with_user_agent(Some(agent)),
            )
            .await
            .unwrap();
        tokens.push(token);
        // Distinct expiries, so the device set's order is the logins' order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other = login(&store, None, "eli", serde_json::json!({})).await;
    assert_eq!(store.devices("dana").await.unwrap().len(), 3);
    events.lock().unwrap().clear();

    // The 4th login (from an anonymous session: the login script) ends the
    // oldest.
    let anon = store
        .create(
            None,
            &changes(serde_json::json!({ "cart": ["x"] })),
            &ClientInfo::default(),
        )
        .await
        .unwrap()
        .0;
    events.lock().unwrap().clear();
    let fourth = login(&store, Some(&anon), "dana", serde_json::json!({})).await;
    let devices = store.devices("dana").await.unwrap();
    assert_eq!(devices.len(), 3);
    let listed: BTreeSet<String> = devices
        .iter()
        .map(|d| d.handle.as_str().to_owned())
        .collect();
    assert_eq!(listed, handles(&[&tokens[1], &tokens[2], &fourth]));
    assert!(store.load(&tokens[0]).await.unwrap().is_none());
    assert_eq!(
        query(&h, "tenant", "acme").await,
        handles(&[&tokens[1], &tokens[2]]),
        "the ended session's index entries are gone"
    );
    let destroyed: Vec<SessionEvent> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind() == "destroyed")
        .cloned()
        .collect();
    assert_eq!(
        destroyed,
        [SessionEvent::Destroyed {
            handle: tokens[0].handle(),
            user: Some("dana".to_owned()),
        }]
    );

    // A 5th login without a session (the create script) ends the next one.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let fifth = login(&store, None, "dana", serde_json::json!({})).await;
    let listed: BTreeSet<String> = store
        .devices("dana")
        .await
        .unwrap()
        .iter()
        .map(|d| d.handle.as_str().to_owned())
        .collect();
    assert_eq!(listed, handles(&[&tokens[2], &fourth, &fifth]));
    assert!(store.load(&tokens[1]).await.unwrap().is_none());
    // A re-login of a live session replaces it: still 3, nothing else ends.
    let again = login(&store, Some(&fifth), "dana", serde_json::json!({})).await;
    let listed: BTreeSet<String> = store
        .devices("dana")
        .await
        .unwrap()
        .iter()
        .map(|d| d.handle.as_str().to_owned())
        .collect();
    assert_eq!(listed, handles(&[&tokens[2], &fourth, &again]));
    // Other users are not counted.
    assert!(store.load(&other).await.unwrap().is_some());
    assert_eq!(
        h.store.active_sessions().await.unwrap(),
        4,
        "dana's 3 and eli's 1"
    );
    assert!(h.data_keys().iter().all(|k| h.pttl(k) > 0));
}

/// Sessions of one user, created through the store with no cap, `n` of them,
/// `parallel` at a time; each holds a tenant and a cart, like a real one.
async fn many_sessions(store: &Store, user: &str, n: usize, parallel: usize) -> Vec<SessionToken> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let fields = serde_json::json!({
                "tenant": "acme",
                "cart": [format!("p{}", i % 7)],
                "visits": i,
            });
            store
                .create(Some(user), &changes(fields), &ClientInfo::default())
                .await
                .unwrap()
                .0
        })
        .buffer_unordered(parallel)
        .collect()
        .await
}

fn uncapped(config: SessionConfig) -> SessionConfig {
    let mut config = config;
    config.max_sessions_per_user = 0;
    config
}

/// logout-all and revoke-others end every session however many there are
/// (1,201: several calls of at most `REVOKE_BATCH`), with exact counts and
/// hooks.
async fn revoke_others_and_logout_all_work_in_batches(kind: Kind) {
    let h = Harness::with_config(kind, indexed(uncapped(test_config()))).await;
    let (store, events) = recording(&h);
    store.preload_scripts().await.unwrap();
    let tokens = many_sessions(&store, "fay", 1_201, 32).await;
    let other = login(&store, None, "gus", serde_json::json!({ "tenant": "acme" })).await;
    events.lock().unwrap().clear();
    let before = h.trips();
    let keep = &tokens[600];
    assert_eq!(
        store.revoke_others("fay", &keep.handle()).await.unwrap(),
        1_200
    );
    // Calls of at most REVOKE_BATCH (each followed by its global updates on
    // a cluster).
    let per_call = if h.store.config().cluster { 2 } else { 1 };
    assert_eq!(
        h.trips() - before,
        1_200usize.div_ceil(REVOKE_BATCH) * per_call
    );
    assert!(store.load(keep).await.unwrap().is_some());
    assert!(store.load(&tokens[0]).await.unwrap().is_none());
    assert_eq!(store.devices("fay").await.unwrap().len(), 1);
    assert_eq!(
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind() == "destroyed")
            .count(),
        1_200
    );
    assert_eq!(
        query(&h, "tenant", "acme").await,
        handles(&[keep, &other]),
        "index entries of the revoked sessions are gone"
    );

    let more = many_sessions(&store, "fay", 1_000, 32).await;
    events.lock().unwrap().clear();
    assert_eq!(store.logout_all("fay").await.unwrap(), 1_001);
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events.iter().filter(|e| e.kind() == "destroyed").count(),
        1_001
    );
    assert_eq!(
        events.last(),
        Some(&SessionEvent::LoggedOutEverywhere {
            user: "fay".to_owned(),
            sessions: 1_001,
        }),
        "one logged-out-everywhere event, with the total"
    );
    assert!(store.load(&more[999]).await.unwrap().is_none());
    assert!(store.load(&other).await.unwrap().is_some());
    let tag = UserTag::of("fay");
    assert!(
        !h.all_keys().iter().any(|k| k.contains(tag.as_str())),
        "no key of fay left"
    );
    assert_eq!(store.logout_all("fay").await.unwrap(), 0);
    assert_eq!(h.store.active_sessions().await.unwrap(), 1);
}

/// Item 9: user ids that differ only by leading or trailing whitespace look
/// the same to the origin (HTTP strips it from `x-session-user`): refused at
/// sign-in, before any Redis call, naming the rule.
async fn user_ids_with_edge_whitespace_are_refused(kind: Kind) {
    let h = Harness::start(kind).await;
    let alice = h.sign_in(None, "alice").await;
    let before = h.trips();
    for bad in [
        " alice",
        "alice ",
        "\talice",
        "alice\n",
        "\u{a0}alice",
        "alice\u{3000}",
        " ",
        "",
        "al\u{7}ice",
    ] {
        let refused = h
            .store
            .login(Some(&alice), bad, &Changes::new(), &ClientInfo::default())
            .await;
        match refused {
            Err(Error::InvalidField { name, reason }) => {
                assert_eq!(name, "user id", "{bad:?}");
                let message = Error::InvalidField { name, reason }.to_string();
                let rule = if bad.is_empty() || bad.contains(char::is_control) {
                    "must be non-empty text without control characters"
                } else {
                    "must not start or end with whitespace"
                };
                assert!(message.contains(rule), "{bad:?}: {message}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
        let created = h
            .store
            .create(Some(bad), &Changes::new(), &ClientInfo::default())
            .await;
        assert!(
            matches!(created, Err(Error::InvalidField { .. })),
            "{bad:?}"
        );
    }
    assert_eq!(h.trips(), before, "refused before any Redis call");
    assert!(h.store.load(&alice).await.unwrap().is_some());

    // Whitespace inside an id is fine.
    let jane = h.sign_in(None, "Jane Doe").await;
    assert_eq!(
        h.store.load(&jane).await.unwrap().unwrap().user(),
        Some("Jane Doe")
    );

    // The request flow refuses it before anything runs: a logout asked in the
    // same commit does not happen either.
    let header = cookie_header(&h.store.cookies().set_cookie(&alice, 60));
    let mut request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    request.logout(Logout::Current);
    request.login("alice ");
    assert!(matches!(
        h.store.commit(request).await,
        Err(Error::InvalidField { .. })
    ));
    assert!(h.store.load(&alice).await.unwrap().is_some());

    // Lookups still accept such an id, so sessions signed in before the rule
    // can be listed and ended.
    assert!(h.store.devices(" alice").await.unwrap().is_empty());
    assert_eq!(h.store.logout_all(" alice").await.unwrap(), 0);
}

/// One `SLOWLOG` entry: (duration in microseconds, command name).
fn slowlog(h: &Harness) -> Vec<(u64, String)> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query(&mut h.redis.inspect())
        .unwrap();
    entries
        .into_iter()
        .filter_map(|entry| {
            let redis::Value::Array(items) = entry else {
                return None;
            };
            let micros = match items.get(2)? {
                redis::Value::Int(n) => u64::try_from(*n).ok()?,
                _ => return None,
            };
            let name = match items.get(3)? {
                redis::Value::Array(args) => match args.first()? {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).to_lowercase(),
                    _ => return None,
                },
                _ => return None,
            };
            Some((micros, name))
        })
        .collect()
}

/// Calls of EVALSHA and EVAL since the last `CONFIG RESETSTAT`, and their
/// total time in microseconds (`INFO commandstats`).
fn script_stats(h: &Harness) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut h.redis.inspect())
        .unwrap();
    let (mut calls, mut micros) = (0, 0);
    for line in info.lines() {
        let Some(stats) = line
            .strip_prefix("cmdstat_evalsha:")
            .or_else(|| line.strip_prefix("cmdstat_eval:"))
        else {
            continue;
        };
        for (key, value) in stats.split(',').filter_map(|kv| kv.split_once('=')) {
            match key {
                "calls" => calls += value.parse::<u64>().unwrap(),
                "usec" => micros += value.parse::<u64>().unwrap(),
                _ => {}
            }
        }
    }
    (calls, micros)
}

fn config_set(h: &Harness, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(&mut h.redis.inspect())
        .unwrap();
}

/// Item 6: a user with 100,000 sessions (real ones, indexed, made by the
/// store's own create script) is logged out everywhere in script calls that
/// each hold Redis under 50 ms (calls of 1 ms or more read from `SLOWLOG`);
/// the count and the hooks are exact; no key of the user is left, and every
/// key left has a TTL. Before the fix, one call ended all 100,000 at once:
/// it held Redis for 7.8 s, the client gave up after its 3 s timeout, and
/// the retries answered 0.
async fn logout_all_of_many_sessions_stays_in_short_script_calls(kind: Kind) {
    // 100,000 on the direct backend; over REST (the same batching, each
    // call an HTTP request) 20,000 keep the test's time down.
    let sessions: usize = if kind == Kind::Direct {
        100_000
    } else {
        20_000
    };
    let config = indexed(uncapped(test_config()));
    let h = Harness::with_config(kind, config.clone()).await;
    // Made over the direct backend whatever `kind` is (fast); the logout runs
    // over the backend under test.
    let (_, direct) = Harness::backend_for(Kind::Direct, &h.redis).await;
    let maker: Store = SessionStore::new(
        counting(direct),
        config,
        edge_session::KeyRing::parse(crate::support::SECRETS).unwrap(),
    )
    .unwrap();
    maker.preload_scripts().await.unwrap();
    h.store.preload_scripts().await.unwrap();
    let started = Instant::now();
    let tokens = many_sessions(&maker, "whale", sessions, 128).await;
    let made = started.elapsed();
    let tag = UserTag::of("whale");
    let devices: u64 = redis::cmd("ZCARD")
        .arg(h.store.layout().devices(&tag))
        .query(&mut h.redis.inspect())
        .unwrap();
    assert_eq!(devices, sessions as u64);
    let bystander = login(
        &h.store,
        None,
        "minnow",
        serde_json::json!({ "tenant": "acme" }),
    )
    .await;

    // Script calls of 1 ms or more go to SLOWLOG (the commands a script
    // runs are logged too in Redis 7, each well under that); INFO counts
    // every call and its time.
    config_set(&h, "slowlog-max-len", "100000");
    config_set(&h, "slowlog-log-slower-than", "1000");
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query(&mut h.redis.inspect())
        .unwrap();
    h.redis.reset_stats();
    let (store, events) = recording(&h);
    let before = h.trips();
    let started = Instant::now();
    let ended = store.logout_all("whale").await.unwrap();
    let took = started.elapsed();
    let trips = h.trips() - before;
    let (calls, micros) = script_stats(&h);
    let longest = slowlog(&h)
        .into_iter()
        .filter(|(_, name)| name == "evalsha" || name == "eval")
        .map(|(micros, _)| micros)
        .max()
        .unwrap_or_default();
    config_set(&h, "slowlog-log-slower-than", "10000");
    eprintln!(
        "{kind:?}: {sessions} sessions made in {made:?}; logout-all: {ended} ended in {took:?}, \
         {trips} round trips, {calls} script calls, longest {longest} us (0: all under 1 ms), \
         Redis time in scripts {} ms",
        micros / 1000
    );
    assert_eq!(ended, sessions as u64);
    assert!(calls >= (sessions / REVOKE_BATCH) as u64, "{calls} calls");
    assert!(
        longest < 50_000,
        "a script call held Redis for {longest} us"
    );

    let events = events.lock().unwrap().clone();
    assert_eq!(
        events.iter().filter(|e| e.kind() == "destroyed").count(),
        sessions
    );
    assert_eq!(
        events.last(),
        Some(&SessionEvent::LoggedOutEverywhere {
            user: "whale".to_owned(),
            sessions: sessions as u64,
        })
    );
    assert!(h.store.load(&tokens[sessions / 2]).await.unwrap().is_none());
    assert!(h.store.load(&bystander).await.unwrap().is_some());
    let keys = h.all_keys();
    assert!(
        !keys.iter().any(|k| k.contains(tag.as_str())),
        "a key of the user is left"
    );
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("PTTL").arg(key);
    }
    let ttls: Vec<i64> = pipe.query(&mut h.redis.inspect()).unwrap();
    let without: Vec<_> = keys.iter().zip(&ttls).filter(|(_, t)| **t < 0).collect();
    assert!(without.is_empty(), "keys without TTL: {without:?}");
    assert_eq!(h.store.active_sessions().await.unwrap(), 1);
    assert_eq!(query(&h, "tenant", "acme").await, handles(&[&bystander]));
}
