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
//! | devices / revoke one | a user's set and sessions | atomic | atomic (same hash tag) |
//! | revoke others / logout-all | a user's set and sessions | atomic per batch of [`REVOKE_BATCH`] sessions, repeated until none is left | the same (same hash tag) |
//! | login from a session of the same user (with the per-user cap) | old and new session, set, the sessions the cap ends | atomic | atomic (same hash tag) |
//! | login moving a session to another slot | old session, new session, sets | atomic | two steps: the old session is read and deleted atomically (old token dead at once), then the new one is created; if the second step fails the user must sign in again, nothing leaks |
//!
//! Device sets are sorted sets scored by each session's expiry and pruned
//! whenever they are touched; a listing checks every entry against its live
//! session, so a stale entry is never reported and heals on the next touch.

use std::sync::Arc;

use crate::backend::{self, Backend, Command, Retry, Value};
use crate::config::{REVOKE_BATCH, SessionConfig};
use crate::cookie::{CookieCodec, KeyRing, SessionHandle, SessionToken, UserTag};
use crate::error::{Error, Result};
use crate::hooks::{Hooks, SessionEvent};
use crate::keys::KeyLayout;
use crate::script::{self, Keys};
use crate::session::{
    Applied, Changes, ClientInfo, DeviceSession, Session, Storage, Timestamp, inflate_value, meta,
};

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

