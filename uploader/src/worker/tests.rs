//! The worker loop in paused time, over an in-memory queue and HTTP side.
//!
//! These fakes stand in for the [`QueueApi`] and [`Transfer`] traits only, so that the
//! loop's timing (slots, pauses, shutdown, backoff) runs in milliseconds; the database
//! behind the real queue is tested against PostgreSQL in `tests/`.

use super::*;
use crate::failure::{ErrorType, NetworkKind, Stage};
use crate::fetch::ImageKind;
use crate::queue::{ProviderState, WriteBackStatus};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;

/// The queue: jobs to hand out (released ones come back), pauses, recorded outcomes.
#[derive(Default)]
struct FakeQueue {
    s: Mutex<QState>,
    clock: Option<Clock>,
}

#[derive(Default)]
struct QState {
    /// Claimable jobs, and when each becomes due.
    available: Vec<(Claim, DateTime<Utc>)>,
    next_job: i64,
    recorded: Vec<OutcomeRecord>,
    released: Vec<i64>,
    pauses: Vec<(String, DateTime<Utc>, String)>,
    /// Scripted answers of `record`, taken in turn (then: accept).
    record_errors: VecDeque<DbError>,
    /// Outcomes whose `url` is this are refused on their own (not transient).
    refuse_url: Option<String>,
    record_calls: usize,
    pace: Duration,
}

fn transient() -> DbError {
    DbError::Sql(sqlx::Error::PoolTimedOut)
}

fn refused() -> DbError {
    DbError::Setup("result 0: url must be an http or https URL".into())
}

impl FakeQueue {
    fn new(clock: Clock) -> Self {
        FakeQueue {
            s: Mutex::new(QState::default()),
            clock: Some(clock),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.map(|c| c.now()).unwrap_or_else(Utc::now)
    }

    fn st(&self) -> std::sync::MutexGuard<'_, QState> {
        self.s.lock().unwrap()
    }

