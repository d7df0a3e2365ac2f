//! `upstash-local`: serve the Upstash-compatible REST endpoint until SIGTERM or Ctrl-C.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use upstash_local::{DEFAULT_MAX_BODY_BYTES, Options};

/// Local Upstash-compatible REST endpoint in front of a real redis-server.
#[derive(Parser)]
#[command(name = "upstash-local", version, about)]
struct Cli {
    /// Address to listen on (port 0 picks a free port; the start line tells which).
    #[arg(long, default_value = "127.0.0.1:8079")]
    listen: SocketAddr,
    /// Redis to serve, as a redis:// URL.
    #[arg(
        long,
        env = "UPSTASH_LOCAL_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Bearer token clients must send.
    #[arg(long, env = "UPSTASH_LOCAL_TOKEN", hide_env_values = true)]
    token: String,
    /// Serve the fault-control endpoints POST/GET /__faults, GET /__stats, POST /__stats/reset.
    #[arg(long)]
    enable_faults: bool,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Emulate a lagging read replica in this database of the same Redis (its contents are
    /// replaced): reads without a recent enough upstash-sync-token see stale data.
    #[arg(long, value_name = "DB")]
    lagging_replica_db: Option<i64>,
    /// Emulate a far primary region: requests that write or run a script (a command Redis flags
    /// write or pubsub, EVAL, EVALSHA, SCRIPT LOAD, every /multi-exec, a pipeline with any of
    /// those) wait this long once before they run; reads (GET, HGETALL, PTTL, EVAL_RO, read-only
    /// pipelines) are answered at once. /__stats counts both ("delayed", "immediate").
    #[arg(long, value_name = "MS", default_value_t = 0)]
    primary_delay_ms: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("upstash-local: cannot listen on {}: {err}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let options = Options::new(cli.redis_url, cli.token)
        .with_max_body_bytes(cli.max_body_bytes)
        .with_fault_endpoint(cli.enable_faults);
    let options = match cli.lagging_replica_db {
        Some(db) => options.with_lagging_replica(db),
        None => options,
    };
    let options = match cli.primary_delay_ms {
        0 => options,
        ms => options.with_primary_delay(Duration::from_millis(ms)),
    };
    let server = match upstash_local::spawn(listener, options).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("upstash-local: {err}");
            return ExitCode::FAILURE;
        }
    };
    announce(&server.url());
    stop_signal().await;
    match tokio::time::timeout(Duration::from_secs(5), server.shutdown()).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) => {
            eprintln!("upstash-local: {err}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("upstash-local: connections still open after 5 s, exiting anyway");
            ExitCode::SUCCESS
        }
    }
}

/// The one start line, on stdout, flushed so a script reading it sees it at once.
#[allow(clippy::print_stdout)]
fn announce(url: &str) {
    println!("listening on {url}");
    let _ = std::io::stdout().flush();
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
