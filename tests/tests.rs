//! Integration tests: one binary, real servers started per test.

mod conformance;
mod rest;
mod support;
