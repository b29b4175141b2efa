//! Developer tool: seeds datasets and runs the benchmarks.
//!
//! ```text
//! venue-images-dev seed --venues 2000
//! venue-images-dev bench-analytics --venues 200000
//! ```

use anyhow::Result;
use clap::{Parser, Subcommand};
use venue_images_tests::{bench, dataset::Shape, db};

#[derive(Parser)]
#[command(about = "venue_images developer tool: datasets and benchmarks")]
struct Cli {
    /// Database to use.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replaces the venues table with a deterministic generated dataset.
    Seed {
        /// Number of venues.
        #[arg(long, default_value_t = 2_000)]
        venues: u64,
        /// Generator seed.
        #[arg(long, default_value_t = 2008)]
        seed: u64,
        /// Point failed images at the fake provider at this base URL (demo, tests).
        #[arg(long)]
        provider_base: Option<String>,
    },
    /// Times the analytics functions and dedupe against the original's SQL and the floor.
    BenchAnalytics {
        /// Number of venues (the dataset is regenerated when the table differs).
        #[arg(long, default_value_t = 200_000)]
        venues: u64,
        /// Timed runs per query (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Exit with status 1 when a target is missed.
        #[arg(long)]
        check: bool,
    },
    /// Times the retry queue: workers doing claim → record_success with no HTTP.
    BenchQueue {
        /// Venues.
        #[arg(long, default_value_t = 10_000)]
        venues: u64,
        /// Queued images in all.
        #[arg(long, default_value_t = 100_000)]
        images: u64,
        /// Concurrent workers (one connection each).
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Images per claim.
        #[arg(long, default_value_t = 10)]
        batch: i32,
        /// Record each image with venue_image_record_success instead of one
        /// venue_image_record_results call per claimed batch.
        #[arg(long)]
        per_image: bool,
    },
    /// Times the real uploader binary against the fakes (50 ms latency, 1 MB and 5 MB
    /// images): throughput against its bound, pacing, CPU per image, peak RSS.
    BenchUploader {
        /// Scale the image counts (1.0: 1600, 2400 and 480 images).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Latency of each fake, milliseconds.
        #[arg(long, default_value_t = 50)]
        latency_ms: u64,
        /// Exit with status 1 when a target is missed.
        #[arg(long)]
        check: bool,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let url = match cli.database_url {
        Some(u) => u,
        None => db::database_url()?,
    };
    match cli.command {
        Command::Seed {
            venues,
            seed,
            provider_base,
        } => {
            db::seed(
                &url,
                &Shape {
                    venues,
                    seed,
                    provider_base,
                    ..Shape::default()
                },
                true,
            )
            .await
        }
        Command::BenchQueue {
            venues,
            images,
            workers,
            batch,
            per_image,
        } => bench::queue(&url, venues, images, workers, batch, per_image)
            .await
            .map(|_| ()),
        Command::BenchUploader {
            scale,
            latency_ms,
            check,
        } => {
            let latency = std::time::Duration::from_millis(latency_ms);
            let ok = venue_images_tests::bench_uploader::all(&url, scale, latency).await?;
            if check && !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::BenchAnalytics {
            venues,
            runs,
            check,
        } => {
            let ok = bench::analytics(&url, venues, runs).await?;
            if check && !ok {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
