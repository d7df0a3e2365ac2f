//! The session model: a loaded session, the changes a request wants to make,
//! and what a write returned.
//!
//! # Sizes and compression
//!
//! Every user field is one JSON text. A value whose JSON text is longer than
//! [`SessionConfig::compress_bytes`](crate::SessionConfig::compress_bytes)
//! (`SESSION_COMPRESS_BYTES`, default 1024; 0 turns it off) is stored
//! deflated (`miniz_oxide`, pure Rust) in an envelope that JSON text can never
//! be confused with: [`COMPRESSED_PREFIX`] (`~z:`; no JSON text starts with
//! `~`) followed by the raw deflate stream in base64 (standard alphabet, no
//! padding). Stored values stay UTF-8 text on both backends. A value is
//! stored as is when deflating does not make it smaller (random data), when
//! it is a plain integer, when its field is declared in `SESSION_INDEXES`
//! (the Lua index upkeep decodes those) or when the same [`Changes`]
//! increments it. Loading inflates transparently ([`Session::get`],
//! [`Session::data`], the gateway's `x-session-data`); inflating is bounded
//! (at most the larger of the per-field and per-session limits), and a value
//! that does not inflate is reported like any undecodable field
//! ([`Error::Decode`], or listed apart by [`Session::data`]), never a panic.
//!
//! Limits: `SESSION_MAX_VALUE_BYTES` applies to the JSON text you write (before
//! compression: the limit is about your data) and is checked before any Redis
//! call; `SESSION_MAX_SESSION_BYTES` applies to what the session holds in
//! Redis (field names plus stored values, after compression) and is enforced
//! atomically inside the write scripts: a write that would take the total
//! past it writes nothing and fails with [`Error::TooLarge`] naming the
//! limit (a write that shrinks an oversized session is let through).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::config::IndexSpec;
use crate::cookie::SessionHandle;
use crate::error::{Error, Result};

/// A point in time, in milliseconds since the Unix epoch, as Redis's clock saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// Time from `self` until `later` (zero if `later` is earlier).
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }
}

/// Names of the metadata fields every session hash carries.
pub(crate) mod meta {
    pub(crate) const CREATED: &str = "_created";
    pub(crate) const SEEN: &str = "_seen";
    pub(crate) const ABSOLUTE: &str = "_abs";
    pub(crate) const EXPIRES: &str = "_exp";
    pub(crate) const VERSION: &str = "_ver";
    pub(crate) const USER: &str = "_user";
    pub(crate) const USER_AGENT: &str = "_ua";
    pub(crate) const BIND_NET: &str = "_bnet";
    pub(crate) const BIND_UA: &str = "_bua";
}

/// The marker that starts a compressed stored value (see the module docs).
pub const COMPRESSED_PREFIX: &str = "~z:";

/// How values are stored: which are compressed, and the inflate bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Storage<'a> {
    /// Compress JSON texts longer than this (0 = never).
    pub(crate) compress_above: usize,
    /// Declared indexes: their fields are never compressed.
    pub(crate) indexes: &'a [IndexSpec],
}

impl Storage<'_> {
    /// The stored form of `text` for `field`: `Some(envelope)` when it is
    /// compressed, `None` when it is stored as is.
    fn compress(&self, field: &str, text: &str, incremented: bool) -> Option<String> {
        if self.compress_above == 0
            || text.len() <= self.compress_above
            || incremented
            || self.indexes.iter().any(|ix| ix.field == field)
        {
            return None;
        }
        compress_value(text)
    }
}

