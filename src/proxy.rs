//! The proxy: listener and accept loop, ingress dispatch, the per-call retry pipeline and the
//! upstream client.
//!
//! Request path: `ingress` decides what a request is (API call, or traffic for another host);
//! `call` runs an API call: parse, verify, token, then per attempt re-sign -> send -> decide;
//! `upstream` owns the pooled HTTPS clients.

pub mod access;
pub mod admin;
pub mod body;
pub mod call;
pub mod connect;
pub mod detach;
pub mod ingress;
pub mod response;
pub mod server;
pub mod upstream;

pub use server::{ProxyHandle, StartError, bind, prepare, start};
