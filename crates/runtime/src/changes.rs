//! A signal that something observable changed: a promise was created,
//! awaited, settled or deleted, a worker appeared, changed status, queued
//! or took an invocation, failed or was deleted, a component was added.
//!
//! It says *that* something changed, not what: a listener (the server's
//! event stream) looks at the state again when told. Bumping it is one
//! atomic add, plus a wake-up of the listeners when there are any, so the
//! hot paths pay next to nothing while nobody listens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Signal {
    /// Bumped at every change.
    version: AtomicU64,
    /// Live [`ChangeFeed`]s: no wake-up is sent while there are none.
    listeners: AtomicUsize,
    notify: Notify,
}

/// The runtime's side: bumps the signal.
#[derive(Clone, Debug, Default)]
pub(crate) struct Changes(Arc<Signal>);

impl Changes {
    /// Something observable changed.
    pub(crate) fn bump(&self) {
        self.0.version.fetch_add(1, Ordering::AcqRel);
        if self.0.listeners.load(Ordering::Acquire) > 0 {
            self.0.notify.notify_waiters();
        }
    }

    /// A new listener, which hears of the changes from now on.
    pub(crate) fn feed(&self) -> ChangeFeed {
        self.0.listeners.fetch_add(1, Ordering::AcqRel);
        ChangeFeed {
            seen: self.0.version.load(Ordering::Acquire),
            signal: Arc::clone(&self.0),
        }
    }
}

/// Tells when the executor's observable state changed, from
/// [`Executor::changes`](crate::Executor::changes): a listener waits on
/// [`changed`](Self::changed), then reads what it shows (workers,
/// promises, components) again. Changes that come while it reads are not
/// lost: the next `changed` returns at once.
#[derive(Debug)]
pub struct ChangeFeed {
    signal: Arc<Signal>,
    /// The version this listener has seen.
    seen: u64,
}

impl ChangeFeed {
    /// Waits until something changed since the last call (or since this
    /// feed was made).
    pub async fn changed(&mut self) {
        loop {
            let notified = self.signal.notify.notified();
            tokio::pin!(notified);
            // Registered before the version is read: a bump between the
            // two wakes it.
            notified.as_mut().enable();
            let now = self.signal.version.load(Ordering::Acquire);
            if now != self.seen {
                self.seen = now;
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.signal.listeners.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_feed_hears_of_changes_made_before_and_while_it_waits() {
        let changes = Changes::default();
        let mut feed = changes.feed();
        let waiting = tokio::time::timeout(Duration::from_millis(50), feed.changed()).await;
        assert!(waiting.is_err(), "nothing changed yet");
        changes.bump();
        changes.bump();
        // Both are seen at once: one call returns.
        tokio::time::timeout(Duration::from_secs(1), feed.changed())
            .await
            .expect("a change made before the call");
        let waiting = tokio::time::timeout(Duration::from_millis(50), feed.changed()).await;
        assert!(waiting.is_err(), "nothing changed since");
        let bumper = changes.clone();
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            bumper.bump();
        });
        tokio::time::timeout(Duration::from_secs(1), feed.changed())
            .await
            .expect("a change made while waiting");
        later.await.expect("the bumper");
        assert_eq!(changes.0.listeners.load(Ordering::Acquire), 1);
        drop(feed);
        assert_eq!(changes.0.listeners.load(Ordering::Acquire), 0);
    }
}
