//! Capped exponential backoff, the one the uploader uses wherever it retries: the
//! dispatcher's failed claims, the batcher's failed write-backs, the probes of a provider
//! that looks down, and the ImageKit client's retries.
//!
//! The `n`-th delay (from 0) is `base·2ⁿ`, capped at `max`, then jittered. The jitter's
//! randomness is a plain function (tests pass a constant one), and the delays are
//! durations the caller sleeps through on tokio's clock, so tests with paused time see
//! exactly the steps they expect (`worker/dispatch/tests.rs`).

use std::time::Duration;

/// A uniform random number in `[0, 1)`: where jitter comes from.
pub type Random = fn() -> f64;

/// How a step is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// The exact step.
    None,
    /// Uniformly between half the step and the whole step.
    UpperHalf,
}

/// Delays between retries: doubling from `base`, capped at `max`, jittered.
///
/// Holds the count of failures so far: [`Backoff::next_delay`] after each failure,
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: Jitter,
    random: Random,
    failures: u32,
}

/// The doubling stops growing after this many steps (the cap is reached long before:
/// this only keeps the multiplication in range).
const MAX_DOUBLINGS: u32 = 16;

fn thread_random() -> f64 {
    rand::random::<f64>()
}

impl Backoff {
    /// `base`, `2·base`, `4·base`, ... at most `max`; no jitter.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            jitter: Jitter::None,
            random: thread_random,
            failures: 0,
        }
    }

    /// The same steps, spread by `jitter`.
    pub fn with_jitter(self, jitter: Jitter) -> Self {
        Backoff { jitter, ..self }
    }

    /// The jitter's randomness from `random` instead of the thread's generator (tests).
    pub fn with_random(self, random: Random) -> Self {
        Backoff { random, ..self }
    }

    /// The delay after the `n`-th consecutive failure (from 0), jittered.
    pub fn step(&self, n: u32) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << n.min(MAX_DOUBLINGS))
            .min(self.max);
        match self.jitter {
            Jitter::None => step,
            Jitter::UpperHalf => step.mul_f64(0.5 + (self.random)().clamp(0.0, 1.0) * 0.5),
        }
    }

    /// A failure: the delay before the next try (each call doubles the next one).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.step(self.failures);
        self.failures = self.failures.saturating_add(1);
        d
    }

    /// A success: the next failure waits `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_up_to_the_cap_and_starts_over_after_a_success() {
        let mut b = Backoff::new(ms(250), Duration::from_secs(30));
        let steps: Vec<u64> = (0..9).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            steps,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
        assert_eq!(b.failures(), 9);
        b.reset();
        assert_eq!(b.next_delay(), ms(250));
    }

    #[test]
    fn many_failures_stay_at_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(60));
        assert_eq!(
            Backoff::new(Duration::MAX, Duration::MAX).step(40),
            Duration::MAX,
            "no overflow"
        );
    }

    #[test]
    fn upper_half_jitter_spreads_between_half_and_the_whole_step() {
        let low = Backoff::new(ms(500), Duration::from_secs(8))
            .with_jitter(Jitter::UpperHalf)
            .with_random(|| 0.0);
        let high = low.clone().with_random(|| 0.999_999);
        let mid = low.clone().with_random(|| 0.5);
        assert_eq!(low.step(0), ms(250));
        assert_eq!(mid.step(1), ms(750));
        assert!(high.step(2) <= ms(2000) && high.step(2) > ms(1999));
        // Capped before the jitter: 500·2⁵ = 16 s → 8 s → between 4 s and 8 s.
        assert_eq!(low.step(5), Duration::from_secs(4));
        // Out-of-range randomness cannot leave the band.
        let wild = low.clone().with_random(|| 7.0);
        assert_eq!(wild.step(0), ms(500));
    }

    #[test]
    fn real_jitter_stays_in_the_band() {
        let b = Backoff::new(ms(1000), ms(1000)).with_jitter(Jitter::UpperHalf);
        for _ in 0..200 {
            let d = b.step(0);
            assert!(d >= ms(500) && d <= ms(1000), "{d:?}");
        }
    }
}
