//! The worker: claim → wait for the pacing slot → download → upload → write back.
//!
//! Its parts, each with one job and each tested alone with paused time:
//!
//! - [`dispatch`]: the [`Dispatcher`] claims as many images as there are free slots (plus
//!   a prefetch) and starts their attempts; when nothing is due it sleeps until the
//!   database says the next image becomes due (`venue_image_next_due`), a `NOTIFY`, or
//!   the poll interval, whichever comes first; a failed claim backs off ([`Backoff`]);
//! - [`attempt`]: one image: waits for its provider's slot, checks the provider is not
//!   paused (else it goes back unattempted), downloads, uploads, and judges a failure;
//! - [`leases`]: the leases held and the heartbeat that extends them;
//! - [`health`]: pauses and whose fault a failure is (429s and outages are never
//!   charged to the image);
//! - [`writeback`]: the batcher, which isolates outcomes the database refuses.
//!
//! [`run`] wires them together and owns the background tasks (batcher, heartbeat,
//! health refresher): they end with it, even if it panics. One [`Shutdown`] reaches
//! every task and says why it fired ([`StopReason`]): a signal, a drained queue (`once`,
//! `retry`), or ImageKit refusing the service (a fatal stop with its exit status).
//! Claiming stops, in-flight images finish within the grace period, the rest are
//! released unattempted. Time comes from a [`Clock`] over tokio's clock, and the queue
//! and the HTTP side are traits ([`QueueApi`], [`Transfer`]), so every part is tested
//! with paused time in milliseconds (`tests.rs`, `dispatch/tests.rs`, over the fakes of
//! `fakes.rs`).
//!
//! [`Backoff`]: crate::backoff::Backoff

pub mod attempt;
pub mod dispatch;
pub mod health;
pub mod leases;
pub mod writeback;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;

use crate::clock::Clock;
use crate::db::{Claim, DbError, OutcomeRecord, QueueApi};
use crate::failure::Failure;
use crate::fetch::{Downloaded, Fetcher};
use crate::imagekit::{ImageKit, UploadRequest, Uploaded};
use crate::metrics::{Metrics, ProviderLabel};
use crate::shutdown::{Shutdown, StopReason};
use crate::tasks::{Task, TaskGroup};
pub use dispatch::Dispatcher;
use health::{Health, HealthConfig};
use leases::Leases;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tracing::warn;

/// How the worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Unique id of this process (lease holder name).
    pub worker_id: String,
    /// Images processed at once.
    pub concurrency: usize,
    /// Lease length; extended every third of it while work is slow.
    pub lease: Duration,
    /// Longest sleep between claims when nothing is due and no notification arrives.
    pub poll: Duration,
    /// Time in-flight work gets to finish after shutdown is requested.
    pub grace: Duration,
    /// Outcomes are written back at most this long after they are known.
    pub flush_window: Duration,
    /// Only this venue (`retry --venue`).
    pub venue: Option<i64>,
    /// Exit once nothing is due and nothing is in flight (`once`, `retry`).
    pub drain: bool,
    /// With `drain`: also wait for images that become due within this long (retries
    /// after a short `Retry-After` or backoff), for at most this long after the last
    /// image was claimed.
    pub linger: Duration,
    /// How often pauses and provider health are read from the database.
    pub health_refresh: Duration,
    /// Pauses, and whose fault a failure is.
    pub health: HealthConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: "worker".into(),
            concurrency: 8,
            lease: Duration::from_secs(120),
            poll: Duration::from_secs(2),
            grace: Duration::from_secs(25),
            flush_window: Duration::from_millis(100),
            venue: None,
            drain: false,
            linger: Duration::ZERO,
            health_refresh: Duration::from_secs(1),
            health: HealthConfig::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Images claimed.
    pub claimed: u64,
    /// Outcomes recorded, by status returned by the database.
    pub statuses: BTreeMap<String, u64>,
    /// Images released unattempted.
    pub released: u64,
    /// Outcomes the database refused on their own.
    pub refused: u64,
    /// Why the run stopped: a signal, the queue drained, or a fatal stop (ImageKit
    /// refused the credentials or the account) with its exit status.
    pub stop: Option<StopReason>,
}

/// Progress reports, for the CLI's progress bar or lines.
pub trait Progress: Send + Sync {
    /// New images were claimed.
    fn claimed(&self, _n: u64) {}
    /// An outcome was recorded with this status.
    fn recorded(&self, _status: &str) {}
}

/// No progress output.
pub struct Silent;
impl Progress for Silent {}

/// The HTTP side of an attempt.
pub trait Transfer: Send + Sync + 'static {
    /// Downloads the image (every error is a download [`Failure`]).
    fn download(&self, url: &str) -> impl Future<Output = Result<Downloaded, Failure>> + Send;
    /// Uploads it to ImageKit (every error is an upload [`Failure`]).
    fn upload(
        &self,
        req: UploadRequest<'_>,
    ) -> impl Future<Output = Result<Uploaded, Failure>> + Send;
}

/// The real HTTP side: the safe downloader and the ImageKit client.
pub struct Services {
    /// Safe downloader.
    pub fetcher: Fetcher,
    /// ImageKit client.
    pub imagekit: ImageKit,
}

impl Transfer for Services {
    async fn download(&self, url: &str) -> Result<Downloaded, Failure> {
        self.fetcher.fetch(url).await
    }

    async fn upload(&self, req: UploadRequest<'_>) -> Result<Uploaded, Failure> {
        self.imagekit.upload(req).await
    }
}

