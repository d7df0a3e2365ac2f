//! Fault injection and request counters for client tests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One way of answering a request badly.
///
/// Faults apply to authenticated command requests (`/`, `/pipeline`, `/multi-exec`, path style),
/// never to the control endpoints. Over HTTP they are written as JSON with a `mode` tag, e.g.
/// `{"mode":"status","status":503}`, `{"mode":"delay","ms":250}`, `{"mode":"hang"}`,
/// `{"mode":"malformed_json"}`, `{"mode":"plain_text","status":502}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this HTTP status and a JSON body
    /// `{"error":"ERR upstash-local injected fault: HTTP <status>"}`; the command is not run.
    Status {
        /// The HTTP status code, e.g. 500 or 503.
        status: u16,
    },
    /// Wait this many milliseconds, then serve the request normally (the command runs after
    /// the wait).
    Delay {
        /// The wait in milliseconds.
        ms: u64,
    },
    /// Never answer: the request stays open until the client gives up or the server shuts
    /// down. The command is not run.
    Hang,
    /// Run the command, then answer HTTP 200 with the JSON body cut in half.
    MalformedJson,
    /// Answer with this status and a `text/plain` body that is not JSON, as a gateway in front
    /// of the service would (e.g. 502 `Bad Gateway`); the command is not run.
    PlainText {
        /// The HTTP status code, e.g. 502.
        status: u16,
    },
}

impl Fault {
    /// [`Fault::Status`] with this status.
    pub fn status(status: u16) -> Self {
        Self::Status { status }
    }

    /// [`Fault::Delay`] for this long (millisecond resolution).
    pub fn delay(duration: Duration) -> Self {
        Self::Delay {
            ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// [`Fault::PlainText`] with this status.
    pub fn plain_text(status: u16) -> Self {
        Self::PlainText { status }
    }
}

/// A fault waiting in the queue of a [`Faults`] handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFault {
    /// What happens.
    #[serde(flatten)]
    pub fault: Fault,
    /// For how many more requests; `None` means every request until [`Faults::clear`].
    #[serde(default)]
    pub times: Option<u64>,
}

/// The routes requests are counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// `/` with POST or PUT: one JSON command.
    Single,
    /// `/pipeline`.
    Pipeline,
    /// `/multi-exec`.
    MultiExec,
    /// Any other path: a path-style command such as `GET /get/key`.
    PathStyle,
}

/// Counters since the server started or since [`Faults::reset_stats`].
///
/// Every HTTP request except those to the control endpoints (`/__faults`, `/__stats`) is
/// counted, whatever its answer (401 and 405 included), so a client's round trips can be
/// counted exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// All counted HTTP requests (the sum of the per-route counters).
    pub requests: u64,
    /// Requests to `/` with POST or PUT.
    pub single: u64,
    /// Requests to `/pipeline`.
    pub pipeline: u64,
    /// Requests to `/multi-exec`.
    pub multi_exec: u64,
    /// Path-style requests.
    pub path_style: u64,
    /// Commands sent to Redis (each command of a pipeline or transaction counts).
    pub commands: u64,
    /// Requests answered by an injected fault (delays included).
    pub faults_injected: u64,
    /// Requests that needed the primary: a `/multi-exec`, or a request with a command that
    /// writes or runs a script. With [`Options::primary_delay`](crate::Options::primary_delay)
    /// each of them waited that delay once, before it ran; without it they are counted all the
    /// same. Requests that never reached Redis (refused, malformed, faults other than delays)
    /// are in neither count.
    #[serde(default)]
    pub delayed: u64,
    /// Requests of reads only (and commands that touch no data, such as `PING`), answered at
    /// once.
    #[serde(default)]
    pub immediate: u64,
}

#[derive(Debug, Default)]
struct Counters {
    single: AtomicU64,
    pipeline: AtomicU64,
    multi_exec: AtomicU64,
    path_style: AtomicU64,
    commands: AtomicU64,
    faults_injected: AtomicU64,
    delayed: AtomicU64,
    immediate: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    queue: Mutex<VecDeque<PlannedFault>>,
    counters: Counters,
}

/// A cloneable handle on a server's fault plan and request counters.
///
/// Faults queue up: each request takes the fault at the front of the queue, and a fault with a
/// count leaves the queue once used up, so `inject(Fault::status(503), 1)` followed by
/// `inject(Fault::MalformedJson, 1)` fails the next request with a 503 and the one after it with
/// a cut body. A fault without a count ([`Faults::inject_always`]) stays until
/// [`Faults::clear`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Inner>,
}

impl Faults {
    /// A handle with no faults and zeroed counters, not attached to any server yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<PlannedFault>> {
        // A panic while holding the lock cannot leave the queue inconsistent.
        self.inner
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `fault` to the next `times` requests (after the faults already queued).
    pub fn inject(&self, fault: Fault, times: u64) {
        if times > 0 {
            self.plan(PlannedFault {
                fault,
                times: Some(times),
            });
        }
    }

    /// Applies `fault` to every request (after the faults already queued) until
    /// [`Faults::clear`].
    pub fn inject_always(&self, fault: Fault) {
        self.plan(PlannedFault { fault, times: None });
    }

