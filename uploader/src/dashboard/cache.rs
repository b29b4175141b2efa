//! A single-flight cache: however many requests ask at once, one load runs, and a load
//! starts at most once per refresh interval.
//!
//! - The first request waits for the first load; concurrent ones wait for the same load.
//! - After `ttl`, the next request gets the previous value at once (its "as of" time says
//!   how old it is) and starts one refresh in the background (stale-while-revalidate), so
//!   pages stay fast and the database sees one query per interval.
//! - Loads run in their own task: a viewer closing the page never cancels a scan half
//!   way (which would make the next viewer start it again).
//! - A failed load is retried by the next request after `min(ttl, 5 s)`; meanwhile
//!   requests get the error (or the last good value with the error attached).
//! - [`Cache::invalidate`] forgets the value (after an admin action) so that the next
//!   request waits for fresh figures; a load that was running is ignored.
//!
//! Time is tokio's, so the tests run in paused time.

use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

/// What a load returns: the value, or an error message (already safe to show).
pub type LoadFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send>>;

/// Makes a load.
pub type Loader<T> = Arc<dyn Fn() -> LoadFuture<T> + Send + Sync>;

/// A cached value and when it was read.
#[derive(Debug)]
pub struct Snapshot<T> {
    /// The value.
    pub value: Arc<T>,
    /// When its load started (the figures are as of then).
    pub as_of: DateTime<Utc>,
    /// The last refresh failed with this (the value is older than one interval).
    pub refresh_error: Option<String>,
}

impl<T> Clone for Snapshot<T> {
    fn clone(&self) -> Self {
        Snapshot {
            value: self.value.clone(),
            as_of: self.as_of,
            refresh_error: self.refresh_error.clone(),
        }
    }
}

type Outcome<T> = Option<Result<Snapshot<T>, String>>;

struct Entry<T> {
    value: Arc<T>,
    as_of: DateTime<Utc>,
    started: Instant,
}

struct State<T> {
    value: Option<Entry<T>>,
    /// The running load, if any.
    inflight: Option<watch::Receiver<Outcome<T>>>,
    /// When the last load started, and whether it failed.
    last_start: Option<Instant>,
    last_error: Option<String>,
    generation: u64,
}

struct Inner<T> {
    ttl: Duration,
    loader: Loader<T>,
    state: Mutex<State<T>>,
    loads: AtomicU64,
}

/// A single-flight cache of one value.
pub struct Cache<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Cache<T> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

/// How long after a failed load the next one may start.
const ERROR_RETRY: Duration = Duration::from_secs(5);

