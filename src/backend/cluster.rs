//! Redis Cluster backend (`redis` crate's async cluster client; native only,
//! feature `direct`).
//!
//! The cluster client pipelines only within one hash slot, so a batch is split
//! by slot: each slot's commands go as one pipeline to the master that owns
//! the slot, all slots at once, and the replies are put back in the batch's
//! order. The wall time stays one round trip. A command is routed by its key
//! (`EVAL`/`EVALSHA` by their first key); a command without one (`SCRIPT
//! LOAD`, `PING`, ...) goes alone, routed by the client (`SCRIPT LOAD` reaches
//! every master). `SCAN` walks every master in turn behind one cursor, so the
//! maintenance scans see the whole keyspace.
//!
//! Scripts are cached per node: a `NOSCRIPT` reply comes back for that one
//! command and the core's `EVAL` fallback goes to the same slot's node.
//!
//! Multi-key commands and transactions must stay within one slot (the core's
//! key layout does: see `SessionConfig::cluster`); Redis answers `CROSSSLOT`
//! otherwise.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{join_all, join3};
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use super::direct::{Boxed, convert, query, to_cmd, to_pipeline};
use super::{Backend, Command, Reply, Retry, Value};
use crate::error::{Error, Result};
use crate::platform::{sleep, with_timeout};

/// The Redis Cluster backend. Cheap to clone; build it once and share it.
#[derive(Clone)]
pub struct ClusterBackend {
    connection: ClusterConnection,
    timeout: Duration,
    max_retries: u32,
    /// Masters (`host`, `port`) in the order `SCAN` walks them, refreshed
    /// when a walk starts.
    masters: Arc<Mutex<Vec<(String, u16)>>>,
}

impl fmt::Debug for ClusterBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The node URLs may carry a password: they are not kept.
        f.debug_struct("ClusterBackend")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

/// Where one command of a batch goes.
enum Target {
    /// With the other commands for this slot, in one pipeline.
    Slot(Route),
    /// Alone, routed by the cluster client.
    Alone,
    /// The cluster-wide `SCAN`.
    Scan,
}

impl ClusterBackend {
    /// Connects to the cluster through `nodes`, any of its nodes
    /// (`redis://[:password@]host:port`, or `rediss://`): the client learns the
    /// rest of the cluster from them.
    pub async fn connect<S: AsRef<str>>(nodes: &[S]) -> Result<Self> {
        Self::connect_with(nodes, Duration::from_secs(3), 2).await
    }

    /// Connects with a per-attempt `timeout` and `max_retries` extra attempts
    /// for idempotent batches.
    pub async fn connect_with<S: AsRef<str>>(
        nodes: &[S],
        timeout: Duration,
        max_retries: u32,
    ) -> Result<Self> {
        if nodes.is_empty() {
            return Err(Error::config("REDIS_CLUSTER_NODES", "names no node"));
        }
        let client = ClusterClientBuilder::new(nodes.iter().map(AsRef::as_ref))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(max_retries)
            .build()
            .map_err(|e| {
                // The redis error may echo a URL, which may hold a password.
                Error::config(
                    "REDIS_CLUSTER_NODES",
                    format!("not a list of Redis URLs ({:?})", e.kind()),
                )
            })?;
        // Boxed: the client's connect future is deep (see `Boxed`).
        let connect: Connecting = Box::pin(with_timeout(timeout, async move {
            Ok(client.get_async_connection().await?)
        }));
        let connection = connect.await?;
        Ok(Self {
            connection,
            timeout,
            max_retries,
            masters: Arc::default(),
        })
    }

