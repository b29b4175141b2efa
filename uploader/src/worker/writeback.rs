//! The write-back batcher: outcomes and releases from the attempts, written to the
//! database in batches (`venue_image_record_results`: one venue row rewrite per venue).
//!
//! - While the database is unreachable (a transient error), the batch is kept and
//!   retried with backoff; the heartbeat keeps its leases alive meanwhile.
//! - An error that is not transient (the database refused something in the batch) never
//!   stops the others: the batch is split and each outcome recorded on its own. An
//!   outcome refused on its own is logged; an upload the database would not take is
//!   recorded as an `unknown_error` failure instead (left for review), and if even that
//!   is refused the image is released unattempted. Nothing is retried forever.

use super::{Ctx, Done, ReleaseReason, Transfer};
use crate::backoff::Backoff;
use crate::db::{OutcomeRecord, QueueApi, WriteBackStatus};
use crate::metrics::StateLabel;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, warn};
use venue_images_core::retry::clean_message;

/// Most outcomes per write-back call.
const MAX_BATCH: usize = 200;
/// The first wait after a failed write-back.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// The longest wait between failed write-backs.
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// What the batcher did: the statuses the database answered, and releases.
#[derive(Debug, Default)]
pub struct Written {
    /// Outcomes recorded, by status.
    pub statuses: BTreeMap<String, u64>,
    /// Images released unattempted.
    pub released: u64,
    /// Outcomes the database refused on their own.
    pub refused: u64,
}

/// Receives until every sender is gone and everything is written.
pub async fn writer<Q: QueueApi, T: Transfer>(
    ctx: Arc<Ctx<Q, T>>,
    mut rx: mpsc::UnboundedReceiver<Done>,
) -> Written {
    let mut w = Written::default();
    let mut pending: Vec<OutcomeRecord> = Vec::new();
    let mut releases: Vec<(i64, String, ReleaseReason)> = Vec::new();
    let mut open = true;
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
    while open || !pending.is_empty() || !releases.is_empty() {
        if open && pending.is_empty() && releases.is_empty() {
            match rx.recv().await {
                Some(d) => take(d, &mut pending, &mut releases),
                None => open = false,
            }
        }
        // Gather what arrives within the flush window.
        let window = tokio::time::sleep(ctx.cfg.flush_window);
        tokio::pin!(window);
        while open && pending.len() < MAX_BATCH {
            tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => take(d, &mut pending, &mut releases),
                    None => open = false,
                },
                _ = &mut window => break,
            }
        }
        for (job, token, reason) in std::mem::take(&mut releases) {
            release(&ctx, job, &token, reason, &mut w).await;
        }
        if pending.is_empty() {
            continue;
        }
        let batch: Vec<OutcomeRecord> = pending.drain(..pending.len().min(MAX_BATCH)).collect();
        match ctx.queue.record(&batch).await {
            Ok(results) => {
                backoff.reset();
                done(&ctx, results, &mut w);
            }
            Err(e) if e.is_transient() => {
                let wait = backoff.next_delay();
                warn!(error = %e, pending = batch.len(), retry_in_ms = wait.as_millis() as u64,
                      "write-back failed; keeping the outcomes and retrying");
                pending.splice(0..0, batch);
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                warn!(error = %e, outcomes = batch.len(), "write-back refused; recording the outcomes one by one");
                for o in batch {
                    if let Some(back) = isolate(&ctx, o, &mut w).await {
                        pending.push(back);
                    }
                }
            }
        }
        ctx.wake.notify_one();
    }
    w
}

fn take(
    d: Done,
    pending: &mut Vec<OutcomeRecord>,
    releases: &mut Vec<(i64, String, ReleaseReason)>,
) {
    match d {
        Done::Outcome(o) => pending.push(o),
        Done::Release {
            job_id,
            token,
            reason,
        } => releases.push((job_id, token, reason)),
    }
}

fn done<Q: QueueApi, T: Transfer>(
    ctx: &Ctx<Q, T>,
    results: Vec<(i64, WriteBackStatus)>,
    w: &mut Written,
) {
    ctx.metrics.db_ok();
    for (job, status) in results {
        ctx.leases.remove(job);
        ctx.metrics
            .write_backs
            .get_or_create(&StateLabel {
                state: status.as_str().into(),
            })
            .inc();
        if status == WriteBackStatus::Stale {
            warn!(
                job_id = job,
                "write-back refused: the lease was lost (another uploader has the image)"
            );
        }
        ctx.progress.recorded(status.as_str());
        *w.statuses.entry(status.as_str().to_string()).or_insert(0) += 1;
    }
}

async fn release<Q: QueueApi, T: Transfer>(
    ctx: &Ctx<Q, T>,
    job: i64,
    token: &str,
    reason: ReleaseReason,
    w: &mut Written,
) {
    match ctx.queue.release(job, token).await {
        Ok(_) => {
            w.released += 1;
            ctx.metrics
                .released
                .get_or_create(&StateLabel {
                    state: reason.as_str().into(),
                })
                .inc();
        }
        Err(e) => warn!(job_id = job, error = %e, "release failed; the lease will expire"),
    }
    ctx.leases.remove(job);
}

/// Records one outcome on its own. Returns it when the database is unreachable (to be
/// retried with the next batch).
async fn isolate<Q: QueueApi, T: Transfer>(
    ctx: &Ctx<Q, T>,
    o: OutcomeRecord,
    w: &mut Written,
) -> Option<OutcomeRecord> {
    let e = match ctx.queue.record(std::slice::from_ref(&o)).await {
        Ok(results) => {
            done(ctx, results, w);
            return None;
        }
        Err(e) if e.is_transient() => return Some(o),
        Err(e) => e,
    };
    w.refused += 1;
    ctx.metrics.write_back_refused.inc();
    let why = clean_message(&e.to_string());
    error!(job_id = o.job_id, error = %why, "the database refused this outcome");
    if o.url.is_some() {
        // An upload the database will not take (an unusable URL from ImageKit, say):
        // recorded as a failure for review rather than retried forever.
        let instead = OutcomeRecord::failed(
            o.job_id,
            o.lease_token.clone(),
            "unknown_error",
            None,
            clean_message(&format!("upload: the database refused the result: {why}")),
            None,
        );
        match ctx.queue.record(std::slice::from_ref(&instead)).await {
            Ok(results) => {
                done(ctx, results, w);
                return None;
            }
            Err(e) if e.is_transient() => return Some(instead),
            Err(e) => error!(job_id = o.job_id, error = %e, "the database refused the failure too"),
        }
    }
    release(ctx, o.job_id, &o.lease_token, ReleaseReason::Refused, w).await;
    None
}
