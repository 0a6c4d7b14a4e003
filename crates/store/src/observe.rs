//! Telling someone of each commit a backend makes, for metrics.
//!
//! A backend that groups batches into transactions (group commit) is the
//! only one that knows how many batches a commit held and how long it took.
//! The runtime hands it a [`CommitObserver`] through
//! [`Storage::observe_commits`](crate::Storage::observe_commits); the
//! backend's writer keeps it in a [`CommitHook`] and calls it after each
//! commit.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Told of each commit a backend makes.
///
/// Called on the backend's writer (a thread or a task) right after a
/// commit, before the batches' waiters are answered: it must be quick and
/// must not block.
pub trait CommitObserver: Send + Sync + 'static {
    /// A transaction holding `batches` batches (calls of
    /// [`Storage::write`](crate::Storage::write)) committed; `elapsed` is
    /// the time from its start until it was durable.
    fn committed(&self, batches: usize, elapsed: Duration);
}

/// Where a backend's writer keeps its [`CommitObserver`], if it was given
/// one: set from any thread, read once per commit.
#[derive(Default)]
pub struct CommitHook {
    observer: RwLock<Option<Arc<dyn CommitObserver>>>,
}

impl CommitHook {
    /// Tells `observer` of every commit from now on, in place of any
    /// observer set before.
    pub fn set(&self, observer: Arc<dyn CommitObserver>) {
        *self.observer.write().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }

    /// Tells the observer, if there is one, of a commit.
    pub fn committed(&self, batches: usize, elapsed: Duration) {
        let observer = self.observer.read().unwrap_or_else(|p| p.into_inner());
        if let Some(observer) = observer.as_ref() {
            observer.committed(batches, elapsed);
        }
    }
}

impl fmt::Debug for CommitHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self
            .observer
            .read()
            .map(|o| o.is_some())
            .unwrap_or_default();
        f.debug_struct("CommitHook")
            .field("observed", &set)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<usize>>);

    impl CommitObserver for Seen {
        fn committed(&self, batches: usize, _elapsed: Duration) {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(batches);
        }
    }

    #[test]
    fn only_the_latest_observer_hears_of_commits() {
        let hook = CommitHook::default();
        hook.committed(1, Duration::ZERO);
        let first = Arc::new(Seen::default());
        let second = Arc::new(Seen::default());
        hook.set(first.clone());
        hook.committed(2, Duration::ZERO);
        hook.set(second.clone());
        hook.committed(3, Duration::ZERO);
        assert_eq!(*first.0.lock().unwrap_or_else(|p| p.into_inner()), [2]);
        assert_eq!(*second.0.lock().unwrap_or_else(|p| p.into_inner()), [3]);
    }
}
