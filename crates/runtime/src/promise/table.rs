//! The promise table and the rules applied to it: first settlement wins,
//! nobody hears of a settlement before the store has it, timers fire once.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use vow_payload_type::PayloadType;

use tokio::sync::{mpsc, oneshot};

use vow_store::{
    Millis, Outcome, PromiseRecord, PromiseState, ReactionRecord, SharedStorage, Write,
};

use super::{
    AwaitError, Command, ErrorKind, PromiseError, PromiseFilter, PromiseInfo, PromiseStatus, Reply,
    Settlement, Waiter,
};
use crate::compose::{ReactionSpec, Spawner, Takes};
use crate::error::{Error, Result};
use crate::ids::PromiseId;
use crate::metrics::Meter;
use crate::persist;

struct Entry {
    created_at: Millis,
    /// Settled by work the runtime runs.
    composed: bool,
    /// What a payload must be.
    payload_type: Option<Arc<PayloadType>>,
    /// When it times out while pending.
    deadline: Option<Millis>,
    /// How long it is kept once settled.
    retention: Option<Millis>,
    /// The worker that holds it open (created it, in this process), until
    /// it settles or is deleted.
    owner: Option<std::sync::Weak<crate::worker::WorkerEntry>>,
    state: State,
}

/// Counts a promise out of its owner's open promises.
fn release(owner: &mut Option<std::sync::Weak<crate::worker::WorkerEntry>>) {
    if let Some(worker) = owner.take().and_then(|w| w.upgrade()) {
        let _ = worker.open_promises.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |n| n.checked_sub(1),
        );
    }
}

enum State {
    Pending(Vec<Waiter>),
    /// A settlement is being written; nobody hears of it before the store
    /// has it. Later settlements wait behind it: they lose if it succeeds
    /// and are tried in turn if it fails.
    Writing(Box<Writing>),
    Settled {
        settlement: Settlement,
        at: Millis,
    },
}

/// A settlement being written, with who waits for it.
struct Writing {
    settlement: Settlement,
    /// When it settles, as the store records it.
    at: Millis,
    reply: Reply,
    waiters: Vec<Waiter>,
    queued: VecDeque<Queued>,
}

/// A settlement that arrived while another was being written.
struct Queued {
    settlement: Settlement,
    also: Vec<Write>,
    reply: Reply,
}

/// A reaction: what settles its target once its sources settle.
struct Reaction {
    sources: Vec<PromiseId>,
    spec: ReactionSpec,
}

pub(super) struct Table {
    entries: HashMap<PromiseId, Entry>,
    /// Reactions by target.
    reactions: HashMap<PromiseId, Reaction>,
    /// The targets of the reactions waiting on each source.
    waiting_on: HashMap<PromiseId, Vec<PromiseId>>,
    /// Starts the workers `then` continuations run in.
    spawner: Spawner,
    /// Pending promises by deadline (entries may be stale: checked when due).
    deadlines: BTreeSet<(Millis, PromiseId)>,
    /// Settled promises by the time they are deleted (likewise).
    expiries: BTreeSet<(Millis, PromiseId)>,
    storage: SharedStorage,
    /// For the answers of the store's writes.
    tx: mpsc::UnboundedSender<Command>,
    /// The largest settlement, in bytes (see
    /// [`crate::limits::settlement_size`]): callers' settlements are
    /// checked by [`Promises`](super::Promises); the table fits those it
    /// makes itself.
    max_payload: usize,
    /// Promises by status, and settlements, are counted here as they
    /// change: a scrape never waits for this table's task.
    metrics: Meter,
    /// Told when a promise appears, is awaited, settles or goes.
    pub(super) changes: crate::changes::Changes,
    /// In a cluster: which workers this node runs, and how to have a
    /// promise read again from the store (see [`super::Member`]).
    member: Option<super::Member>,
    /// In a cluster: promises being read from the store because a command
    /// named one this table did not have, with the commands that wait for
    /// the answer.
    fetching: HashMap<PromiseId, Vec<Command>>,
    /// The promise whose read is being answered: a command for it that
    /// still finds nothing is answered as a miss, not read again.
    fetched: Option<PromiseId>,
}

/// A stored promise's settlement and when it settled (`None` while
/// pending); an error that no longer decodes reads as a failure saying so.
fn stored_settlement(state: PromiseState) -> Option<(Settlement, Millis)> {
    match state {
        PromiseState::Pending => None,
        PromiseState::Completed { data, at } => Some((Ok(data), at)),
        PromiseState::Rejected { error, at } => Some((
            Err(
                persist::decode(&error, "a promise's error").unwrap_or_else(|e| PromiseError {
                    kind: ErrorKind::Failed,
                    message: e.to_string(),
                    data: Vec::new(),
                }),
            ),
            at,
        )),
    }
}

