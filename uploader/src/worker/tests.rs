//! The worker's run in paused time, over the fakes of `fakes.rs`: slots, pauses,
//! shutdown, write-back failures, outages, and nothing left running after a panic.

use super::fakes::*;
use super::*;
use crate::exit::Exit;
use crate::failure::{ErrorType, NetworkKind, Stage};
use crate::fetch::Downloaded;
use crate::imagekit::{UploadRequest, Uploaded};
use std::sync::atomic::Ordering;
use tokio::time::Instant;

async fn go<Q: QueueApi>(
    q: Arc<Q>,
    t: Arc<FakeTransfer>,
    cfg: WorkerConfig,
    clock: Clock,
    shutdown: Shutdown,
) -> RunSummary {
    run(deps(q, t, clock, shutdown), cfg).await.unwrap()
}

/// [`go`] until stopped by a SIGTERM `after` its start: its summary.
async fn stopped_after<Q: QueueApi>(
    q: Arc<Q>,
    t: Arc<FakeTransfer>,
    cfg: WorkerConfig,
    clock: Clock,
    after: Duration,
) -> RunSummary {
    let (trigger, shutdown) = crate::shutdown::channel();
    let run = tokio::spawn(go(q, t, cfg, clock, shutdown));
    tokio::time::sleep(after).await;
    trigger.fire();
    run.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slot_in_the_future_is_waited_for() {
    let (clock, q, t) = fakes("google_places", 3);
    q.st().pace = Duration::from_secs(30);
    let start = Instant::now();
    let s = go(q.clone(), t.clone(), cfg(), clock, Shutdown::new()).await;
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
    let (clock, q, t) = fakes("google_places", 4);
    q.st().pace = Duration::from_secs(1);
    t.fail_download(
        "https://google_places.example/1.jpg",
        Failure {
            retry_after: Some(Duration::from_secs(3600)),
            ..Failure::from_status(Stage::Download, 429, "HTTP 429")
        },
    );
    let s = go(q.clone(), t.clone(), cfg(), clock, Shutdown::new()).await;
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
    let (clock, q, t) = fakes("here", 2);
    q.st().pace = Duration::from_secs(100);
    t.set_delay(Duration::from_secs(5));
    let c = cfg_until_stopped();
    let s = stopped_after(q.clone(), t.clone(), c, clock, Duration::from_secs(1)).await;
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
    let (clock, q, t) = fakes("here", 1);
    t.set_delay(Duration::from_secs(600));
    let c = cfg_until_stopped();
    let s = stopped_after(q.clone(), t.clone(), c, clock, Duration::from_secs(1)).await;
    assert!(s.statuses.is_empty());
    assert_eq!(q.st().released, vec![1]);
}

#[tokio::test(start_paused = true)]
async fn a_write_back_that_fails_transiently_then_refuses_one_outcome() {
    let (clock, q, t) = fakes("here", 3);
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
    let s = run(deps(q2, bad, clock, Shutdown::new()), cfg())
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
    let mut c = cfg_until_stopped();
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
    let (clock, q, t) = fakes("here", 4);
    // Job 4's own host does not resolve; the provider's other images download fine.
    t.fail_download(
        "https://here.example/4.jpg",
        Failure::transport(
            Stage::Download,
            ErrorType::NetworkError,
            NetworkKind::Dns,
            "no such host",
        ),
    );
    let mut c = cfg();
    c.concurrency = 1;
    let _ = go(q.clone(), t.clone(), c, clock, Shutdown::new()).await;
    assert_eq!(q.uploaded(), 3);
    let failed = q.failed();
    assert_eq!(failed.len(), 1, "the dead host is the image's own failure");
    assert_eq!(failed[0].error_type.as_deref(), Some("network_error"));
}

#[tokio::test(start_paused = true)]
async fn nothing_due_sleeps_until_the_next_due_time() {
    let (clock, q, t) = fakes("here", 1);
    // Due in 40 s (a backoff): with a linger, `once` waits for it, asking next_due.
    let due = clock.now() + chrono::Duration::seconds(40);
    q.st().available[0].1 = due;
    let mut c = cfg();
    c.linger = Duration::from_secs(60);
    c.poll = Duration::from_secs(3600);
    let start = Instant::now();
    let s = go(q.clone(), t.clone(), c, clock, Shutdown::new()).await;
    assert_eq!(s.statuses.get("uploaded"), Some(&1));
    let d = t.downloads.lock().unwrap()[0].1 - start;
    assert!(
        d >= Duration::from_secs(40) && d < Duration::from_secs(42),
        "woke at {d:?}, not at the poll"
    );
}

#[tokio::test(start_paused = true)]
async fn imagekit_refusing_the_key_stops_the_run_with_its_exit_status() {
    let (clock, q, t) = fakes("here", 3);
    q.st().pace = Duration::from_secs(10);
    t.fail_uploads(Failure {
        scope: crate::failure::Scope::Service,
        ..Failure::from_status(Stage::Upload, 401, "cannot be authenticated")
    });
    let c = cfg_until_stopped();
    let shutdown = Shutdown::new();
    let d = deps(q.clone(), t.clone(), clock, shutdown.clone());
    let metrics = d.metrics.clone();
    let start = Instant::now();
    // Not draining: only the fatal stop ends this run.
    let s = run(d, c).await.unwrap();
    let Some(StopReason::Fatal(fatal)) = &s.stop else {
        panic!("expected a fatal stop: {s:?}")
    };
    assert_eq!(fatal.exit, Exit::ImageKitRefused);
    assert!(
        fatal.message.contains("ImageKit refused the service"),
        "{}",
        fatal.message
    );
    assert_eq!(shutdown.reason(), s.stop, "the shutdown carries the reason");
    assert!(
        q.failed().is_empty(),
        "no image is charged: {:?}",
        q.failed()
    );
    assert_eq!(t.uploads.load(Ordering::SeqCst), 1, "one upload, then stop");
    assert_eq!(q.st().released, vec![1, 2, 3], "all three go back");
    let service = metrics
        .released
        .get_or_create(&crate::metrics::StateLabel {
            state: "service".into(),
        })
        .get();
    assert_eq!(service, 3, "released for the service, not a shutdown");
    assert!(
        Instant::now() - start < Duration::from_secs(10),
        "the images waiting for their slot are not waited for"
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_the_run_started_outlives_it_when_it_panics() {
    let (clock, q, t) = fakes("here", 1);
    t.set_delay(Duration::from_secs(600));
    let c = cfg_until_stopped();
    let worker = tokio::spawn(go(q.clone(), t.clone(), c, clock, Shutdown::new()));
    // Image 1 is downloading; the batcher, the heartbeat and the refresher run.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(t.downloads.lock().unwrap().len(), 1);
    assert!(Arc::strong_count(&q) > 1);
    // The next claim (at the poll) panics.
    q.st().panic_on_claim = true;
    let e = worker.await.unwrap_err();
    assert!(e.is_panic());
    // Let the runtime drop the aborted tasks.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(Arc::strong_count(&q), 1, "no task holds the queue any more");
    assert_eq!(
        Arc::strong_count(&t),
        1,
        "the download in flight was dropped"
    );
}
