//! Integration tests: one binary, real servers started per test.

#[macro_use]
mod support;

mod cluster;
mod conformance;
mod gateway;
mod gateway_security;
mod indexes;
mod limits;
mod lock;
mod outage;
mod rest;
mod security_store;
mod sync_token;
