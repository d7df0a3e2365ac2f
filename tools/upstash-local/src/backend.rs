//! The Redis side: one multiplexed, self-reconnecting connection shared by all requests.
//!
//! Every request goes out as ONE packed write of RESP commands, and the raw replies come back
//! as [`Value`]s, server errors included ([`Value::ServerError`]), so each command's error can be
//! reported on its own.
//!
//! Transactions share that connection safely because a `/multi-exec` request is written as a
//! single packed block `MULTI, cmd.., EXEC`: the multiplexer never splits one request's bytes, so
//! no other request's command can land between this MULTI and its EXEC, and Redis runs the
//! block atomically with respect to every other client. What would NOT be safe is sending MULTI,
//! the commands and EXEC as separate requests on a shared connection (another request's command
//! would join the transaction) or letting a client send MULTI/EXEC/WATCH/DISCARD itself (it would
//! leave the shared connection inside a transaction): those commands are refused before they
//! reach Redis (see `Command::check_allowed`).

use std::time::Duration;

use redis::aio::{ConnectionLike as _, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisResult, Value};

use crate::command::Command;
use crate::encode::error_text;

/// The shared Redis connection.
#[derive(Clone)]
pub(crate) struct Backend {
    connection: ConnectionManager,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

/// What became of a `/multi-exec` transaction.
#[derive(Debug)]
pub(crate) enum Transaction {
    /// EXEC ran: one reply per command, runtime errors as [`Value::ServerError`].
    Executed(Vec<Value>),
    /// Redis discarded the transaction (EXECABORT); the message says why.
    Discarded(String),
}

fn to_cmd(command: &Command) -> Cmd {
    let mut cmd = Cmd::new();
    for arg in command.args() {
        cmd.arg(arg.as_slice());
    }
    cmd
}

impl Backend {
    /// Connects now, so a wrong URL or a server that is not running fails at start.
    pub(crate) async fn connect(
        url: &str,
        response_timeout: Option<Duration>,
    ) -> RedisResult<Self> {
        Self::connect_to(url, response_timeout).await
    }

    /// [`Backend::connect`] to anything that names a Redis (a URL, a `ConnectionInfo`).
    pub(crate) async fn connect_to(
        info: impl redis::IntoConnectionInfo,
        response_timeout: Option<Duration>,
    ) -> RedisResult<Self> {
        let client = redis::Client::open(info)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(response_timeout);
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self { connection })
    }

    /// Redis's command table (`COMMAND`), read once at start.
    pub(crate) async fn command_table(&self) -> RedisResult<crate::routing::CommandTable> {
        let mut connection = self.connection.clone();
        let reply: Value = redis::cmd("COMMAND").query_async(&mut connection).await?;
        Ok(crate::routing::CommandTable::from_reply(&reply))
    }

    /// Runs commands in order as one pipeline (not atomic); one reply per command.
    pub(crate) async fn pipeline(&self, commands: &[&Command]) -> RedisResult<Vec<Value>> {
        let mut pipe = Pipeline::with_capacity(commands.len());
        for command in commands {
            pipe.add_command(to_cmd(command));
        }
        let mut connection = self.connection.clone();
        connection
            .req_packed_commands(&pipe, 0, commands.len())
            .await
    }

    /// Runs commands as one MULTI/EXEC block, written in a single packed write.
    pub(crate) async fn transaction(&self, commands: &[Command]) -> RedisResult<Transaction> {
        let mut pipe = Pipeline::with_capacity(commands.len() + 2);
        pipe.add_command(redis::cmd("MULTI"));
        for command in commands {
            pipe.add_command(to_cmd(command));
        }
        pipe.add_command(redis::cmd("EXEC"));
        let mut connection = self.connection.clone();
        let mut replies = connection
            .req_packed_commands(&pipe, 0, commands.len() + 2)
            .await?;
        let unexpected = |what: &str| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "unexpected transaction reply",
                what.to_owned(),
            ))
        };
        let exec = replies.pop().ok_or_else(|| unexpected("no EXEC reply"))?;
        match replies.first() {
            Some(Value::Okay) => {}
            Some(Value::SimpleString(text)) if text == "OK" => {}
            other => return Err(unexpected(&format!("MULTI answered {other:?}"))),
        }
        match exec {
            Value::Array(items) => Ok(Transaction::Executed(items)),
            Value::ServerError(err) => {
                // Say which queued command made Redis discard the transaction.
                let cause = replies.iter().skip(1).find_map(|reply| match reply {
                    Value::ServerError(err) => Some(error_text(err)),
                    _ => None,
                });
                Ok(Transaction::Discarded(match cause {
                    Some(cause) => format!("EXECABORT Transaction discarded because of: {cause}"),
                    None => error_text(&err),
                }))
            }
            Value::Nil => Ok(Transaction::Discarded(
                "EXECABORT Transaction discarded".to_owned(),
            )),
            other => Err(unexpected(&format!("EXEC answered {other:?}"))),
        }
    }
}