    /// Queues `n` images of `provider` (URLs `https://<provider>.example/<i>.jpg`).
    fn add(&self, provider: &str, n: usize) {
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

    fn paused(&self, provider: &str, now: DateTime<Utc>) -> bool {
        self.st()
            .pauses
            .iter()
            .any(|(p, until, _)| (p == provider || p == "*") && *until > now)
    }

    fn failed(&self) -> Vec<OutcomeRecord> {
        self.st()
            .recorded
            .iter()
            .filter(|o| o.error_type.is_some())
            .cloned()
            .collect()
    }

    fn uploaded(&self) -> usize {
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

    async fn pause(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), DbError> {
        self.st()
            .pauses
            .push((provider.into(), until, reason.into()));
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
struct Requeue(FakeQueue);

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
struct FakeTransfer {
    answers: Mutex<HashMap<String, Failure>>,
    unreachable: AtomicBool,
    delay: Mutex<Duration>,
    downloads: Mutex<Vec<(String, Instant)>>,
    uploads: AtomicUsize,
}

fn png() -> Bytes {
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

fn cfg() -> WorkerConfig {
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

async fn go<Q: QueueApi>(
    q: Arc<Q>,
    t: Arc<FakeTransfer>,
    cfg: WorkerConfig,
    clock: Clock,
    shutdown: Shutdown,
) -> RunSummary {
    run(
        Deps {
            queue: q,
            transfer: t,
            metrics: Arc::new(Metrics::new()),
            progress: Arc::new(Silent),
            clock,
            shutdown,
            wake: Arc::new(Notify::new()),
        },
        cfg,
    )
    .await
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slot_in_the_future_is_waited_for() {
    let clock = Clock::system();
    let q = Arc::new(FakeQueue::new(clock));
    q.st().pace = Duration::from_secs(30);
    q.add("google_places", 3);
    let t = Arc::new(FakeTransfer::default());
    let start = Instant::now();
    let s = go(q.clone(), t.clone(), cfg(), clock, Shutdown::never()).await;
    assert_eq!(s.statuses.get("uploaded"), Some(&3));
    let d = t.downloads.lock().unwrap().clone();
    let at: Vec<u64> = d.iter().map(|(_, i)| (*i - start).as_secs()).collect();
    assert_eq!(
        at,
        vec![0, 30, 60],
        "each image starts at its slot, not before"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pause_mid_batch_sends_the_rest_back_unattempted() {
    let clock = Clock::system();
    let q = Arc::new(FakeQueue::new(clock));
    q.st().pace = Duration::from_secs(1);
    q.add("google_places", 4);
    let t = Arc::new(FakeTransfer::default());
    let mut f = Failure::from_status(Stage::Download, 429, "HTTP 429");
    f.retry_after = Some(Duration::from_secs(3600));
    t.answers
        .lock()
        .unwrap()
        .insert("https://google_places.example/1.jpg".into(), f);
    let s = go(q.clone(), t.clone(), cfg(), clock, Shutdown::never()).await;
    // One download (the 429); the three claimed after it never start.
    assert_eq!(t.downloads.lock().unwrap().len(), 1);
    assert!(
        q.failed().is_empty(),
        "a 429 is not an attempt: {:?}",
        q.failed()
    );
    assert_eq!(q.st().released.len(), 4, "all four go back unattempted");
    assert_eq!(s.released, 4);
    let pauses = q.st().pauses.clone();
    assert_eq!(pauses.len(), 1);
    assert_eq!(pauses[0].0, "google_places");
    assert_eq!((pauses[0].1 - clock.now()).num_minutes(), 59);
}

#[tokio::test(start_paused = true)]
async fn sigterm_lets_work_in_flight_finish_and_releases_the_rest() {
    let clock = Clock::system();
    let q = Arc::new(FakeQueue::new(clock));
    q.st().pace = Duration::from_secs(100);
    q.add("here", 2);
    let t = Arc::new(FakeTransfer::default());
    *t.delay.lock().unwrap() = Duration::from_secs(5);
    let (trigger, shutdown) = crate::shutdown::channel();
    let mut c = cfg();
    c.drain = false;
    let run = tokio::spawn(go(q.clone(), t.clone(), c, clock, shutdown));
    tokio::time::sleep(Duration::from_secs(1)).await;
    trigger.fire();
    let s = run.await.unwrap();
    assert_eq!(
        s.statuses.get("uploaded"),
        Some(&1),
        "the one in flight finished"
    );
    assert_eq!(
        q.st().released,
        vec![2],
        "the one waiting for its slot went back"
    );
    assert_eq!(t.downloads.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn sigterm_after_the_grace_period_releases_what_is_still_running() {
    let clock = Clock::system();
    let q = Arc::new(FakeQueue::new(clock));
    q.add("here", 1);
    let t = Arc::new(FakeTransfer::default());
    *t.delay.lock().unwrap() = Duration::from_secs(600);
    let (trigger, shutdown) = crate::shutdown::channel();
    let mut c = cfg();
    c.drain = false;
    let run = tokio::spawn(go(q.clone(), t.clone(), c, clock, shutdown));
    tokio::time::sleep(Duration::from_secs(1)).await;
    trigger.fire();
    let s = run.await.unwrap();
    assert!(s.statuses.is_empty());
    assert_eq!(q.st().released, vec![1]);
}

#[tokio::test(start_paused = true)]
async fn a_write_back_that_fails_transiently_then_refuses_one_outcome() {
    let clock = Clock::system();
    let q = Arc::new(FakeQueue::new(clock));
    q.add("here", 3);
    let t = Arc::new(FakeTransfer::default());
    // ImageKit answers job 2's upload with a URL the database will refuse.
    {
        let mut s = q.st();
        s.record_errors.push_back(transient());
        s.refuse_url = Some("javascript:alert(1)".into());
    }
    let q2 = q.clone();
    let t2 = t.clone();
    let bad = Arc::new(BadFor {
        inner: t2,
        job_url: "https://here.example/2.jpg".into(),
    });
    let s = run(
        Deps {
            queue: q2,
            transfer: bad,
            metrics: Arc::new(Metrics::new()),
            progress: Arc::new(Silent),
            clock,
            shutdown: Shutdown::never(),
            wake: Arc::new(Notify::new()),
        },
        cfg(),
    )
    .await
    .unwrap();
    // Jobs 1 and 3 uploaded; job 2 recorded as a failure for review, not retried forever.
    assert_eq!(q.uploaded(), 2);
    let failed = q.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].job_id, 2);
    assert_eq!(failed[0].error_type.as_deref(), Some("unknown_error"));
    assert_eq!(s.refused, 1);
    assert!(
        q.st().record_calls <= 8,
        "no endless retries: {}",
        q.st().record_calls
    );
}

/// Uploads of one source URL come back with a URL the database refuses.
struct BadFor {
    inner: Arc<FakeTransfer>,
    job_url: String,
}

impl Transfer for BadFor {
    async fn download(&self, url: &str) -> Result<Downloaded, Failure> {
        let mut d = self.inner.download(url).await?;
        d.final_url = url.into();
        Ok(d)
    }
    async fn upload(&self, req: UploadRequest<'_>) -> Result<Uploaded, Failure> {
        let mut u = self.inner.upload(req).await?;
        if u.file_path.ends_with("xx-2.jpg") && self.job_url.ends_with("/2.jpg") {
            u.url = "javascript:alert(1)".into();
        }
        Ok(u)
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_provider_costs_no_attempts_and_recovers() {
    let clock = Clock::system();
    let q = Arc::new(Requeue(FakeQueue::new(clock)));
    q.0.add("google_places", 6);
    let t = Arc::new(FakeTransfer::default());
    t.unreachable.store(true, Ordering::SeqCst);
    let (trigger, shutdown) = crate::shutdown::channel();
    let mut c = cfg();
    c.drain = false;
    c.health.probe_base = Duration::from_secs(2);
    c.health.probe_max = Duration::from_secs(8);
    let run = tokio::spawn(go(q.clone(), t.clone(), c, clock, shutdown));
    // Far longer than max_retries x backoff would take to burn every image.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(q.0.failed().is_empty(), "charged: {:?}", q.0.failed());
    assert!(t.downloads.lock().unwrap().len() >= 6, "probes happened");
    assert!(!q.0.st().pauses.is_empty());
    // The host comes back: everything recovers.
    t.unreachable.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(30)).await;
    trigger.fire();
    let s = run.await.unwrap();
    assert_eq!(q.0.uploaded(), 6, "{s:?}");
    assert!(q.0.failed().is_empty());
}

#[tokio::test(start_paused = true)]
async fn one_dead_host_among_live_ones_is_charged() {
    let clock = Clock::system();
    let q = Arc::new(FakeQueue::new(clock));
    q.add("here", 4);
    let t = Arc::new(FakeTransfer::default());
    // Job 4's own host does not resolve; the provider's other images download fine.
    t.answers.lock().unwrap().insert(
        "https://here.example/4.jpg".into(),
        Failure::transport(
            Stage::Download,
            ErrorType::NetworkError,
            NetworkKind::Dns,
            "no such host",
        ),
    );
    let mut c = cfg();
    c.concurrency = 1;
    let _ = go(q.clone(), t.clone(), c, clock, Shutdown::never()).await;
    assert_eq!(q.uploaded(), 3);
    let failed = q.failed();
    assert_eq!(failed.len(), 1, "the dead host is the image's own failure");
    assert_eq!(failed[0].error_type.as_deref(), Some("network_error"));
}

#[tokio::test(start_paused = true)]
async fn nothing_due_sleeps_until_the_next_due_time() {
    let clock = Clock::system();
    let q = Arc::new(FakeQueue::new(clock));
    q.add("here", 1);
    // Due in 40 s (a backoff): with a linger, `once` waits for it, asking next_due.
    let due = clock.now() + chrono::Duration::seconds(40);
    q.st().available[0].1 = due;
    let t = Arc::new(FakeTransfer::default());
    let mut c = cfg();
    c.linger = Duration::from_secs(60);
    c.poll = Duration::from_secs(3600);
    let start = Instant::now();
    let s = go(q.clone(), t.clone(), c, clock, Shutdown::never()).await;
    assert_eq!(s.statuses.get("uploaded"), Some(&1));
    let d = t.downloads.lock().unwrap()[0].1 - start;
    assert!(
        d >= Duration::from_secs(40) && d < Duration::from_secs(42),
        "woke at {d:?}, not at the poll"
    );
}
