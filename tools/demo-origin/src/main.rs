//! `demo-origin`: serve the demo app until SIGTERM or Ctrl-C.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::sync::oneshot;

/// Demo origin web app behind the edge-session gateway (stateless: the session lives in the
/// x-session-* headers).
#[derive(Debug, Parser)]
#[command(name = "demo-origin", version, about)]
struct Cli {
    /// Address to listen on (port 0 picks a free port; the start line tells which).
    #[arg(long, default_value = "127.0.0.1:8788")]
    listen: SocketAddr,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("demo-origin: cannot listen on {}: {err}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("demo-origin: {err}");
            return ExitCode::FAILURE;
        }
    };
    let stop_signal = stop_signal();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut server = tokio::spawn(demo_origin::serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));
    announce(addr);
    tokio::select! {
        result = &mut server => return exit_code(result),
        () = stop_signal => {}
    }
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(result) => exit_code(result),
        Err(_) => {
            eprintln!("demo-origin: connections still open after 5 s, exiting anyway");
            ExitCode::SUCCESS
        }
    }
}

fn exit_code(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> ExitCode {
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) => {
            eprintln!("demo-origin: {err}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("demo-origin: server task failed: {err}");
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

/// Resolves on Ctrl-C or (on Unix) SIGTERM. The handlers are installed before this returns, so
/// a signal sent right after the start line is never lost.
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
