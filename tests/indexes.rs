//! Secondary indexes, cross-session queries, analytics, hooks, re-indexing
//! and the audit, against both backends and a real redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_session::{
    Changes, ClientInfo, IndexSpec, Page, SessionConfig, SessionEvent, SessionToken,
};
use futures::StreamExt;

use crate::support::{Harness, Kind, cookie_header, test_config};

both_backends!(
    a_due_slide_runs_after_the_response,
    index_follows_set_delete_regenerate_logout_and_expiry,
    queries_never_return_dead_or_changed_sessions,
    query_pages_with_a_cursor,
    counts_after_churn_match_a_brute_force_count,
    analytics_match_a_brute_force_count,
    lifecycle_hooks_see_every_event,
    reindex_indexes_sessions_written_before_the_declaration,
    audit_finds_and_fixes_a_broken_dataset,
    indexes_on_cluster_mode,
    indexed_write_costs_one_round_trip,
    index_scores_stay_exact_between_slides,
    unindexed_field_is_refused,
);

fn indexed_config() -> SessionConfig {
    let mut config = test_config();
    config.indexes = IndexSpec::parse_list("tenant,cart[]").unwrap();
    config
}

async fn session_with(h: &Harness, user: Option<&str>, fields: serde_json::Value) -> SessionToken {
    let mut changes = Changes::new();
    for (name, value) in fields.as_object().unwrap() {
        changes.set_json(name, value).unwrap();
    }
    h.store
        .create(user, &changes, &ClientInfo::default())
        .await
        .unwrap()
        .0
}

async fn set(h: &Harness, token: &SessionToken, fields: serde_json::Value) {
    let mut changes = Changes::new();
    for (name, value) in fields.as_object().unwrap() {
        if value.is_null() {
            changes.delete(name).unwrap();
        } else {
            changes.set_json(name, value).unwrap();
        }
    }
    h.store.apply(token, &changes).await.unwrap();
}

fn handles(page: &Page) -> BTreeSet<String> {
    page.sessions
        .iter()
        .map(|s| s.handle.as_str().to_owned())
        .collect()
}

fn of(tokens: &[&SessionToken]) -> BTreeSet<String> {
    tokens
        .iter()
        .map(|t| t.handle().as_str().to_owned())
        .collect()
}

async fn query(h: &Harness, field: &str, value: &str) -> BTreeSet<String> {
    handles(&h.store.query(field, value, 0, 1000).await.unwrap())
}

async fn counts(h: &Harness, field: &str) -> BTreeMap<String, u64> {
    h.store
        .counts(field, 1000)
        .await
        .unwrap()
        .top
        .into_iter()
        .map(|c| (c.value, c.sessions))
        .collect()
}

fn zmembers(h: &Harness, key: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(&mut h.inspect())
        .unwrap()
}

fn assert_every_key_has_a_ttl(h: &Harness) {
    let without: Vec<_> = h.all_keys().into_iter().filter(|k| h.pttl(k) < 0).collect();
    assert!(without.is_empty(), "keys without TTL: {without:?}");
}

fn count_map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(v, n)| ((*v).to_owned(), *n)).collect()
}

