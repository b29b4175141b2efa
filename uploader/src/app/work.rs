//! What `run`, `once` and `retry` share: the worker over the real queue and HTTP
//! clients, and the tasks that run beside it (the caller owns them, in a
//! [`TaskGroup`](crate::tasks::TaskGroup)).

use crate::clock::Clock;
use crate::db::listen::ListenMode;
use crate::db::{Db, QueueState};
use crate::error::AppError;
use crate::metrics::{Metrics, StateLabel};
use crate::shutdown::Shutdown;
use crate::worker::{self, Deps, Progress, Services, WorkerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{debug, info};

/// The worker over the real queue and HTTP clients. It rides out a database that is down
/// or restarting: claims and write-backs are retried with backoff.
pub async fn run_worker(
    queue: Db,
    services: Services,
    metrics: Arc<Metrics>,
    cfg: WorkerConfig,
    progress: Arc<dyn Progress>,
    shutdown: Shutdown,
    wake: Arc<Notify>,
) -> Result<worker::RunSummary, AppError> {
    worker::run(
        Deps {
            queue: Arc::new(queue),
            transfer: Arc::new(services),
            metrics,
            progress,
            clock: Clock::system(),
            shutdown,
            wake,
        },
        cfg,
    )
    .await
    .map_err(AppError::from)
}

/// Wakes the worker on `NOTIFY venue_image_jobs` (a hint: it also sleeps until the next
/// due time and polls), until the shutdown; only where `mode` and the connection allow
/// `LISTEN` (see [`crate::db::listen`]).
pub async fn listen(db: Db, mode: ListenMode, wake: Arc<Notify>, shutdown: Shutdown) {
    loop {
        match db.listener(mode).await {
            Ok(Some(mut l)) => loop {
                tokio::select! {
                    r = l.try_recv() => match r {
                        Ok(Some(_)) => wake.notify_one(),
                        _ => break,
                    },
                    _ = shutdown.triggered() => return,
                }
            },
            Ok(None) => {
                info!("not listening for NOTIFY (a pooler or proxy is in between, or --listen off): polling");
                return;
            }
            Err(e) => debug!(error = %e, "LISTEN unavailable; polling"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.triggered() => return,
        }
    }
}

/// Keeps the queue depth gauge (and the database's health) current, until the shutdown.
pub async fn poll_depth(queue: Db, m: Arc<Metrics>, shutdown: Shutdown) {
    loop {
        if let Ok(depth) = queue.depth(None).await {
            m.db_ok();
            for state in QueueState::ALL {
                let n = depth.of(state);
                m.queue_depth
                    .get_or_create(&StateLabel {
                        state: state.as_str().into(),
                    })
                    .set(n);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
            _ = shutdown.triggered() => return,
        }
    }
}
