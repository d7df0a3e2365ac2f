//! `edge-session-loadgen`: runs the load against a running gateway and
//! prints the summary; exits 1 when anything was lost or failed.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Load generator for the edge-session gateway in front of the demo origin.
#[derive(Debug, Parser)]
#[command(name = "edge-session-loadgen", version, about)]
struct Cli {
    /// Base URL of the gateway.
    #[arg(long, env = "LOAD_GATEWAY_URL")]
    gateway: String,
    /// Concurrent clients, each with its own session.
    #[arg(long, env = "LOAD_CLIENTS", default_value_t = 200)]
    clients: usize,
    /// Seconds of mixed reads and writes.
    #[arg(long, env = "LOAD_SECONDS", default_value_t = 60)]
    seconds: u64,
    /// Share of writes (`/incr`) in percent.
    #[arg(long, env = "LOAD_WRITE_PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    write_percent: u8,
    /// Redis to scan for keys without a TTL afterwards.
    #[arg(long, env = "LOAD_REDIS_URL")]
    redis_url: Option<String>,
    /// Name of the session cookie.
    #[arg(long, default_value = "__Host-session")]
    cookie_name: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = edge_session_loadgen::LoadConfig::new(cli.gateway);
    config.clients = cli.clients;
    config.duration = Duration::from_secs(cli.seconds);
    config.write_percent = cli.write_percent;
    config.redis_url = cli.redis_url;
    config.cookie_name = cli.cookie_name;
    eprintln!(
        "loadgen: {} clients for {} s against {}",
        config.clients, cli.seconds, config.gateway
    );
    match edge_session_loadgen::run(config).await {
        Ok(summary) => {
            report(&summary);
            if summary.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn report(summary: &edge_session_loadgen::Summary) {
    println!("{summary}");
}