#[derive(Clone)]
struct Inner {
    config: SessionConfig,
    codec: CookieCodec,
    layout: KeyLayout,
    /// The script context after the key roles (see `scripts/lib.lua`).
    context: String,
    hooks: Option<Arc<dyn Hooks>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("codec", &self.codec)
            .field("layout", &self.layout)
            .field("hooks", &self.hooks.is_some())
            .finish()
    }
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
        // Bound to the key prefix: a deployment with other keys in Redis
        // refuses this one's cookies before any Redis call, even with the
        // same secrets.
        let codec = CookieCodec::new(config.cookie.clone(), keys)?.bound_to(&config.key_prefix);
        let layout = KeyLayout::new(config.key_prefix.clone())?;
        let indexes: Vec<String> = config.indexes.iter().map(ToString::to_string).collect();
        let context = format!(
            "{}\n{}\n{}\n{}",
            layout.prefix(),
            if config.cluster { "c" } else { "n" },
            indexes.join(","),
            config.stats_days
        );
        Ok(Self {
            backend,
            inner: Arc::new(Inner {
                config,
                codec,
                layout,
                context,
                hooks: None,
            }),
        })
    }

    /// Sends session lifecycle events to `hooks` (see [`Hooks`]). Call it
    /// before cloning the store: clones made earlier keep their hooks.
    #[must_use]
    pub fn with_hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        Arc::make_mut(&mut self.inner).hooks = Some(hooks);
        self
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        if let Some(hooks) = &self.inner.hooks {
            hooks.on_event(&event);
        }
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
    /// if bound).
    fn keys_of(&self, token: &SessionToken) -> Keys {
        self.own_keys(token, 's', 'd')
    }

    /// A call of `script` in this store's context.
    pub(crate) fn call(
        &self,
        script: &'static script::Script,
        keys: Keys,
        args: Vec<String>,
    ) -> script::ScriptCall {
        script.call(keys, &self.inner.context, args)
    }

    /// Keys naming one global key (the routing key of global scripts).
    pub(crate) fn global_keys(&self, name: &str) -> Keys {
        Keys::default().with('g', self.inner.layout.global(name))
    }

    /// Runs session scripts in one round trip and returns their replies. On
    /// Redis Cluster each reply comes paired with the global operations
    /// (indexes, statistics) its script could not run in its own slot; they
    /// follow in one more round trip, in the global slot.
    pub(crate) async fn run_global(
        &self,
        calls: &[script::ScriptCall],
        retry: Retry,
    ) -> Result<Vec<Value>> {
        let (replies, ops) = self.run_deferring(calls, Vec::new(), retry).await?;
        self.run_deferred(ops).await?;
        Ok(replies)
    }

    /// Runs the global operations `ops` returned by cluster-mode scripts.
    async fn run_deferred(&self, ops: Vec<String>) -> Result<()> {
        if !ops.is_empty() {
            let call = self.call(&script::TRACK, self.global_keys("active"), ops);
            // Counters are not idempotent: no blind retry.
            script::run(&self.backend, &[call], Retry::Once).await?;
        }
        Ok(())
    }

    /// Runs `calls`, with the global operations `carried` from an earlier
    /// step in the same round trip, and returns their replies and (on Redis
    /// Cluster) the global operations they deferred, not yet run.
    async fn run_deferring(
        &self,
        calls: &[script::ScriptCall],
        carried: Vec<String>,
        retry: Retry,
    ) -> Result<(Vec<Value>, Vec<String>)> {
        if carried.is_empty() {
            let replies = script::run(&self.backend, calls, retry).await?;
            return self.split_deferred(replies);
        }
        let track = self.call(&script::TRACK, self.global_keys("active"), carried);
        let mut all: Vec<&script::ScriptCall> = calls.iter().collect();
        all.push(&track);
        let mut replies = script::run_refs(&self.backend, &all, Retry::Once).await?;
        replies.pop();
        self.split_deferred(replies)
    }

    fn split_deferred(&self, replies: Vec<Value>) -> Result<(Vec<Value>, Vec<String>)> {
        if !self.inner.config.cluster {
            return Ok((replies, Vec::new()));
        }
        let mut out = Vec::with_capacity(replies.len());
        let mut ops = Vec::new();
        for reply in replies {
            let pair = reply
                .into_array()
                .ok_or(Error::protocol("cluster reply: expected a pair"))?;
            let [reply, global] = <[Value; 2]>::try_from(pair)
                .map_err(|_| Error::protocol("cluster reply: expected a pair"))?;
            for op in global.into_array().unwrap_or_default() {
                ops.push(
                    op.into_string()
                        .ok_or(Error::protocol("cluster reply: bad operation"))?,
                );
            }
            out.push(reply);
        }
        Ok((out, ops))
    }

    /// [`Self::run_global`] for one call.
    async fn run_global_one(&self, call: script::ScriptCall, retry: Retry) -> Result<Value> {
        self.run_global(std::slice::from_ref(&call), retry)
            .await?
            .pop()
            .ok_or(Error::protocol("missing script reply"))
    }

    fn own_keys(&self, token: &SessionToken, session: char, set: char) -> Keys {
        let layout = &self.inner.layout;
        Keys::default()
            .with(session, layout.session(token))
            .maybe(set, token.user_tag().map(|tag| layout.devices(tag)))
    }

    /// The number of live sessions. One round trip.
    pub async fn active_sessions(&self) -> Result<u64> {
        let call = self.call(&script::ACTIVE, self.global_keys("active"), Vec::new());
        let reply = script::run_one(&self.backend, call, Retry::Idempotent).await?;
        reply
            .into_array()
            .and_then(|items| items.get(1).and_then(Value::as_int))
            .and_then(|n| u64::try_from(n).ok())
            .ok_or(Error::protocol("active: expected a count"))
    }

    /// Checks a user id named by a lookup (device list, revocations): not
    /// empty, no control characters, within the length limit. Ids refused
    /// at sign-in by a newer rule ([`Self::check_new_user`]) still pass, so
    /// sessions signed in before it can be listed and ended.
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

    /// Checks a user id a session is about to be bound to (login, create):
    /// [`Self::check_user`]'s rules, and no whitespace at either end. Header
    /// values lose their leading and trailing whitespace on the way to the
    /// origin (`x-session-user`), so `"alice "` would look like `"alice"`
    /// there while being another user here.
    pub(crate) fn check_new_user(&self, user: &str) -> Result<()> {
        self.check_user(user)?;
        if user.starts_with(char::is_whitespace) || user.ends_with(char::is_whitespace) {
            return Err(Error::InvalidField {
                name: "user id".to_owned(),
                reason: "must not start or end with whitespace",
            });
        }
        Ok(())
    }

    fn check_changes(&self, changes: &Changes) -> Result<()> {
        changes.check_sizes(self.inner.config.max_value_bytes)
    }

    /// How values are stored (compression).
    fn storage(&self) -> Storage<'_> {
        let config = &self.inner.config;
        Storage {
            compress_above: config.compress_bytes,
            indexes: &config.indexes,
        }
    }

    /// The most a stored value may inflate to.
    fn inflate_limit(&self) -> usize {
        let config = &self.inner.config;
        config.max_session_bytes.max(config.max_value_bytes)
    }

    fn retry_for(changes: &Changes) -> Retry {
        if changes.has_increments() {
            Retry::Once
        } else {
            Retry::Idempotent
        }
    }

    /// Loads the session of `token` and slides its idle expiry (at most once
    /// per touch interval). `None` when it expired, was destroyed, or never
    /// existed.
    ///
    /// A read is one plain `HGETALL` of the session hash (no script, so on a
    /// replicated Upstash database a replica answers it, with the sync token
    /// attached): the hash's own metadata (`_abs`, `_exp`, `_seen`, kept exact
    /// by every write) tells whether the session is alive, by this
    /// instance's clock, and whether a slide is due. Only when one is (at most
    /// once per touch interval per session), or the hash predates `_exp`, the
    /// load-and-slide script runs too, in a second round trip. A dead session
    /// a read finds is left to its TTL (writes never resurrect it).
    pub async fn load(&self, token: &SessionToken) -> Result<Option<Session>> {
        match self.read_live(token).await? {
            (Some(_), true) => self.load_sliding(token).await,
            (session, _) => Ok(session),
        }
    }

    /// The plain read of [`Self::load`], and whether a slide is due. A
    /// session written before `_exp` existed takes the load-and-slide script
    /// once (it writes `_exp`), so it comes back slid.
    pub(crate) async fn read_live(&self, token: &SessionToken) -> Result<(Option<Session>, bool)> {
        Ok(match self.read(token).await? {
            Read::Gone => (None, false),
            Read::Live(session, due) => (Some(*session), due),
            Read::Legacy => (self.load_sliding(token).await?, false),
        })
    }

    /// One `HGETALL`, judged by the hash's metadata.
    async fn read(&self, token: &SessionToken) -> Result<Read> {
        let key = self.inner.layout.session(token);
        let reply = backend::query(&self.backend, Command::new("HGETALL").arg(key)).await?;
        let flat = match reply {
            Value::Nil => return Ok(Read::Gone),
            other => other
                .into_array()
                .ok_or(Error::protocol("read: expected an array"))?,
        };
        if flat.is_empty() {
            return Ok(Read::Gone);
        }
        let now = Timestamp(crate::platform::unix_now_ms());
        let mut session = Session::empty(token.handle(), now);
        let expires = fill_session(&mut session, flat, self.inflate_limit())?;
        // A hash without the metadata is no session.
        if session.absolute_expiry == Timestamp::default()
            || session.absolute_expiry <= now
            || session.created == Timestamp::default()
        {
            return Ok(Read::Gone);
        }
        // Written before `_exp` existed: the script writes it.
        let Some(expires) = expires else {
            return Ok(Read::Legacy);
        };
        if expires <= now {
            return Ok(Read::Gone);
        }
        let interval = self.inner.config.touch_interval.as_millis() as u64;
        let due = session.last_seen == Timestamp::default()
            || now
                .as_millis()
                .saturating_sub(session.last_seen.as_millis())
                >= interval;
        session.expires = expires;
        Ok(Read::Live(Box::new(session), due))
    }

    /// Runs a slide a read found due (see [`crate::Commit::touch`]): one
    /// script that re-checks the session is alive and slides its idle expiry
    /// exactly as a load always did (at most once per touch interval, index
    /// entries re-scored). Sends the sync token of the request it came from.
    pub async fn touch(&self, touch: Touch) -> Result<()> {
        let Touch { token, sync } = touch;
        sync.scope(self.load_sliding(&token)).await.map(|_| ())
    }

    /// Loads and slides in one script (the slide of [`Self::load`]).
    pub(crate) async fn load_sliding(&self, token: &SessionToken) -> Result<Option<Session>> {
        let config = &self.inner.config;
        let handle = token.handle();
        let call = self.call(
            &script::LOAD,
            self.keys_of(token),
            vec![
                Self::ms(config.idle_ttl),
                Self::ms(config.touch_interval),
                handle.as_str().to_owned(),
            ],
        );
        let reply = self.run_global_one(call, Retry::Idempotent).await?;
        parse_session(reply, handle, self.inflate_limit())
    }

    /// [`Self::load`] for a request from `client`: a session bound to another
    /// network or user agent (`SESSION_BIND_SUBNET`, `SESSION_BIND_USER_AGENT`)
    /// is not returned, a [`SessionEvent::BindingMismatch`] goes to the hooks
    /// and the second value is true. The session itself is left as it is (the
    /// load still counts as a use for its idle expiry).
    pub async fn load_for(
        &self,
        token: &SessionToken,
        client: &ClientInfo,
    ) -> Result<(Option<Session>, bool)> {
        let session = self.load(token).await?;
        Ok(self.check_binding(session, client))
    }

    /// The binding check of [`Self::load_for`] on an already loaded session.
    pub(crate) fn check_binding(
        &self,
        session: Option<Session>,
        client: &ClientInfo,
    ) -> (Option<Session>, bool) {
        let Some(session) = session else {
            return (None, false);
        };
        match self.binding_mismatch(&session, client) {
            None => (Some(session), false),
            Some(reason) => {
                log::warn!(
                    "edge-session: session {} used from another {reason} than it is bound to: treated as anonymous",
                    session.handle
                );
                self.emit(SessionEvent::BindingMismatch {
                    handle: session.handle,
                    user: session.user,
                    reason,
                });
                (None, true)
            }
        }
    }

    /// What of the session's binding `client` does not match, if anything.
    /// Sessions stored without a binding (created while binding was off)
    /// match anything; a bound session presented without a known client IP
    /// does not match.
    fn binding_mismatch(&self, session: &Session, client: &ClientInfo) -> Option<&'static str> {
        let config = &self.inner.config;
        let binding = &session.binding;
        if config.bind_subnet
            && let Some(net) = &binding.net
            && client.subnet_hash(&session.handle).as_deref() != Some(net.as_str())
        {
            return Some("subnet");
        }
        if config.bind_user_agent
            && let Some(ua) = &binding.user_agent
            && client.user_agent_hash(&session.handle) != *ua
        {
            return Some("user_agent");
        }
        None
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
            self.check_new_user(user)?;
        }
        let token = SessionToken::generate(user.map(UserTag::of));
        let call = self.call(
            &script::CREATE,
            self.keys_of(&token),
            self.create_args(&token, user, client, None, changes),
        );
        // Safe to retry: a replay of the same create answers without writing.
        let reply = self.run_global_one(call, Retry::Idempotent).await?;
        let (applied, capped) = parse_created(reply, changes, &self.inner.config)?;
        self.emit(SessionEvent::Created {
            handle: token.handle(),
            user: user.map(str::to_owned),
        });
        self.emit_destroyed(user, capped);
        Ok((token, applied))
    }

    /// A [`SessionEvent::Destroyed`] for each of the sessions of `user` that
    /// a revocation or a login's per-user cap ended.
    fn emit_destroyed(&self, user: Option<&str>, ended: Vec<SessionHandle>) {
        for handle in ended {
            self.emit(SessionEvent::Destroyed {
                handle,
                user: user.map(str::to_owned),
            });
        }
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
        let handle = token.handle();
        let bind_net = if config.bind_subnet {
            client.subnet_hash(&handle)
        } else {
            None
        };
        let bind_ua = config
            .bind_user_agent
            .then(|| client.user_agent_hash(&handle));
        let mut args = vec![
            Self::ms(config.idle_ttl),
            Self::ms(config.absolute_ttl),
            handle.as_str().to_owned(),
            user.unwrap_or("").to_owned(),
            client.user_agent.clone().unwrap_or_default(),
            config.max_fields.to_string(),
            config.max_session_bytes.to_string(),
            bind_net.unwrap_or_default(),
            bind_ua.unwrap_or_default(),
            config.max_sessions_per_user.to_string(),
            REVOKE_BATCH.to_string(),
        ];
        if let Some(old) = old_handle {
            args.push(old.as_str().to_owned());
            args.push(config.login_carry.script_arg());
        }
        let storage = self.storage();
        args.extend(changes.script_args(&storage));
        args
    }

    /// Applies field-level `changes` to the live session of `token` and slides
    /// its expiry, in one atomic round trip.
    ///
    /// Fails with [`Error::SessionGone`] when the session no longer exists
    /// (nothing is written), [`Error::Conflict`] when
    /// [`Changes::expect_version`] does not match, [`Error::NotAnInteger`],
    /// [`Error::TooManyFields`] or [`Error::TooLarge`] when a limit is hit
    /// (`SESSION_MAX_VALUE_BYTES` before any Redis call,
    /// `SESSION_MAX_SESSION_BYTES` atomically in the script).
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
            config.max_session_bytes.to_string(),
            Self::ms(config.touch_interval),
        ];
        let storage = self.storage();
        args.extend(changes.script_args(&storage));
        let call = self.call(&script::APPLY, self.keys_of(token), args);
        let reply = self.run_global_one(call, Self::retry_for(changes)).await?;
        parse_write(reply, changes, config)
    }

    /// Signs `user` in: a new session under a new token, bound to `user`,
    /// holding `changes` and the user data of the `current` session (if it
    /// is alive) that [`SessionConfig::login_carry`] keeps, when that
    /// session is anonymous or already `user`'s; a session of another user
    /// passes nothing on. The current token is dead from this moment on
    /// (session fixation defence). When `user` then holds more than
    /// [`SessionConfig::max_sessions_per_user`] sessions, the ones that
    /// expire soonest end in the same step (a [`SessionEvent::Destroyed`]
    /// each). One round trip, or two on Redis Cluster when the session has
    /// to move to another slot.
    ///
    /// Fails with [`Error::InvalidField`] for a user id that is empty, holds
    /// control characters or starts or ends with whitespace, before any
    /// Redis call.
    pub async fn login(
        &self,
        current: Option<&SessionToken>,
        user: &str,
        changes: &Changes,
        client: &ClientInfo,
    ) -> Result<(SessionToken, Applied)> {
        self.check_new_user(user)?;
        self.check_changes(changes)?;
        let Some(current) = current else {
            return self.create(Some(user), changes, client).await;
        };
        let token = SessionToken::generate(Some(UserTag::of(user)));
        let layout = &self.inner.layout;
        let same_slot = KeyLayout::hash_tag(&layout.session(&token))
            == KeyLayout::hash_tag(&layout.session(current));
        let config = &self.inner.config;
        // Safe to retry: a replay of the same login answers without writing.
        let retry = Retry::Idempotent;

        let (applied, capped) = if same_slot || !self.inner.config.cluster {
            let mut keys = self.own_keys(&token, 's', 'd');
            let old = self.own_keys(current, 'o', 'p');
            for role in ['o', 'p'] {
                keys = keys.maybe(role, old.get(role).map(str::to_owned));
            }
            let args =
                self.create_args(&token, Some(user), client, Some(&current.handle()), changes);
            let call = self.call(&script::LOGIN, keys, args);
            let reply = self.run_global_one(call, retry).await?;
            parse_created(reply, changes, config)?
        } else {
            // Redis Cluster, different slots: take the old session (atomically
            // read and delete it, keeping what may be carried), then create
            // the new one with that data.
            let call = self.call(
                &script::TAKE,
                self.own_keys(current, 's', 'd'),
                vec![
                    current.handle().as_str().to_owned(),
                    user.to_owned(),
                    config.login_carry.script_arg(),
                ],
            );
            let (taken, deferred) = self.run_deferring(&[call], Vec::new(), Retry::Once).await?;
            let taken = taken
                .into_iter()
                .next()
                .ok_or(Error::protocol("missing script reply"))?;
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
            let call = self.call(
                &script::CREATE,
                self.keys_of(&token),
                self.create_args(&token, Some(user), client, None, &carried),
            );
            // The take's index updates ride along with the create.
            let (replies, ops) = self.run_deferring(&[call], deferred, retry).await?;
            self.run_deferred(ops).await?;
            let reply = replies
                .into_iter()
                .next()
                .ok_or(Error::protocol("missing script reply"))?;
            parse_created(reply, &carried, config)?
        };
        self.emit(SessionEvent::Regenerated {
            old: current.handle(),
            new: token.handle(),
            user: user.to_owned(),
        });
        self.emit_destroyed(Some(user), capped);
        Ok((token, applied))
    }

    /// Destroys the session of `token` (logout). Returns whether it existed.
    pub async fn destroy(&self, token: &SessionToken) -> Result<bool> {
        let handle = token.handle();
        let call = self.call(
            &script::DESTROY,
            self.keys_of(token),
            vec![handle.as_str().to_owned()],
        );
        let reply = self.run_global_one(call, Retry::Idempotent).await?;
        let existed = reply.as_int() == Some(1);
        if existed {
            self.emit(SessionEvent::Destroyed { handle, user: None });
        }
        Ok(existed)
    }

    /// Keys of the device set of `user`, plus the active index where allowed.
    fn user_keys(&self, user: &str) -> Result<(UserTag, Keys)> {
        self.check_user(user)?;
        let tag = UserTag::of(user);
        let keys = Keys::default().with('d', self.inner.layout.devices(&tag));
        Ok((tag, keys))
    }

    /// The live sessions of `user`, oldest expiry first, with their metadata.
    /// Dead entries found on the way are pruned. One round trip.
    pub async fn devices(&self, user: &str) -> Result<Vec<DeviceSession>> {
        let (tag, keys) = self.user_keys(user)?;
        let args = vec![
            self.inner.layout.user_sessions_prefix(&tag),
            self.inner.config.max_devices.to_string(),
        ];
        let call = self.call(&script::DEVICES, keys, args);
        let reply = self.run_global_one(call, Retry::Idempotent).await?;
        parse_devices(reply)
    }

    /// Revokes sessions of `user`. "others" and "all" run as calls of
    /// revoke.lua that end at most [`REVOKE_BATCH`] sessions each, repeated
    /// until none is left: no call holds Redis for long, however many
    /// sessions the user has. Each batch's [`SessionEvent::Destroyed`]
    /// events go out as it completes; if a call fails midway, the sessions
    /// already ended stay ended and calling again finishes the job.
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
            REVOKE_BATCH.to_string(),
        ];
        let mut total = 0u64;
        loop {
            let call = self.call(&script::REVOKE, keys.clone(), args.clone());
            let reply = self.run_global_one(call, Retry::Idempotent).await?;
            let (more, gone) = parse_revoked(reply)?;
            total += gone.len() as u64;
            self.emit_destroyed(Some(user), gone);
            if !more {
                break;
            }
        }
        if matches!(mode, "all") {
            self.emit(SessionEvent::LoggedOutEverywhere {
                user: user.to_owned(),
                sessions: total,
            });
        }
        Ok(total)
    }

    /// Revokes one session of `user`. Returns whether it existed.
    pub async fn revoke(&self, user: &str, handle: &SessionHandle) -> Result<bool> {
        Ok(self.revoke_with(user, RevokeMode::One(handle)).await? == 1)
    }

    /// Revokes every session of `user` except `keep` ("sign out other
    /// devices"), in calls of at most [`REVOKE_BATCH`] sessions.
    pub async fn revoke_others(&self, user: &str, keep: &SessionHandle) -> Result<u64> {
        self.revoke_with(user, RevokeMode::Others(keep)).await
    }

    /// Revokes every session of `user` (logout everywhere), in calls of at
    /// most [`REVOKE_BATCH`] sessions each until none is left (one round
    /// trip per 200 sessions). Returns how many ended; one
    /// [`SessionEvent::LoggedOutEverywhere`] with that total follows their
    /// [`SessionEvent::Destroyed`] events.
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
fn parse_write(reply: Value, changes: &Changes, config: &SessionConfig) -> Result<Applied> {
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
            limit: config.max_fields,
            actual: usize::try_from(int(item(1)?, "write: field count")?).unwrap_or_default(),
        }),
        5 => Err(Error::TooLarge {
            what: "session data",
            limit: config.max_session_bytes,
            actual: usize::try_from(int(item(1)?, "write: session size")?).unwrap_or_default(),
        }),
        _ => Err(Error::protocol("write: unknown status")),
    }
}

