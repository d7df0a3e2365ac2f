//! Integration tests: one binary, real servers started per test.

mod conformance;
mod gateway;
mod rest;
mod support;
