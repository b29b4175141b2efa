//! Developer tool: seeds datasets and runs the benchmarks.
//!
//! ```text
//! venue-images-dev seed --venues 2000
//! venue-images-dev bench-analytics --venues 200000 --shape both --compression both
//! venue-images-dev bench-growth --sizes 200000,1000000,2000000
//! venue-images-dev bench-queue-growth --depths 100000,1000000
//! venue-images-dev bench-scan-memory --venues 2000000
//! ```
//!
//! Benchmark datasets live in their own databases (`vi_bench_<shape>_<venues>`), made on
//! first use and reused afterwards.

use anyhow::Result;
use clap::{Parser, Subcommand};
use venue_images_tests::{
    bench,
    dataset::{Compression, Kind, Shape},
    db,
};

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
    /// Times the analytics functions against the floor and the original's SQL, on each
    /// shape of data, and dedupe against plain SQL.
    BenchAnalytics {
        /// Number of venues.
        #[arg(long, default_value_t = 200_000)]
        venues: u64,
        /// Interleaved rounds (at least 7; the median is reported).
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Shape of data: wide (large rows of random tokens that barely compress),
        /// compact (10 images, about 4.8 KB of JSON per venue, repeated keys and URL
        /// prefixes) or both.
        #[arg(long, default_value = "both")]
        shape: String,
        /// Compression of the images column: pglz (PostgreSQL's default), lz4 (needs a
        /// server built with lz4) or both. Each (shape, compression) has its own database.
        #[arg(long, default_value = "pglz")]
        compression: String,
        /// Exit with status 1 when a target is missed.
        #[arg(long)]
        check: bool,
    },
    /// The growth table: the analytics functions on the compact shape at each size.
    BenchGrowth {
        /// Sizes, in venues.
        #[arg(long, value_delimiter = ',', default_value = "200000,1000000,2000000")]
        sizes: Vec<u64>,
        /// Interleaved rounds per size (at least 7).
        #[arg(long, default_value_t = 7)]
        runs: usize,
    },
    /// The queue at several depths: claim p99 and batched write-back throughput over
    /// the same number of recorded images.
    BenchQueueGrowth {
        /// Queued images at each depth (ten per venue).
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        depths: Vec<u64>,
        /// Images recorded at each depth.
        #[arg(long, default_value_t = 50_000)]
        measure: u64,
        /// Concurrent workers.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Exit with status 1 when a target is missed.
        #[arg(long)]
        check: bool,
    },
    /// Peak backend memory of the cleanup scan (rolled back) against the floor scan's.
    BenchScanMemory {
        /// Venues (compact shape).
        #[arg(long, default_value_t = 200_000)]
        venues: u64,
    },
    /// Times the dashboard's pages with a warm cache (the real `venue-image-uploader
    /// dashboard`, built next to this binary), and the first, cold page.
    BenchDashboard {
        /// Venues.
        #[arg(long, default_value_t = 200_000)]
        venues: u64,
        /// Shape of data: wide or compact.
        #[arg(long, default_value = "compact")]
        shape: String,
        /// Sequential requests per page (the median is reported).
        #[arg(long, default_value_t = 50)]
        requests: usize,
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
        /// Stop after this many images are recorded (0: all).
        #[arg(long, default_value_t = 0)]
        measure: u64,
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
            measure,
        } => bench::queue(&url, venues, images, workers, batch, per_image, measure)
            .await
            .map(|_| ()),
        Command::BenchQueueGrowth {
            depths,
            measure,
            workers,
            check,
        } => {
            let ok = bench::queue_growth(&url, &depths, workers, measure).await?;
            if check && !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::BenchDashboard {
            venues,
            shape,
            requests,
            check,
        } => {
            let kind = shape.parse::<Kind>().map_err(anyhow::Error::msg)?;
            let ok = venue_images_tests::dashboard_bench::run(&url, venues, kind, requests).await?;
            if check && !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::BenchGrowth { sizes, runs } => bench::growth(&url, &sizes, runs).await,
        Command::BenchScanMemory { venues } => bench::scan_memory(&url, venues).await,
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
            shape,
            compression,
            check,
        } => {
            let kinds = match shape.as_str() {
                "both" => vec![Kind::Wide, Kind::Compact],
                one => vec![one.parse::<Kind>().map_err(anyhow::Error::msg)?],
            };
            let compressions = match compression.as_str() {
                "both" => vec![Compression::Pglz, Compression::Lz4],
                one => vec![one.parse::<Compression>().map_err(anyhow::Error::msg)?],
            };
            let ok = bench::analytics(&url, venues, runs, &kinds, &compressions).await?;
            if check && !ok {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
