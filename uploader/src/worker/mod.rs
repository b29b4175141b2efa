//! The worker: claim → wait for the pacing slot → download → upload → write back.
//!
//! Its parts, each small enough to hold in one's head:
//!
//! - the **dispatcher** (here): claims as many images as there are free slots (plus a
//!   prefetch), beside dispatching, and when nothing is due sleeps until the database
//!   says the next image becomes due (`venue_image_next_due`), a `NOTIFY`, or the poll
//!   interval, whichever comes first;
//! - each **attempt** (here): waits for its provider's slot, checks the provider is not
//!   paused (else it goes back unattempted), downloads, uploads;
//! - [`leases`]: the leases held and the heartbeat that extends them;
//! - [`health`]: pauses and whose fault a failure is (429s and outages are never
//!   charged to the image);
//! - [`writeback`]: the batcher, which isolates outcomes the database refuses.
//!
//! One [`Shutdown`] reaches every task: claiming stops, in-flight images finish within
//! the grace period, the rest are released unattempted. Time comes from a [`Clock`] over
//! tokio's clock, and the queue and the HTTP side are traits ([`QueueApi`], [`Transfer`]),
//! so the loop is tested with paused time in milliseconds (`tests.rs`).

pub mod health;
pub mod leases;
pub mod writeback;

#[cfg(test)]
mod tests;

use crate::clock::Clock;
use crate::failure::Failure;
use crate::fetch::{Downloaded, Fetcher};
use crate::imagekit::{ImageKit, UploadRequest, Uploaded};
use crate::metrics::{FailureLabels, Metrics, ProviderLabel};
use crate::queue::{Claim, DbError, OutcomeRecord, QueueApi};
use crate::shutdown::Shutdown;
use health::{Health, HealthConfig, Verdict, IMAGEKIT};
use leases::Leases;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};
use venue_images_core::retry::clean_message;

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
    /// Set when ImageKit refused the credentials or the account (the run stopped).
    pub fatal: Option<String>,
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
    stop_claiming: AtomicBool,
    fatal: Mutex<Option<String>>,
    wake: Arc<Notify>,
}

/// Runs until the shutdown fires (or, with `drain`, until nothing is left to do).
pub async fn run<Q: QueueApi, T: Transfer>(
    deps: Deps<Q, T>,
    cfg: WorkerConfig,
) -> Result<RunSummary, DbError> {
    let ctx = Arc::new(Ctx {
        queue: deps.queue,
        transfer: deps.transfer,
        metrics: deps.metrics,
        health: Health::new(cfg.health.clone()),
        cfg,
        clock: deps.clock,
        shutdown: deps.shutdown,
        leases: Leases::default(),
        progress: deps.progress,
        stop_claiming: AtomicBool::new(false),
        fatal: Mutex::new(None),
        wake: deps.wake,
    });
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    let writer = tokio::spawn(writeback::writer(ctx.clone(), done_rx));
    let heartbeat = tokio::spawn(leases::heartbeat(ctx.clone()));
    let refresher = tokio::spawn(refresh_health(ctx.clone()));
    let mut summary = RunSummary::default();
    let tasks = dispatch(&ctx, done_tx.clone(), &mut summary).await;
    finish(&ctx, tasks, done_tx).await;
    let written = writer.await.unwrap_or_default();
    summary.statuses = written.statuses;
    summary.released = written.released;
    summary.refused = written.refused;
    // What the batcher neither recorded nor released: aborted after the grace period.
    for (job, token) in ctx.leases.drain() {
        match ctx.queue.release(job, &token).await {
            Ok(_) => summary.released += 1,
            Err(e) => warn!(job_id = job, error = %e, "release failed; the lease will expire"),
        }
    }
    heartbeat.abort();
    refresher.abort();
    summary.fatal = ctx.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(summary)
}

type ClaimFuture = Pin<Box<dyn Future<Output = Result<Vec<Claim>, DbError>> + Send>>;

