//! Lease locks, for the rare critical section that needs one.
//!
//! Session writes never need a lock: they are field-level deltas and
//! optimistic version checks in one atomic script (see [`crate::store`]).
//! A lock is for work *around* the store that must not run twice at once,
//! for example a one-time migration of a user's data or a call to an
//! external API that may only happen once per user.
//!
//! The protocol is the single-instance Redis pattern:
//!
//! - **acquire**: `SET <prefix>lock:{<name>} <token> NX GET PX <lease>`, where
//!   the token is 128 random bits. `GET` returns the current holder's token,
//!   so an attempt replayed after a lost response recognises its own token
//!   instead of reporting the lock busy;
//! - **renew**: a compare-and-`PEXPIRE` script, **release**: a
//!   compare-and-`DEL` script. Both act only while the lock still holds the
//!   caller's token: a holder whose lease ran out gets [`Error::LockLost`]
//!   and never touches the lock of whoever took it next;
//! - **busy**: up to [`LockOptions::retries`] more attempts, with jittered
//!   exponential backoff, then [`Error::LockBusy`].
//!
//! ```no_run
//! # async fn run<B: edge_session::Backend>(store: &edge_session::SessionStore<B>)
//! # -> edge_session::Result<()> {
//! use std::time::Duration;
//! use edge_session::LockOptions;
//!
//! // Explicit: acquire, renew for long work, release.
//! let guard = store.lock("migrate:u-42", Duration::from_secs(10), LockOptions::default()).await?;
//! // ... first half of the work ...
//! guard.renew(Duration::from_secs(10)).await?; // fails with LockLost if the lease ran out
//! // ... second half ...
//! guard.release().await?;
//!
//! // Or scoped: the lease is renewed while the work runs, then released.
//! let n = store
//!     .with_lock("report", Duration::from_secs(5), LockOptions::default(), || async { 42 })
//!     .await?;
//! # let _ = n; Ok(()) }
//! ```
//!
//! # Leases and long work
//!
//! [`SessionStore::with_lock`] renews the lease every third of it **in the
//! same task**: it polls the work and a renewal timer together, so it needs
//! no spawned task and behaves the same on native targets and in a Worker.
//! If a renewal finds the lease lost, the work future is dropped (cancelled
//! at its current `.await`) and `with_lock` fails with [`Error::LockLost`].
//! With [`SessionStore::lock`], renew by hand with [`LockGuard::renew`] at
//! least once per lease during long work.
//!
//! # Limits
//!
//! A lease lock is not a fencing token: a holder paused for longer than its
//! lease (a frozen isolate, a long GC pause) may still act after another
//! holder took over. Keep leases well above the expected work time, and call
//! [`LockGuard::renew`] right before a side effect that must not be doubled:
//! it fails if the lock was lost. Like any single-instance Redis lock, a lock
//! can also be lost when Redis fails over to a replica that had not received
//! it. A dropped guard is not released (there is no async `Drop`): the lock
//! frees itself when its lease ends.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures_util::future::{Either, select};

use crate::backend::{Backend, Command, Retry, Value, query};
use crate::error::{Error, Result};
use crate::platform::{fill_random, sleep};
use crate::script::{self, Keys};
use crate::store::SessionStore;

/// How hard [`SessionStore::lock`] tries before giving up with [`Error::LockBusy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOptions {
    /// Attempts after the first one. Default 20.
    pub retries: u32,
    /// The wait before the first retry; doubled for each further one, with
    /// jitter (a random wait between half and all of it). Default 20 ms.
    pub backoff: Duration,
    /// The longest wait between two attempts. Default 500 ms.
    pub max_backoff: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        Self {
            retries: 20,
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
        }
    }
}

impl LockOptions {
    /// `retries` more attempts after the first, starting with a `backoff` wait.
    pub fn new(retries: u32, backoff: Duration) -> Self {
        Self {
            retries,
            backoff,
            ..Self::default()
        }
    }

    /// One attempt only: fail at once when the lock is held.
    pub fn no_wait() -> Self {
        Self::new(0, Duration::ZERO)
    }

    /// Sets [`LockOptions::max_backoff`].
    #[must_use]
    pub fn with_max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }

    /// The wait after failed attempt number `attempt` (0 for the first).
    fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        let mut random = [0u8; 4];
        fill_random(&mut random);
        let fraction = f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX);
        full / 2 + (full / 2).mul_f64(fraction)
    }
}

/// A held lock. Release it with [`LockGuard::release`]; a guard that is
/// dropped instead keeps the lock until its lease ends.
///
/// `Debug` shows the lock's name and key, never its token.
#[must_use = "the lock stays held until release() or until its lease runs out"]
pub struct LockGuard<'a, B> {
    store: &'a SessionStore<B>,
    name: String,
    key: String,
    token: String,
    lease: Duration,
    attempts: u32,
}

impl<B> fmt::Debug for LockGuard<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("lease", &self.lease)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

fn millis(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}

impl<B: Backend> SessionStore<B> {
    /// The Redis key of the lock `name`: `<prefix>lock:{<name>}`.
    pub fn lock_key(&self, name: &str) -> String {
        format!("{}lock:{{{name}}}", self.layout().prefix())
    }

