//! Redis Cluster and Sentinel, against real local servers.
//!
//! - The core suites (`conformance.rs`, `indexes.rs`) run once more here, each
//!   test on its own local 3-master Redis Cluster through the cluster backend
//!   with the store in cluster mode: the files are compiled a second time
//!   under a `both_backends!` that makes `cluster` modules (so their tests are
//!   `cluster::conformance::cluster::<name>`).
//! - Cluster-specific checks: batches across slots, script caches per node,
//!   the cluster-wide `SCAN`, a few hundred sessions spread over the slots.
//! - A Sentinel failover: master killed under a writer, replica promoted, the
//!   store follows without a restart; the window and the losses are printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::duplicate_mod)]

/// The suites' test list, run on a cluster. Two tests are left out: they
/// assert the single-Redis round-trip counts, which cluster mode raises by
/// design (README, "Guarantees"); `round_trips_in_cluster_mode` below asserts
/// the cluster's.
macro_rules! on_cluster {
    (round_trips_per_operation) => {};
    (indexed_write_costs_one_round_trip) => {};
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            crate::support::cluster::on_cluster(super::$name(crate::support::Kind::Direct)).await
        }
    };
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod cluster {
            $(on_cluster!($name);)*
        }
    };
}

#[allow(dead_code, clippy::duplicate_mod)]
#[path = "conformance.rs"]
mod conformance;

#[allow(dead_code, clippy::duplicate_mod)]
#[path = "indexes.rs"]
mod indexes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_session::backend::{ClusterBackend, Command, Retry, SentinelBackend, Value};
use edge_session::{
    AnyBackend, Backend, Changes, ClientInfo, KeyRing, SessionConfig, SessionStore, SessionToken,
};
use futures::StreamExt;

use crate::support::cluster::{SentinelSetup, on_cluster, start_cluster, wait_until};
use crate::support::{Harness, Kind, SECRETS, counting, test_config};

fn indexed(mut config: SessionConfig) -> SessionConfig {
    config.indexes = edge_session::IndexSpec::parse_list("tenant,cart[]").unwrap();
    config
}

