//! The lagging-replica emulation (`Options::lagging_replica`): reads that do not carry a recent
//! enough `upstash-sync-token` are answered by a replica that has not received the latest writes.
//!
//! The replica is another database of the same redis-server (`SELECT`-style number). It is
//! updated only on demand, as a whole: one Lua script empties it and `COPY`s every key of the
//! primary database into it, TTLs included, atomically. In between it stays exactly as of its last
//! sync, so it lags behind the primary by every write made since.
//!
//! Routing, as Upstash's global databases do it:
//! - a request whose commands are all reads goes to the replica. A read is a command Redis flags
//!   `readonly` (Redis's command table, read at start: `routing.rs`), or a script (`EVAL`,
//!   `EVALSHA`), which the replica runs as `EVAL_RO` / `EVALSHA_RO`; a script that turns out to
//!   write there ("Write commands are not allowed from read-only scripts"), or that declares
//!   itself a write script (a shebang without `no-writes`: "Can not execute a script with write
//!   flag using *_ro command"), is run again on the primary, as a write;
//! - everything else (writes, `/multi-exec`, anything unknown) goes to the primary.
//!
//! Sync tokens are the endpoint's own (`SyncTokens`): a prefix and a counter that grows with every
//! response. Before a sync, the counter is read: every response numbered up to it was sent before
//! the sync's snapshot, so its writes are in the replica. A read carrying a token of this server
//! numbered above that point, while a write newer than that point exists, first brings the replica
//! up to date: the read then sees every write the client could have observed. A read without a
//! token (or with a foreign or older one) is served by the replica as it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Value};

use crate::backend::Backend;
use crate::command::Command;
use crate::routing::CommandTable;

/// The error texts of a script refused by the replica because it writes: a write made by a
/// script without a shebang, and a script whose shebang does not say `no-writes`.
const READ_ONLY_SCRIPT: [&str; 2] = [
    "Write commands are not allowed from read-only scripts",
    "Can not execute a script with write flag using *_ro command",
];

/// Empties the replica database, then copies every key of the primary into it.
const SYNC_SCRIPT: &str = r"
redis.call('SELECT', ARGV[2])
redis.call('FLUSHDB')
redis.call('SELECT', ARGV[1])
local cursor = '0'
local copied = 0
repeat
  local page = redis.call('SCAN', cursor, 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    copied = copied + redis.call('COPY', key, key, 'DB', ARGV[2], 'REPLACE')
  end
until cursor == '0'
return copied
";

/// The replica of one endpoint.
pub(crate) struct Replica {
    /// Commands on the replica database.
    reader: Backend,
    /// Syncs, on the primary database.
    primary: ConnectionManager,
    primary_db: i64,
    db: i64,
    /// One sync at a time.
    syncing: tokio::sync::Mutex<()>,
    /// Responses numbered up to this were sent before the replica's snapshot.
    synced_upto: AtomicU64,
    /// The number of the newest response to a request that went to the primary.
    last_write: AtomicU64,
    syncs: AtomicU64,
    replica_reads: AtomicU64,
    /// Which commands are reads.
    commands: Arc<CommandTable>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// What became of a request under lag emulation.
#[derive(Debug)]
pub(crate) enum Served {
    /// The replica answered.
    Replica(Vec<Value>),
    /// It must go to the primary.
    Primary,
}

impl Replica {
    /// Connects to the replica database `db` of the Redis at `url` and syncs it once.
    pub(crate) async fn connect(
        url: &str,
        db: i64,
        response_timeout: Option<Duration>,
        commands: Arc<CommandTable>,
    ) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let info = client.get_connection_info().clone();
        let primary_db = info.redis_settings().db();
        if primary_db == db {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "the replica database must differ from the primary's",
                format!("both are {db}"),
            )));
        }
        let settings = info.redis_settings().clone().set_db(db);
        let reader =
            Backend::connect_to(info.set_redis_settings(settings), response_timeout).await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(response_timeout);
        let primary = ConnectionManager::new_with_config(client, config).await?;
        let replica = Self {
            reader,
            primary,
            primary_db,
            db,
            syncing: tokio::sync::Mutex::new(()),
            synced_upto: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            replica_reads: AtomicU64::new(0),
            commands,
        };
        replica.sync(0).await?;
        Ok(replica)
    }

    /// Copies the primary into the replica. `upto` is the number of the newest response sent
    /// before this call.
    pub(crate) async fn sync(&self, upto: u64) -> RedisResult<u64> {
        let _one_at_a_time = self.syncing.lock().await;
        let mut primary = self.primary.clone();
        let copied: u64 = redis::cmd("EVAL")
            .arg(SYNC_SCRIPT)
            .arg(0)
            .arg(self.primary_db)
            .arg(self.db)
            .query_async(&mut primary)
            .await?;
        self.synced_upto.fetch_max(upto, Ordering::SeqCst);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(copied)
    }

    /// Notes that the response numbered `n` answered a request served by the primary.
    pub(crate) fn note_write(&self, n: u64) {
        self.last_write.fetch_max(n, Ordering::SeqCst);
    }

    /// How many times the replica was synced, and how many requests it answered.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.syncs.load(Ordering::Relaxed),
            self.replica_reads.load(Ordering::Relaxed),
        )
    }

    /// Serves `commands` from the replica if they are all reads, after a sync if `token` (the
    /// number of the request's sync token, if it is one of ours) asks for writes the replica
    /// lacks; `current` is the number of the newest response sent so far.
    pub(crate) async fn serve(
        &self,
        commands: &[&Command],
        token: Option<u64>,
        current: u64,
    ) -> RedisResult<Served> {
        let mut rewritten = Vec::with_capacity(commands.len());
        for command in commands {
            match self.as_read(command) {
                Some(read) => rewritten.push(read),
                None => return Ok(Served::Primary),
            }
        }
        let synced = self.synced_upto.load(Ordering::SeqCst);
        let unreplicated = self.last_write.load(Ordering::SeqCst) > synced;
        if unreplicated && token.is_some_and(|t| t > synced) {
            self.sync(current).await?;
        }
        let refs: Vec<&Command> = rewritten.iter().collect();
        let replies = self.reader.pipeline(&refs).await?;
        let refused = replies.iter().any(|reply| {
            matches!(reply, Value::ServerError(e) if e.details().is_some_and(|d| READ_ONLY_SCRIPT.iter().any(|text| d.contains(text))))
        });
        if refused {
            return Ok(Served::Primary);
        }
        self.replica_reads.fetch_add(1, Ordering::Relaxed);
        Ok(Served::Replica(replies))
    }

    /// The command as the replica runs it, or `None` when it is not a read.
    fn as_read(&self, command: &Command) -> Option<Command> {
        let read_only_script = match command.name().as_str() {
            "EVAL" => Some("EVAL_RO"),
            "EVALSHA" => Some("EVALSHA_RO"),
            _ => None,
        };
        if let Some(name) = read_only_script {
            let mut args = command.args().to_vec();
            args[0] = name.as_bytes().to_vec();
            return Command::from_args(args);
        }
        self.commands.is_read_only(command).then(|| command.clone())
    }
}