fn time_of(millis: Millis) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

/// The store's form of a settlement.
fn settle_write(id: &PromiseId, settlement: &Settlement, at: Millis) -> Write {
    let key = persist::promise_key(id);
    match settlement {
        Ok(data) => Write::CompletePromise {
            key,
            data: data.clone(),
            at,
        },
        Err(error) => Write::RejectPromise {
            key,
            error: persist::encode(error),
            at,
        },
    }
}

/// Stores `also` (if there is anything), then answers `answer`.
fn write_then_reply(storage: &SharedStorage, also: Vec<Write>, reply: Reply, answer: Result<bool>) {
    if also.is_empty() {
        let _ = reply.send(answer);
        return;
    }
    let write = storage.write(also);
    tokio::spawn(async move {
        let answer = match write.await {
            Ok(_) => answer,
            Err(e) => Err(Error::Store(e)),
        };
        let _ = reply.send(answer);
    });
}

impl Table {
    pub(super) fn new(
        storage: SharedStorage,
        tx: mpsc::UnboundedSender<Command>,
        spawner: Spawner,
        capacity: usize,
        max_payload: usize,
        metrics: Meter,
        changes: crate::changes::Changes,
    ) -> Self {
        Self {
            max_payload,
            metrics,
            changes,
            member: None,
            fetching: HashMap::new(),
            fetched: None,
            entries: HashMap::with_capacity(capacity),
            reactions: HashMap::new(),
            waiting_on: HashMap::new(),
            spawner,
            deadlines: BTreeSet::new(),
            expiries: BTreeSet::new(),
            storage,
            tx,
        }
    }

    /// Makes this the table of a cluster node (see [`super::Member`]).
    pub(super) fn member(mut self, member: Option<super::Member>) -> Self {
        self.member = member;
        self
    }

    pub(super) fn load(&mut self, record: PromiseRecord) {
        let id = persist::promise_id(&record.key);
        let state = match stored_settlement(record.state) {
            None => State::Pending(Vec::new()),
            Some((settlement, at)) => State::Settled { settlement, at },
        };
        let extra = super::Extra::read(&record.spec.options);
        let entry = Entry {
            created_at: record.created_at,
            composed: extra.composed,
            payload_type: declared(&id, extra.payload_type.as_deref()),
            deadline: record.spec.deadline,
            retention: record.spec.retention,
            owner: None,
            state,
        };
        self.schedule(&id, &entry);
        self.metrics.promises(entry.state.status(), 1);
        self.entries.insert(id, entry);
    }

    /// Loads the stored reactions, then fires those whose sources settled
    /// (before a crash, or while the runtime was down).
    pub(super) fn load_reactions(&mut self, records: Vec<ReactionRecord>) {
        let mut targets = Vec::with_capacity(records.len());
        for record in records {
            let target = persist::promise_id(&record.target);
            let spec: ReactionSpec = match persist::decode(&record.spec, "a reaction") {
                Ok(spec) => spec,
                Err(error) => {
                    tracing::error!(promise = %target, %error, "a stored reaction cannot be read; it is left alone");
                    continue;
                }
            };
            let sources = record.sources.iter().map(persist::promise_id).collect();
            self.register(target.clone(), sources, spec);
            targets.push(target);
        }
        for target in targets {
            self.evaluate(target);
        }
    }

    fn register(&mut self, target: PromiseId, sources: Vec<PromiseId>, spec: ReactionSpec) {
        // Only pending sources will change; the others are read when the
        // reaction is evaluated.
        for source in &sources {
            let pending = self
                .entries
                .get(source)
                .is_some_and(|e| !matches!(e.state, State::Settled { .. }));
            if pending {
                self.waiting_on
                    .entry(source.clone())
                    .or_default()
                    .push(target.clone());
            }
        }
        self.reactions.insert(target, Reaction { sources, spec });
    }

    /// A source's state: `None` if it does not exist, `Some(None)` while
    /// pending, its settlement once settled.
    fn source_state(&self, id: &PromiseId) -> Option<Option<Settlement>> {
        self.entries.get(id).map(|entry| match &entry.state {
            State::Settled { settlement, .. } => Some(settlement.clone()),
            _ => None,
        })
    }

    /// Runs what a settled (or deleted) source decides for the reactions
    /// waiting on it.
    fn source_changed(&mut self, id: &PromiseId) {
        if let Some(targets) = self.waiting_on.remove(id) {
            for target in targets {
                self.evaluate(target);
            }
        }
    }

