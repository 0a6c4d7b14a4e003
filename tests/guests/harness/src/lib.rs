//! Test guest for the runtime: one export per `golem:api/host@1.1.0` function,
//! plus exports that misbehave on purpose (panic, spin, allocate, print).
//!
//! The exports are thin on purpose: each one makes the host calls its name
//! says and returns what the host answered, so the runtime's tests decide what
//! is right.

use std::hint::black_box;
use std::io::Write;

wit_bindgen::generate!({
    inline: r"
        package vow-tests:harness;

        world harness {
            import golem:api/host@1.1.0;
            import vow:host/promises@0.1.0;
            use golem:api/host@1.1.0.{
                component-id, get-workers, persistence-level, promise-id, retry-policy,
                update-mode, uuid, worker-any-filter, worker-id, worker-metadata,
            };
            use vow:host/promises@0.1.0.{promise-options, settlement, link-action, completion-link};

            /// `vow:host/promises.create`.
            export vow-create: func(options: promise-options) -> promise-id;
            /// `vow:host/promises.reject`.
            export vow-reject: func(id: promise-id, message: string, data: list<u8>) -> bool;
            /// `vow:host/promises.wait`.
            export vow-wait: func(id: promise-id) -> settlement;
            /// `vow:host/promises.link`.
            export vow-link: func(id: promise-id, action: link-action, expires-in-ms: option<u64>) -> result<completion-link, string>;
            /// Creates a promise, mints a completion link for it, prints
            /// `link <url>` (or `link <token>` without a URL) on stdout,
            /// awaits the promise and returns its payload.
            export approval-link: func() -> list<u8>;
            /// `vow:host/promises.poll`.
            export vow-poll: func(id: promise-id) -> option<settlement>;
            /// Subscribes to each promise and to a timer of `timeout-ms`
            /// (the last position), polls them once with `wasi:io/poll`, adds
            /// the sum of (position + 1) of the ready ones to the counter of
            /// `increment`, and returns the ready positions.
            export poll-sum: func(ids: list<promise-id>, timeout-ms: u64) -> list<u32>;
            /// `vow:host/promises.wait-any`.
            export vow-wait-any: func(ids: list<promise-id>, timeout-ms: option<u64>) -> option<tuple<u32, settlement>>;
            /// `vow:host/promises.wait-all`.
            export vow-wait-all: func(ids: list<promise-id>, timeout-ms: option<u64>) -> option<list<settlement>>;
            /// Creates `n` promises with Golem's `create-promise`, then waits
            /// for all of them with `wait-all`.
            export gather: func(n: u32, timeout-ms: option<u64>) -> option<list<settlement>>;
            /// Creates `n` promises, then `wait-any` on them.
            export first-of: func(n: u32, timeout-ms: option<u64>) -> option<tuple<u32, settlement>>;

            /// Handlers that settle promises, for `when` and `then`:
            /// the input twice.
            export double: func(input: list<u8>) -> list<u8>;
            /// The input with its first byte plus one (an empty input
            /// becomes [1]).
            export inc: func(input: list<u8>) -> list<u8>;
            /// Rejects with `refused <input as text>`.
            export refuse: func(input: list<u8>) -> result<list<u8>, string>;
            /// Panics.
            export crash: func(input: list<u8>) -> list<u8>;
            /// Takes the settlement: a payload in upper case, or an error
            /// turned into the payload `handled <kind>: <message>`.
            export recover: func(settled: settlement) -> result<list<u8>, string>;
            /// Returns nothing, leaving its promise pending; prints
            /// `deferred <id>` of `current` on stdout.
            export defer: func(input: list<u8>);
            /// Counts the payloads of an `all` settlement: their number
            /// and total length, as text `N payloads, M bytes`.
            export count: func(settled: settlement) -> result<list<u8>, string>;
            /// A function that cannot settle a promise.
            export unfit: func(n: u32) -> u32;
            /// The wall clock when it started, in nanoseconds since the
            /// epoch (8 bytes, little-endian), whatever it was given: when
            /// a continuation began to run, for benchmarks.
            export stamp: func(settled: settlement) -> list<u8>;

            /// `when` on an export of this component.
            export start-when: func(function: string, input: list<u8>, options: promise-options) -> result<promise-id, string>;
            /// `when` on an export of another component.
            export start-when-in: func(component: component-id, function: string, input: list<u8>) -> result<promise-id, string>;
            /// `then` with an export of this component.
            export start-then: func(source: promise-id, function: string, options: promise-options) -> result<promise-id, string>;
            /// `all`.
            export start-all: func(ids: list<promise-id>, options: promise-options) -> result<promise-id, string>;
            /// `any`.
            export start-any: func(ids: list<promise-id>, options: promise-options) -> result<promise-id, string>;
            /// `n` whens of `double` (input [i mod 256]), their `all`, a
            /// `then` of `count`, and `wait` on it.
            export fan-out: func(n: u32) -> settlement;
            /// A `when` of `inc` on [0], then `n` thens of `inc`, and
            /// `wait` on the last.
            export chain: func(n: u32) -> settlement;

            /// Returns `n + 1` (wrapping); touches nothing on the host.
            export ping: func(n: u32) -> u32;

            /// `create-promise`.
            export new-promise: func() -> promise-id;
            /// `await-promise`.
            export await-payload: func(id: promise-id) -> list<u8>;
            /// `complete-promise`.
            export complete: func(id: promise-id, data: list<u8>) -> bool;
            /// `delete-promise`.
            export delete: func(id: promise-id);
            /// Creates a promise, prints `waiting on <id-text>` on stdout,
            /// awaits it and returns the payload.
            export create-and-await: func() -> list<u8>;
            /// Creates a promise, completes it with `data`, then awaits it.
            export complete-then-await: func(data: list<u8>) -> list<u8>;
            /// Creates a promise, completes it with `first` and then `second`,
            /// and awaits it: both completion results and the payload.
            export double-complete: func(first: list<u8>, second: list<u8>) -> tuple<bool, bool, list<u8>>;
            /// Creates a promise, deletes it, then awaits it (the host traps).
            export delete-then-await: func() -> list<u8>;

            /// Panics with `message`.
            export fail: func(message: string);
            /// Loops forever.
            export spin: func();
            /// Loops `iterations` times and returns a value computed by the loop.
            export spin-for: func(iterations: u64) -> u64;
            /// Writes `out` to stdout and `err` to stderr, both flushed.
            export print: func(out: string, err: string);
            /// The worker's environment variables.
            export get-env: func() -> list<tuple<string, string>>;
            /// The worker's arguments.
            export get-args: func() -> list<string>;
            /// Allocates and writes `mebibytes` MiB, holds them until it
            /// returns, and returns how many it allocated.
            export allocate: func(mebibytes: u32) -> u32;
            /// Writes `mebibytes` MiB of `x` lines to stdout, then `end` and
            /// a newline; returns the bytes written.
            export flood: func(mebibytes: u32, end: string) -> u64;
            /// Creates `n` promises with `create-promise` and leaves them
            /// pending; returns how many it created.
            export hoard: func(n: u32) -> u32;
            /// Recurses `depth` calls deep (never returns for a huge depth:
            /// the stack runs out first); returns a value computed on the
            /// way back.
            export recurse: func(depth: u64) -> u64;
            /// Tries what a guest might reach for beyond its own memory:
            /// files, sockets, name lookup, stdin, threads. One
            /// (probe, outcome) pair each, the outcome `ok: ...` or
            /// `err: ...` with the error.
            export probe: func() -> list<tuple<string, string>>;

            /// `get-oplog-index`.
            export oplog-index: func() -> u64;
            /// `generate-idempotency-key`.
            export idempotency-key: func() -> uuid;
            /// `get-retry-policy`.
            export get-retry-policy: func() -> retry-policy;
            /// `set-retry-policy`, then `get-retry-policy`.
            export retry-policy-roundtrip: func(policy: retry-policy) -> retry-policy;
            /// `set-oplog-persistence-level`, then `get-oplog-persistence-level`.
            export persistence-roundtrip: func(level: persistence-level) -> persistence-level;
            /// `get-idempotence-mode`, `set-idempotence-mode(mode)`, then
            /// `get-idempotence-mode` again: the values before and after.
            export idempotence-roundtrip: func(mode: bool) -> tuple<bool, bool>;
            /// `get-self-metadata`.
            export self-metadata: func() -> worker-metadata;
            /// `get-worker-metadata`.
            export worker-metadata: func(id: worker-id) -> option<worker-metadata>;
            /// Constructs `get-workers` and calls `get-next` until it returns
            /// `none`: every page, concatenated.
            export list-workers: func(component: component-id, filter: option<worker-any-filter>, precise: bool) -> list<worker-metadata>;
            /// `mark-begin-operation`, `mark-end-operation`, then
            /// `get-oplog-index`: the begin index and the final index.
            export atomic-region: func() -> tuple<u64, u64>;
            /// `oplog-commit`.
            export commit: func(replicas: u8);
            /// `set-oplog-index`.
            export set-oplog-index: func(idx: u64);
            /// Notes the oplog index, completes `target`, and if that call
            /// completed it goes back to the noted index with
            /// `set-oplog-index`; the second time round the completion
            /// answers `false`. Returns the oplog index it started from and
            /// the one it ends at.
            export jump-back: func(target: promise-id) -> tuple<u64, u64>;

            /// Adds one to a counter kept in the guest's memory and returns
            /// it: state that only replay can rebuild.
            export increment: func() -> u64;
            /// Draws what WASI makes nondeterministic: a v4 UUID (random
            /// bytes), the wall clock and the monotonic clock, in
            /// nanoseconds; remembers it for `last-sample`.
            export sample: func() -> tuple<string, u64, u64>;
            /// What the last `sample` returned, from the guest's memory.
            export last-sample: func() -> option<tuple<string, u64, u64>>;
            /// Completes `target` with `data`, then waits on a promise of
            /// its own and returns its payload: two steps a crash can
            /// come between.
            export relay: func(target: promise-id, data: list<u8>) -> list<u8>;
            /// `update-worker`.
            export update-worker: func(id: worker-id, version: u64, mode: update-mode);

            /// Saves the counter and the last sample.
            export golem:api/save-snapshot@1.1.0;
            /// Restores what `save` saved; refuses bytes it did not write.
            export golem:api/load-snapshot@1.1.0;
            /// How many snapshots this instance loaded (not saved in them:
            /// tells a test whether the worker came back from a snapshot).
            export snapshot-loads: func() -> u32;

            /// One field of every kind of WIT value, for encoding tests.
            record kinds {
                b: bool, u8v: u8, s8v: s8, u16v: u16, s16v: s16, u32v: u32,
                s32v: s32, u64v: u64, s64v: s64, f32v: f32, f64v: f64,
                c: char, text: string, items: list<u16>, pair: tuple<u8, string>,
                shape: shape, color: color, perms: perms, maybe: option<string>,
                outcome: result<u32, string>, done: result, nested: list<option<shape>>,
            }
            variant shape { point, circle(f64), named(string) }
            enum color { red, green, blue }
            flags perms { read, write, exec }
            /// Returns its argument unchanged.
            export echo-kinds: func(k: kinds) -> kinds;
            /// Returns nothing, for the empty result.
            export nothing: func();
            /// Takes a handle, which has no JSON form.
            export take-handle: func(h: borrow<get-workers>) -> u32;
        }
    ",
    // The repository's WIT directory, where `golem:api/host@1.1.0` lives.
    path: "../../../wit",
    // Reuse the SDK's bindings so its promise helpers accept these types.
    with: {
        "golem:api/host@1.1.0": vow_guest::host,
        "vow:host/promises@0.1.0": vow_guest::bindings::vow::host::promises,
        "golem:rpc/types@0.1.1": vow_guest::bindings::golem::rpc::types,
        "wasi:clocks/monotonic-clock@0.2.0": vow_guest::bindings::wasi::clocks::monotonic_clock,
        "wasi:io/poll@0.2.0": vow_guest::bindings::wasi::io::poll,
    },
});

