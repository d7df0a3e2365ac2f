//! Configuration, read from environment variables (or any name -> value
//! lookup, such as a Worker's `env`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SESSION_SECRETS` | required | `kid:base64secret[,kid:base64secret...]`; first signs, all verify |
//! | `SESSION_COOKIE_NAME` | `__Host-session` | cookie name |
//! | `SESSION_COOKIE_SECURE` | `true` | `Secure` attribute |
//! | `SESSION_COOKIE_HTTP_ONLY` | `true` | `HttpOnly` attribute |
//! | `SESSION_COOKIE_SAMESITE` | `lax` | `strict`, `lax` or `none` |
//! | `SESSION_COOKIE_PATH` | `/` | `Path` attribute |
//! | `SESSION_COOKIE_DOMAIN` | unset | `Domain` attribute |
//! | `SESSION_COOKIE_PERSISTENT` | `true` | `Max-Age` up to the absolute expiry |
//! | `SESSION_KEY_PREFIX` | `es:` | prefix of every Redis key |
//! | `SESSION_IDLE_TTL` | `30m` | idle timeout (sliding) |
//! | `SESSION_ABSOLUTE_TTL` | `24h` | absolute lifetime, never extended |
//! | `SESSION_TOUCH_INTERVAL` | `60s` | a read slides the expiry at most this often |
//! | `SESSION_MAX_FIELDS` | `64` | user fields per session |
//! | `SESSION_MAX_VALUE_BYTES` | `16384` | JSON text per field (as written, before compression) |
//! | `SESSION_MAX_SESSION_BYTES` | `262144` | everything a session holds in Redis: field names plus stored (compressed) values; enforced atomically by the write scripts |
//! | `SESSION_COMPRESS_BYTES` | `1024` | values whose JSON text is longer are stored deflated (0 = never) |
//! | `SESSION_BIND_SUBNET` | `false` | bind a session to its client's /24 (IPv4) or /64 (IPv6) network |
//! | `SESSION_BIND_USER_AGENT` | `false` | bind a session to its client's `User-Agent` |
//! | `SESSION_REDIS_CLUSTER` | `false` | never run one script across cluster slots |
//! | `SESSION_INDEXES` | none | fields to index, e.g. `tenant,cart[]` (`[]`: each element of a JSON array) |
//! | `SESSION_STATS_DAYS` | `30` | days of daily statistics kept (logins, distinct users, sessions created) |
//! | `SESSION_LOGIN_CARRY` | `all` | which fields of an anonymous or same-user session a login keeps: `all`, `none` or a list `cart,theme`; a session of another user never passes on anything ([`LoginCarry`]) |
//! | `SESSION_MAX_SESSIONS_PER_USER` | `100` | live sessions one user may hold; a login past it ends that user's sessions that expire soonest (0 = no cap) |
//! | `SESSION_BACKEND` | auto | `rest` or `direct`; auto picks REST when its URL is set |
//! | `UPSTASH_REDIS_REST_URL` (alias `KV_REST_API_URL`) | | REST endpoint |
//! | `UPSTASH_REDIS_REST_TOKEN` (alias `KV_REST_API_TOKEN`) | | REST bearer token |
//! | `REDIS_URL` | | direct Redis URL (feature `direct`) |
//! | `REDIS_CLUSTER_NODES` | | Redis Cluster: comma-separated URLs of some of its nodes (feature `direct`); implies `SESSION_REDIS_CLUSTER=true` |
//! | `REDIS_SENTINELS` | | Redis Sentinel: comma-separated sentinel URLs (feature `direct`); the backend follows failovers |
//! | `REDIS_SENTINEL_MASTER` | | the master's name in Sentinel (`sentinel monitor <name> ...`); required with `REDIS_SENTINELS` |
//! | `REDIS_PASSWORD` | | password of the Redis nodes reached through `REDIS_SENTINELS` (a sentinel's own goes in its URL) |
//! | `SESSION_STORE_TIMEOUT_MS` | `3000` | per-attempt timeout |
//! | `SESSION_STORE_RETRIES` | `2` | extra attempts on retryable failures |
//!
//! Durations take a number of seconds or a suffix: `90`, `90s`, `30m`, `24h`, `7d`.

