//! In-memory stand-ins for the [`QueueApi`] and [`Transfer`] traits, so that the
//! worker's parts run in paused time, in milliseconds: a queue that hands out due
//! images (with scripted failures and a log of claims), and an HTTP side with per-URL
//! answers, an "unreachable" switch and a download delay. The database behind the real
//! queue is tested against PostgreSQL in `tests/`.

use super::*;
use crate::db::{ProviderState, WriteBackStatus};
use crate::failure::{ErrorType, NetworkKind, Stage};
use crate::fetch::ImageKind;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::time::Instant;

/// The queue: jobs to hand out (released ones come back), pauses, recorded outcomes.
#[derive(Default)]
pub struct FakeQueue {
    pub s: Mutex<QState>,
    pub clock: Option<Clock>,
}

#[derive(Default)]
pub struct QState {
    /// Claimable jobs, and when each becomes due.
    pub available: Vec<(Claim, DateTime<Utc>)>,
    pub next_job: i64,
    pub recorded: Vec<OutcomeRecord>,
    pub released: Vec<i64>,
    pub pauses: Vec<(String, DateTime<Utc>, String)>,
    /// Scripted answers of `record`, taken in turn (then: accept).
    pub record_errors: VecDeque<DbError>,
    /// Outcomes whose `url` is this are refused on their own (not transient).
    pub refuse_url: Option<String>,
    pub record_calls: usize,
    /// Scripted answers of `claim`, taken in turn: an error, or `None` to hand out
    /// what is due (as every claim does once the script is over).
    pub claim_script: VecDeque<Option<DbError>>,
    /// Every claim: when, and how many images it asked for.
    pub claims: Vec<(Instant, i32)>,
    /// The next claim panics (a bug in the queue layer, say).
    pub panic_on_claim: bool,
    pub pace: Duration,
}

/// A database error worth retrying (the pool timed out).
pub fn transient() -> DbError {
    DbError::Sql(sqlx::Error::PoolTimedOut)
}

/// A database error that refuses the input.
pub fn refused() -> DbError {
    DbError::Setup("result 0: url must be an http or https URL".into())
}

impl FakeQueue {
    pub fn new(clock: Clock) -> Self {
        FakeQueue {
            s: Mutex::new(QState::default()),
            clock: Some(clock),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.map(|c| c.now()).unwrap_or_else(Utc::now)
    }

    pub fn st(&self) -> std::sync::MutexGuard<'_, QState> {
        self.s.lock().unwrap()
    }

    /// Queues `n` images of `provider` (URLs `https://<provider>.example/<i>.jpg`).
    pub fn add(&self, provider: &str, n: usize) {
        let now = self.now();
        let mut s = self.st();
        for _ in 0..n {
            s.next_job += 1;
            let id = s.next_job;
            s.available.push((
                Claim {
                    job_id: id,
                    lease_token: format!("token-{id}"),
                    venue_id: 1,
                    provider: provider.into(),
                    provider_url: format!("https://{provider}.example/{id}.jpg"),
                    folder: "/venues/v".into(),
                    file_name: format!("xx-{id}.jpg"),
                    attempt: 1,
                    not_before: now,
                },
                now,
            ));
        }
    }

    pub fn paused(&self, provider: &str, now: DateTime<Utc>) -> bool {
        self.st()
            .pauses
            .iter()
            .any(|(p, until, _)| (p == provider || p == "*") && *until > now)
    }

    pub fn failed(&self) -> Vec<OutcomeRecord> {
        self.st()
            .recorded
            .iter()
            .filter(|o| o.error_type.is_some())
            .cloned()
            .collect()
    }

    pub fn uploaded(&self) -> usize {
        self.st()
            .recorded
            .iter()
            .filter(|o| o.url.is_some())
            .count()
    }
}

impl QueueApi for FakeQueue {
    async fn claim(
        &self,
        _w: &str,
        n: i32,
        _lease: Duration,
        _venue: Option<i64>,
    ) -> Result<Vec<Claim>, DbError> {
        let now = self.now();
        {
            let mut s = self.st();
            s.claims.push((Instant::now(), n));
            if let Some(Some(e)) = s.claim_script.pop_front() {
                return Err(e);
            }
        }
        // Not while holding the lock: the other tasks keep using the queue.
        let panic = self.st().panic_on_claim;
        assert!(!panic, "the queue layer panics mid-claim");
        let mut out = Vec::new();
        let mut keep = Vec::new();
        let available = std::mem::take(&mut self.st().available);
        for (c, due) in available {
            if out.len() < n as usize && due <= now && !self.paused(&c.provider, now) {
                out.push(c);
            } else {
                keep.push((c, due));
            }
        }
        let mut s = self.st();
        s.available = keep;
        // Pacing: each claimed image of the batch gets the next slot.
        let pace = s.pace;
        for (i, c) in out.iter_mut().enumerate() {
            c.not_before = now + chrono::Duration::from_std(pace * i as u32).unwrap();
        }
        Ok(out)
    }

