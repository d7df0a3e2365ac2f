//! Micro-benchmarks of the per-request CPU work (criterion): what a request
//! costs before and after its one Redis round trip.
//!
//! - `cookie/verify_decode`: a browser's `Cookie` header (three other cookies
//!   and a valid signed session cookie) to the session token
//!   ([`CookieCodec::from_header`]); `cookie/tampered`: the same header with
//!   one signature character changed (the request stays anonymous);
//!   `cookie/handle`: the token's Redis handle (SHA-256 of the secret).
//! - `session/decode`: the load script's reply (a realistic `HGETALL` of ten
//!   fields: metadata, a cart, a counter, a CSRF token) to a [`Session`],
//!   through [`SessionStore::load`]; `session/decode_compressed`: the same
//!   with the cart stored deflated (above `SESSION_COMPRESS_BYTES`).
//! - `script/apply_3_ops`: [`SessionStore::apply`] of three operations (set a
//!   JSON value, increment a counter, delete a field): the checks, the
//!   script's argument vector and its `EVALSHA` command, and the reply's parse.
//!
//! The store runs over [`Replay`], a [`Backend`] that answers every command
//! with one reply recorded from the real scripts (the shapes of
//! `src/scripts/load.lua` and `apply.lua`), handed to it outside the timed
//! part: what is measured is the store's own work on both sides of the round
//! trip, never a network. Each benchmark checks its result once before it is
//! timed, so a reply the store no longer accepts fails the run.
//!
//! `cargo bench --bench micro` (criterion's median is what the README quotes);
//! `cargo bench --bench micro -- cookie` runs one group. For instruction
//! counts, run the bench binary under callgrind in criterion's profile mode
//! (`--bench --profile-time 2 <name>`) and divide the inclusive count of
//! `from_header`, `handle`, `decode_with` or `apply_with` by its calls.

use std::hint::black_box;
use std::sync::Mutex;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use edge_session::backend::{Backend, Command, Reply, Retry, Value};
use edge_session::{
    Changes, CookieCodec, KeyRing, Result, Session, SessionConfig, SessionStore, SessionToken,
};

/// A 32-byte key in base64 (benchmarks only).
const KEYS: &str = "k2:bWljcm8tYmVuY2gtc2Vjb25kLWtleS0zMi1ieXRlcyE=,k1:bWljcm8tYmVuY2gta2V5LXRoaXJ0eS10d28tYnl0ZXMh";

/// A backend that answers each command with the next recorded reply: one
/// reply per benchmark iteration, put in by [`Replay::answer`].
#[derive(Debug, Default)]
struct Replay {
    next: Mutex<Option<Value>>,
}

impl Replay {
    /// Sets the reply of the next command.
    fn answer(&self, reply: Value) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(reply);
    }

    fn take(&self, commands: &[Command]) -> Vec<Reply> {
        black_box(commands);
        let reply = self
            .next
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(Value::Nil);
        vec![Ok(reply)]
    }
}

impl Backend for Replay {
    async fn pipeline(&self, commands: &[Command], _retry: Retry) -> Result<Vec<Reply>> {
        Ok(self.take(commands))
    }

    async fn transaction(&self, commands: &[Command], _retry: Retry) -> Result<Vec<Reply>> {
        Ok(self.take(commands))
    }
}

