//! The gateway's settings ([`GatewayConfig`]), read from the same variables
//! by every packaging, and where the origin is ([`Origin`]).

use std::fmt;
use std::time::Duration;

use http::header::HeaderName;

use crate::error::{Error, Result};

/// Default of [`GatewayConfig::store_deadline`]: 5 s.
pub const DEFAULT_STORE_DEADLINE: Duration = Duration::from_secs(5);

/// What the gateway does when the session store is unavailable
/// (`SESSION_STORE_OUTAGE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutagePolicy {
    /// `fail-closed` (default): `503 store_unavailable` with `Retry-After`.
    #[default]
    FailClosed,
    /// `fail-open`: the request reaches the origin anonymous with
    /// `x-session-store: unavailable`; its session instructions are dropped
    /// (listed in `x-session-dropped`) and the cookie is left untouched.
    FailOpen,
}

impl OutagePolicy {
    /// Parses `fail-closed` or `fail-open` (case-insensitive, `_` allowed).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "fail-closed" | "closed" => Ok(Self::FailClosed),
            "fail-open" | "open" => Ok(Self::FailOpen),
            _ => Err(Error::config(
                "SESSION_STORE_OUTAGE",
                "must be fail-closed or fail-open",
            )),
        }
    }

    /// `fail-closed` or `fail-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail-closed",
            Self::FailOpen => "fail-open",
        }
    }
}

/// Default of [`GatewayConfig::origin_connect_timeout`]: 5 s.
pub const DEFAULT_ORIGIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`GatewayConfig::origin_timeout`]: 60 s.
pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the gateway sends the requests it proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// `ORIGIN_URL`: a base URL (without a trailing slash); the request's path
    /// and query are appended to it.
    Url(String),
    /// `ORIGIN_SERVICE`: a Cloudflare service binding of that name (the origin
    /// is another Worker). The request keeps its own URL.
    Service(String),
    /// Neither set: the request goes to its own URL. This is the Cloudflare
    /// Worker on a route in front of the zone's own origin server; the native
    /// host and the Lambda need an [`Origin::Url`].
    SameUrl,
}

impl Origin {
    /// The base URL of an [`Origin::Url`], else a configuration error naming
    /// `ORIGIN_URL` (for the packagings that can only reach a URL).
    pub fn url(&self) -> Result<&str> {
        match self {
            Origin::Url(url) => Ok(url),
            _ => Err(Error::config(
                "ORIGIN_URL",
                "is required (only a Cloudflare Worker can run without one)",
            )),
        }
    }
}