use vow_guest::Promise;
use vow_guest::host;

/// One mebibyte.
const MIB: usize = 1 << 20;

/// Distance between the bytes `allocate` writes, so every page is touched.
const TOUCH_STRIDE: usize = 4096;

struct Component;

use vow_guest::bindings::vow::host::promises as vow;

fn no_options() -> vow::PromiseOptions {
    vow::PromiseOptions { timeout_ms: None, retention_ms: None, payload_type: None }
}

impl Guest for Component {
    fn vow_create(options: vow::PromiseOptions) -> PromiseId {
        vow::create(&options)
    }

    fn vow_reject(id: PromiseId, message: String, data: Vec<u8>) -> bool {
        vow::reject(&id, &message, &data)
    }

    fn vow_wait(id: PromiseId) -> vow::Settlement {
        vow::wait(&id)
    }

    fn vow_link(
        id: PromiseId,
        action: vow::LinkAction,
        expires_in_ms: Option<u64>,
    ) -> Result<vow::CompletionLink, String> {
        vow::link(&id, action, expires_in_ms)
    }

    fn approval_link() -> Vec<u8> {
        let id = host::create_promise();
        let link = match vow::link(&id, vow::LinkAction::Complete, None) {
            Ok(link) => link,
            Err(error) => panic!("no link: {error}"),
        };
        println!("link {}", link.url.unwrap_or(link.token));
        let _ = std::io::stdout().flush();
        host::await_promise(&id)
    }

