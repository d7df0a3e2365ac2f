//! Redis Cluster and Sentinel set-ups of our own, on free loopback ports,
//! killed and removed on drop; and a cluster-aware inspection connection.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::{ConnectionLike, RedisResult, Value};

use super::{RedisServer, free_port};

tokio::task_local! {
    static ON_CLUSTER: ();
}

/// Runs `test` with `Harness::start(Kind::Direct)` starting a local
/// 3-master Redis Cluster (and the store in cluster mode) instead of one
/// redis-server.
pub async fn on_cluster<F: std::future::Future>(test: F) -> F::Output {
    ON_CLUSTER.scope((), test).await
}

/// Whether the caller runs inside [`on_cluster`].
pub fn requested() -> bool {
    ON_CLUSTER.try_with(|_| ()).is_ok()
}

/// Starts `masters` cluster-enabled redis-servers, joins them with
/// `redis-cli --cluster create` (no replicas) and waits until every node says
/// `cluster_state:ok`. The first node is returned with the others as its
/// `peers` (all killed and removed on drop).
pub fn start_cluster(masters: usize) -> RedisServer {
    for _ in 0..3 {
        let mut nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                // The bus port is chosen too: port + 10000 may not exist.
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf", // in the node's own temporary --dir
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let created = Command::new(cli_binary())
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed (scripts/test installs redis-tools)");
        if created.success() && wait_until(Duration::from_secs(20), || nodes.iter().all(is_ok)) {
            let mut first = nodes.remove(0);
            first.peers = nodes;
            return first;
        }
    }
    panic!("could not create a Redis Cluster");
}

fn cli_binary() -> String {
    std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".into())
}

fn is_ok(node: &RedisServer) -> bool {
    let Ok(mut c) = redis::Client::open(node.url()).and_then(|c| c.get_connection()) else {
        return false;
    };
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query::<String>(&mut c)
        .is_ok_and(|info| info.contains("cluster_state:ok"))
}

/// Polls `ready` every 50 ms until it holds or `limit` has passed.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// A connection for inspecting what the store left in Redis: a plain one, or
/// on a cluster one that routes each command by its key (a pipeline is split
/// into its commands, each routed on its own).
pub enum Inspector {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Inspector {
    pub fn of(server: &RedisServer) -> Self {
        if server.peers.is_empty() {
            return Inspector::Single(server.inspect());
        }
        let client = redis::cluster::ClusterClient::new(server.node_urls()).unwrap();
        Inspector::Cluster(Box::new(client.get_connection().unwrap()))
    }
}

impl ConnectionLike for Inspector {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Inspector::Single(c) => c.req_packed_command(cmd),
            Inspector::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let c = match self {
            Inspector::Single(c) => return c.req_packed_commands(cmd, offset, count),
            Inspector::Cluster(c) => c,
        };
        if cmd.starts_with(b"*1\r\n$5\r\nMULTI\r\n") {
            return c.req_packed_commands(cmd, offset, count); // one slot
        }
        let mut parser = redis::Parser::new();
        let mut input = cmd;
        let mut replies = Vec::with_capacity(offset + count);
        for _ in 0..offset + count {
            let Value::Array(parts) = parser.parse_value(&mut input)? else {
                panic!("a pipelined command is an array");
            };
            let mut one = redis::Cmd::new();
            for part in parts {
                match part {
                    Value::BulkString(bytes) => one.arg(bytes),
                    other => panic!("unexpected command part {other:?}"),
                };
            }
            replies.push(c.req_command(&one)?);
        }
        Ok(replies.split_off(offset))
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Inspector::Single(c) => c.check_connection(),
            Inspector::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Inspector::Single(c) => c.is_open(),
            Inspector::Cluster(c) => c.is_open(),
        }
    }
}

/// Every key on every node of `server` (SCAN each one).
pub fn keys_of_every_node(server: &RedisServer) -> Vec<String> {
    server
        .nodes()
        .flat_map(|node| {
            let mut c = node.inspect();
            let iter: redis::Iter<'_, String> = redis::cmd("SCAN")
                .cursor_arg(0)
                .arg("COUNT")
                .arg(1000)
                .clone()
                .iter(&mut c)
                .unwrap();
            iter.map(Result::unwrap).collect::<Vec<_>>()
        })
        .collect()
}

/// A `redis-sentinel` of our own on a free port, killed and removed on drop.
pub struct Sentinel {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl Sentinel {
    /// Starts a sentinel watching `master_port` as `mymaster` (quorum 2,
    /// down after 1 s, failover timeout 3 s).
    pub fn start(master_port: u16) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "edge-session-sentinel-{}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("sentinel.conf");
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor mymaster 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds mymaster 1000\n\
                     sentinel failover-timeout mymaster 3000\n\
                     sentinel parallel-syncs mymaster 1\n",
                    dir.display()
                ),
            )
            .unwrap();
            // Sentinel rewrites its config file: it must be writable.
            let mut command = match which("redis-sentinel") {
                Some(binary) => {
                    let mut c = Command::new(binary);
                    c.arg(&config);
                    c
                }
                // The same program, as Debian ships it.
                None => {
                    let mut c = Command::new("redis-server");
                    c.arg(&config).arg("--sentinel");
                    c
                }
            };
            let child = command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-sentinel must be installed (scripts/test installs it)");
            let mut sentinel = Self { child, dir, port };
            let url = sentinel.url();
            let up = wait_until(Duration::from_secs(10), || {
                redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
            });
            if up && matches!(sentinel.child.try_wait(), Ok(None)) {
                return sentinel;
            }
        }
        panic!("could not start redis-sentinel");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `SENTINEL MASTER mymaster` as field -> value.
    pub fn master_info(&self) -> std::collections::HashMap<String, String> {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| {
                redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg("mymaster")
                    .query(&mut c)
            })
            .unwrap_or_default()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|path| path.is_file())
}

/// A master, one replica and three sentinels, all local; ready when the
/// replica is in sync and every sentinel knows the replica and the other two.
pub struct SentinelSetup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<Sentinel>,
}

impl SentinelSetup {
    pub fn start() -> Self {
        let master = RedisServer::start();
        let port = master.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        let in_sync = wait_until(Duration::from_secs(20), || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut replica.inspect())
                .unwrap_or_default();
            info.contains("master_link_status:up")
        });
        assert!(in_sync, "replica never synced");
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port)).collect();
        let aware = wait_until(Duration::from_secs(30), || {
            sentinels.iter().all(|s| {
                let info = s.master_info();
                info.get("num-slaves").map(String::as_str) == Some("1")
                    && info.get("num-other-sentinels").map(String::as_str) == Some("2")
            })
        });
        assert!(aware, "sentinels never found the replica and each other");
        Self {
            master,
            replica,
            sentinels,
        }
    }

    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Sentinel::url).collect()
    }

    /// The port of the master the sentinels name now.
    pub fn master_port_now(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let mut c = redis::Client::open(s.url()).ok()?.get_connection().ok()?;
            let (_, port): (String, u16) = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg("mymaster")
                .query(&mut c)
                .ok()?;
            Some(port)
        })
    }
}