/// Gateway settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Where proxied requests go (`ORIGIN_URL`, `ORIGIN_SERVICE`, or the
    /// request's own URL).
    pub origin: Origin,
    /// Prefix of the browser and admin APIs (`SESSION_API_PREFIX`, default `/_session`).
    pub api_prefix: String,
    /// Path prefixes passed straight to the origin with no session work
    /// (`SESSION_SKIP_PATHS`, comma-separated).
    pub skip_paths: Vec<String>,
    /// Origins (`scheme://host[:port]`) allowed to make state-changing API
    /// calls besides the gateway's own (`SESSION_TRUSTED_ORIGINS`).
    pub trusted_origins: Vec<String>,
    /// `Retry-After` seconds on 503 (`SESSION_RETRY_AFTER`, default 5).
    pub retry_after_secs: u32,
    /// Log every session lifecycle event as a JSON line (`SESSION_LOG_EVENTS`,
    /// default false): the packagings then give the gateway an [`EventLog`](super::EventLog).
    pub log_events: bool,
    /// What to do when the store is unavailable (`SESSION_STORE_OUTAGE`,
    /// default fail-closed).
    pub outage: OutagePolicy,
    /// Longest wait for one store step of a request, retries included
    /// (`SESSION_STORE_DEADLINE_MS`, default 5 s): the load before the origin,
    /// the write after it, and an API call are each given up after this long
    /// and treated as an unavailable store.
    pub store_deadline: Duration,
    /// Largest request body the gateway forwards, and largest origin response
    /// body it passes back (`SESSION_MAX_BODY_BYTES`, unset by default: no
    /// limit). A `Content-Length` over it is refused before anything is sent
    /// (`413 body_too_large`, `502 origin_response_too_large`); a body without
    /// one is cut off where it passes the limit while it streams (the
    /// packagings wrap the bodies; the upload or the download then fails).
    pub max_body_bytes: Option<u64>,
    /// Longest wait for a connection to the origin (`SESSION_ORIGIN_CONNECT_TIMEOUT_MS`,
    /// default 5 s): `504 origin_timeout` past it. Native host only (a Worker's
    /// and a Lambda's platform have their own).
    pub origin_connect_timeout: Duration,
    /// Longest wait for the origin's response headers once the request (and its
    /// body) is sent (`SESSION_ORIGIN_TIMEOUT_MS`, default 60 s):
    /// `504 origin_timeout` past it. A body that is streaming is never cut by it.
    pub origin_timeout: Duration,
    /// A header set by a trusted proxy in front of the gateway that carries
    /// the client IP (`SESSION_CLIENT_IP_HEADER`, unset by default); see
    /// [`client_ip`](super::client_ip).
    pub client_ip_header: Option<HeaderName>,
    /// Session fields `GET <prefix>` shows to page JavaScript
    /// (`SESSION_PUBLIC_FIELDS`, comma-separated; default none: the browser
    /// API lists no field unless it is declared here).
    pub public_fields: Vec<String>,
    /// Path prefixes whose responses keep the origin's `Cache-Control` and
    /// `Vary` as sent (`SESSION_CACHE_PUBLIC_PATHS`, default none). Elsewhere
    /// a response that sets a session cookie or was made for a signed-in
    /// visitor is marked `Cache-Control: private` and `Vary: Cookie`.
    pub cache_public_paths: Vec<String>,
    /// Trust the `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`,
    /// `Forwarded` and `X-Real-IP` headers a proxy in front of the gateway
    /// sets (`SESSION_TRUST_FORWARDED`, default false: the gateway removes a
    /// client's and sets its own).
    pub trust_forwarded: bool,
    pub(crate) admin_token: Option<String>,
    pub(crate) origin_secret: Option<Vec<u8>>,
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("origin", &self.origin)
            .field("api_prefix", &self.api_prefix)
            .field("skip_paths", &self.skip_paths)
            .field("trusted_origins", &self.trusted_origins)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("log_events", &self.log_events)
            .field("outage", &self.outage)
            .field("store_deadline", &self.store_deadline)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("origin_connect_timeout", &self.origin_connect_timeout)
            .field("origin_timeout", &self.origin_timeout)
            .field("client_ip_header", &self.client_ip_header)
            .field("public_fields", &self.public_fields)
            .field("cache_public_paths", &self.cache_public_paths)
            .field("trust_forwarded", &self.trust_forwarded)
            .field("admin_api", &self.admin_token.is_some())
            .field("origin_signature", &self.origin_secret.is_some())
            .finish()
    }
}