    fn vow_poll(id: PromiseId) -> Option<vow::Settlement> {
        vow::poll(&id)
    }

    fn poll_sum(ids: Vec<PromiseId>, timeout_ms: u64) -> Vec<u32> {
        use vow_guest::bindings::wasi::clocks::monotonic_clock;
        use vow_guest::bindings::wasi::io::poll;
        let mut pollables: Vec<poll::Pollable> = ids.iter().map(vow::subscribe).collect();
        pollables.push(monotonic_clock::subscribe_duration(timeout_ms * 1_000_000));
        let refs: Vec<&poll::Pollable> = pollables.iter().collect();
        let ready = poll::poll(&refs);
        let sum: u64 = ready.iter().map(|i| u64::from(*i) + 1).sum();
        COUNTER.with(|c| c.set(c.get() + sum));
        ready
    }

    fn vow_wait_any(ids: Vec<PromiseId>, timeout_ms: Option<u64>) -> Option<(u32, vow::Settlement)> {
        vow::wait_any(&ids, timeout_ms)
    }

    fn vow_wait_all(ids: Vec<PromiseId>, timeout_ms: Option<u64>) -> Option<Vec<vow::Settlement>> {
        vow::wait_all(&ids, timeout_ms)
    }

    fn gather(n: u32, timeout_ms: Option<u64>) -> Option<Vec<vow::Settlement>> {
        let ids: Vec<PromiseId> = (0..n).map(|_| host::create_promise()).collect();
        vow::wait_all(&ids, timeout_ms)
    }

