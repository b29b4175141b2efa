//! One shutdown, passed to every task (as mini-redis does): the signal handler, the
//! dispatcher, the attempts waiting for their slot, the heartbeat, the scheduler and the
//! servers all hold a [`Shutdown`], and tests trigger it directly.
//!
//! The shutdown carries why it fired ([`StopReason`]): a signal, a drained queue, a
//! fatal error with its exit status, or an owner gone. Any holder may trigger it; the
//! first reason stands, except that a fatal one replaces a gentler one (ImageKit
//! refusing the key during the grace period after SIGTERM still ends the process with
//! its exit status). [`on_signals`] turns SIGTERM and Ctrl-C into
//! [`StopReason::Signal`].

use crate::exit::Exit;
use crate::tasks::Task;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::info;

/// A failure that ends the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    /// The process's exit status.
    pub exit: Exit,
    /// What happened (no secrets).
    pub message: String,
}

/// Why the shutdown fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or Ctrl-C (or a test asking): stop claiming, finish what is in flight.
    Signal,
    /// Draining (`once`, `retry`), and nothing is left to do.
    Drained,
    /// The owner of the shutdown went away (its [`Trigger`] was dropped: it returned or
    /// panicked).
    Abandoned,
    /// Nothing more can be done: stop with this exit status.
    Fatal(Fatal),
}

impl StopReason {
    /// A fatal stop (with this exit status and message).
    pub fn fatal(exit: Exit, message: impl Into<String>) -> Self {
        StopReason::Fatal(Fatal {
            exit,
            message: message.into(),
        })
    }

    /// Is this a fatal stop?
    pub fn is_fatal(&self) -> bool {
        matches!(self, StopReason::Fatal(_))
    }

    /// How the process ends after stopping for this reason.
    pub fn exit(&self) -> Exit {
        match self {
            StopReason::Fatal(f) => f.exit,
            StopReason::Signal | StopReason::Drained | StopReason::Abandoned => Exit::Ok,
        }
    }
}

/// The shutdown: observed and triggered by every task that holds it; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<watch::Sender<Option<StopReason>>>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A new shutdown, not triggered.
    pub fn new() -> Self {
        Shutdown(Arc::new(watch::Sender::new(None)))
    }

    /// Asks every holder to stop, for `reason`. The first reason stands, except that a
    /// fatal reason replaces one that is not.
    pub fn trigger(&self, reason: StopReason) {
        self.0.send_if_modified(|current| {
            let replace = match current {
                None => true,
                Some(old) => !old.is_fatal() && reason.is_fatal(),
            };
            if replace {
                *current = Some(reason);
            }
            replace
        });
    }

    /// Why the shutdown fired (`None`: it has not).
    pub fn reason(&self) -> Option<StopReason> {
        self.0.borrow().clone()
    }

    /// Has the shutdown been asked for?
    pub fn is_triggered(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Resolves once the shutdown is asked for (at once if it already was).
    pub async fn triggered(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`: the channel cannot close while this waits.
        let _ = rx.wait_for(Option::is_some).await;
    }
}

/// The owner's end of a shutdown: [`Trigger::fire`] stops every holder as a signal
/// does, and dropping it stops them too ([`StopReason::Abandoned`]), so the tasks of an
/// owner that returned or panicked do not run on.
#[derive(Debug)]
pub struct Trigger(Shutdown);

/// A new, untriggered shutdown and its owner's trigger.
pub fn channel() -> (Trigger, Shutdown) {
    let shutdown = Shutdown::new();
    (Trigger(shutdown.clone()), shutdown)
}

impl Trigger {
    /// Asks every holder of a [`Shutdown`] to stop ([`StopReason::Signal`]).
    pub fn fire(&self) {
        self.0.trigger(StopReason::Signal);
    }

    /// Another observer.
    pub fn subscribe(&self) -> Shutdown {
        self.0.clone()
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        self.0.trigger(StopReason::Abandoned);
    }
}

/// SIGTERM or Ctrl-C fires the shutdown ([`StopReason::Signal`]). Signals are listened
/// for while the returned task is held; dropping it drops the trigger too.
pub fn on_signals(trigger: Trigger) -> Task<()> {
    Task::spawn(async move {
        signal().await;
        info!("shutdown requested: no new claims; finishing in-flight images");
        trigger.fire();
    })
}

/// The first SIGTERM or Ctrl-C.
async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
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
        assert_eq!(s.reason(), None);
        t.fire();
        s.triggered().await;
        s2.triggered().await;
        assert!(s.clone().is_triggered());
        assert_eq!(s2.reason(), Some(StopReason::Signal));
    }

    #[tokio::test]
    async fn any_holder_triggers_with_a_reason_and_the_first_stands() {
        let s = Shutdown::new();
        let held = s.clone();
        let waiter = tokio::spawn(async move { held.triggered().await });
        s.trigger(StopReason::Drained);
        waiter.await.unwrap();
        s.trigger(StopReason::Signal);
        assert_eq!(s.reason(), Some(StopReason::Drained));
        assert_eq!(s.reason().map(|r| r.exit()), Some(Exit::Ok));
    }

    #[test]
    fn a_fatal_reason_replaces_a_gentler_one_and_keeps_its_exit_status() {
        let s = Shutdown::new();
        s.trigger(StopReason::Signal);
        let refused = StopReason::fatal(Exit::ImageKitRefused, "ImageKit refused the key");
        s.trigger(refused.clone());
        assert_eq!(s.reason(), Some(refused.clone()));
        s.trigger(StopReason::Signal);
        s.trigger(StopReason::fatal(Exit::Failure, "later"));
        assert_eq!(s.reason(), Some(refused));
        assert_eq!(s.reason().map(|r| r.exit()), Some(Exit::ImageKitRefused));
    }

    #[tokio::test]
    async fn dropping_the_trigger_stops_the_holders() {
        let (t, s) = channel();
        drop(t);
        s.triggered().await;
        assert_eq!(s.reason(), Some(StopReason::Abandoned));
        // A reason given before the drop stands.
        let (t, s) = channel();
        t.fire();
        drop(t);
        assert_eq!(s.reason(), Some(StopReason::Signal));
    }

    #[tokio::test]
    async fn signals_are_listened_for_only_while_the_task_is_held() {
        let (t, s) = channel();
        let signals = on_signals(t);
        assert!(!s.is_triggered());
        drop(signals);
        // The listener's end dropped its trigger.
        s.triggered().await;
        assert_eq!(s.reason(), Some(StopReason::Abandoned));
    }
}