impl GatewayConfig {
    /// Settings for an origin at the URL `origin` with the defaults.
    pub fn new(origin: impl Into<String>) -> Result<Self> {
        let origin = origin.into().trim_end_matches('/').to_owned();
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(Error::config(
                "ORIGIN_URL",
                "must be an http:// or https:// URL",
            ));
        }
        Ok(Self::with_origin(Origin::Url(origin)))
    }

    /// Settings for `origin` with the defaults.
    pub fn with_origin(origin: Origin) -> Self {
        Self {
            origin,
            api_prefix: "/_session".to_owned(),
            skip_paths: Vec::new(),
            trusted_origins: Vec::new(),
            retry_after_secs: 5,
            log_events: false,
            outage: OutagePolicy::FailClosed,
            store_deadline: DEFAULT_STORE_DEADLINE,
            max_body_bytes: None,
            origin_connect_timeout: DEFAULT_ORIGIN_CONNECT_TIMEOUT,
            origin_timeout: DEFAULT_ORIGIN_TIMEOUT,
            client_ip_header: None,
            public_fields: Vec::new(),
            cache_public_paths: Vec::new(),
            trust_forwarded: false,
            admin_token: None,
            origin_secret: None,
        }
    }

    /// Enables the admin API with this bearer token (at least 16 bytes).
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Result<Self> {
        let token = token.into();
        if token.len() < 16 {
            return Err(Error::config(
                "ADMIN_TOKEN",
                "must be at least 16 characters",
            ));
        }
        self.admin_token = Some(token);
        Ok(self)
    }

    /// Signs every request sent to the origin with this secret (at least 32
    /// bytes; see [`super::signature`]).
    pub fn with_origin_secret(mut self, secret: impl Into<Vec<u8>>) -> Result<Self> {
        let secret = secret.into();
        if secret.len() < 32 {
            return Err(Error::config(
                "SESSION_ORIGIN_SECRET",
                "must be at least 32 bytes",
            ));
        }
        self.origin_secret = Some(secret);
        Ok(self)
    }

    /// The origin signing secret, if one is set.
    pub(crate) fn origin_secret(&self) -> Option<&[u8]> {
        self.origin_secret.as_deref()
    }

    /// True when the responses of `path` keep the origin's caching headers.
    pub(crate) fn cache_is_public(&self, path: &str) -> bool {
        self.cache_public_paths.iter().any(|p| under(path, p))
    }

    /// Reads `ORIGIN_URL` or `ORIGIN_SERVICE` (at most one; neither is
    /// [`Origin::SameUrl`]), `SESSION_API_PREFIX`, `SESSION_SKIP_PATHS`,
    /// `SESSION_TRUSTED_ORIGINS`, `SESSION_RETRY_AFTER`, `SESSION_LOG_EVENTS`,
    /// `SESSION_STORE_OUTAGE`, `SESSION_STORE_DEADLINE_MS`,
    /// `SESSION_MAX_BODY_BYTES`, `SESSION_CLIENT_IP_HEADER`,
    /// `SESSION_ORIGIN_CONNECT_TIMEOUT_MS`, `SESSION_ORIGIN_TIMEOUT_MS` and
    /// `ADMIN_TOKEN` through `get` (empty values count as unset).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut config = match (get("ORIGIN_URL"), get("ORIGIN_SERVICE")) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "ORIGIN_SERVICE",
                    "set ORIGIN_URL or ORIGIN_SERVICE, not both",
                ));
            }
            (Some(url), None) => Self::new(url.trim())?,
            (None, Some(service)) => Self::with_origin(Origin::Service(service.trim().to_owned())),
            (None, None) => Self::with_origin(Origin::SameUrl),
        };
        if let Some(prefix) = get("SESSION_API_PREFIX") {
            let prefix = prefix.trim().trim_end_matches('/').to_owned();
            if !prefix.starts_with('/') || prefix.len() < 2 {
                return Err(Error::config(
                    "SESSION_API_PREFIX",
                    "must be a path such as /_session",
                ));
            }
            config.api_prefix = prefix;
        }
        let list = |v: Option<String>| -> Vec<String> {
            v.map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
        };
        config.skip_paths = list(get("SESSION_SKIP_PATHS"));
        if config.skip_paths.iter().any(|p| !p.starts_with('/')) {
            return Err(Error::config(
                "SESSION_SKIP_PATHS",
                "every prefix must start with /",
            ));
        }
        config.trusted_origins = list(get("SESSION_TRUSTED_ORIGINS"))
            .into_iter()
            .map(|o| o.trim_end_matches('/').to_owned())
            .collect();
        if let Some(secs) = get("SESSION_RETRY_AFTER") {
            config.retry_after_secs = secs.trim().parse().map_err(|_| {
                Error::config("SESSION_RETRY_AFTER", "must be a whole number of seconds")
            })?;
        }
        if let Some(value) = get("SESSION_LOG_EVENTS") {
            config.log_events = flag("SESSION_LOG_EVENTS", &value)?;
        }
        if let Some(policy) = get("SESSION_STORE_OUTAGE") {
            config.outage = OutagePolicy::parse(&policy)?;
        }
        if let Some(ms) = get("SESSION_STORE_DEADLINE_MS") {
            let ms: u64 = ms.trim().parse().map_err(|_| {
                Error::config(
                    "SESSION_STORE_DEADLINE_MS",
                    "must be a whole number of milliseconds",
                )
            })?;
            if ms == 0 {
                return Err(Error::config(
                    "SESSION_STORE_DEADLINE_MS",
                    "must be at least 1",
                ));
            }
            config.store_deadline = Duration::from_millis(ms);
        }
        config.read_limits(&get)?;
        config.public_fields = list(get("SESSION_PUBLIC_FIELDS"));
        config.cache_public_paths = list(get("SESSION_CACHE_PUBLIC_PATHS"));
        if config
            .cache_public_paths
            .iter()
            .any(|p| !p.starts_with('/'))
        {
            return Err(Error::config(
                "SESSION_CACHE_PUBLIC_PATHS",
                "every prefix must start with /",
            ));
        }
        if let Some(value) = get("SESSION_TRUST_FORWARDED") {
            config.trust_forwarded = flag("SESSION_TRUST_FORWARDED", &value)?;
        }
        if let Some(token) = get("ADMIN_TOKEN") {
            config = config.with_admin_token(token)?;
        }
        if let Some(secret) = get("SESSION_ORIGIN_SECRET") {
            config = config.with_origin_secret(secret.trim())?;
        }
        Ok(config)
    }

    /// Reads `SESSION_MAX_BODY_BYTES`, `SESSION_CLIENT_IP_HEADER` and the
    /// origin timeouts.
    fn read_limits(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(bytes) = get("SESSION_MAX_BODY_BYTES") {
            self.max_body_bytes = Some(bytes.trim().parse().map_err(|_| {
                Error::config("SESSION_MAX_BODY_BYTES", "must be a whole number of bytes")
            })?);
        }
        let millis = |name: &'static str| -> Result<Option<Duration>> {
            let Some(ms) = get(name) else { return Ok(None) };
            match ms.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
                _ => Err(Error::config(
                    name,
                    "must be a whole number of milliseconds, at least 1",
                )),
            }
        };
        if let Some(t) = millis("SESSION_ORIGIN_CONNECT_TIMEOUT_MS")? {
            self.origin_connect_timeout = t;
        }
        if let Some(t) = millis("SESSION_ORIGIN_TIMEOUT_MS")? {
            self.origin_timeout = t;
        }
        if let Some(name) = get("SESSION_CLIENT_IP_HEADER") {
            let name = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
                .map_err(|_| Error::config("SESSION_CLIENT_IP_HEADER", "not a header name"))?;
            self.client_ip_header = Some(name);
        }
        Ok(())
    }

    /// True when `path` is under one of the skip prefixes.
    pub(crate) fn skips(&self, path: &str) -> bool {
        self.skip_paths.iter().any(|p| under(path, p))
    }
}

