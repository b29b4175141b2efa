//! Runs the fake ImageKit and the fake image provider until SIGTERM / Ctrl-C (the demo
//! uses it). Prints one JSON line with the addresses on stdout once both listen:
//!
//! ```text
//! {"imagekit_upload_url":"http://127.0.0.1:41231/api/v1/files/upload",
//!  "imagekit_base_url":"http://127.0.0.1:41231","provider_base_url":"http://127.0.0.1:40111",
//!  "private_key":"private_fake_demo_key"}
//! ```
//!
//! `GET {imagekit_base_url}/_fake/files` lists what was uploaded and
//! `GET {provider_base_url}/_fake/stats` counts provider hits.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use serde_json::json;
use venue_images_tests::fakes::{self, FakeImageKit, FakeProvider, ImageKitConfig, ProviderConfig};

#[derive(Parser)]
#[command(
    about = "Fake ImageKit upload API and fake image providers, on 127.0.0.1 (for the demo and tests)"
)]
struct Args {
    /// Port of the fake ImageKit (0: any free port).
    #[arg(long, default_value_t = 0)]
    imagekit_port: u16,
    /// Port of the fake provider (0: any free port).
    #[arg(long, default_value_t = 0)]
    provider_port: u16,
    /// Private key the fake ImageKit accepts.
    #[arg(long, default_value = "private_fake_demo_key")]
    private_key: String,
    /// Delay before every answer of both fakes, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Size of the served images, KB.
    #[arg(long, default_value_t = 64)]
    image_kb: usize,
    /// ImageKit's plan file size limit, MB.
    #[arg(long, default_value_t = 25)]
    max_file_mb: usize,
    /// ImageKit rate limit: uploads per second (0: none).
    #[arg(long, default_value_t = 0)]
    imagekit_rate: u32,
    /// On exit, write counters (uploads, files, provider hits, busiest second) here.
    #[arg(long)]
    stats_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let latency = Duration::from_millis(a.latency_ms);
    let ik = FakeImageKit::start_on(
        a.imagekit_port,
        ImageKitConfig {
            private_key: a.private_key.clone(),
            max_file_bytes: a.max_file_mb * 1024 * 1024,
            rate_limit: (a.imagekit_rate > 0).then(|| (a.imagekit_rate, Duration::from_secs(1))),
            latency,
            ..ImageKitConfig::default()
        },
    )
    .await?;
    let provider = FakeProvider::start_on(
        a.provider_port,
        ProviderConfig {
            image_kb: a.image_kb,
            latency,
            ..ProviderConfig::default()
        },
    )
    .await?;
    println!(
        "{}",
        json!({
            "imagekit_upload_url": ik.upload_url(),
            "imagekit_base_url": ik.base_url(),
            "provider_base_url": provider.base_url(),
            "private_key": ik.private_key(),
        })
    );
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    if let Some(path) = a.stats_file {
        let hits = provider.hits();
        let mut providers: Vec<String> = hits.iter().map(|h| h.provider.clone()).collect();
        providers.sort();
        providers.dedup();
        let per: serde_json::Map<String, serde_json::Value> = providers
            .iter()
            .map(|p| {
                let n = hits.iter().filter(|h| &h.provider == p).count();
                let peak = fakes::provider::max_in_window(&hits, p, Duration::from_secs(1));
                (p.clone(), json!({"requests": n, "busiest_second": peak}))
            })
            .collect();
        let files = ik.files();
        let stats = json!({
            "imagekit": {"requests": ik.requests().len(), "uploads": ik.uploads(), "files": files.len(),
                          "overwritten": files.values().filter(|f| f.versions > 1).count()},
            "providers": per,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&stats)? + "\n")?;
    }
    Ok(())
}