use std::fmt;
use std::time::Duration;

use crate::cookie::{CookieConfig, KeyRing, SameSitePolicy};
use crate::error::{Error, Result};

/// How sessions behave (everything but the secrets and the backend).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Cookie attributes.
    pub cookie: CookieConfig,
    /// Prefix of every Redis key.
    pub key_prefix: String,
    /// Idle timeout: a session unused this long expires.
    pub idle_ttl: Duration,
    /// Absolute lifetime from creation (or login); sliding never passes it.
    pub absolute_ttl: Duration,
    /// A read moves the idle expiry at most this often (0 = on every read).
    pub touch_interval: Duration,
    /// Maximum number of user fields in one session.
    pub max_fields: usize,
    /// Maximum JSON text of one field, in bytes, as written (before
    /// compression).
    pub max_value_bytes: usize,
    /// Maximum size of everything a session holds in Redis, in bytes: field
    /// names plus stored values (after compression). Enforced inside the
    /// write scripts; also bounds inflating a stored value.
    pub max_session_bytes: usize,
    /// Values whose JSON text is longer than this are stored compressed
    /// (0 = never). See [`crate::session`].
    pub compress_bytes: usize,
    /// Bind sessions to the client's /24 (IPv4) or /64 (IPv6) network: a
    /// session used from another network is anonymous for that request.
    pub bind_subnet: bool,
    /// Bind sessions to the client's `User-Agent`.
    pub bind_user_agent: bool,
    /// Maximum length of a user id, in bytes.
    pub max_user_id_bytes: usize,
    /// Maximum number of sessions a device listing returns.
    pub max_devices: usize,
    /// Redis Cluster mode: a login that moves a session between slots runs as
    /// two single-slot steps instead of one script, and global keys (indexes,
    /// statistics) are updated right after each session script.
    pub cluster: bool,
    /// Fields with a secondary index (cross-session queries and counts).
    pub indexes: Vec<IndexSpec>,
    /// Days of daily statistics kept.
    pub stats_days: u32,
    /// Which user fields of the session a login replaces survive into the
    /// new one (`SESSION_LOGIN_CARRY`, default [`LoginCarry::All`]). Applies
    /// only to an anonymous session or one of the same user: a session of
    /// another user never passes anything on (see [`LoginCarry`]).
    pub login_carry: LoginCarry,
    /// The most live sessions one user may hold
    /// (`SESSION_MAX_SESSIONS_PER_USER`, default 100; 0 = no cap). A login
    /// that takes the user past it ends the user's sessions that expire
    /// soonest (the first of the device set, scored by expiry: the least
    /// recently used), in the same atomic script as the login, at most
    /// [`REVOKE_BATCH`] of them per login.
    pub max_sessions_per_user: usize,
}

/// The most sessions one script call ends: a login's cap eviction
/// ([`SessionConfig::max_sessions_per_user`]), one step of a logout-all or a
/// revoke-others (which repeat such steps until the user has none left), so
/// that no call holds Redis for long: ending one indexed session costs Redis
/// about 20 to 50 us, so a call of 200 stays around 5 to 10 ms, far under
/// the 50 ms that would stall every other client.
pub const REVOKE_BATCH: usize = 200;

/// Which user fields of the current session a login carries into the new,
/// regenerated one (`SESSION_LOGIN_CARRY`).
///
/// The policy applies when the session being replaced is anonymous (a
/// visitor's cart before signing in) or already belongs to the user signing
/// in (a re-login). **A session that belongs to another user never carries
/// anything**, whatever the policy: when bob signs in from the browser where
/// alice was signed in, his session starts empty (plus the login's own
/// changes), so nothing of alice's reaches him, nor her index entries.
///
/// In `SESSION_LOGIN_CARRY`: `all` (the default), `none`, or a
/// comma-separated list of field names (`cart,theme`; names are checked like
/// any field name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LoginCarry {
    /// Every user field survives.
    #[default]
    All,
    /// The new session starts empty.
    None,
    /// Only these fields survive.
    Fields(Vec<String>),
}