async fn index_follows_set_delete_regenerate_logout_and_expiry(kind: Kind) {
    let mut config = indexed_config();
    config.idle_ttl = Duration::from_secs(2);
    let h = Harness::with_config(kind, config).await;
    let s1 = session_with(
        &h,
        None,
        serde_json::json!({"tenant": "acme", "cart": ["p1", "p2"]}),
    )
    .await;
    let s2 = session_with(&h, None, serde_json::json!({"tenant": "acme"})).await;
    let s3 = session_with(
        &h,
        None,
        serde_json::json!({"tenant": "globex", "cart": ["p2", 7]}),
    )
    .await;

    assert_eq!(query(&h, "tenant", "acme").await, of(&[&s1, &s2]));
    assert_eq!(query(&h, "cart", "p2").await, of(&[&s1, &s3]));
    assert_eq!(
        query(&h, "cart", "7").await,
        of(&[&s3]),
        "numbers by JSON text"
    );
    assert_eq!(
        counts(&h, "tenant").await,
        count_map(&[("acme", 2), ("globex", 1)])
    );

    // A set moves the entry in the same atomic write (no stale entry left).
    set(&h, &s1, serde_json::json!({"tenant": "globex"})).await;
    assert_eq!(query(&h, "tenant", "acme").await, of(&[&s2]));
    assert_eq!(query(&h, "tenant", "globex").await, of(&[&s1, &s3]));
    assert_eq!(zmembers(&h, "es:{g}:ix:tenant:acme").len(), 1);
    assert_eq!(
        counts(&h, "tenant").await,
        count_map(&[("acme", 1), ("globex", 2)])
    );

    // A delete removes it.
    set(&h, &s3, serde_json::json!({"cart": null})).await;
    assert_eq!(query(&h, "cart", "p2").await, of(&[&s1]));
    assert!(query(&h, "cart", "7").await.is_empty());

    // Regeneration moves the entries to the new session.
    let alice = h.sign_in(Some(&s2), "alice").await;
    assert_eq!(query(&h, "tenant", "acme").await, of(&[&alice]));
    let summary = h.store.query("tenant", "acme", 0, 10).await.unwrap();
    assert_eq!(summary.sessions[0].user.as_deref(), Some("alice"));

    // Logout removes them.
    h.store.destroy(&s1).await.unwrap();
    assert_eq!(query(&h, "tenant", "globex").await, of(&[&s3]));
    assert_eq!(query(&h, "cart", "p1").await, BTreeSet::new());
    // Logout-all too.
    h.store.logout_all("alice").await.unwrap();
    assert!(query(&h, "tenant", "acme").await.is_empty());
    assert_eq!(counts(&h, "tenant").await, count_map(&[("globex", 1)]));
    assert_every_key_has_a_ttl(&h);

    // Expiry: entries are scored by the session's expiry and slide with it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.store.load(&s3).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        query(&h, "tenant", "globex").await,
        of(&[&s3]),
        "the slide kept it"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(query(&h, "tenant", "globex").await.is_empty());
    assert!(counts(&h, "tenant").await.is_empty());
    assert!(
        h.data_keys().is_empty(),
        "every index expired with its sessions: {:?}",
        h.data_keys()
    );
}

async fn queries_never_return_dead_or_changed_sessions(kind: Kind) {
    let h = Harness::with_config(kind, indexed_config()).await;
    let live = session_with(&h, None, serde_json::json!({"tenant": "acme"})).await;
    let changed = session_with(&h, None, serde_json::json!({"tenant": "acme"})).await;
    let mut c = h.inspect();
    // Out-of-band damage: an entry for a session that never existed, and a
    // session whose field changed behind edge-session's back.
    let far = 4_000_000_000_000_u64;
    let ghost = format!("{{{}}}", "ab".repeat(32));
    let _: () = redis::cmd("ZADD")
        .arg("es:{g}:ix:tenant:acme")
        .arg(far)
        .arg(&ghost)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(h.store.layout().session(&changed))
        .arg("tenant")
        .arg("\"other\"")
        .query(&mut c)
        .unwrap();
    let page = h.store.query("tenant", "acme", 0, 100).await.unwrap();
    assert_eq!(handles(&page), of(&[&live]));
    assert_eq!(
        page.total, 3,
        "the total counted the stale entries it then dropped"
    );
    assert_eq!(
        zmembers(&h, "es:{g}:ix:tenant:acme"),
        vec![
            h.store
                .layout()
                .session_id(&h.store.layout().session(&live))
                .unwrap()
                .to_owned()
        ],
        "stale entries are pruned by the query"
    );
    // Expired by the absolute lifetime: never returned.
    let _: () = redis::cmd("HSET")
        .arg(h.store.layout().session(&live))
        .arg("_abs")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert!(query(&h, "tenant", "acme").await.is_empty());
}

async fn query_pages_with_a_cursor(kind: Kind) {
    let h = Harness::with_config(kind, indexed_config()).await;
    let mut all = BTreeSet::new();
    for i in 0..25 {
        let t = session_with(&h, None, serde_json::json!({"tenant": "acme", "n": i})).await;
        all.insert(t.handle().as_str().to_owned());
    }
    let mut seen = BTreeSet::new();
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let page = h.store.query("tenant", "acme", cursor, 10).await.unwrap();
        assert_eq!(page.total, 25);
        pages += 1;
        for s in &page.sessions {
            assert!(seen.insert(s.handle.as_str().to_owned()), "no duplicates");
        }
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, all);
}