/// Deflates `text` into the stored envelope, or `None` when that would not
/// make it smaller, or when `text` is not something to compress (already an
/// envelope, or a plain integer that increments may still target).
pub(crate) fn compress_value(text: &str) -> Option<String> {
    let integer = {
        let digits = text.strip_prefix('-').unwrap_or(text);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if integer || text.starts_with('~') {
        return None;
    }
    let deflated = miniz_oxide::deflate::compress_to_vec(text.as_bytes(), 6);
    let mut envelope = String::with_capacity(COMPRESSED_PREFIX.len() + deflated.len() * 4 / 3 + 4);
    envelope.push_str(COMPRESSED_PREFIX);
    STANDARD_NO_PAD.encode_string(&deflated, &mut envelope);
    (envelope.len() < text.len()).then_some(envelope)
}

/// Inflates a stored value: `None` when it is not an envelope (plain JSON
/// text), `Some(Err(reason))` when it is one that does not inflate to UTF-8
/// text of at most `limit` bytes.
pub(crate) fn inflate_value(
    stored: &str,
    limit: usize,
) -> Option<std::result::Result<String, String>> {
    let encoded = stored.strip_prefix(COMPRESSED_PREFIX)?;
    Some((|| {
        let deflated = STANDARD_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|e| format!("compressed value is not valid base64: {e}"))?;
        let bytes =
            miniz_oxide::inflate::decompress_to_vec_with_limit(&deflated, limit).map_err(|e| {
                match e.status {
                    miniz_oxide::inflate::TINFLStatus::HasMoreOutput => {
                        format!("compressed value inflates past the limit of {limit} bytes")
                    }
                    _ => format!("compressed value does not inflate: {e}"),
                }
            })?;
        String::from_utf8(bytes).map_err(|_| "compressed value is not UTF-8 text".to_owned())
    })())
}

/// A `serde_json::Error` carrying `reason`, for [`Error::Decode`] of values
/// that fail before JSON parsing (a compressed value that does not inflate).
fn decode_error(reason: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(reason)
}

/// A live session as loaded from Redis.
#[derive(Debug, Clone)]
pub struct Session {
    pub(crate) handle: SessionHandle,
    pub(crate) user: Option<String>,
    pub(crate) created: Timestamp,
    pub(crate) last_seen: Timestamp,
    pub(crate) expires: Timestamp,
    pub(crate) absolute_expiry: Timestamp,
    pub(crate) loaded_at: Timestamp,
    pub(crate) version: u64,
    pub(crate) user_agent: Option<String>,
    pub(crate) fields: BTreeMap<String, String>,
    /// Fields whose stored value could not be inflated, with the reason
    /// (their raw stored text stays in `fields`).
    pub(crate) undecodable: BTreeMap<String, String>,
    /// The binding recorded at creation or login (hashes), if any.
    pub(crate) binding: Binding,
}

/// The subnet and user-agent hashes a session was bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Binding {
    pub(crate) net: Option<String>,
    pub(crate) user_agent: Option<String>,
}

impl Session {
    /// A session with no metadata nor fields yet, read at `loaded_at`.
    pub(crate) fn empty(handle: SessionHandle, loaded_at: Timestamp) -> Self {
        Session {
            handle,
            user: None,
            created: Timestamp::default(),
            last_seen: Timestamp::default(),
            expires: Timestamp::default(),
            absolute_expiry: Timestamp::default(),
            loaded_at,
            version: 0,
            user_agent: None,
            fields: Default::default(),
            undecodable: Default::default(),
            binding: Default::default(),
        }
    }

    /// The non-secret handle of the session.
    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    /// The user the session is bound to, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// When the session was created.
    pub fn created(&self) -> Timestamp {
        self.created
    }

    /// When the session was last seen (updated by the slide).
    pub fn last_seen(&self) -> Timestamp {
        self.last_seen
    }

    /// When the session expires unless it is used again (idle expiry).
    pub fn expires(&self) -> Timestamp {
        self.expires
    }

    /// The absolute expiry, which sliding never passes.
    pub fn absolute_expiry(&self) -> Timestamp {
        self.absolute_expiry
    }

    /// Redis's clock when the session was loaded.
    pub fn loaded_at(&self) -> Timestamp {
        self.loaded_at
    }

