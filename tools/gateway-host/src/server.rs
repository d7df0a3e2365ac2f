//! [`serve`]: HTTP/1.1 connections (keep-alive, upgrades) with a graceful stop.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_session::Backend;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::proxy::HostGateway;

/// Serves `gateway` on `listener` (HTTP/1.1 with keep-alive and protocol
/// upgrades; the TCP peer's address is each request's client address) until
/// `shutdown` resolves. Then it closes the listener at once, lets the
/// requests in flight finish (their response bodies included), closes idle
/// keep-alive connections, and returns. WebSocket connections already
/// upgraded are not waited for: they end with the process.
pub async fn serve<B, F>(
    listener: TcpListener,
    gateway: HostGateway<B>,
    shutdown: F,
) -> io::Result<()>
where
    B: Backend + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let gateway = Arc::new(gateway);
    let (stop, stopping) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(connection(stream, peer, gateway.clone(), stopping.clone()));
    }
    drop(listener);
    drop(stopping);
    // Every connection task holds a receiver: `closed` resolves when the last ends.
    let _ = stop.send(());
    stop.closed().await;
    Ok(())
}

/// Serves one connection until the client closes it or, after `stop`
/// changes, its request in flight is answered.
async fn connection<B: Backend + Send + Sync + 'static>(
    stream: TcpStream,
    peer: SocketAddr,
    gateway: Arc<HostGateway<B>>,
    mut stop: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(gateway.handle(request, Some(peer.ip())).await) }
    });
    let connection = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        log::debug!("edge-session-host: connection from {peer} ended: {e}");
    }
}

/// Logs a failed `accept`; waits a moment when it is not about one
/// connection (out of file descriptors...), not to spin.
async fn accept_failed(error: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    log::error!("edge-session-host: accept failed: {error}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