impl LoginCarry {
    /// Parses `all`, `none` (any case) or a comma-separated list of fields.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        if text.eq_ignore_ascii_case("none") {
            return Ok(Self::None);
        }
        let mut fields: Vec<String> = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !fields.iter().any(|f| f == name) {
                fields.push(name.to_owned());
            }
        }
        let carry = Self::Fields(fields);
        carry.validate()?;
        Ok(carry)
    }

    /// Checks the field names of a list (non-empty, valid user field names).
    pub fn validate(&self) -> Result<()> {
        let Self::Fields(fields) = self else {
            return Ok(());
        };
        if fields.is_empty() {
            return Err(Error::config(
                "SESSION_LOGIN_CARRY",
                "must be all, none or a comma-separated list of field names",
            ));
        }
        for name in fields {
            if let Err(e) = crate::session::validate_field(name) {
                return Err(Error::config(
                    "SESSION_LOGIN_CARRY",
                    format!("names a field that cannot exist: {e}"),
                ));
            }
        }
        Ok(())
    }

    /// The policy as the login scripts read it: `all`, `none`, or `list`
    /// followed by one field name per line (field names hold no control
    /// characters).
    pub(crate) fn script_arg(&self) -> String {
        match self {
            Self::All => "all".to_owned(),
            Self::None => "none".to_owned(),
            Self::Fields(fields) => {
                let mut arg = "list".to_owned();
                for field in fields {
                    arg.push('\n');
                    arg.push_str(field);
                }
                arg
            }
        }
    }
}

impl fmt::Display for LoginCarry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::None => f.write_str("none"),
            Self::Fields(fields) => f.write_str(&fields.join(",")),
        }
    }
}

/// A declared secondary index: `field` indexes the field's value, `field[]`
/// each element of the JSON array it holds.
///
/// A JSON string is indexed by its text, a number or boolean by its JSON text
/// (`42`, `true`); objects, `null` and values over 256 bytes are not indexed,
/// nor array elements past the 64th.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// The session field.
    pub field: String,
    /// Whether each element of a JSON array is indexed.
    pub array: bool,
}

impl IndexSpec {
    /// Parses `field` or `field[]`. Field names are 1 to 64 bytes of ASCII
    /// letters, digits, `_`, `-` and `.`, and do not start with `_`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let (field, array) = match text.strip_suffix("[]") {
            Some(field) => (field, true),
            None => (text, false),
        };
        let valid = !field.is_empty()
            && field.len() <= 64
            && !field.starts_with('_')
            && field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(Error::config(
                "SESSION_INDEXES",
                format!(
                    "{text:?} is not a field to index: use 1 to 64 letters, digits, _ - or . (not starting with _), with [] for a JSON array"
                ),
            ));
        }
        Ok(Self {
            field: field.to_owned(),
            array,
        })
    }

    /// Parses a comma-separated list such as `tenant,cart[]`.
    pub fn parse_list(text: &str) -> Result<Vec<Self>> {
        let mut out: Vec<Self> = Vec::new();
        for item in text.split(',').filter(|i| !i.trim().is_empty()) {
            let spec = Self::parse(item)?;
            if out.iter().any(|s| s.field == spec.field) {
                return Err(Error::config(
                    "SESSION_INDEXES",
                    format!("{} is declared twice", spec.field),
                ));
            }
            out.push(spec);
        }
        Ok(out)
    }
}

impl fmt::Display for IndexSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.field)?;
        if self.array {
            f.write_str("[]")?;
        }
        Ok(())
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie: CookieConfig::default(),
            key_prefix: "es:".to_owned(),
            idle_ttl: Duration::from_secs(30 * 60),
            absolute_ttl: Duration::from_secs(24 * 60 * 60),
            touch_interval: Duration::from_secs(60),
            max_fields: 64,
            max_value_bytes: 16 * 1024,
            max_session_bytes: 256 * 1024,
            compress_bytes: 1024,
            bind_subnet: false,
            bind_user_agent: false,
            max_user_id_bytes: 256,
            max_devices: 100,
            cluster: false,
            indexes: Vec::new(),
            stats_days: 30,
            login_carry: LoginCarry::All,
            max_sessions_per_user: 100,
        }
    }
}

