//! Direct Redis backend over TCP (`redis` crate; native only, feature `direct`).
//!
//! Uses a [`redis::aio::ConnectionManager`]: one multiplexed connection that
//! reconnects by itself after a failure. A batch is sent as one pipeline (one
//! round trip); a transaction as one `MULTI`/`EXEC` pipeline.
//!
//! Redis Cluster and Sentinel deployments have their own backends built on the
//! helpers here: [`super::ClusterBackend`] and [`super::SentinelBackend`].

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Backend, Command, Reply, Retry, Value};
use crate::error::{Error, Result, ServerError};
use crate::platform::{sleep, with_timeout};

/// The direct backend. Cheap to clone; build it once and share it.
#[derive(Clone)]
pub struct DirectBackend {
    connection: ConnectionManager,
    timeout: Duration,
    max_retries: u32,
}

impl fmt::Debug for DirectBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: it is not kept.
        f.debug_struct("DirectBackend")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl DirectBackend {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`, or `rediss://`).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, Duration::from_secs(3), 2).await
    }

    /// Connects with a per-attempt `timeout` and `max_retries` extra attempts
    /// for idempotent batches.
    pub async fn connect_with(url: &str, timeout: Duration, max_retries: u32) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| {
            // The redis error may echo the URL, which may hold a password.
            Error::config(
                "REDIS_URL",
                format!("not a valid Redis URL ({:?})", e.kind()),
            )
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = with_timeout(timeout, async {
            Ok(ConnectionManager::new_with_config(client, config).await?)
        })
        .await?;
        Ok(Self {
            connection,
            timeout,
            max_retries,
        })
    }

    async fn run(&self, commands: &[Command], atomic: bool, retry: Retry) -> Result<Vec<Reply>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let pipe = to_pipeline(commands, atomic);
        let mut attempt = 0;
        loop {
            let result = send(self.connection.clone(), &pipe, commands.len(), self.timeout).await;
            match result {
                Ok(replies) => return Ok(replies),
                Err(error) => {
                    if retry != Retry::Idempotent
                        || !error.is_retryable()
                        || attempt >= self.max_retries
                    {
                        return Err(error);
                    }
                    sleep(Duration::from_millis(25 << attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Sends `pipe`, built from `count` commands, on `connection`: one value per
/// command, or an error (a wrong count is a protocol error, never retried).
pub(super) async fn query<C: redis::aio::ConnectionLike + Send>(
    mut connection: C,
    pipe: &redis::Pipeline,
    count: usize,
) -> Result<Vec<redis::Value>> {
    let values: Vec<redis::Value> = pipe.query_async(&mut connection).await?;
    if values.len() != count {
        return Err(Error::protocol("wrong number of replies"));
    }
    Ok(values)
}

/// [`query`] within `timeout`, with the values as replies.
pub(super) async fn send<C: redis::aio::ConnectionLike + Send>(
    connection: C,
    pipe: &redis::Pipeline,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Reply>> {
    let values = with_timeout(timeout, query(connection, pipe, count)).await?;
    Ok(values.into_iter().map(convert).collect())
}

/// The batch future of a backend, boxed: its type is deep enough (client
/// futures within futures) to overflow the trait solver where callers check
/// `Send` through many layers (an axum handler over `AnyBackend`).
pub(super) type Boxed<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Reply>>> + Send + 'a>>;

/// `command` as a `redis` crate command.
pub(super) fn to_cmd(command: &Command) -> redis::Cmd {
    let mut cmd = redis::cmd(&command.parts()[0]);
    for arg in &command.parts()[1..] {
        cmd.arg(arg.as_str());
    }
    cmd
}

/// `commands` as one pipeline that keeps going past error replies (each
/// becomes that command's [`Reply`]), as `MULTI`/`EXEC` if `atomic`.
pub(super) fn to_pipeline<'a>(
    commands: impl IntoIterator<Item = &'a Command>,
    atomic: bool,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    if atomic {
        pipe.atomic();
    }
    for command in commands {
        pipe.add_command(to_cmd(command));
    }
    pipe
}

/// One `redis` crate reply as ours (error replies become `Err`).
pub(super) fn convert(value: redis::Value) -> Reply {
    use redis::Value as R;
    Ok(match value {
        R::Nil => Value::Nil,
        R::Int(n) => Value::Int(n),
        R::BulkString(b) => Value::Bytes(b),
        R::SimpleString(s) if s == "OK" => Value::Okay,
        R::SimpleString(s) => Value::Bytes(s.into_bytes()),
        R::Okay => Value::Okay,
        R::Array(items) | R::Set(items) => Value::Array(flatten(items)?),
        R::Map(pairs) => Value::Array(flatten(pairs.into_iter().flat_map(|(k, v)| [k, v]))?),
        R::Attribute { data, .. } => return convert(*data),
        R::Double(d) => Value::Bytes(d.to_string().into_bytes()),
        R::Boolean(b) => Value::Int(i64::from(b)),
        R::VerbatimString { text, .. } => Value::Bytes(text.into_bytes()),
        R::ServerError(e) => return Err(ServerError::new(server_error_text(&e))),
        other => Value::Bytes(format!("{other:?}").into_bytes()),
    })
}

fn flatten(
    items: impl IntoIterator<Item = redis::Value>,
) -> std::result::Result<Vec<Value>, ServerError> {
    items.into_iter().map(convert).collect()
}

fn server_error_text(error: &redis::ServerError) -> String {
    match error.details() {
        Some(details) => format!("{} {}", error.code(), details),
        None => error.code().to_owned(),
    }
}

impl Backend for DirectBackend {
    async fn pipeline(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        self.run(commands, false, retry).await
    }

    async fn transaction(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        self.run(commands, true, retry).await
    }
}
