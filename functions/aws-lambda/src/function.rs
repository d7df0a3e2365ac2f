//! The configuration read at cold start, the response mode, and the gateway
//! function itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use edge_session::backend::RestBackend;
use edge_session::gateway::{
    ErrorCode, EventLog, Gateway, GatewayConfig, ReqwestUpstream, error_response,
};
use edge_session::{AnyBackend, BackendConfig, SessionStore, Settings};
use lambda_http::lambda_runtime::FunctionResponse;
use serde_json::Value;

use crate::event::{self, EventKind};
use crate::handler::{handle_event, stream_event};
use crate::secrets::{self, SecretError};
use crate::streaming::{self, ResponseStream};

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

/// How the function answers, from `SESSION_LAMBDA_STREAMING` (read once, at
/// cold start). It must match how the function is invoked, which the
/// function cannot see: `template.yaml` sets it on the function behind the
/// streaming Function URL and REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseMode {
    /// `SESSION_LAMBDA_STREAMING` unset or false: one JSON response per
    /// invocation in the event's payload format, the origin's body collected
    /// first (at most [`crate::BUFFERED_PAYLOAD_LIMIT`] once encoded). For
    /// the API Gateway HTTP API (payload 2.0), which cannot stream, and any
    /// integration invoking the function with `Invoke`.
    #[default]
    Buffered,
    /// `SESSION_LAMBDA_STREAMING=true`: a streamed response (metadata prelude,
    /// then the origin's body as it arrives), for integrations invoking the
    /// function with `InvokeWithResponseStream`: a Function URL with
    /// `InvokeMode: RESPONSE_STREAM`, a REST API method whose integration has
    /// `ResponseTransferMode: STREAM`.
    Streaming,
}

impl ResponseMode {
    /// The variable that chooses the mode.
    pub const VARIABLE: &'static str = "SESSION_LAMBDA_STREAMING";

    /// The mode named by `SESSION_LAMBDA_STREAMING` in `get` (true/false,
    /// 1/0, yes/no, on/off; unset or empty is buffered).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, InitError> {
        let Some(value) = get(Self::VARIABLE) else {
            return Ok(Self::Buffered);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "off" => Ok(Self::Buffered),
            "1" | "true" | "yes" | "on" => Ok(Self::Streaming),
            _ => Err(InitError::Config(edge_session::Error::Config {
                name: Self::VARIABLE,
                reason: "must be true (streamed responses) or false (buffered responses)"
                    .to_owned(),
            })),
        }
    }

    /// The mode of this process (its environment).
    pub fn from_env() -> Result<Self, InitError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `buffered` or `streaming`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buffered => "buffered",
            Self::Streaming => "streaming",
        }
    }
}

/// The gateway as this function runs it: either backend, and the origin
/// (`ORIGIN_URL`) over reqwest with the gateway's origin timeout and body
/// limit.
#[derive(Debug)]
pub struct LambdaGateway {
    gateway: Gateway<AnyBackend>,
    upstream: ReqwestUpstream,
}

impl LambdaGateway {
    /// The gateway over `store` reaching the origin through `upstream`.
    pub fn new(gateway: Gateway<AnyBackend>, upstream: ReqwestUpstream) -> Self {
        Self { gateway, upstream }
    }

    /// The core gateway.
    pub fn gateway(&self) -> &Gateway<AnyBackend> {
        &self.gateway
    }

    /// The origin.
    pub fn upstream(&self) -> &ReqwestUpstream {
        &self.upstream
    }

    /// The session store.
    pub fn store(&self) -> &SessionStore<AnyBackend> {
        self.gateway.store()
    }
}

/// The gateway for `env` (store, origin, settings), built once per execution
/// environment. `ORIGIN_URL` is required (a Lambda has no origin of its
/// own). With `SESSION_LOG_EVENTS=true` it logs every session lifecycle
/// event as one JSON line ([`EventLog`], through `log`, see
/// [`crate::init_logging`]).
pub async fn gateway(env: &Env, client: reqwest::Client) -> Result<LambdaGateway, InitError> {
    let config = env.gateway_config()?;
    config.origin.url()?;
    ResponseMode::from_lookup(|name| env.get(name))?;
    let log_events = config.log_events;
    let store = store(env, &client).await?;
    // The origin's response head within SESSION_ORIGIN_TIMEOUT_MS, its body
    // cut off past SESSION_MAX_BODY_BYTES when that is set.
    let upstream = ReqwestUpstream::with_client(client).configured(&config);
    let gateway = Gateway::new(store, config);
    let gateway = if log_events {
        gateway.with_hooks(Arc::new(EventLog))
    } else {
        gateway
    };
    Ok(LambdaGateway::new(gateway, upstream))
}

/// What one invocation returns to the runtime: a JSON payload (buffered
/// mode) or a streamed response.
pub type Invocation = FunctionResponse<Value, ResponseStream>;

/// The deployed gateway function: the HTTP client, the store and the gateway
/// are built from the environment once per execution environment (at cold
/// start, see `main.rs`). If that fails (a missing variable, an unreadable
/// secret) the error is logged, requests are answered `500 internal` (in
/// the function's response mode), and the next request tries again.
#[derive(Debug, Default)]
pub struct GatewayFunction {
    mode: ResponseMode,
    gateway: tokio::sync::OnceCell<LambdaGateway>,
}

impl GatewayFunction {
    /// A function answering in `mode`, whose gateway is not built yet.
    pub fn new(mode: ResponseMode) -> Self {
        Self {
            mode,
            gateway: tokio::sync::OnceCell::new(),
        }
    }

    /// The function of this process: its mode from `SESSION_LAMBDA_STREAMING`
    /// (a wrong value is an error: the function cannot know how it is invoked).
    pub fn from_env() -> Result<Self, InitError> {
        Ok(Self::new(ResponseMode::from_env()?))
    }

    /// The response mode.
    pub fn mode(&self) -> ResponseMode {
        self.mode
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

    /// Handles one invocation in the function's mode (see [`handle_event`]
    /// and [`stream_event`]).
    pub async fn invoke(&self, event: Value) -> Invocation {
        match self.gateway().await {
            Ok(gateway) => match self.mode {
                ResponseMode::Buffered => {
                    FunctionResponse::BufferedResponse(handle_event(gateway, event).await)
                }
                ResponseMode::Streaming => {
                    FunctionResponse::StreamingResponse(stream_event(gateway, event).await)
                }
            },
            Err(e) => {
                log::error!("edge-session: the gateway cannot start: {e}");
                let response =
                    error_response(ErrorCode::Internal, "the session gateway is misconfigured");
                match self.mode {
                    ResponseMode::Buffered => FunctionResponse::BufferedResponse(
                        event::encode_response(EventKind::from_event(&event), response),
                    ),
                    ResponseMode::Streaming => {
                        FunctionResponse::StreamingResponse(streaming::own_response(response))
                    }
                }
            }
        }
    }
}
