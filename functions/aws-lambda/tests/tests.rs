//! One integration test binary (link time): the gateway function in both
//! response modes, the `with_sessions` wrapper and secret resolution, in
//! process against real servers started by the tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway;
mod secrets;
mod streaming;
mod support;
mod wrapper;
