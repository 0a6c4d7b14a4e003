//! The writer: one connection that applies batches in arrival order, with
//! group commit and pipelining.
//!
//! Whatever arrived while the previous commit ran forms the next group.
//! The group is gathered into few statements (see [`crate::coalesce`]:
//! the appends, worker states, invocation states and completions of the
//! whole group each become one multi-row statement) and goes to the server
//! in one pipelined flight: `BEGIN` and every statement (each prepared once
//! per connection, with a generic plan); then, once all answers are in and
//! every check holds, `COMMIT`. Two round trips for the whole group,
//! whatever its size.
//!
//! When a batch of the group fails (a conflict, a constraint), the group is
//! rolled back and applied again the careful way: each batch as planned, in
//! a savepoint of its own, so that the failing batch is rolled back alone
//! and answered with its error while the others commit.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::{MaybeDone, maybe_done};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};
use vow_store::{Error, Outcome, Result, Write};

use crate::apply::{self, Answer, Op, Plan, Statements};
use crate::claim;
use crate::coalesce::{self, GroupOp};
use crate::error::{message, runtime};

/// A batch waiting for the writer.
pub(crate) struct Job {
    pub(crate) batch: Vec<Write>,
    pub(crate) reply: oneshot::Sender<Result<Vec<Outcome>>>,
    /// Not a batch: once every job before it is answered, the writer
    /// refuses everything after it ([`crate::PostgresStorage::close`]).
    pub(crate) close: bool,
}

/// What the writer has done, for [`crate::PostgresStorage::stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
    /// Told of each commit (see [`vow_store::Storage::observe_commits`]).
    pub(crate) hook: vow_store::CommitHook,
    /// Who took the database over, once another node did (see
    /// [`crate::PostgresStorage::taken_over`]).
    pub(crate) taken_over: tokio::sync::watch::Sender<Option<String>>,
}

/// The writer's connection and its prepared statements.
pub(crate) struct Writer {
    client: Client,
    statements: Statements,
    location: String,
    counters: Arc<Counters>,
    /// In a cluster: the run of the node every transaction checks, and
    /// the statement that checks it.
    fence: Option<(Member, Statement)>,
}

/// A run of a cluster node, as its writer checks it (see [`FENCE`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// The node's id.
    pub(crate) node_id: String,
    /// The epoch of this run.
    pub(crate) epoch: i64,
}

impl Member {
    /// What the writer's session says in `vow.node`, which the triggers
    /// of schema version 4 read: "id epoch".
    pub(crate) fn tag(&self) -> String {
        format!("{} {}", self.node_id, self.epoch)
    }
}

/// Holds the node's row until the transaction ends, if this run still
/// has it and it has not expired: one row, or none when this run of the
/// node is over.
///
/// `FOR KEY SHARE`: the node's own renewals (which update no key) do not
/// wait for its writes, while a takeover of its workers (`SELECT ... FOR
/// UPDATE` in `cluster`) waits for the transaction to end.
///
/// `clock_timestamp()`, not `now()` (the start of the transaction): a check
/// that waited behind a takeover's lock is evaluated again on the row when
/// the lock is granted, and must then find the run expired. So once one
/// takeover locked the row of a run that is over, that run can never
/// commit again, and later takeovers need not wait.
pub(crate) const FENCE: &str = "SELECT 1 FROM vow_nodes
     WHERE node_id = $1 AND epoch = $2 AND expires_at > clock_timestamp() FOR KEY SHARE";

/// The longest wait between two attempts to reconnect the writer.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Polls `futures` once each in order (which, for tokio-postgres, sends
/// their requests in that order), then waits for all of them.
pub(crate) async fn pipelined<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<MaybeDone<F>>>> = futures
        .into_iter()
        .map(|f| Box::pin(maybe_done(f)))
        .collect();
    for future in &mut futures {
        let _ = futures::poll!(future.as_mut());
    }
    for future in &mut futures {
        future.as_mut().await;
    }
    futures
        .iter_mut()
        .filter_map(|f| f.as_mut().take_output())
        .collect()
}