    /// The data version: incremented by every write of user fields.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The user agent recorded when the session was created.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// The user fields as JSON text (compressed values inflated; a value that
    /// did not inflate appears as stored).
    pub fn raw_fields(&self) -> &BTreeMap<String, String> {
        &self.fields
    }

    /// The raw JSON text of one field.
    pub fn get_raw(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// Decodes one field. `Ok(None)` when absent, [`Error::Decode`] when the
    /// stored text is not JSON of type `T` (or a compressed value that does
    /// not inflate).
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>> {
        if let Some(reason) = self.undecodable.get(field) {
            return Err(Error::Decode {
                field: field.to_owned(),
                source: decode_error(reason),
            });
        }
        self.fields
            .get(field)
            .map(|text| {
                serde_json::from_str(text).map_err(|source| Error::Decode {
                    field: field.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// All user fields as one JSON object. Fields whose text is not valid JSON
    /// are left out and named in the second value, so one bad field never hides
    /// the others.
    pub fn data(&self) -> (serde_json::Map<String, serde_json::Value>, Vec<String>) {
        let mut data = serde_json::Map::new();
        let mut invalid = Vec::new();
        for (name, text) in &self.fields {
            if self.undecodable.contains_key(name) {
                invalid.push(name.clone());
                continue;
            }
            match serde_json::from_str(text) {
                Ok(value) => {
                    data.insert(name.clone(), value);
                }
                Err(_) => invalid.push(name.clone()),
            }
        }
        (data, invalid)
    }
}

/// One field-level change.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Set a field to a JSON value (stored as its JSON text).
    Set(String, String),
    /// Delete a field.
    Delete(String),
    /// Add to an integer field (a missing field counts as 0).
    Incr(String, i64),
}

impl Op {
    /// The field this change touches.
    pub fn field(&self) -> &str {
        match self {
            Op::Set(f, _) | Op::Delete(f) | Op::Incr(f, _) => f,
        }
    }
}

/// The changes one request makes to its session, applied together in one
/// atomic step. Only the named fields are touched: concurrent requests that
/// change different fields never lose each other's writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub(crate) ops: Vec<Op>,
    pub(crate) expect_version: Option<u64>,
}

/// Longest field name accepted, in bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 256;

impl Changes {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The changes, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Sets `field` to `value` (serialized as JSON).
    pub fn set<T: Serialize + ?Sized>(&mut self, field: &str, value: &T) -> Result<&mut Self> {
        validate_field(field)?;
        let text = serde_json::to_string(value).map_err(|source| Error::Encode {
            field: field.to_owned(),
            source,
        })?;
        self.ops.push(Op::Set(field.to_owned(), text));
        Ok(self)
    }

    /// Sets `field` to a JSON value; `null` deletes the field.
    pub fn set_json(&mut self, field: &str, value: &serde_json::Value) -> Result<&mut Self> {
        if value.is_null() {
            return self.delete(field);
        }
        self.set(field, value)
    }

    /// Deletes `field`.
    pub fn delete(&mut self, field: &str) -> Result<&mut Self> {
        validate_field(field)?;
        self.ops.push(Op::Delete(field.to_owned()));
        Ok(self)
    }

    /// Adds `by` to the integer in `field` (atomically, in Redis).
    pub fn incr(&mut self, field: &str, by: i64) -> Result<&mut Self> {
        validate_field(field)?;
        self.ops.push(Op::Incr(field.to_owned(), by));
        Ok(self)
    }

    /// Makes the write conditional: it fails with [`Error::Conflict`] unless
    /// the session's version is still `version` (optimistic compare-and-set).
    pub fn expect_version(&mut self, version: u64) -> &mut Self {
        self.expect_version = Some(version);
        self
    }

    pub(crate) fn has_increments(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, Op::Incr(..)))
    }

    /// Checks value sizes against `max_value_bytes` (the JSON text as given,
    /// before compression).
    pub(crate) fn check_sizes(&self, max_value_bytes: usize) -> Result<()> {
        for op in &self.ops {
            if let Op::Set(_, text) = op
                && text.len() > max_value_bytes
            {
                return Err(Error::TooLarge {
                    what: "session field value",
                    limit: max_value_bytes,
                    actual: text.len(),
                });
            }
        }
        Ok(())
    }

    /// The ops as script arguments: op, field, value triples, with values
    /// in their stored form (compressed where `storage` says so).
    pub(crate) fn script_args<'a>(
        &'a self,
        storage: &'a Storage<'_>,
    ) -> impl Iterator<Item = String> + 'a {
        self.ops.iter().flat_map(move |op| match op {
            Op::Set(f, v) => {
                let incremented = self
                    .ops
                    .iter()
                    .any(|o| matches!(o, Op::Incr(g, _) if g == f));
                let stored = storage.compress(f, v, incremented);
                [
                    "S".to_owned(),
                    f.clone(),
                    stored.unwrap_or_else(|| v.clone()),
                ]
            }
            Op::Delete(f) => ["D".to_owned(), f.clone(), String::new()],
            Op::Incr(f, n) => ["I".to_owned(), f.clone(), n.to_string()],
        })
    }
}

