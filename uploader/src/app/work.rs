//! What `run`, `once` and `retry` share: the worker over the real queue and HTTP
//! clients, and the tasks that run beside it (the caller owns them, in a
//! [`TaskGroup`](crate::tasks::TaskGroup)).

use crate::clock::Clock;
use crate::error::AppError;
use crate::metrics::{Metrics, StateLabel};
use crate::queue::{Queue, QueueState};
use crate::shutdown::Shutdown;
use crate::worker::{self, Deps, Progress, Services, WorkerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::debug;

/// The worker over the real queue and HTTP clients. It rides out a database that is down
/// or restarting: claims and write-backs are retried with backoff.
pub async fn run_worker(
    queue: Queue,
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
/// due time and polls), until the shutdown.
pub async fn listen(queue: Queue, wake: Arc<Notify>, shutdown: Shutdown) {
    loop {
        match sqlx::postgres::PgListener::connect_with(queue.pool()).await {
            Ok(mut l) => {
                if l.listen("venue_image_jobs").await.is_ok() {
                    loop {
                        tokio::select! {
                            r = l.try_recv() => match r {
                                Ok(Some(_)) => wake.notify_one(),
                                _ => break,
                            },
                            _ = shutdown.triggered() => return,
                        }
                    }
                }
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
pub async fn poll_depth(queue: Queue, m: Arc<Metrics>, shutdown: Shutdown) {
    loop {
        if let Ok(depth) = queue.depth(None).await {
            m.db_ok();
            for state in QueueState::ALL {
                let n = depth
                    .iter()
                    .find(|(s, _)| *s == state)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
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