    fn double(input: Vec<u8>) -> Vec<u8> {
        [input.as_slice(), input.as_slice()].concat()
    }

    fn inc(mut input: Vec<u8>) -> Vec<u8> {
        match input.first_mut() {
            Some(first) => *first = first.wrapping_add(1),
            None => input.push(1),
        }
        input
    }

    fn refuse(input: Vec<u8>) -> Result<Vec<u8>, String> {
        Err(format!("refused {}", String::from_utf8_lossy(&input)))
    }

    fn crash(_input: Vec<u8>) -> Vec<u8> {
        panic!("crash was asked to crash");
    }

    fn recover(settled: vow::Settlement) -> Result<Vec<u8>, String> {
        match settled {
            Ok(payload) => Ok(payload.to_ascii_uppercase()),
            Err(error) => {
                let kind = match error.kind {
                    vow::ErrorKind::Rejected => "rejected",
                    vow::ErrorKind::TimedOut => "timed-out",
                    vow::ErrorKind::Failed => "failed",
                };
                Ok(format!("handled {kind}: {}", error.message).into_bytes())
            }
        }
    }

    fn defer(_input: Vec<u8>) {
        let current = vow::current().map(|id| vow_guest::format_promise_id(&id));
        println!("deferred {}", current.unwrap_or_default());
    }

