//! Integration tests: real listeners on 127.0.0.1:0, the simulator as upstream, a real HTTP
//! client through the proxy (and the official legacy Python SDK in `interop`).

// Test helpers outside #[test] functions unwrap freely: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chaos;
mod cli;
mod connect;
mod dedupe;
mod fuzz_corpus;
mod hardening;
mod ingress;
mod interop;
mod limits;
mod logs;
mod retry;
mod robustness;
mod signing;
mod support;
mod v3;
