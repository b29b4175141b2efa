//! `run`: the sidecar. The worker claims and recovers images until SIGTERM; beside it,
//! `/healthz` and `/metrics`, the scheduled scan, the queue depth gauge and `LISTEN`,
//! all owned by [`run`] and ended with it.

use super::setup::{connect, services, worker_config};
use super::work::{listen, poll_depth, run_worker};
use crate::cli::{Cli, RunArgs};
use crate::error::AppError;
use crate::exit::Exit;
use crate::metrics::{self, Metrics};
use crate::schedule;
use crate::shutdown::{self, on_signals, StopReason};
use crate::tasks::TaskGroup;
use crate::worker::Silent;
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::{error, info};

/// `venue-image-uploader run`: until SIGTERM (exit status 0) or ImageKit refusing the
/// service (its own exit status).
pub async fn run(cli: &Cli, args: &RunArgs) -> Result<Exit, AppError> {
    let (trigger, shutdown) = shutdown::channel();
    let scheduler_shutdown = trigger.subscribe();
    let _signals = on_signals(trigger);
    let services = services(&args.worker)?;
    let schedule = match args.scan_schedule.trim() {
        "off" | "" => None,
        expr => Some((
            expr.to_string(),
            schedule::parse(expr).map_err(AppError::new)?,
        )),
    };
    let queue = connect(cli, Some(&args.worker)).await?;
    let cfg = worker_config(&args.worker, None, false);
    let metrics = Arc::new(Metrics::new());
    let mut background = TaskGroup::new();
    if let Some(addr) = args.metrics_addr {
        let (bound, server) = metrics::bind(addr, metrics.clone(), shutdown.clone())
            .await
            .map_err(|e| AppError::new(format!("metrics server on {addr}: {e}")))?;
        background.spawn(server);
        info!(addr = %bound, "serving /healthz and /metrics");
    }
    if let Some((expr, cron)) = schedule {
        background.spawn(schedule::run(queue.clone(), cron, scheduler_shutdown));
        info!(schedule = %expr, "scheduled cleanup scan");
    }
    background.spawn(poll_depth(queue.clone(), metrics.clone(), shutdown.clone()));
    let wake = Arc::new(Notify::new());
    background.spawn(listen(
        queue.clone(),
        args.worker.listen,
        wake.clone(),
        shutdown.clone(),
    ));
    info!(worker = %cfg.worker_id, concurrency = cfg.concurrency, lease_s = cfg.lease.as_secs(), "uploader running");
    let summary = run_worker(
        queue,
        services,
        metrics,
        cfg,
        Arc::new(Silent),
        shutdown,
        wake,
    )
    .await?;
    info!(claimed = summary.claimed, released = summary.released, statuses = ?summary.statuses, "uploader stopped");
    if let Some(StopReason::Fatal(f)) = &summary.stop {
        error!("{}", f.message);
    }
    Ok(summary.stop.as_ref().map_or(Exit::Ok, StopReason::exit))
}