/// Live sessions per tenant, counted the slow way: every session hash.
fn brute_force_counts(h: &Harness, field: &str) -> BTreeMap<String, u64> {
    let mut c = h.inspect();
    let mut out = BTreeMap::new();
    for key in h.all_keys().iter().filter(|k| k.starts_with("es:s:")) {
        let value: Option<String> = redis::cmd("HGET")
            .arg(key)
            .arg(field)
            .query(&mut c)
            .unwrap();
        if let Some(value) = value {
            let text: String = serde_json::from_str(&value).unwrap();
            *out.entry(text).or_insert(0) += 1;
        }
    }
    out
}

async fn counts_after_churn_match_a_brute_force_count(kind: Kind) {
    let h = Harness::with_config(kind, indexed_config()).await;
    let tokens: Vec<SessionToken> = futures::stream::iter(0..10_000)
        .map(|i| {
            let h = &h;
            async move {
                let tenant = format!("t{}", i % 10);
                session_with(
                    h,
                    None,
                    serde_json::json!({"tenant": tenant, "cart": [format!("p{}", i % 7)]}),
                )
                .await
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    // Churn: destroy 2,000, move 2,000 to another tenant, log 1,000 in.
    futures::stream::iter(tokens.iter().enumerate())
        .for_each_concurrent(64, |(i, t)| {
            let h = &h;
            async move {
                match i % 10 {
                    0 | 1 => {
                        h.store.destroy(t).await.unwrap();
                    }
                    2 | 3 => set(h, t, serde_json::json!({"tenant": "moved"})).await,
                    4 => {
                        h.sign_in(Some(t), &format!("u{i}")).await;
                    }
                    _ => {}
                }
            }
        })
        .await;
    let expected = brute_force_counts(&h, "tenant");
    assert_eq!(expected.values().sum::<u64>(), 8_000);
    assert_eq!(counts(&h, "tenant").await, expected);
    let c = h.store.counts("tenant", 3).await.unwrap();
    assert_eq!(c.distinct, expected.len() as u64);
    assert_eq!(c.top[0].value, "moved");
    assert_eq!(c.top[0].sessions, 2_000);

    // Query latency over 10,000 sessions (reported, not asserted: speed
    // targets live in bench/).
    let started = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        let page = h.store.query("tenant", "t5", 0, 100).await.unwrap();
        assert_eq!(page.sessions.len(), 100);
    }
    let per_query = started.elapsed() / rounds;
    let started = Instant::now();
    for _ in 0..rounds {
        h.store.counts("tenant", 10).await.unwrap();
    }
    let per_count = started.elapsed() / rounds;
    eprintln!(
        "[{kind:?}] over 10,000 sessions (8,000 live): query page of 100 {per_query:?}, counts {per_count:?}"
    );
    assert_every_key_has_a_ttl(&h);
}

async fn analytics_match_a_brute_force_count(kind: Kind) {
    let h = Harness::with_config(kind, indexed_config()).await;
    let mut anonymous = Vec::new();
    for i in 0..30 {
        let tenant = if i % 3 == 0 { "acme" } else { "globex" };
        anonymous.push(session_with(&h, None, serde_json::json!({"tenant": tenant})).await);
    }
    // 12 logins by 5 distinct users, 6 of them from an anonymous session.
    let users = ["ann", "bob", "cy", "dee", "eve"];
    for i in 0..12 {
        let from = (i < 6).then(|| &anonymous[i]);
        h.sign_in(from, users[i % 5]).await;
    }
    h.store.destroy(&anonymous[29]).await.unwrap();
    let stats = h.store.stats().await.unwrap();
    let live = h
        .all_keys()
        .iter()
        .filter(|k| k.starts_with("es:s:"))
        .count() as u64;
    assert_eq!(live, 30 - 6 + 12 - 1);
    assert_eq!(stats.active_sessions, live);
    assert_eq!(stats.active_last_10_minutes, live);
    assert_eq!(h.store.active_sessions().await.unwrap(), live);
    let today = &stats.days[0];
    assert_eq!(stats.days.len(), 30);
    assert_eq!(
        today.created,
        30 + 12,
        "30 first writes + 12 logins (a login starts a new session)"
    );
    assert_eq!(today.logins, 12);
    assert_eq!(today.distinct_users, 5);
    let tenants = stats.fields.iter().find(|f| f.field == "tenant").unwrap();
    let expected = brute_force_counts(&h, "tenant");
    let got: BTreeMap<String, u64> = tenants
        .top
        .iter()
        .map(|c| (c.value.clone(), c.sessions))
        .collect();
    assert_eq!(got, expected);
    assert!(
        stats.fields.iter().all(|f| f.field != "cart"),
        "array indexes are not in the summary"
    );
    let recent = h
        .store
        .active_since(Duration::from_secs(600), 0, 1000)
        .await
        .unwrap();
    assert_eq!(recent.sessions.len() as u64, live);
    assert!(stats.now.as_millis() > 0);
}

async fn lifecycle_hooks_see_every_event(kind: Kind) {
    let h = Harness::with_config(kind, indexed_config()).await;
    let events: Arc<Mutex<Vec<SessionEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let store = h
        .store
        .clone()
        .with_hooks(Arc::new(move |e: &SessionEvent| {
            sink.lock().unwrap().push(e.clone())
        }));
    let mut changes = Changes::new();
    changes.set("tenant", "acme").unwrap();
    let (anon, _) = store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    let (alice, _) = store
        .login(
            Some(&anon),
            "alice",
            &Changes::new(),
            &ClientInfo::default(),
        )
        .await
        .unwrap();
    let (other, _) = store
        .login(None, "alice", &Changes::new(), &ClientInfo::default())
        .await
        .unwrap();
    store.destroy(&other).await.unwrap();
    store.destroy(&other).await.unwrap(); // already gone: no event
    store.logout_all("alice").await.unwrap();
    let events = events.lock().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(SessionEvent::kind).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "regenerated",
            "created",
            "destroyed",
            "destroyed",
            "logged_out_everywhere"
        ]
    );
    assert_eq!(
        events[1],
        SessionEvent::Regenerated {
            old: anon.handle(),
            new: alice.handle(),
            user: "alice".to_owned()
        }
    );
    assert_eq!(
        events[5],
        SessionEvent::LoggedOutEverywhere {
            user: "alice".to_owned(),
            sessions: 1
        }
    );
    // The original store has no hooks: its events go nowhere.
    h.store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
}

