//! The worker loop.
//!
//! - A claimer leases as many images as there are free slots (bounded concurrency),
//!   waking on `LISTEN venue_image_jobs` or, as a fallback, every poll interval.
//! - Each image waits for its `not_before` slot (the provider's pace, shared by every
//!   uploader through the database), is downloaded safely and uploaded to ImageKit.
//! - Outcomes go to a writer that records them in batches (`venue_image_record_results`:
//!   one venue row rewrite per venue), retrying while the database is unreachable.
//! - A heartbeat extends the leases of images still in flight.
//! - A 429 or `Retry-After` pauses the provider (download) or ImageKit (upload, provider
//!   `*`) for every uploader.
//! - Shutdown (the future passed in) stops claiming, lets in-flight work finish within
//!   the grace period, then releases what is left, unattempted.

use crate::failure::{Failure, Scope, Stage};
use crate::fetch::Fetcher;
use crate::imagekit::{ImageKit, UploadRequest};
use crate::metrics::{FailureLabels, Metrics, ProviderLabel, StateLabel};
use crate::queue::{Claim, DbError, Outcome, Queue};
use chrono::Utc;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tracing::{debug, error, info, warn};

/// How the worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Unique id of this process (lease holder name).
    pub worker_id: String,
    /// Images processed at once.
    pub concurrency: usize,
    /// Lease length; extended every third of it while work is slow.
    pub lease: Duration,
    /// Fallback poll interval when no notification arrives.
    pub poll: Duration,
    /// Time in-flight work gets to finish after shutdown is requested.
    pub grace: Duration,
    /// Outcomes are written back at most this long after they are known.
    pub flush_window: Duration,
    /// Only this venue (`retry --venue`).
    pub venue: Option<i64>,
    /// Exit once nothing is due and nothing is in flight (`once`, `retry`).
    pub drain: bool,
    /// Pause used for a 429 without a wait hint.
    pub default_pause: Duration,
    /// With `drain`: also wait for images that become due within this long (retries
    /// after a short `Retry-After` or backoff), for at most this long after the last
    /// image was claimed.
    pub linger: Duration,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Images claimed.
    pub claimed: u64,
    /// Outcomes recorded, by status returned by the database.
    pub statuses: std::collections::BTreeMap<String, u64>,
    /// Images released unattempted.
    pub released: u64,
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
pub struct Services {
    /// Safe downloader.
    pub fetcher: Fetcher,
    /// ImageKit client.
    pub imagekit: ImageKit,
}

struct Shared {
    queue: Queue,
    services: Services,
    metrics: Arc<Metrics>,
    cfg: WorkerConfig,
    /// Leases held: job → token.
    leases: Mutex<HashMap<i64, String>>,
    stop_claiming: AtomicBool,
    fatal: Mutex<Option<String>>,
    wake: Notify,
    progress: Arc<dyn Progress>,
}

type ClaimFuture = Pin<Box<dyn Future<Output = Result<Vec<Claim>, DbError>> + Send>>;