    async fn extend(&self, _j: i64, _t: &str, _l: Duration) -> Result<bool, DbError> {
        Ok(true)
    }

    async fn release(&self, job_id: i64, _token: &str) -> Result<bool, DbError> {
        self.st().released.push(job_id);
        Ok(true)
    }

    async fn record(
        &self,
        outcomes: &[OutcomeRecord],
    ) -> Result<Vec<(i64, WriteBackStatus)>, DbError> {
        let mut s = self.st();
        s.record_calls += 1;
        if let Some(e) = s.record_errors.pop_front() {
            return Err(e);
        }
        if let Some(bad) = &s.refuse_url {
            if outcomes
                .iter()
                .any(|o| o.url.as_deref() == Some(bad.as_str()))
            {
                return Err(refused());
            }
        }
        let mut out = Vec::new();
        for o in outcomes {
            s.recorded.push(o.clone());
            out.push((
                o.job_id,
                if o.url.is_some() {
                    WriteBackStatus::Uploaded
                } else {
                    WriteBackStatus::Failed
                },
            ));
        }
        Ok(out)
    }

    async fn pause(&self, p: &str, until: DateTime<Utc>, why: &str) -> Result<(), DbError> {
        self.st().pauses.push((p.into(), until, why.into()));
        Ok(())
    }

    async fn providers(&self) -> Result<Vec<ProviderState>, DbError> {
        let now = self.now();
        let s = self.st();
        let mut by: HashMap<String, DateTime<Utc>> = HashMap::new();
        for (p, until, _) in &s.pauses {
            if *until > now {
                let e = by.entry(p.clone()).or_insert(*until);
                *e = (*e).max(*until);
            }
        }
        Ok(by
            .into_iter()
            .map(|(provider, until)| ProviderState {
                provider,
                paused_until: Some(until),
                pause_reason: None,
                last_success_at: None,
            })
            .collect())
    }

    async fn next_due(&self, _venue: Option<i64>) -> Result<Option<DateTime<Utc>>, DbError> {
        let s = self.st();
        let pause_end = |p: &str| {
            s.pauses
                .iter()
                .filter(|(q, _, _)| q == p || q == "*")
                .map(|(_, u, _)| *u)
                .max()
        };
        Ok(s.available
            .iter()
            .map(|(c, due)| (*due).max(pause_end(&c.provider).unwrap_or(*due)))
            .min())
    }
}

/// A queue whose released jobs come back (as a real one does).
pub struct Requeue(pub FakeQueue);

impl QueueApi for Requeue {
    async fn claim(
        &self,
        w: &str,
        n: i32,
        l: Duration,
        v: Option<i64>,
    ) -> Result<Vec<Claim>, DbError> {
        let got = self.0.claim(w, n, l, v).await?;
        // Remember what was handed out, to put it back on release.
        CLAIMED.with(|m| {
            let mut m = m.borrow_mut();
            for c in &got {
                m.insert(c.job_id, c.clone());
            }
        });
        Ok(got)
    }
    async fn extend(&self, j: i64, t: &str, l: Duration) -> Result<bool, DbError> {
        self.0.extend(j, t, l).await
    }
    async fn release(&self, job_id: i64, token: &str) -> Result<bool, DbError> {
        self.0.release(job_id, token).await?;
        let now = self.0.now();
        if let Some(c) = CLAIMED.with(|m| m.borrow().get(&job_id).cloned()) {
            self.0.st().available.push((c, now));
        }
        Ok(true)
    }
    async fn record(&self, o: &[OutcomeRecord]) -> Result<Vec<(i64, WriteBackStatus)>, DbError> {
        self.0.record(o).await
    }
    async fn pause(&self, p: &str, u: DateTime<Utc>, r: &str) -> Result<(), DbError> {
        self.0.pause(p, u, r).await
    }
    async fn providers(&self) -> Result<Vec<ProviderState>, DbError> {
        self.0.providers().await
    }
    async fn next_due(&self, v: Option<i64>) -> Result<Option<DateTime<Utc>>, DbError> {
        self.0.next_due(v).await
    }
}