    fn count(settled: vow::Settlement) -> Result<Vec<u8>, String> {
        let payload = settled.map_err(|e| format!("the all was rejected: {}", e.message))?;
        let mut rest = payload.as_slice();
        let (mut n, mut bytes) = (0, 0);
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Err("a malformed all payload".to_owned());
            }
            n += 1;
            bytes += len;
            rest = &tail[len..];
        }
        Ok(format!("{n} payloads, {bytes} bytes").into_bytes())
    }

    fn unfit(n: u32) -> u32 {
        n
    }

    fn stamp(_settled: vow::Settlement) -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        now.to_le_bytes().to_vec()
    }

    fn start_when(function: String, input: Vec<u8>, options: vow::PromiseOptions) -> Result<PromiseId, String> {
        let target = vow::Target { component: None, function };
        vow::when(&target, &input, &options)
    }

    fn start_when_in(component: ComponentId, function: String, input: Vec<u8>) -> Result<PromiseId, String> {
        let target = vow::Target { component: Some(component), function };
        vow::when(&target, &input, &no_options())
    }

    fn start_then(source: PromiseId, function: String, options: vow::PromiseOptions) -> Result<PromiseId, String> {
        let target = vow::Target { component: None, function };
        vow::then(&source, &target, &options)
    }

    fn start_all(ids: Vec<PromiseId>, options: vow::PromiseOptions) -> Result<PromiseId, String> {
        vow::all(&ids, &options)
    }

    fn start_any(ids: Vec<PromiseId>, options: vow::PromiseOptions) -> Result<PromiseId, String> {
        vow::any(&ids, &options)
    }

    fn fan_out(n: u32) -> vow::Settlement {
        let own = |function: &str| vow::Target { component: None, function: function.to_owned() };
        let jobs: Result<Vec<PromiseId>, String> = (0..n)
            .map(|i| vow::when(&own("double"), &[(i % 256) as u8], &no_options()))
            .collect();
        let joined = jobs.and_then(|jobs| vow::all(&jobs, &no_options()));
        match joined.and_then(|all| vow::then(&all, &own("count"), &no_options())) {
            Ok(last) => vow::wait(&last),
            Err(message) => Err(vow::Error { kind: vow::ErrorKind::Failed, message, data: Vec::new() }),
        }
    }

    fn chain(n: u32) -> vow::Settlement {
        let inc = vow::Target { component: None, function: "inc".to_owned() };
        let mut last = vow::when(&inc, &[0], &no_options());
        for _ in 0..n {
            last = last.and_then(|p| vow::then(&p, &inc, &no_options()));
        }
        match last {
            Ok(last) => vow::wait(&last),
            Err(message) => Err(vow::Error { kind: vow::ErrorKind::Failed, message, data: Vec::new() }),
        }
    }

    fn first_of(n: u32, timeout_ms: Option<u64>) -> Option<(u32, vow::Settlement)> {
        let ids: Vec<PromiseId> = (0..n).map(|_| host::create_promise()).collect();
        vow::wait_any(&ids, timeout_ms)
    }

    fn echo_kinds(k: Kinds) -> Kinds {
        k
    }

    fn nothing() {}

    fn take_handle(_handle: &host::GetWorkers) -> u32 {
        0
    }

    fn ping(n: u32) -> u32 {
        n.wrapping_add(1)
    }

    fn new_promise() -> PromiseId {
        host::create_promise()
    }

    fn await_payload(id: PromiseId) -> Vec<u8> {
        host::await_promise(&id)
    }

    fn complete(id: PromiseId, data: Vec<u8>) -> bool {
        host::complete_promise(&id, &data)
    }

    fn delete(id: PromiseId) {
        host::delete_promise(&id);
    }

    fn create_and_await() -> Vec<u8> {
        let promise = Promise::new();
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "waiting on {promise}").expect("stdout is writable");
        stdout.flush().expect("stdout is flushable");
        drop(stdout);
        promise.wait()
    }

    fn complete_then_await(data: Vec<u8>) -> Vec<u8> {
        let promise = Promise::new();
        promise.complete(&data);
        promise.wait()
    }

    fn double_complete(first: Vec<u8>, second: Vec<u8>) -> (bool, bool, Vec<u8>) {
        let promise = Promise::new();
        let first = promise.complete(&first);
        let second = promise.complete(&second);
        (first, second, promise.wait())
    }

    fn delete_then_await() -> Vec<u8> {
        let promise = Promise::new();
        let id = promise.id().clone();
        promise.delete();
        Promise::from_id(id).wait()
    }

    fn fail(message: String) {
        panic!("{message}");
    }

    fn spin() {
        let mut counter = 0u64;
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }

    fn spin_for(iterations: u64) -> u64 {
        let mut value = 0u64;
        for i in 0..iterations {
            value = black_box(value.wrapping_mul(31).wrapping_add(i));
        }
        value
    }

    fn print(out: String, err: String) {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(out.as_bytes())
            .expect("stdout is writable");
        stdout.flush().expect("stdout is flushable");
        let mut stderr = std::io::stderr().lock();
        stderr
            .write_all(err.as_bytes())
            .expect("stderr is writable");
        stderr.flush().expect("stderr is flushable");
    }

    fn get_env() -> Vec<(String, String)> {
        std::env::vars().collect()
    }

    fn get_args() -> Vec<String> {
        std::env::args().collect()
    }

    fn allocate(mebibytes: u32) -> u32 {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        for _ in 0..mebibytes {
            let mut block = vec![0u8; MIB];
            for byte in block.iter_mut().step_by(TOUCH_STRIDE) {
                *byte = 1;
            }
            blocks.push(black_box(block));
        }
        let blocks = black_box(blocks);
        // Every block counts, so none can be dropped before this point.
        let count = blocks.iter().filter(|block| block[0] == 1).count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    fn flood(mebibytes: u32, end: String) -> u64 {
        let line = [b"x".repeat(1023), b"\n".to_vec()].concat();
        let mut stdout = std::io::stdout().lock();
        let mut written = 0u64;
        for _ in 0..mebibytes as usize * (MIB / line.len()) {
            stdout.write_all(&line).expect("stdout is writable");
            written += line.len() as u64;
        }
        writeln!(stdout, "{end}").expect("stdout is writable");
        stdout.flush().expect("stdout is flushable");
        written + end.len() as u64 + 1
    }

    fn hoard(n: u32) -> u32 {
        let mut created = 0;
        for _ in 0..n {
            black_box(host::create_promise());
            created += 1;
        }
        created
    }

    fn recurse(depth: u64) -> u64 {
        descend(0, depth)
    }

    fn probe() -> Vec<(String, String)> {
        probes()
    }

    fn oplog_index() -> u64 {
        host::get_oplog_index()
    }

    fn idempotency_key() -> Uuid {
        host::generate_idempotency_key()
    }

    fn get_retry_policy() -> RetryPolicy {
        host::get_retry_policy()
    }

    fn retry_policy_roundtrip(policy: RetryPolicy) -> RetryPolicy {
        host::set_retry_policy(policy);
        host::get_retry_policy()
    }

    fn persistence_roundtrip(level: PersistenceLevel) -> PersistenceLevel {
        host::set_oplog_persistence_level(level);
        host::get_oplog_persistence_level()
    }

    fn idempotence_roundtrip(mode: bool) -> (bool, bool) {
        let before = host::get_idempotence_mode();
        host::set_idempotence_mode(mode);
        (before, host::get_idempotence_mode())
    }

    fn self_metadata() -> WorkerMetadata {
        host::get_self_metadata()
    }

    fn worker_metadata(id: WorkerId) -> Option<WorkerMetadata> {
        host::get_worker_metadata(&id)
    }

    fn list_workers(
        component: ComponentId,
        filter: Option<WorkerAnyFilter>,
        precise: bool,
    ) -> Vec<WorkerMetadata> {
        let listing = host::GetWorkers::new(component, filter.as_ref(), precise);
        let mut workers = Vec::new();
        while let Some(page) = listing.get_next() {
            workers.extend(page);
        }
        workers
    }

    fn atomic_region() -> (u64, u64) {
        let begin = host::mark_begin_operation();
        host::mark_end_operation(begin);
        (begin, host::get_oplog_index())
    }

    fn commit(replicas: u8) {
        host::oplog_commit(replicas);
    }

    fn set_oplog_index(idx: u64) {
        host::set_oplog_index(idx);
    }

    fn jump_back(target: PromiseId) -> (u64, u64) {
        let mark = host::get_oplog_index();
        if host::complete_promise(&target, b"jumped") {
            host::set_oplog_index(mark);
            unreachable!("set-oplog-index went back");
        }
        (mark, host::get_oplog_index())
    }

    fn update_worker(id: WorkerId, version: u64, mode: UpdateMode) {
        host::update_worker(&id, version, mode);
    }

    fn increment() -> u64 {
        COUNTER.with(|c| {
            c.set(c.get() + 1);
            c.get()
        })
    }

    fn sample() -> (String, u64, u64) {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let monotonic = vow_guest::bindings::wasi::clocks::monotonic_clock::now();
        let drawn = (uuid::Uuid::new_v4().to_string(), wall, monotonic);
        LAST_SAMPLE.with(|s| *s.borrow_mut() = Some(drawn.clone()));
        drawn
    }

    fn last_sample() -> Option<(String, u64, u64)> {
        LAST_SAMPLE.with(|s| s.borrow().clone())
    }

    fn relay(target: PromiseId, data: Vec<u8>) -> Vec<u8> {
        host::complete_promise(&target, &data);
        Self::create_and_await()
    }

    fn snapshot_loads() -> u32 {
        SNAPSHOT_LOADS.with(std::cell::Cell::get)
    }
}

