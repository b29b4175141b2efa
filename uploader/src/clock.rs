//! Wall-clock time driven by tokio's clock, so that tests with paused time
//! (`#[tokio::test(start_paused = true)]`) move the worker's idea of "now" too: pacing
//! slots and pauses from the database are wall-clock instants.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::time::Instant;

/// Now, as the worker sees it: the wall clock at creation plus tokio's elapsed time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: DateTime<Utc>,
    mono: Instant,
}

impl Clock {
    /// Starts at the system's wall clock.
    pub fn system() -> Self {
        Clock::starting_at(Utc::now())
    }

    /// Starts at `wall` (tests).
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        Clock {
            wall,
            mono: Instant::now(),
        }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.mono);
        self.wall + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }

    /// How long until `t` (zero when it has passed).
    pub fn until(&self, t: DateTime<Utc>) -> Duration {
        (t - self.now()).to_std().unwrap_or_default()
    }

    /// The tokio instant of wall-clock time `t` (now when it has passed).
    pub fn instant_of(&self, t: DateTime<Utc>) -> Instant {
        Instant::now() + self.until(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time() {
        let c = Clock::system();
        let t0 = c.now();
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!((c.now() - t0).num_seconds(), 90);
        assert_eq!(
            c.until(t0 + chrono::Duration::seconds(100)),
            Duration::from_secs(10)
        );
        assert_eq!(c.until(t0), Duration::ZERO);
    }
}
