//! # venue-image-uploader
//!
//! The sidecar that recovers failed venue image uploads. It talks to PostgreSQL only
//! through the `venue_images` extension's functions, and to the outside world through
//! two HTTP clients.
//!
//! - [`failure`]: the typed outcome of a failed attempt (error type, status, scope).
//! - [`redact`]: secrets (`key=` values, the private key) out of every message.
//! - [`fetch`]: safe download of provider URLs (SSRF guard, limits, magic bytes).
//! - [`imagekit`]: the ImageKit upload client.

pub mod failure;
pub mod fetch;
pub mod imagekit;
pub mod redact;