/// One frame per level, kept on the wasm stack: the value computed on the
/// way back keeps the recursion from becoming a loop.
#[inline(never)]
fn descend(level: u64, depth: u64) -> u64 {
    if level >= depth {
        return level;
    }
    descend(level + 1, depth).wrapping_mul(31) ^ level
}

/// What [`Guest::probe`] reports.
fn probes() -> Vec<(String, String)> {
    use std::io::Read;
    fn outcome<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) -> String {
        match result {
            Ok(value) => format!("ok: {value:?}"),
            Err(error) => format!("err: {error}"),
        }
    }
    let mut out = Vec::new();
    let mut report = |name: &str, text: String| out.push((name.to_owned(), text));
    report("read-dir /", outcome(std::fs::read_dir("/").map(|d| d.count())));
    report("read-dir .", outcome(std::fs::read_dir(".").map(|d| d.count())));
    report("open /etc/passwd", outcome(std::fs::read("/etc/passwd").map(|b| b.len())));
    report("create probe.txt", outcome(std::fs::write("probe.txt", b"probe")));
    report("current-dir", outcome(std::env::current_dir()));
    report(
        "tcp connect 127.0.0.1:9881",
        outcome(std::net::TcpStream::connect("127.0.0.1:9881").map(|_| ())),
    );
    report(
        "tcp listen 127.0.0.1:0",
        outcome(std::net::TcpListener::bind("127.0.0.1:0").map(|_| ())),
    );
    report(
        "udp bind 127.0.0.1:0",
        outcome(std::net::UdpSocket::bind("127.0.0.1:0").map(|_| ())),
    );
    report(
        "resolve localhost",
        outcome(std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)).map(|a| a.count())),
    );
    let mut buffer = [0u8; 64];
    report("read stdin", outcome(std::io::stdin().read(&mut buffer)));
    report(
        "spawn thread",
        outcome(std::thread::Builder::new().spawn(|| ()).map(|_| ())),
    );
    out
}

