//! Test support for venue_images: deterministic datasets, the original application's
//! SQL (the oracle and baseline), database helpers, the fake ImageKit and provider
//! servers, and the servers some suites run privately: PostgreSQL clusters ([`pgctl`]),
//! a TLS-only one with its certificates ([`tls`]), and PgBouncer ([`pgbouncer`]). The
//! `venue-images-dev` binary wraps these for scripts.

pub mod bench;
pub mod bench_uploader;
pub mod browser;
pub mod dashboard_bench;
pub mod dataset;
pub mod db;
pub mod fakes;
pub mod original;
pub mod pgbouncer;
pub mod pgctl;
pub mod sidecar;
pub mod site;
pub mod tls;
pub mod traps;
pub mod world;