impl SessionConfig {
    /// Checks the values that can be wrong on their own.
    pub fn validate(&self) -> Result<()> {
        self.cookie.validate()?;
        if self.idle_ttl < Duration::from_secs(1) {
            return Err(Error::config("SESSION_IDLE_TTL", "must be at least 1 s"));
        }
        if self.absolute_ttl < self.idle_ttl {
            return Err(Error::config(
                "SESSION_ABSOLUTE_TTL",
                "must not be shorter than SESSION_IDLE_TTL",
            ));
        }
        if self.touch_interval >= self.idle_ttl {
            return Err(Error::config(
                "SESSION_TOUCH_INTERVAL",
                "must be shorter than SESSION_IDLE_TTL",
            ));
        }
        if self.indexes.len() > 16 {
            return Err(Error::config("SESSION_INDEXES", "at most 16 indexes"));
        }
        if !(1..=366).contains(&self.stats_days) {
            return Err(Error::config("SESSION_STATS_DAYS", "must be 1 to 366"));
        }
        if self.max_fields == 0 || self.max_value_bytes == 0 {
            return Err(Error::config(
                "SESSION_MAX_FIELDS",
                "limits must be positive",
            ));
        }
        if self.max_session_bytes == 0 {
            return Err(Error::config(
                "SESSION_MAX_SESSION_BYTES",
                "must be positive",
            ));
        }
        self.login_carry.validate()?;
        Ok(())
    }
}

/// Which backend to use, and how to reach it.
#[derive(Clone)]
#[non_exhaustive]
pub enum BackendConfig {
    /// Upstash-style REST.
    #[cfg(feature = "rest")]
    Rest(crate::backend::RestConfig),
    /// Direct Redis.
    #[cfg(feature = "direct")]
    Direct {
        /// `redis://` URL (may hold a password: never printed).
        url: String,
        /// Per-attempt timeout.
        timeout: Duration,
        /// Extra attempts for idempotent batches.
        max_retries: u32,
    },
    /// Redis Cluster (implies [`SessionConfig::cluster`]).
    #[cfg(feature = "direct")]
    Cluster {
        /// `redis://` URLs of some of the cluster's nodes (may hold a
        /// password: never printed).
        nodes: Vec<String>,
        /// Per-attempt timeout.
        timeout: Duration,
        /// Extra attempts for idempotent batches.
        max_retries: u32,
    },
    /// Redis behind Sentinel: the master the sentinels name, followed across
    /// failovers.
    #[cfg(feature = "direct")]
    Sentinel {
        /// `redis://` URLs of the sentinels (may hold a password: never printed).
        sentinels: Vec<String>,
        /// The master's name in Sentinel.
        master: String,
        /// Password of the data nodes (never printed).
        password: Option<String>,
        /// Per-attempt timeout.
        timeout: Duration,
        /// Extra attempts for idempotent batches.
        max_retries: u32,
    },
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "rest")]
            BackendConfig::Rest(c) => f.debug_tuple("Rest").field(c).finish(),
            #[cfg(feature = "direct")]
            BackendConfig::Direct { timeout, .. } => f
                .debug_struct("Direct")
                .field("url", &"<redacted>")
                .field("timeout", timeout)
                .finish_non_exhaustive(),
            #[cfg(feature = "direct")]
            BackendConfig::Cluster { nodes, timeout, .. } => f
                .debug_struct("Cluster")
                .field("nodes", &nodes.len())
                .field("timeout", timeout)
                .finish_non_exhaustive(),
            #[cfg(feature = "direct")]
            BackendConfig::Sentinel {
                sentinels,
                master,
                timeout,
                ..
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", &sentinels.len())
                .field("master", master)
                .field("timeout", timeout)
                .finish_non_exhaustive(),
        }
    }
}