/// Marks the snapshot format, so `load` refuses anything else.
const SNAPSHOT_MAGIC: &[u8] = b"harness1";

impl exports::golem::api::save_snapshot::Guest for Component {
    fn save() -> Vec<u8> {
        let mut out = SNAPSHOT_MAGIC.to_vec();
        out.extend_from_slice(&COUNTER.with(std::cell::Cell::get).to_le_bytes());
        if let Some((uuid, wall, monotonic)) = LAST_SAMPLE.with(|s| s.borrow().clone()) {
            out.extend_from_slice(&wall.to_le_bytes());
            out.extend_from_slice(&monotonic.to_le_bytes());
            out.extend_from_slice(uuid.as_bytes());
        }
        out
    }
}

impl exports::golem::api::load_snapshot::Guest for Component {
    fn load(bytes: Vec<u8>) -> Result<(), String> {
        let rest = bytes
            .strip_prefix(SNAPSHOT_MAGIC)
            .ok_or("not a harness snapshot")?;
        let word = |at: usize| -> Result<u64, String> {
            rest.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| "truncated snapshot".to_owned())
        };
        COUNTER.with(|c| c.set(word(0).unwrap_or(0)));
        let sample = if rest.len() > 8 {
            let uuid = String::from_utf8(rest[24..].to_vec()).map_err(|e| e.to_string())?;
            Some((uuid, word(8)?, word(16)?))
        } else {
            None
        };
        LAST_SAMPLE.with(|s| *s.borrow_mut() = sample);
        SNAPSHOT_LOADS.with(|n| n.set(n.get() + 1));
        Ok(())
    }
}

thread_local! {
    static SNAPSHOT_LOADS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    static COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static LAST_SAMPLE: std::cell::RefCell<Option<(String, u64, u64)>> =
        const { std::cell::RefCell::new(None) };
}

export!(Component);
