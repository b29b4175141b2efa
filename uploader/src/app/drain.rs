//! `once` and `retry`: drain what is due (all of it, or one venue's), with a progress
//! bar on a terminal, then exit.

use super::setup::{connect, services, worker_config};
use super::work::{listen, run_worker};
use crate::cli::{Cli, WorkerArgs};
use crate::error::AppError;
use crate::exit::Exit;
use crate::metrics::Metrics;
use crate::progress::Reporter;
use crate::shutdown::{self, on_signals, StopReason};
use crate::tasks::TaskGroup;
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::{info, warn};

/// `venue-image-uploader once`: recovers everything due now, then exits.
pub async fn once(cli: &Cli, args: &WorkerArgs) -> Result<Exit, AppError> {
    drain(cli, args, None).await
}

/// `venue-image-uploader retry --venue`: makes the venue's retryable images due now and
/// waits for them.
pub async fn retry(cli: &Cli, worker: &WorkerArgs, venue: i64) -> Result<Exit, AppError> {
    let queue = connect(cli, Some(worker)).await?;
    let n = queue
        .enqueue_venue(venue)
        .await
        .map_err(|e| AppError::db(e, "venue_image_uploader"))?;
    info!(venue_id = venue, retryable = n, "venue queued");
    if n == 0 {
        eprintln!("venue {venue} has no retryable images");
        return Ok(Exit::Ok);
    }
    drain(cli, worker, Some(venue)).await
}

/// Runs the worker until nothing (of `venue`'s) is left to do.
async fn drain(cli: &Cli, args: &WorkerArgs, venue: Option<i64>) -> Result<Exit, AppError> {
    let services = services(args)?;
    let queue = connect(cli, Some(args)).await?;
    let cfg = worker_config(args, venue, true);
    let due: i64 = queue
        .depth(venue)
        .await
        .map_err(|e| AppError::db(e, "venue_image_uploader"))?
        .due;
    eprintln!(
        "{due} image(s) due{}",
        venue.map(|v| format!(" for venue {v}")).unwrap_or_default()
    );
    let (trigger, shutdown) = shutdown::channel();
    let _signals = on_signals(trigger);
    let wake = Arc::new(Notify::new());
    let mut background = TaskGroup::new();
    background.spawn(listen(
        queue.clone(),
        args.listen,
        wake.clone(),
        shutdown.clone(),
    ));
    let reporter = Arc::new(Reporter::new(due as u64));
    let summary = run_worker(
        queue,
        services,
        Arc::new(Metrics::new()),
        cfg,
        reporter.clone(),
        shutdown,
        wake,
    )
    .await?;
    reporter.finish();
    if summary.released > 0 {
        warn!(
            released = summary.released,
            "some images were given back unattempted (paused provider, outage or shutdown)"
        );
    }
    if let Some(StopReason::Fatal(f)) = &summary.stop {
        eprintln!("stopped: {}", f.message);
    }
    Ok(summary.stop.as_ref().map_or(Exit::Ok, StopReason::exit))
}