    async fn run(&self, commands: &[Command], atomic: bool, retry: Retry) -> Result<Vec<Reply>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut attempt = 0;
        loop {
            let result = with_timeout(self.timeout, async {
                if atomic {
                    self.transaction_once(commands).await
                } else {
                    self.pipeline_once(commands).await
                }
            })
            .await;
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

    /// `MULTI`/`EXEC` on the node of the first key (all keys in one slot).
    async fn transaction_once(&self, commands: &[Command]) -> Result<Vec<Reply>> {
        let pipe = to_pipeline(commands, true);
        let values = query(self.connection.clone(), &pipe, commands.len()).await?;
        Ok(values.into_iter().map(convert).collect())
    }

    /// One pipeline per slot, all at once; replies back in batch order.
    async fn pipeline_once(&self, commands: &[Command]) -> Result<Vec<Reply>> {
        let mut slots: Vec<(Route, Vec<usize>)> = Vec::new();
        let mut alone = Vec::new();
        let mut scans = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            match target(command) {
                Target::Slot(route) => match slots.iter_mut().find(|(r, _)| *r == route) {
                    Some((_, members)) => members.push(i),
                    None => slots.push((route, vec![i])),
                },
                Target::Alone => alone.push(i),
                Target::Scan => scans.push(i),
            }
        }
        let grouped = join_all(slots.iter().map(|(_, members)| async move {
            let pipe = to_pipeline(members.iter().map(|&i| &commands[i]), false);
            query(self.connection.clone(), &pipe, members.len()).await
        }));
        let single = join_all(alone.iter().map(|&i| async move {
            let cmd = to_cmd(&commands[i]);
            let mut connection = self.connection.clone();
            Ok::<_, Error>(connection.req_packed_command(&cmd).await?)
        }));
        let scanned = join_all(scans.iter().map(|&i| self.scan(&commands[i])));
        let (grouped, single, scanned) = join3(grouped, single, scanned).await;

        let mut replies: Vec<Option<Reply>> = vec![None; commands.len()];
        for ((_, members), values) in slots.iter().zip(grouped) {
            for (&i, value) in members.iter().zip(values?) {
                replies[i] = Some(convert(value));
            }
        }
        for (&i, value) in alone.iter().zip(single) {
            replies[i] = Some(convert(value?));
        }
        for (&i, reply) in scans.iter().zip(scanned) {
            replies[i] = Some(reply?);
        }
        replies
            .into_iter()
            .map(|r| r.ok_or(Error::protocol("missing reply")))
            .collect()
    }

    /// `SCAN cursor [MATCH ..] [COUNT ..]` over every master: the cursor is
    /// `host:port/node-cursor` between nodes (opaque to the caller; `0` starts
    /// and ends the walk).
    async fn scan(&self, command: &Command) -> Result<Reply> {
        let parts = command.parts();
        let cursor = parts.get(1).ok_or(Error::protocol("SCAN needs a cursor"))?;
        let (node, node_cursor) = if cursor == "0" {
            let masters = self.refresh_masters().await?;
            match masters.into_iter().next() {
                Some(first) => (first, "0".to_owned()),
                None => return Ok(Ok(scan_reply("0", Vec::new()))),
            }
        } else {
            parse_cursor(cursor).ok_or(Error::protocol("not a cluster SCAN cursor"))?
        };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(&node_cursor);
        for arg in &parts[2..] {
            cmd.arg(arg.as_str());
        }
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: node.0.clone(),
            port: node.1,
        });
        let value = self.connection.clone().route_command(cmd, routing).await?;
        let mut items = match convert(value) {
            Ok(Value::Array(items)) if items.len() == 2 => items.into_iter(),
            Ok(_) => return Err(Error::protocol("scan: expected a cursor and keys")),
            Err(e) => return Ok(Err(e)),
        };
        let (Some(next), Some(keys)) = (items.next(), items.next()) else {
            return Err(Error::protocol("scan: expected a cursor and keys"));
        };
        let next = next.into_string().ok_or(Error::protocol("scan: cursor"))?;
        let keys = keys.into_array().ok_or(Error::protocol("scan: keys"))?;
        let next = if next == "0" {
            let masters = self.known_masters().await?;
            // The next master after this one in address order.
            match masters.into_iter().find(|m| *m > node) {
                Some(after) => format!("{}:{}/0", after.0, after.1),
                None => "0".to_owned(),
            }
        } else {
            format!("{}:{}/{next}", node.0, node.1)
        };
        Ok(Ok(scan_reply(&next, keys)))
    }

    async fn known_masters(&self) -> Result<Vec<(String, u16)>> {
        let known = self.masters.lock().map(|m| m.clone()).unwrap_or_default();
        if known.is_empty() {
            self.refresh_masters().await
        } else {
            Ok(known)
        }
    }

    /// Asks the cluster for its masters (`CLUSTER SLOTS`), sorted.
    async fn refresh_masters(&self) -> Result<Vec<(String, u16)>> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let value = self
            .connection
            .clone()
            .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await?;
        let ranges = convert(value)
            .map_err(Error::Redis)?
            .into_array()
            .ok_or(Error::protocol("CLUSTER SLOTS: expected a list"))?;
        let mut masters: Vec<(String, u16)> = Vec::new();
        for range in ranges {
            // [start, end, [host, port, id, ...], replicas...]
            let master = range
                .into_array()
                .and_then(|r| r.into_iter().nth(2))
                .and_then(Value::into_array)
                .and_then(|node| {
                    let mut node = node.into_iter();
                    let host = node.next()?.into_string()?;
                    let port = u16::try_from(node.next()?.as_int()?).ok()?;
                    Some((host, port))
                })
                .ok_or(Error::protocol("CLUSTER SLOTS: expected a master address"))?;
            if !masters.contains(&master) {
                masters.push(master);
            }
        }
        masters.sort();
        if let Ok(mut known) = self.masters.lock() {
            known.clone_from(&masters);
        }
        Ok(masters)
    }
}

