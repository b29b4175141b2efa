//! The leases this uploader holds, and the heartbeat that keeps them alive.
//!
//! A lease is held from the claim until its outcome is written back or the image is
//! released; the heartbeat extends every held lease each third of the lease length.

use super::Ctx;
use crate::db::QueueApi;
use crate::worker::Transfer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::warn;

/// Job → lease token.
#[derive(Default)]
pub struct Leases(Mutex<HashMap<i64, String>>);

impl Leases {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, String>> {
        // A poisoned lock only means another task panicked mid-update of a plain map.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds a lease.
    pub fn insert(&self, job_id: i64, token: String) {
        self.map().insert(job_id, token);
    }

    /// Lets a lease go (written back or released).
    pub fn remove(&self, job_id: i64) {
        self.map().remove(&job_id);
    }

    /// Is this lease held?
    pub fn holds(&self, job_id: i64) -> bool {
        self.map().contains_key(&job_id)
    }

    /// Every lease held.
    pub fn snapshot(&self) -> Vec<(i64, String)> {
        self.map().iter().map(|(j, t)| (*j, t.clone())).collect()
    }

    /// No lease held?
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// Takes every lease (to release them).
    pub fn drain(&self) -> Vec<(i64, String)> {
        self.map().drain().collect()
    }
}

/// Extends every held lease each third of the lease, until shutdown with none left.
pub async fn heartbeat<Q: QueueApi, T: Transfer>(ctx: Arc<Ctx<Q, T>>) {
    let every = (ctx.cfg.lease / 3).max(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = ctx.shutdown.triggered(), if !ctx.shutdown.is_triggered() => {}
        }
        for (job, token) in ctx.leases.snapshot() {
            match ctx.queue.extend(job, &token, ctx.cfg.lease).await {
                Ok(true) => ctx.metrics.db_ok(),
                Ok(false) => {
                    warn!(job_id = job, "lease lost before the image was done");
                    ctx.leases.remove(job);
                }
                Err(e) => warn!(job_id = job, error = %e, "lease extension failed"),
            }
        }
        if ctx.shutdown.is_triggered() && ctx.leases.is_empty() {
            return;
        }
    }
}
