//! One Vow node per database: the writer's connection holds a session
//! advisory lock for as long as it lives.
//!
//! Two nodes writing one database would both recover and run the same
//! workers and interleave their logs. So the writer takes
//! `pg_try_advisory_lock` before its first write, on the connection every
//! write goes through: while that connection lives the lock is held, and
//! when the process dies (or its connection does) PostgreSQL releases it
//! at once, with no lease to wait out. A node that finds the lock taken at
//! start waits for it a while (a restart may overlap the old process's
//! exit), then refuses to open the store and says who holds it.
//!
//! The lock also fences: writes only go through the connection that holds
//! it. When that connection is lost, the writer takes the lock again
//! before it writes on a new one; if another node took it meanwhile, this
//! node has been replaced (its workers may already run there) and it never
//! writes again.
//!
//! Several nodes share one database only as a cluster (`crate::cluster`),
//! whose nodes hold this lock shared; this is what keeps a second lone
//! `vow serve` on the same database from doing harm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::error::message;

/// The advisory lock of the node that writes ("VowN" in ASCII; the
/// migrations take "Vow!").
pub(crate) const NODE_LOCK: i64 = 0x566F_774E;

/// How often a node waiting for the lock tries again.
const RETRY: Duration = Duration::from_millis(100);

/// Why the lock was not taken.
pub(crate) enum Refused {
    /// Another session holds it: who, as far as PostgreSQL says.
    Held(String),
    /// The database answered with an error.
    Failed(tokio_postgres::Error),
}

/// Takes the node lock on `client`'s session, trying until `patience`
/// has passed.
///
/// A session that holds it under `own` (this writer's name, see
/// [`application_name`]) is this writer's former connection, which the server has not seen die yet (a
/// network cut is noticed only by TCP keepalives): it is ended with
/// `pg_terminate_backend`, and the lock taken.
pub(crate) async fn take(client: &Client, own: &str, patience: Duration) -> Result<(), Refused> {
    let deadline = Instant::now() + patience;
    loop {
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&NODE_LOCK])
            .await
            .map_err(Refused::Failed)?;
        if row.get::<_, bool>(0) {
            return Ok(());
        }
        let holder = holder(client).await;
        if let Some(pid) = holder.pid.filter(|_| holder.name.as_deref() == Some(own)) {
            tracing::info!(
                pid,
                "ending this node's former writer session, which still holds the node lock"
            );
            client
                .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .map_err(Refused::Failed)?;
        } else if Instant::now() >= deadline {
            return Err(Refused::Held(holder.to_string()));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Takes the node lock in shared mode on `client`'s session: every node of
/// a cluster does, so that a lone node (which takes it exclusively) can
/// never write alongside them, nor they alongside a lone node. Cluster
/// sessions hold it together; each node's run, checked in every
/// transaction, keeps them from writing the same workers.
pub(crate) async fn share(client: &Client) -> Result<(), Refused> {
    let row = client
        .query_one("SELECT pg_try_advisory_lock_shared($1)", &[&NODE_LOCK])
        .await
        .map_err(Refused::Failed)?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(Refused::Held(holder(client).await.to_string()))
    }
}

/// [`share`] for a node that joins or opens its store: a lone node that
/// holds the lock is refused with who it is.
pub(crate) async fn share_or_refuse(
    client: &Client,
    location: &str,
) -> Result<(), vow_store::Error> {
    match share(client).await {
        Ok(()) => Ok(()),
        Err(Refused::Failed(e)) => Err(crate::error::at_open(location, &e)),
        Err(Refused::Held(holder)) => Err(vow_store::Error::Open {
            location: location.to_owned(),
            reason: format!(
                "a Vow node that is not in a cluster writes to this database ({holder}): \
                 stop it, then start every node with --node-id"
            ),
        }),
    }
}

/// The session that holds the node lock, as far as this role may see it.
#[derive(Default)]
pub(crate) struct Holder {
    pid: Option<i32>,
    name: Option<String>,
    address: Option<String>,
    since: Option<String>,
    /// Why nothing could be read, when so.
    unseen: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(why) = &self.unseen {
            return write!(f, "a session this role cannot see ({why})");
        }
        match self.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => write!(f, "\"{name}\"")?,
            None => f.write_str("a session")?,
        }
        if let Some(address) = &self.address {
            write!(f, " from {address}")?;
        }
        if let Some(pid) = self.pid {
            write!(f, " (server process {pid}")?;
            if let Some(since) = &self.since {
                write!(f, ", connected since {since}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

pub(crate) async fn holder(client: &Client) -> Holder {
    let row = client
        .query_opt(
            "SELECT l.pid, a.application_name, host(a.client_addr),
                    to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid
               AND l.objsubid = 1
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             LIMIT 1",
            &[&NODE_LOCK],
        )
        .await;
    match row {
        Ok(Some(row)) => Holder {
            pid: row.get(0),
            name: row.get(1),
            address: row.get(2),
            since: row.get(3),
            unseen: None,
        },
        Ok(None) => Holder {
            name: Some("a session that has just let it go".to_owned()),
            ..Holder::default()
        },
        Err(e) => Holder {
            unseen: Some(message(&e)),
            ..Holder::default()
        },
    }
}

/// The `application_name` of a new writer's connections, shown in
/// `pg_stat_activity`: it names this node to one that finds the lock
/// taken (host name and process id), and tells a writer its own former
/// session (a number per writer of this process).
pub(crate) fn application_name() -> String {
    static WRITERS: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let writer = WRITERS.fetch_add(1, Ordering::Relaxed) + 1;
    let mut name = format!("vow writer {writer}, pid {}", std::process::id());
    if !host.is_empty() {
        name.push_str(&format!(" on {host}"));
    }
    // PostgreSQL keeps 63 bytes.
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}
