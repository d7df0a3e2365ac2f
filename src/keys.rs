//! The Redis key layout.
//!
//! With the default prefix `es:`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `es:s:{<handle>}` | hash | a session not bound to a user |
//! | `es:s:{<user tag>}<handle>` | hash | a session bound to a user |
//! | `es:u:{<user tag>}` | sorted set | the user's sessions (members: handles, scores: expiry in ms) |
//! | `es:{g}:active` | sorted set | every live session (members: session ids, scores: expiry in ms) |
//! | `es:{g}:seen` | sorted set | every live session (members: session ids, scores: last use in ms) |
//! | `es:{g}:ix:<field>:<value>` | sorted set | sessions whose indexed `<field>` holds `<value>` (scores: expiry) |
//! | `es:{g}:iv:<field>` | sorted set | the values of an indexed field (scores: latest expiry) |
//! | `es:{g}:st:created:<day>` | string | sessions created that day (day = days since 1970-01-01, UTC) |
//! | `es:{g}:st:logins:<day>` | string | logins that day |
//! | `es:{g}:st:users:<day>` | HyperLogLog | distinct users active that day |
//!
//! `<handle>` is the hex SHA-256 of the token secret, so a dump of Redis holds
//! no usable cookie. `<user tag>` is derived from the user id
//! ([`crate::UserTag`]). The part in braces is the Redis Cluster hash tag: a
//! user's sessions and device set always share one slot, which makes sliding,
//! device listing, revocation and logout-all single-slot atomic scripts. Only a
//! login that moves a session between slots (anonymous to signed-in, or from one
//! user to another) spans two slots; see [`crate::store`] for how it stays safe.
//!
//! Global keys share the hash tag `{g}`. A session's id in them is its key
//! without `es:s:`. Every global sorted set is scored by expiry (or last use)
//! and pruned as it is touched; its own TTL follows its last member, so
//! nothing under the prefix lives without a TTL.

use crate::cookie::{SessionHandle, SessionToken, UserTag};
use crate::error::{Error, Result};

/// Builds the Redis keys under one prefix.
#[derive(Debug, Clone)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// A layout under `prefix` (default `es:`). The prefix may not contain
    /// braces, which would change the cluster hash tags.
    pub fn new(prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        if prefix.contains(['{', '}']) || prefix.len() > 64 {
            return Err(Error::config(
                "SESSION_KEY_PREFIX",
                "must be at most 64 bytes without { or }",
            ));
        }
        Ok(Self { prefix })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hash holding the session of `token`.
    pub fn session(&self, token: &SessionToken) -> String {
        self.session_of(token.user_tag(), &token.handle())
    }

    /// The hash of the session `handle`, bound to the user of `tag` if any.
    pub fn session_of(&self, tag: Option<&UserTag>, handle: &SessionHandle) -> String {
        match tag {
            Some(tag) => format!("{}s:{{{}}}{}", self.prefix, tag.as_str(), handle.as_str()),
            None => format!("{}s:{{{}}}", self.prefix, handle.as_str()),
        }
    }

    /// The key prefix shared by all sessions of the user of `tag`; scripts that
    /// walk a device set append a handle to it.
    pub fn user_sessions_prefix(&self, tag: &UserTag) -> String {
        format!("{}s:{{{}}}", self.prefix, tag.as_str())
    }

    /// The sorted set listing the sessions of the user of `tag`.
    pub fn devices(&self, tag: &UserTag) -> String {
        format!("{}u:{{{}}}", self.prefix, tag.as_str())
    }

    /// The sorted set of all live sessions (members: session ids, scores:
    /// expiry in ms), behind the active-session count.
    pub fn active(&self) -> String {
        self.global("active")
    }

    /// A global key (indexes and statistics): `<prefix>{g}:<name>`. Every
    /// global key shares the hash tag `{g}`, so on Redis Cluster they live in
    /// one slot and one script can keep them in step.
    pub fn global(&self, name: &str) -> String {
        format!("{}{{g}}:{name}", self.prefix)
    }

    /// The session id used in global indexes: the session's key without the
    /// prefix and `s:` (e.g. `{<user tag>}<handle>`).
    pub fn session_id<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?.strip_prefix("s:")
    }

    /// The session key of a session id from a global index.
    pub fn session_key(&self, id: &str) -> String {
        format!("{}s:{id}", self.prefix)
    }

    /// The handle of a session id (`{handle}` or `{user tag}handle`).
    pub fn handle_of_id(id: &str) -> Option<SessionHandle> {
        let (inside, after) = id.strip_prefix('{')?.split_once('}')?;
        SessionHandle::parse(if after.is_empty() { inside } else { after })
    }

    /// The Redis Cluster hash tag of a key built by this layout.
    pub fn hash_tag(key: &str) -> &str {
        key.split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map_or(key, |(tag, _)| tag)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn user_keys_share_one_hash_tag() {
        let layout = KeyLayout::new("es:").unwrap();
        let tag = UserTag::of("alice");
        let token = SessionToken::generate(Some(tag.clone()));
        let session = layout.session(&token);
        let devices = layout.devices(&tag);
        assert_eq!(KeyLayout::hash_tag(&session), KeyLayout::hash_tag(&devices));
        assert!(session.starts_with(&layout.user_sessions_prefix(&tag)));
        assert!(session.ends_with(token.handle().as_str()));
    }

    #[test]
    fn anonymous_keys_are_tagged_by_their_handle() {
        let layout = KeyLayout::new("app1:").unwrap();
        let token = SessionToken::generate(None);
        let key = layout.session(&token);
        assert_eq!(key, format!("app1:s:{{{}}}", token.handle()));
        assert_eq!(KeyLayout::hash_tag(&key), token.handle().as_str());
    }

    #[test]
    fn braces_in_the_prefix_are_refused() {
        assert!(KeyLayout::new("x{y}:").is_err());
    }
}
