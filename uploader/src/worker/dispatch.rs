//! The dispatcher: claims images and starts their attempts.
//!
//! Its state is in its fields and each step is a method. [`Dispatcher::run`] repeats,
//! until the shutdown fires:
//!
//! 1. `start_ready`: free slots start claimed images (a prefetch of claimed images
//!    waits, leases held, so that a freed slot starts the next image at once);
//! 2. `expire`: a sleep whose time has come is over;
//! 3. `claim_if_wanted`: one claim at a time, for the free slots plus the prefetch;
//! 4. `next_event` and `handle`: whatever comes first, the claim's answer, an attempt
//!    ending, a `NOTIFY`, the end of a sleep, the shutdown.
//!
//! An empty claim sleeps until the next image becomes due (or the poll interval, or a
//! `NOTIFY`, or a freed slot); a failed claim waits its [`Backoff`] (a `NOTIFY` does not
//! cut it short). Draining, the dispatcher fires the shutdown itself once nothing is
//! left ([`StopReason::Drained`]). Then it gives back what it claimed but did not start,
//! and gives the attempts in flight the grace period before aborting them.

#[cfg(test)]
mod tests;

use super::{attempt, Ctx, Done, ReleaseReason, Transfer};
use crate::backoff::Backoff;
use crate::db::{Claim, DbError, QueueApi};
use crate::shutdown::StopReason;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

/// The first wait after a failed claim.
const CLAIM_BACKOFF_BASE: Duration = Duration::from_millis(250);
/// The longest wait between failed claims.
const CLAIM_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Most images asked for in one claim.
const MAX_CLAIM: usize = 1000;
/// How long a claim sent before the stop is waited for (its images are given back).
const LATE_CLAIM_WAIT: Duration = Duration::from_secs(10);
/// The shortest sleep before looking again at images due already but not claimable.
const MIN_IDLE: Duration = Duration::from_millis(50);

type ClaimFuture = Pin<Box<dyn Future<Output = Result<Vec<Claim>, DbError>> + Send>>;

/// Where claiming stands: at most one of these at a time.
enum Claiming {
    /// Free to claim, when slots allow.
    Open,
    /// A claim is on its way.
    Sent(ClaimFuture),
    /// Nothing due: no claim before this instant, unless woken (a `NOTIFY`, a freed slot).
    Idle(Instant),
    /// The last claim failed: no claim before this instant.
    BackingOff(Instant),
}

impl Claiming {
    /// When the current sleep ends.
    fn until(&self) -> Option<Instant> {
        match self {
            Claiming::Idle(t) | Claiming::BackingOff(t) => Some(*t),
            Claiming::Open | Claiming::Sent(_) => None,
        }
    }
}

/// What the dispatcher waits for.
#[derive(Debug)]
enum Event {
    /// The claim's answer.
    Claimed(Result<Vec<Claim>, DbError>),
    /// An attempt ended: its slot is free.
    SlotFreed,
    /// `NOTIFY venue_image_jobs` (a hint that images became due).
    Woken,
    /// The current sleep is over.
    Timer,
    /// The shutdown fired.
    Stop,
}

/// After an empty claim: sleep, or (draining) stop.
enum Idle {
    /// Draining and nothing is left.
    Done,
    /// Sleep until then (or a wake-up).
    Until(Instant),
}

/// Claims images and starts their attempts until the shutdown fires.
pub struct Dispatcher<Q, T> {
    ctx: Arc<Ctx<Q, T>>,
    /// Where the attempts' outcomes and the releases go (the batcher).
    done: mpsc::UnboundedSender<Done>,
    /// One permit per image in flight.
    slots: Arc<Semaphore>,
    /// Claimed images held ready beyond the free slots.
    prefetch: usize,
    /// Claimed, not started; their leases are held (and extended) like those in flight.
    ready: VecDeque<Claim>,
    /// The attempts in flight (aborted if the dispatcher is dropped).
    attempts: JoinSet<()>,
    claiming: Claiming,
    backoff: Backoff,
    /// When the last image was claimed (draining: the linger counts from it).
    last_claim: Instant,
    /// Images claimed so far.
    claimed: u64,
}