thread_local! {
    static CLAIMED: std::cell::RefCell<HashMap<i64, Claim>> = std::cell::RefCell::new(HashMap::new());
}

/// The HTTP side: per-URL answers, an "unreachable" switch, a download delay, and a log
/// of (url, when) for every download started.
#[derive(Default)]
pub struct FakeTransfer {
    pub answers: Mutex<HashMap<String, Failure>>,
    pub unreachable: AtomicBool,
    pub delay: Mutex<Duration>,
    pub downloads: Mutex<Vec<(String, Instant)>>,
    pub uploads: AtomicUsize,
    /// Every upload fails with this (ImageKit refusing the key, say).
    pub upload_failure: Mutex<Option<Failure>>,
}

/// The smallest PNG.
pub fn png() -> Bytes {
    let mut b = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    b.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
    Bytes::from(b)
}

impl Transfer for FakeTransfer {
    async fn download(&self, url: &str) -> Result<Downloaded, Failure> {
        self.downloads
            .lock()
            .unwrap()
            .push((url.to_string(), Instant::now()));
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(Failure::transport(
                Stage::Download,
                ErrorType::NetworkError,
                NetworkKind::Dns,
                "failed to lookup address information",
            ));
        }
        if let Some(f) = self.answers.lock().unwrap().get(url) {
            return Err(f.clone());
        }
        Ok(Downloaded {
            bytes: png(),
            kind: ImageKind::Png,
            content_type_header: Some("image/png".into()),
            final_url: url.into(),
        })
    }

    async fn upload(&self, req: UploadRequest<'_>) -> Result<Uploaded, Failure> {
        self.uploads.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = self.upload_failure.lock().unwrap().clone() {
            return Err(f);
        }
        let url = format!(
            "https://ik.imagekit.io/demo{}/{}",
            req.folder, req.file_name
        );
        Ok(Uploaded {
            file_id: "f".into(),
            name: req.file_name.into(),
            url,
            file_path: format!("{}/{}", req.folder, req.file_name),
            size: None,
            width: None,
            height: None,
            request_id: None,
        })
    }
}

/// A paused-time test's world on the system clock: a queue holding `n` images of
/// `provider`, and an HTTP side where every download and upload succeeds at once.
pub fn fakes(provider: &str, n: usize) -> (Clock, Arc<FakeQueue>, Arc<FakeTransfer>) {
    let clock = Clock::system();
    let q = Arc::new(FakeQueue::new(clock));
    q.add(provider, n);
    (clock, q, Arc::new(FakeTransfer::default()))
}

impl FakeTransfer {
    /// Every download takes `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Downloads of `url` fail with `f`.
    pub fn fail_download(&self, url: &str, f: Failure) {
        self.answers.lock().unwrap().insert(url.into(), f);
    }

    /// Every upload fails with `f`.
    pub fn fail_uploads(&self, f: Failure) {
        *self.upload_failure.lock().unwrap() = Some(f);
    }
}

/// Draining, 4 slots, quick flushes and refreshes.
pub fn cfg() -> WorkerConfig {
    WorkerConfig {
        worker_id: "test".into(),
        concurrency: 4,
        lease: Duration::from_secs(60),
        poll: Duration::from_secs(2),
        grace: Duration::from_secs(10),
        flush_window: Duration::from_millis(50),
        drain: true,
        health_refresh: Duration::from_millis(500),
        ..WorkerConfig::default()
    }
}

/// [`cfg`], but running until stopped rather than until the queue is drained.
pub fn cfg_until_stopped() -> WorkerConfig {
    WorkerConfig {
        drain: false,
        ..cfg()
    }
}

/// The dependencies of a run over these fakes (silent, fresh metrics, no wake-ups).
pub fn deps<Q, T>(q: Arc<Q>, t: Arc<T>, clock: Clock, shutdown: Shutdown) -> Deps<Q, T> {
    Deps {
        queue: q,
        transfer: t,
        metrics: Arc::new(Metrics::new()),
        progress: Arc::new(Silent),
        clock,
        shutdown,
        wake: Arc::new(Notify::new()),
    }
}
