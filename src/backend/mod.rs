//! How the store talks to Redis.
//!
//! A [`Backend`] does one thing: send a batch of commands in **one** round trip
//! and hand back one reply per command, either as a plain pipeline or as a
//! `MULTI`/`EXEC` transaction. Everything else (Lua scripts with `EVALSHA` and
//! the `EVAL` fallback, session logic) is built on top of it in the core, so
//! every backend behaves the same.
//!
//! Backends:
//! - [`RestBackend`]: Upstash-style REST over HTTPS (native and wasm32, feature `rest`).
//! - [`DirectBackend`]: Redis over TCP with the `redis` crate (native only, feature `direct`).
//! - [`ClusterBackend`]: Redis Cluster, each batch split by hash slot (native only, feature `direct`).
//! - [`SentinelBackend`]: the master that Redis Sentinel names, followed across failovers
//!   (native only, feature `direct`).
//! - [`AnyBackend`]: either of them, chosen at run time from the configuration.
//!
//! [`SyncToken`] is one request's `upstash-sync-token`, for read-your-writes on
//! replicated REST databases across instances (see [`sync`]).
//!
//! # Implementing a backend
//!
//! ```
//! use edge_session::backend::{Backend, Command, Reply, Retry, Value};
//! use edge_session::{Result, ServerError};
//!
//! /// A backend that knows one command, for illustration.
//! struct Echo;
//!
//! impl Backend for Echo {
//!     async fn pipeline(&self, commands: &[Command], _retry: Retry) -> Result<Vec<Reply>> {
//!         Ok(commands
//!             .iter()
//!             .map(|c| match c.parts() {
//!                 [name, text] if name == "ECHO" => Ok(Value::Bytes(text.clone().into_bytes())),
//!                 _ => Err(ServerError::new("ERR unknown command")),
//!             })
//!             .collect())
//!     }
//!
//!     async fn transaction(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
//!         self.pipeline(commands, retry).await
//!     }
//! }
//! ```

use std::future::Future;

use crate::error::{Error, Result, ServerError};
use crate::platform::{MaybeSend, MaybeSync};

pub mod sync;
pub use sync::{Scoped, SyncToken};

#[cfg(feature = "direct")]
mod cluster;
#[cfg(feature = "direct")]
mod direct;
#[cfg(feature = "rest")]
pub(crate) mod rest; // pub(crate) for `crate::fuzzing`
#[cfg(feature = "direct")]
mod sentinel;

#[cfg(feature = "direct")]
pub use cluster::ClusterBackend;
#[cfg(feature = "direct")]
pub use direct::DirectBackend;
#[cfg(feature = "rest")]
pub use rest::{RestBackend, RestConfig};
#[cfg(feature = "direct")]
pub use sentinel::SentinelBackend;

/// One Redis command: its name and arguments, all UTF-8 text.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    args: Vec<String>,
}

impl Command {
    /// A command named `name` (e.g. `"HGET"`), without arguments yet.
    pub fn new(name: &str) -> Self {
        Self {
            args: vec![name.to_owned()],
        }
    }

    /// Appends one argument.
    #[must_use]
    pub fn arg(mut self, arg: impl ToString) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Appends several arguments.
    #[must_use]
    pub fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: ToString,
    {
        self.args.extend(args.into_iter().map(|a| a.to_string()));
        self
    }

    /// The name followed by the arguments.
    pub fn parts(&self) -> &[String] {
        &self.args
    }
}

impl std::fmt::Debug for Command {
    /// Shows the command name and the argument count only: arguments may hold
    /// session data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Command({} +{} args)",
            self.args.first().map_or("", String::as_str),
            self.args.len().saturating_sub(1)
        )
    }
}

/// A Redis reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Nil (a missing key or field).
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk string (RESP floats arrive as strings too).
    Bytes(Vec<u8>),
    /// An array (RESP maps and sets arrive flattened into arrays).
    Array(Vec<Value>),
    /// The `OK` status.
    Okay,
}

/// One command's reply: a value, or the error reply Redis gave for that command.
pub type Reply = std::result::Result<Value, ServerError>;

