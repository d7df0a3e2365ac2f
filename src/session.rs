//! The session model: a loaded session, the changes a request wants to make,
//! and what a write returned.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

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
    pub(crate) const VERSION: &str = "_ver";
    pub(crate) const USER: &str = "_user";
    pub(crate) const USER_AGENT: &str = "_ua";
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
}

impl Session {
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

    /// The user fields as raw JSON text.
    pub fn raw_fields(&self) -> &BTreeMap<String, String> {
        &self.fields
    }

    /// The raw JSON text of one field.
    pub fn get_raw(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// Decodes one field. `Ok(None)` when absent, [`Error::Decode`] when the
    /// stored text is not JSON of type `T`.
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>> {
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

    /// Checks value sizes against `max_value_bytes`.
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

    /// The ops as script arguments: op, field, value triples.
    pub(crate) fn script_args(&self) -> impl Iterator<Item = String> + '_ {
        self.ops.iter().flat_map(|op| match op {
            Op::Set(f, v) => ["S".to_owned(), f.clone(), v.clone()],
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

/// Who is making the request, recorded when a session is created.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// Client info with a user agent (truncated to 256 bytes).
    pub fn with_user_agent(user_agent: Option<&str>) -> Self {
        Self {
            user_agent: user_agent.map(|ua| truncate(ua, 256).to_owned()),
        }
    }
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
    /// When it was last seen.
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
        assert_eq!(
            c.script_args().collect::<Vec<_>>(),
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
        let s = Session {
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
        };
        let (data, invalid) = s.data();
        assert_eq!(data.get("good"), Some(&serde_json::json!([1])));
        assert_eq!(invalid, ["bad"]);
        assert!(matches!(s.get::<u32>("bad"), Err(Error::Decode { .. })));
        assert_eq!(s.get::<Vec<u32>>("good").unwrap(), Some(vec![1]));
        assert_eq!(s.get::<u32>("missing").unwrap(), None);
    }
}