/// Opens a connection whose driver runs on a task of its own.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    location: &str,
) -> std::result::Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let location = location.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(store = %location, error = %message(&e), "the writer's connection ended");
        }
    });
    Ok(client)
}

impl Writer {
    /// Prepares the writer's statements on `client`.
    pub(crate) async fn new(
        client: Client,
        location: &str,
        counters: Arc<Counters>,
        fence: Option<Member>,
    ) -> std::result::Result<Self, tokio_postgres::Error> {
        // The writer's statements run thousands of times with the same
        // shape: plan each once, not at every execution. And TCP
        // keepalives from the server's side: when this node's machine dies
        // or is cut off, the server ends this session (and lets go of the
        // node lock, see `claim`) within about 25 s rather than the
        // system's default of two hours.
        client
            .batch_execute(
                "SET plan_cache_mode = force_generic_plan;
                 SET tcp_keepalives_idle = 10;
                 SET tcp_keepalives_interval = 5;
                 SET tcp_keepalives_count = 3",
            )
            .await?;
        let statements = Statements::prepare(&client).await?;
        let fence = match fence {
            Some(member) => {
                // Read by the triggers that record owners and notify the
                // other nodes (schema version 4).
                client
                    .execute("SELECT set_config('vow.node', $1, false)", &[&member.tag()])
                    .await?;
                let statement = client.prepare(FENCE).await?;
                Some((member, statement))
            }
            None => None,
        };
        Ok(Self {
            client,
            statements,
            location: location.to_owned(),
            counters,
            fence,
        })
    }