    /// Queues a planned fault; a count of zero is ignored.
    pub fn plan(&self, planned: PlannedFault) {
        if planned.times != Some(0) {
            self.queue().push_back(planned);
        }
    }

    /// Removes every queued fault.
    pub fn clear(&self) {
        self.queue().clear();
    }

    /// The queued faults, the next one first.
    pub fn pending(&self) -> Vec<PlannedFault> {
        self.queue().iter().cloned().collect()
    }

    /// Takes the fault for the request being served, if any.
    pub(crate) fn take(&self) -> Option<Fault> {
        let mut queue = self.queue();
        let front = queue.front_mut()?;
        let fault = front.fault.clone();
        if let Some(times) = &mut front.times {
            *times = times.saturating_sub(1);
            if *times == 0 {
                queue.pop_front();
            }
        }
        drop(queue);
        self.inner
            .counters
            .faults_injected
            .fetch_add(1, Ordering::Relaxed);
        Some(fault)
    }

    pub(crate) fn count_request(&self, route: Route) {
        let counters = &self.inner.counters;
        let counter = match route {
            Route::Single => &counters.single,
            Route::Pipeline => &counters.pipeline,
            Route::MultiExec => &counters.multi_exec,
            Route::PathStyle => &counters.path_style,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_commands(&self, commands: usize) {
        self.inner.counters.commands.fetch_add(
            u64::try_from(commands).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts a request that reached Redis: `delayed` when it needed the primary.
    pub(crate) fn count_primary(&self, delayed: bool) {
        let counters = &self.inner.counters;
        let counter = if delayed {
            &counters.delayed
        } else {
            &counters.immediate
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let single = c.single.load(Ordering::Relaxed);
        let pipeline = c.pipeline.load(Ordering::Relaxed);
        let multi_exec = c.multi_exec.load(Ordering::Relaxed);
        let path_style = c.path_style.load(Ordering::Relaxed);
        Stats {
            requests: single + pipeline + multi_exec + path_style,
            single,
            pipeline,
            multi_exec,
            path_style,
            commands: c.commands.load(Ordering::Relaxed),
            faults_injected: c.faults_injected.load(Ordering::Relaxed),
            delayed: c.delayed.load(Ordering::Relaxed),
            immediate: c.immediate.load(Ordering::Relaxed),
        }
    }

    /// All counted HTTP requests so far: a client's round trips.
    pub fn requests(&self) -> u64 {
        self.stats().requests
    }

    /// Requests counted under one route so far.
    pub fn requests_to(&self, route: Route) -> u64 {
        let stats = self.stats();
        match route {
            Route::Single => stats.single,
            Route::Pipeline => stats.pipeline,
            Route::MultiExec => stats.multi_exec,
            Route::PathStyle => stats.path_style,
        }
    }

    /// Sets every counter back to zero and returns their values before.
    pub fn reset_stats(&self) -> Stats {
        let c = &self.inner.counters;
        let single = c.single.swap(0, Ordering::Relaxed);
        let pipeline = c.pipeline.swap(0, Ordering::Relaxed);
        let multi_exec = c.multi_exec.swap(0, Ordering::Relaxed);
        let path_style = c.path_style.swap(0, Ordering::Relaxed);
        Stats {
            requests: single + pipeline + multi_exec + path_style,
            single,
            pipeline,
            multi_exec,
            path_style,
            commands: c.commands.swap(0, Ordering::Relaxed),
            faults_injected: c.faults_injected.swap(0, Ordering::Relaxed),
            delayed: c.delayed.swap(0, Ordering::Relaxed),
            immediate: c.immediate.swap(0, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_order_and_counts() {
        let faults = Faults::new();
        faults.inject(Fault::status(503), 2);
        faults.inject(Fault::MalformedJson, 1);
        faults.inject(Fault::Hang, 0);
        assert_eq!(faults.take(), Some(Fault::status(503)));
        assert_eq!(faults.take(), Some(Fault::status(503)));
        assert_eq!(faults.take(), Some(Fault::MalformedJson));
        assert_eq!(faults.take(), None);
        faults.inject_always(Fault::plain_text(502));
        faults.inject(Fault::Hang, 1);
        for _ in 0..3 {
            assert_eq!(faults.take(), Some(Fault::plain_text(502)));
        }
        assert_eq!(faults.pending().len(), 2);
        faults.clear();
        assert_eq!(faults.take(), None);
        assert_eq!(faults.stats().faults_injected, 6);
    }

    #[test]
    fn json_shape() {
        let planned: PlannedFault =
            serde_json::from_str(r#"{"mode":"status","status":503,"times":2}"#).expect("parse");
        assert_eq!(
            planned,
            PlannedFault {
                fault: Fault::status(503),
                times: Some(2)
            }
        );
        let planned: PlannedFault =
            serde_json::from_str(r#"{"mode":"delay","ms":20}"#).expect("parse");
        assert_eq!(planned.fault, Fault::delay(Duration::from_millis(20)));
        assert_eq!(planned.times, None);
        assert_eq!(
            serde_json::to_string(&Fault::MalformedJson).expect("serialize"),
            r#"{"mode":"malformed_json"}"#
        );
    }
}