/// The claim in progress, if any (pending forever when there is none).
async fn poll_claim(claiming: &mut Option<ClaimFuture>) -> Result<Vec<Claim>, DbError> {
    match claiming.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `t` (forever when there is none).
async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

enum Done {
    Outcome(Outcome),
    Release(i64, String),
}

/// Runs until `shutdown` resolves (or, with `drain`, until nothing is left to do).
pub async fn run(
    queue: Queue,
    services: Services,
    metrics: Arc<Metrics>,
    cfg: WorkerConfig,
    progress: Arc<dyn Progress>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunSummary, DbError> {
    let shared = Arc::new(Shared {
        queue,
        services,
        metrics,
        cfg: cfg.clone(),
        leases: Mutex::new(HashMap::new()),
        stop_claiming: AtomicBool::new(false),
        fatal: Mutex::new(None),
        wake: Notify::new(),
        progress,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        }
    });
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    let writer = tokio::spawn(writer(shared.clone(), done_rx));
    let heartbeat = tokio::spawn(heartbeat(shared.clone(), stop_rx.clone()));
    let listener = tokio::spawn(listen(shared.clone()));

    let slots = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    // Claimed but not started: a slot that frees up starts the next image at once
    // instead of waiting for a claim round trip. Their leases are held (and extended)
    // like those in flight, and released on shutdown. The claim itself runs beside the
    // dispatching, so a slow claim never leaves a slot idle while work is ready.
    let prefetch = (cfg.concurrency / 2).max(1);
    let mut ready: VecDeque<Claim> = VecDeque::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut summary = RunSummary::default();
    let mut claiming: Option<ClaimFuture> = None;
    // After an empty claim: wait for a notification, a finished image or the poll.
    let mut idle_until: Option<tokio::time::Instant> = None;
    // After a failed claim: back off (not cut short by notifications).
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_millis(250);
    let mut stop = stop_rx.clone();
    let mut last_claim = Instant::now();
    loop {
        if *stop.borrow() || shared.stop_claiming.load(Ordering::SeqCst) {
            break;
        }
        while tasks.try_join_next().is_some() {}
        while !ready.is_empty() {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            let claim = ready.pop_front().expect("non-empty");
            let (sh, done_tx, stop_rx) = (shared.clone(), done_tx.clone(), stop_rx.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let done = attempt(&sh, claim, stop_rx).await;
                let _ = done_tx.send(done);
            });
        }
        let now = tokio::time::Instant::now();
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
            let sh = shared.clone();
            let n = want.min(1000) as i32;
            claiming = Some(Box::pin(async move {
                sh.queue
                    .claim(&sh.cfg.worker_id, n, sh.cfg.lease, sh.cfg.venue)
                    .await
            }));
        }
        let timer = idle_until.or(retry_at);
        tokio::select! {
            res = poll_claim(&mut claiming) => {
                claiming = None;
                match res {
                    Ok(claims) if !claims.is_empty() => {
                        shared.metrics.db_ok();
                        backoff = Duration::from_millis(250);
                        last_claim = Instant::now();
                        summary.claimed += claims.len() as u64;
                        shared.progress.claimed(claims.len() as u64);
                        debug!(n = claims.len(), "claimed");
                        let mut leases = shared.leases.lock().expect("lease map");
                        for claim in &claims {
                            leases.insert(claim.job_id, claim.lease_token.clone());
                        }
                        ready.extend(claims);
                    }
                    Ok(_) => {
                        shared.metrics.db_ok();
                        backoff = Duration::from_millis(250);
                        // Done when nothing is claimed or in flight, every outcome is
                        // written back (a lease is held until then), and nothing is due
                        // (or due within the linger).
                        let unwritten = !shared.leases.lock().expect("lease map").is_empty();
                        if cfg.drain
                            && ready.is_empty()
                            && tasks.is_empty()
                            && !unwritten
                            && nothing_due(&shared, last_claim).await
                        {
                            break;
                        }
                        idle_until = Some(tokio::time::Instant::now() + cfg.poll);
                    }
                    Err(e) => {
                        warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "claim failed; retrying");
                        retry_at = Some(tokio::time::Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            _ = tasks.join_next(), if !tasks.is_empty() => {
                // A slot is free: look for work again at once.
                idle_until = None;
            }
            _ = shared.wake.notified(), if idle_until.is_some() => {
                idle_until = None;
            }
            _ = sleep_until(timer), if timer.is_some() && claiming.is_none() => {}
            _ = stop.changed() => {}
        }
    }
    // A claim sent before the stop may have leased images: hold them so they are
    // released below instead of waiting for their leases to expire.
    if let Some(f) = claiming.take() {
        if let Ok(Ok(claims)) = tokio::time::timeout(Duration::from_secs(10), f).await {
            let mut leases = shared.leases.lock().expect("lease map");
            for claim in claims {
                leases.insert(claim.job_id, claim.lease_token);
            }
        }
    }
    drop(ready);
    // Stop: let in-flight work finish within the grace period, then release the rest.
    shared.stop_claiming.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::sleep(cfg.grace);
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
    summary.statuses = writer.await.unwrap_or_default();
    // What the writer neither recorded nor released: aborted after the grace period.
    let unfinished: Vec<(i64, String)> = shared.leases.lock().expect("lease map").drain().collect();
    for (job, token) in unfinished {
        match shared.queue.release(job, &token).await {
            Ok(_) => summary.released += 1,
            Err(e) => warn!(job_id = job, error = %e, "release failed; the lease will expire"),
        }
    }
    heartbeat.abort();
    listener.abort();
    summary.fatal = shared.fatal.lock().expect("fatal").clone();
    Ok(summary)
}

async fn nothing_due(shared: &Shared, last_claim: Instant) -> bool {
    let linger = if last_claim.elapsed() < shared.cfg.linger {
        shared.cfg.linger
    } else {
        Duration::ZERO
    };
    match shared.queue.due_within(shared.cfg.venue, linger).await {
        Ok(soon) => !soon,
        Err(_) => false,
    }
}

/// One image: wait for its slot, download, upload.
async fn attempt(shared: &Shared, claim: Claim, mut stop: watch::Receiver<bool>) -> Done {
    let wait = (claim.not_before - Utc::now()).to_std().unwrap_or_default();
    if !wait.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => {
                return Done::Release(claim.job_id, claim.lease_token.clone());
            }
        }
    }
    let m = &shared.metrics;
    let provider = ProviderLabel {
        provider: claim.provider.clone(),
    };
    m.attempts.get_or_create(&provider).inc();
    m.in_flight.inc();
    let result = process(shared, &claim).await;
    m.in_flight.dec();
    match result {
        Ok(outcome) => {
            m.successes.get_or_create(&provider).inc();
            info!(job_id = claim.job_id, venue_id = claim.venue_id, provider = %claim.provider,
                  attempt = claim.attempt, file = %claim.file_name, "uploaded");
            Done::Outcome(outcome)
        }
        Err(f) => {
            m.failures
                .get_or_create(&FailureLabels {
                    provider: claim.provider.clone(),
                    error_type: f.error_type.as_str().into(),
                    stage: f.stage.as_str().into(),
                })
                .inc();
            warn!(job_id = claim.job_id, venue_id = claim.venue_id, provider = %claim.provider,
                  attempt = claim.attempt, error_type = %f.error_type, status = f.status_code,
                  stage = f.stage.as_str(), request_id = f.request_id.as_deref(), message = %f.message,
                  "attempt failed");
            if f.pauses() {
                pause(shared, &claim, &f).await;
            }
            if f.scope == Scope::Service {
                // Not the image's fault: keep its attempt, stop this uploader.
                let msg = format!("ImageKit refused the service: {f}");
                error!("{msg}; stopping (check IMAGEKIT_PRIVATE_KEY and the account)");
                *shared.fatal.lock().expect("fatal") = Some(msg);
                shared.stop_claiming.store(true, Ordering::SeqCst);
                shared.wake.notify_one();
                return Done::Release(claim.job_id, claim.lease_token.clone());
            }
            Done::Outcome(Outcome::failed(&claim, &f))
        }
    }
}