async fn reindex_indexes_sessions_written_before_the_declaration(kind: Kind) {
    let h = Harness::with_config(kind, test_config()).await;
    let mut expected = BTreeSet::new();
    for i in 0..1200 {
        let t = session_with(
            &h,
            None,
            serde_json::json!({"tenant": format!("t{}", i % 2), "cart": ["x"]}),
        )
        .await;
        if i % 2 == 0 {
            expected.insert(t.handle().as_str().to_owned());
        }
    }
    let indexed = h
        .other_store(indexed_config(), crate::support::SECRETS)
        .await;
    assert!(
        indexed
            .query("tenant", "t0", 0, 1000)
            .await
            .unwrap()
            .sessions
            .is_empty()
    );
    let mut progress = Vec::new();
    let report = indexed.reindex(|n| progress.push(n)).await.unwrap();
    assert_eq!(report.sessions_indexed, 1200);
    assert!(report.scanned_keys >= 1200);
    assert!(!progress.is_empty() && progress.windows(2).all(|w| w[0] < w[1]));
    let mut found = BTreeSet::new();
    let mut cursor = 0;
    loop {
        let page = indexed.query("tenant", "t0", cursor, 500).await.unwrap();
        found.extend(handles(&page));
        match page.next_cursor {
            Some(c) => cursor = c,
            None => break,
        }
    }
    assert_eq!(found, expected);
    assert_eq!(
        indexed.counts("cart", 5).await.unwrap().top[0].sessions,
        1200
    );
    // Running it again changes nothing.
    indexed.reindex(|_| {}).await.unwrap();
    assert_eq!(indexed.counts("tenant", 5).await.unwrap().distinct, 2);
    assert_every_key_has_a_ttl(&h);
}