impl Value {
    /// The integer in this reply, also parsing integer text.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// The text in this reply, if it is a UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            Value::Okay => Some("OK"),
            _ => None,
        }
    }

    /// Takes the text out of this reply (UTF-8 required).
    pub fn into_string(self) -> Option<String> {
        match self {
            Value::Bytes(b) => String::from_utf8(b).ok(),
            Value::Int(n) => Some(n.to_string()),
            Value::Okay => Some("OK".to_owned()),
            _ => None,
        }
    }

    /// Takes the elements out of an array reply (nil is an empty array).
    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            Value::Nil => Some(Vec::new()),
            _ => None,
        }
    }
}

/// Whether a batch may be sent again after a failure whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running the batch twice is harmless (reads, `SET` of a value, deletes,
    /// scripts with no increments): retried on network errors, timeouts and 5xx.
    Idempotent,
    /// Running it twice would change the result (increments): retried only when
    /// the request provably never left (connection refused).
    Once,
}

/// A connection to Redis that runs a batch of commands in one round trip.
///
/// Futures are `Send` on native targets and need not be on wasm32 (see
/// [`crate::platform`]).
pub trait Backend: MaybeSend + MaybeSync {
    /// Sends `commands` in one round trip, not atomically, and returns one
    /// reply per command, in order. An `Err` means the round trip itself
    /// failed (network, timeout, authentication); a command's own error is an
    /// `Err` inside the vector.
    fn pipeline(
        &self,
        commands: &[Command],
        retry: Retry,
    ) -> impl Future<Output = Result<Vec<Reply>>> + MaybeSend;

    /// Sends `commands` in one round trip as one `MULTI`/`EXEC` transaction.
    /// A transaction Redis discarded is an `Err`.
    fn transaction(
        &self,
        commands: &[Command],
        retry: Retry,
    ) -> impl Future<Output = Result<Vec<Reply>>> + MaybeSend;
}

/// Runs a single command in one round trip and returns its reply, turning an
/// error reply into [`Error::Redis`].
pub async fn query<B: Backend + ?Sized>(backend: &B, command: Command) -> Result<Value> {
    let retry = Retry::Idempotent;
    let mut replies = backend
        .pipeline(std::slice::from_ref(&command), retry)
        .await?;
    match replies.pop() {
        Some(reply) if replies.is_empty() => reply.map_err(Error::Redis),
        _ => Err(Error::protocol("expected exactly one reply")),
    }
}

impl<B: Backend + ?Sized> Backend for &B {
    async fn pipeline(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        (**self).pipeline(commands, retry).await
    }

    async fn transaction(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        (**self).transaction(commands, retry).await
    }
}

impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    async fn pipeline(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        (**self).pipeline(commands, retry).await
    }

    async fn transaction(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        (**self).transaction(commands, retry).await
    }
}

/// A backend chosen at run time.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyBackend {
    /// Upstash-style REST.
    #[cfg(feature = "rest")]
    Rest(RestBackend),
    /// Direct Redis over TCP.
    #[cfg(feature = "direct")]
    Direct(DirectBackend),
    /// Redis Cluster.
    #[cfg(feature = "direct")]
    Cluster(ClusterBackend),
    /// Redis behind Sentinel.
    #[cfg(feature = "direct")]
    Sentinel(SentinelBackend),
}

impl Backend for AnyBackend {
    async fn pipeline(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        match self {
            #[cfg(feature = "rest")]
            AnyBackend::Rest(b) => b.pipeline(commands, retry).await,
            #[cfg(feature = "direct")]
            AnyBackend::Direct(b) => b.pipeline(commands, retry).await,
            #[cfg(feature = "direct")]
            AnyBackend::Cluster(b) => b.pipeline(commands, retry).await,
            #[cfg(feature = "direct")]
            AnyBackend::Sentinel(b) => b.pipeline(commands, retry).await,
        }
    }

    async fn transaction(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        match self {
            #[cfg(feature = "rest")]
            AnyBackend::Rest(b) => b.transaction(commands, retry).await,
            #[cfg(feature = "direct")]
            AnyBackend::Direct(b) => b.transaction(commands, retry).await,
            #[cfg(feature = "direct")]
            AnyBackend::Cluster(b) => b.transaction(commands, retry).await,
            #[cfg(feature = "direct")]
            AnyBackend::Sentinel(b) => b.transaction(commands, retry).await,
        }
    }
}
