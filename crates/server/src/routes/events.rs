//! `GET /v1/events`: what changes, as server-sent events, for the web page
//! to show new waits, settlements and worker changes without reloading.
//!
//! The runtime's change feed ([`Executor::changes`]) says *that* something
//! changed; one watcher task then looks at the in-memory state (see
//! [`super::watch`]), compares it with its last look and broadcasts what
//! changed to every open stream. It waits [`GATHER`] after a change so that
//! a burst (a promise created, awaited, its worker parked) is one look, and
//! after a look that took long it waits [`BUDGET`] times as long before the
//! next, so it never takes more than about a twentieth of a core. It runs
//! only while a stream is open, and however many pages are open it is one
//! look per change, not one per page. Changes the feed does not announce
//! (a worker's memory growing) are picked up by a look every [`FALLBACK`].
//!
//! Events (`event:` name, `data:` one line of JSON):
//! - `hello` `{"intervalMs"}`: first on every stream (the least time
//!   between two looks). A client reads its lists after it, and applies
//!   the events that follow.
//! - `promise`: a promise as `GET /v1/promises` shows it, when it appears,
//!   changes while pending (`awaited`), or settles.
//! - `promise-deleted` `{"promiseId"}`: a pending promise that is gone.
//! - `worker`: a worker's metadata (as `GET .../workers/{name}`), when it
//!   appears or changes; `worker-deleted` `{"workerId"}`.
//! - `component`: a component (as `GET /v1/components/{cid}`), when added.
//! - `resync` `{"missed"}`: this stream fell behind and lost events; read
//!   the lists again.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use futures::StreamExt as _;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use vow_runtime::{ChangeFeed, Executor};

use crate::error::ApiError;
use crate::openapi::responses::E401;
use crate::routes::AppState;
use crate::routes::watch::{Change, Snapshot, diff, settled};
use crate::serve::Draining;

/// How long the watcher gathers changes before it looks: the least time
/// between two looks.
pub(crate) const GATHER: Duration = Duration::from_millis(10);

/// How many times the time a look took the watcher waits before the next.
const BUDGET: u32 = 20;

/// The longest wait between two looks after a change.
const SLOWEST: Duration = Duration::from_secs(5);

/// How often the watcher looks when the feed announced nothing.
const FALLBACK: Duration = Duration::from_secs(2);

/// Events a stream may fall behind by before it is told to resync.
const CAPACITY: usize = 4096;

/// How often an idle stream sends a comment, so proxies keep it open and a
/// closed client is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

type Sender = broadcast::Sender<Arc<Change>>;
type Receiver = broadcast::Receiver<Arc<Change>>;

/// The watcher's channel, while a watcher runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Events {
    hub: Arc<Mutex<Option<Sender>>>,
}

impl Events {
    /// A receiver of the changes from now on; starts the watcher if none
    /// runs. Its first look is taken before this returns, so nothing that
    /// happens after it is missed.
    async fn subscribe(&self, executor: &Executor) -> Result<Receiver, ApiError> {
        if let Some(sender) = self.lock().as_ref() {
            return Ok(sender.subscribe());
        }
        // The feed first: a change made while the first look is taken is
        // looked at again.
        let feed = executor.changes();
        let first = Snapshot::take(executor).await?;
        let mut hub = self.lock();
        if let Some(sender) = hub.as_ref() {
            // Another stream started a watcher meanwhile.
            return Ok(sender.subscribe());
        }
        let (sender, receiver) = broadcast::channel(CAPACITY);
        *hub = Some(sender.clone());
        drop(hub);
        tokio::spawn(watch(self.clone(), executor.clone(), feed, sender, first));
        Ok(receiver)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Sender>> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether no stream listens any more; if so, the watcher is removed
    /// (under the lock that subscribers take, so none joins a watcher
    /// that is about to end).
    fn unheard(&self, sender: &Sender) -> bool {
        let mut hub = self.lock();
        if sender.receiver_count() > 0 {
            return false;
        }
        *hub = None;
        true
    }
}

/// The watcher: waits for a change, looks, compares, broadcasts, until no
/// stream listens.
async fn watch(
    events: Events,
    executor: Executor,
    mut feed: ChangeFeed,
    sender: Sender,
    mut last: Snapshot,
) {
    let mut pause = GATHER;
    loop {
        tokio::select! {
            () = feed.changed() => {}
            () = tokio::time::sleep(FALLBACK) => {}
        }
        tokio::time::sleep(pause).await;
        if events.unheard(&sender) {
            return;
        }
        let started = Instant::now();
        let now = match Snapshot::take(&executor).await {
            Ok(now) => now,
            Err(error) => {
                tracing::debug!(%error, "the event watcher cannot read the runtime's state");
                pause = SLOWEST;
                continue;
            }
        };
        let (mut changes, gone) = diff(&last, &now);
        changes.extend(settled(&executor, gone).await);
        last = now;
        for change in changes {
            // No receiver left: the next round ends the watcher.
            let _ = sender.send(Arc::new(change));
        }
        pause = started
            .elapsed()
            .saturating_mul(BUDGET)
            .clamp(GATHER, SLOWEST);
    }
}

/// `GET /v1/events`: the change stream (`text/event-stream`). It ends when
/// the server shuts down.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "streamEvents",
    summary = "Changes as server-sent events: promises created, changed and settled, workers changed, components added (for the web page)",
    description = "Events: `hello` first, then `promise` (a promise as listings show it), `promise-deleted` {promiseId}, `worker` (WorkerMetadata), `worker-deleted` {workerId}, `component` (ComponentInfo), and `resync` when this stream fell behind (read the lists again). The server looks at its state when the runtime announces a change (10 ms later, to gather a burst) while a stream is open.",
    responses(
        (status = 200, description = "an endless stream of server-sent events", content_type = "text/event-stream", body = String),
        (status = 401, response = E401),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    draining: Option<Extension<Draining>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let changes = state.events.subscribe(&state.executor).await?;
    let hello = Event::default()
        .event("hello")
        .data(json!({ "intervalMs": GATHER.as_millis() as u64 }).to_string());
    let draining = draining.map(|Extension(d)| d);
    let rest = futures::stream::unfold(
        (changes, draining),
        |(mut changes, mut draining)| async move {
            let event = tokio::select! {
                received = changes.recv() => match received {
                    Ok(change) => Event::default().event(change.event).data(&change.data),
                    Err(RecvError::Lagged(missed)) => Event::default()
                        .event("resync")
                        .data(json!({ "missed": missed }).to_string()),
                    Err(RecvError::Closed) => return None,
                },
                () = shutting_down(&mut draining) => return None,
            };
            Some((Ok(event), (changes, draining)))
        },
    );
    let events = futures::stream::once(async { Ok(hello) }).chain(rest);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Resolves when the server starts shutting down; never without
/// [`Draining`] (a router used without `serve`).
async fn shutting_down(draining: &mut Option<Draining>) {
    match draining {
        Some(draining) => draining.started().await,
        None => std::future::pending().await,
    }
}