async fn audit_finds_and_fixes_a_broken_dataset(kind: Kind) {
    let h = Harness::with_config(kind, indexed_config()).await;
    let a = session_with(&h, Some("ann"), serde_json::json!({"tenant": "acme"})).await;
    let b = session_with(&h, None, serde_json::json!({"tenant": "acme"})).await;
    let clean = h.store.audit(false, |_| {}).await.unwrap();
    assert!(clean.is_clean(), "{clean:?}");

    let layout = h.store.layout().clone();
    let mut c = h.inspect();
    let ghost = format!("{{{}}}", "cd".repeat(32));
    let mut cmd = |args: &[&str]| {
        let mut command = redis::cmd(args[0]);
        for a in &args[1..] {
            command.arg(*a);
        }
        let _: redis::Value = command.query(&mut c).unwrap();
    };
    let key_a = layout.session(&a);
    cmd(&["PERSIST", &key_a]); // a session without TTL
    cmd(&["ZADD", "es:{g}:ix:tenant:acme", "4000000000000", &ghost]); // orphan
    cmd(&["ZADD", "es:{g}:active", "4000000000000", &ghost]); // orphan
    cmd(&["PERSIST", "es:{g}:ix:tenant:acme"]); // an index without TTL
    cmd(&["HSET", "es:s:{deadbeef}", "tenant", "\"x\""]); // not a session: no _abs, no TTL
    cmd(&["SET", "es:something-else", "1"]); // not ours
    let huge = "x".repeat(20_000);
    cmd(&["HSET", &layout.session(&b), "blob", &format!("\"{huge}\"")]); // oversized

    let report = h.store.audit(false, |_| {}).await.unwrap();
    assert!(!report.is_clean());
    let no_ttl: BTreeSet<&str> = report.keys_without_ttl.iter().map(String::as_str).collect();
    assert_eq!(
        no_ttl,
        BTreeSet::from([key_a.as_str(), "es:{g}:ix:tenant:acme", "es:s:{deadbeef}"])
    );
    let orphans: BTreeSet<(&str, &str)> = report
        .orphaned_entries
        .iter()
        .map(|o| (o.index.as_str(), o.member.as_str()))
        .collect();
    assert_eq!(
        orphans,
        BTreeSet::from([
            ("es:{g}:ix:tenant:acme", ghost.as_str()),
            ("es:{g}:active", ghost.as_str())
        ])
    );
    assert_eq!(report.oversized_sessions.len(), 1);
    assert_eq!(report.oversized_sessions[0].key, layout.session(&b));
    assert_eq!(report.unknown_keys, ["es:something-else"]);
    assert_eq!(report.fixed, 0);

    let fixed = h.store.audit(true, |_| {}).await.unwrap();
    assert_eq!(
        fixed.fixed, 5,
        "three TTLs (one by deleting the non-session), two orphans"
    );
    let after = h.store.audit(false, |_| {}).await.unwrap();
    assert!(after.keys_without_ttl.is_empty() && after.orphaned_entries.is_empty());
    assert_eq!(
        after.oversized_sessions.len(),
        1,
        "oversized data is reported, never trimmed"
    );
    assert!(h.pttl(&key_a) > 0);
    assert!(
        h.store.load(&a).await.unwrap().is_some(),
        "the repaired session still works"
    );
    assert_eq!(query(&h, "tenant", "acme").await, of(&[&a, &b]));
}

