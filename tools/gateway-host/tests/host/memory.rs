//! Streaming does not buffer: 1 GiB each way through the host hardly moves
//! its memory.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;

use crate::support::{BoxError, Connection, Host, MIB, Origin, Redis, full, receive};

/// Downloads `bytes` from the origin's `/bulk` through `connection`.
async fn download(connection: &mut Connection, bytes: u64) -> Duration {
    let started = Instant::now();
    let request = connection
        .request(Method::GET, &format!("/bulk?bytes={bytes}"), None)
        .body(full(""))
        .unwrap();
    let response = connection.stream(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let received = receive(response.into_body(), started, false).await;
    assert!(received.error.is_none(), "{received:?}");
    assert_eq!(received.bytes, bytes);
    received.last
}

/// Uploads `mib` MiB (one shared 1 MiB chunk over and over: the client
/// costs next to nothing) to the origin's `/record` through `connection`.
async fn upload(connection: &mut Connection, origin: &Origin, mib: usize) -> Duration {
    let started = Instant::now();
    let chunk = Bytes::from(vec![b'u'; MIB]);
    let chunks = futures_util::stream::iter(
        std::iter::repeat_n(chunk, mib).map(|c| Ok::<_, BoxError>(Frame::data(c))),
    );
    let request = connection
        .request(Method::POST, "/record", None)
        .body(StreamBody::new(chunks).boxed())
        .unwrap();
    let response = connection.stream(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    let upload = origin.upload().await;
    assert_eq!((upload.bytes, upload.complete), ((mib * MIB) as u64, true));
    started.elapsed()
}

#[tokio::test]
async fn streaming_1_gib_each_way_through_the_host_keeps_its_memory_flat() {
    const ALLOWED: u64 = 16 * MIB as u64;
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let host = Host::start(&origin.url, &redis, &[]).await;
    let mut connection = host.connect().await;

    // Warm up: the connections, the pool and their buffers exist.
    download(&mut connection, 8 * MIB as u64).await;
    upload(&mut connection, &origin, 8).await;
    let (rss, peak) = (host.memory("VmRSS"), host.memory("VmHWM"));

    let down = download(&mut connection, 1024 * MIB as u64).await;
    let up = upload(&mut connection, &origin, 1024).await;

    let (rss_after, peak_after) = (host.memory("VmRSS"), host.memory("VmHWM"));
    let mib = |bytes: u64| bytes as f64 / MIB as f64;
    eprintln!(
        "1 GiB down in {down:?}, 1 GiB up in {up:?}: host VmRSS {:.1} -> {:.1} MiB, VmHWM {:.1} -> {:.1} MiB",
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
    // The peak too: memory that grew and was given back shows there.
    assert!(
        peak_after.saturating_sub(peak) < ALLOWED,
        "VmHWM grew {:.1} MiB",
        mib(peak_after.saturating_sub(peak))
    );
}
