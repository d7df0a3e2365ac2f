//! REST backend behaviour that only the REST wire has: the sync token,
//! retries, timeouts and error mapping, proven against the local endpoint with
//! injected faults (which sits in front of a real redis-server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use edge_session::backend::{Backend, Command, RestBackend, RestConfig, Retry};
use edge_session::{Changes, ClientInfo, Error, KeyRing, SessionStore};
use upstash_local::Fault;

use crate::support::{REST_TOKEN, RedisServer, SECRETS, test_config};

struct Rest {
    _redis: RedisServer,
    server: upstash_local::Server,
}

impl Rest {
    async fn start() -> Self {
        let redis = RedisServer::start();
        let server = crate::support::spawn_rest(&redis).await;
        Self {
            _redis: redis,
            server,
        }
    }

    fn backend(&self, timeout_ms: u64, retries: u32) -> RestBackend {
        let mut config = RestConfig::new(self.server.url(), REST_TOKEN);
        config.timeout = Duration::from_millis(timeout_ms);
        config.max_retries = retries;
        config.backoff = Duration::from_millis(10);
        RestBackend::new(config).unwrap()
    }

    fn store(&self, backend: RestBackend) -> SessionStore<RestBackend> {
        SessionStore::new(backend, test_config(), KeyRing::parse(SECRETS).unwrap()).unwrap()
    }

    fn requests(&self) -> u64 {
        self.server.faults().requests()
    }
}

fn ping() -> [Command; 1] {
    [Command::new("PING")]
}

#[tokio::test]
async fn one_http_request_per_operation_and_none_for_anonymous() {
    let rest = Rest::start().await;
    let store = rest.store(rest.backend(2000, 2));
    store.preload_scripts().await.unwrap();
    let base = rest.requests();
    let request = store
        .begin(Some("__Host-session=forged.value"), ClientInfo::default())
        .await
        .unwrap();
    store.commit(request).await.unwrap();
    assert_eq!(rest.requests(), base, "anonymous: no HTTP request");

    let mut changes = Changes::new();
    changes.incr("n", 1).unwrap();
    let (token, _) = store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(rest.requests(), base + 1);
    // The test config slides on every read: HGETALL, then the slide.
    store.load(&token).await.unwrap().unwrap();
    assert_eq!(rest.requests(), base + 3);
    store.apply(&token, &changes).await.unwrap();
    assert_eq!(rest.requests(), base + 4);
}

#[tokio::test]
async fn the_first_script_call_falls_back_to_eval_once() {
    let rest = Rest::start().await;
    let store = rest.store(rest.backend(2000, 0));
    let base = rest.requests();
    let mut changes = Changes::new();
    changes.set("a", &1).unwrap();
    store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(rest.requests(), base + 2, "EVALSHA -> NOSCRIPT -> EVAL");
    store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(rest.requests(), base + 3, "cached from then on");
}

#[tokio::test]
async fn the_sync_token_is_kept_and_sent_forward() {
    let rest = Rest::start().await;
    let backend = rest.backend(2000, 0);
    assert_eq!(backend.sync_token(), None);
    backend.pipeline(&ping(), Retry::Idempotent).await.unwrap();
    let first = backend
        .sync_token()
        .expect("every response carries a sync token");
    backend.pipeline(&ping(), Retry::Idempotent).await.unwrap();
    let second = backend.sync_token().unwrap();
    assert_ne!(first, second);
    // A clone shares the token (one per process or isolate).
    assert_eq!(backend.clone().sync_token(), Some(second));
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_reported() {
    let rest = Rest::start().await;
    let backend = rest.backend(2000, 2);
    rest.server.faults().inject(Fault::status(503), 2);
    let base = rest.requests();
    backend.pipeline(&ping(), Retry::Idempotent).await.unwrap();
    assert_eq!(rest.requests(), base + 3, "two failures, then success");

    rest.server.faults().inject(Fault::plain_text(502), 1);
    backend.pipeline(&ping(), Retry::Idempotent).await.unwrap();

    rest.server.faults().inject_always(Fault::status(500));
    let err = backend
        .pipeline(&ping(), Retry::Idempotent)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { status: 500, .. }), "{err:?}");
    assert!(err.is_unavailable());
    rest.server.faults().clear();
    backend.pipeline(&ping(), Retry::Idempotent).await.unwrap();
}

