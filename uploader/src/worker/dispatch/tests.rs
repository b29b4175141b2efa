//! The dispatcher alone, in paused time: a test task stands in for the batcher (it
//! collects what the attempts send and lets their leases go), over the fakes of
//! `worker/fakes.rs`.

use super::*;
use crate::clock::Clock;
use crate::shutdown::Shutdown;
use crate::worker::fakes::*;
use crate::worker::WorkerConfig;
use tokio::task::JoinHandle;

/// A running dispatcher over `q` and `t`, and the test's stand-in for the batcher.
struct Rig {
    ctx: Arc<Ctx<FakeQueue, FakeTransfer>>,
    /// The dispatcher's run: how many images it claimed.
    running: JoinHandle<u64>,
    batcher: JoinHandle<Vec<Done>>,
    /// When the dispatcher started.
    start: Instant,
}

fn rig(q: &Arc<FakeQueue>, t: &Arc<FakeTransfer>, cfg: WorkerConfig, clock: Clock) -> Rig {
    let ctx = Ctx::new(deps(q.clone(), t.clone(), clock, Shutdown::new()), cfg);
    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let c = ctx.clone();
    let batcher = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(d) = rx.recv().await {
            match &d {
                Done::Outcome(o) => c.leases.remove(o.job_id),
                Done::Release { job_id, .. } => c.leases.remove(*job_id),
            }
            got.push(d);
        }
        got
    });
    Rig {
        running: tokio::spawn(Dispatcher::new(ctx.clone(), tx).run()),
        ctx,
        batcher,
        start: Instant::now(),
    }
}

impl Rig {
    /// Stops the dispatcher as a signal does: how many images it claimed, and what the
    /// batcher got.
    async fn stop(self) -> (u64, Vec<Done>) {
        self.ctx.shutdown.trigger(StopReason::Signal);
        let claimed = self.running.await.unwrap();
        (claimed, self.batcher.await.unwrap())
    }
}

/// The jobs released, and why.
fn releases(done: &[Done]) -> Vec<(i64, ReleaseReason)> {
    done.iter()
        .filter_map(|d| match d {
            Done::Release { job_id, reason, .. } => Some((*job_id, *reason)),
            Done::Outcome(_) => None,
        })
        .collect()
}

/// The jobs whose outcome was sent.
fn outcomes(done: &[Done]) -> Vec<i64> {
    done.iter()
        .filter_map(|d| match d {
            Done::Outcome(o) => Some(o.job_id),
            Done::Release { .. } => None,
        })
        .collect()
}