/// Keys per node (DBSIZE of each master).
fn keys_per_node(h: &Harness) -> Vec<u64> {
    h.redis
        .nodes()
        .map(|n| redis::cmd("DBSIZE").query(&mut n.inspect()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_across_slots_is_one_call_with_replies_in_order() {
    let redis = start_cluster(3);
    let backend = counting(AnyBackend::Cluster(
        ClusterBackend::connect(&redis.node_urls()).await.unwrap(),
    ));
    let mut batch = Vec::new();
    for i in 0..90 {
        batch.push(
            Command::new("SET")
                .arg(format!("k{i}"))
                .arg(format!("v{i}")),
        );
    }
    for i in 0..90 {
        batch.push(Command::new("GET").arg(format!("k{i}")));
    }
    batch.push(Command::new("HSET").arg("k0").arg("f").arg("x")); // wrong type
    batch.push(Command::new("EVAL").arg("return KEYS[1]").arg(1).arg("k7"));
    batch.push(Command::new("PING"));
    let replies = backend.pipeline(&batch, Retry::Idempotent).await.unwrap();
    assert_eq!(backend.round_trips(), 1);
    assert_eq!(replies.len(), 183);
    for i in 0..90 {
        assert_eq!(replies[i], Ok(Value::Okay));
        assert_eq!(
            replies[90 + i],
            Ok(Value::Bytes(format!("v{i}").into_bytes()))
        );
    }
    assert!(matches!(&replies[180], Err(e) if e.code() == "WRONGTYPE"));
    assert_eq!(replies[181], Ok(Value::Bytes(b"k7".to_vec())));
    assert!(replies[182].is_ok());
    let sizes: Vec<u64> = redis
        .nodes()
        .map(|n| redis::cmd("DBSIZE").query(&mut n.inspect()).unwrap())
        .collect();
    assert!(
        sizes.iter().all(|&n| n > 0),
        "keys on every master: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<u64>(), 90);

    // SCAN walks every master behind one cursor.
    let mut cursor = "0".to_owned();
    let mut seen = Vec::new();
    let mut steps = 0;
    loop {
        let reply = edge_session::backend::query(
            &backend,
            Command::new("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg("k*")
                .arg("COUNT")
                .arg(7),
        )
        .await
        .unwrap();
        let mut items = reply.into_array().unwrap().into_iter();
        cursor = items.next().unwrap().into_string().unwrap();
        seen.extend(
            items
                .next()
                .unwrap()
                .into_array()
                .unwrap()
                .into_iter()
                .map(|k| k.into_string().unwrap()),
        );
        steps += 1;
        if cursor == "0" {
            break;
        }
        assert!(steps < 1000);
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 90, "every key once: {} seen", seen.len());
    assert!(steps > 3, "more than one step per node");

    // A transaction stays within one slot; across slots Redis refuses it.
    let same_slot = [
        Command::new("SET").arg("{t}a").arg("1"),
        Command::new("INCR").arg("{t}b"),
    ];
    let replies = backend
        .transaction(&same_slot, Retry::Idempotent)
        .await
        .unwrap();
    assert_eq!(replies, vec![Ok(Value::Okay), Ok(Value::Int(1))]);
    let cross = [
        Command::new("SET").arg("{t}a").arg("1"),
        Command::new("SET").arg("{u}a").arg("1"),
    ];
    let e = backend.transaction(&cross, Retry::Idempotent).await;
    assert!(e.is_err(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_loaded_and_recovered_per_node() {
    let h = on_cluster(Harness::start(Kind::Direct)).await;
    assert!(
        h.store.config().cluster,
        "the cluster harness runs cluster mode"
    );
    h.redis.reset_stats();
    h.store.preload_scripts().await.unwrap();
    for node in h.redis.nodes() {
        let loads = node_counts(node).get("script|load").copied();
        assert!(loads.unwrap_or(0) > 0, "SCRIPT LOAD reached {}", node.port);
    }
    // One node forgets its scripts: sessions in its slots still work (EVAL
    // fallback there), the others never see an EVAL.
    let forgetful = &h.redis.peers[0];
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut forgetful.inspect())
        .unwrap();
    h.redis.reset_stats();
    let client = ClientInfo::default();
    for i in 0..40 {
        let mut changes = Changes::new();
        changes.set("n", &i).unwrap();
        let (token, _) = h
            .store
            .create(Some(&format!("user{i}")), &changes, &client)
            .await
            .unwrap();
        let session = h.store.load(&token).await.unwrap().unwrap();
        assert_eq!(session.get::<i64>("n").unwrap(), Some(i));
    }
    let evals: Vec<u64> = h
        .redis
        .nodes()
        .map(|n| node_counts(n).get("eval").copied().unwrap_or(0))
        .collect();
    assert!(evals[1] > 0, "the forgetful node got EVALs: {evals:?}");
    assert_eq!((evals[0], evals[2]), (0, 0), "{evals:?}");
}

/// Commands one node executed since its last `CONFIG RESETSTAT`.
fn node_counts(node: &crate::support::RedisServer) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut node.inspect())
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_in_cluster_mode() {
    let h = on_cluster(Harness::with_config(Kind::Direct, indexed(test_config()))).await;
    h.store.preload_scripts().await.unwrap();
    let client = ClientInfo::default();
    let trips = |label: &str, expected: usize, before: usize| {
        let used = h.trips() - before;
        assert_eq!(used, expected, "{label}: {used} round trips");
    };
    let t = h.trips();
    let mut changes = Changes::new();
    changes.set("tenant", &"acme").unwrap();
    let (token, _) = h.store.create(None, &changes, &client).await.unwrap();
    trips("create + its global updates", 2, t);

    let t = h.trips();
    h.store.load(&token).await.unwrap().unwrap();
    trips("read + slide + active index", 3, t);

    let t = h.trips();
    let mut changes = Changes::new();
    changes
        .set("tenant", &"globex")
        .unwrap()
        .incr("n", 1)
        .unwrap();
    h.store.apply(&token, &changes).await.unwrap();
    trips("write + index upkeep", 2, t);

    let t = h.trips();
    let (user_token, _) = h
        .store
        .login(Some(&token), "alice", &Changes::new(), &client)
        .await
        .unwrap();
    trips("login moving the session to the user's slot", 3, t);

    let t = h.trips();
    h.store.devices("alice").await.unwrap();
    trips("device list", 1, t);

    let t = h.trips();
    h.store.destroy(&user_token).await.unwrap();
    trips("logout", 2, t);
    assert!(h.data_keys().is_empty(), "{:?}", h.data_keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_hundred_sessions_spread_over_the_slots() {
    let h = on_cluster(Harness::with_config(Kind::Direct, indexed(test_config()))).await;
    let client = ClientInfo::default();
    let tenants = ["acme", "globex", "initech"];
    // 300 sessions: 60 users with 3 devices each, 120 anonymous visitors.
    let created: Vec<(Option<String>, SessionToken)> = futures::stream::iter(0..300usize)
        .map(|i| {
            let store = &h.store;
            let client = client.clone();
            async move {
                let user = (i < 180).then(|| format!("user{}", i / 3));
                let mut changes = Changes::new();
                changes.set("tenant", &tenants[i % 3]).unwrap();
                changes
                    .set("cart", &vec![format!("p{}", i % 5), format!("p{}", i % 7)])
                    .unwrap();
                let (token, _) = store
                    .create(user.as_deref(), &changes, &client)
                    .await
                    .unwrap();
                (user, token)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let per_node = keys_per_node(&h);
    assert!(
        per_node.iter().all(|&n| n > 20),
        "keys spread over every master: {per_node:?}"
    );

    // Concurrent increments on one session are exact.
    let (_, counter) = &created[200];
    futures::stream::iter(0..100)
        .map(|_| async {
            let mut changes = Changes::new();
            changes.incr("hits", 1).unwrap();
            h.store.apply(counter, &changes).await.unwrap();
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let session = h.store.load(counter).await.unwrap().unwrap();
    assert_eq!(session.get::<i64>("hits").unwrap(), Some(100));

    // Logins from anonymous sessions: cross-slot moves keep the data. (The
    // sessions were collected in completion order: pick anonymous ones; a
    // signed-in user's session would carry nothing to another user.)
    let anonymous = created.iter().filter(|(u, _)| u.is_none()).take(20);
    let mut signed_in = Vec::new();
    for (i, (_, token)) in anonymous.enumerate() {
        let (new_token, _) = h
            .store
            .login(Some(token), &format!("late{i}"), &Changes::new(), &client)
            .await
            .unwrap();
        assert!(
            h.store.load(token).await.unwrap().is_none(),
            "old token dead"
        );
        let session = h.store.load(&new_token).await.unwrap().unwrap();
        assert_eq!(session.user(), Some(format!("late{i}").as_str()));
        assert!(session.get::<String>("tenant").unwrap().is_some());
        signed_in.push(new_token);
    }

    // Devices, revoke one, revoke others, logout-all.
    assert_eq!(h.store.devices("user0").await.unwrap().len(), 3);
    let user1: Vec<&SessionToken> = created
        .iter()
        .filter(|(u, _)| u.as_deref() == Some("user1"))
        .map(|(_, t)| t)
        .collect();
    let keep = h.store.load(user1[0]).await.unwrap().unwrap();
    let devices = h.store.devices("user1").await.unwrap();
    let other = devices.iter().find(|d| d.handle != *keep.handle()).unwrap();
    assert!(h.store.revoke("user1", &other.handle).await.unwrap());
    assert_eq!(h.store.devices("user1").await.unwrap().len(), 2);
    assert_eq!(
        h.store.revoke_others("user1", keep.handle()).await.unwrap(),
        1
    );
    assert_eq!(h.store.logout_all("user2").await.unwrap(), 3);
    assert!(h.store.devices("user2").await.unwrap().is_empty());
    for (u, t) in &created {
        if u.as_deref() == Some("user2") {
            assert!(h.store.load(t).await.unwrap().is_none());
        }
    }
    h.store.destroy(&signed_in[0]).await.unwrap();

    // Live sessions: 300 (logins replace 20 by 20) - 1 revoked - 1 other - 3
    // logged out everywhere - 1 destroyed = 294.
    let live = h
        .all_keys()
        .iter()
        .filter(|k| k.starts_with("es:s:"))
        .count() as u64;
    assert_eq!(live, 294);
    assert_eq!(h.store.active_sessions().await.unwrap(), live);

    // Indexes against a brute-force count of the live sessions.
    let mut by_tenant: BTreeMap<String, u64> = BTreeMap::new();
    let mut c = h.inspect();
    for key in h.all_keys().iter().filter(|k| k.starts_with("es:s:")) {
        let tenant: Option<String> = redis::cmd("HGET")
            .arg(key)
            .arg("tenant")
            .query(&mut c)
            .unwrap();
        let tenant: String = serde_json::from_str(&tenant.unwrap()).unwrap();
        *by_tenant.entry(tenant).or_default() += 1;
    }
    let counts = h.store.counts("tenant", 10).await.unwrap();
    let indexed: BTreeMap<String, u64> = counts
        .top
        .iter()
        .map(|v| (v.value.clone(), v.sessions))
        .collect();
    assert_eq!(indexed, by_tenant);
    let page = h.store.query("tenant", "acme", 0, 500).await.unwrap();
    assert_eq!(page.sessions.len() as u64, by_tenant["acme"]);
    let stats = h.store.stats().await.unwrap();
    assert_eq!(stats.active_sessions, live);
    let today = &stats.days[0];
    assert_eq!(today.created, 320, "300 first writes + 20 logins");
    assert_eq!(
        today.logins, 200,
        "180 sessions created signed in + 20 logins"
    );

    // No key without a TTL, on any master.
    let keys = h.all_keys();
    let mut without = Vec::new();
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut c).unwrap();
        if ttl < 0 {
            without.push(key.clone());
        }
    }
    assert!(without.is_empty(), "keys without TTL: {without:?}");
}

/// Master + replica + three sentinels; a writer creates sessions and
/// increments a counter through the store while the master is killed
/// (SIGKILL). The store must follow the promotion by itself; the error window
/// and the acknowledged writes lost are measured and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed_without_a_restart() {
    let mut setup = SentinelSetup::start();
    let old_master = setup.master.port;
    let backend = SentinelBackend::connect_with(
        &setup.sentinel_urls(),
        "mymaster",
        None,
        Duration::from_millis(500),
        2,
    )
    .await
    .unwrap();
    let store = Arc::new(
        SessionStore::new(
            AnyBackend::Sentinel(backend.clone()),
            test_config(),
            KeyRing::parse(SECRETS).unwrap(),
        )
        .unwrap(),
    );
    let client = ClientInfo::default();
    let mut changes = Changes::new();
    changes.set("hits", &0).unwrap();
    let (counter, _) = store.create(None, &changes, &client).await.unwrap();

    #[derive(Default)]
    struct Log {
        /// Sessions whose creation was acknowledged, with when.
        created: Vec<(SessionToken, Instant)>,
        /// Acknowledged increments of the counter, with when.
        increments: Vec<Instant>,
        /// Failed operations, with when.
        failures: Vec<Instant>,
        /// Successful operations, with when.
        successes: Vec<Instant>,
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let counter = counter.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut log = Log::default();
            let deadline = Instant::now() + Duration::from_secs(60);
            let client = ClientInfo::default();
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let mut changes = Changes::new();
                changes.set("n", &log.created.len()).unwrap();
                match store.create(None, &changes, &client).await {
                    Ok((token, _)) => {
                        log.created.push((token, Instant::now()));
                        log.successes.push(Instant::now());
                    }
                    Err(_) => log.failures.push(Instant::now()),
                }
                let mut changes = Changes::new();
                changes.incr("hits", 1).unwrap();
                match store.apply(&counter, &changes).await {
                    Ok(_) => {
                        log.increments.push(Instant::now());
                        log.successes.push(Instant::now());
                    }
                    Err(_) => log.failures.push(Instant::now()),
                }
                if log
                    .failures
                    .last()
                    .is_some_and(|f| f.elapsed() < Duration::from_millis(5))
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            log
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    setup.master.stop(); // SIGKILL
    let promoted = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), || {
            setup.master_port_now() == Some(setup.replica.port)
        })
    });
    let promoted_after = killed.elapsed();
    assert!(promoted, "the sentinels never promoted the replica");
    // Keep writing a while on the new master, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let log = writer.await.unwrap();

    let first_failure = log.failures.iter().find(|t| **t >= killed).copied();
    let recovered = log
        .successes
        .iter()
        .find(|t| first_failure.is_some_and(|f| **t > f))
        .copied();
    let window = match (first_failure, recovered) {
        (Some(f), Some(r)) => r - f,
        _ => Duration::ZERO,
    };
    assert!(
        log.successes.iter().any(|t| *t > killed + promoted_after),
        "the store serves again after the promotion"
    );
    assert!(
        backend.master_lookups() >= 2,
        "the master was looked up again"
    );

    // What the new master has of the acknowledged writes.
    let mut lost_before_kill = 0;
    let mut lost_after_kill = 0;
    for (token, at) in &log.created {
        if store.load(token).await.unwrap().is_none() {
            if *at < killed {
                lost_before_kill += 1;
            } else {
                lost_after_kill += 1;
            }
        }
    }
    let hits = store
        .load(&counter)
        .await
        .unwrap()
        .unwrap()
        .get::<i64>("hits")
        .unwrap()
        .unwrap();
    let acknowledged = log.increments.len() as i64;
    let acknowledged_before_kill = log.increments.iter().filter(|t| **t < killed).count();
    eprintln!(
        "[sentinel failover] sentinels promoted the replica {:.2} s after SIGKILL; \
         store errors from first failure to first success: {:.2} s ({} failed ops); \
         sessions created and acknowledged: {} ({} before the kill), lost: {} acknowledged before \
         the kill, {} after; counter: {} acknowledged increments ({} before the kill), {} on the \
         new master ({} lost, {} applied without acknowledgement); master lookups: {}",
        promoted_after.as_secs_f64(),
        window.as_secs_f64(),
        log.failures.len(),
        log.created.len(),
        log.created.iter().filter(|(_, t)| *t < killed).count(),
        lost_before_kill,
        lost_after_kill,
        acknowledged,
        acknowledged_before_kill,
        hits,
        (acknowledged - hits).max(0),
        (hits - acknowledged).max(0),
        backend.master_lookups(),
    );
    assert_ne!(setup.master_port_now(), Some(old_master));
    // The store keeps working on the promoted replica: a fresh session.
    let mut changes = Changes::new();
    changes.set("after", &true).unwrap();
    let (token, _) = store.create(None, &changes, &client).await.unwrap();
    assert!(store.load(&token).await.unwrap().is_some());
}