    /// Whether this node fires the timers of `id` and the reaction that
    /// settles it (always, outside a cluster): the node that runs its
    /// worker does; a promise whose worker
    /// does not exist yet (a `then` made over REST: its worker is made
    /// when it fires) goes with the worker of its reaction's first source.
    fn fires(&self, id: &PromiseId) -> bool {
        let Some(member) = &self.member else {
            return true;
        };
        if (member.mine)(&id.worker_id) {
            return true;
        }
        if (member.known)(&id.worker_id) {
            return false;
        }
        self.reactions
            .get(id)
            .and_then(|r| r.sources.first())
            .is_some_and(|source| (member.mine)(&source.worker_id))
    }

    /// In a cluster, when this table does not have `id` (another node made
    /// it a moment ago, and the news has not come yet): asks for it to be
    /// read from the store, and `true` (the caller waits for
    /// [`Command::Refreshed`]). `false` outside a cluster, when the table
    /// has it, or when it was just read and is missing.
    fn fetch(&mut self, id: &PromiseId) -> bool {
        let Some(member) = &self.member else {
            return false;
        };
        if self.entries.contains_key(id) || self.fetched.as_ref() == Some(id) {
            return false;
        }
        if !self.fetching.contains_key(id) {
            let _ = member.refresh.send(id.clone());
            self.fetching.insert(id.clone(), Vec::new());
        }
        true
    }

    /// Fires the reaction that settles `target` if its sources decide it.
    fn evaluate(&mut self, target: PromiseId) {
        if !self.fires(&target) {
            return;
        }
        let Some(reaction) = self.reactions.get(&target) else {
            return;
        };
        // A source another node made may not have reached this table yet.
        let unknown: Vec<PromiseId> = reaction
            .sources
            .iter()
            .filter(|s| !self.entries.contains_key(*s))
            .cloned()
            .collect();
        let mut waits = false;
        for source in unknown {
            if self.fetch(&source) {
                self.waiting_on
                    .entry(source)
                    .or_default()
                    .push(target.clone());
                waits = true;
            }
        }
        if waits {
            return;
        }
        let Some(reaction) = self.reactions.get(&target) else {
            return;
        };
        let delete = || Write::DeleteReaction(persist::promise_key(&target));
        match self.entries.get(&target).map(|e| &e.state) {
            Some(State::Pending(_)) => {}
            // A settlement of the target is being written: if it fails,
            // the target is pending again and the reaction still stands.
            Some(State::Writing(_)) => return,
            // Settled or deleted by other means: no reaction needed.
            Some(State::Settled { .. }) | None => {
                self.reactions.remove(&target);
                drop(self.storage.write(vec![delete()]));
                return;
            }
        }
        let states: Vec<(PromiseId, Option<Option<Settlement>>)> = reaction
            .sources
            .iter()
            .map(|s| (s.clone(), self.source_state(s)))
            .collect();
        match &reaction.spec {
            ReactionSpec::All | ReactionSpec::Any => {
                let all = reaction.spec == ReactionSpec::All;
                let Some(settlement) = crate::compose::combine(all, &states) else {
                    return;
                };
                // The payloads of `all` together may pass the limit.
                let settlement = crate::limits::fit(settlement, self.max_payload);
                self.reactions.remove(&target);
                let (reply, _) = oneshot::channel();
                self.settle(target.clone(), settlement, vec![delete()], reply);
            }
            ReactionSpec::Then(handler) => {
                let settled = match states.first() {
                    Some((_, Some(None))) => return,
                    Some((_, Some(Some(settled)))) => settled.clone(),
                    Some((_, None)) | None => {
                        let source = source_name(states.first().map(|(s, _)| s));
                        Err(PromiseError {
                            kind: ErrorKind::Failed,
                            message: format!(
                                "promise {source} does not exist (never created, or deleted)"
                            ),
                            data: Vec::new(),
                        })
                    }
                };
                let handler = handler.clone();
                self.reactions.remove(&target);
                let params = match (handler.takes, &settled) {
                    // A handler of payloads is passed over: the rejection
                    // goes down the chain.
                    (Takes::Payload, Err(error)) => {
                        let (reply, _) = oneshot::channel();
                        self.settle(target.clone(), Err(error.clone()), vec![delete()], reply);
                        return;
                    }
                    (Takes::Payload, Ok(payload)) => vec![crate::compose::bytes_val(payload)],
                    (Takes::Settlement, settled) => vec![crate::compose::settlement_val(settled)],
                };
                let name = handler
                    .worker
                    .clone()
                    .unwrap_or_else(|| crate::compose::worker_name("then", &target, 0));
                let (spawned, mut writes) =
                    match crate::compose::spawn(&handler, name, &params, &target) {
                        Ok(spawned) => spawned,
                        Err(error) => {
                            let (reply, _) = oneshot::channel();
                            let error = PromiseError {
                                kind: ErrorKind::Failed,
                                message: format!("the continuation could not start: {error}"),
                                data: Vec::new(),
                            };
                            self.settle(target.clone(), Err(error), vec![delete()], reply);
                            return;
                        }
                    };
                writes.push(delete());
                crate::compose::store_and_start(&self.storage, &self.spawner, writes, spawned);
            }
        }
    }