fn scan_reply(cursor: &str, keys: Vec<Value>) -> Value {
    Value::Array(vec![
        Value::Bytes(cursor.as_bytes().to_vec()),
        Value::Array(keys),
    ])
}

/// `host:port/cursor` back into its parts.
fn parse_cursor(cursor: &str) -> Option<((String, u16), String)> {
    let (address, node_cursor) = cursor.rsplit_once('/')?;
    let (host, port) = address.rsplit_once(':')?;
    Some((
        (host.to_owned(), port.parse().ok()?),
        node_cursor.to_owned(),
    ))
}

/// Where `command` goes: the slot of its key, or alone.
fn target(command: &Command) -> Target {
    let parts = command.parts();
    let name = parts[0].to_ascii_uppercase();
    let key = match name.as_str() {
        "SCAN" => return Target::Scan,
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => {
            match parts.get(2).and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n > 0 => parts.get(3),
                _ => None,
            }
        }
        // Subcommand first, then the key.
        "OBJECT" | "MEMORY" | "XINFO" => parts.get(2),
        // No key: the client routes these (some to every master).
        "PING" | "ECHO" | "INFO" | "SCRIPT" | "FUNCTION" | "DBSIZE" | "FLUSHALL" | "FLUSHDB"
        | "TIME" | "CONFIG" | "CLUSTER" | "CLIENT" | "COMMAND" | "HELLO" | "ROLE" | "LASTSAVE"
        | "SLOWLOG" | "LATENCY" | "WAIT" | "RANDOMKEY" | "KEYS" => None,
        _ => parts.get(1),
    };
    match key {
        Some(key) => Target::Slot(Route::with_key(key.as_bytes(), SlotAddr::Master)),
        None => Target::Alone,
    }
}

/// The connect future, boxed like [`Boxed`].
type Connecting = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<ClusterConnection>> + Send + 'static>,
>;

impl Backend for ClusterBackend {
    async fn pipeline(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        let run: Boxed<'_> = Box::pin(self.run(commands, false, retry));
        run.await
    }

    async fn transaction(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        let run: Boxed<'_> = Box::pin(self.run(commands, true, retry));
        run.await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn route_of(command: Command) -> Option<Route> {
        match target(&command) {
            Target::Slot(route) => Some(route),
            _ => None,
        }
    }

    #[test]
    fn commands_route_by_their_key_and_hash_tag() {
        let session = route_of(Command::new("HGETALL").arg("es:s:{u1}:abc")).unwrap();
        let devices = route_of(Command::new("ZRANGE").arg("es:u:{u1}").arg(0).arg(-1)).unwrap();
        assert_eq!(session, devices, "one user's keys share a slot");
        let script = route_of(
            Command::new("EVALSHA")
                .arg("f".repeat(40))
                .arg(2)
                .arg("es:s:{u1}:abc")
                .arg("es:u:{u1}"),
        )
        .unwrap();
        assert_eq!(script, session, "a script goes where its first key lives");
        let global = route_of(Command::new("ZCARD").arg("es:{g}:ix:tenant")).unwrap();
        assert_ne!(global, session);
        assert_eq!(Route::with_key("{g}", SlotAddr::Master), global);
    }

    #[test]
    fn keyless_commands_and_scan_are_not_grouped() {
        assert!(matches!(
            target(&Command::new("SCRIPT").arg("LOAD").arg("return 1")),
            Target::Alone
        ));
        assert!(matches!(
            target(&Command::new("EVAL").arg("return 1").arg(0)),
            Target::Alone
        ));
        assert!(matches!(target(&Command::new("scan").arg(0)), Target::Scan));
    }

    #[test]
    fn scan_cursors_name_the_node() {
        assert_eq!(
            parse_cursor("127.0.0.1:7001/1234"),
            Some((("127.0.0.1".to_owned(), 7001), "1234".to_owned()))
        );
        assert_eq!(parse_cursor("1234"), None);
    }
}