impl<Q: QueueApi, T: Transfer> Dispatcher<Q, T> {
    /// A dispatcher for `ctx`'s queue and settings, sending what attempts end with to
    /// `done`.
    pub fn new(ctx: Arc<Ctx<Q, T>>, done: mpsc::UnboundedSender<Done>) -> Self {
        let concurrency = ctx.cfg.concurrency.max(1);
        Dispatcher {
            done,
            slots: Arc::new(Semaphore::new(concurrency)),
            prefetch: (ctx.cfg.concurrency / 2).max(1),
            ready: VecDeque::new(),
            attempts: JoinSet::new(),
            claiming: Claiming::Open,
            backoff: Backoff::new(CLAIM_BACKOFF_BASE, CLAIM_BACKOFF_MAX),
            last_claim: Instant::now(),
            claimed: 0,
            ctx,
        }
    }

    /// Dispatches until the shutdown fires (draining: until nothing is left), gives back
    /// what was claimed and not started, and waits for the attempts in flight for the
    /// grace period (aborting the rest, whose leases `run` releases). Returns how many
    /// images were claimed. Every outcome has been sent to `done` when it returns.
    pub async fn run(mut self) -> u64 {
        while !self.ctx.shutdown.is_triggered() {
            self.start_ready();
            self.expire(Instant::now());
            self.claim_if_wanted();
            let event = self.next_event().await;
            self.handle(event).await;
        }
        self.give_back().await;
        self.wind_down().await;
        self.claimed
    }