    /// Applies batches in arrival order; everything that arrived while the
    /// last commit ran shares the next transaction.
    ///
    /// When the connection is lost, the batches of the transaction in flight
    /// fail (nothing of them was acknowledged; a commit whose answer was
    /// lost may or may not have happened, which the runtime's writes
    /// tolerate: they are keyed and ordered). Then the writer reconnects,
    /// waiting longer after each failed attempt (up to [`MAX_BACKOFF`]);
    /// batches sent meanwhile wait for it.
    pub(crate) async fn run(
        mut self,
        config: tokio_postgres::Config,
        mut rx: mpsc::UnboundedReceiver<Job>,
    ) {
        // Who took the database over, once someone did: then nothing is
        // written again.
        let mut fenced: Option<String> = None;
        let mut closed = false;
        let member = self.fence.as_ref().map(|(member, _)| member.clone());
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while let Ok(job) = rx.try_recv() {
                jobs.push(job);
            }
            // Whatever came after a close is refused; the close itself is
            // answered once what came before it is.
            let mut after_close = Vec::new();
            if let Some(at) = jobs.iter().position(|job| job.close) {
                after_close = jobs.split_off(at);
            }
            if closed {
                after_close.splice(0..0, jobs.drain(..));
            }
            if !jobs.is_empty() {
                self = self
                    .apply(jobs, &config, member.as_ref(), &mut fenced)
                    .await;
            }
            for (n, job) in after_close.into_iter().enumerate() {
                let answer = if n == 0 && job.close && !closed {
                    Ok(Vec::new())
                } else {
                    Err(Error::Closed)
                };
                closed = true;
                let _ = job.reply.send(answer);
            }
        }
    }

    /// Applies one group of jobs (reconnecting first if the connection
    /// was lost), or refuses it when this node was fenced.
    async fn apply(
        mut self,
        jobs: Vec<Job>,
        config: &tokio_postgres::Config,
        member: Option<&Member>,
        fenced: &mut Option<String>,
    ) -> Self {
        if fenced.is_none() && self.client.is_closed() {
            let counters = Arc::clone(&self.counters);
            match Self::reconnect(config, &self.location, counters, member.cloned()).await {
                Ok(writer) => self = writer,
                Err(holder) => {
                    tracing::error!(
                        store = %self.location,
                        %holder,
                        "another node took the database over while this node's writer was disconnected: this node writes nothing more"
                    );
                    self.counters.taken_over.send_replace(Some(holder.clone()));
                    *fenced = Some(holder);
                }
            }
        }
        if let Some(holder) = fenced.as_ref() {
            self.counters
                .failed_batches
                .fetch_add(jobs.len() as u64, Ordering::Relaxed);
            for job in jobs {
                let _ = job.reply.send(Err(Error::Fenced {
                    location: self.location.clone(),
                    holder: holder.clone(),
                }));
            }
            return self;
        }
        let started = std::time::Instant::now();
        let answers = self.commit(&jobs).await;
        let ok = answers.iter().filter(|a| a.is_ok()).count() as u64;
        if ok > 0 {
            self.counters.hook.committed(ok as usize, started.elapsed());
            self.counters.commits.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.batches.fetch_add(ok, Ordering::Relaxed);
        self.counters
            .failed_batches
            .fetch_add(answers.len() as u64 - ok, Ordering::Relaxed);
        let lost = answers.iter().find_map(|answer| match answer {
            Err(Error::Fenced { holder, .. }) => Some(holder.clone()),
            _ => None,
        });
        if let Some(holder) = lost {
            tracing::error!(store = %self.location, %holder, "this run of the node is over: it writes nothing more");
            self.counters.taken_over.send_replace(Some(holder.clone()));
            *fenced = Some(holder);
        }
        for (job, answer) in jobs.into_iter().zip(answers) {
            let _ = job.reply.send(answer);
        }
        self
    }

    /// Connects again, retrying with backoff until it works, and takes the
    /// node lock again before anything is written on the new connection.
    /// `Err`: another session holds the lock (who): this node was replaced.
    async fn reconnect(
        config: &tokio_postgres::Config,
        location: &str,
        counters: Arc<Counters>,
        fence: Option<Member>,
    ) -> std::result::Result<Self, String> {
        let mut wait = Duration::from_millis(50);
        loop {
            let writer = match connect(config, location).await {
                // In a cluster, the node's row checked in every
                // transaction fences; the node lock, shared, keeps lone
                // nodes out.
                Ok(client) if fence.is_some() => match claim::share(&client).await {
                    Ok(()) => {
                        Self::new(client, location, Arc::clone(&counters), fence.clone()).await
                    }
                    Err(claim::Refused::Held(holder)) => {
                        return Err(format!("a Vow node that is not in a cluster: {holder}"));
                    }
                    Err(claim::Refused::Failed(e)) => Err(e),
                },
                Ok(client) => match claim::take(
                    &client,
                    config.get_application_name().unwrap_or_default(),
                    Duration::ZERO,
                )
                .await
                {
                    Ok(()) => Self::new(client, location, Arc::clone(&counters), None).await,
                    Err(claim::Refused::Held(holder)) => return Err(holder),
                    Err(claim::Refused::Failed(e)) => Err(e),
                },
                Err(e) => Err(e),
            };
            match writer {
                Ok(writer) => {
                    tracing::info!(store = %location, "the writer reconnected");
                    return Ok(writer);
                }
                Err(e) => {
                    tracing::warn!(store = %location, error = %message(&e), retry_in = ?wait, "cannot reconnect the writer");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Runs `statement` without parameters.
    async fn simple(&self, statement: &Statement) -> Result<()> {
        self.client
            .execute(statement, &[])
            .await
            .map(drop)
            .map_err(|e| runtime(&self.location, &e))
    }

    /// Sends `lead` (a statement without parameters) and then `ops`, in
    /// one flight; the lead's outcome and the answers of `ops`, in order.
    async fn send<'a>(
        &'a self,
        lead: &'a Statement,
        ops: Vec<&'a Op<'a>>,
    ) -> (Result<()>, Vec<Result<Answer>>) {
        self.send_fenced(lead, false, ops).await
    }

    /// [`Writer::send`], with the fence right after `lead` when `fenced`
    /// (and this writer is a cluster node's): its failure is the lead's.
    async fn send_fenced<'a>(
        &'a self,
        lead: &'a Statement,
        fenced: bool,
        ops: Vec<&'a Op<'a>>,
    ) -> (Result<()>, Vec<Result<Answer>>) {
        let mut lead = Box::pin(maybe_done(self.simple(lead)));
        // Polled first, so that its request leaves first.
        let _ = futures::poll!(lead.as_mut());
        let mut fence = Box::pin(maybe_done(self.check_fence(fenced)));
        let _ = futures::poll!(fence.as_mut());
        let mut futures = Vec::with_capacity(ops.len());
        for op in ops {
            futures.push(self.run_op(op));
        }
        let answers = pipelined(futures).await;
        lead.as_mut().await;
        fence.as_mut().await;
        let lead = lead.as_mut().take_output().unwrap_or(Ok(()));
        let fence = fence.as_mut().take_output().unwrap_or(Ok(()));
        (lead.and(fence), answers)
    }

    /// In a cluster (and when `wanted`), checks inside the open
    /// transaction that this run of the node is still current and
    /// unexpired, and holds its row until the transaction ends;
    /// [`Error::Fenced`] when it is not.
    async fn check_fence(&self, wanted: bool) -> Result<()> {
        let Some((member, statement)) = self.fence.as_ref().filter(|_| wanted) else {
            return Ok(());
        };
        let held = self
            .client
            .execute(statement, &[&member.node_id, &member.epoch])
            .await
            .map_err(|e| runtime(&self.location, &e))?;
        if held > 0 {
            return Ok(());
        }
        let epoch = member.epoch;
        let holder = match self
            .client
            .query_opt(
                "SELECT epoch FROM vow_nodes WHERE node_id = $1",
                &[&member.node_id],
            )
            .await
        {
            Ok(Some(row)) if row.get::<_, i64>(0) != epoch => format!(
                "a newer run of node {:?} (epoch {}; this one had epoch {epoch})",
                member.node_id,
                row.get::<_, i64>(0)
            ),
            Ok(_) => format!(
                "the other nodes: this run of the node (epoch {epoch}) expired before it renewed"
            ),
            Err(e) => format!(
                "unknown ({}): this run of the node (epoch {epoch}) cannot be checked",
                message(&e)
            ),
        };
        Err(Error::Fenced {
            location: self.location.clone(),
            holder,
        })
    }

    async fn run_op(&self, op: &Op<'_>) -> Result<Answer> {
        let params: Vec<&(dyn ToSql + Sync)> = op
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let answer = if op.check.wants_rows() {
            self.client
                .query(op.statement, &params)
                .await
                .map(Answer::Rows)
        } else {
            self.client
                .execute(op.statement, &params)
                .await
                .map(Answer::Count)
        };
        answer.map_err(|e| runtime(&self.location, &e))
    }

    /// One transaction for `jobs`; one answer per job.
    async fn commit(&self, jobs: &[Job]) -> Vec<Result<Vec<Outcome>>> {
        let plan_all = || -> Vec<Result<Plan<'_>>> {
            jobs.iter()
                .map(|job| apply::plan(&self.statements, &self.location, &job.batch))
                .collect()
        };
        let plans = plan_all();
        if plans.iter().all(|p| p.is_ok()) {
            let plans: Vec<Plan<'_>> = plans.into_iter().flatten().collect();
            let per_job: Vec<usize> = plans.iter().map(|p| p.per_write.len()).collect();
            let batches: Vec<&[Write]> = jobs.iter().map(|j| &j.batch[..]).collect();
            let together = match coalesce::gather(&self.statements, &batches, plans) {
                Ok(ops) => self.commit_together(&ops, &per_job).await,
                Err(coalesce::NotGathered) => Together::OneFailed,
            };
            match together {
                Together::Committed(answers) => return answers.into_iter().map(Ok).collect(),
                Together::Failed(e) => return jobs.iter().map(|_| Err(e.clone())).collect(),
                Together::OneFailed => {}
            }
            return self.commit_one_by_one(plan_all()).await;
        }
        self.commit_one_by_one(plans).await
    }

    /// The fast way: the whole group gathered into few statements, sent in
    /// one flight, no savepoints.
    async fn commit_together(&self, ops: &[GroupOp<'_>], per_job: &[usize]) -> Together {
        let (begun, answers) = self
            .send_fenced(
                &self.statements.begin,
                true,
                ops.iter().map(|g| &g.op).collect(),
            )
            .await;
        if let Err(e) = begun {
            // Nothing of it may stay: the statements ran, unchecked.
            let _ = self.simple(&self.statements.rollback).await;
            return Together::Failed(e);
        }
        let Some(outcomes) = coalesce::outcomes(ops, &answers, per_job, &self.location) else {
            return match self.simple(&self.statements.rollback).await {
                Ok(()) if !self.client.is_closed() => Together::OneFailed,
                Ok(()) => Together::Failed(Error::Backend(format!(
                    "{}: the connection closed",
                    self.location
                ))),
                Err(e) => Together::Failed(e),
            };
        };
        match self.simple(&self.statements.commit).await {
            Ok(()) => Together::Committed(outcomes),
            Err(e) => Together::Failed(e),
        }
    }

    /// The careful way: a savepoint per batch, so that a failing batch is
    /// rolled back alone.
    async fn commit_one_by_one(&self, plans: Vec<Result<Plan<'_>>>) -> Vec<Result<Vec<Outcome>>> {
        let failed_all = |e: Error| plans.iter().map(|_| Err(e.clone())).collect();
        if let Err(e) = self.simple(&self.statements.begin).await {
            return failed_all(e);
        }
        if let Err(e) = self.check_fence(true).await {
            let _ = self.simple(&self.statements.rollback).await;
            return failed_all(e);
        }
        let mut answers = Vec::with_capacity(plans.len());
        for plan in &plans {
            let plan = match plan {
                Ok(plan) => plan,
                Err(e) => {
                    answers.push(Err(e.clone()));
                    continue;
                }
            };
            let (saved, taken) = self
                .send(&self.statements.savepoint, plan.ops.iter().collect())
                .await;
            if let Err(e) = saved {
                return failed_all(e);
            }
            let outcome = judge(plan, &taken, &self.location);
            let end = if outcome.is_ok() {
                &self.statements.release
            } else {
                &self.statements.rollback_to
            };
            if let Err(e) = self.simple(end).await {
                return failed_all(e);
            }
            answers.push(outcome);
        }
        if let Err(e) = self.simple(&self.statements.commit).await {
            return failed_all(e);
        }
        answers
    }
}

/// How sending a group together ended.
enum Together {
    /// Committed: the outcomes of each job.
    Committed(Vec<Vec<Outcome>>),
    /// A batch failed; nothing was committed, the group is to be retried
    /// batch by batch.
    OneFailed,
    /// The transaction itself failed: every job fails with this.
    Failed(Error),
}

/// The outcomes of a batch from its statements' answers, or its first error.
fn judge(plan: &Plan<'_>, answers: &[Result<Answer>], location: &str) -> Result<Vec<Outcome>> {
    if answers.len() != plan.ops.len() {
        return Err(Error::Backend(format!(
            "{location}: the connection closed before every statement was answered"
        )));
    }
    let mut outcomes = Vec::with_capacity(plan.per_write.len());
    let mut next = plan.ops.iter().zip(answers);
    for &count in &plan.per_write {
        let mut outcome = Outcome::Done;
        for (op, answer) in next.by_ref().take(count) {
            let answer = answer.as_ref().map_err(Clone::clone)?;
            if let Some(decided) = op.judge(answer, location)? {
                outcome = decided;
            }
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
