//! Session lifecycle events (`SESSION_LOG_EVENTS`), logged after the
//! response rather than in the request path.
//!
//! [`EventQueue`] is the gateway's hooks: it only queues each event. After a
//! request's response is made, [`log_after_response`] hands the queued events
//! to `ctx.wait_until`, where they are logged as JSON lines by
//! [`EventLog`] on a later turn of the event loop. The queue belongs to the
//! isolate, so with requests in flight side by side one request's task may
//! log another's events: each event is logged once, none is lost (every
//! request's events are queued before its response is made, and each
//! request with queued events schedules a task).

use std::cell::RefCell;
use std::time::Duration;

use edge_session::gateway::EventLog;
use edge_session::{Hooks, SessionEvent};
use worker::{Context, Delay};

thread_local! {
    static QUEUE: RefCell<Vec<SessionEvent>> = const { RefCell::new(Vec::new()) };
}

/// [`Hooks`] that queue every event for [`log_after_response`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EventQueue;

impl Hooks for EventQueue {
    fn on_event(&self, event: &SessionEvent) {
        QUEUE.with(|q| q.borrow_mut().push(event.clone()));
    }
}

/// Logs the queued events in `ctx.wait_until`, after the response (nothing
/// to do when none is queued).
pub fn log_after_response(ctx: &Context) {
    if QUEUE.with(|q| q.borrow().is_empty()) {
        return;
    }
    ctx.wait_until(async {
        // A timer turn: the response has gone out by then.
        Delay::from(Duration::ZERO).await;
        let events = QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut()));
        for event in &events {
            EventLog.on_event(event);
        }
    });
}