async fn process(shared: &Shared, claim: &Claim) -> Result<Outcome, Failure> {
    let t = Instant::now();
    let image = shared.services.fetcher.fetch(&claim.provider_url).await?;
    shared
        .metrics
        .download_seconds
        .observe(t.elapsed().as_secs_f64());
    let t = Instant::now();
    let uploaded = shared
        .services
        .imagekit
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
        .await?;
    shared
        .metrics
        .upload_seconds
        .observe(t.elapsed().as_secs_f64());
    Ok(Outcome::Uploaded {
        job_id: claim.job_id,
        lease_token: claim.lease_token.clone(),
        url: uploaded.url,
        imagekit_path: uploaded.file_path,
        file_id: uploaded.file_id,
    })
}

async fn pause(shared: &Shared, claim: &Claim, f: &Failure) {
    let (who, reason) = match f.stage {
        Stage::Download => (
            claim.provider.as_str(),
            format!("{} from {}", f.error_type, claim.provider),
        ),
        Stage::Upload => ("*", format!("{} from ImageKit", f.error_type)),
    };
    let wait = f.retry_after.unwrap_or(shared.cfg.default_pause);
    let until =
        Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(60));
    match shared.queue.pause(who, until, &reason).await {
        Ok(()) => {
            shared
                .metrics
                .paused
                .get_or_create(&ProviderLabel {
                    provider: who.into(),
                })
                .set(1);
            info!(provider = who, seconds = wait.as_secs(), reason = %reason, "paused for every uploader");
        }
        Err(e) => warn!(provider = who, error = %e, "could not pause provider"),
    }
}