    /// Collects ended attempts, and starts claimed images while slots are free.
    fn start_ready(&mut self) {
        while self.attempts.try_join_next().is_some() {}
        while !self.ready.is_empty() {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                break;
            };
            let Some(claim) = self.ready.pop_front() else {
                break;
            };
            let (ctx, done) = (self.ctx.clone(), self.done.clone());
            self.attempts.spawn(async move {
                let _permit = permit;
                let _ = done.send(attempt::attempt(&ctx, claim).await);
            });
        }
    }

    /// Ends a sleep whose time has come.
    fn expire(&mut self, now: Instant) {
        if self.claiming.until().is_some_and(|t| now >= t) {
            self.claiming = Claiming::Open;
        }
    }

    /// How many images a claim should ask for now (0: none).
    fn wanted(&self) -> usize {
        if self.ready.len() >= self.prefetch {
            return 0;
        }
        (self.slots.available_permits() + self.prefetch).saturating_sub(self.ready.len())
    }

    /// Sends a claim when none is on its way, no sleep is on, and images are wanted.
    fn claim_if_wanted(&mut self) {
        let n = self.wanted();
        if n == 0 || !matches!(self.claiming, Claiming::Open) {
            return;
        }
        let ctx = self.ctx.clone();
        let n = n.min(MAX_CLAIM) as i32;
        self.claiming = Claiming::Sent(Box::pin(async move {
            ctx.queue
                .claim(&ctx.cfg.worker_id, n, ctx.cfg.lease, ctx.cfg.venue)
                .await
        }));
    }

    /// Waits for whatever comes first. Cancel-safe: the claim on its way is polled in
    /// place, not dropped.
    async fn next_event(&mut self) -> Event {
        let until = self.claiming.until();
        let idle = matches!(self.claiming, Claiming::Idle(_));
        tokio::select! {
            res = answer(&mut self.claiming) => Event::Claimed(res),
            _ = self.attempts.join_next(), if !self.attempts.is_empty() => Event::SlotFreed,
            _ = self.ctx.wake.notified(), if idle => Event::Woken,
            _ = sleep_until(until), if until.is_some() => Event::Timer,
            _ = self.ctx.shutdown.triggered() => Event::Stop,
        }
    }

    /// Acts on `event`.
    async fn handle(&mut self, event: Event) {
        match event {
            Event::Claimed(res) => {
                self.claiming = Claiming::Open;
                match res {
                    Ok(claims) if !claims.is_empty() => self.on_claimed(claims),
                    Ok(_) => self.on_nothing_due().await,
                    Err(e) => self.on_claim_failed(e),
                }
            }
            // A slot is free, or images became due: look for work again at once (a
            // backoff still runs its course).
            Event::SlotFreed | Event::Woken => {
                if matches!(self.claiming, Claiming::Idle(_)) {
                    self.claiming = Claiming::Open;
                }
            }
            // The loop looks at the clock and the shutdown itself.
            Event::Timer | Event::Stop => {}
        }
    }

    /// Images claimed: hold their leases and queue them for a slot.
    fn on_claimed(&mut self, claims: Vec<Claim>) {
        self.ctx.metrics.db_ok();
        self.backoff.reset();
        self.last_claim = Instant::now();
        let n = claims.len() as u64;
        self.claimed += n;
        self.ctx.progress.claimed(n);
        debug!(n, "claimed");
        for claim in &claims {
            self.ctx
                .leases
                .insert(claim.job_id, claim.lease_token.clone());
        }
        self.ready.extend(claims);
    }

    /// Nothing claimable: sleep until the next image is due, or (draining) stop.
    async fn on_nothing_due(&mut self) {
        self.ctx.metrics.db_ok();
        self.backoff.reset();
        let nothing_here = self.ready.is_empty() && self.attempts.is_empty();
        match idle(&self.ctx, nothing_here, self.last_claim).await {
            Idle::Done => self.ctx.shutdown.trigger(StopReason::Drained),
            Idle::Until(t) => self.claiming = Claiming::Idle(t),
        }
    }

    /// The claim failed (the database is down, say): try again after the backoff.
    fn on_claim_failed(&mut self, e: DbError) {
        let wait = self.backoff.next_delay();
        warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "claim failed; retrying");
        self.claiming = Claiming::BackingOff(Instant::now() + wait);
    }

    /// Gives back what was claimed and not started: the images of a claim sent before
    /// the stop (waited for a little, so that they are released now rather than when
    /// their leases expire), and those waiting for a slot.
    async fn give_back(&mut self) {
        if let Claiming::Sent(claim) = std::mem::replace(&mut self.claiming, Claiming::Open) {
            if let Ok(Ok(claims)) = tokio::time::timeout(LATE_CLAIM_WAIT, claim).await {
                for claim in claims {
                    self.ctx
                        .leases
                        .insert(claim.job_id, claim.lease_token.clone());
                    let _ = self
                        .done
                        .send(Done::release(&claim, ReleaseReason::Shutdown));
                }
            }
        }
        for claim in self.ready.drain(..) {
            let _ = self
                .done
                .send(Done::release(&claim, ReleaseReason::Shutdown));
        }
    }

    /// The attempts in flight get the grace period, then are aborted (their leases are
    /// released by `run`).
    async fn wind_down(&mut self) {
        let deadline = tokio::time::sleep(self.ctx.cfg.grace);
        tokio::pin!(deadline);
        while !self.attempts.is_empty() {
            tokio::select! {
                _ = self.attempts.join_next() => {}
                _ = &mut deadline => {
                    warn!(left = self.attempts.len(), "grace period over; releasing unfinished images");
                    self.attempts.abort_all();
                    while self.attempts.join_next().await.is_some() {}
                    break;
                }
            }
        }
    }
}

/// After an empty claim: when to look again, or (draining) whether we are done
/// (`nothing_here`: no image ready or in flight; `last_claim`: when the last image was
/// claimed).
async fn idle<Q: QueueApi, T>(ctx: &Ctx<Q, T>, nothing_here: bool, last_claim: Instant) -> Idle {
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
    let at = due_at.map(|t| t.max(Instant::now() + MIN_IDLE));
    Idle::Until(at.map_or(poll, |t| t.min(poll)))
}

/// The answer of the claim on its way (never, when none is).
async fn answer(claiming: &mut Claiming) -> Result<Vec<Claim>, DbError> {
    match claiming {
        Claiming::Sent(claim) => claim.await,
        _ => std::future::pending().await,
    }
}

/// Sleeps until `t` (forever when `None`).
async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