impl<T: Send + Sync + 'static> Cache<T> {
    /// A cache refreshed at most once per `ttl` by `loader`.
    pub fn new(ttl: Duration, loader: Loader<T>) -> Self {
        Cache {
            inner: Arc::new(Inner {
                ttl,
                loader,
                state: Mutex::new(State {
                    value: None,
                    inflight: None,
                    last_start: None,
                    last_error: None,
                    generation: 0,
                }),
                loads: AtomicU64::new(0),
            }),
        }
    }

    /// How many loads have started (tests, the benchmark).
    pub fn loads(&self) -> u64 {
        self.inner.loads.load(Ordering::SeqCst)
    }

    /// Forgets the value: the next request waits for a fresh load.
    pub fn invalidate(&self) {
        let mut st = self.lock();
        st.value = None;
        st.inflight = None;
        st.last_start = None;
        st.last_error = None;
        st.generation += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave the state half-updated (every
        // update is a few assignments), so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value held now, however old, without loading anything.
    pub fn peek(&self) -> Option<Arc<T>> {
        self.lock().value.as_ref().map(|e| e.value.clone())
    }

    /// The value: cached, or loaded once for everyone asking now.
    pub async fn get(&self) -> Result<Snapshot<T>, String> {
        let mut rx = {
            let mut st = self.lock();
            let now = Instant::now();
            if let Some(e) = &st.value {
                if now < e.started + self.inner.ttl {
                    return Ok(Snapshot {
                        value: e.value.clone(),
                        as_of: e.as_of,
                        refresh_error: None,
                    });
                }
            }
            let gap = if st.last_error.is_some() {
                ERROR_RETRY.min(self.inner.ttl)
            } else {
                self.inner.ttl
            };
            let may_start = st.last_start.is_none_or(|t| now >= t + gap);
            if st.inflight.is_none() && may_start {
                st.inflight = Some(self.start(&mut st, now));
            }
            if let Some(e) = &st.value {
                return Ok(Snapshot {
                    value: e.value.clone(),
                    as_of: e.as_of,
                    refresh_error: st.last_error.clone(),
                });
            }
            match &st.inflight {
                Some(rx) => rx.clone(),
                None => {
                    return Err(st
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "not loaded yet".into()))
                }
            }
        };
        let outcome = match rx.wait_for(|o| o.is_some()).await {
            Ok(o) => o.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(result) => result,
            // The load was superseded by invalidate(): ask again.
            None => Box::pin(self.get()).await,
        }
    }

    fn start(&self, st: &mut State<T>, now: Instant) -> watch::Receiver<Outcome<T>> {
        let (tx, rx) = watch::channel(None);
        st.last_start = Some(now);
        let generation = st.generation;
        self.inner.loads.fetch_add(1, Ordering::SeqCst);
        let fut = (self.inner.loader)();
        let this = self.clone();
        let as_of = Utc::now();
        tokio::spawn(async move {
            let result = fut.await;
            let outcome = {
                let mut st = this.lock();
                if st.generation != generation {
                    // Invalidated while loading: the result may predate an action.
                    return;
                }
                st.inflight = None;
                match result {
                    Ok(v) => {
                        let value = Arc::new(v);
                        st.value = Some(Entry {
                            value: value.clone(),
                            as_of,
                            started: now,
                        });
                        st.last_error = None;
                        Ok(Snapshot {
                            value,
                            as_of,
                            refresh_error: None,
                        })
                    }
                    Err(e) => {
                        st.last_error = Some(e.clone());
                        Err(e)
                    }
                }
            };
            let _ = tx.send(Some(outcome));
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A loader that takes 2 s (a scan) and counts its calls; fails while `fail` is set.
    fn slow(calls: Arc<AtomicU64>, fail: Arc<AtomicBool>) -> Loader<u64> {
        Arc::new(move || {
            let calls = calls.clone();
            let fail = fail.clone();
            Box::pin(async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
                if fail.load(Ordering::SeqCst) {
                    Err(format!("load {n} failed"))
                } else {
                    Ok(n)
                }
            })
        })
    }

    /// A cache refreshed every 60 s by [`slow`]: the cache, its count of calls and its
    /// switch to fail (set at first when `failing`).
    fn slow_cache(failing: bool) -> (Cache<u64>, Arc<AtomicU64>, Arc<AtomicBool>) {
        let calls = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicBool::new(failing));
        let cache = Cache::new(Duration::from_secs(60), slow(calls.clone(), fail.clone()));
        (cache, calls, fail)
    }

    #[tokio::test(start_paused = true)]
    async fn one_load_for_many_viewers_and_at_most_one_per_refresh() {
        let (cache, calls, _) = slow_cache(false);
        // 100 viewers at once: one load, everyone gets its value.
        let gets: Vec<_> = (0..100)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.get().await })
            })
            .collect();
        for g in gets {
            assert_eq!(*g.await.unwrap().unwrap().value, 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Within the interval: from the cache.
        tokio::time::advance(Duration::from_secs(50)).await;
        for _ in 0..10 {
            assert_eq!(*cache.get().await.unwrap().value, 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // After it: the old value at once, one refresh in the background.
        tokio::time::advance(Duration::from_secs(20)).await;
        let first = cache.get().await.unwrap();
        assert_eq!(*first.value, 1);
        for _ in 0..10 {
            assert_eq!(*cache.get().await.unwrap().value, 1);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(*cache.get().await.unwrap().value, 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.loads(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_viewer_leaving_does_not_cancel_the_load() {
        let (cache, calls, _) = slow_cache(false);
        let c = cache.clone();
        let t = tokio::spawn(async move { c.get().await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        t.abort();
        let v = cache.get().await.unwrap();
        assert_eq!(*v.value, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_shared_and_retried_after_a_pause() {
        let (cache, calls, fail) = slow_cache(true);
        let (a, b) = tokio::join!(cache.get(), cache.get());
        assert_eq!(a.unwrap_err(), "load 1 failed");
        assert_eq!(b.unwrap_err(), "load 1 failed");
        // Within 5 s of the failed start: the error, no new load.
        assert_eq!(cache.get().await.unwrap_err(), "load 1 failed");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(4)).await;
        fail.store(false, Ordering::SeqCst);
        assert_eq!(*cache.get().await.unwrap().value, 2);
        // A failed refresh keeps the old value and says so.
        tokio::time::advance(Duration::from_secs(61)).await;
        fail.store(true, Ordering::SeqCst);
        assert!(cache.get().await.unwrap().refresh_error.is_none());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let s = cache.get().await.unwrap();
        assert_eq!(*s.value, 2);
        assert_eq!(s.refresh_error.as_deref(), Some("load 3 failed"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_makes_the_next_viewer_wait_for_fresh_figures() {
        let (cache, calls, _) = slow_cache(false);
        assert_eq!(cache.peek().as_deref(), None);
        assert_eq!(*cache.get().await.unwrap().value, 1);
        assert_eq!(cache.peek().as_deref(), Some(&1));
        cache.invalidate();
        assert_eq!(cache.peek().as_deref(), None);
        assert_eq!(*cache.get().await.unwrap().value, 2);
        // Invalidated during a load: that load's result is dropped, waiters get the next.
        cache.invalidate();
        let c = cache.clone();
        let waiter = tokio::spawn(async move { c.get().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        cache.invalidate();
        let v = waiter.await.unwrap().unwrap();
        assert_eq!(*v.value, 4);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