impl BackendConfig {
    /// Connects the backend (the direct backend opens its connection here).
    pub async fn connect(&self) -> Result<crate::backend::AnyBackend> {
        match self {
            #[cfg(feature = "rest")]
            BackendConfig::Rest(c) => Ok(crate::backend::AnyBackend::Rest(
                crate::backend::RestBackend::new(c.clone())?,
            )),
            #[cfg(feature = "direct")]
            BackendConfig::Direct {
                url,
                timeout,
                max_retries,
            } => Ok(crate::backend::AnyBackend::Direct(
                crate::backend::DirectBackend::connect_with(url, *timeout, *max_retries).await?,
            )),
            #[cfg(feature = "direct")]
            BackendConfig::Cluster {
                nodes,
                timeout,
                max_retries,
            } => Ok(crate::backend::AnyBackend::Cluster(
                crate::backend::ClusterBackend::connect_with(nodes, *timeout, *max_retries).await?,
            )),
            #[cfg(feature = "direct")]
            BackendConfig::Sentinel {
                sentinels,
                master,
                password,
                timeout,
                max_retries,
            } => Ok(crate::backend::AnyBackend::Sentinel(
                crate::backend::SentinelBackend::connect_with(
                    sentinels,
                    master,
                    password.as_deref(),
                    *timeout,
                    *max_retries,
                )
                .await?,
            )),
        }
    }

