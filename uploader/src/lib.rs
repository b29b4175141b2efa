//! # venue-image-uploader
//!
//! The sidecar that recovers failed venue image uploads. It talks to PostgreSQL only
//! through the `venue_images` extension's functions, and to the outside world through
//! two HTTP clients. `main.rs` only parses the command line and calls [`app::main`].
//!
//! - [`cli`]: all configuration (clap; every flag also reads an environment variable);
//!   [`host`]: the host names of `--allowed-host`.
//! - [`app`]: the commands (run, once, retry, enqueue, scan, stats, migrate, rates,
//!   resume, force-retry, dashboard, check), one function each, in a table.
//! - [`worker`]: the claim → wait for slot → download → upload → write back loop:
//!   dispatcher, attempts, leases and heartbeat, provider health (pauses, outages),
//!   write-back.
//! - [`shutdown`]: the one shutdown every task holds, and why it fired; SIGTERM and
//!   Ctrl-C. [`tasks`]: tasks that end with their owner. [`clock`]: injected time.
//!   [`backoff`]: the one capped exponential backoff.
//! - [`exit`]: the process's exit statuses, the only place they are defined;
//!   [`error`]: a command's failure and the exit status it maps to.
//! - [`db`]: the only door to PostgreSQL: connection settings (libpq's URL, variables,
//!   `.pgpass`, TLS), the extension's functions typed, one transaction and no session
//!   state per call (works through PgBouncer in transaction mode).
//! - [`fetch`]: safe download of provider URLs (SSRF guard, limits, magic bytes).
//! - [`imagekit`]: the ImageKit upload client.
//! - [`failure`]: the typed outcome of a failed attempt (error type, status, scope).
//! - [`redact`]: secrets (`key=` values, the private key) out of every message.
//! - [`metrics`]: Prometheus metrics, `/healthz` and `/metrics`.
//! - [`dashboard`]: the web dashboard (server-rendered HTML and SVG, cached analytics,
//!   admin actions behind a token and CSRF).
//! - [`schedule`]: the scheduled scan, run by one uploader at a time.
//! - [`progress`]: progress bar or lines for `once` and `retry`.
//!
//! ## Module graph
//!
//! What each module imports from the crate. Every module imports only modules listed
//! below it, so there is no cycle (within `app`, `worker` and `dashboard`, submodules
//! also use their parent's shared types; `app`'s submodules only their siblings):
//!
//! ```text
//! app        → cli clock dashboard error exit fetch imagekit metrics progress db
//!              redact schedule shutdown tasks worker
//! dashboard  → cli db error exit host redact shutdown
//! progress   → worker
//! schedule   → db shutdown
//! worker     → backoff clock exit failure fetch imagekit metrics db shutdown tasks
//! error      → cli exit db redact
//! imagekit   → backoff failure fetch redact
//! metrics    → shutdown
//! cli        → db host redact
//! fetch      → failure redact
//! shutdown   → exit tasks
//! backoff  clock  exit  failure  host  db  redact  tasks   (import nothing)
//! ```

pub mod app;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod exit;
pub mod failure;
pub mod fetch;
pub mod host;
pub mod imagekit;
pub mod metrics;
pub mod progress;
pub mod redact;
pub mod schedule;
pub mod shutdown;
pub mod tasks;
pub mod worker;