/// Parses the reply of create.lua or login.lua: a write's reply (see
/// [`parse_write`]) that ends, on success, with the handles of the sessions
/// the per-user cap ended.
fn parse_created(
    reply: Value,
    changes: &Changes,
    config: &SessionConfig,
) -> Result<(Applied, Vec<SessionHandle>)> {
    let mut items = reply
        .into_array()
        .ok_or(Error::protocol("write: expected an array"))?;
    let mut capped = Vec::new();
    if items.first().and_then(Value::as_int) == Some(0) {
        let ended = items
            .pop()
            .and_then(Value::into_array)
            .ok_or(Error::protocol("create: expected the ended sessions"))?;
        capped = handles(ended, "create: bad handle")?;
    }
    let applied = parse_write(Value::Array(items), changes, config)?;
    Ok((applied, capped))
}

/// Session handles from a list reply.
fn handles(list: Vec<Value>, what: &'static str) -> Result<Vec<SessionHandle>> {
    list.iter()
        .map(|v| v.as_str().and_then(SessionHandle::parse))
        .collect::<Option<Vec<_>>>()
        .ok_or(Error::protocol(what))
}

/// Parses the `{more, {handle, ...}}` reply of revoke.lua.
fn parse_revoked(reply: Value) -> Result<(bool, Vec<SessionHandle>)> {
    let items = reply
        .into_array()
        .ok_or(Error::protocol("revoke: expected a pair"))?;
    let [more, gone] =
        <[Value; 2]>::try_from(items).map_err(|_| Error::protocol("revoke: expected a pair"))?;
    let gone = gone
        .into_array()
        .ok_or(Error::protocol("revoke: expected a list"))?;
    Ok((
        int(&more, "revoke: more")? != 0,
        handles(gone, "revoke: bad handle")?,
    ))
}

