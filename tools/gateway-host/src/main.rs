//! `edge-session-host`: the gateway as a native HTTP server, configured from
//! the environment (the variables of the README's configuration table),
//! until SIGTERM or Ctrl-C.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;

use clap::Parser;

/// The edge-session gateway as a native HTTP server. Configuration comes from the environment
/// (ORIGIN_URL, SESSION_SECRETS, UPSTASH_REDIS_REST_URL/TOKEN or REDIS_URL, ...).
#[derive(Debug, Parser)]
#[command(name = "edge-session-host", version, about)]
struct Cli {
    /// Address to listen on (port 0 picks a free port; the start line tells which).
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Log level on stderr: error, warn, info, debug or off.
    #[arg(long, env = "GATEWAY_LOG", default_value = "warn")]
    log: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Ok(level) = cli.log.parse::<log::LevelFilter>() else {
        eprintln!("edge-session-host: --log must be error, warn, info, debug, trace or off");
        return ExitCode::FAILURE;
    };
    init_logging(level);
    let gateway = match edge_session_host::gateway_from_env().await {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("edge-session-host: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("edge-session-host: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => announce(addr),
        Err(e) => {
            eprintln!("edge-session-host: {e}");
            return ExitCode::FAILURE;
        }
    }
    match edge_session_host::serve(listener, gateway, stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-session-host: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The one start line, on stdout, flushed so a script reading it sees it at once.
#[allow(clippy::print_stdout)]
fn announce(addr: SocketAddr) {
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
}

/// `log` records as `LEVEL target: message` lines on stderr.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

fn init_logging(level: log::LevelFilter) {
    static LOGGER: StderrLog = StderrLog;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM; the handlers are installed before this returns.
fn stop_signal() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            return Box::pin(async move {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            });
        }
    }
    Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
