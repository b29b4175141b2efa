//! One shutdown signal, passed to every task (as mini-redis does): the signal handler,
//! the dispatcher, the attempts waiting for their slot, the heartbeat, the scheduler and
//! the metrics server all hold a [`Shutdown`], and tests trigger it directly.

use tokio::sync::watch;

/// Fires the shutdown (keep it alive while the process runs: dropping it fires too).
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Observes the shutdown; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new, untriggered shutdown.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Asks every holder of a [`Shutdown`] to stop.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }

    /// Another observer.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Has the shutdown been asked for?
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the shutdown is asked for (at once if it already was, and when the
    /// trigger is dropped).
    pub async fn triggered(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// A shutdown that never fires (tests, one-off commands).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive for the life of the process.
        std::mem::forget(tx);
        Shutdown(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_for_everyone() {
        let (t, s) = channel();
        let s2 = t.subscribe();
        assert!(!s.is_triggered());
        t.fire();
        s.triggered().await;
        s2.triggered().await;
        assert!(s.clone().is_triggered());
    }
}