fn text(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

const NOW_MS: i64 = 1_795_000_000_000;

/// The load script's `{now, expiry, {field, value, ...}}` for a signed-in
/// session of ten fields, with `cart` as given.
fn load_reply(cart: &str) -> Value {
    let fields: [(&str, &str); 10] = [
        ("_created", "1794999000000"),
        ("_seen", "1794999990000"),
        ("_abs", "1795086400000"),
        ("_ver", "17"),
        ("_user", "user-4711"),
        (
            "_ua",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("theme", "\"dark\""),
        ("n", "41"),
        ("csrf", "\"q9V1bA3xZr8T0cLk2mWn5pEy7uHd4sJf\""),
        ("cart", cart),
    ];
    let flat = fields
        .iter()
        .flat_map(|(name, value)| [text(name), text(value)])
        .collect();
    Value::Array(vec![
        Value::Int(NOW_MS),
        Value::Int(NOW_MS + 30 * 60 * 1000),
        Value::Array(flat),
    ])
}

/// A cart of `items` line items, as JSON text.
fn cart_json(items: usize) -> String {
    let lines: Vec<serde_json::Value> = (0..items)
        .map(|i| {
            serde_json::json!({
                "sku": format!("SKU-{:06}", 100_000 + i * 7919),
                "qty": 1 + i % 3,
                "price_cents": 1999 + 250 * i,
                "title": format!("Item number {i} with a descriptive product title"),
            })
        })
        .collect();
    serde_json::Value::Array(lines).to_string()
}

/// The apply script's success reply for one increment:
/// `{0, version, expiry, now, absolute expiry, increment results...}`.
fn apply_reply() -> Value {
    Value::Array(vec![
        Value::Int(0),
        Value::Int(18),
        Value::Int(NOW_MS + 30 * 60 * 1000),
        Value::Int(NOW_MS),
        Value::Int(NOW_MS + 86_400_000),
        Value::Int(42),
    ])
}

fn store(config: SessionConfig) -> SessionStore<Replay> {
    let keys = KeyRing::parse(KEYS).expect("benchmark keys");
    SessionStore::new(Replay::default(), config, keys).expect("benchmark store")
}

fn cookie(c: &mut Criterion) {
    let store = store(SessionConfig::default());
    let codec: &CookieCodec = store.cookies();
    let token = SessionToken::generate(Some(edge_session::UserTag::of("user-4711")));
    let value = codec.sign(&token);
    let header = format!(
        "theme=dark; _ga=GA1.2.1234567890.1700000000; consent=analytics%3Dno; {}={value}",
        codec.config().name
    );
    let mut tampered = header.clone();
    let last = tampered.pop().expect("a signed cookie");
    tampered.push(if last == 'A' { 'B' } else { 'A' });

    let verified = codec
        .from_header(&header)
        .expect("the signed cookie verifies");
    assert_eq!(verified.token.handle(), token.handle());
    assert!(codec.from_header(&tampered).is_none());

    let mut group = c.benchmark_group("cookie");
    group.bench_function("verify_decode", |b| {
        b.iter(|| codec.from_header(black_box(&header)))
    });
    group.bench_function("tampered", |b| {
        b.iter(|| codec.from_header(black_box(&tampered)))
    });
    group.bench_function("handle", |b| b.iter(|| black_box(&token).handle()));
    group.finish();
}

// Not inlined, so that a profiler (callgrind) sees one call per iteration.
#[inline(never)]
fn decode_with(store: &SessionStore<Replay>, token: &SessionToken, reply: Value) -> Session {
    store.backend().answer(reply);
    futures::executor::block_on(store.load(token))
        .expect("the load reply parses")
        .expect("a live session")
}

fn session(c: &mut Criterion) {
    let store = store(SessionConfig::default());
    let token = SessionToken::generate(Some(edge_session::UserTag::of("user-4711")));
    // Three line items (about 400 bytes of JSON): stored as is.
    let plain = load_reply(&cart_json(3));
    let session = decode_with(&store, &token, plain.clone());
    assert_eq!(session.user(), Some("user-4711"));
    assert_eq!(session.version(), 17);
    assert_eq!(session.raw_fields().len(), 4);

    // Twenty line items (about 2.5 KiB): stored deflated. The stored form
    // comes from the store itself, through the write path.
    let big_cart = cart_json(20);
    let mut changes = Changes::new();
    changes
        .set_json("cart", &serde_json::from_str(&big_cart).expect("cart JSON"))
        .expect("a valid change");
    let stored = compressed_form(&store, &token, &changes);
    assert_ne!(stored, big_cart, "the cart is stored compressed");
    let compressed = load_reply(&stored);
    let session = decode_with(&store, &token, compressed.clone());
    assert_eq!(session.get_raw("cart"), Some(big_cart.as_str()));

    let mut group = c.benchmark_group("session");
    group.bench_function("decode", |b| {
        b.iter_batched(
            || plain.clone(),
            |reply| decode_with(&store, &token, reply),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("decode_compressed", |b| {
        b.iter_batched(
            || compressed.clone(),
            |reply| decode_with(&store, &token, reply),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The value the apply script would be given for the one `set` in
/// `changes`, read from the `EVALSHA` command the store builds.
fn compressed_form(
    store: &SessionStore<Replay>,
    token: &SessionToken,
    changes: &Changes,
) -> String {
    /// Records the commands it is sent.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<Command>>);
    impl Backend for Recorder {
        async fn pipeline(&self, commands: &[Command], _retry: Retry) -> Result<Vec<Reply>> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(commands);
            Ok(vec![Ok(apply_reply())])
        }
        async fn transaction(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
            self.pipeline(commands, retry).await
        }
    }
    let recorder = SessionStore::new(
        Recorder::default(),
        store.config().clone(),
        KeyRing::parse(KEYS).expect("benchmark keys"),
    )
    .expect("recording store");
    futures::executor::block_on(recorder.apply(token, changes)).expect("apply");
    let commands = recorder
        .backend()
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let parts = commands.first().expect("one command").parts();
    // ... "S", "cart", <stored value> at the end.
    assert_eq!(parts[parts.len() - 2], "cart");
    parts[parts.len() - 1].clone()
}

fn script(c: &mut Criterion) {
    let store = store(SessionConfig::default());
    let token = SessionToken::generate(Some(edge_session::UserTag::of("user-4711")));
    let mut changes = Changes::new();
    changes
        .set(
            "cart",
            &serde_json::json!([{"sku": "SKU-100000", "qty": 2}]),
        )
        .and_then(|c| c.incr("n", 1))
        .and_then(|c| c.delete("flash"))
        .expect("valid changes");
    store.backend().answer(apply_reply());
    let applied = futures::executor::block_on(store.apply(&token, &changes)).expect("apply");
    assert_eq!(applied.increments, vec![42]);

    let mut group = c.benchmark_group("script");
    group.bench_function("apply_3_ops", |b| {
        b.iter_batched(
            apply_reply,
            |reply| apply_with(&store, &token, &changes, reply),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

#[inline(never)]
fn apply_with(
    store: &SessionStore<Replay>,
    token: &SessionToken,
    changes: &Changes,
    reply: Value,
) -> Result<edge_session::Applied> {
    store.backend().answer(reply);
    futures::executor::block_on(store.apply(token, black_box(changes)))
}

criterion_group!(benches, cookie, session, script);
criterion_main!(benches);