/// Checks a user field name: 1 to 256 bytes, no control characters, and not
/// starting with `_` (reserved for metadata).
pub fn validate_field(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_FIELD_NAME_BYTES {
        "longer than 256 bytes"
    } else if name.starts_with('_') {
        "names starting with _ are reserved for metadata"
    } else if name.chars().any(char::is_control) {
        "contains control characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidField {
        name: name.chars().take(64).collect(),
        reason,
    })
}

/// What a successful write returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The session's new data version.
    pub version: u64,
    /// The new idle expiry.
    pub expires: Timestamp,
    /// The absolute expiry.
    pub absolute_expiry: Timestamp,
    /// Redis's clock at the write.
    pub now: Timestamp,
    /// The new value of each increment, in the order they were given.
    pub increments: Vec<i64>,
}

/// Who is making the request: recorded when a session is created, and
/// compared with the session's binding on load when `SESSION_BIND_SUBNET` or
/// `SESSION_BIND_USER_AGENT` is on.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The client's IP address, as the adapter established it (never from a
    /// header a client can set, unless a trusted proxy sets it: see
    /// [`crate::gateway::client_ip`]).
    pub ip: Option<IpAddr>,
}

impl ClientInfo {
    /// Client info with a user agent (truncated to 256 bytes).
    pub fn with_user_agent(user_agent: Option<&str>) -> Self {
        Self {
            user_agent: user_agent.map(|ua| truncate(ua, 256).to_owned()),
            ip: None,
        }
    }

    /// The same, with the client's IP address.
    #[must_use]
    pub fn with_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }

    /// The binding hash of the client's network (/24 for IPv4, /64 for IPv6;
    /// an IPv4-mapped IPv6 address counts as IPv4) for the session `handle`.
    /// Salted with the handle, so equal networks give unrelated hashes in
    /// different sessions.
    pub(crate) fn subnet_hash(&self, handle: &SessionHandle) -> Option<String> {
        let network = match self.ip?.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                format!("v4:{a}.{b}.{c}.0/24")
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("v6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        };
        Some(binding_hash("net", handle, &network))
    }

    /// The binding hash of the user agent for the session `handle` (an
    /// absent user agent hashes as the empty one).
    pub(crate) fn user_agent_hash(&self, handle: &SessionHandle) -> String {
        binding_hash("ua", handle, self.user_agent.as_deref().unwrap_or(""))
    }
}

