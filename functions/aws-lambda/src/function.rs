//! The configuration read at cold start, and the gateway function itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_session::backend::{Backend, RestBackend};
use edge_session::gateway::{
    ClientAddr, ErrorCode, EventLog, Gateway, GatewayConfig, ReqwestUpstream, Upstream,
    error_response,
};
use edge_session::{AnyBackend, BackendConfig, SessionStore, Settings};
use serde_json::Value;

use crate::event::{self, EventKind};
use crate::secrets::{self, SecretError};

/// The gateway as this function runs it: either backend, origin over reqwest.
pub type LambdaGateway = Gateway<AnyBackend, ReqwestUpstream>;

/// Why the function could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum InitError {
    /// A variable is missing or wrong (the error names it).
    Config(edge_session::Error),
    /// A secret named by a `*_SECRET_ID` / `*_SSM_PARAMETER` variable could
    /// not be read.
    Secret(SecretError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Config(e) => write!(f, "configuration: {e}"),
            InitError::Secret(e) => write!(f, "secret: {e}"),
        }
    }
}

impl std::error::Error for InitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InitError::Config(e) => Some(e),
            InitError::Secret(e) => Some(e),
        }
    }
}

impl From<edge_session::Error> for InitError {
    fn from(e: edge_session::Error) -> Self {
        InitError::Config(e)
    }
}

impl From<SecretError> for InitError {
    fn from(e: SecretError) -> Self {
        InitError::Secret(e)
    }
}

/// The function's configuration: its variables, with the secrets they refer
/// to already read (see [`crate::secrets`]). Values are never printed.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

impl Env {
    /// The process environment, with secret references resolved (one
    /// concurrent round of AWS calls when there are any, none otherwise).
    /// Variables that are not valid UTF-8 are left out.
    pub async fn load(client: &reqwest::Client) -> Result<Self, InitError> {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::resolve(client, vars).await
    }

    /// `vars`, with secret references resolved.
    pub async fn resolve(
        client: &reqwest::Client,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, InitError> {
        let vars = secrets::resolve(client, vars.into_iter().collect()).await?;
        Ok(Self { vars })
    }

    /// Exactly these variables (tests, or configuration from elsewhere).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// One variable.
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    /// The session settings (`Settings::from_lookup` over these variables).
    pub fn settings(&self) -> Result<Settings, InitError> {
        Ok(Settings::from_lookup(|name| self.get(name))?)
    }

    /// The gateway settings (`GatewayConfig::from_lookup` over these variables).
    pub fn gateway_config(&self) -> Result<GatewayConfig, InitError> {
        Ok(GatewayConfig::from_lookup(|name| self.get(name))?)
    }
}

/// The one HTTP client of the process (rustls, HTTP/1.1 and 2), shared by the
/// REST backend, the origin and the secret lookups. It does not follow
/// redirects: the origin's go back to the browser.
pub fn http_client() -> Result<reqwest::Client, InitError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A frozen execution environment can leave dead pooled connections;
        // do not keep them long.
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| InitError::Config(edge_session::Error::Transport(e)))
}

/// The session store for `env`: the REST backend over `client`, or the
/// direct backend (feature `direct`, `REDIS_URL`), which connects here.
pub async fn store(
    env: &Env,
    client: &reqwest::Client,
) -> Result<SessionStore<AnyBackend>, InitError> {
    let settings = env.settings()?;
    let backend = match settings.backend {
        BackendConfig::Rest(config) => {
            AnyBackend::Rest(RestBackend::with_client(client.clone(), config)?)
        }
        #[allow(unreachable_patterns)]
        other => other.connect().await?,
    };
    Ok(SessionStore::new(backend, settings.session, settings.keys)?)
}

/// The gateway for `env` (store, origin, settings), built once per execution
/// environment. With `SESSION_LOG_EVENTS=true` it logs every session
/// lifecycle event as one JSON line ([`EventLog`], through `log`, see
/// [`crate::init_logging`]).
pub async fn gateway(env: &Env, client: reqwest::Client) -> Result<LambdaGateway, InitError> {
    let config = env.gateway_config()?;
    let log_events = config.log_events;
    let store = store(env, &client).await?;
    // Origin responses follow SESSION_MAX_BODY_BYTES, as requests do.
    let upstream = ReqwestUpstream::with_client(client).with_max_body_bytes(config.max_body_bytes);
    let gateway = Gateway::new(store, upstream, config);
    Ok(if log_events {
        gateway.with_hooks(Arc::new(EventLog))
    } else {
        gateway
    })
}

/// Handles one `lambda_http` request with the gateway. Never fails: a
/// request that cannot be converted is a `400 bad_request`.
pub async fn handle<B: Backend, U: Upstream>(
    gateway: &Gateway<B, U>,
    request: lambda_http::Request,
) -> http::Response<Bytes> {
    let ip = crate::sessions::source_ip(&request);
    match event::to_gateway_request(request) {
        Ok(mut request) => {
            if let Some(ip) = ip {
                request.extensions_mut().insert(ClientAddr(ip));
            }
            gateway.handle(request).await
        }
        Err(bad) => error_response(ErrorCode::BadRequest, bad.reason()),
    }
}

/// Handles one invocation: the event's JSON in, the response's JSON out, in
/// the event's payload format. Never fails: a malformed event is a `400
/// bad_request`.
pub async fn handle_event<B: Backend, U: Upstream>(gateway: &Gateway<B, U>, event: Value) -> Value {
    // What the event looks like, for the format of a refusal.
    let kind = EventKind::from_event(&event);
    match event::parse_event(event) {
        Ok((kind, request)) => event::encode_response(Some(kind), handle(gateway, request).await),
        Err(bad) => {
            log::warn!("edge-session: refused a malformed event: {bad}");
            event::encode_response(kind, error_response(ErrorCode::BadRequest, bad.reason()))
        }
    }
}

/// The deployed gateway function: the HTTP client, the store and the gateway
/// are built from the environment once per execution environment (at cold
/// start, see `main.rs`). If that fails (a missing variable, an unreadable
/// secret) the error is logged, requests are answered `500 internal`, and the
/// next request tries again.
#[derive(Debug, Default)]
pub struct GatewayFunction {
    gateway: tokio::sync::OnceCell<LambdaGateway>,
}

impl GatewayFunction {
    /// A function whose gateway is not built yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The gateway, built from the process environment on first use.
    pub async fn gateway(&self) -> Result<&LambdaGateway, InitError> {
        self.gateway
            .get_or_try_init(|| async {
                let client = http_client()?;
                let env = Env::load(&client).await?;
                gateway(&env, client).await
            })
            .await
    }

    /// Handles one invocation (see [`handle_event`]).
    pub async fn handle_event(&self, event: Value) -> Value {
        match self.gateway().await {
            Ok(gateway) => handle_event(gateway, event).await,
            Err(e) => {
                log::error!("edge-session: the gateway cannot start: {e}");
                let kind = EventKind::from_event(&event);
                event::encode_response(
                    kind,
                    error_response(ErrorCode::Internal, "the session gateway is misconfigured"),
                )
            }
        }
    }
}