/// Writes outcomes back in batches; returns the statuses the database answered.
async fn writer(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Done>,
) -> std::collections::BTreeMap<String, u64> {
    let mut statuses = std::collections::BTreeMap::new();
    let mut pending: Vec<Outcome> = Vec::new();
    let mut releases: Vec<(i64, String)> = Vec::new();
    let mut open = true;
    let mut backoff = Duration::from_millis(250);
    while open || !pending.is_empty() || !releases.is_empty() {
        if open && pending.is_empty() && releases.is_empty() {
            match rx.recv().await {
                Some(d) => push(d, &mut pending, &mut releases),
                None => open = false,
            }
        }
        // Gather what arrives within the flush window.
        let window = tokio::time::sleep(shared.cfg.flush_window);
        tokio::pin!(window);
        while open && pending.len() < 200 {
            tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => push(d, &mut pending, &mut releases),
                    None => open = false,
                },
                _ = &mut window => break,
            }
        }
        for (job, token) in std::mem::take(&mut releases) {
            if let Err(e) = shared.queue.release(job, &token).await {
                warn!(job_id = job, error = %e, "release failed; the lease will expire");
            }
            shared.leases.lock().expect("lease map").remove(&job);
        }
        if pending.is_empty() {
            continue;
        }
        match shared.queue.record(&pending).await {
            Ok(results) => {
                shared.metrics.db_ok();
                backoff = Duration::from_millis(250);
                let mut leases = shared.leases.lock().expect("lease map");
                for (job, status) in results {
                    leases.remove(&job);
                    shared
                        .metrics
                        .write_backs
                        .get_or_create(&StateLabel {
                            state: status.clone(),
                        })
                        .inc();
                    if status == "stale" {
                        warn!(job_id = job, "write-back refused: the lease was lost (another uploader has the image)");
                    }
                    shared.progress.recorded(&status);
                    *statuses.entry(status).or_insert(0) += 1;
                }
                pending.clear();
                // The claim loop may be waiting for write-backs (drain) or for work.
                shared.wake.notify_one();
            }
            Err(e) => {
                warn!(error = %e, pending = pending.len(), retry_in_ms = backoff.as_millis() as u64,
                      "write-back failed; keeping the outcomes and retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(15));
            }
        }
    }
    statuses
}

fn push(d: Done, pending: &mut Vec<Outcome>, releases: &mut Vec<(i64, String)>) {
    match d {
        Done::Outcome(o) => pending.push(o),
        Done::Release(j, t) => releases.push((j, t)),
    }
}

/// Extends the leases of images still in flight every third of the lease.
async fn heartbeat(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = (shared.cfg.lease / 3).max(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        let held: Vec<(i64, String)> = shared
            .leases
            .lock()
            .expect("lease map")
            .iter()
            .map(|(j, t)| (*j, t.clone()))
            .collect();
        for (job, token) in held {
            match shared.queue.extend(job, &token, shared.cfg.lease).await {
                Ok(true) => shared.metrics.db_ok(),
                Ok(false) => warn!(job_id = job, "lease lost before the image was done"),
                Err(e) => warn!(job_id = job, error = %e, "lease extension failed"),
            }
        }
        if *stop.borrow() && shared.leases.lock().expect("lease map").is_empty() {
            break;
        }
    }
}

/// Wakes the claimer on `NOTIFY venue_image_jobs` (a hint: polling is the fallback).
async fn listen(shared: Arc<Shared>) {
    loop {
        match sqlx::postgres::PgListener::connect_with(shared.queue.pool()).await {
            Ok(mut l) => {
                if l.listen("venue_image_jobs").await.is_ok() {
                    while let Ok(Some(_)) = l.try_recv().await {
                        shared.wake.notify_one();
                    }
                }
            }
            Err(e) => debug!(error = %e, "LISTEN unavailable; polling"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
