//! Pure-Rust core of the `venue_images` PostgreSQL extension.
//!
//! Nothing here links against PostgreSQL, so it is unit-tested, property-tested and
//! fuzzed on its own; the extension's `#[pg_extern]` functions are thin wrappers.
//!
//! - [`analytics`]: one-pass table statistics (breakdown, venue lists, summary).
//! - [`jsonb`]: PostgreSQL's binary jsonb format, read and written without text.
//! - [`classify`]: error types and classes; the HTTP status table.
//! - [`scores`]: quality score, priority score, failure rate.
//! - [`naming`]: deterministic ImageKit file names and folders.
//! - [`pglz`]: PostgreSQL's pglz decompression, for the analytics' scans.
//! - [`image`]: typed access to image objects; the upload status ([`image::Status`]).
//! - [`summary`]: the per-array summary (`venue_images_summary`).
//! - [`dedupe`]: dedupe and merge of image arrays.
//! - [`redact`]: secrets out of URLs and messages (shared with the uploader).
//! - [`retry`]: the retry lifecycle: retryable images, scan decisions, write-back
//!   patches, and the queue's vocabularies (its `vocabulary` module lists every one).
//! - [`roles`]: the one list of grants (who may call what).
//! - [`timestamp`]: ISO-8601 parsing.
//! - [`wire`]: the byte format of aggregate states.
//!
//! # Module graph
//!
//! Who uses whom (`a ──▶ b, c`: `a` imports from `b` and `c`). Every module uses only
//! modules on lines above it, so there are no cycles; `tests/module_graph.rs` checks the
//! drawing against the sources (test code aside).
//!
//! ```text
//! jsonb, classify, scores, redact, naming, pglz, timestamp, roles   (use no other module)
//! image      ──▶ jsonb
//! wire       ──▶ jsonb
//! dedupe     ──▶ image, timestamp, jsonb
//! analytics  ──▶ image, wire, classify, scores, jsonb
//! retry      ──▶ image, classify, scores, redact, jsonb
//!   vocabulary ──▶ image
//!   element    ──▶ image, jsonb
//!   outcome    ──▶ redact
//!   policy     ──▶ element, vocabulary, classify, image
//!   scan       ──▶ element, policy, classify, image, scores, redact, jsonb
//!   apply      ──▶ element, policy, scan, vocabulary, outcome, image, redact, jsonb
//!   purge      ──▶ element, image, redact, jsonb
//! summary    ──▶ retry, image, classify, jsonb
//! ```
//!
//! The indented lines are `retry`'s own modules, one per stage of the lifecycle; `retry`
//! re-exports their public items, so callers write `retry::Policy`, never
//! `retry::policy::Policy`.

pub mod analytics;
pub mod classify;
pub mod dedupe;
pub mod image;
pub mod jsonb;
pub mod naming;
pub mod pglz;
pub mod redact;
pub mod retry;
pub mod roles;
pub mod scores;
pub mod summary;
pub mod timestamp;
pub mod wire;
