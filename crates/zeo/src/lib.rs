//! The ZEO 5 protocol: wire codec, server and client.

pub mod address;
pub mod client;
pub mod config;
pub mod limits;
pub mod server;
pub mod tls;
pub mod wire;
