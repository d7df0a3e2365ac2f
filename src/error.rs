//! The crate's one error type.

use std::fmt;

/// Shorthand for `Result<T, edge_session::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in edge-session.
///
/// Secrets (session tokens, signing keys, REST tokens) never appear in the
/// `Display` or `Debug` output of an error. Underlying errors are kept as
/// [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing or invalid. Raised at start-up.
    #[error("invalid configuration: {name}: {reason}")]
    Config {
        /// The setting (usually the environment variable name).
        name: &'static str,
        /// What is wrong with it (never contains the value of a secret).
        reason: String,
    },

    /// A field name the caller wants to write is not allowed.
    #[error("invalid session field name {name:?}: {reason}")]
    InvalidField {
        /// The refused field name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// Data is larger than a configured limit; nothing was written.
    #[error("{what} is {actual} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large ("session field value", "user id", ...).
        what: &'static str,
        /// The configured limit.
        limit: usize,
        /// The size that was refused.
        actual: usize,
    },

    /// The session would hold more fields than allowed; nothing was written.
    #[error("session would hold {actual} fields, over the limit of {limit}")]
    TooManyFields {
        /// The configured limit.
        limit: usize,
        /// The field count the write would have produced.
        actual: usize,
    },

    /// A session field could not be encoded to JSON text.
    #[error("session field {field:?} could not be encoded as JSON")]
    Encode {
        /// The field name.
        field: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// A stored session field is not valid JSON of the requested type.
    #[error("session field {field:?} could not be decoded")]
    Decode {
        /// The field name.
        field: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// An increment targeted a field that does not hold an integer, or would
    /// overflow; nothing was written.
    #[error("session field {field:?} does not hold an integer that can be incremented")]
    NotAnInteger {
        /// The field name.
        field: String,
    },

    /// The session expired or was destroyed before the write reached Redis;
    /// nothing was written (a write never recreates a dead session).
    #[error("the session no longer exists")]
    SessionGone,

    /// An optimistic compare-and-set failed: the session changed since it was read.
    #[error("session version conflict: expected {expected}, found {found}")]
    Conflict {
        /// The version the caller read.
        expected: u64,
        /// The version in Redis.
        found: u64,
    },

    /// A lock stayed held by someone else through every attempt (see
    /// [`crate::lock`]); nothing was acquired.
    #[error("lock {name:?} is busy after {attempts} attempts")]
    LockBusy {
        /// The lock name.
        name: String,
        /// How many times acquisition was tried.
        attempts: u32,
    },

    /// The lease of a held lock ran out before it was renewed or released,
    /// so another holder may have taken the lock; its key was left alone.
    #[error("the lease of lock {name:?} was lost")]
    LockLost {
        /// The lock name.
        name: String,
    },

    /// Redis answered a command with an error reply.
    #[error("redis error: {0}")]
    Redis(ServerError),

    /// The REST endpoint refused the credentials (HTTP 401).
    #[error("the REST endpoint refused the token (HTTP 401)")]
    Unauthorized,

    /// The REST endpoint answered with an unexpected HTTP status.
    #[error("the REST endpoint answered HTTP {status}: {message}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The error message from the body, if it had one.
        message: String,
    },

    /// A network error talking to the REST endpoint.
    #[cfg(feature = "rest")]
    #[error("request to the REST endpoint failed")]
    Transport(#[source] reqwest::Error),

    /// An error from the direct Redis connection.
    #[cfg(feature = "direct")]
    #[error("redis connection error")]
    Direct(#[source] redis::RedisError),

    /// The origin behind the gateway could not be reached, or failed before
    /// its response head (answered `502 origin_unavailable`).
    #[error("the origin could not be reached: {reason}")]
    Origin {
        /// What failed.
        reason: String,
        /// The underlying error, if there is one that can be kept.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The origin did not accept the connection or send its response head
    /// in time (answered `504 origin_timeout`).
    #[error("the origin did not answer within {ms} ms")]
    OriginTimeout {
        /// The timeout that elapsed, in milliseconds.
        ms: u64,
    },

    /// A request's `x-session-signature` did not verify (see
    /// [`crate::gateway::signature`]): the request did not come through the
    /// gateway, was changed on the way, or is replayed.
    #[error("gateway signature refused: {reason}")]
    Signature {
        /// Why: missing, malformed, outside the replay window, or does not match.
        reason: &'static str,
    },

    /// The backend did not answer within the configured time.
    #[error("the session store did not answer within {ms} ms")]
    Timeout {
        /// The timeout that elapsed, in milliseconds.
        ms: u64,
    },

    /// The backend answered something that does not follow the protocol.
    #[error("malformed reply from the session store: {what}")]
    Protocol {
        /// What was wrong.
        what: &'static str,
        /// The underlying decode error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// True for errors worth retrying later: timeouts, network errors,
    /// HTTP 5xx, and Redis replies saying the server is busy or loading.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Http { status, .. } => *status >= 500,
            #[cfg(feature = "rest")]
            Error::Transport(_) => true,
            #[cfg(feature = "direct")]
            Error::Direct(e) => {
                e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
            }
            Error::Redis(e) => matches!(e.code(), "LOADING" | "BUSY" | "TRYAGAIN" | "CLUSTERDOWN"),
            _ => false,
        }
    }

    /// True when the session store could not be reached or did not answer
    /// properly: the adapters map these to HTTP 503.
    pub fn is_unavailable(&self) -> bool {
        self.is_retryable()
            || matches!(
                self,
                Error::Unauthorized | Error::Http { .. } | Error::Protocol { .. }
            )
    }

    /// True for a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    pub(crate) fn protocol(what: &'static str) -> Self {
        Error::Protocol { what, source: None }
    }

    pub(crate) fn protocol_with(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Protocol {
            what,
            source: Some(Box::new(source)),
        }
    }

    pub(crate) fn config(name: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            name,
            reason: reason.into(),
        }
    }
}

/// An error reply from Redis (for example `NOSCRIPT ...` or `WRONGTYPE ...`).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerError {
    message: String,
}

impl ServerError {
    /// Wraps an error reply's text.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The error code: the first word of the reply (`ERR`, `NOSCRIPT`, ...).
    pub fn code(&self) -> &str {
        self.message.split(' ').next().unwrap_or("")
    }

    /// The whole reply text.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerError({:?})", self.message)
    }
}

impl std::error::Error for ServerError {}

#[cfg(feature = "direct")]
impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Direct(e)
    }
}
