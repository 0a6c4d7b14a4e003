//! Crashes and faults of a real `vow serve` on a data directory: SIGKILL at
//! random moments under load, SIGTERM under load, one promise completed by
//! a hundred clients at once, a full disk and a read-only data directory.
//!
//! The load comes from [`drive`]: each worker of the `harness` guest runs
//! rounds of `create-and-await` (queued with an idempotency key; several
//! clients race to complete its promise, each with a payload of its own;
//! the same key is then awaited for the delivered payload) and `increment`
//! (a counter in the guest's memory, with an idempotency key of its own).
//! [`check`] then reads every worker's oplog, every promise and every
//! stored result back, so a completion or invocation that was acknowledged
//! and then lost, or that took effect twice, is counted.
//!
//! The tmpfs tests mount file systems, so they need root (as CI has); they
//! fail, saying so, where mounting is not allowed.

#![allow(
    clippy::print_stdout,
    reason = "the tests print their seed and what the server answered"
)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{QUICK, Reply, Server, request};

/// How many clients race to complete each promise in [`drive`].
const COMPLETERS: usize = 3;

/// SplitMix64: a small seeded generator, so that a failing run can be
/// repeated with the seed it printed.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration between `low` and `high` milliseconds.
    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low + 1))
    }

    /// An independent generator for the `n`th client.
    fn fork(&self, n: u64) -> Self {
        let mut forked = Self(self.0 ^ n.wrapping_add(1).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        forked.next();
        forked
    }
}