async fn poll_claim(claiming: &mut Option<ClaimFuture>) -> Result<Vec<Claim>, DbError> {
    match claiming.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The dispatcher: claims and starts images until shutdown (or, draining, until done).
/// Returns the attempts still running.
async fn dispatch<Q: QueueApi, T: Transfer>(
    ctx: &Arc<Ctx<Q, T>>,
    done_tx: mpsc::UnboundedSender<Done>,
    summary: &mut RunSummary,
) -> tokio::task::JoinSet<()> {
    let slots = Arc::new(Semaphore::new(ctx.cfg.concurrency.max(1)));
    // Claimed but not started: a slot that frees up starts the next image at once.
    // Their leases are held (and extended) like those in flight.
    let prefetch = (ctx.cfg.concurrency / 2).max(1);
    let mut ready: VecDeque<Claim> = VecDeque::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut claiming: Option<ClaimFuture> = None;
    // Nothing due: sleep until this (next due, or the poll), or a wake-up.
    let mut idle_until: Option<Instant> = None;
    // A failed claim: back off (not cut short by notifications).
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(250);
    let mut last_claim = Instant::now();
    loop {
        if ctx.shutdown.is_triggered() || ctx.stop_claiming.load(Ordering::SeqCst) {
            break;
        }
        while tasks.try_join_next().is_some() {}
        while !ready.is_empty() {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            let Some(claim) = ready.pop_front() else {
                break;
            };
            let (c, tx) = (ctx.clone(), done_tx.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let done = attempt(&c, claim).await;
                let _ = tx.send(done);
            });
        }
        let now = Instant::now();
        if idle_until.is_some_and(|t| now >= t) {
            idle_until = None;
        }
        if retry_at.is_some_and(|t| now >= t) {
            retry_at = None;
        }
        let want = (slots.available_permits() + prefetch).saturating_sub(ready.len());
        if claiming.is_none()
            && want > 0
            && ready.len() < prefetch
            && idle_until.is_none()
            && retry_at.is_none()
        {
            let c = ctx.clone();
            let n = want.min(1000) as i32;
            claiming = Some(Box::pin(async move {
                c.queue
                    .claim(&c.cfg.worker_id, n, c.cfg.lease, c.cfg.venue)
                    .await
            }));
        }
        let timer = idle_until.or(retry_at);
        tokio::select! {
            res = poll_claim(&mut claiming) => {
                claiming = None;
                match res {
                    Ok(claims) if !claims.is_empty() => {
                        ctx.metrics.db_ok();
                        backoff = Duration::from_millis(250);
                        last_claim = Instant::now();
                        summary.claimed += claims.len() as u64;
                        ctx.progress.claimed(claims.len() as u64);
                        debug!(n = claims.len(), "claimed");
                        for claim in &claims {
                            ctx.leases.insert(claim.job_id, claim.lease_token.clone());
                        }
                        ready.extend(claims);
                    }
                    Ok(_) => {
                        ctx.metrics.db_ok();
                        backoff = Duration::from_millis(250);
                        match idle(ctx, ready.is_empty() && tasks.is_empty(), last_claim).await {
                            Idle::Done => break,
                            Idle::Until(t) => idle_until = Some(t),
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "claim failed; retrying");
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            _ = tasks.join_next(), if !tasks.is_empty() => {
                // A slot is free: look for work again at once.
                idle_until = None;
            }
            _ = ctx.wake.notified(), if idle_until.is_some() => {
                idle_until = None;
            }
            _ = sleep_until(timer), if timer.is_some() && claiming.is_none() => {}
            _ = ctx.shutdown.triggered() => {}
        }
    }
    // A claim sent before the stop may have leased images: hold them so they are
    // released below instead of waiting for their leases to expire.
    if let Some(f) = claiming.take() {
        if let Ok(Ok(claims)) = tokio::time::timeout(Duration::from_secs(10), f).await {
            for claim in claims {
                ctx.leases.insert(claim.job_id, claim.lease_token.clone());
                let _ = done_tx.send(Done::release(&claim, ReleaseReason::Shutdown));
            }
        }
    }
    for claim in ready {
        let _ = done_tx.send(Done::release(&claim, ReleaseReason::Shutdown));
    }
    tasks
}

enum Idle {
    /// Draining and nothing is left.
    Done,
    /// Sleep until then (or a wake-up).
    Until(Instant),
}

/// After an empty claim: when to look again, or (draining) whether we are done.
async fn idle<Q: QueueApi, T: Transfer>(
    ctx: &Ctx<Q, T>,
    nothing_here: bool,
    last_claim: Instant,
) -> Idle {
    let next_due = ctx.queue.next_due(ctx.cfg.venue).await;
    let poll = Instant::now() + ctx.cfg.poll;
    let due_at = match &next_due {
        Ok(Some(t)) => Some(ctx.clock.instant_of(*t)),
        Ok(None) => None,
        Err(_) => Some(poll),
    };
    if ctx.cfg.drain && nothing_here && ctx.leases.is_empty() {
        // Done when nothing becomes due within the linger (counted from the last claim).
        let linger_end = last_claim + ctx.cfg.linger;
        match (&next_due, due_at) {
            (Ok(None), _) => return Idle::Done,
            (Ok(Some(_)), Some(at)) if at > linger_end.max(Instant::now()) => return Idle::Done,
            _ => {}
        }
    }
    // Due already (but not ours: paused, or taken by others meanwhile): poll.
    let at = due_at.map(|t| t.max(Instant::now() + Duration::from_millis(50)));
    Idle::Until(at.map_or(poll, |t| t.min(poll)))
}

/// After the dispatcher stops: in-flight attempts get the grace period, then are
/// aborted (their leases are released by `run`).
async fn finish<Q: QueueApi, T: Transfer>(
    ctx: &Ctx<Q, T>,
    mut tasks: tokio::task::JoinSet<()>,
    done_tx: mpsc::UnboundedSender<Done>,
) {
    ctx.stop_claiming.store(true, Ordering::SeqCst);
    let deadline = tokio::time::sleep(ctx.cfg.grace);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            _ = &mut deadline => {
                warn!(left = tasks.len(), "grace period over; releasing unfinished images");
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    drop(done_tx);
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

/// Why an attempt stopped short.
enum Stop {
    /// A failure to judge.
    Failed(Failure),
    /// A pause began before the next step: back unattempted.
    Paused,
}

/// One image: wait for its slot, check for pauses, download, upload.
async fn attempt<Q: QueueApi, T: Transfer>(ctx: &Ctx<Q, T>, claim: Claim) -> Done {
    let wait = ctx.clock.until(claim.not_before);
    if !wait.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown.triggered() => return Done::release(&claim, ReleaseReason::Shutdown),
        }
    }
    if ctx.stop_claiming.load(Ordering::SeqCst) && !ctx.shutdown.is_triggered() {
        // ImageKit refused the service meanwhile.
        return Done::release(&claim, ReleaseReason::Service);
    }
    if ctx
        .health
        .paused(&claim.provider, ctx.clock.now())
        .is_some()
    {
        debug!(job_id = claim.job_id, provider = %claim.provider, "provider paused: released unattempted");
        return Done::release(&claim, ReleaseReason::Paused);
    }
    let m = &ctx.metrics;
    let provider = ProviderLabel {
        provider: claim.provider.clone(),
    };
    m.attempts.get_or_create(&provider).inc();
    m.in_flight.inc();
    let result = process(ctx, &claim).await;
    m.in_flight.dec();
    match result {
        Ok(outcome) => {
            m.successes.get_or_create(&provider).inc();
            info!(job_id = claim.job_id, venue_id = claim.venue_id, provider = %claim.provider,
                  attempt = claim.attempt, file = %claim.file_name, "uploaded");
            Done::Outcome(outcome)
        }
        Err(Stop::Paused) => Done::release(&claim, ReleaseReason::Paused),
        Err(Stop::Failed(f)) => judged(ctx, &claim, f).await,
    }
}

async fn process<Q: QueueApi, T: Transfer>(
    ctx: &Ctx<Q, T>,
    claim: &Claim,
) -> Result<OutcomeRecord, Stop> {
    let t = Instant::now();
    let image = ctx
        .transfer
        .download(&claim.provider_url)
        .await
        .map_err(Stop::Failed)?;
    ctx.health.success(&claim.provider, ctx.clock.now());
    ctx.metrics
        .download_seconds
        .observe(t.elapsed().as_secs_f64());
    if ctx.health.paused(IMAGEKIT, ctx.clock.now()).is_some() {
        return Err(Stop::Paused);
    }
    let t = Instant::now();
    let uploaded = ctx
        .transfer
        .upload(UploadRequest {
            bytes: image.bytes,
            file_name: &claim.file_name,
            folder: &claim.folder,
            tags: vec![
                claim.provider.clone(),
                format!("venue:{}", claim.venue_slug()),
            ],
            mime: image.kind.mime(),
        })
        .await
        .map_err(Stop::Failed)?;
    ctx.health.success(IMAGEKIT, ctx.clock.now());
    ctx.metrics
        .upload_seconds
        .observe(t.elapsed().as_secs_f64());
    Ok(OutcomeRecord::uploaded(
        claim.job_id,
        claim.lease_token.clone(),
        uploaded.url,
        uploaded.file_path,
        Some(uploaded.file_id).filter(|f| !f.is_empty()),
    ))
}

/// A failed attempt, judged: recorded against the image, or given back.
async fn judged<Q: QueueApi, T: Transfer>(ctx: &Ctx<Q, T>, claim: &Claim, f: Failure) -> Done {
    ctx.metrics
        .failures
        .get_or_create(&FailureLabels {
            provider: claim.provider.clone(),
            error_type: f.error_type.as_str().into(),
            stage: f.stage.as_str().into(),
        })
        .inc();
    warn!(job_id = claim.job_id, venue_id = claim.venue_id, provider = %claim.provider,
          attempt = claim.attempt, error_type = %f.error_type, status = f.status_code,
          stage = f.stage.as_str(), network = f.network.map(|k| k.as_str()),
          request_id = f.request_id.as_deref(), message = %f.message, "attempt failed");
    let verdict = ctx.health.judge(&claim.provider, &f, ctx.clock.now());
    if let Verdict::Charge(Some(p)) | Verdict::Release(Some(p)) = &verdict {
        match ctx.queue.pause(&p.provider, p.until, &p.reason).await {
            Ok(()) => info!(provider = %p.provider, until = %p.until, reason = %p.reason,
                            "paused for every uploader"),
            Err(e) => warn!(provider = %p.provider, error = %e, "could not publish the pause"),
        }
    }
    match verdict {
        Verdict::Charge(_) => Done::Outcome(OutcomeRecord::failed(
            claim.job_id,
            claim.lease_token.clone(),
            f.error_type.as_str(),
            f.status_code.map(i64::from),
            clean_message(&format!("{}: {}", f.stage.as_str(), f.message)),
            f.retry_after.map(|d| d.as_secs_f64().ceil()),
        )),
        Verdict::Release(_) => {
            let reason = if f.error_type == crate::failure::ErrorType::RateLimited {
                ReleaseReason::RateLimited
            } else {
                ReleaseReason::Outage
            };
            debug!(
                job_id = claim.job_id,
                reason = reason.as_str(),
                "given back unattempted"
            );
            Done::release(claim, reason)
        }
        Verdict::Stop(msg) => {
            error!("{msg}; stopping (check IMAGEKIT_PRIVATE_KEY and the account)");
            *ctx.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
            ctx.stop_claiming.store(true, Ordering::SeqCst);
            ctx.wake.notify_one();
            Done::release(claim, ReleaseReason::Service)
        }
    }
}
