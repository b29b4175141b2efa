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
//! - [`image`]: typed access to image objects.
//! - [`summary`]: the per-array summary (`venue_images_summary`).
//! - [`dedupe`]: dedupe and merge of image arrays.
//! - [`redact`]: secrets out of URLs and messages (shared with the uploader).
//! - [`retry`]: the retry lifecycle: retryable images, scan decisions, write-back patches.
//! - [`timestamp`]: ISO-8601 parsing.
//! - [`wire`]: the byte format of aggregate states.

pub mod analytics;
pub mod classify;
pub mod dedupe;
pub mod image;
pub mod jsonb;
pub mod naming;
pub mod pglz;
pub mod redact;
pub mod retry;
pub mod scores;
pub mod summary;
pub mod timestamp;
pub mod wire;