async fn indexes_on_cluster_mode(kind: Kind) {
    let mut config = indexed_config();
    config.cluster = true;
    let h = Harness::with_config(kind, config).await;
    let anon = session_with(
        &h,
        None,
        serde_json::json!({"tenant": "acme", "cart": ["p1"]}),
    )
    .await;
    let other = session_with(&h, None, serde_json::json!({"tenant": "acme"})).await;
    set(&h, &other, serde_json::json!({"tenant": "globex"})).await;
    let bob = h.sign_in(Some(&anon), "bob").await;
    assert_eq!(query(&h, "tenant", "acme").await, of(&[&bob]));
    assert_eq!(query(&h, "cart", "p1").await, of(&[&bob]));
    assert_eq!(
        counts(&h, "tenant").await,
        count_map(&[("acme", 1), ("globex", 1)])
    );
    let stats = h.store.stats().await.unwrap();
    assert_eq!(stats.active_sessions, 2);
    assert_eq!(stats.days[0].logins, 1);
    assert_eq!(stats.days[0].distinct_users, 1);
    h.store.logout_all("bob").await.unwrap();
    h.store.destroy(&other).await.unwrap();
    assert!(counts(&h, "tenant").await.is_empty());
    assert_eq!(h.store.active_sessions().await.unwrap(), 0);
    assert!(h.data_keys().is_empty(), "{:?}", h.data_keys());
}

async fn indexed_write_costs_one_round_trip(kind: Kind) {
    let h = Harness::with_config(kind, indexed_config()).await;
    h.store.preload_scripts().await.unwrap();
    let token = session_with(
        &h,
        None,
        serde_json::json!({"tenant": "acme", "cart": ["p1"]}),
    )
    .await;
    h.redis.reset_stats();
    let before = h.trips();
    set(
        &h,
        &token,
        serde_json::json!({"tenant": "globex", "cart": ["p1", "p2"]}),
    )
    .await;
    assert_eq!(
        h.trips() - before,
        1,
        "the write and its index upkeep are one round trip"
    );
    let commands = h.redis.command_counts();
    let total: u64 = commands
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "info" | "config|resetstat"))
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "[{kind:?}] write changing 2 indexed fields: 1 round trip, {total} Redis commands: {commands:?}"
    );
    let before = h.trips();
    h.store.query("tenant", "globex", 0, 10).await.unwrap();
    assert_eq!(h.trips() - before, 2, "page + live check");
    let before = h.trips();
    h.store.counts("tenant", 10).await.unwrap();
    h.store.stats().await.unwrap();
    assert_eq!(h.trips() - before, 2, "one each");
}

/// A write inside the touch interval that adds no index entry does not
/// slide, so it re-scores nothing and only drops the entries it ends; one that
/// adds an entry slides, so every score is the session's exact expiry.
async fn index_scores_stay_exact_between_slides(kind: Kind) {
    let mut config = indexed_config();
    config.touch_interval = Duration::from_secs(30);
    let h = Harness::with_config(kind, config).await;
    let token = session_with(
        &h,
        Some("ann"),
        serde_json::json!({"tenant": "acme", "cart": ["p1", "p2"]}),
    )
    .await;
    let key = h.store.layout().session(&token);
    let sid = key.strip_prefix("es:s:").unwrap().to_owned();
    let score = |set: &str| -> Option<f64> {
        redis::cmd("ZSCORE")
            .arg(set)
            .arg(&sid)
            .query(&mut h.inspect())
            .unwrap()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pttl_before = h.pttl(&key);
    let active_before = score("es:{g}:active").unwrap();
    h.redis.reset_stats();
    set(
        &h,
        &token,
        serde_json::json!({"cart": ["p2"], "theme": "dark"}),
    )
    .await;
    assert!(h.pttl(&key) <= pttl_before, "no slide");
    let commands = h.redis.command_counts();
    for slide_only in ["zadd", "pexpireat", "pfadd"] {
        assert!(!commands.contains_key(slide_only), "{commands:?}");
    }
    assert!(query(&h, "cart", "p1").await.is_empty());
    assert_eq!(query(&h, "cart", "p2").await, of(&[&token]));
    assert_eq!(query(&h, "tenant", "acme").await, of(&[&token]));
    assert_eq!(score("es:{g}:active"), Some(active_before));
    assert_eq!(score("es:{g}:ix:cart:p2"), Some(active_before));

    set(&h, &token, serde_json::json!({"tenant": "globex"})).await;
    assert!(h.pttl(&key) > pttl_before, "a new entry slides");
    assert_eq!(query(&h, "tenant", "globex").await, of(&[&token]));
    assert!(query(&h, "tenant", "acme").await.is_empty());
    assert_eq!(counts(&h, "tenant").await, count_map(&[("globex", 1)]));
    let active = score("es:{g}:active").unwrap();
    assert!(active > active_before);
    for set in ["es:{g}:ix:tenant:globex", "es:{g}:ix:cart:p2"] {
        assert_eq!(score(set), Some(active), "{set}");
    }
    let time: (String, String) = redis::cmd("TIME").query(&mut h.inspect()).unwrap();
    let now_ms = time.0.parse::<f64>().unwrap() * 1000.0 + time.1.parse::<f64>().unwrap() / 1000.0;
    #[allow(clippy::cast_precision_loss)]
    let expiry = now_ms + h.pttl(&key) as f64;
    assert!((active - expiry).abs() < 1000.0, "{active} vs {expiry}");
    assert_every_key_has_a_ttl(&h);
}

async fn unindexed_field_is_refused(kind: Kind) {
    let h = Harness::with_config(kind, indexed_config()).await;
    let before = h.trips();
    let e = h.store.query("email", "x", 0, 10).await.unwrap_err();
    assert!(e.to_string().contains("SESSION_INDEXES"), "{e}");
    let e = h.store.counts("email", 10).await.unwrap_err();
    assert!(e.to_string().contains("SESSION_INDEXES"), "{e}");
    let e = h
        .store
        .query("tenant", &"v".repeat(300), 0, 10)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("256"), "{e}");
    assert_eq!(h.trips(), before, "refused before any Redis call");
}