    /// Puts the entry's timer in place: its deadline while pending, its
    /// deletion once settled.
    fn schedule(&mut self, id: &PromiseId, entry: &Entry) {
        match (&entry.state, entry.deadline, entry.retention) {
            (State::Pending(_) | State::Writing(_), Some(deadline), _) => {
                self.deadlines.insert((deadline, id.clone()));
            }
            (State::Settled { at, .. }, _, Some(retention)) => {
                self.expiries
                    .insert((at.saturating_add(retention), id.clone()));
            }
            _ => {}
        }
    }

    /// When the next timer falls due.
    pub(super) fn next_timer(&self) -> Option<Millis> {
        let deadline = self.deadlines.first().map(|(at, _)| *at);
        let expiry = self.expiries.first().map(|(at, _)| *at);
        match (deadline, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every timer due at `now`: pending promises past their
    /// deadline are rejected, settled ones past their retention deleted.
    pub(super) fn fire_due(&mut self, now: Millis) {
        while let Some((at, id)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            // Only the deadline of the promise as it is now (an id reused
            // after its worker was deleted and made again has its own).
            let Some(entry) = self.entries.get(&id).filter(|e| e.deadline == Some(at)) else {
                continue;
            };
            // Another node's: it fires it (or this one, once it takes the
            // worker over: see `adopted`).
            if !self.fires(&id) {
                continue;
            }
            if matches!(entry.state, State::Settled { .. }) {
                continue;
            }
            let timeout = Duration::from_millis(at.saturating_sub(entry.created_at));
            let error = PromiseError {
                kind: ErrorKind::TimedOut,
                message: format!(
                    "promise {id} was not settled within its timeout of {}",
                    humanize(timeout)
                ),
                data: Vec::new(),
            };
            tracing::debug!(promise = %id, "promise timed out");
            let (reply, _) = oneshot::channel();
            self.settle(id, Err(error), Vec::new(), reply);
        }
        while let Some((at, id)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            let due = self.entries.get(&id).and_then(|e| match &e.state {
                State::Settled { at: settled, .. } => {
                    e.retention.map(|r| settled.saturating_add(r))
                }
                _ => None,
            });
            if due != Some(at) || !self.fires(&id) {
                continue;
            }
            if let Some(entry) = self.entries.remove(&id) {
                self.metrics.promises(entry.state.status(), -1);
            }
            self.source_changed(&id);
            tracing::debug!(promise = %id, "settled promise deleted after its retention");
            let write = self
                .storage
                .write(vec![Write::DeletePromise(persist::promise_key(&id))]);
            tokio::spawn(async move {
                if let Err(error) = write.await {
                    tracing::warn!(promise = %id, %error, "deleting a promise after its retention failed");
                }
            });
        }
    }

    pub(super) fn apply(&mut self, command: Command) {
        if !matches!(
            command,
            Command::List { .. } | Command::Get { .. } | Command::Busy { .. }
        ) {
            self.changes.bump();
        }
        let named = match &command {
            Command::Await { id, .. } | Command::Settle { id, .. } | Command::Get { id, .. } => {
                Some(id.clone())
            }
            _ => None,
        };
        if let Some(id) = named
            && self.fetch(&id)
        {
            self.fetching.entry(id).or_default().push(command);
            return;
        }
        match command {
            Command::Create {
                id,
                at,
                spec,
                owner,
            } => {
                if self.entries.contains_key(&id) {
                    return;
                }
                let extra = super::Extra::read(&spec.options);
                let entry = Entry {
                    created_at: at,
                    composed: extra.composed,
                    payload_type: declared(&id, extra.payload_type.as_deref()),
                    deadline: spec.deadline,
                    retention: spec.retention,
                    owner,
                    state: State::Pending(Vec::new()),
                };
                self.schedule(&id, &entry);
                self.metrics.promises(PromiseStatus::Pending, 1);
                self.entries.insert(id, entry);
            }
            Command::Await { id, waiter } => match self.entries.get_mut(&id) {
                None => waiter.send(Err(AwaitError::NotFound)),
                Some(Entry {
                    state: State::Settled { settlement, .. },
                    ..
                }) => waiter.send(Ok(settlement.clone())),
                Some(Entry { state, .. }) => {
                    if let Some(waiters) = state.waiters() {
                        waiters.retain(|w| !w.is_closed());
                        waiters.push(waiter);
                    }
                }
            },
            Command::Settle {
                id,
                settlement,
                also,
                reply,
            } => self.settle(id, settlement, also, reply),
            Command::Written { id, outcome } => self.written(id, outcome),
            Command::Delete { id } => {
                if let Some(mut entry) = self.entries.remove(&id) {
                    self.metrics.promises(entry.state.status(), -1);
                    release(&mut entry.owner);
                    entry.state.fail_waiters(&self.storage);
                }
                self.reactions.remove(&id);
                self.source_changed(&id);
            }
            Command::React {
                target,
                sources,
                spec,
            } => {
                self.register(target.clone(), sources, spec);
                self.evaluate(target);
            }
            Command::DeleteWorker { worker } => {
                let mut gone = Vec::new();
                let storage = self.storage.clone();
                let metrics = self.metrics.clone();
                self.entries.retain(|id, entry| {
                    let keep = id.worker_id != worker;
                    if !keep {
                        metrics.promises(entry.state.status(), -1);
                        std::mem::replace(&mut entry.state, State::Pending(Vec::new()))
                            .fail_waiters(&storage);
                        gone.push(id.clone());
                    }
                    keep
                });
                self.reactions
                    .retain(|target, _| target.worker_id != worker);
                for id in gone {
                    self.source_changed(&id);
                }
            }
            Command::List { filter, reply } => {
                let _ = reply.send(self.list(&filter));
            }
            Command::Get { id, reply } => {
                let found = self.entries.get(&id).map(|entry| {
                    let settlement = match &entry.state {
                        State::Settled { settlement, .. } => Some(settlement.clone()),
                        _ => None,
                    };
                    (info(&id, entry), settlement)
                });
                let _ = reply.send(found);
            }
            Command::Refreshed { id, record } => self.refreshed(id, record),
            Command::ReactionRefreshed { target, record } => match record {
                Some(record) => {
                    if !self.reactions.contains_key(&target) {
                        self.load_reactions(vec![record]);
                    }
                }
                None => {
                    self.reactions.remove(&target);
                }
            },
            Command::Resync {
                promises,
                reactions,
            } => self.resync(promises, reactions),
            Command::Adopted { workers } => self.adopted(&workers),
            Command::Busy { workers, reply } => {
                let _ = reply.send(self.busy(workers));
            }
        }
    }

    /// Applies what the store holds for `id` now (another node changed
    /// it, or this table asked), then answers the commands that waited
    /// for it.
    fn refreshed(&mut self, id: PromiseId, record: Option<PromiseRecord>) {
        match (self.entries.get_mut(&id), record) {
            (None, None) => {}
            (None, Some(record)) => self.load(record),
            (Some(_), None) => self.apply(Command::Delete { id: id.clone() }),
            (Some(entry), Some(record)) => {
                let settlement = stored_settlement(record.state);
                // Settled here already, or being written here (the write's
                // answer says who won): nothing to apply.
                if let (Some((settlement, at)), State::Pending(waiters)) =
                    (settlement, &mut entry.state)
                {
                    let waiters = std::mem::take(waiters);
                    for waiter in waiters {
                        waiter.settled(settlement.clone());
                    }
                    self.metrics.promises(PromiseStatus::Pending, -1);
                    release(&mut entry.owner);
                    entry.state = State::Settled { settlement, at };
                    self.metrics.promises(entry.state.status(), 1);
                    if let Some(retention) = entry.retention {
                        self.expiries
                            .insert((at.saturating_add(retention), id.clone()));
                    }
                    if let Some(member) = &self.member {
                        (member.settled)(&id);
                    }
                    // The node that settled it removed its reaction.
                    self.reactions.remove(&id);
                    self.source_changed(&id);
                }
            }
        }
        let waiting = self.fetching.remove(&id);
        let pending = self
            .entries
            .get(&id)
            .is_some_and(|e| !matches!(e.state, State::Settled { .. }));
        self.fetched = Some(id.clone());
        for command in waiting.into_iter().flatten() {
            self.apply(command);
        }
        // Reactions that waited to learn of it: a pending source keeps
        // them waiting on it.
        if pending {
            if let Some(targets) = self.waiting_on.get(&id).cloned() {
                for target in targets {
                    self.evaluate(target);
                }
            }
        } else {
            self.source_changed(&id);
        }
        self.fetched = None;
    }

    /// Brings the table in line with everything the store holds, after
    /// news from other nodes may have been missed.
    fn resync(&mut self, promises: Vec<PromiseRecord>, reactions: Vec<ReactionRecord>) {
        let stored: std::collections::HashSet<PromiseId> = promises
            .iter()
            .map(|record| persist::promise_id(&record.key))
            .collect();
        let gone: Vec<PromiseId> = self
            .entries
            .keys()
            .filter(|id| !stored.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.refreshed(id, None);
        }
        for record in promises {
            self.refreshed(persist::promise_id(&record.key), Some(record));
        }
        let targets: std::collections::HashSet<PromiseId> = reactions
            .iter()
            .map(|record| persist::promise_id(&record.target))
            .collect();
        self.reactions.retain(|target, _| targets.contains(target));
        let new: Vec<ReactionRecord> = reactions
            .into_iter()
            .filter(|r| !self.reactions.contains_key(&persist::promise_id(&r.target)))
            .collect();
        self.load_reactions(new);
    }

    /// This node took `workers` over: the timers of their promises are
    /// its to fire now, and the reactions that settle them its to run.
    /// Which of `workers` have a pending promise with a timeout, a
    /// reaction that settles one of their promises, or are the first
    /// source of a reaction whose worker does not exist yet.
    fn busy(&self, workers: Vec<crate::ids::WorkerId>) -> Vec<crate::ids::WorkerId> {
        let asked: std::collections::HashSet<&crate::ids::WorkerId> = workers.iter().collect();
        let mut busy = std::collections::HashSet::new();
        for (id, entry) in &self.entries {
            if entry.deadline.is_some()
                && matches!(entry.state, State::Pending(_) | State::Writing(_))
                && asked.contains(&id.worker_id)
            {
                busy.insert(id.worker_id.clone());
            }
        }
        let known = self.member.as_ref().map(|m| Arc::clone(&m.known));
        for (target, reaction) in &self.reactions {
            if asked.contains(&target.worker_id) {
                busy.insert(target.worker_id.clone());
            } else if let Some(first) = reaction.sources.first()
                && asked.contains(&first.worker_id)
                && !known.as_ref().is_some_and(|known| known(&target.worker_id))
            {
                busy.insert(first.worker_id.clone());
            }
        }
        workers.into_iter().filter(|w| busy.contains(w)).collect()
    }

    fn adopted(&mut self, workers: &[crate::ids::WorkerId]) {
        let workers: std::collections::HashSet<&crate::ids::WorkerId> = workers.iter().collect();
        // Promises of these workers, and those without a worker yet whose
        // reaction's first source is one of theirs (see `fires`).
        let follows = |table: &Self, id: &PromiseId| {
            workers.contains(&id.worker_id)
                || table
                    .reactions
                    .get(id)
                    .and_then(|r| r.sources.first())
                    .is_some_and(|source| workers.contains(&source.worker_id))
        };
        let mut timers = Vec::new();
        for (id, entry) in &self.entries {
            if !follows(self, id) {
                continue;
            }
            match (&entry.state, entry.deadline, entry.retention) {
                (State::Pending(_) | State::Writing(_), Some(deadline), _) => {
                    timers.push((true, deadline, id.clone()));
                }
                (State::Settled { at, .. }, _, Some(retention)) => {
                    timers.push((false, at.saturating_add(retention), id.clone()));
                }
                _ => {}
            }
        }
        for (deadline, at, id) in timers {
            if deadline {
                self.deadlines.insert((at, id));
            } else {
                self.expiries.insert((at, id));
            }
        }
        let targets: Vec<PromiseId> = self
            .reactions
            .keys()
            .filter(|target| follows(self, target))
            .cloned()
            .collect();
        for target in targets {
            self.evaluate(target);
        }
    }

    fn settle(&mut self, id: PromiseId, settlement: Settlement, also: Vec<Write>, reply: Reply) {
        let Some(entry) = self.entries.get_mut(&id) else {
            write_then_reply(&self.storage, also, reply, Err(Error::PromiseNotFound(id)));
            return;
        };
        // A payload must be a value of the declared type; the value is
        // kept in its canonical JSON form.
        let settlement = match (&entry.payload_type, settlement) {
            (Some(declared), Ok(data)) => match declared.check_bytes(&data) {
                Ok(value) => Ok(Bytes::from(serde_json::to_vec(&value).unwrap_or_default())),
                // Work the runtime runs settles a composed promise: a result
                // that is not of its type rejects it (nobody else would).
                Err(error) if entry.composed => Err(PromiseError {
                    kind: ErrorKind::Failed,
                    message: format!("the result for promise {id} is not a {declared}: {error}"),
                    data: Vec::new(),
                }),
                Err(error) => {
                    let error = Error::InvalidPayload {
                        promise: id,
                        payload_type: declared.to_string(),
                        reason: error.to_string(),
                    };
                    write_then_reply(&self.storage, also, reply, Err(error));
                    return;
                }
            },
            (_, settlement) => settlement,
        };
        match &mut entry.state {
            State::Settled { .. } => write_then_reply(&self.storage, also, reply, Ok(false)),
            State::Writing(writing) => writing.queued.push_back(Queued {
                settlement,
                also,
                reply,
            }),
            State::Pending(waiters) => {
                let waiters = std::mem::take(waiters);
                let at = vow_store::now_millis();
                let mut batch = Vec::with_capacity(1 + also.len());
                batch.push(settle_write(&id, &settlement, at));
                batch.extend(also);
                let write = self.storage.write(batch);
                entry.state = State::Writing(Box::new(Writing {
                    settlement,
                    at,
                    reply,
                    waiters,
                    queued: VecDeque::new(),
                }));
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let outcome = match write.await {
                        Ok(outcomes) => match outcomes.first() {
                            Some(Outcome::Completed(done)) => Ok(*done),
                            Some(Outcome::NotFound) => Err(Error::PromiseNotFound(id.clone())),
                            _ => Ok(true),
                        },
                        Err(e) => Err(Error::Store(e)),
                    };
                    let _ = tx.send(Command::Written { id, outcome });
                });
            }
        }
    }

