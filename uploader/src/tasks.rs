//! Tasks owned by what starts them. A [`Task`] or a [`TaskGroup`] aborts its tasks when
//! it is dropped: when its owner returns, fails with `?`, or panics. So no background
//! work (a heartbeat, a refresher, a listener, a server) outlives the function that
//! started it, and a test that drops a worker drops everything the worker started.

use std::future::Future;
use tokio::task::{JoinError, JoinHandle, JoinSet};

/// One spawned task, aborted when this handle is dropped.
#[derive(Debug)]
#[must_use = "dropping a Task aborts it"]
pub struct Task<T>(JoinHandle<T>);

impl<T: Send + 'static> Task<T> {
    /// Spawns `future` on the current runtime.
    pub fn spawn<F>(future: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        Task(tokio::spawn(future))
    }

    /// Waits for the task's result (an error if it panicked or was aborted).
    pub async fn join(mut self) -> Result<T, JoinError> {
        (&mut self.0).await
    }
}

impl<T> Task<T> {
    /// Has the task ended?
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Background tasks with one owner, all aborted when the group is dropped.
#[derive(Debug, Default)]
#[must_use = "dropping a TaskGroup aborts its tasks"]
pub struct TaskGroup(JoinSet<()>);

impl TaskGroup {
    /// No tasks yet.
    pub fn new() -> Self {
        TaskGroup::default()
    }

    /// Spawns `future` into the group.
    pub fn spawn<F>(&mut self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.0.spawn(future);
    }

    /// Tasks spawned and not yet collected (finished ones count until then).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No task?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// A task that runs until aborted; `alive` closes when its future is dropped.
    fn forever() -> (
        impl Future<Output = ()> + Send + 'static,
        oneshot::Receiver<()>,
    ) {
        let (tx, rx) = oneshot::channel::<()>();
        (
            async move {
                let _tx = tx;
                std::future::pending::<()>().await
            },
            rx,
        )
    }

    #[tokio::test]
    async fn a_dropped_task_ends() {
        let (f, alive) = forever();
        let t = Task::spawn(f);
        assert!(!t.is_finished());
        drop(t);
        assert!(alive.await.is_err(), "the task's future was dropped");
    }

    #[tokio::test]
    async fn a_joined_task_gives_its_result() {
        let t = Task::spawn(async { 42 });
        assert_eq!(t.join().await.ok(), Some(42));
        let p = Task::spawn(async { panic!("boom") });
        assert!(p.join().await.is_err_and(|e| e.is_panic()));
    }

    #[tokio::test]
    async fn a_dropped_group_ends_every_task() {
        let mut g = TaskGroup::new();
        let (a, alive_a) = forever();
        let (b, alive_b) = forever();
        g.spawn(a);
        g.spawn(b);
        assert_eq!(g.len(), 2);
        drop(g);
        assert!(alive_a.await.is_err());
        assert!(alive_b.await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_outlives_an_owner_that_panics() {
        let (in_group, group_alive) = forever();
        let (alone, task_alive) = forever();
        let owner = tokio::spawn(async move {
            let mut g = TaskGroup::new();
            g.spawn(in_group);
            let _t = Task::spawn(alone);
            tokio::time::sleep(Duration::from_secs(1)).await;
            panic!("the owner fails");
        });
        assert!(owner.await.is_err_and(|e| e.is_panic()));
        assert!(group_alive.await.is_err(), "the group's task ended");
        assert!(task_alive.await.is_err(), "the lone task ended");
    }
}