/// A read that finds a slide due does not slide: the commit (no write)
/// hands it back as `Commit::touch`, and running it slides once, writing
/// `_exp`, and re-scores every index entry with that exact expiry.
async fn a_due_slide_runs_after_the_response(kind: Kind) {
    let mut config = indexed_config();
    config.touch_interval = Duration::from_millis(200);
    let h = Harness::with_config(kind, config).await;
    let token = session_with(&h, Some("ann"), serde_json::json!({"tenant": "acme"})).await;
    let key = h.store.layout().session(&token);
    let sid = key.strip_prefix("es:s:").unwrap().to_owned();
    let score = |set: &str| -> Option<f64> {
        redis::cmd("ZSCORE")
            .arg(set)
            .arg(&sid)
            .query(&mut h.inspect())
            .unwrap()
    };
    let exp = || -> u64 {
        redis::cmd("HGET")
            .arg(&key)
            .arg("_exp")
            .query(&mut h.inspect())
            .unwrap()
    };
    let before = exp();
    #[allow(clippy::cast_precision_loss)]
    let as_score = |ms: u64| ms as f64;
    assert_eq!(score("es:{g}:active"), Some(as_score(before)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let header = cookie_header(&h.store.cookies().set_cookie(&token, 60));
    h.redis.reset_stats();
    let request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert!(request.slide_due());
    let commit = h.store.commit_deferred(request).await.unwrap();
    let touch = commit.touch.expect("the due slide is handed back");
    assert_eq!(
        h.redis.store_commands(),
        1,
        "{:?}",
        h.redis.command_counts()
    );
    assert_eq!(exp(), before, "nothing slid before the touch");
    h.store.touch(touch).await.unwrap();
    let after = exp();
    assert!(after > before);
    assert!(h.pttl(&key) <= i64::try_from(after).unwrap());
    for set in ["es:{g}:active", "es:{g}:ix:tenant:acme"] {
        assert_eq!(score(set), Some(as_score(after)), "{set}");
    }
    // Once per touch interval: the next read finds none due.
    let request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert!(!request.slide_due());
    assert!(h.store.commit(request).await.unwrap().touch.is_none());
    // A caller that does not defer it (plain `commit`, as every library user
    // and wrapper calls it) gets the due slide run by the commit itself.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = h
        .store
        .begin(Some(&header), ClientInfo::default())
        .await
        .unwrap();
    assert!(request.slide_due());
    assert!(h.store.commit(request).await.unwrap().touch.is_none());
    let slid = exp();
    assert!(slid > after, "the commit slid the session");
    for set in ["es:{g}:active", "es:{g}:ix:tenant:acme"] {
        assert_eq!(score(set), Some(as_score(slid)), "{set}");
    }
}