    fn written(&mut self, id: PromiseId, outcome: Result<bool>) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let State::Writing(writing) =
            std::mem::replace(&mut entry.state, State::Pending(Vec::new()))
        else {
            return;
        };
        let Writing {
            settlement,
            at,
            reply,
            waiters,
            queued,
        } = *writing;
        match outcome {
            Ok(true) => {
                for waiter in waiters {
                    waiter.settled(settlement.clone());
                }
                tracing::debug!(promise = %id, ok = settlement.is_ok(), "promise settled");
                self.metrics.settled(&settlement);
                self.metrics.promises(PromiseStatus::Pending, -1);
                release(&mut entry.owner);
                entry.state = State::Settled { settlement, at };
                self.metrics.promises(entry.state.status(), 1);
                if let Some(retention) = entry.retention {
                    self.expiries
                        .insert((at.saturating_add(retention), id.clone()));
                }
                let _ = reply.send(Ok(true));
                if let Some(member) = &self.member {
                    (member.settled)(&id);
                }
                for later in queued {
                    write_then_reply(&self.storage, later.also, later.reply, Ok(false));
                }
                // Its own reaction is moot; those waiting on it may fire.
                if self.reactions.remove(&id).is_some() {
                    drop(
                        self.storage
                            .write(vec![Write::DeleteReaction(persist::promise_key(&id))]),
                    );
                }
                self.source_changed(&id);
            }
            failed => {
                // Nothing was settled: the waiters keep waiting and the next
                // queued settlement gets its chance.
                if let Ok(false) | Err(Error::PromiseNotFound(_)) = failed
                    && let Some(member) = &self.member
                {
                    // Another node settled (or deleted) it first: what it
                    // stored is read, and applied, here too.
                    let _ = member.refresh.send(id.clone());
                } else if let Ok(false) = failed {
                    tracing::error!(promise = %id, "the store had this promise settled already; the table did not");
                } else {
                    tracing::warn!(promise = %id, ?failed, "settlement not stored");
                }
                entry.state = State::Pending(waiters);
                let _ = reply.send(failed);
                // The queued settlements are tried in turn until one is
                // being written; the rest wait behind it. None is dropped:
                // each carries writes (a worker's log entry) that must be
                // stored whatever becomes of the promise.
                let mut queued = queued;
                while let Some(next) = queued.pop_front() {
                    self.settle(id.clone(), next.settlement, next.also, next.reply);
                    if let Some(Entry {
                        state: State::Writing(writing),
                        ..
                    }) = self.entries.get_mut(&id)
                    {
                        writing.queued.extend(queued);
                        return;
                    }
                }
                // Pending again: a reaction that waits to settle it may.
                if self.reactions.contains_key(&id) {
                    self.evaluate(id);
                }
            }
        }
    }

    fn list(&self, filter: &PromiseFilter) -> Vec<PromiseInfo> {
        let mut out: Vec<PromiseInfo> = self
            .entries
            .iter()
            .filter(|(id, entry)| filter.matches(id, entry.state.status()))
            .map(|(id, entry)| info(id, entry))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

fn info(id: &PromiseId, entry: &Entry) -> PromiseInfo {
    let (completed_at, error, awaited) = match &entry.state {
        State::Pending(waiters) => (None, None, waiters.iter().any(|w| !w.is_closed())),
        State::Writing(writing) => (None, None, writing.waiters.iter().any(|w| !w.is_closed())),
        State::Settled { settlement, at } => (
            Some(time_of(*at)),
            settlement.as_ref().err().cloned(),
            false,
        ),
    };
    let pending = completed_at.is_none();
    PromiseInfo {
        id: id.clone(),
        status: entry.state.status(),
        created_at: time_of(entry.created_at),
        completed_at,
        error,
        deadline: entry.deadline.filter(|_| pending).map(time_of),
        retention: entry.retention.map(Duration::from_millis),
        awaited,
        composed: entry.composed,
        payload_type: entry.payload_type.as_deref().cloned(),
    }
}

/// The declared payload type in a promise's stored options; a type that
/// no longer parses (written by another version) is logged and dropped.
fn declared(id: &PromiseId, text: Option<&str>) -> Option<Arc<PayloadType>> {
    let text = text?;
    match PayloadType::parse(text) {
        Ok(ty) => Some(Arc::new(ty)),
        Err(error) => {
            tracing::warn!(promise = %id, %error, "a stored payload type cannot be read; payloads are not checked");
            None
        }
    }
}

/// A source's id for messages, when a reaction somehow has none.
fn source_name(id: Option<&PromiseId>) -> String {
    id.map_or_else(|| "(none)".to_owned(), ToString::to_string)
}

/// A duration as people write it: `1m 30s`, `250ms`.
fn humanize(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let secs = duration.as_secs();
    let (h, m, s, ms) = (secs / 3600, secs % 3600 / 60, secs % 60, millis % 1000);
    let mut parts = Vec::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    if ms > 0 {
        parts.push(format!("{ms}ms"));
    }
    parts.join(" ")
}

impl State {
    fn status(&self) -> PromiseStatus {
        match self {
            State::Pending(_) | State::Writing(_) => PromiseStatus::Pending,
            State::Settled {
                settlement: Ok(_), ..
            } => PromiseStatus::Completed,
            State::Settled {
                settlement: Err(error),
                ..
            } if error.kind == ErrorKind::TimedOut => PromiseStatus::TimedOut,
            State::Settled { .. } => PromiseStatus::Rejected,
        }
    }

    /// Who waits, while the promise is pending.
    fn waiters(&mut self) -> Option<&mut Vec<Waiter>> {
        match self {
            State::Pending(waiters) => Some(waiters),
            State::Writing(writing) => Some(&mut writing.waiters),
            State::Settled { .. } => None,
        }
    }

    /// Answers who waits on a promise being deleted: waiters hear it was
    /// deleted, queued settlers `false` once what came with them is
    /// stored, and the settlement being written its store's answer (it
    /// reports back through `Written`, which finds no entry).
    fn fail_waiters(self, storage: &SharedStorage) {
        let (waiters, queued) = match self {
            State::Pending(waiters) => (waiters, VecDeque::new()),
            State::Writing(writing) => {
                let Writing {
                    waiters,
                    queued,
                    reply,
                    ..
                } = *writing;
                // Its batch is in the store's hands; the deletion comes
                // after it, so it did not settle anything that stays.
                let _ = reply.send(Ok(false));
                (waiters, queued)
            }
            State::Settled { .. } => return,
        };
        for waiter in waiters {
            waiter.send(Err(AwaitError::Deleted));
        }
        for later in queued {
            write_then_reply(storage, later.also, later.reply, Ok(false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(humanize(Duration::from_millis(250)), "250ms");
        assert_eq!(humanize(Duration::from_secs(660)), "11m");
        assert_eq!(humanize(Duration::from_millis(90_500)), "1m 30s 500ms");
        assert_eq!(humanize(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn a_settled_state_knows_its_status() {
        let rejected = |kind| State::Settled {
            settlement: Err(PromiseError {
                kind,
                message: String::new(),
                data: Vec::new(),
            }),
            at: 0,
        };
        assert_eq!(
            rejected(ErrorKind::TimedOut).status(),
            PromiseStatus::TimedOut
        );
        assert_eq!(
            rejected(ErrorKind::Failed).status(),
            PromiseStatus::Rejected
        );
        assert_eq!(
            State::Settled {
                settlement: Ok(Bytes::new()),
                at: 0
            }
            .status(),
            PromiseStatus::Completed
        );
    }
}
