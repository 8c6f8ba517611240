//! The HTTP server's own background tasks — HLS sessions, MJPEG feeds and their writers,
//! push-to-talk sockets, the ring log — tracked in one place and ended with the server: when it
//! stops, each is cancelled and the server waits (bounded) until all are gone.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cheap to clone; every clone spawns into the same set.
#[derive(Clone, Debug)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Tasks {
    /// Tasks that end when `stop` is cancelled, or at [`Tasks::stop`].
    pub fn new(stop: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop,
        }
    }

    /// Runs `task` until it ends or the server stops.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Cancels every task, takes no new ones and waits at most `within` for them to end;
    /// `false` (and a warning naming how many) when some did not.
    pub async fn stop(&self, within: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        let ended = tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok();
        if !ended {
            tracing::warn!(
                left = self.tracker.len(),
                "HTTP tasks still running at the stop"
            );
        }
        ended
    }

    /// How many run now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tasks_end_with_the_server_and_finished_ones_are_not_kept() {
        let tasks = Tasks::new(CancellationToken::new());
        tasks.spawn(async {});
        tasks.spawn(std::future::pending());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            let _ = rx.await;
        });
        tokio::task::yield_now().await;
        assert_eq!(tasks.len(), 2, "the finished one is gone");
        drop(tx);
        tokio::task::yield_now().await;
        assert_eq!(tasks.len(), 1);
        assert!(tasks.stop(Duration::from_secs(1)).await);
        assert_eq!(tasks.len(), 0);
        // After the stop a new task does not outlive it.
        tasks.spawn(std::future::pending());
        tokio::task::yield_now().await;
        assert_eq!(tasks.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_servers_shutdown_token_ends_them_too() {
        let shutdown = CancellationToken::new();
        let tasks = Tasks::new(shutdown.child_token());
        tasks.spawn(std::future::pending());
        shutdown.cancel();
        tokio::task::yield_now().await;
        assert_eq!(tasks.len(), 0);
    }
}