#[tokio::test]
async fn increments_are_not_replayed_after_an_ambiguous_failure() {
    let rest = Rest::start().await;
    let store = rest.store(rest.backend(2000, 3));
    let mut changes = Changes::new();
    changes.incr("n", 1).unwrap();
    let (token, _) = store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    rest.server.faults().inject(Fault::status(503), 1);
    let base = rest.requests();
    assert!(
        store
            .apply(&token, &changes)
            .await
            .unwrap_err()
            .is_unavailable()
    );
    assert_eq!(
        rest.requests(),
        base + 1,
        "a non-idempotent write is not retried on 5xx"
    );
    assert_eq!(
        store
            .load(&token)
            .await
            .unwrap()
            .unwrap()
            .get::<i64>("n")
            .unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_within_the_bound() {
    let rest = Rest::start().await;
    let backend = rest.backend(300, 1);
    rest.server.faults().inject_always(Fault::Hang);
    let start = Instant::now();
    let err = backend
        .pipeline(&ping(), Retry::Idempotent)
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    assert!(err.is_timeout() && err.is_unavailable(), "{err:?}");
    assert!(
        elapsed >= Duration::from_millis(600),
        "two attempts of 300 ms: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "bounded: {elapsed:?}"
    );
    rest.server.faults().clear();
}

#[tokio::test]
async fn malformed_replies_and_bad_tokens_are_typed_errors() {
    let rest = Rest::start().await;
    let backend = rest.backend(2000, 2);
    rest.server.faults().inject(Fault::MalformedJson, 1);
    let err = backend
        .pipeline(&ping(), Retry::Idempotent)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the decode error is kept as source"
    );

    let mut config = RestConfig::new(rest.server.url(), "wrong-token");
    config.max_retries = 3;
    let wrong = RestBackend::new(config).unwrap();
    let base = rest.requests();
    let err = wrong
        .pipeline(&ping(), Retry::Idempotent)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized));
    assert_eq!(rest.requests(), base + 1, "401 is not retried");
    assert!(!format!("{err} {err:?}").contains("wrong-token"));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    let port = crate::support::free_port();
    let mut config = RestConfig::new(format!("http://127.0.0.1:{port}"), REST_TOKEN);
    config.backoff = Duration::from_millis(5);
    let backend = RestBackend::new(config).unwrap();
    let err = backend.pipeline(&ping(), Retry::Once).await.unwrap_err();
    assert!(
        matches!(err, Error::Transport(_)) && err.is_unavailable(),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_retried_create_or_login_is_applied_once() {
    let rest = Rest::start().await;
    let store = rest.store(rest.backend(500, 2));
    store.preload_scripts().await.unwrap();
    let mut changes = Changes::new();
    changes.incr("n", 1).unwrap();
    // The first attempt is held 1.5 s and times out on the client, which
    // retries; the held request then runs too, and must change nothing.
    rest.server
        .faults()
        .inject(Fault::delay(Duration::from_millis(1500)), 1);
    let (token, applied) = store
        .create(None, &changes, &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(applied.increments, [1]);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let session = store.load(&token).await.unwrap().unwrap();
    assert_eq!(
        session.get::<i64>("n").unwrap(),
        Some(1),
        "applied exactly once"
    );
    assert_eq!(session.version(), 1);

    rest.server
        .faults()
        .inject(Fault::delay(Duration::from_millis(1500)), 1);
    let (user_token, applied) = store
        .login(Some(&token), "ivy", &changes, &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(applied.increments, [2]);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let session = store.load(&user_token).await.unwrap().unwrap();
    assert_eq!(session.get::<i64>("n").unwrap(), Some(2));
    assert_eq!(store.devices("ivy").await.unwrap().len(), 1);
    assert!(store.load(&token).await.unwrap().is_none());
}
