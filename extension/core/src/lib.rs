//! Pure-Rust core of the `venue_images` PostgreSQL extension.
//!
//! Nothing here links against PostgreSQL, so it is unit-tested, property-tested and
//! fuzzed on its own; the extension's `#[pg_extern]` functions are thin wrappers.
//!
//! - [`jsonb`]: PostgreSQL's binary jsonb format, read and written without text.

pub mod jsonb;
