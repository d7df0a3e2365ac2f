//! Session operations over a [`Backend`].
//!
//! Every operation below is **one** backend round trip running **one** Lua
//! script, which checks that the session is still alive before it writes, so
//! data, TTL and version change together and a write never recreates an expired
//! or destroyed session. (The first use of a script on a fresh Redis costs one
//! extra round trip for the `EVAL` fallback; [`SessionStore::preload_scripts`]
//! avoids even that.)
//!
//! # What is atomic where
//!
//! | operation | keys | single Redis | Redis Cluster |
//! |---|---|---|---|
//! | load + slide | session, user's device set | atomic | atomic (same hash tag) |
//! | write fields (+ slide) | session, device set | atomic | atomic (same hash tag) |
//! | create | session, device set | atomic | atomic (same hash tag) |
//! | destroy | session, device set | atomic | atomic (same hash tag) |
//! | devices / revoke / revoke others / logout-all | a user's set and sessions | atomic | atomic (same hash tag) |
//! | login from a session of the same user | old and new session, set | atomic | atomic (same hash tag) |
//! | login moving a session to another slot | old session, new session, sets | atomic | two steps: the old session is read and deleted atomically (old token dead at once), then the new one is created; if the second step fails the user must sign in again, nothing leaks |
//!
//! Device sets are sorted sets scored by each session's expiry and pruned
//! whenever they are touched; a listing checks every entry against its live
//! session, so a stale entry is never reported and heals on the next touch.

use std::sync::Arc;

use crate::backend::{Backend, Retry, Value};
use crate::config::SessionConfig;
use crate::cookie::{CookieCodec, KeyRing, SessionHandle, SessionToken, UserTag};
use crate::error::{Error, Result};
use crate::keys::KeyLayout;
use crate::script::{self, Keys};
use crate::session::{Applied, Changes, ClientInfo, DeviceSession, Session, Timestamp, meta};

/// The session store: configuration plus a backend. Cheap to clone when the
/// backend is; build it once per process (or Worker isolate) and share it.
#[derive(Debug)]
pub struct SessionStore<B> {
    backend: B,
    inner: Arc<Inner>,
}

impl<B: Clone> Clone for SessionStore<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            inner: Arc::clone(&self.inner),
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: SessionConfig,
    codec: CookieCodec,
    layout: KeyLayout,
}

/// An active-index follow-up on Redis Cluster.
#[derive(Debug, Clone, Copy)]
enum Track {
    /// Add or refresh the entry.
    Set,
    /// Refresh the entry if it exists.
    Touch,
    /// Remove the entry.
    Delete,
}

