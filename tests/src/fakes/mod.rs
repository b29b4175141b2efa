//! Local fakes of the two services the uploader talks to, following
//! `shared/spec/imagekit.md` (status codes, headers, bodies, limits):
//!
//! - [`FakeImageKit`]: the ImageKit Upload API v1 (`POST /api/v1/files/upload`), with
//!   Basic auth, multipart fields, `fileName` sanitising, unique-name suffixes, overwrite
//!   rules, the plan's size limit (400, never 413), 429 with `X-RateLimit-*`, injected
//!   faults, and an `x-ik-requestId` on every response. It keeps the files it received.
//! - [`FakeProvider`]: image providers, one route per behaviour the uploader must
//!   handle (Google's photo redirect with a `key=`, 4xx/5xx with `Retry-After`, flaky
//!   routes, slow headers, dripping bodies, truncated and lying bodies, HTML served as an
//!   image, oversize bodies). It records when each provider was hit, so tests and
//!   benchmarks can check pacing.
//!
//! Both bind 127.0.0.1 only. The uploader must be run with its loopback allowance on
//! (`--allow-loopback`) to reach them; nothing here sends traffic anywhere else.

pub mod image;
pub mod imagekit;
pub mod provider;

pub use imagekit::{FakeImageKit, Fault, ImageKitConfig, StoredFile, UploadLog};
pub use provider::{FakeProvider, ProviderConfig, ProviderHit};

use std::net::SocketAddr;

/// Binds 127.0.0.1:`port` (0 = any) and serves `app` in the background.
pub(crate) async fn serve(port: u16, app: axum::Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}