    /// Whether this is a Redis Cluster, whose scripts must stay within one
    /// slot ([`SessionConfig::cluster`]).
    pub fn is_cluster(&self) -> bool {
        match self {
            #[cfg(feature = "direct")]
            BackendConfig::Cluster { .. } => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// Everything read from the environment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Session behaviour.
    pub session: SessionConfig,
    /// Signing keys.
    pub keys: KeyRing,
    /// The backend.
    pub backend: BackendConfig,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get`, which maps a variable name to its value.
    /// Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let secrets = get("SESSION_SECRETS")
            .ok_or_else(|| Error::config("SESSION_SECRETS", "is required"))?;
        let keys = KeyRing::parse(&secrets)?;

        let defaults = SessionConfig::default();
        let d = &defaults.cookie;
        let same_site = match get("SESSION_COOKIE_SAMESITE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None => d.same_site,
            Some("lax") => SameSitePolicy::Lax,
            Some("strict") => SameSitePolicy::Strict,
            Some("none") => SameSitePolicy::None,
            Some(_) => {
                return Err(Error::config(
                    "SESSION_COOKIE_SAMESITE",
                    "must be strict, lax or none",
                ));
            }
        };
        let cookie = CookieConfig {
            name: get("SESSION_COOKIE_NAME").unwrap_or_else(|| d.name.clone()),
            secure: flag(&get, "SESSION_COOKIE_SECURE", d.secure)?,
            http_only: flag(&get, "SESSION_COOKIE_HTTP_ONLY", d.http_only)?,
            same_site,
            path: get("SESSION_COOKIE_PATH").unwrap_or_else(|| d.path.clone()),
            domain: get("SESSION_COOKIE_DOMAIN"),
            persistent: flag(&get, "SESSION_COOKIE_PERSISTENT", d.persistent)?,
        };

        let session = SessionConfig {
            cookie,
            key_prefix: get("SESSION_KEY_PREFIX").unwrap_or(defaults.key_prefix),
            idle_ttl: duration(&get, "SESSION_IDLE_TTL", defaults.idle_ttl)?,
            absolute_ttl: duration(&get, "SESSION_ABSOLUTE_TTL", defaults.absolute_ttl)?,
            touch_interval: duration(&get, "SESSION_TOUCH_INTERVAL", defaults.touch_interval)?,
            max_fields: number(&get, "SESSION_MAX_FIELDS", defaults.max_fields)?,
            max_value_bytes: number(&get, "SESSION_MAX_VALUE_BYTES", defaults.max_value_bytes)?,
            max_session_bytes: number(
                &get,
                "SESSION_MAX_SESSION_BYTES",
                defaults.max_session_bytes,
            )?,
            compress_bytes: number(&get, "SESSION_COMPRESS_BYTES", defaults.compress_bytes)?,
            bind_subnet: flag(&get, "SESSION_BIND_SUBNET", defaults.bind_subnet)?,
            bind_user_agent: flag(&get, "SESSION_BIND_USER_AGENT", defaults.bind_user_agent)?,
            max_user_id_bytes: defaults.max_user_id_bytes,
            max_devices: defaults.max_devices,
            cluster: flag(&get, "SESSION_REDIS_CLUSTER", defaults.cluster)?,
            indexes: match get("SESSION_INDEXES") {
                Some(list) => IndexSpec::parse_list(&list)?,
                None => defaults.indexes,
            },
            stats_days: number(&get, "SESSION_STATS_DAYS", defaults.stats_days)?,
            login_carry: match get("SESSION_LOGIN_CARRY") {
                Some(text) => LoginCarry::parse(&text)?,
                None => defaults.login_carry,
            },
            max_sessions_per_user: number(
                &get,
                "SESSION_MAX_SESSIONS_PER_USER",
                defaults.max_sessions_per_user,
            )?,
        };
        session.validate()?;

        let timeout = Duration::from_millis(number(&get, "SESSION_STORE_TIMEOUT_MS", 3000)?);
        let retries: u32 = number(&get, "SESSION_STORE_RETRIES", 2)?;
        let backend = backend_config(&get, timeout, retries)?;
        let session = cluster_mode(session, &backend, &get)?;
        Ok(Self {
            session,
            keys,
            backend,
        })
    }
}

/// A Redis Cluster backend turns the cluster script mode on (setting
/// `SESSION_REDIS_CLUSTER=false` with it is an error).
fn cluster_mode(
    mut session: SessionConfig,
    backend: &BackendConfig,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<SessionConfig> {
    if backend.is_cluster() {
        if !flag(get, "SESSION_REDIS_CLUSTER", true)? {
            return Err(Error::config(
                "SESSION_REDIS_CLUSTER",
                "must not be false with REDIS_CLUSTER_NODES (a cluster needs single-slot scripts)",
            ));
        }
        session.cluster = true;
    }
    Ok(session)
}

/// A comma-separated list of URLs.
#[cfg(feature = "direct")]
fn url_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

fn backend_config(
    get: &impl Fn(&str) -> Option<String>,
    timeout: Duration,
    retries: u32,
) -> Result<BackendConfig> {
    let rest_url = get("UPSTASH_REDIS_REST_URL").or_else(|| get("KV_REST_API_URL"));
    let choice = get("SESSION_BACKEND").map(|v| v.to_ascii_lowercase());
    let choice = match choice.as_deref() {
        Some("rest") => "rest",
        Some("direct") => "direct",
        Some(_) => return Err(Error::config("SESSION_BACKEND", "must be rest or direct")),
        None if rest_url.is_some() => "rest",
        None if get("REDIS_URL").is_some()
            || get("REDIS_CLUSTER_NODES").is_some()
            || get("REDIS_SENTINELS").is_some() =>
        {
            "direct"
        }
        None => {
            return Err(Error::config(
                "UPSTASH_REDIS_REST_URL",
                "set it (and UPSTASH_REDIS_REST_TOKEN), or REDIS_URL for the direct backend",
            ));
        }
    };
    if choice == "rest" {
        #[cfg(feature = "rest")]
        {
            let url =
                rest_url.ok_or_else(|| Error::config("UPSTASH_REDIS_REST_URL", "is required"))?;
            let token = get("UPSTASH_REDIS_REST_TOKEN")
                .or_else(|| get("KV_REST_API_TOKEN"))
                .ok_or_else(|| Error::config("UPSTASH_REDIS_REST_TOKEN", "is required"))?;
            let mut config = crate::backend::RestConfig::new(url, token);
            config.timeout = timeout;
            config.max_retries = retries;
            return Ok(BackendConfig::Rest(config));
        }
        #[cfg(not(feature = "rest"))]
        return Err(Error::config(
            "SESSION_BACKEND",
            "built without the rest feature",
        ));
    }
    #[cfg(feature = "direct")]
    {
        let url = get("REDIS_URL");
        let nodes = get("REDIS_CLUSTER_NODES");
        let sentinels = get("REDIS_SENTINELS");
        let named = [url.is_some(), nodes.is_some(), sentinels.is_some()];
        if named.iter().filter(|set| **set).count() > 1 {
            return Err(Error::config(
                "REDIS_URL",
                "set only one of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS",
            ));
        }
        if let Some(nodes) = nodes {
            let nodes = url_list(&nodes);
            if nodes.is_empty() {
                return Err(Error::config("REDIS_CLUSTER_NODES", "names no node"));
            }
            return Ok(BackendConfig::Cluster {
                nodes,
                timeout,
                max_retries: retries,
            });
        }
        if let Some(sentinels) = sentinels {
            let sentinels = url_list(&sentinels);
            if sentinels.is_empty() {
                return Err(Error::config("REDIS_SENTINELS", "names no sentinel"));
            }
            let master = get("REDIS_SENTINEL_MASTER").ok_or_else(|| {
                Error::config("REDIS_SENTINEL_MASTER", "is required with REDIS_SENTINELS")
            })?;
            return Ok(BackendConfig::Sentinel {
                sentinels,
                master,
                password: get("REDIS_PASSWORD"),
                timeout,
                max_retries: retries,
            });
        }
        let url = url.ok_or_else(|| {
            Error::config(
                "REDIS_URL",
                "is required (or REDIS_CLUSTER_NODES, or REDIS_SENTINELS)",
            )
        })?;
        Ok(BackendConfig::Direct {
            url,
            timeout,
            max_retries: retries,
        })
    }
    #[cfg(not(feature = "direct"))]
    Err(Error::config(
        "SESSION_BACKEND",
        "the direct backend is not built in (feature `direct`, native only)",
    ))
}

fn flag(get: &impl Fn(&str) -> Option<String>, name: &'static str, default: bool) -> Result<bool> {
    match get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(_) => Err(Error::config(name, "must be true or false")),
    }
}

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T> {
    match get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| Error::config(name, "must be a non-negative whole number")),
    }
}

fn duration(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration> {
    match get(name) {
        None => Ok(default),
        Some(v) => parse_duration(&v)
            .ok_or_else(|| Error::config(name, "must be seconds or a number with s, m, h or d")),
    }
}

/// Parses `90`, `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    const SECRET: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn index_declarations() {
        let list = IndexSpec::parse_list("tenant, cart[] ,plan").unwrap();
        assert_eq!(list.len(), 3);
        assert!(list[1].array && list[1].field == "cart");
        assert_eq!(list[1].to_string(), "cart[]");
        for bad in ["a:b", "_user", "x y", "[]", "tenant,tenant[]"] {
            let e = IndexSpec::parse_list(bad).unwrap_err();
            assert!(e.to_string().contains("SESSION_INDEXES"), "{bad}: {e}");
        }
        let s = settings(&[
            ("SESSION_SECRETS", SECRET),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("SESSION_INDEXES", "tenant,cart[]"),
            ("SESSION_STATS_DAYS", "7"),
        ])
        .unwrap();
        assert_eq!(s.session.indexes.len(), 2);
        assert_eq!(s.session.stats_days, 7);
    }

    #[test]
    fn login_carry_and_session_cap() {
        let base = [
            ("SESSION_SECRETS", SECRET),
            ("REDIS_URL", "redis://127.0.0.1"),
        ];
        let s = settings(&base).unwrap();
        assert_eq!(s.session.login_carry, LoginCarry::All);
        assert_eq!(s.session.max_sessions_per_user, 100);
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(pairs);
            settings(&all)
        };
        let s = with(&[
            ("SESSION_LOGIN_CARRY", " cart, theme ,cart"),
            ("SESSION_MAX_SESSIONS_PER_USER", "0"),
        ])
        .unwrap();
        assert_eq!(
            s.session.login_carry,
            LoginCarry::Fields(vec!["cart".into(), "theme".into()])
        );
        assert_eq!(s.session.login_carry.script_arg(), "list\ncart\ntheme");
        assert_eq!(s.session.login_carry.to_string(), "cart,theme");
        assert_eq!(s.session.max_sessions_per_user, 0);
        for (text, carry) in [("NONE", LoginCarry::None), ("All", LoginCarry::All)] {
            let s = with(&[("SESSION_LOGIN_CARRY", text)]).unwrap();
            assert_eq!(s.session.login_carry, carry);
        }
        for bad in ["_user", ",", "cart,_abs"] {
            let e = with(&[("SESSION_LOGIN_CARRY", bad)]).unwrap_err();
            assert!(e.to_string().contains("SESSION_LOGIN_CARRY"), "{bad}: {e}");
        }
        let e = with(&[("SESSION_MAX_SESSIONS_PER_USER", "-1")]).unwrap_err();
        assert!(
            e.to_string().contains("SESSION_MAX_SESSIONS_PER_USER"),
            "{e}"
        );
        let config = SessionConfig {
            login_carry: LoginCarry::Fields(vec!["a\nb".into()]),
            ..SessionConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration("-1"), None);
    }

    #[test]
    fn defaults_and_aliases() {
        let s = settings(&[
            ("SESSION_SECRETS", SECRET),
            ("KV_REST_API_URL", "https://example.upstash.io"),
            ("KV_REST_API_TOKEN", "tok"),
        ])
        .unwrap();
        assert_eq!(s.session.cookie.name, "__Host-session");
        assert_eq!(s.session.idle_ttl, Duration::from_secs(1800));
        assert_eq!(s.session.compress_bytes, 1024);
        assert_eq!(s.session.max_session_bytes, 256 * 1024);
        assert!(!s.session.bind_subnet && !s.session.bind_user_agent);
        assert!(matches!(s.backend, BackendConfig::Rest(_)));
        assert!(!format!("{s:?}").contains("tok\""));
    }

    #[test]
    fn errors_name_the_variable() {
        let e = settings(&[]).unwrap_err();
        assert!(e.to_string().contains("SESSION_SECRETS"));
        let e = settings(&[
            ("SESSION_SECRETS", SECRET),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("SESSION_IDLE_TTL", "2h"),
            ("SESSION_ABSOLUTE_TTL", "1h"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("SESSION_ABSOLUTE_TTL"));
        let e = settings(&[
            ("SESSION_SECRETS", SECRET),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("SESSION_COOKIE_SECURE", "false"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("__Host-"));
    }

    #[cfg(feature = "direct")]
    #[test]
    fn cluster_and_sentinel_backends() {
        let s = settings(&[
            ("SESSION_SECRETS", SECRET),
            (
                "REDIS_CLUSTER_NODES",
                "redis://:pw@127.0.0.1:7000, redis://127.0.0.1:7001,",
            ),
        ])
        .unwrap();
        assert!(s.session.cluster, "a cluster implies single-slot scripts");
        assert!(s.backend.is_cluster());
        match &s.backend {
            BackendConfig::Cluster { nodes, .. } => assert_eq!(nodes.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{s:?}").contains("pw"));
        let e = settings(&[
            ("SESSION_SECRETS", SECRET),
            ("REDIS_CLUSTER_NODES", "redis://127.0.0.1:7000"),
            ("SESSION_REDIS_CLUSTER", "false"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("SESSION_REDIS_CLUSTER"), "{e}");

        let s = settings(&[
            ("SESSION_SECRETS", SECRET),
            (
                "REDIS_SENTINELS",
                "redis://127.0.0.1:26379,redis://127.0.0.1:26380",
            ),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
            ("REDIS_PASSWORD", "hunter2"),
        ])
        .unwrap();
        assert!(!s.session.cluster && !s.backend.is_cluster());
        match &s.backend {
            BackendConfig::Sentinel {
                sentinels, master, ..
            } => assert_eq!((sentinels.len(), master.as_str()), (2, "mymaster")),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{s:?}").contains("hunter2"));
        let e = settings(&[
            ("SESSION_SECRETS", SECRET),
            ("REDIS_SENTINELS", "redis://127.0.0.1:26379"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("REDIS_SENTINEL_MASTER"), "{e}");
        let e = settings(&[
            ("SESSION_SECRETS", SECRET),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("REDIS_SENTINELS", "redis://127.0.0.1:26379"),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("only one"), "{e}");
    }
}
