//! Several `vow serve --node-id` processes on one PostgreSQL database
//! (docs/cluster.md): any node answers any request, a killed or cut-off
//! active node is replaced, and nothing runs twice.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Backend, QUICK, Reply, Server, request};

/// The lease of the test clusters: short, so that takeovers are quick,
/// yet long enough that a node busy among the other tests on two cores
/// renews in time.
const TTL: &str = "4";

/// Starts node `id` on the database at `url`; it listens once this returns.
fn node(url: &str, id: &str, components: &[&std::path::Path]) -> anyhow::Result<Server> {
    node_with(url, id, components, &[])
}

/// [`node`] with more flags.
fn node_with(
    url: &str,
    id: &str,
    components: &[&std::path::Path],
    extra: &[&str],
) -> anyhow::Result<Server> {
    let mut flags = vec!["--node-id", id, "--lease-ttl", TTL];
    flags.extend(extra);
    Server::start_on(&Backend::Database(url.to_owned()), components, &flags)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A client of the cluster.
struct Client {
    http: reqwest::Client,
}

impl Client {
    fn new() -> Self {
        Self {
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request as a client of a cluster should: a 503 (no node
    /// active yet, or a standby still forwarding to the node that just
    /// died) is retried after a while, for at most a minute.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = request(&self.http, method.clone(), url, body.as_ref(), key)
                .await
                .with_context(|| url.to_owned())?;
            if reply.status != 503 || Instant::now() >= deadline {
                return Ok(reply);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One request, as it is answered (a 503 included).
    async fn send_once(&self, method: Method, url: &str) -> anyhow::Result<Reply> {
        request(&self.http, method, url, None, None)
            .await
            .with_context(|| url.to_owned())
    }

    /// A request that must answer 200: its body.
    async fn ok(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let reply = self.send(method, url, body, key).await?;
        ensure!(
            reply.status == 200,
            "{url} answered {}: {}",
            reply.status,
            reply.body
        );
        Ok(reply.body)
    }

    /// The id of the component named `name`, asked of `node`.
    async fn component(&self, node: &str, name: &str) -> anyhow::Result<String> {
        let listed = self
            .ok(Method::GET, &format!("{node}/v1/components"), None, None)
            .await?;
        listed["components"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .and_then(|c| c["componentId"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no component {name}: {listed}"))
    }

    /// Starts worker `name` of `component` through `node`.
    async fn start(&self, node: &str, component: &str, name: &str) -> anyhow::Result<()> {
        let url = format!("{node}/v1/components/{component}/workers");
        let reply = self
            .send(Method::POST, &url, Some(json!({ "name": name })), None)
            .await?;
        ensure!(
            reply.status == 200 || reply.status == 201,
            "{url}: {reply:?}"
        );
        Ok(())
    }

    /// Queues `function(param)` on the worker through `node`, with `key`.
    async fn invoke(
        &self,
        node: &str,
        worker: &str,
        function: &str,
        param: Value,
        key: &str,
    ) -> anyhow::Result<()> {
        let url = format!("{node}{worker}/invoke?function={function}");
        let reply = self
            .send(
                Method::POST,
                &url,
                Some(json!({ "params_json": [param] })),
                Some(key),
            )
            .await?;
        ensure!(reply.status < 300, "{url}: {reply:?}");
        Ok(())
    }

    /// `invoke-and-await` through `node` with `key`: the result.
    async fn result(
        &self,
        node: &str,
        worker: &str,
        function: &str,
        param: Value,
        key: &str,
    ) -> anyhow::Result<Value> {
        let url = format!("{node}{worker}/invoke-and-await?function={function}");
        let body = self
            .ok(
                Method::POST,
                &url,
                Some(json!({ "params_json": [param] })),
                Some(key),
            )
            .await?;
        Ok(body["result"].clone())
    }

    /// Completes the promise at oplog index `index` of the worker through
    /// `node`: what it answered (`true` if this completion settled it).
    async fn complete(
        &self,
        node: &str,
        worker: &str,
        index: u64,
        data: &[u8],
    ) -> anyhow::Result<Value> {
        self.ok(
            Method::POST,
            &format!("{node}{worker}/complete"),
            Some(json!({ "oplogIdx": index, "data": data })),
            None,
        )
        .await
    }

    /// Waits until `count` promises are pending and awaited, as `node`
    /// says: worker name → oplog index.
    async fn parked(
        &self,
        node: &str,
        count: usize,
    ) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let deadline = Instant::now() + QUICK;
        loop {
            let listed = self
                .ok(
                    Method::GET,
                    &format!("{node}/v1/promises?status=pending"),
                    None,
                    None,
                )
                .await?;
            let parked: std::collections::BTreeMap<String, u64> = listed["promises"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["awaited"] == true)
                .filter_map(|p| {
                    Some((
                        p["workerName"].as_str()?.to_owned(),
                        p["oplogIdx"].as_u64()?,
                    ))
                })
                .collect();
            if parked.len() >= count {
                return Ok(parked);
            }
            ensure!(
                Instant::now() < deadline,
                "{count} workers never parked: {listed}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many invocations the worker's log says were started and
    /// finished.
    async fn invocations(&self, node: &str, worker: &str) -> anyhow::Result<(usize, usize)> {
        let log = self
            .ok(
                Method::GET,
                &format!("{node}{worker}/oplog?from=0&count=1000"),
                None,
                None,
            )
            .await?;
        let kinds: Vec<&str> = log["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["entry"]["type"].as_str())
            .collect();
        let count = |kind: &str| kinds.iter().filter(|k| **k == kind).count();
        Ok((
            count("ExportedFunctionInvoked"),
            count("ExportedFunctionCompleted"),
        ))
    }

    /// Waits until a request that needs the active node answers 200
    /// through `node`; how long that took.
    async fn until_served(&self, node: &str, path: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let reply = self.send_once(Method::GET, &format!("{node}{path}")).await;
            match reply {
                Ok(reply) if reply.status == 200 => return Ok(started.elapsed()),
                Ok(reply) if reply.status == 503 => {}
                Ok(reply) => bail!("{path} answered {}: {}", reply.status, reply.body),
                Err(_) => {}
            }
            ensure!(started.elapsed() < QUICK, "no node took over");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /v1/nodes` through `node`: node id → role, by id.
    async fn roles(&self, node: &str) -> anyhow::Result<Vec<(String, String)>> {
        let listed = self
            .ok(Method::GET, &format!("{node}/v1/nodes"), None, None)
            .await?;
        let mut roles: Vec<(String, String)> = listed["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                (
                    n["nodeId"].as_str().unwrap_or_default().to_owned(),
                    n["role"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        roles.sort();
        Ok(roles)
    }
}

/// `/v1/components/{cid}/workers/{name}`.
fn worker(component: &str, name: &str) -> String {
    format!("/v1/components/{component}/workers/{name}")
}

/// Three nodes, workers started, invoked and completed through nodes that
/// are not active; every worker resumes with its own payload, once. Two
/// nodes completing one promise at once: one `true`. `vow node list`
/// shows the three.
#[test]
fn three_nodes_answer_for_each_other_and_complete_each_promise_once() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let approval = vow_tests::guest("approval")?;
    let a = node(&url, "a", &[&approval])?;
    a.wait_stderr("node a is active")?;
    let b = node(&url, "b", &[&approval])?;
    let c = node(&url, "c", &[&approval])?;
    b.wait_stderr("requests go to the active node a")?;
    c.wait_stderr("requests go to the active node a")?;
    let nodes = [&a.url, &b.url, &c.url];
    let standbys = [&b.url, &c.url];

    let client = Client::new();
    runtime()?.block_on(async {
        let cid = client.component(&b.url, "approval").await?;
        let workers: Vec<String> = (0..6).map(|i| format!("w{i}")).collect();
        for (i, name) in workers.iter().enumerate() {
            client.start(nodes[i % 3], &cid, name).await?;
            client
                .invoke(
                    standbys[i % 2],
                    &worker(&cid, name),
                    "request-approval",
                    json!(format!("job{i}")),
                    &format!("k{i}"),
                )
                .await?;
        }
        client.start(&c.url, &cid, "race").await?;
        client
            .invoke(
                &b.url,
                &worker(&cid, "race"),
                "request-approval",
                json!("race"),
                "kr",
            )
            .await?;
        let parked = client.parked(&c.url, 7).await?;

        for (i, name) in workers.iter().enumerate() {
            let path = worker(&cid, name);
            let index = parked[name];
            let first = client
                .complete(standbys[i % 2], &path, index, format!("ok-{i}").as_bytes())
                .await?;
            assert_eq!(first, json!(true), "{name}");
            let second = client
                .complete(standbys[(i + 1) % 2], &path, index, b"late")
                .await?;
            assert_eq!(second, json!(false), "{name}");
        }
        // Two nodes at once.
        let race = worker(&cid, "race");
        let (by_b, by_c) = tokio::join!(
            client.complete(&b.url, &race, parked["race"], b"from-b"),
            client.complete(&c.url, &race, parked["race"], b"from-c"),
        );
        let (by_b, by_c) = (by_b?, by_c?);
        let wins = [&by_b, &by_c]
            .iter()
            .filter(|v| ***v == json!(true))
            .count();
        assert_eq!(wins, 1, "b: {by_b}, c: {by_c}");
        let winner = if by_b == json!(true) {
            "from-b"
        } else {
            "from-c"
        };
        let raced = client
            .result(&a.url, &race, "request-approval", json!("race"), "kr")
            .await?;
        assert_eq!(raced, json!(format!("\"race\": {winner}")));

        for (i, name) in workers.iter().enumerate() {
            let path = worker(&cid, name);
            let result = client
                .result(
                    nodes[(i + 2) % 3],
                    &path,
                    "request-approval",
                    json!(format!("job{i}")),
                    &format!("k{i}"),
                )
                .await?;
            assert_eq!(result, json!(format!("\"job{i}\": ok-{i}")), "{name}");
            assert_eq!(client.invocations(&c.url, &path).await?, (1, 1), "{name}");
        }
        let roles = client.roles(&c.url).await?;
        assert_eq!(
            roles,
            [("a", "active"), ("b", "standby"), ("c", "standby")]
                .map(|(n, r)| (n.to_owned(), r.to_owned()))
        );
        anyhow::Ok(())
    })?;

    // The active node reports its load with each renewal (every quarter
    // of the lease).
    let deadline = Instant::now() + QUICK;
    loop {
        let listed = c.client(&["node", "list", "--json"])?.success()?;
        let json: Value = serde_json::from_str(&listed.stdout)?;
        if json["nodes"][0]["load"]["workers"] == 7 {
            break;
        }
        ensure!(Instant::now() < deadline, "no load reported: {json}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = c.client(&["node", "list"])?.success()?;
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert!(lines[0].starts_with("NODE"), "{}", listed.stdout);
    assert!(
        lines[1].starts_with("a ") && lines[1].contains("active"),
        "{}",
        listed.stdout
    );
    assert!(lines[1].contains("7 workers"), "{}", listed.stdout);
    assert!(
        lines[3].starts_with("c *") && lines[3].contains("standby"),
        "{}",
        listed.stdout
    );

    // A drain: SIGTERM to the active node hands its workers over without
    // waiting for the lease to expire, and it exits 0.
    a.terminate()?;
    let drained = Instant::now();
    let survivor = survivor([&b, &c])?;
    let handed_over = drained.elapsed();
    let finished = a.wait_exit(QUICK)?.success()?;
    assert!(
        finished.stderr.contains("node a gave its lease up"),
        "{}",
        finished.stderr
    );
    #[expect(clippy::print_stderr, reason = "the test states what it measured")]
    {
        eprintln!(
            "drain: another node was active {} ms after SIGTERM to the active node (lease {TTL} s)",
            handed_over.as_millis()
        );
    }
    runtime()?.block_on(async {
        let cid = client.component(&survivor.url, "approval").await?;
        let path = worker(&cid, "w0");
        let result = client
            .result(
                &survivor.url,
                &path,
                "request-approval",
                json!("job0"),
                "k0",
            )
            .await?;
        assert_eq!(result, json!("\"job0\": ok-0"));
        let roles = client.roles(&survivor.url).await?;
        assert_eq!(roles[0], ("a".to_owned(), "gone".to_owned()));
        anyhow::Ok(())
    })?;
    Ok(())
}

/// The node that answers for the active one after it died: another node
/// becomes active; which one is up to the race for the lease.
fn survivor(servers: [&Server; 2]) -> anyhow::Result<&Server> {
    let deadline = Instant::now() + QUICK;
    loop {
        for server in servers {
            if server.stderr_has(" is active ") {
                return Ok(server);
            }
        }
        ensure!(Instant::now() < deadline, "no node took over");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// kill -9 of the active node while its workers are parked, running and
/// queued: a standby takes over, parked workers resume on their
/// completion, the running invocation runs again by replay, the queued
/// one runs, and each invocation finishes once.
#[test]
fn killing_the_active_node_hands_every_worker_to_a_standby() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let approval = vow_tests::guest("approval")?;
    let harness = vow_tests::guest("harness")?;
    let a = node(&url, "a", &[&approval, &harness])?;
    a.wait_stderr("node a is active")?;
    let b = node(&url, "b", &[])?;
    let c = node(&url, "c", &[])?;
    b.wait_stderr("requests go to the active node a")?;
    c.wait_stderr("requests go to the active node a")?;

    let client = Client::new();
    let rt = runtime()?;
    let (cid, hid, iterations) = rt.block_on(async {
        let cid = client.component(&b.url, "approval").await?;
        let hid = client.component(&b.url, "harness").await?;
        // About three seconds of spinning, measured on this machine.
        client.start(&b.url, &hid, "spinner").await?;
        let calibration = 100_000_000_u64;
        let took = Instant::now();
        client
            .result(
                &c.url,
                &worker(&hid, "spinner"),
                "spin-for",
                json!(calibration),
                "calibration",
            )
            .await?;
        let per_second = calibration as f64 / took.elapsed().as_secs_f64().max(0.01);
        anyhow::Ok((cid, hid, (per_second * 3.0) as u64))
    })?;
    let spinner = worker(&hid, "spinner");

    rt.block_on(async {
        for i in 0..3 {
            let name = format!("p{i}");
            client.start(&b.url, &cid, &name).await?;
            client
                .invoke(
                    &c.url,
                    &worker(&cid, &name),
                    "request-approval",
                    json!(format!("job{i}")),
                    &format!("k{i}"),
                )
                .await?;
        }
        client.parked(&b.url, 3).await?;
        // Queued behind p0's parked invocation.
        client
            .invoke(
                &b.url,
                &worker(&cid, "p0"),
                "request-approval",
                json!("second"),
                "k-second",
            )
            .await?;
        client
            .invoke(&c.url, &spinner, "spin-for", json!(iterations), "spin")
            .await?;
        let deadline = Instant::now() + QUICK;
        loop {
            let shown = client
                .ok(Method::GET, &format!("{}{spinner}", b.url), None, None)
                .await?;
            if shown["status"] == "Running" {
                break;
            }
            ensure!(Instant::now() < deadline, "the spin never ran: {shown}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok(())
    })?;

    let killed = Instant::now();
    a.kill()?;
    rt.block_on(client.until_served(&b.url, &worker(&cid, "p1")))?;
    let takeover = killed.elapsed();
    let survivor = survivor([&b, &c])?;
    let other = if std::ptr::eq(survivor, &b) { &c } else { &b };
    #[expect(
        clippy::print_stderr,
        reason = "the test states the takeover time it measured"
    )]
    {
        eprintln!(
            "takeover: a standby answered for the killed node {} ms after kill -9 (lease {TTL} s)",
            takeover.as_millis()
        );
    }

    rt.block_on(async {
        let parked = client.parked(&other.url, 3).await?;
        for i in 0..3 {
            let path = worker(&cid, &format!("p{i}"));
            let settled = client
                .complete(
                    &other.url,
                    &path,
                    parked[&format!("p{i}")],
                    format!("ok-{i}").as_bytes(),
                )
                .await?;
            assert_eq!(settled, json!(true));
        }
        for i in 0..3 {
            let path = worker(&cid, &format!("p{i}"));
            let result = client
                .result(
                    &other.url,
                    &path,
                    "request-approval",
                    json!(format!("job{i}")),
                    &format!("k{i}"),
                )
                .await?;
            assert_eq!(result, json!(format!("\"job{i}\": ok-{i}")));
        }
        // The queued invocation parks in its turn.
        let path = worker(&cid, "p0");
        let parked = client.parked(&other.url, 1).await?;
        client
            .complete(&survivor.url, &path, parked["p0"], b"ok-second")
            .await?;
        let second = client
            .result(
                &other.url,
                &path,
                "request-approval",
                json!("second"),
                "k-second",
            )
            .await?;
        assert_eq!(second, json!("\"second\": ok-second"));
        assert_eq!(client.invocations(&other.url, &path).await?, (2, 2));
        for i in 1..3 {
            let path = worker(&cid, &format!("p{i}"));
            assert_eq!(client.invocations(&other.url, &path).await?, (1, 1), "p{i}");
        }
        let spun = client
            .result(&other.url, &spinner, "spin-for", json!(iterations), "spin")
            .await?;
        ensure!(spun.as_u64().is_some(), "spin-for answered {spun}");
        // The calibration and the spin: each started and finished once,
        // the spin re-run by replay rather than logged twice.
        assert_eq!(client.invocations(&other.url, &spinner).await?, (2, 2));
        anyhow::Ok(())
    })?;
    Ok(())
}

/// A TCP proxy in front of PostgreSQL that the test can cut: from then on
/// it relays nothing in either direction and accepts connections it never
/// serves, as a network partition would (no resets, just silence).
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cut);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if flag.load(Ordering::SeqCst) {
                    // Held open, never served.
                    std::mem::forget(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(f, t)| Some((f.ok()?, t.ok()?)))
                {
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buffer) {
                            if n == 0 {
                                break;
                            }
                            if flag.load(Ordering::SeqCst) {
                                // Swallowed; the connection stays open.
                                continue;
                            }
                            if to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Ok(Self { port, cut })
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

/// The active node cut off from PostgreSQL stops serving and exits before
/// its lease runs out; a standby takes over and the parked worker resumes
/// there, its invocation run once.
#[test]
fn an_active_node_cut_off_from_the_database_stops_and_a_standby_takes_over() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let (base, database) = url.rsplit_once('/').context("a database URL")?;
    let port: u16 = base
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .context("a port in the database URL")?;
    let proxy = Proxy::start(port)?;
    let (host, _) = base.rsplit_once(':').context("a host")?;
    let through_proxy = format!("{host}:{}/{database}", proxy.port);

    let approval = vow_tests::guest("approval")?;
    let a = node(&through_proxy, "a", &[&approval])?;
    a.wait_stderr("node a is active")?;
    let b = node(&url, "b", &[])?;
    b.wait_stderr("requests go to the active node a")?;

    let client = Client::new();
    let rt = runtime()?;
    let cid = rt.block_on(async {
        let cid = client.component(&b.url, "approval").await?;
        client.start(&b.url, &cid, "w").await?;
        client
            .invoke(
                &b.url,
                &worker(&cid, "w"),
                "request-approval",
                json!("cut"),
                "k",
            )
            .await?;
        client.parked(&b.url, 1).await?;
        anyhow::Ok(cid)
    })?;

    proxy.cut();
    let cut = Instant::now();
    let stopped = a.wait_exit(QUICK)?.code(1)?;
    let stopped_after = cut.elapsed();
    // It stopped before its lease could expire, by its own count.
    let waited: f64 = stopped
        .stderr
        .split("could not renew its lease for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|secs| secs.parse().ok())
        .with_context(|| format!("no stop for want of renewal: {}", stopped.stderr))?;
    assert!(waited < 4.0, "{}", stopped.stderr);
    b.wait_stderr("node b is active")?;
    let active_after = cut.elapsed();
    #[expect(clippy::print_stderr, reason = "the test states what it measured")]
    {
        eprintln!(
            "partition: node a stopped {} ms after the cut, node b was active {} ms after it (lease {TTL} s)",
            stopped_after.as_millis(),
            active_after.as_millis()
        );
    }
    rt.block_on(async {
        let path = worker(&cid, "w");
        let parked = client.parked(&b.url, 1).await?;
        assert_eq!(
            client.complete(&b.url, &path, parked["w"], b"ok").await?,
            json!(true)
        );
        let result = client
            .result(&b.url, &path, "request-approval", json!("cut"), "k")
            .await?;
        assert_eq!(result, json!("\"cut\": ok"));
        assert_eq!(client.invocations(&b.url, &path).await?, (1, 1));
        let roles = client.roles(&b.url).await?;
        assert_eq!(
            roles,
            [("a", "gone"), ("b", "active")].map(|(n, r)| (n.to_owned(), r.to_owned()))
        );
        anyhow::Ok(())
    })?;
    Ok(())
}

/// With an API token, a standby asks for it itself before forwarding
/// anything (and the active node checks it again): a request without it
/// is refused by the standby, one with it is answered by the active node.
#[test]
fn a_standby_asks_for_the_api_token_before_it_forwards() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let approval = vow_tests::guest("approval")?;
    let with_token = |id: &str, components: &[&std::path::Path]| {
        node_with(&url, id, components, &["--auth-token", "s3cret"])
    };
    let a = with_token("a", &[&approval])?;
    a.wait_stderr("node a is active")?;
    let b = with_token("b", &[])?;
    b.wait_stderr("requests go to the active node a")?;
    runtime()?.block_on(async {
        let http = reqwest::Client::new();
        for path in ["/v1/components", "/v1/nodes"] {
            let url = format!("{}{path}", b.url);
            let refused = http.get(&url).send().await?;
            assert_eq!(refused.status(), 401, "{path}");
            let wrong = http.get(&url).bearer_auth("guess").send().await?;
            assert_eq!(wrong.status(), 401, "{path}");
            let answered = http.get(&url).bearer_auth("s3cret").send().await?;
            assert_eq!(answered.status(), 200, "{path}");
        }
        let listed: Value = http
            .get(format!("{}/v1/components", b.url))
            .bearer_auth("s3cret")
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(listed["components"][0]["name"], "approval", "{listed}");
        anyhow::Ok(())
    })?;
    // With the active node gone (and its lease not yet expired), the
    // standby still answers 401 itself to a request without the token,
    // and 503 to one with it, which it cannot forward.
    a.kill()?;
    runtime()?.block_on(async {
        let http = reqwest::Client::new();
        let url = format!("{}/v1/components", b.url);
        assert_eq!(http.get(&url).send().await?.status(), 401);
        let unforwarded = http.get(&url).bearer_auth("s3cret").send().await?;
        assert_eq!(unforwarded.status(), 503);
        assert_eq!(
            unforwarded
                .headers()
                .get("retry-after")
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        anyhow::Ok(())
    })?;
    Ok(())
}

/// Nodes served over HTTPS with a self-signed certificate: a standby given
/// it with --cluster-ca-cert forwards to the active node; one without it
/// does not trust the active node and says so (503), forwarding nothing.
#[test]
fn nodes_over_https_trust_the_certificate_they_are_given() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let approval = vow_tests::guest("approval")?;
    let tls = |id: &str, components: &[&std::path::Path], trust: bool| {
        let mut extra = vec!["--tls-cert", &cert, "--tls-key", &key];
        if trust {
            extra.extend(["--cluster-ca-cert", &cert]);
        }
        node_with(&url, id, components, &extra)
    };
    let a = tls("a", &[&approval], true)?;
    a.wait_stderr("node a is active")?;
    let b = tls("b", &[], true)?;
    let c = tls("c", &[], false)?;
    b.wait_stderr("requests go to the active node a at https://")?;
    c.wait_stderr("requests go to the active node a at https://")?;
    runtime()?.block_on(async {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&cert)?)?)
            .build()?;
        let through_b: Value = http
            .get(format!("{}/v1/components", b.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(
            through_b["components"][0]["name"], "approval",
            "{through_b}"
        );
        let through_c = http.get(format!("{}/v1/components", c.url)).send().await?;
        assert_eq!(through_c.status(), 503);
        let body: Value = through_c.json().await?;
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("cannot be reached from node \"c\""),
            "{body}"
        );
        assert!(error.to_lowercase().contains("certificate"), "{body}");
        anyhow::Ok(())
    })?;
    Ok(())
}
