//! Pure Alibaba Cloud OpenAPI protocol code: no I/O, no clock (time is a parameter).

pub mod classify;
pub mod encode;
pub mod error_body;
pub mod params;
pub mod rpc_client;
pub mod time;
pub mod v1;
pub mod v3;