/// A boolean setting: true/false, 1/0, yes/no, on/off (any case).
fn flag(name: &'static str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::config(name, "must be true or false")),
    }
}

/// True when `path` is `prefix` or below it (`/static` covers `/static/x`,
/// not `/staticky`).
pub(crate) fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') || prefix.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("/static", "/static"));
        assert!(under("/static/a.css", "/static/"));
        assert!(!under("/staticky", "/static"));
        assert!(under("/_session/devices", "/_session"));
    }

    #[test]
    fn config_from_lookup() {
        let get = |name: &str| match name {
            "ORIGIN_URL" => Some("http://127.0.0.1:3000/".to_owned()),
            "SESSION_SKIP_PATHS" => Some("/static, /health".to_owned()),
            "ADMIN_TOKEN" => Some("0123456789abcdef0123".to_owned()),
            _ => None,
        };
        let c = GatewayConfig::from_lookup(get).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.origin, Origin::Url("http://127.0.0.1:3000".to_owned()));
        assert_eq!(c.max_body_bytes, None);
        assert_eq!(c.skip_paths, ["/static", "/health"]);
        assert!(c.skips("/health") && !c.skips("/healthz"));
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        assert!(!c.log_events);
        assert!(GatewayConfig::new("ftp://x").is_err());
        let with_events = |value: &str| {
            let value = value.to_owned();
            GatewayConfig::from_lookup(move |name| match name {
                "ORIGIN_URL" => Some("https://origin.example".to_owned()),
                "SESSION_LOG_EVENTS" => Some(value.clone()),
                _ => None,
            })
        };
        assert!(with_events("true").is_ok_and(|c| c.log_events));
        assert!(with_events(" On ").is_ok_and(|c| c.log_events));
        assert!(with_events("false").is_ok_and(|c| !c.log_events));
        let e = with_events("ture").err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("SESSION_LOG_EVENTS")));
    }

    #[test]
    fn outage_policy_and_deadline_from_lookup() {
        let with = |policy: Option<&str>, deadline: Option<&str>| {
            let (policy, deadline) = (policy.map(str::to_owned), deadline.map(str::to_owned));
            GatewayConfig::from_lookup(move |name| match name {
                "ORIGIN_URL" => Some("https://origin.example".to_owned()),
                "SESSION_STORE_OUTAGE" => policy.clone(),
                "SESSION_STORE_DEADLINE_MS" => deadline.clone(),
                _ => None,
            })
        };
        let defaults = with(None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(defaults.outage, OutagePolicy::FailClosed);
        assert_eq!(defaults.store_deadline, DEFAULT_STORE_DEADLINE);
        let open = with(Some(" Fail-Open "), Some("1500")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(open.outage, OutagePolicy::FailOpen);
        assert_eq!(open.outage.as_str(), "fail-open");
        assert_eq!(open.store_deadline, Duration::from_millis(1500));
        assert!(
            with(Some("fail_closed"), None).is_ok_and(|c| c.outage == OutagePolicy::FailClosed)
        );
        for (policy, deadline, name) in [
            (Some("fail-sometimes"), None, "SESSION_STORE_OUTAGE"),
            (None, Some("0"), "SESSION_STORE_DEADLINE_MS"),
            (None, Some("5s"), "SESSION_STORE_DEADLINE_MS"),
        ] {
            let e = with(policy, deadline).err().map(|e| e.to_string());
            assert!(
                e.is_some_and(|e| e.contains(name)),
                "{policy:?} {deadline:?}"
            );
        }
    }
}

#[cfg(test)]
mod origin_tests {
    use super::*;

    fn with(pairs: &'static [(&'static str, &'static str)]) -> Result<GatewayConfig> {
        GatewayConfig::from_lookup(|name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_three_origin_modes() {
        let same = with(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(same.origin, Origin::SameUrl);
        assert!(
            same.origin
                .url()
                .is_err_and(|e| e.to_string().contains("ORIGIN_URL"))
        );
        let service = with(&[("ORIGIN_SERVICE", " app ")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(service.origin, Origin::Service("app".to_owned()));
        let url = with(&[("ORIGIN_URL", "https://o.example/")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.origin.url().ok(), Some("https://o.example"));
        let both = with(&[
            ("ORIGIN_URL", "https://o.example"),
            ("ORIGIN_SERVICE", "app"),
        ]);
        assert!(both.is_err_and(|e| e.to_string().contains("not both")));
    }

    #[test]
    fn security_settings() {
        let c = with(&[
            ("SESSION_PUBLIC_FIELDS", "theme, cart"),
            ("SESSION_CACHE_PUBLIC_PATHS", "/assets"),
            ("SESSION_TRUST_FORWARDED", "true"),
            ("SESSION_ORIGIN_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.public_fields, ["theme", "cart"]);
        assert!(c.cache_is_public("/assets/a.css") && !c.cache_is_public("/assetsx"));
        assert!(c.trust_forwarded);
        assert!(c.origin_secret().is_some());
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let short = with(&[("SESSION_ORIGIN_SECRET", "short")]);
        assert!(short.is_err_and(|e| e.to_string().contains("32 bytes")));
        let defaults = with(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(defaults.public_fields.is_empty() && !defaults.trust_forwarded);
    }

    #[test]
    fn body_limit_and_origin_timeouts() {
        let c = with(&[
            ("SESSION_MAX_BODY_BYTES", "1048576"),
            ("SESSION_ORIGIN_CONNECT_TIMEOUT_MS", "250"),
            ("SESSION_ORIGIN_TIMEOUT_MS", "1500"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.max_body_bytes, Some(1_048_576));
        assert_eq!(c.origin_connect_timeout, Duration::from_millis(250));
        assert_eq!(c.origin_timeout, Duration::from_millis(1500));
        let defaults = with(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(defaults.origin_timeout, DEFAULT_ORIGIN_TIMEOUT);
        assert!(with(&[("SESSION_ORIGIN_TIMEOUT_MS", "0")]).is_err());
        assert!(with(&[("SESSION_MAX_BODY_BYTES", "10M")]).is_err());
    }
}
