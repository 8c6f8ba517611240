//! Supervision of the bridge's long-lived tasks: each component runs in a `JoinSet` under its
//! name; the first one that ends on its own, fails or panics is reported (and stops the bridge);
//! at shutdown they get until a deadline, then what is left is aborted — nothing outlives `run`.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

/// How a component ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Its task returned.
    Returned,
    /// It returned an error (a watcher saw the component die).
    Failed(String),
    Panicked(String),
    /// Aborted (only at shutdown).
    Aborted,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Returned => f.write_str("ended on its own"),
            Self::Failed(e) => write!(f, "failed: {e}"),
            Self::Panicked(msg) => write!(f, "panicked: {msg}"),
            Self::Aborted => f.write_str("was aborted"),
        }
    }
}

/// The test hook behind the supervision tests: `C300X_TEST_PANIC=<component>` makes that
/// component panic as it starts. Unset in normal use.
pub fn test_panic(component: &str) {
    if std::env::var("C300X_TEST_PANIC").is_ok_and(|c| c == component) {
        panic!("C300X_TEST_PANIC asked {component} to panic");
    }
}

/// A group of named component tasks.
#[derive(Default)]
pub struct Components {
    set: JoinSet<Result<(), String>>,
    names: HashMap<Id, String>,
}

impl Components {
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let name = name.into();
        let hook = name.clone();
        let handle = self.set.spawn(async move {
            test_panic(&hook);
            task.await
        });
        self.names.insert(handle.id(), name);
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The next component to end, and how; `None` when there are none left.
    pub async fn next_exit(&mut self) -> Option<(String, Exit)> {
        let done = self.set.join_next_with_id().await?;
        let (id, exit) = match done {
            Ok((id, Ok(()))) => (id, Exit::Returned),
            Ok((id, Err(e))) => (id, Exit::Failed(e)),
            Err(e) if e.is_panic() => {
                let id = e.id();
                (id, Exit::Panicked(panic_message(e.into_panic())))
            }
            Err(e) => (e.id(), Exit::Aborted),
        };
        let name = self
            .names
            .remove(&id)
            .unwrap_or_else(|| format!("task {id}"));
        Some((name, exit))
    }

    /// Waits for every component until `deadline` (logging any that panicked), then aborts
    /// the rest; returns the names of those that had to be aborted.
    pub async fn stop_by(&mut self, deadline: Instant) -> Vec<String> {
        loop {
            match tokio::time::timeout_at(deadline, self.next_exit()).await {
                Ok(None) => return Vec::new(),
                Ok(Some((name, exit @ (Exit::Panicked(_) | Exit::Failed(_))))) => {
                    tracing::warn!("component `{name}` {exit} while stopping");
                }
                Ok(Some(_)) => {}
                Err(_) => break,
            }
        }
        let mut left: Vec<String> = self.names.values().cloned().collect();
        left.sort();
        self.set.abort_all();
        while self.set.join_next().await.is_some() {}
        self.names.clear();
        left
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_first_exit_names_the_component_and_says_how() {
        let mut c = Components::default();
        c.spawn("calm", std::future::pending());
        c.spawn("boom", async { panic!("kaputt") });
        c.spawn("watcher", async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err("the SIP task panicked".to_owned())
        });
        assert_eq!(
            c.next_exit().await,
            Some(("boom".to_owned(), Exit::Panicked("kaputt".into())))
        );
        let (name, exit) = c.next_exit().await.expect("watcher");
        assert_eq!(name, "watcher");
        assert_eq!(exit.to_string(), "failed: the SIP task panicked");
        let left = c.stop_by(Instant::now() + Duration::from_millis(50)).await;
        assert_eq!(left, ["calm"], "aborted at the deadline");
        assert!(c.is_empty());
    }

    #[tokio::test]
    async fn stopping_waits_for_components_that_end_in_time() {
        let mut c = Components::default();
        c.spawn("quick", async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        });
        let left = c.stop_by(Instant::now() + Duration::from_secs(5)).await;
        assert!(left.is_empty());
    }
}