/// Who revocation applies to.
#[derive(Debug, Clone, Copy)]
enum RevokeMode<'a> {
    One(&'a SessionHandle),
    Others(&'a SessionHandle),
    All,
}

impl<B: Backend> SessionStore<B> {
    /// A store over `backend`. Fails when the configuration is invalid.
    pub fn new(backend: B, config: SessionConfig, keys: KeyRing) -> Result<Self> {
        config.validate()?;
        let codec = CookieCodec::new(config.cookie.clone(), keys)?;
        let layout = KeyLayout::new(config.key_prefix.clone())?;
        Ok(Self {
            backend,
            inner: Arc::new(Inner {
                config,
                codec,
                layout,
            }),
        })
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The cookie codec (sign, verify, `Set-Cookie` values).
    pub fn cookies(&self) -> &CookieCodec {
        &self.inner.codec
    }

    /// The Redis key layout.
    pub fn layout(&self) -> &KeyLayout {
        &self.inner.layout
    }

    /// Loads every script into Redis's script cache in one round trip.
    pub async fn preload_scripts(&self) -> Result<()> {
        script::preload(&self.backend).await
    }

    fn ms(duration: std::time::Duration) -> String {
        duration.as_millis().to_string()
    }

    /// Keys of the session of `token` in roles `s` and `d` (its device set,
    /// if bound), plus the active index where it can join the same script.
    fn keys_of(&self, token: &SessionToken) -> Keys {
        self.with_active(self.own_keys(token, 's', 'd'))
    }

    fn own_keys(&self, token: &SessionToken, session: char, set: char) -> Keys {
        let layout = &self.inner.layout;
        Keys::default()
            .with(session, layout.session(token))
            .maybe(set, token.user_tag().map(|tag| layout.devices(tag)))
    }

    /// Adds the active index, except on Redis Cluster, where it lives in
    /// another slot and is kept by [`Self::track`] instead.
    fn with_active(&self, keys: Keys) -> Keys {
        if self.inner.config.cluster {
            keys
        } else {
            keys.with('a', self.inner.layout.active())
        }
    }

    /// Redis Cluster only: the call that brings the active index in step
    /// with an operation in another slot (idempotent; entries also expire by
    /// their score). `None` when not on a cluster, where the operation's own
    /// script keeps the index.
    fn track_call(&self, ops: &[(Track, &SessionHandle)]) -> Option<script::ScriptCall> {
        if !self.inner.config.cluster || ops.is_empty() {
            return None;
        }
        let idle = Self::ms(self.inner.config.idle_ttl);
        let mut args = Vec::with_capacity(ops.len() * 3);
        for (op, handle) in ops {
            let op = match op {
                Track::Set => "S",
                Track::Touch => "T",
                Track::Delete => "D",
            };
            args.extend([op.to_owned(), handle.as_str().to_owned(), idle.clone()]);
        }
        let keys = Keys::default().with('a', self.inner.layout.active());
        Some(script::TRACK.call(keys, args))
    }

    /// Runs `call`, with the active-index follow-up for `track` in the same
    /// round trip on Redis Cluster, and returns `call`'s reply.
    async fn run_tracked(
        &self,
        call: script::ScriptCall,
        track: &[(Track, &SessionHandle)],
        retry: Retry,
    ) -> Result<Value> {
        let mut calls = vec![call];
        calls.extend(self.track_call(track));
        let mut replies = script::run(&self.backend, &calls, retry).await?;
        replies.truncate(1);
        replies.pop().ok_or(Error::protocol("missing script reply"))
    }

    /// Runs the active-index follow-up alone (Redis Cluster only).
    async fn track(&self, track: &[(Track, &SessionHandle)]) -> Result<()> {
        if let Some(call) = self.track_call(track) {
            script::run(&self.backend, &[call], Retry::Idempotent).await?;
        }
        Ok(())
    }

    /// The number of live sessions. One round trip.
    pub async fn active_sessions(&self) -> Result<u64> {
        let keys = Keys::default().with('a', self.inner.layout.active());
        let reply = script::run_one(
            &self.backend,
            script::ACTIVE.call(keys, Vec::new()),
            Retry::Idempotent,
        )
        .await?;
        reply
            .into_array()
            .and_then(|items| items.get(1).and_then(Value::as_int))
            .and_then(|n| u64::try_from(n).ok())
            .ok_or(Error::protocol("active: expected a count"))
    }

    fn check_user(&self, user: &str) -> Result<()> {
        let limit = self.inner.config.max_user_id_bytes;
        if user.len() > limit {
            return Err(Error::TooLarge {
                what: "user id",
                limit,
                actual: user.len(),
            });
        }
        if user.is_empty() || user.chars().any(char::is_control) {
            return Err(Error::InvalidField {
                name: "user id".to_owned(),
                reason: "must be non-empty text without control characters",
            });
        }
        Ok(())
    }

    fn check_changes(&self, changes: &Changes) -> Result<()> {
        changes.check_sizes(self.inner.config.max_value_bytes)
    }

    fn retry_for(changes: &Changes) -> Retry {
        if changes.has_increments() {
            Retry::Once
        } else {
            Retry::Idempotent
        }
    }

    /// Loads the session of `token` and slides its idle expiry (at most once
    /// per touch interval), in one round trip. `None` when it expired, was
    /// destroyed, or never existed.
    pub async fn load(&self, token: &SessionToken) -> Result<Option<Session>> {
        let config = &self.inner.config;
        let handle = token.handle();
        let call = script::LOAD.call(
            self.keys_of(token),
            vec![
                Self::ms(config.idle_ttl),
                Self::ms(config.touch_interval),
                handle.as_str().to_owned(),
            ],
        );
        let reply = script::run_one(&self.backend, call, Retry::Idempotent).await?;
        let session = parse_session(reply, handle)?;
        // On Redis Cluster: a follow-up when the session slid (at most once per
        // touch interval) or turned out dead.
        match &session {
            Some(s) if s.last_seen == s.loaded_at => {
                self.track(&[(Track::Touch, &s.handle)]).await?
            }
            Some(_) => {}
            None => self.track(&[(Track::Delete, &token.handle())]).await?,
        }
        Ok(session)
    }

    /// Creates a session holding `changes`, bound to `user` if given, and
    /// returns its new token. One round trip.
    pub async fn create(
        &self,
        user: Option<&str>,
        changes: &Changes,
        client: &ClientInfo,
    ) -> Result<(SessionToken, Applied)> {
        self.check_changes(changes)?;
        if let Some(user) = user {
            self.check_user(user)?;
        }
        let token = SessionToken::generate(user.map(UserTag::of));
        let call = script::CREATE.call(
            self.keys_of(&token),
            self.create_args(&token, user, client, None, changes),
        );
        // Safe to retry: a replay of the same create answers without writing.
        let handle = token.handle();
        let reply = self
            .run_tracked(call, &[(Track::Set, &handle)], Retry::Idempotent)
            .await?;
        let applied = parse_write(reply, changes, self.inner.config.max_fields)?;
        Ok((token, applied))
    }

    fn create_args(
        &self,
        token: &SessionToken,
        user: Option<&str>,
        client: &ClientInfo,
        old_handle: Option<&SessionHandle>,
        changes: &Changes,
    ) -> Vec<String> {
        let config = &self.inner.config;
        let mut args = vec![
            Self::ms(config.idle_ttl),
            Self::ms(config.absolute_ttl),
            token.handle().as_str().to_owned(),
            user.unwrap_or("").to_owned(),
            client.user_agent.clone().unwrap_or_default(),
            config.max_fields.to_string(),
        ];
        if let Some(old) = old_handle {
            args.push(old.as_str().to_owned());
        }
        args.extend(changes.script_args());
        args
    }

    /// Applies field-level `changes` to the live session of `token` and slides
    /// its expiry, in one atomic round trip.
    ///
    /// Fails with [`Error::SessionGone`] when the session no longer exists
    /// (nothing is written), [`Error::Conflict`] when
    /// [`Changes::expect_version`] does not match, [`Error::NotAnInteger`],
    /// [`Error::TooManyFields`] or [`Error::TooLarge`] when a limit is hit.
    pub async fn apply(&self, token: &SessionToken, changes: &Changes) -> Result<Applied> {
        self.check_changes(changes)?;
        let config = &self.inner.config;
        let mut args = vec![
            Self::ms(config.idle_ttl),
            token.handle().as_str().to_owned(),
            changes
                .expect_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
            config.max_fields.to_string(),
        ];
        args.extend(changes.script_args());
        let call = script::APPLY.call(self.keys_of(token), args);
        let handle = token.handle();
        let reply = self
            .run_tracked(call, &[(Track::Touch, &handle)], Self::retry_for(changes))
            .await?;
        match parse_write(reply, changes, config.max_fields) {
            Err(Error::SessionGone) => {
                self.track(&[(Track::Delete, &handle)]).await?;
                Err(Error::SessionGone)
            }
            other => other,
        }
    }

    /// Signs `user` in: a new session under a new token, bound to `user`,
    /// carrying the user data of the `current` session (if it is alive) plus
    /// `changes`. The current token is dead from this moment on (session
    /// fixation defence). One round trip, or two on Redis Cluster when the
    /// session has to move to another slot.
    pub async fn login(
        &self,
        current: Option<&SessionToken>,
        user: &str,
        changes: &Changes,
        client: &ClientInfo,
    ) -> Result<(SessionToken, Applied)> {
        self.check_user(user)?;
        self.check_changes(changes)?;
        let Some(current) = current else {
            return self.create(Some(user), changes, client).await;
        };
        let token = SessionToken::generate(Some(UserTag::of(user)));
        let layout = &self.inner.layout;
        let same_slot = KeyLayout::hash_tag(&layout.session(&token))
            == KeyLayout::hash_tag(&layout.session(current));
        let max_fields = self.inner.config.max_fields;
        let (new_handle, old_handle) = (token.handle(), current.handle());
        let track = [(Track::Set, &new_handle), (Track::Delete, &old_handle)];
        // Safe to retry: a replay of the same login answers without writing.
        let retry = Retry::Idempotent;

        let applied = if same_slot || !self.inner.config.cluster {
            let mut keys = self.own_keys(&token, 's', 'd');
            let old = self.own_keys(current, 'o', 'p');
            for role in ['o', 'p'] {
                keys = keys.maybe(role, old.get(role).map(str::to_owned));
            }
            let args =
                self.create_args(&token, Some(user), client, Some(&current.handle()), changes);
            let call = script::LOGIN.call(self.with_active(keys), args);
            let reply = self.run_tracked(call, &track, retry).await?;
            parse_write(reply, changes, max_fields)?
        } else {
            // Redis Cluster, different slots: take the old session (atomically
            // read and delete it), then create the new one with its data.
            let call = script::TAKE.call(
                self.own_keys(current, 's', 'd'),
                vec![current.handle().as_str().to_owned()],
            );
            let taken = script::run_one(&self.backend, call, Retry::Once).await?;
            let mut carried = Changes::new();
            let flat = taken
                .into_array()
                .ok_or(Error::protocol("take: expected an array"))?;
            for pair in flat.chunks(2) {
                if let [field, value] = pair {
                    let field = field.as_str().ok_or(Error::protocol("take: field name"))?;
                    let value = value.as_str().ok_or(Error::protocol("take: field value"))?;
                    carried
                        .ops
                        .push(crate::session::Op::Set(field.to_owned(), value.to_owned()));
                }
            }
            carried.ops.extend(changes.ops.iter().cloned());
            let call = script::CREATE.call(
                self.keys_of(&token),
                self.create_args(&token, Some(user), client, None, &carried),
            );
            let reply = self.run_tracked(call, &track, retry).await?;
            parse_write(reply, &carried, max_fields)?
        };
        Ok((token, applied))
    }

    /// Destroys the session of `token` (logout). Returns whether it existed.
    pub async fn destroy(&self, token: &SessionToken) -> Result<bool> {
        let handle = token.handle();
        let call = script::DESTROY.call(self.keys_of(token), vec![handle.as_str().to_owned()]);
        let reply = self
            .run_tracked(call, &[(Track::Delete, &handle)], Retry::Idempotent)
            .await?;
        Ok(reply.as_int() == Some(1))
    }

    /// Keys of the device set of `user`, plus the active index where allowed.
    fn user_keys(&self, user: &str) -> Result<(UserTag, Keys)> {
        self.check_user(user)?;
        let tag = UserTag::of(user);
        let keys = Keys::default().with('d', self.inner.layout.devices(&tag));
        Ok((tag, self.with_active(keys)))
    }

    /// The live sessions of `user`, oldest expiry first, with their metadata.
    /// Dead entries found on the way are pruned. One round trip.
    pub async fn devices(&self, user: &str) -> Result<Vec<DeviceSession>> {
        let (tag, keys) = self.user_keys(user)?;
        let args = vec![
            self.inner.layout.user_sessions_prefix(&tag),
            self.inner.config.max_devices.to_string(),
        ];
        let reply = script::run_one(
            &self.backend,
            script::DEVICES.call(keys, args),
            Retry::Idempotent,
        )
        .await?;
        parse_devices(reply)
    }

    async fn revoke_with(&self, user: &str, mode: RevokeMode<'_>) -> Result<u64> {
        let (tag, keys) = self.user_keys(user)?;
        let (mode, handle) = match mode {
            RevokeMode::One(h) => ("one", h.as_str()),
            RevokeMode::Others(h) => ("others", h.as_str()),
            RevokeMode::All => ("all", ""),
        };
        let args = vec![
            self.inner.layout.user_sessions_prefix(&tag),
            mode.to_owned(),
            handle.to_owned(),
        ];
        let reply = script::run_one(
            &self.backend,
            script::REVOKE.call(keys, args),
            Retry::Idempotent,
        )
        .await?;
        let gone = reply
            .into_array()
            .ok_or(Error::protocol("revoke: expected a list"))?
            .iter()
            .map(|v| v.as_str().and_then(SessionHandle::parse))
            .collect::<Option<Vec<_>>>()
            .ok_or(Error::protocol("revoke: bad handle"))?;
        let track: Vec<_> = gone.iter().map(|h| (Track::Delete, h)).collect();
        self.track(&track).await?;
        Ok(gone.len() as u64)
    }

    /// Revokes one session of `user`. Returns whether it existed.
    pub async fn revoke(&self, user: &str, handle: &SessionHandle) -> Result<bool> {
        Ok(self.revoke_with(user, RevokeMode::One(handle)).await? == 1)
    }

    /// Revokes every session of `user` except `keep` ("sign out other devices").
    pub async fn revoke_others(&self, user: &str, keep: &SessionHandle) -> Result<u64> {
        self.revoke_with(user, RevokeMode::Others(keep)).await
    }

    /// Revokes every session of `user` (logout everywhere).
    pub async fn logout_all(&self, user: &str) -> Result<u64> {
        self.revoke_with(user, RevokeMode::All).await
    }

    /// Read-modify-write of one field with optimistic concurrency: loads the
    /// session, computes the new value with `update`, and writes it only if no
    /// other write happened in between, retrying up to `attempts` times.
    /// Fails with [`Error::Conflict`] when every attempt raced.
    pub async fn update_field<T, F>(
        &self,
        token: &SessionToken,
        field: &str,
        attempts: u32,
        mut update: F,
    ) -> Result<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        let mut last = Error::SessionGone;
        for _ in 0..attempts.max(1) {
            let session = self.load(token).await?.ok_or(Error::SessionGone)?;
            let value = update(session.get::<T>(field)?);
            let mut changes = Changes::new();
            changes
                .set(field, &value)?
                .expect_version(session.version());
            match self.apply(token, &changes).await {
                Ok(_) => return Ok(value),
                Err(e @ Error::Conflict { .. }) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

fn int(value: &Value, what: &'static str) -> Result<i64> {
    value.as_int().ok_or(Error::protocol(what))
}

fn stamp(value: &Value, what: &'static str) -> Result<Timestamp> {
    u64::try_from(int(value, what)?)
        .map(Timestamp)
        .map_err(|_| Error::protocol(what))
}

/// Parses the `{status, ...}` reply of a write script.
fn parse_write(reply: Value, changes: &Changes, max_fields: usize) -> Result<Applied> {
    let items = reply
        .into_array()
        .ok_or(Error::protocol("write: expected an array"))?;
    let status = items
        .first()
        .and_then(Value::as_int)
        .ok_or(Error::protocol("write: missing status"))?;
    let item = |i: usize| items.get(i).ok_or(Error::protocol("write: short reply"));
    match status {
        0 => {
            let increments = items
                .get(5..)
                .unwrap_or_default()
                .iter()
                .map(|v| int(v, "write: increment"))
                .collect::<Result<Vec<_>>>()?;
            Ok(Applied {
                version: u64::try_from(int(item(1)?, "write: version")?)
                    .map_err(|_| Error::protocol("write: version"))?,
                expires: stamp(item(2)?, "write: expiry")?,
                now: stamp(item(3)?, "write: time")?,
                absolute_expiry: stamp(item(4)?, "write: absolute expiry")?,
                increments,
            })
        }
        1 => Err(Error::SessionGone),
        2 => Err(Error::Conflict {
            expected: changes.expect_version.unwrap_or_default(),
            found: u64::try_from(int(item(1)?, "write: version")?).unwrap_or_default(),
        }),
        3 => Err(Error::NotAnInteger {
            field: item(1)?.as_str().unwrap_or_default().to_owned(),
        }),
        4 => Err(Error::TooManyFields {
            limit: max_fields,
            actual: usize::try_from(int(item(1)?, "write: field count")?).unwrap_or_default(),
        }),
        _ => Err(Error::protocol("write: unknown status")),
    }
}

/// Parses the `{now, expiry, {field, value, ...}}` reply of the load script.
fn parse_session(reply: Value, handle: SessionHandle) -> Result<Option<Session>> {
    let items = match reply {
        Value::Nil => return Ok(None),
        other => other
            .into_array()
            .ok_or(Error::protocol("load: expected an array"))?,
    };
    let [now, expires, flat] =
        <[Value; 3]>::try_from(items).map_err(|_| Error::protocol("load: expected three items"))?;
    let flat = flat
        .into_array()
        .ok_or(Error::protocol("load: expected fields"))?;
    let mut session = Session {
        handle,
        user: None,
        created: Timestamp::default(),
        last_seen: Timestamp::default(),
        expires: stamp(&expires, "load: expiry")?,
        absolute_expiry: Timestamp::default(),
        loaded_at: stamp(&now, "load: time")?,
        version: 0,
        user_agent: None,
        fields: Default::default(),
    };
    let mut iter = flat.into_iter();
    while let (Some(name), Some(value)) = (iter.next(), iter.next()) {
        let name = name
            .into_string()
            .ok_or(Error::protocol("load: field name is not UTF-8"))?;
        let number = || stamp(&value, "load: metadata");
        match name.as_str() {
            meta::CREATED => session.created = number()?,
            meta::SEEN => session.last_seen = number()?,
            meta::ABSOLUTE => session.absolute_expiry = number()?,
            meta::VERSION => session.version = number()?.as_millis(),
            meta::USER => session.user = value.into_string(),
            meta::USER_AGENT => session.user_agent = value.into_string(),
            _ if name.starts_with('_') => {}
            _ => {
                // Non-UTF-8 bytes can only come from outside edge-session;
                // keep them visible (lossily) so a decode reports them.
                let text = match value {
                    Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => other.into_string().unwrap_or_default(),
                };
                session.fields.insert(name, text);
            }
        }
    }
    Ok(Some(session))
}

/// Parses the reply of the devices script.
fn parse_devices(reply: Value) -> Result<Vec<DeviceSession>> {
    let items = reply
        .into_array()
        .ok_or(Error::protocol("devices: expected an array"))?;
    let list = items
        .into_iter()
        .nth(1)
        .and_then(Value::into_array)
        .ok_or(Error::protocol("devices: expected a list"))?;
    list.into_iter()
        .map(|entry| {
            let entry = entry
                .into_array()
                .ok_or(Error::protocol("devices: expected an entry"))?;
            let [handle, created, seen, expires, absolute, ua, _user] =
                <[Value; 7]>::try_from(entry)
                    .map_err(|_| Error::protocol("devices: entry of wrong size"))?;
            Ok(DeviceSession {
                handle: handle
                    .as_str()
                    .and_then(SessionHandle::parse)
                    .ok_or(Error::protocol("devices: bad handle"))?,
                created: stamp(&created, "devices: created")?,
                last_seen: stamp(&seen, "devices: seen")?,
                expires: stamp(&expires, "devices: expiry")?,
                absolute_expiry: stamp(&absolute, "devices: absolute")?,
                user_agent: ua.into_string().filter(|s| !s.is_empty()),
            })
        })
        .collect()
}
