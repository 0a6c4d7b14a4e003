//! What the other nodes of a cluster change, as they commit it.
//!
//! The triggers of schema version 4 send `NOTIFY vow_changes` for every
//! component, worker, promise and reaction a cluster node's writer
//! changes, naming the writer (its `vow.node`). PostgreSQL delivers a
//! notification when, and only if, its transaction commits, in commit
//! order. A node listens on a connection of its own and hands on what the
//! *other* nodes changed ([`Change`]); it re-reads the records itself.
//!
//! Notifications sent while the listening connection was down are lost:
//! after it reconnects, the listener sends [`Change::Resync`], and the
//! node reads everything again.

use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;
use vow_store::{Change, Error, PromiseKey, Result, WorkerKey};

use crate::error::{at_open, message};

/// The channel the triggers notify.
const CHANNEL: &str = "vow_changes";

/// The longest wait between two attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Starts listening: once this returns, every change committed from now
/// on is on the stream (except the writer `own`'s).
pub(crate) async fn start(
    mut config: tokio_postgres::Config,
    location: String,
    own: String,
) -> Result<mpsc::UnboundedReceiver<Change>> {
    // A connection cut without a reset is noticed within seconds, not
    // hours, so that the node reads everything again soon after.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3);
    let (tx, rx) = mpsc::unbounded();
    let (ready, started) = tokio::sync::oneshot::channel();
    let watched = location.clone();
    tokio::spawn(async move {
        let mut ready = Some(ready);
        let mut wait = Duration::from_millis(50);
        loop {
            let mut listening = |tx: &mpsc::UnboundedSender<Change>| match ready.take() {
                Some(ready) => drop(ready.send(Ok(()))),
                None => {
                    tracing::info!(store = %watched, "listening for other nodes' changes again; reading everything again");
                    let _ = tx.unbounded_send(Change::Resync);
                }
            };
            let ended = listen(&config, &own, &tx, &mut listening).await;
            if let Err(e) = ended {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e));
                    return;
                }
                tracing::warn!(store = %watched, error = %message(&e), retry_in = ?wait, "listening for other nodes' changes failed");
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    });
    match started.await {
        Ok(Ok(())) => Ok(rx),
        Ok(Err(e)) => Err(at_open(&location, &e)),
        Err(_) => Err(Error::Open {
            location,
            reason: "the listening connection ended before it listened".to_owned(),
        }),
    }
}

/// Listens on one connection until it ends (or nobody reads the stream);
/// `listening` is called once `LISTEN` took effect.
async fn listen(
    config: &tokio_postgres::Config,
    own: &str,
    tx: &mpsc::UnboundedSender<Change>,
    listening: &mut (dyn FnMut(&mpsc::UnboundedSender<Change>) + Send),
) -> std::result::Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let command = format!("LISTEN {CHANNEL}");
    let listen = client.batch_execute(&command);
    tokio::pin!(listen);
    let mut waiting = true;
    let mut tx = tx.clone();
    loop {
        tokio::select! {
            answer = &mut listen, if waiting => {
                answer?;
                waiting = false;
                listening(&tx);
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    if let Some(change) = parse(note.payload(), own)
                        && tx.send(change).await.is_err()
                    {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}

/// A notification's change, unless the writer `own` made it (or it
/// cannot be read: then it is logged and dropped).
fn parse(payload: &str, own: &str) -> Option<Change> {
    let mut parts = payload.splitn(5, '\t');
    let (origin, kind, component, index, name) = (
        parts.next()?,
        parts.next()?,
        parts.next(),
        parts.next(),
        parts.next(),
    );
    if origin == own {
        return None;
    }
    let read = || -> Option<Change> {
        let component = Uuid::parse_str(component?).ok()?;
        let index: u64 = index?.parse().ok()?;
        let worker = || WorkerKey {
            component,
            name: name.unwrap_or_default().to_owned(),
        };
        Some(match kind {
            "c" => Change::Component(component),
            "w" => Change::Worker(worker()),
            "p" => Change::Promise(PromiseKey {
                worker: worker(),
                index,
            }),
            "r" => Change::Reaction(PromiseKey {
                worker: worker(),
                index,
            }),
            _ => return None,
        })
    };
    let change = read();
    if change.is_none() {
        tracing::warn!(
            payload,
            "a change notification cannot be read; it is dropped"
        );
    }
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_read_as_changes() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let component = Uuid::parse_str(id).expect("a valid UUID");
        let key = |name: &str| WorkerKey {
            component,
            name: name.to_owned(),
        };
        assert_eq!(
            parse(&format!("b 7\tp\t{id}\t3\tname\twith\ttabs"), "a 5"),
            Some(Change::Promise(PromiseKey {
                worker: key("name\twith\ttabs"),
                index: 3
            }))
        );
        assert_eq!(
            parse(&format!("b 7\tw\t{id}\t0\tw1"), "a 5"),
            Some(Change::Worker(key("w1")))
        );
        assert_eq!(
            parse(&format!("b 7\tc\t{id}\t0\t"), "a 5"),
            Some(Change::Component(component))
        );
        // Its own writer's changes are not news to a node.
        assert_eq!(parse(&format!("a 5\tp\t{id}\t3\tw1"), "a 5"), None);
        assert_eq!(parse("b 7\tp\tnot-a-uuid\t3\tw1", "a 5"), None);
    }
}