    /// Acquires the lock `name` for `lease` (at least 1 ms), trying up to
    /// `1 + options.retries` times. One round trip per attempt.
    ///
    /// Fails with [`Error::LockBusy`] when every attempt found the lock held.
    pub async fn lock(
        &self,
        name: &str,
        lease: Duration,
        options: LockOptions,
    ) -> Result<LockGuard<'_, B>> {
        let key = self.lock_key(name);
        let mut secret = [0u8; 16];
        fill_random(&mut secret);
        let token = hex::encode(secret);
        let set = Command::new("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(millis(lease));
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Safe to retry: a replay finds its own token.
            let held_by = query(self.backend(), set.clone()).await?;
            let acquired = match &held_by {
                Value::Nil => true,
                other => other.as_str() == Some(token.as_str()),
            };
            if acquired {
                return Ok(LockGuard {
                    store: self,
                    name: name.to_owned(),
                    key,
                    token,
                    lease,
                    attempts: attempt,
                });
            }
            if attempt > options.retries {
                return Err(Error::LockBusy {
                    name: name.to_owned(),
                    attempts: attempt,
                });
            }
            sleep(options.delay(attempt - 1)).await;
        }
    }

    /// Runs `work` while holding the lock `name`, renewing its `lease` every
    /// third of it while the work runs (in the same task, see the module
    /// docs), then releases it and returns what the work returned.
    ///
    /// Fails with [`Error::LockBusy`] when the lock could not be acquired
    /// (the work does not run), and with [`Error::LockLost`] when the lease
    /// was lost: during the work (which is then dropped) or by the time of
    /// the release (the work did finish, not necessarily alone).
    pub async fn with_lock<T, F, Fut>(
        &self,
        name: &str,
        lease: Duration,
        options: LockOptions,
        work: F,
    ) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let guard = self.lock(name, lease, options).await?;
        let outcome = {
            let work = std::pin::pin!(work());
            let renewing = std::pin::pin!(guard.keep_alive());
            match select(work, renewing).await {
                Either::Left((value, _)) => Ok(value),
                Either::Right((error, _)) => Err(error),
            }
        };
        match outcome {
            Ok(value) => guard.release().await.map(|()| value),
            Err(error @ Error::LockLost { .. }) => Err(error),
            Err(error) => {
                // Best effort; the lease frees the lock anyway.
                if let Err(e) = guard.release().await {
                    log::warn!("edge-session: could not release a lock after an error: {e}");
                }
                Err(error)
            }
        }
    }
}

impl<B: Backend> LockGuard<'_, B> {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lock's Redis key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease it was acquired with.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How many attempts acquiring it took (1 when it was free).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    fn keys(&self) -> Keys {
        Keys::default().with('l', self.key.clone())
    }

    /// Sets the remaining lease to `lease`, if the lock is still ours. One
    /// round trip.
    ///
    /// Fails with [`Error::LockLost`] when the lease had already run out (the
    /// lock is then left alone: someone else may hold it).
    pub async fn renew(&self, lease: Duration) -> Result<()> {
        let call = self.store.call(
            &script::RENEW,
            self.keys(),
            vec![self.token.clone(), millis(lease)],
        );
        // Safe to retry: renewing twice sets the same lease.
        let reply = script::run_one(self.store.backend(), call, Retry::Idempotent).await?;
        self.check(&reply)
    }

    /// Releases the lock, if it is still ours. One round trip.
    ///
    /// Fails with [`Error::LockLost`] when the lease had already run out:
    /// the critical section may have overlapped with another holder's, whose
    /// lock is left alone.
    pub async fn release(self) -> Result<()> {
        let call = self
            .store
            .call(&script::UNLOCK, self.keys(), vec![self.token.clone()]);
        // Not blindly retried: a replay after a lost response would find the
        // lock gone and report it lost.
        let reply = script::run_one(self.store.backend(), call, Retry::Once).await?;
        self.check(&reply)
    }

    fn check(&self, reply: &Value) -> Result<()> {
        match reply.as_int() {
            Some(1) => Ok(()),
            Some(0) => Err(Error::LockLost {
                name: self.name.clone(),
            }),
            _ => Err(Error::protocol("lock: expected 0 or 1")),
        }
    }

    /// Renews the lease every third of it, forever; returns the error that
    /// ended it (a lost lease, or a store error that is not transient).
    async fn keep_alive(&self) -> Error {
        let every = (self.lease / 3).max(Duration::from_millis(1));
        loop {
            sleep(every).await;
            match self.renew(self.lease).await {
                Ok(()) => {}
                // A missed renewal is retried at the next tick; if the lease
                // ran out meanwhile, that renewal reports it.
                Err(e) if e.is_retryable() => {
                    log::warn!("edge-session: lock renewal failed, retrying: {e}");
                }
                Err(e) => return e,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_and_capped() {
        let options = LockOptions::new(5, Duration::from_millis(10))
            .with_max_backoff(Duration::from_millis(100));
        let first = options.delay(0);
        assert!(first >= Duration::from_millis(5) && first <= Duration::from_millis(10));
        let third = options.delay(2);
        assert!(third >= Duration::from_millis(20) && third <= Duration::from_millis(40));
        for attempt in [4, 10, 40] {
            let late = options.delay(attempt);
            assert!(late >= Duration::from_millis(50) && late <= Duration::from_millis(100));
        }
        assert_eq!(LockOptions::no_wait().delay(3), Duration::ZERO);
    }
}