/// Milliseconds after `start` of every claim, and how many images each asked for.
fn claims(q: &FakeQueue, start: Instant) -> Vec<(u64, i32)> {
    q.st()
        .claims
        .iter()
        .map(|(at, n)| ((*at - start).as_millis() as u64, *n))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn claims_for_the_free_slots_plus_a_prefetch_and_holds_their_leases() {
    let (clock, q, t) = fakes("here", 10);
    t.set_delay(Duration::from_secs(5));
    let r = rig(&q, &t, cfg_until_stopped(), clock);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 4 slots and a prefetch of 2: one claim of 6; 4 start, 2 wait with their leases.
    assert_eq!(claims(&q, r.start), vec![(0, 6)]);
    assert_eq!(t.downloads.lock().unwrap().len(), 4);
    assert!((1..=6).all(|j| r.ctx.leases.holds(j)));
    // The 4 end at 5 s: the 2 ready ones start at once, and a claim refills the
    // prefetch and the 2 slots still free.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(claims(&q, r.start), vec![(0, 6), (5000, 4)]);
    assert_eq!(t.downloads.lock().unwrap().len(), 8);
    let (claimed, done) = r.stop().await;
    assert_eq!(claimed, 10, "images claimed");
    assert_eq!(
        releases(&done),
        vec![(9, ReleaseReason::Shutdown), (10, ReleaseReason::Shutdown)],
        "the prefetched ones go back unattempted"
    );
    let mut finished = outcomes(&done);
    finished.sort();
    assert_eq!(finished, (1..=8).collect::<Vec<_>>(), "in flight: finished");
}

#[tokio::test(start_paused = true)]
async fn a_failed_claim_backs_off_doubling_and_a_success_resets_it() {
    let (clock, q, t) = fakes("here", 1);
    q.st().claim_script = [
        Some(transient()),
        Some(transient()),
        Some(transient()),
        None,
        Some(transient()),
    ]
    .into();
    let r = rig(&q, &t, cfg(), clock);
    // A NOTIFY does not cut a backoff short.
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.ctx.wake.notify_one();
    assert_eq!(r.running.await.unwrap(), 1);
    assert_eq!(
        claims(&q, r.start)
            .iter()
            .map(|(at, _)| *at)
            .collect::<Vec<_>>(),
        // 250, 500, 1000 ms apart; the 4th claims the image, the 5th fails at once
        // and waits 250 ms again; the 6th finds nothing and the drain ends.
        vec![0, 250, 750, 1750, 1750, 2000]
    );
    assert_eq!(outcomes(&r.batcher.await.unwrap()), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn nothing_due_sleeps_until_a_wake_up() {
    let (clock, q, t) = fakes("here", 0);
    let c = WorkerConfig {
        poll: Duration::from_secs(3600),
        ..cfg_until_stopped()
    };
    let r = rig(&q, &t, c, clock);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(claims(&q, r.start), vec![(0, 6)], "asleep until the poll");
    q.add("here", 1);
    r.ctx.wake.notify_one();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(claims(&q, r.start)[1].0, 10_000, "woken by the NOTIFY");
    assert_eq!(t.downloads.lock().unwrap().len(), 1);
    assert_eq!(r.stop().await.0, 1);
}

#[tokio::test(start_paused = true)]
async fn the_stop_gives_back_what_did_not_start_and_waits_for_what_did() {
    let (clock, q, t) = fakes("here", 3);
    t.set_delay(Duration::from_secs(5));
    let c = WorkerConfig {
        concurrency: 1,
        ..cfg_until_stopped()
    };
    let r = rig(&q, &t, c, clock);
    let start = r.start;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (claimed, done) = r.stop().await;
    // 1 slot and a prefetch of 1: images 1 (in flight) and 2 (ready) were claimed.
    assert_eq!(claimed, 2);
    assert_eq!(Instant::now() - start, Duration::from_secs(5), "1 finished");
    assert_eq!(releases(&done), vec![(2, ReleaseReason::Shutdown)]);
    assert_eq!(outcomes(&done), vec![1]);
    assert_eq!(q.st().available.len(), 1, "image 3 was never claimed");
}

#[tokio::test(start_paused = true)]
async fn attempts_past_the_grace_period_are_aborted_with_their_leases_held() {
    let (clock, q, t) = fakes("here", 1);
    t.set_delay(Duration::from_secs(600));
    let c = WorkerConfig {
        grace: Duration::from_secs(10),
        ..cfg_until_stopped()
    };
    let r = rig(&q, &t, c, clock);
    let (start, ctx) = (r.start, r.ctx.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (claimed, done) = r.stop().await;
    assert_eq!(claimed, 1);
    assert_eq!(Instant::now() - start, Duration::from_secs(11), "the grace");
    assert!(done.is_empty(), "nothing sent for it");
    assert!(ctx.leases.holds(1), "held, for `run` to release");
}

#[tokio::test(start_paused = true)]
async fn draining_an_empty_queue_stops_by_itself_and_says_why() {
    let (clock, q, t) = fakes("here", 0);
    let r = rig(&q, &t, cfg(), clock);
    assert_eq!(r.running.await.unwrap(), 0);
    assert_eq!(r.ctx.shutdown.reason(), Some(StopReason::Drained));
    assert!(r.batcher.await.unwrap().is_empty());
}
