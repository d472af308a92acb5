//! Code shared by the Strongbox api and vault services: typed configuration loading, Postgres
//! pools (optionally over verified TLS) and migrations, logs, traces and metrics, signal
//! handling, and strict JSON bodies. It holds no HTTP server code; each service
//! owns its routes.

pub mod config;
pub mod db;
pub mod id;
pub mod json;
pub mod keys;
pub mod metrics;
pub mod permissions;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
