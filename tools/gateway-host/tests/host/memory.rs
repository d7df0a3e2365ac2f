//! Streaming does not buffer: 1 GiB through the host hardly moves its memory.

use std::time::Instant;

use axum::http::{Method, StatusCode};

use crate::support::{Connection, Host, MIB, Origin, Received, Redis, full, receive};

#[tokio::test]
async fn streaming_1_gib_through_the_host_keeps_its_memory_flat() {
    const GIB: u64 = 1024 * MIB as u64;
    const ALLOWED: u64 = 16 * MIB as u64;
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let host = Host::start(&origin.url, &redis, &[]).await;
    let mut connection = host.connect().await;

    // Warm up: the connections, the pool and their buffers exist.
    async fn download(connection: &mut Connection, bytes: u64) -> Received {
        let request = connection
            .request(Method::GET, &format!("/bulk?bytes={bytes}"), None)
            .body(full(""))
            .unwrap();
        let response = connection.stream(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        receive(response.into_body(), Instant::now(), false).await
    }
    assert_eq!(
        download(&mut connection, 8 * MIB as u64).await.bytes,
        8 * MIB as u64
    );
    let (rss, peak) = (host.memory("VmRSS"), host.memory("VmHWM"));

    let started = Instant::now();
    let received = download(&mut connection, GIB).await;
    let elapsed = started.elapsed();
    assert!(received.error.is_none(), "{received:?}");
    assert_eq!(received.bytes, GIB);

    let (rss_after, peak_after) = (host.memory("VmRSS"), host.memory("VmHWM"));
    let mib = |bytes: u64| bytes as f64 / MIB as f64;
    eprintln!(
        "1 GiB through the host in {elapsed:?}: VmRSS {:.1} -> {:.1} MiB, VmHWM {:.1} -> {:.1} MiB",
        mib(rss),
        mib(rss_after),
        mib(peak),
        mib(peak_after)
    );
    assert!(
        rss_after.saturating_sub(rss) < ALLOWED,
        "VmRSS grew {:.1} MiB",
        mib(rss_after.saturating_sub(rss))
    );
    assert!(
        peak_after.saturating_sub(peak) < ALLOWED,
        "VmHWM grew {:.1} MiB",
        mib(peak_after.saturating_sub(peak))
    );
}