/// `VOW_FAULTS_SEED` if set, else one from the clock.
fn seed() -> u64 {
    std::env::var("VOW_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// A runtime for the HTTP clients; the test's own thread kills and starts
/// servers.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The server the clients talk to (its address changes at each restart)
/// and what they saw of it.
struct Target {
    url: RwLock<String>,
    cid: String,
    http: reqwest::Client,
    /// Set to end the rounds of [`drive`].
    stop: AtomicBool,
    /// No client waits past this.
    deadline: Instant,
    /// Requests that got no full answer (refused, reset, cut off mid-answer)
    /// and were sent again.
    transport_errors: AtomicU64,
    /// 503 answers, sent again.
    unavailable: AtomicU64,
    /// Full answers read while [`Target::draining`] was set.
    answered_draining: AtomicU64,
    /// Set while a server shuts down gracefully.
    draining: AtomicBool,
}

impl Target {
    fn new(url: &str, cid: &str, limit: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            url: RwLock::new(url.to_owned()),
            cid: cid.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            stop: AtomicBool::new(false),
            deadline: Instant::now() + limit,
            transport_errors: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            answered_draining: AtomicU64::new(0),
            draining: AtomicBool::new(false),
        })
    }

    fn set_url(&self, url: &str) {
        if let Ok(mut current) = self.url.write() {
            url.clone_into(&mut current);
        }
    }

    fn url(&self) -> String {
        self.url.read().map(|u| u.clone()).unwrap_or_default()
    }

    fn worker(&self, worker: &str) -> String {
        format!("/v1/components/{}/workers/{worker}", self.cid)
    }

    /// Sends the request until a full answer other than 503 comes back,
    /// to whichever server is up: the requests of these tests are safe to
    /// repeat (idempotency keys; a repeated completion answers `false`).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Reply> {
        loop {
            let url = format!("{}{path}", self.url());
            match request(&self.http, method.clone(), &url, body, key).await {
                Ok(reply) => {
                    if self.draining.load(Ordering::SeqCst) {
                        self.answered_draining.fetch_add(1, Ordering::SeqCst);
                    }
                    if reply.status != 503 {
                        return Ok(reply);
                    }
                    self.unavailable.fetch_add(1, Ordering::SeqCst);
                }
                Err(_) => {
                    self.transport_errors.fetch_add(1, Ordering::SeqCst);
                }
            }
            ensure!(
                Instant::now() < self.deadline,
                "{method} {path}: no answer before the test's deadline"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// [`Target::send`], expecting 200; the body.
    async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let reply = self.send(method.clone(), path, body, key).await?;
        ensure!(
            reply.status == 200,
            "{method} {path} (key {key:?}) answered {}: {}",
            reply.status,
            reply.body
        );
        Ok(reply.body)
    }

    async fn start_worker(&self, name: &str) -> anyhow::Result<()> {
        let path = format!("/v1/components/{}/workers", self.cid);
        self.ok(Method::POST, &path, Some(&json!({ "name": name })), None)
            .await?;
        Ok(())
    }

    /// `invoke-and-await` of an export without arguments, with a key.
    async fn call(&self, worker: &str, function: &str, key: &str) -> anyhow::Result<Value> {
        let path = format!(
            "{}/invoke-and-await?function={function}",
            self.worker(worker)
        );
        let body = self
            .ok(
                Method::POST,
                &path,
                Some(&json!({ "params_json": [] })),
                Some(key),
            )
            .await?;
        Ok(body["result"].clone())
    }

    /// `invoke` (queue only) of an export without arguments, with a key.
    async fn queue(&self, worker: &str, function: &str, key: &str) -> anyhow::Result<()> {
        let path = format!("{}/invoke?function={function}", self.worker(worker));
        let body = self
            .ok(
                Method::POST,
                &path,
                Some(&json!({ "params_json": [] })),
                Some(key),
            )
            .await?;
        ensure!(body == json!({}), "invoke answered {body}");
        Ok(())
    }

    /// Polls the worker's promises until one after `after` is pending and
    /// awaited; its oplog index.
    async fn awaited(&self, worker: &str, after: u64) -> anyhow::Result<u64> {
        let path = format!("{}/promises", self.worker(worker));
        loop {
            let listed = self.ok(Method::GET, &path, None, None).await?;
            let found = listed["promises"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["status"] == "pending" && p["awaited"] == true)
                .filter_map(|p| p["oplogIdx"].as_u64())
                .filter(|idx| *idx > after)
                .max();
            if let Some(idx) = found {
                return Ok(idx);
            }
            ensure!(
                Instant::now() < self.deadline,
                "worker {worker} never awaited a promise after {after}: {listed}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every entry of the worker's oplog, in Vow's form.
    async fn oplog(&self, worker: &str) -> anyhow::Result<Vec<Value>> {
        let mut entries = Vec::new();
        let mut from = 1;
        loop {
            let path = format!("{}/oplog/raw?from={from}&count=1000", self.worker(worker));
            let page = self.ok(Method::GET, &path, None, None).await?;
            entries.extend(page["entries"].as_array().into_iter().flatten().cloned());
            match page["next"].as_u64() {
                Some(next) => from = next,
                None => return Ok(entries),
            }
        }
    }
}

/// A JSON array of bytes as text.
fn text(bytes: &Value) -> anyhow::Result<String> {
    let bytes: Vec<u8> = serde_json::from_value(bytes.clone())
        .with_context(|| format!("not a list of bytes: {bytes}"))?;
    Ok(String::from_utf8(bytes)?)
}

/// One round of [`drive`] on one worker, as its client saw it.
#[derive(Debug)]
struct Round {
    /// The idempotency key of its `create-and-await`.
    await_key: String,
    /// The idempotency key of its `increment`.
    increment_key: String,
    /// The oplog index of the promise the invocation awaited.
    promise: u64,
    /// Every payload a client sent to complete it.
    sent: Vec<String>,
    /// The payloads whose completion was answered `true`.
    acknowledged: Vec<String>,
    /// What the invocation returned: the payload delivered to the worker.
    delivered: String,
    /// What `increment` returned.
    count: u64,
}

/// Rounds on `worker` until `target.stop` is set: queue `create-and-await`
/// with a key, find its promise, let [`COMPLETERS`] clients race to
/// complete it (after a random pause, so that many workers are parked at
/// any moment), await the same key for the delivered payload, then
/// `increment` with a key of its own.
async fn drive(target: Arc<Target>, worker: String, mut rng: Rng) -> anyhow::Result<Vec<Round>> {
    let complete = format!("{}/complete", target.worker(&worker));
    let mut rounds: Vec<Round> = Vec::new();
    while !target.stop.load(Ordering::SeqCst) {
        let n = rounds.len();
        let await_key = format!("await-{worker}-{n}");
        target
            .queue(&worker, "create-and-await", &await_key)
            .await?;
        let after = rounds.last().map_or(0, |r| r.promise);
        let sent: Vec<String> = (0..COMPLETERS)
            .map(|c| format!("{worker} round {n} client {c}"))
            .collect();
        let (promise, answers) = loop {
            let promise = target.awaited(&worker, after).await?;
            tokio::time::sleep(rng.millis(0, 300)).await;
            let replies = futures::future::try_join_all(sent.iter().map(|payload| {
                let body = json!({ "oplogIdx": promise, "data": payload.as_bytes() });
                let (target, complete) = (&target, &complete);
                async move { target.send(Method::POST, complete, Some(&body), None).await }
            }))
            .await?;
            // A promise listed before it was stored is gone after a kill,
            // until the worker runs its invocation again by replay and
            // makes it anew: it is looked for again. Only when every
            // completer found none: one that was told `true` stored it.
            if replies.iter().all(|r| r.status == 404) {
                ensure!(
                    Instant::now() < target.deadline,
                    "{worker}'s promise {promise} stayed missing: {}",
                    replies[0].body
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let answers = replies
                .iter()
                .map(|reply| {
                    ensure!(
                        reply.status == 200,
                        "complete of {worker}'s promise {promise} answered {}: {}",
                        reply.status,
                        reply.body
                    );
                    reply
                        .body
                        .as_bool()
                        .with_context(|| format!("complete answered {}", reply.body))
                })
                .collect::<anyhow::Result<Vec<bool>>>()?;
            break (promise, answers);
        };
        let acknowledged = sent
            .iter()
            .zip(&answers)
            .filter(|(_, yes)| **yes)
            .map(|(p, _)| p.clone())
            .collect();
        let delivered = text(&target.call(&worker, "create-and-await", &await_key).await?)?;
        let increment_key = format!("increment-{worker}-{n}");
        let counted = target.call(&worker, "increment", &increment_key).await?;
        let count = counted
            .as_u64()
            .with_context(|| format!("increment returned {counted}"))?;
        rounds.push(Round {
            await_key,
            increment_key,
            promise,
            sent,
            acknowledged,
            delivered,
            count,
        });
    }
    Ok(rounds)
}

/// What [`check`] found.
#[derive(Debug, Default)]
struct Tally {
    rounds: usize,
    /// Completions answered `true`.
    completions: usize,
    /// Invocations answered with success (queued, awaited, incremented).
    invocations: usize,
    /// Acknowledged effects missing, one line each.
    lost: Vec<String>,
    /// Effects that happened more than once, one line each.
    twice: Vec<String>,
}

/// Reads back everything the clients were told and counts what is missing
/// or doubled: each key started once in the worker's oplog, each promise
/// awaited once with the payload whose completion was acknowledged (the
/// same the client was given, the same the store holds), the counter equal
/// to the number of increments, every worker and promise present.
async fn check(target: &Target, workers: &[(String, Vec<Round>)]) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let listed = target
        .ok(
            Method::GET,
            &format!("/v1/components/{}/workers?count=1000", target.cid),
            None,
            None,
        )
        .await?;
    let names: Vec<&str> = listed["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["workerId"]["workerName"].as_str())
        .collect();
    for (worker, rounds) in workers {
        if !names.contains(&worker.as_str()) {
            tally.lost.push(format!("worker {worker} is not listed"));
            continue;
        }
        let oplog = target.oplog(worker).await?;
        let mut started: BTreeMap<String, usize> = BTreeMap::new();
        let mut awaits: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for record in &oplog {
            let entry = &record["entry"];
            match entry["kind"].as_str() {
                Some("invocation-started") => {
                    let key = entry["idempotency_key"].as_str().unwrap_or_default();
                    *started.entry(key.to_owned()).or_default() += 1;
                }
                Some("await-promise") => {
                    let idx = entry["promise"]["oplogIdx"]
                        .as_u64()
                        .with_context(|| format!("no promise in {entry}"))?;
                    awaits
                        .entry(idx)
                        .or_default()
                        .push(text(&entry["payload"])?);
                }
                _ => {}
            }
        }
        for (n, round) in rounds.iter().enumerate() {
            let at = format!("{worker} round {n}");
            tally.rounds += 1;
            tally.invocations += 3;
            tally.completions += round.acknowledged.len();
            for key in [&round.await_key, &round.increment_key] {
                match started.get(key.as_str()).copied().unwrap_or(0) {
                    1 => {}
                    0 => tally.lost.push(format!("{at}: {key} never started")),
                    more => tally
                        .twice
                        .push(format!("{at}: {key} started {more} times")),
                }
            }
            if round.acknowledged.len() > 1 {
                tally.twice.push(format!(
                    "{at}: promise {} completed {} times: {:?}",
                    round.promise,
                    round.acknowledged.len(),
                    round.acknowledged
                ));
            }
            // The payload that must have reached the worker: the one
            // acknowledged, else (the answer was cut off by the kill) one of
            // those sent.
            let expected: Vec<&String> = if round.acknowledged.is_empty() {
                round.sent.iter().collect()
            } else {
                round.acknowledged.iter().collect()
            };
            if !expected.contains(&&round.delivered) {
                tally.lost.push(format!(
                    "{at}: the invocation returned {:?}, expected one of {expected:?}",
                    round.delivered
                ));
            }
            let awaited = awaits.get(&round.promise).cloned().unwrap_or_default();
            match awaited.as_slice() {
                [one] if *one == round.delivered => {}
                [] => tally.lost.push(format!(
                    "{at}: promise {} never awaited in the oplog",
                    round.promise
                )),
                [one] => tally.lost.push(format!(
                    "{at}: the oplog awaited {one:?}, the invocation returned {:?}",
                    round.delivered
                )),
                more => tally.twice.push(format!(
                    "{at}: promise {} awaited {} times: {more:?}",
                    round.promise,
                    more.len()
                )),
            }
            let expected_count = n as u64 + 1;
            if round.count > expected_count {
                tally.twice.push(format!(
                    "{at}: increment returned {} (expected {expected_count})",
                    round.count
                ));
            } else if round.count < expected_count {
                tally.lost.push(format!(
                    "{at}: increment returned {} (expected {expected_count})",
                    round.count
                ));
            }
            let shown = target
                .send(
                    Method::GET,
                    &format!("{}/promises/{}", target.worker(worker), round.promise),
                    None,
                    None,
                )
                .await?;
            if shown.status != 200 || shown.body["status"] != "completed" {
                tally.lost.push(format!(
                    "{at}: promise {} is {} {}",
                    round.promise, shown.status, shown.body
                ));
            } else if text(&shown.body["data"])? != round.delivered {
                tally.lost.push(format!(
                    "{at}: promise {} holds {}, the worker got {:?}",
                    round.promise, shown.body["data"], round.delivered
                ));
            }
            // The stored results answer the same keys again.
            let again = text(
                &target
                    .call(worker, "create-and-await", &round.await_key)
                    .await?,
            )?;
            if again != round.delivered {
                tally.lost.push(format!(
                    "{at}: {} answers {again:?} now, {:?} before",
                    round.await_key, round.delivered
                ));
            }
            let again = target
                .call(worker, "increment", &round.increment_key)
                .await?;
            if again.as_u64() != Some(round.count) {
                tally.lost.push(format!(
                    "{at}: {} answers {again} now, {} before",
                    round.increment_key, round.count
                ));
            }
        }
        // Nothing else ran: the next increment counts one more.
        let next = target
            .call(worker, "increment", &format!("increment-{worker}-final"))
            .await?;
        let expected = rounds.len() as u64 + 1;
        if next.as_u64() != Some(expected) {
            tally.twice.push(format!(
                "{worker}: a fresh increment returned {next}, expected {expected}"
            ));
        }
    }
    let pending = target
        .ok(
            Method::GET,
            &format!("/v1/promises?status=pending&component={}", target.cid),
            None,
            None,
        )
        .await?;
    if pending["promises"]
        .as_array()
        .is_some_and(|promises| !promises.is_empty())
    {
        tally
            .lost
            .push(format!("promises still pending at the end: {pending}"));
    }
    Ok(tally)
}

/// Starts one [`drive`] per worker on `runtime`.
fn spawn_drivers(
    runtime: &tokio::runtime::Runtime,
    target: &Arc<Target>,
    workers: &[String],
    rng: &Rng,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Round>>>> {
    workers
        .iter()
        .enumerate()
        .map(|(i, worker)| {
            runtime.spawn(drive(
                Arc::clone(target),
                worker.clone(),
                rng.fork(i as u64),
            ))
        })
        .collect()
}

/// Sets `stop` and collects what every driver saw.
fn stop_drivers(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    workers: &[String],
    drivers: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Round>>>>,
) -> anyhow::Result<Vec<(String, Vec<Round>)>> {
    target.stop.store(true, Ordering::SeqCst);
    let mut out = Vec::new();
    for (worker, driver) in workers.iter().zip(drivers) {
        let rounds = runtime
            .block_on(driver)?
            .with_context(|| format!("the client of {worker}"))?;
        out.push((worker.clone(), rounds));
    }
    Ok(out)
}

#[test]
fn kill_9_at_random_moments_under_load_loses_and_repeats_nothing() -> anyhow::Result<()> {
    const WORKERS: usize = 20;
    const CYCLES: usize = 8;
    let seed = seed();
    println!("chaos: seed {seed} (VOW_FAULTS_SEED={seed} repeats the kill times)");
    let began = Instant::now();
    let harness = vow_tests::guest("harness")?;
    let data = tempfile::tempdir()?;
    let mut server = Server::start_in(data.path(), &[&harness], &[])?;
    let cid = server.component_id("harness")?;
    let runtime = runtime()?;
    let target = Arc::new(Target::new(&server.url, &cid, Duration::from_secs(300))?);
    let workers: Vec<String> = (0..WORKERS).map(|i| format!("chaos-{i:02}")).collect();
    runtime.block_on(async {
        for worker in &workers {
            target.start_worker(worker).await?;
        }
        anyhow::Ok(())
    })?;

    let mut rng = Rng(seed);
    let drivers = spawn_drivers(&runtime, &target, &workers, &rng);
    for cycle in 0..CYCLES {
        std::thread::sleep(rng.millis(500, 2500));
        server.kill()?;
        // Every other server evicts parked workers at once, so that
        // completions also find workers that must be replayed first.
        let evict: &[&str] = if cycle % 2 == 0 {
            &["--evict-after", "0"]
        } else {
            &[]
        };
        server = Server::start_in(data.path(), &[&harness], evict)?;
        target.set_url(&server.url);
    }
    // Some rounds on the last server before the clients stop.
    std::thread::sleep(Duration::from_millis(500));
    let seen = stop_drivers(&runtime, &target, &workers, drivers)?;
    let tally = runtime.block_on(check(&target, &seen))?;
    println!(
        "chaos: {CYCLES} cycles, {} completions acknowledged, {} invocations acknowledged, \
         lost {}, delivered twice {} ({} rounds on {WORKERS} workers, {} requests sent again, \
         seed {seed}, {:.1} s)",
        tally.completions,
        tally.invocations,
        tally.lost.len(),
        tally.twice.len(),
        tally.rounds,
        target.transport_errors.load(Ordering::SeqCst) + target.unavailable.load(Ordering::SeqCst),
        began.elapsed().as_secs_f64()
    );
    assert!(
        tally.lost.is_empty(),
        "lost (seed {seed}): {:#?}",
        tally.lost
    );
    assert!(
        tally.twice.is_empty(),
        "delivered twice (seed {seed}): {:#?}",
        tally.twice
    );
    assert!(
        tally.rounds >= WORKERS && tally.completions > 0,
        "too little happened to tell: {tally:?}"
    );
    Ok(())
}

#[test]
fn a_hundred_clients_complete_one_promise_and_exactly_one_wins() -> anyhow::Result<()> {
    const CLIENTS: usize = 100;
    let harness = vow_tests::guest("harness")?;
    let data = tempfile::tempdir()?;
    let server = Server::start_in(data.path(), &[&harness], &[])?;
    let cid = server.component_id("harness")?;
    let runtime = runtime()?;
    let target = Arc::new(Target::new(&server.url, &cid, QUICK)?);
    let (answers, delivered, stored, oplog) = runtime.block_on(async {
        target.start_worker("contested").await?;
        target
            .queue("contested", "create-and-await", "once")
            .await?;
        let promise = target.awaited("contested", 0).await?;
        let url = format!("{}{}/complete", target.url(), target.worker("contested"));
        let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (url, barrier) = (url.clone(), Arc::clone(&barrier));
                // A client of its own each: its own connection.
                let http = reqwest::Client::new();
                tokio::spawn(async move {
                    let payload = format!("payload of client {i}");
                    let body = json!({ "oplogIdx": promise, "data": payload.as_bytes() });
                    barrier.wait().await;
                    let reply = request(&http, Method::POST, &url, Some(&body), None).await;
                    (payload, reply)
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            let (payload, reply) = task.await?;
            let reply = reply.with_context(|| format!("{payload}: no answer"))?;
            answers.push((payload, reply));
        }
        let delivered = text(&target.call("contested", "create-and-await", "once").await?)?;
        let stored = target
            .ok(
                Method::GET,
                &format!("{}/promises/{promise}", target.worker("contested")),
                None,
                None,
            )
            .await?;
        let oplog = target.oplog("contested").await?;
        anyhow::Ok((answers, delivered, stored, oplog))
    })?;
    let statuses: Vec<u16> = answers.iter().map(|(_, r)| r.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{answers:?}");
    let winners: Vec<&String> = answers
        .iter()
        .filter(|(_, r)| r.body == json!(true))
        .map(|(p, _)| p)
        .collect();
    let losers = answers
        .iter()
        .filter(|(_, r)| r.body == json!(false))
        .count();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(losers, CLIENTS - 1, "{answers:?}");
    assert_eq!(
        &delivered, winners[0],
        "the worker got the winner's payload"
    );
    assert_eq!(text(&stored["data"])?, delivered, "{stored}");
    let awaited: Vec<&Value> = oplog
        .iter()
        .filter(|r| r["entry"]["kind"] == "await-promise")
        .collect();
    assert_eq!(awaited.len(), 1, "{oplog:?}");
    assert_eq!(text(&awaited[0]["entry"]["payload"])?, delivered);
    Ok(())
}

#[test]
fn sigterm_under_load_finishes_cleanly_and_keeps_every_acknowledged_request() -> anyhow::Result<()>
{
    const WORKERS: usize = 10;
    let seed = seed();
    println!("sigterm: seed {seed}");
    let harness = vow_tests::guest("harness")?;
    let data = tempfile::tempdir()?;
    let server = Server::start_in(data.path(), &[&harness], &[])?;
    let cid = server.component_id("harness")?;
    let runtime = runtime()?;
    let target = Arc::new(Target::new(&server.url, &cid, Duration::from_secs(300))?);
    let workers: Vec<String> = (0..WORKERS).map(|i| format!("term-{i:02}")).collect();
    runtime.block_on(async {
        for worker in &workers {
            target.start_worker(worker).await?;
        }
        anyhow::Ok(())
    })?;
    // A long invocation that is sure to be in flight at the signal: it
    // runs for about 5 s (measured on a shorter run first), well within the
    // server's 30 s of grace.
    let calibration = 200_000_000_u64;
    let took = Instant::now();
    runtime.block_on(async {
        target.start_worker("spinner").await?;
        spin(&target, calibration, "calibration").await
    })?;
    let iterations = (calibration as f64 * 5.0 / took.elapsed().as_secs_f64().max(0.01)) as u64;
    let iterations = iterations.clamp(calibration, 1000 * calibration);

    let mut rng = Rng(seed);
    let drivers = spawn_drivers(&runtime, &target, &workers, &rng);
    let spinning = {
        let target = Arc::clone(&target);
        runtime.spawn(async move {
            let url = format!(
                "{}{}/invoke-and-await?function=spin-for",
                target.url(),
                target.worker("spinner")
            );
            let body = json!({ "params_json": [iterations] });
            request(&target.http, Method::POST, &url, Some(&body), Some("spin")).await
        })
    };
    runtime.block_on(async {
        let path = target.worker("spinner");
        loop {
            let shown = target.ok(Method::GET, &path, None, None).await?;
            if shown["status"] == "Running" {
                return anyhow::Ok(());
            }
            ensure!(
                Instant::now() < target.deadline,
                "the spin never ran: {shown}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })?;
    // The load goes on meanwhile; the spin is still running at the signal.
    std::thread::sleep(rng.millis(500, 1500));
    ensure!(
        !spinning.is_finished(),
        "the spin ended before the signal: calibration was off"
    );

    target.draining.store(true, Ordering::SeqCst);
    let signalled = Instant::now();
    server.terminate()?;
    // Requests in flight finish within the server's 30 s grace period:
    // none of these waits on a promise that is not completed yet.
    let exited = server.wait_exit(Duration::from_secs(60))?;
    target.draining.store(false, Ordering::SeqCst);
    let drained = signalled.elapsed();
    assert!(exited.status.success(), "{exited:#?}");
    assert!(
        exited.stderr.contains("shutting down") && exited.stderr.ends_with("stopped\n"),
        "{}",
        exited.stderr
    );
    assert!(!exited.stderr.contains("panicked"), "{}", exited.stderr);
    // The invocation in flight was answered in full before the server
    // stopped.
    let spun = runtime
        .block_on(spinning)?
        .context("the invocation in flight at SIGTERM got no full answer")?;
    assert_eq!(spun.status, 200, "{spun:?}");
    let spun = spun.body["result"].as_u64().context("no result")?;

    let server = Server::start_in(data.path(), &[&harness], &[])?;
    target.set_url(&server.url);
    // It is stored: the same key answers the same, and it ran once.
    let again = runtime.block_on(spin(&target, iterations, "spin"))?;
    assert_eq!(again, spun);
    let started = runtime
        .block_on(target.oplog("spinner"))?
        .iter()
        .filter(|r| r["entry"]["idempotency_key"] == "spin")
        .count();
    assert_eq!(started, 1);
    std::thread::sleep(Duration::from_millis(1000));
    let seen = stop_drivers(&runtime, &target, &workers, drivers)?;
    let tally = runtime.block_on(check(&target, &seen))?;
    println!(
        "sigterm: exited {} after {:.1} s; {} answers read while draining, {} requests sent \
         again; {} completions acknowledged, {} invocations acknowledged, lost {}, delivered \
         twice {}",
        exited.status,
        drained.as_secs_f64(),
        target.answered_draining.load(Ordering::SeqCst),
        target.transport_errors.load(Ordering::SeqCst) + target.unavailable.load(Ordering::SeqCst),
        tally.completions,
        tally.invocations,
        tally.lost.len(),
        tally.twice.len(),
    );
    assert!(
        tally.lost.is_empty(),
        "lost (seed {seed}): {:#?}",
        tally.lost
    );
    assert!(
        tally.twice.is_empty(),
        "delivered twice (seed {seed}): {:#?}",
        tally.twice
    );
    assert!(tally.rounds >= WORKERS, "too little happened: {tally:?}");
    Ok(())
}

/// `spin-for(iterations)` on the worker `spinner`, with a key.
async fn spin(target: &Target, iterations: u64, key: &str) -> anyhow::Result<u64> {
    let path = format!(
        "{}/invoke-and-await?function=spin-for",
        target.worker("spinner")
    );
    let body = json!({ "params_json": [iterations] });
    let answer = target
        .ok(Method::POST, &path, Some(&body), Some(key))
        .await?;
    answer["result"]
        .as_u64()
        .with_context(|| format!("spin-for answered {answer}"))
}

/// A tmpfs of its own, mounted on a temporary directory for one test and
/// unmounted when dropped (also when the test fails).
struct Tmpfs {
    mount_point: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `kib` KiB; fails saying so if this machine does not
    /// let the test mount one (it needs root).
    fn mount(kib: u64) -> anyhow::Result<Self> {
        let mount_point = tempfile::tempdir()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(mount_point.path())
            .output()
            .context("this test mounts a tmpfs and cannot run mount")?;
        if !out.status.success() {
            bail!(
                "this test needs to mount a tmpfs (run it as root, or where \
                 `mount -t tmpfs` is allowed), and mount failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Self { mount_point })
    }

    fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// `mount -o remount,OPTIONS`.
    fn remount(&self, options: &str) -> anyhow::Result<()> {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .output()?;
        ensure!(
            out.status.success(),
            "remounting {} {options} failed: {}",
            self.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a server that outlived the test): detach it now, the
            // kernel frees it once the last file is closed.
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// Writes `path` until the file system has no room left; how many bytes.
fn fill(path: &Path) -> anyhow::Result<u64> {
    let mut file = std::fs::File::create(path)?;
    let mut written = 0u64;
    for chunk in [64 * 1024, 4096, 512, 1] {
        let bytes = vec![0x5a_u8; chunk];
        loop {
            match file.write(&bytes) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => return Err(e).context("writing the filler"),
            }
        }
    }
    Ok(written)
}

/// `POST` once (no retry), for writes whose failure is the point.
async fn post_once(
    target: &Target,
    path: &str,
    body: &Value,
    key: Option<&str>,
) -> anyhow::Result<Reply> {
    let url = format!("{}{path}", target.url());
    Ok(request(&target.http, Method::POST, &url, Some(body), key).await?)
}

/// The data directory inside a tmpfs.
fn data_dir_of(tmpfs: &Tmpfs) -> PathBuf {
    tmpfs.path().join("data")
}

/// `invoke-and-await` of `increment` on `worker`, sent once.
async fn increment_once(target: &Target, worker: &str, key: &str) -> anyhow::Result<Reply> {
    post_once(
        target,
        &format!(
            "{}/invoke-and-await?function=increment",
            target.worker(worker)
        ),
        &json!({ "params_json": [] }),
        Some(key),
    )
    .await
}

/// `complete` of `worker`'s promise `idx` with `data`, sent once.
async fn complete_once(
    target: &Target,
    worker: &str,
    idx: u64,
    data: &str,
) -> anyhow::Result<Reply> {
    post_once(
        target,
        &format!("{}/complete", target.worker(worker)),
        &json!({ "oplogIdx": idx, "data": data.as_bytes() }),
        None,
    )
    .await
}

/// Asserts that `reply` is the answer to a write on a full disk: a 500 in
/// Golem's error body naming the store and saying it is full.
fn assert_full(reply: &Reply, data: &Path, what: &str) {
    let details = reply.body["golemError"]["details"].as_str().unwrap_or("");
    assert!(
        reply.status == 500
            && reply.body["golemError"]["type"] == "Unknown"
            && details
                == format!(
                    "the store at {} is full: database or disk is full",
                    data.join("vow.sqlite").display()
                ),
        "{what} on a full disk: {reply:?}"
    );
}

/// The names of the component's workers.
async fn worker_names(target: &Target) -> anyhow::Result<Vec<String>> {
    let path = format!("/v1/components/{}/workers?count=1000", target.cid);
    let listed = target.ok(Method::GET, &path, None, None).await?;
    let mut names: Vec<String> = listed["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["workerId"]["workerName"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// The worker `kept` with a promise completed (`kept payload`) and its
/// invocation finished, `counter` counted to 2 (`count-1`, `count-2`), and
/// `waiting` parked on a promise: what a test acknowledged before its fault.
/// The index of `waiting`'s promise.
async fn acknowledged_state(target: &Target) -> anyhow::Result<u64> {
    target.start_worker("kept").await?;
    target.queue("kept", "create-and-await", "kept").await?;
    let kept = target.awaited("kept", 0).await?;
    let done = complete_once(target, "kept", kept, "kept payload").await?;
    ensure!(done.status == 200 && done.body == json!(true), "{done:?}");
    let got = text(&target.call("kept", "create-and-await", "kept").await?)?;
    ensure!(got == "kept payload", "{got}");
    target.start_worker("counter").await?;
    for n in 1..=2_u64 {
        let got = target
            .call("counter", "increment", &format!("count-{n}"))
            .await?;
        ensure!(got == json!(n), "{got}");
    }
    target.start_worker("waiting").await?;
    target
        .queue("waiting", "create-and-await", "waiting")
        .await?;
    target.awaited("waiting", 0).await
}

/// Checks what [`acknowledged_state`] left: `kept`'s result and promise,
/// `counter`'s results under their keys.
async fn assert_acknowledged_state(target: &Target) -> anyhow::Result<()> {
    let got = text(&target.call("kept", "create-and-await", "kept").await?)?;
    ensure!(got == "kept payload", "kept answers {got:?}");
    let promises = target
        .ok(
            Method::GET,
            &format!("{}/promises", target.worker("kept")),
            None,
            None,
        )
        .await?;
    let idx = promises["promises"][0]["oplogIdx"]
        .as_u64()
        .with_context(|| format!("kept has no promise: {promises}"))?;
    let promise = target
        .ok(
            Method::GET,
            &format!("{}/promises/{idx}", target.worker("kept")),
            None,
            None,
        )
        .await?;
    ensure!(
        promise["status"] == "completed" && text(&promise["data"])? == "kept payload",
        "{promise}"
    );
    for n in 1..=2_u64 {
        let got = target
            .call("counter", "increment", &format!("count-{n}"))
            .await?;
        ensure!(got == json!(n), "count-{n} answers {got}");
    }
    Ok(())
}

#[test]
fn a_full_disk_fails_writes_clearly_keeps_serving_reads_and_recovers() -> anyhow::Result<()> {
    // Declared first, dropped last: unmounted once the server is gone.
    let tmpfs = Tmpfs::mount(4096)?;
    let data = data_dir_of(&tmpfs);
    let harness = vow_tests::guest("harness")?;
    let server = Server::start_in(&data, &[&harness], &[])?;
    let cid = server.component_id("harness")?;
    let runtime = runtime()?;
    let target = Target::new(&server.url, &cid, QUICK)?;
    let workers = format!("/v1/components/{cid}/workers");
    let waiting = runtime.block_on(async {
        let waiting = acknowledged_state(&target).await?;
        target.start_worker("doomed").await?;
        anyhow::Ok(waiting)
    })?;

    // No room left: the filler takes every free block of the tmpfs.
    let filler = tmpfs.path().join("filler");
    fill(&filler)?;
    runtime.block_on(async {
        // A worker with a large environment.
        let pad = "x".repeat(64 * 1024);
        let body = json!({ "name": "padded", "env": { "PAD": pad } });
        let reply = post_once(&target, &workers, &body, None).await?;
        assert_full(&reply, &data, "starting a worker");
        let reply = complete_once(&target, "waiting", waiting, "while full").await?;
        assert_full(&reply, &data, "completing a promise");
        let reply = increment_once(&target, "doomed", "doomed-1").await?;
        assert_full(&reply, &data, "invoking");
        // Reads are served from what is stored.
        assert_acknowledged_state(&target).await?;
        let shown = target
            .ok(
                Method::GET,
                &format!("{}/promises/{waiting}", target.worker("waiting")),
                None,
                None,
            )
            .await?;
        ensure!(shown["status"] == "pending", "{shown}");
        let names = worker_names(&target).await?;
        ensure!(
            names == ["counter", "doomed", "kept", "waiting"],
            "{names:?}"
        );
        target
            .ok(Method::GET, &format!("/v1/components/{cid}"), None, None)
            .await?;
        target.oplog("counter").await?;
        anyhow::Ok(())
    })?;

    // Room again: writes succeed without a restart.
    std::fs::remove_file(&filler)?;
    runtime.block_on(async {
        let reply = post_once(&target, &workers, &json!({ "name": "after" }), None).await?;
        ensure!(reply.status == 200, "{reply:?}");
        let reply = complete_once(&target, "waiting", waiting, "room again").await?;
        ensure!(
            reply.status == 200 && reply.body == json!(true),
            "the refused completion took no effect: {reply:?}"
        );
        let got = text(
            &target
                .call("waiting", "create-and-await", "waiting")
                .await?,
        )?;
        ensure!(got == "room again", "{got}");
        let got = increment_once(&target, "counter", "count-3").await?;
        ensure!(got.body == json!({ "result": 3 }), "{got:?}");
        let got = increment_once(&target, "after", "after-1").await?;
        ensure!(got.body == json!({ "result": 1 }), "{got:?}");
        anyhow::Ok(())
    })?;

    // Everything acknowledged is there after a restart; nothing refused is.
    server.kill()?;
    let server = Server::start_in(&data, &[&harness], &[])?;
    target.set_url(&server.url);
    runtime.block_on(async {
        assert_acknowledged_state(&target).await?;
        let got = increment_once(&target, "counter", "count-3").await?;
        ensure!(got.body == json!({ "result": 3 }), "{got:?}");
        let got = text(
            &target
                .call("waiting", "create-and-await", "waiting")
                .await?,
        )?;
        ensure!(got == "room again", "{got}");
        let names = worker_names(&target).await?;
        ensure!(
            names == ["after", "counter", "doomed", "kept", "waiting"],
            "{names:?}"
        );
        // The invocation refused on the full disk left nothing behind.
        let got = increment_once(&target, "doomed", "doomed-2").await?;
        ensure!(got.body == json!({ "result": 1 }), "{got:?}");
        anyhow::Ok(())
    })?;
    drop(server);
    Ok(())
}

#[test]
fn a_worker_invoked_on_a_full_disk_works_again_once_there_is_room() -> anyhow::Result<()> {
    // The refused invocation may have run in memory (the job is queued
    // while its `Enqueue` write is in flight) and its journal counted
    // entries the store refused: the worker drops that instance after the
    // failed write and reloads from the store, so it neither keeps the
    // effect nor stays wedged on the log's continuity check.
    let tmpfs = Tmpfs::mount(4096)?;
    let data = data_dir_of(&tmpfs);
    let harness = vow_tests::guest("harness")?;
    let server = Server::start_in(&data, &[&harness], &[])?;
    let cid = server.component_id("harness")?;
    let runtime = runtime()?;
    let target = Target::new(&server.url, &cid, QUICK)?;
    runtime.block_on(acknowledged_state(&target))?;
    let filler = tmpfs.path().join("filler");
    fill(&filler)?;
    let refused = runtime.block_on(increment_once(&target, "counter", "count-3"))?;
    assert_full(&refused, &data, "invoking");
    std::fs::remove_file(&filler)?;
    // The refused invocation took no effect: the count goes on from 2.
    let got = runtime.block_on(increment_once(&target, "counter", "count-4"))?;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, json!({ "result": 3 }));
    drop(server);
    Ok(())
}

/// `vow serve` on a data directory that is on a read-only file system:
/// it refuses to start, with one line naming the directory, the database
/// and `reason`.
fn assert_refused_read_only(data: &Path, harness: &Path, reason: &str) -> anyhow::Result<()> {
    let backend = crate::support::Backend::DataDir(data.to_owned());
    let finished = match Server::start_or_exit(&backend, &[harness], &[])? {
        Ok(server) => bail!(
            "vow serve started on a read-only data directory: {}",
            server.banner
        ),
        Err(finished) => finished.code(1)?,
    };
    println!("read-only: vow serve answered {:?}", finished.stderr);
    assert_eq!(finished.stdout, "", "nothing is served");
    let error = finished
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .with_context(|| format!("no error line: {}", finished.stderr))?;
    assert_eq!(
        error,
        format!(
            "error: cannot open the data directory {}: cannot open the store at {}: {reason}",
            data.display(),
            data.join("vow.sqlite").display()
        ),
        "{}",
        finished.stderr
    );
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
    Ok(())
}

#[test]
fn a_read_only_data_directory_is_refused_at_start_and_left_intact() -> anyhow::Result<()> {
    let tmpfs = Tmpfs::mount(16 * 1024)?;
    let data = data_dir_of(&tmpfs);
    let harness = vow_tests::guest("harness")?;
    let server = Server::start_in(&data, &[&harness], &[])?;
    let cid = server.component_id("harness")?;
    let runtime = runtime()?;
    let target = Target::new(&server.url, &cid, QUICK)?;
    runtime.block_on(acknowledged_state(&target))?;

    // Stopped cleanly (SIGTERM): SQLite closes the database.
    server.terminate()?;
    let stopped = server.wait_exit(QUICK)?;
    assert!(stopped.status.success(), "{stopped:#?}");
    tmpfs.remount("ro")?;
    assert_refused_read_only(
        &data,
        &harness,
        "the database can only be opened read-only: Read-only file system (os error 30)",
    )?;

    // Killed (SIGKILL) while a worker waits: the WAL is left behind.
    tmpfs.remount("rw")?;
    let server = Server::start_in(&data, &[&harness], &[])?;
    target.set_url(&server.url);
    runtime.block_on(assert_acknowledged_state(&target))?;
    server.kill()?;
    ensure!(
        data.join("vow.sqlite-wal").exists() && data.join("vow.sqlite-shm").exists(),
        "a killed server leaves its WAL behind"
    );
    tmpfs.remount("ro")?;
    assert_refused_read_only(
        &data,
        &harness,
        "the database can only be opened read-only: Read-only file system (os error 30)",
    )?;

    // Writable again: nothing was lost or changed by the refused starts.
    tmpfs.remount("rw")?;
    let server = Server::start_in(&data, &[&harness], &[])?;
    target.set_url(&server.url);
    runtime.block_on(async {
        assert_acknowledged_state(&target).await?;
        let got = increment_once(&target, "counter", "count-3").await?;
        ensure!(got.body == json!({ "result": 3 }), "{got:?}");
        anyhow::Ok(())
    })?;
    drop(server);
    Ok(())
}