/// Parses the `{now, expiry, {field, value, ...}}` reply of the load script,
/// inflating compressed values to at most `inflate_limit` bytes.
fn parse_session(
    reply: Value,
    handle: SessionHandle,
    inflate_limit: usize,
) -> Result<Option<Session>> {
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
    let mut session = Session::empty(handle, stamp(&now, "load: time")?);
    session.expires = stamp(&expires, "load: expiry")?;
    fill_session(&mut session, flat, inflate_limit)?;
    Ok(Some(session))
}

/// Fills `session` from a flat `{field, value, ...}` hash, inflating
/// compressed values to at most `inflate_limit` bytes; returns `_exp`.
fn fill_session(
    session: &mut Session,
    flat: Vec<Value>,
    inflate_limit: usize,
) -> Result<Option<Timestamp>> {
    let mut expires = None;
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
            meta::EXPIRES => expires = Some(number()?),
            meta::VERSION => session.version = number()?.as_millis(),
            meta::USER => session.user = value.into_string(),
            meta::USER_AGENT => session.user_agent = value.into_string(),
            meta::BIND_NET => session.binding.net = value.into_string(),
            meta::BIND_UA => session.binding.user_agent = value.into_string(),
            _ if name.starts_with('_') => {}
            _ => {
                // Non-UTF-8 bytes can only come from outside edge-session;
                // keep them visible (lossily) so a decode reports them.
                let text = match value {
                    Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => other.into_string().unwrap_or_default(),
                };
                let text = match inflate_value(&text, inflate_limit) {
                    None => text,
                    Some(Ok(inflated)) => inflated,
                    Some(Err(reason)) => {
                        session.undecodable.insert(name.clone(), reason);
                        text
                    }
                };
                session.fields.insert(name, text);
            }
        }
    }
    Ok(expires)
}

/// What a plain read found.
enum Read {
    /// No live session.
    Gone,
    /// A live session; true when a slide is due.
    Live(Box<Session>, bool),
    /// A session written before `_exp` existed.
    Legacy,
}

/// A slide a read found due, to run after the response with
/// [`SessionStore::touch`] (see [`crate::Commit::touch`]). Its `Debug` leaves
/// the token out.
#[derive(Clone)]
pub struct Touch {
    pub(crate) token: SessionToken,
    pub(crate) sync: crate::backend::SyncToken,
}

impl std::fmt::Debug for Touch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Touch")
            .field("handle", &self.token.handle())
            .finish_non_exhaustive()
    }
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
