//! idemproxy: a proxy that makes Alibaba Cloud OpenAPI retries safe for tools that were never
//! written for it.
//!
//! A request to a configured API host is parsed as an RPC call, its caller's signature is
//! verified, a `ClientToken` is injected when the action supports one, and every attempt is
//! re-signed with a fresh nonce and timestamp. Retries follow the rules in [`retry::decide`]:
//! nothing that could run twice is ever retried.
//!
//! Module map (outer to inner on the request path):
//! - [`proxy`]: listeners, ingress modes, the per-call pipeline and the upstream client;
//! - [`api`]: pure protocol code: parameter parsing, encoding, V1 signing, classification,
//!   API-shaped error bodies;
//! - [`retry`]: pure retry decisions, backoff and server hints;
//! - [`sim`]: the built-in gpdb simulator (a user-facing subcommand and the tests' upstream);
//! - [`demo`]: the offline demo that runs a faulty workload through the proxy.

pub mod api;
pub mod client;
pub mod config;
pub mod dedupe;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod net;
pub mod proxy;
pub mod replay;
pub mod retry;
pub mod secret;
pub mod sim;
pub mod telemetry;
pub mod tls;

pub use config::Config;