/// Why an image went back unattempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// Its provider (or ImageKit) is paused.
    Paused,
    /// Its provider (or ImageKit) looks unreachable: not the image's fault.
    Outage,
    /// A 429 or wait hint: the provider is paused, and this is not an attempt.
    RateLimited,
    /// Shutdown before it started, or after the grace period.
    Shutdown,
    /// ImageKit refused the service.
    Service,
    /// The database refused its outcome.
    Refused,
}

impl ReleaseReason {
    /// Why an image not started goes back once the shutdown fired for `stop`.
    pub fn on_stop(stop: Option<&StopReason>) -> Self {
        match stop {
            Some(StopReason::Fatal(_)) => ReleaseReason::Service,
            _ => ReleaseReason::Shutdown,
        }
    }

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Paused => "paused",
            ReleaseReason::Outage => "outage",
            ReleaseReason::RateLimited => "rate_limited",
            ReleaseReason::Shutdown => "shutdown",
            ReleaseReason::Service => "service",
            ReleaseReason::Refused => "refused",
        }
    }
}

/// What an attempt hands to the batcher.
#[derive(Debug)]
pub enum Done {
    /// Record this outcome.
    Outcome(OutcomeRecord),
    /// Give the image back unattempted.
    Release {
        /// Job.
        job_id: i64,
        /// Lease token.
        token: String,
        /// Why.
        reason: ReleaseReason,
    },
}

impl Done {
    fn release(claim: &Claim, reason: ReleaseReason) -> Self {
        Done::Release {
            job_id: claim.job_id,
            token: claim.lease_token.clone(),
            reason,
        }
    }
}

/// What the worker runs with.
pub struct Deps<Q, T> {
    /// The queue.
    pub queue: Arc<Q>,
    /// The HTTP side.
    pub transfer: Arc<T>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Progress output.
    pub progress: Arc<dyn Progress>,
    /// Time.
    pub clock: Clock,
    /// Stop.
    pub shutdown: Shutdown,
    /// Notified when images become due (`LISTEN venue_image_jobs`); a hint only.
    pub wake: Arc<Notify>,
}

/// Everything the worker's tasks share.
pub struct Ctx<Q, T> {
    queue: Arc<Q>,
    transfer: Arc<T>,
    metrics: Arc<Metrics>,
    cfg: WorkerConfig,
    clock: Clock,
    shutdown: Shutdown,
    leases: Leases,
    health: Health,
    progress: Arc<dyn Progress>,
    wake: Arc<Notify>,
}

impl<Q, T> Ctx<Q, T> {
    /// The context of a run: `deps`, `cfg`, no lease held, nothing known of providers.
    pub fn new(deps: Deps<Q, T>, cfg: WorkerConfig) -> Arc<Self> {
        Arc::new(Ctx {
            queue: deps.queue,
            transfer: deps.transfer,
            metrics: deps.metrics,
            health: Health::new(cfg.health.clone()),
            cfg,
            clock: deps.clock,
            shutdown: deps.shutdown,
            leases: Leases::default(),
            progress: deps.progress,
            wake: deps.wake,
        })
    }
}

/// Runs until the shutdown fires (or, with `drain`, until nothing is left to do).
///
/// The batcher, the heartbeat and the health refresher are owned here: they end when
/// `run` returns, and are aborted if it panics.
pub async fn run<Q: QueueApi, T: Transfer>(
    deps: Deps<Q, T>,
    cfg: WorkerConfig,
) -> Result<RunSummary, DbError> {
    let ctx = Ctx::new(deps, cfg);
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    let writer = Task::spawn(writeback::writer(ctx.clone(), done_rx));
    let mut background = TaskGroup::new();
    background.spawn(leases::heartbeat(ctx.clone()));
    background.spawn(refresh_health(ctx.clone()));
    // Returns once the attempts have ended and every outcome is handed to the batcher
    // (the batcher ends when the last sender is gone).
    let claimed = Dispatcher::new(ctx.clone(), done_tx).run().await;
    let written = writer.join().await.unwrap_or_default();
    let leftovers = release_leftovers(&ctx).await;
    drop(background);
    Ok(RunSummary {
        claimed,
        statuses: written.statuses,
        released: written.released + leftovers,
        refused: written.refused,
        stop: ctx.shutdown.reason(),
    })
}

/// Releases what the batcher neither recorded nor released (attempts aborted after the
/// grace period); returns how many were released.
async fn release_leftovers<Q: QueueApi, T>(ctx: &Ctx<Q, T>) -> u64 {
    let mut released = 0;
    for (job, token) in ctx.leases.drain() {
        match ctx.queue.release(job, &token).await {
            Ok(_) => released += 1,
            Err(e) => warn!(job_id = job, error = %e, "release failed; the lease will expire"),
        }
    }
    released
}

/// Reads pauses and provider health from the database every `health_refresh`.
async fn refresh_health<Q: QueueApi, T: Transfer>(ctx: Arc<Ctx<Q, T>>) {
    loop {
        if let Ok(states) = ctx.queue.providers().await {
            ctx.health.merge(&states);
            let now = ctx.clock.now();
            ctx.metrics.paused.clear();
            for s in states
                .iter()
                .filter(|s| s.paused_until.is_some_and(|u| u > now))
            {
                ctx.metrics
                    .paused
                    .get_or_create(&ProviderLabel {
                        provider: s.provider.clone(),
                    })
                    .set(1);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.cfg.health_refresh) => {}
            _ = ctx.shutdown.triggered() => return,
        }
    }
}
