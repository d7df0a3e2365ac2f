//! Lease locks on both backends: mutual exclusion under contention, lost
//! leases, renewal, bounded retries, and `with_lock`'s background renewal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edge_session::backend::{Command, query};
use edge_session::{Error, LockOptions};

use super::support::{Harness, Kind};

both_backends!(
    contending_holders_never_lose_an_update,
    an_expired_holder_cannot_release_the_next_holders_lock,
    renew_extends_the_lease,
    retries_are_bounded,
    with_lock_renews_during_long_work,
    with_lock_stops_the_work_when_the_lease_is_lost,
);

fn get(h: &Harness, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(&mut h.inspect()).unwrap()
}

/// Waits (without asserting on time) until `key` is gone from Redis.
async fn wait_until_gone(h: &Harness, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(h, key).is_some() {
        assert!(Instant::now() < deadline, "{key} never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// N tasks each add 1 to a counter M times with a GET, a yield and a SET
/// (a lost update without mutual exclusion), each inside the lock. No update
/// is lost and no two holders are ever inside at once.
async fn contending_holders_never_lose_an_update(kind: Kind) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 5;
    let h = Harness::start(kind).await;
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = h.store.clone();
        let (inside, overlaps) = (Arc::clone(&inside), Arc::clone(&overlaps));
        tasks.push(tokio::spawn(async move {
            let options = LockOptions::new(10_000, Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(10));
            let mut contended = 0;
            for _ in 0..ROUNDS {
                let guard = store
                    .lock("counter", Duration::from_secs(30), options)
                    .await
                    .unwrap();
                contended += usize::from(guard.attempts() > 1);
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let backend = store.backend();
                let n = query(backend, Command::new("GET").arg("counter"))
                    .await
                    .unwrap()
                    .as_int()
                    .unwrap_or(0);
                tokio::task::yield_now().await;
                query(backend, Command::new("SET").arg("counter").arg(n + 1))
                    .await
                    .unwrap();
                inside.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
            contended
        }));
    }
    let mut contended = 0;
    for task in tasks {
        contended += task.await.unwrap();
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert_eq!(get(&h, "counter"), Some((TASKS * ROUNDS).to_string()));
    assert!(
        contended > 0,
        "the holders never contended: the test proves nothing"
    );
    assert_eq!(get(&h, "es:lock:{counter}"), None, "released at the end");
}

async fn an_expired_holder_cannot_release_the_next_holders_lock(kind: Kind) {
    let h = Harness::start(kind).await;
    let key = h.store.lock_key("job");
    assert_eq!(key, "es:lock:{job}");
    let first = h
        .store
        .lock("job", Duration::from_millis(50), LockOptions::no_wait())
        .await
        .unwrap();
    assert_eq!(first.key(), key);
    let first_token = get(&h, &key).unwrap();
    assert_eq!(first_token.len(), 32, "128 random bits in hex");
    wait_until_gone(&h, &key).await;

    let second = h
        .store
        .lock("job", Duration::from_secs(60), LockOptions::no_wait())
        .await
        .unwrap();
    let second_token = get(&h, &key).unwrap();
    assert_ne!(first_token, second_token);

    assert!(matches!(
        first.renew(Duration::from_secs(60)).await,
        Err(Error::LockLost { name }) if name == "job"
    ));
    assert!(matches!(first.release().await, Err(Error::LockLost { .. })));
    assert_eq!(
        get(&h, &key),
        Some(second_token),
        "the new holder's lock is intact"
    );
    assert!(h.pttl(&key) > 50_000);

    // While held, nobody else gets it; once released, the next one does.
    assert!(matches!(
        h.store
            .lock("job", Duration::from_secs(1), LockOptions::no_wait())
            .await,
        Err(Error::LockBusy { attempts: 1, .. })
    ));
    second.release().await.unwrap();
    assert_eq!(get(&h, &key), None);
    let third = h
        .store
        .lock("job", Duration::from_secs(1), LockOptions::no_wait())
        .await
        .unwrap();
    third.release().await.unwrap();
}

async fn renew_extends_the_lease(kind: Kind) {
    let h = Harness::start(kind).await;
    let guard = h
        .store
        .lock("renewed", Duration::from_secs(2), LockOptions::no_wait())
        .await
        .unwrap();
    let key = guard.key().to_owned();
    let before = h.pttl(&key);
    assert!(before > 0 && before <= 2_000, "{before}");
    guard.renew(Duration::from_secs(120)).await.unwrap();
    let after = h.pttl(&key);
    assert!(after > 100_000, "{after}");
    // Renewing can also shorten it.
    guard.renew(Duration::from_secs(5)).await.unwrap();
    assert!(h.pttl(&key) <= 5_000);
    guard.release().await.unwrap();
    assert_eq!(h.pttl(&key), -2);
}

/// A busy lock is tried exactly 1 + retries times: counted by the server.
async fn retries_are_bounded(kind: Kind) {
    let h = Harness::start(kind).await;
    let holder = h
        .store
        .lock("busy", Duration::from_secs(60), LockOptions::no_wait())
        .await
        .unwrap();
    for retries in [0, 3, 7] {
        h.redis.reset_stats();
        let trips = h.trips();
        let options = LockOptions::new(retries, Duration::from_millis(1))
            .with_max_backoff(Duration::from_millis(4));
        let result = h.store.lock("busy", Duration::from_secs(1), options).await;
        let attempts = retries + 1;
        assert!(
            matches!(&result, Err(Error::LockBusy { name, attempts: a }) if name == "busy" && *a == attempts),
            "{result:?}"
        );
        assert_eq!(h.trips() - trips, attempts as usize);
        let sets = h.redis.command_counts().get("set").copied().unwrap_or(0);
        assert_eq!(sets, u64::from(attempts));
    }
    holder.release().await.unwrap();
}

/// The work takes several leases; the background renewal keeps the lock
/// held the whole time, and it is released at the end.
async fn with_lock_renews_during_long_work(kind: Kind) {
    let h = Harness::start(kind).await;
    let lease = Duration::from_millis(1_500);
    let key = h.store.lock_key("long");
    let store = h.store.clone();
    let value = h
        .store
        .with_lock("long", lease, LockOptions::no_wait(), || async {
            let token = get(&h, &key).expect("held");
            let start = Instant::now();
            let mut checks = 0;
            while start.elapsed() < lease * 7 / 3 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert_eq!(get(&h, &key).as_deref(), Some(token.as_str()), "lock lost");
                checks += 1;
            }
            let busy = store
                .lock("long", lease, LockOptions::no_wait())
                .await
                .unwrap_err();
            assert!(matches!(busy, Error::LockBusy { .. }));
            checks
        })
        .await
        .unwrap();
    assert!(value > 0);
    assert_eq!(get(&h, &key), None, "released after the work");
}

/// Someone else holds the lock after the lease was lost (simulated by
/// replacing the token): the next renewal notices, the work is stopped and
/// the other holder's lock is left alone.
async fn with_lock_stops_the_work_when_the_lease_is_lost(kind: Kind) {
    let h = Harness::start(kind).await;
    let key = h.store.lock_key("stolen");
    let finished = AtomicUsize::new(0);
    let result = h
        .store
        .with_lock(
            "stolen",
            Duration::from_millis(300),
            LockOptions::no_wait(),
            || async {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg("someone-else")
                    .query(&mut h.inspect())
                    .unwrap();
                std::future::pending::<()>().await;
                finished.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
    assert!(matches!(result, Err(Error::LockLost { name }) if name == "stolen"));
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    assert_eq!(get(&h, &key).as_deref(), Some("someone-else"));
}
