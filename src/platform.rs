//! Every difference between native targets and `wasm32-unknown-unknown`
//! lives in this module, so session logic never needs `cfg(target_arch)`.
//!
//! - [`MaybeSend`] / [`MaybeSync`] are `Send` / `Sync` on native targets
//!   (Lambda and tokio need `Send` futures) and empty on wasm32, where
//!   JavaScript-backed values such as reqwest's responses are not `Send`.
//! - `sleep` is tokio's timer on native targets and a JavaScript timer on wasm32.
//! - `unix_now_ms` is the system clock on native targets and JavaScript's
//!   `Date.now()` on wasm32.

use std::time::Duration;

#[cfg(all(feature = "direct", target_arch = "wasm32"))]
compile_error!(
    "the `direct` feature (Redis over TCP) is native only; use the `rest` backend on wasm32"
);

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::time::Duration;

    /// `Send` on native targets; no bound on wasm32.
    pub trait MaybeSend: Send {}
    impl<T: Send + ?Sized> MaybeSend for T {}

    /// `Sync` on native targets; no bound on wasm32.
    pub trait MaybeSync: Sync {}
    impl<T: Sync + ?Sized> MaybeSync for T {}

    pub(crate) async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// Milliseconds since the Unix epoch.
    pub(crate) fn unix_now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    #[cfg(feature = "rest")]
    pub(crate) fn is_connect_error(error: &reqwest::Error) -> bool {
        error.is_connect()
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use std::time::Duration;

    /// `Send` on native targets; no bound on wasm32.
    pub trait MaybeSend {}
    impl<T: ?Sized> MaybeSend for T {}

    /// `Sync` on native targets; no bound on wasm32.
    pub trait MaybeSync {}
    impl<T: ?Sized> MaybeSync for T {}

    pub(crate) async fn sleep(duration: Duration) {
        gloo_timers::future::sleep(duration).await;
    }

    /// Milliseconds since the Unix epoch (`std::time::SystemTime` panics on
    /// wasm32-unknown-unknown; JavaScript's clock answers).
    pub(crate) fn unix_now_ms() -> u64 {
        js_sys::Date::now() as u64
    }

    /// `fetch` does not tell a refused connection from a lost response.
    #[cfg(feature = "rest")]
    pub(crate) fn is_connect_error(_error: &reqwest::Error) -> bool {
        false
    }
}

#[cfg(feature = "rest")]
pub(crate) use imp::is_connect_error;
pub(crate) use imp::unix_now_ms;
pub use imp::{MaybeSend, MaybeSync};

/// Waits for `duration` on the current target's timer.
pub(crate) async fn sleep(duration: Duration) {
    imp::sleep(duration).await;
}

/// Runs `future`, giving up with [`crate::Error::Timeout`] after `limit`.
pub(crate) async fn with_timeout<T>(
    limit: Duration,
    future: impl std::future::Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    use futures_util::future::{Either, select};
    let future = std::pin::pin!(future);
    let timer = std::pin::pin!(sleep(limit));
    match select(future, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(crate::Error::Timeout {
            ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

/// Fills `buf` from the operating system's CSPRNG (`crypto.getRandomValues` on wasm32).
pub(crate) fn fill_random(buf: &mut [u8]) {
    // The OS random source failing is unrecoverable and must never be papered
    // over with weaker randomness.
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}