fn binding_hash(kind: &str, handle: &SessionHandle, value: &str) -> String {
    let mut hasher = Sha256::new();
    for part in ["edge-session:bind:", kind, ":", handle.as_str(), ":", value] {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One entry of a user's device list.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceSession {
    /// The session's handle (pass it to revoke).
    pub handle: SessionHandle,
    /// When it was created (ms since the epoch).
    pub created: Timestamp,
    /// When it was last seen (its last slide: to within the touch interval).
    pub last_seen: Timestamp,
    /// Its idle expiry.
    pub expires: Timestamp,
    /// Its absolute expiry.
    pub absolute_expiry: Timestamp,
    /// The user agent it was created with.
    pub user_agent: Option<String>,
}

impl Serialize for SessionHandle {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A loaded session holding `fields` (stored texts) and `undecodable`
    /// (field: reason).
    fn session_of(
        fields: BTreeMap<String, String>,
        undecodable: BTreeMap<String, String>,
    ) -> Session {
        Session {
            handle: SessionHandle::parse(&"a".repeat(64)).unwrap(),
            user: None,
            created: Timestamp(1),
            last_seen: Timestamp(1),
            expires: Timestamp(2),
            absolute_expiry: Timestamp(3),
            loaded_at: Timestamp(1),
            version: 1,
            user_agent: None,
            fields,
            undecodable,
            binding: Binding::default(),
        }
    }

    #[test]
    fn field_names_are_checked() {
        for bad in ["", "_ver", "a\nb", &"x".repeat(300)] {
            assert!(validate_field(bad).is_err(), "{bad:?}");
        }
        for good in ["cart", "tenant", "x.y", "ünïcode"] {
            validate_field(good).unwrap();
        }
    }

    #[test]
    fn changes_encode_json_and_null_deletes() {
        let mut c = Changes::new();
        c.set("a", &vec![1, 2]).unwrap();
        c.set_json("b", &serde_json::Value::Null).unwrap();
        c.incr("n", -3).unwrap();
        let storage = Storage {
            compress_above: 0,
            indexes: &[],
        };
        assert_eq!(
            c.script_args(&storage).collect::<Vec<_>>(),
            ["S", "a", "[1,2]", "D", "b", "", "I", "n", "-3"]
        );
        assert!(c.has_increments());
        assert!(c.check_sizes(5).is_ok());
        assert!(matches!(
            c.check_sizes(4),
            Err(Error::TooLarge {
                limit: 4,
                actual: 5,
                ..
            })
        ));
    }

    #[test]
    fn bad_fields_are_reported_not_fatal() {
        let mut fields = BTreeMap::new();
        fields.insert("good".to_owned(), "[1]".to_owned());
        fields.insert("bad".to_owned(), "{oops".to_owned());
        let s = session_of(fields, BTreeMap::new());
        let (data, invalid) = s.data();
        assert_eq!(data.get("good"), Some(&serde_json::json!([1])));
        assert_eq!(invalid, ["bad"]);
        assert!(matches!(s.get::<u32>("bad"), Err(Error::Decode { .. })));
        assert_eq!(s.get::<Vec<u32>>("good").unwrap(), Some(vec![1]));
        assert_eq!(s.get::<u32>("missing").unwrap(), None);
    }

    #[test]
    fn large_json_is_compressed_and_inflates_back() {
        let text = serde_json::to_string(&vec!["the same words again"; 200]).unwrap();
        let stored = compress_value(&text).unwrap();
        assert!(stored.starts_with(COMPRESSED_PREFIX));
        assert!(
            stored.len() * 5 < text.len(),
            "{} vs {}",
            stored.len(),
            text.len()
        );
        assert!(serde_json::from_str::<serde_json::Value>(&stored).is_err());
        assert_eq!(inflate_value(&stored, text.len()), Some(Ok(text.clone())));
        // Plain JSON text is not an envelope.
        assert_eq!(inflate_value(&text, 10), None);
        // Bounded: one byte short of the inflated size is refused.
        let e = inflate_value(&stored, text.len() - 1).unwrap().unwrap_err();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn what_is_never_compressed() {
        // Incompressible: random bytes as a JSON string of hex stay as they are
        // only when deflate cannot win; base64 of random bytes cannot.
        let mut random = [0u8; 3000];
        crate::platform::fill_random(&mut random);
        let text = serde_json::to_string(&STANDARD_NO_PAD.encode(random)).unwrap();
        assert_eq!(compress_value(&text), None);
        assert_eq!(
            compress_value(&"1".repeat(2000)),
            None,
            "integers stay plain"
        );
        assert_eq!(compress_value(&format!("~z:{}", "A".repeat(2000))), None);
        let big = serde_json::to_string(&vec![7; 1000]).unwrap();
        let cart = [IndexSpec::parse("cart[]").unwrap()];
        let storage = Storage {
            compress_above: 1024,
            indexes: &cart,
        };
        let mut c = Changes::new();
        c.set("cart", &vec![7; 1000]).unwrap();
        c.set("other", &vec![7; 1000]).unwrap();
        c.set("small", &vec![7; 10]).unwrap();
        let args: Vec<String> = c.script_args(&storage).collect();
        assert_eq!(args[2], big, "indexed fields stay plain");
        assert!(args[5].starts_with(COMPRESSED_PREFIX));
        assert_eq!(args[8], "[7,7,7,7,7,7,7,7,7,7]");
        let off = Storage {
            compress_above: 0,
            indexes: &[],
        };
        assert_eq!(c.script_args(&off).nth(5).unwrap(), big);
    }

    #[test]
    fn corrupted_envelopes_are_reasons_not_panics() {
        for bad in ["~z:", "~z:!!!!", "~z:AAAA", "~z:eJzLSM3JyQcABiwCFQ"] {
            let got = inflate_value(bad, 1 << 20).unwrap();
            assert!(got.is_err(), "{bad}: {got:?}");
        }
        let mut fields = BTreeMap::new();
        fields.insert("blob".to_owned(), "~z:AAAA".to_owned());
        let mut undecodable = BTreeMap::new();
        undecodable.insert("blob".to_owned(), "does not inflate".to_owned());
        let s = session_of(fields, undecodable);
        let e = s.get::<serde_json::Value>("blob").unwrap_err();
        assert!(matches!(e, Error::Decode { .. }));
        assert!(
            std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("does not inflate"))
        );
        assert_eq!(s.data().1, ["blob"]);
    }

    #[test]
    fn subnet_hashes_cover_a_24_or_a_64() {
        let h = SessionHandle::parse(&"c".repeat(64)).unwrap();
        let other = SessionHandle::parse(&"d".repeat(64)).unwrap();
        let at = |ip: &str| ClientInfo::default().with_ip(ip.parse().ok());
        let a = at("203.0.113.7").subnet_hash(&h).unwrap();
        assert_eq!(at("203.0.113.250").subnet_hash(&h).unwrap(), a);
        assert_eq!(at("::ffff:203.0.113.9").subnet_hash(&h).unwrap(), a);
        assert_ne!(at("203.0.114.7").subnet_hash(&h).unwrap(), a);
        assert_ne!(at("203.0.113.7").subnet_hash(&other).unwrap(), a);
        let b = at("2001:db8:1:2::1").subnet_hash(&h).unwrap();
        assert_eq!(at("2001:db8:1:2:ffff::9").subnet_hash(&h).unwrap(), b);
        assert_ne!(at("2001:db8:1:3::1").subnet_hash(&h).unwrap(), b);
        assert!(!a.contains("203") && a.len() == 64);
        assert_eq!(ClientInfo::default().subnet_hash(&h), None);
        let ua = ClientInfo::with_user_agent(Some("Phone/1"));
        assert_ne!(
            ua.user_agent_hash(&h),
            ClientInfo::default().user_agent_hash(&h)
        );
    }
}
