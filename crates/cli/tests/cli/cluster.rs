//! Several `vow serve --node-id` processes on one PostgreSQL database
//! (docs/cluster.md): workers spread over the nodes, any node answers any
//! request, the workers of a killed, cut-off or drained node are taken
//! over by the others, and nothing runs twice.

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

    /// Sends a request as a client of a cluster should: a 503 (a node
    /// starting, or a worker's owner that just died and whose workers are
    /// not free yet) is retried after a while, for at most a minute.
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

    /// Waits until a request about a worker answers 200 through `node`;
    /// how long that took.
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

    /// `GET /v1/nodes` through `node`: node id → how many workers it
    /// owns, for the live nodes.
    async fn owned(&self, node: &str) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let listed = self
            .ok(Method::GET, &format!("{node}/v1/nodes"), None, None)
            .await?;
        Ok(listed["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["role"] == "alive")
            .filter_map(|n| Some((n["nodeId"].as_str()?.to_owned(), n["owned"].as_u64()?)))
            .collect())
    }

    /// Waits until the live nodes own `count` workers in all, as `node`
    /// says; how long that took.
    async fn until_owned(&self, node: &str, count: u64) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let owned = self.owned(node).await?;
            if owned.values().sum::<u64>() == count {
                return Ok(started.elapsed());
            }
            ensure!(
                started.elapsed() < QUICK,
                "the live nodes never owned {count} workers: {owned:?}"
            );
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

/// Starts nodes `ids` with `components` and waits until each serves.
fn nodes(url: &str, ids: &[&str], components: &[&std::path::Path]) -> anyhow::Result<Vec<Server>> {
    let started: Vec<Server> = ids
        .iter()
        .map(|id| node(url, id, components))
        .collect::<anyhow::Result<_>>()?;
    for (server, id) in started.iter().zip(ids) {
        server.wait_stderr(&format!("node {id} serves (epoch"))?;
    }
    Ok(started)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Three nodes: workers started through each are owned by it; every
/// invocation and completion is sent to a node that does not own the
/// worker; every worker resumes with its own payload, once. Two nodes
/// completing one promise at once (neither its owner): one `true`. `vow
/// node list` shows the three and what they own. A drain frees the
/// drained node's workers at once, and the next request takes one.
#[test]
fn three_nodes_spread_the_workers_and_answer_for_each_other() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let approval = vow_tests::guest("approval")?;
    let started = nodes(&url, &["a", "b", "c"], &[&approval])?;
    let [a, b, c] = <[Server; 3]>::try_from(started).map_err(|_| anyhow!("three nodes"))?;
    let urls = [&a.url, &b.url, &c.url];

    let client = Client::new();
    runtime()?.block_on(async {
        let cid = client.component(&b.url, "approval").await?;
        // Added once, though each node was started with it.
        let listed = client
            .ok(Method::GET, &format!("{}/v1/components", c.url), None, None)
            .await?;
        assert_eq!(listed["components"].as_array().map(Vec::len), Some(1));
        let workers: Vec<String> = (0..6).map(|i| format!("w{i}")).collect();
        for (i, name) in workers.iter().enumerate() {
            client.start(urls[i % 3], &cid, name).await?;
            client
                .invoke(
                    urls[(i + 1) % 3],
                    &worker(&cid, name),
                    "request-approval",
                    json!(format!("job{i}")),
                    &format!("k{i}"),
                )
                .await?;
        }
        client.start(&a.url, &cid, "race").await?;
        client
            .invoke(
                &b.url,
                &worker(&cid, "race"),
                "request-approval",
                json!("race"),
                "kr",
            )
            .await?;
        // Every node knows every promise.
        for node in urls {
            client.parked(node, 7).await?;
        }
        let parked = client.parked(&c.url, 7).await?;
        let owned = client.owned(&b.url).await?;
        assert_eq!(
            owned.into_iter().collect::<Vec<_>>(),
            [
                ("a".to_owned(), 3),
                ("b".to_owned(), 2),
                ("c".to_owned(), 2)
            ]
        );
        // The listing covers every node's workers.
        let listed = client
            .ok(
                Method::GET,
                &format!("{}/v1/components/{cid}/workers", c.url),
                None,
                None,
            )
            .await?;
        assert_eq!(
            listed["workers"].as_array().map(Vec::len),
            Some(7),
            "{listed}"
        );

        for (i, name) in workers.iter().enumerate() {
            let path = worker(&cid, name);
            let index = parked[name];
            let first = client
                .complete(
                    urls[(i + 2) % 3],
                    &path,
                    index,
                    format!("ok-{i}").as_bytes(),
                )
                .await?;
            assert_eq!(first, json!(true), "{name}");
            let second = client
                .complete(urls[(i + 1) % 3], &path, index, b"late")
                .await?;
            assert_eq!(second, json!(false), "{name}");
        }
        // Two nodes at once, neither of them the owner.
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
            .result(&c.url, &race, "request-approval", json!("race"), "kr")
            .await?;
        assert_eq!(raced, json!(format!("\"race\": {winner}")));

        for (i, name) in workers.iter().enumerate() {
            let path = worker(&cid, name);
            let result = client
                .result(
                    urls[(i + 2) % 3],
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
            pairs(&[("a", "alive"), ("b", "alive"), ("c", "alive")])
        );
        anyhow::Ok(())
    })?;

    // Each node reports its load with its renewals.
    let deadline = Instant::now() + QUICK;
    loop {
        let listed = c.client(&["node", "list", "--json"])?.success()?;
        let json: Value = serde_json::from_str(&listed.stdout)?;
        if json["nodes"][0]["load"]["workers"] == 3 && json["nodes"][2]["load"]["workers"] == 2 {
            break;
        }
        ensure!(Instant::now() < deadline, "no load reported: {json}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = c.client(&["node", "list"])?.success()?;
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert!(lines[0].starts_with("NODE"), "{}", listed.stdout);
    assert!(
        lines[1].starts_with("a ") && lines[1].contains("alive") && lines[1].contains("3 loaded"),
        "{}",
        listed.stdout
    );
    assert!(
        lines[3].starts_with("c *") && lines[3].contains("alive"),
        "{}",
        listed.stdout
    );

    // A drain: SIGTERM to node a hands its workers over without waiting
    // for its run to expire, and it exits 0.
    a.terminate()?;
    let drained = Instant::now();
    let finished = a.wait_exit(QUICK)?.success()?;
    assert!(
        finished.stderr.contains("node a left the cluster"),
        "{}",
        finished.stderr
    );
    runtime()?.block_on(async {
        // a's three parked workers are free (they wait on a promise, with
        // nothing to do): b and c own only their own.
        client.until_owned(&b.url, 4).await?;
        let handed_over = drained.elapsed();
        let owned = client.owned(&c.url).await?;
        assert!(!owned.contains_key("a"), "{owned:?}");
        let cid = client.component(&c.url, "approval").await?;
        client.until_served(&c.url, &worker(&cid, "w0")).await?;
        let served = drained.elapsed();
        #[expect(clippy::print_stderr, reason = "the test states what it measured")]
        {
            eprintln!(
                "drain: node a's workers were free {} ms after SIGTERM to it, and one of them \
                 answered through c {} ms after it (lease {TTL} s)",
                handed_over.as_millis(),
                served.as_millis()
            );
        }
        let result = client
            .result(
                &b.url,
                &worker(&cid, "w0"),
                "request-approval",
                json!("job0"),
                "k0",
            )
            .await?;
        assert_eq!(result, json!("\"job0\": ok-0"));
        let roles = client.roles(&b.url).await?;
        assert_eq!(
            roles,
            pairs(&[("a", "gone"), ("b", "alive"), ("c", "alive")])
        );
        anyhow::Ok(())
    })?;
    Ok(())
}

/// kill -9 of a node while the workers it owns are parked, running and
/// queued: once its run expires a survivor takes the running worker over
/// by itself (it has work to do) and runs its invocation again by replay;
/// the parked ones (one with an invocation queued behind its parked one)
/// stay free until requests about them come, and resume on their
/// completion; each invocation finishes once.
#[test]
fn killing_a_node_hands_its_workers_to_the_others() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let approval = vow_tests::guest("approval")?;
    let harness = vow_tests::guest("harness")?;
    let started = nodes(&url, &["a", "b", "c"], &[&approval, &harness])?;
    let [a, b, c] = <[Server; 3]>::try_from(started).map_err(|_| anyhow!("three nodes"))?;

    let client = Client::new();
    let rt = runtime()?;
    let (cid, hid, iterations) = rt.block_on(async {
        let cid = client.component(&b.url, "approval").await?;
        let hid = client.component(&b.url, "harness").await?;
        // Owned by a; about three seconds of spinning, measured here.
        client.start(&a.url, &hid, "spinner").await?;
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
            client.start(&a.url, &cid, &name).await?;
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
        let owned = client.owned(&b.url).await?;
        assert_eq!(owned.get("a"), Some(&4), "{owned:?}");
        anyhow::Ok(())
    })?;

    let killed = Instant::now();
    a.kill()?;
    let (owned, served) = rt.block_on(async {
        // Only the spinner has work to do: a survivor takes it alone.
        client.until_owned(&c.url, 1).await?;
        let owned = killed.elapsed();
        let roles = client.roles(&b.url).await?;
        assert_eq!(
            roles,
            pairs(&[("a", "gone"), ("b", "alive"), ("c", "alive")])
        );
        client.until_served(&b.url, &worker(&cid, "p1")).await?;
        anyhow::Ok((owned, killed.elapsed()))
    })?;
    #[expect(
        clippy::print_stderr,
        reason = "the test states the takeover time it measured"
    )]
    {
        eprintln!(
            "takeover: a survivor took the killed node's running worker {} ms after kill -9, and \
             a parked one answered through b {} ms after it (lease {TTL} s)",
            owned.as_millis(),
            served.as_millis()
        );
    }

    rt.block_on(async {
        let parked = client.parked(&c.url, 3).await?;
        for i in 0..3 {
            let path = worker(&cid, &format!("p{i}"));
            let settled = client
                .complete(
                    [&b.url, &c.url][i % 2],
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
                    &c.url,
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
        let parked = client.parked(&b.url, 1).await?;
        client
            .complete(&c.url, &path, parked["p0"], b"ok-second")
            .await?;
        let second = client
            .result(
                &b.url,
                &path,
                "request-approval",
                json!("second"),
                "k-second",
            )
            .await?;
        assert_eq!(second, json!("\"second\": ok-second"));
        assert_eq!(client.invocations(&b.url, &path).await?, (2, 2));
        for i in 1..3 {
            let path = worker(&cid, &format!("p{i}"));
            assert_eq!(client.invocations(&c.url, &path).await?, (1, 1), "p{i}");
        }
        let spun = client
            .result(&b.url, &spinner, "spin-for", json!(iterations), "spin")
            .await?;
        ensure!(spun.as_u64().is_some(), "spin-for answered {spun}");
        // The calibration and the spin: each started and finished once,
        // the spin re-run by replay rather than logged twice.
        assert_eq!(client.invocations(&c.url, &spinner).await?, (2, 2));
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

/// A node cut off from PostgreSQL stops serving and exits before its run
/// expires; its parked worker is free, the other node takes it when a
/// request needs it, and the worker resumes there, its invocation run
/// once.
#[test]
fn a_node_cut_off_from_the_database_stops_and_another_takes_its_workers() -> anyhow::Result<()> {
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
    a.wait_stderr("node a serves (epoch")?;
    let b = node(&url, "b", &[])?;
    b.wait_stderr("node b serves (epoch")?;

    let client = Client::new();
    let rt = runtime()?;
    let cid = rt.block_on(async {
        let cid = client.component(&b.url, "approval").await?;
        client.start(&a.url, &cid, "w").await?;
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
        assert_eq!(client.owned(&b.url).await?.get("a"), Some(&1));
        anyhow::Ok(cid)
    })?;

    proxy.cut();
    let cut = Instant::now();
    let stopped = a.wait_exit(QUICK)?.code(1)?;
    let stopped_after = cut.elapsed();
    // It stopped before its run could expire, by its own count.
    let waited: f64 = stopped
        .stderr
        .split("could not renew its membership for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|secs| secs.parse().ok())
        .with_context(|| format!("no stop for want of renewal: {}", stopped.stderr))?;
    assert!(waited < 4.0, "{}", stopped.stderr);
    let taken_after = rt.block_on(async {
        client.until_served(&b.url, &worker(&cid, "w")).await?;
        let owned = client.owned(&b.url).await?;
        ensure!(
            owned.get("b") == Some(&1) && !owned.contains_key("a"),
            "b did not take a's worker: {owned:?}"
        );
        anyhow::Ok(cut.elapsed())
    })?;
    #[expect(clippy::print_stderr, reason = "the test states what it measured")]
    {
        eprintln!(
            "partition: node a stopped {} ms after the cut, node b took its worker for a request {} ms after it (lease {TTL} s)",
            stopped_after.as_millis(),
            taken_after.as_millis()
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
        assert_eq!(roles, pairs(&[("a", "gone"), ("b", "alive")]));
        anyhow::Ok(())
    })?;
    Ok(())
}

/// With an API token, a node asks for it itself before it forwards a
/// request to a worker's owner (which checks it again): a request without
/// it is refused by the node that got it.
#[test]
fn a_node_asks_for_the_api_token_before_it_forwards() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let approval = vow_tests::guest("approval")?;
    let with_token = |id: &str, components: &[&std::path::Path]| {
        node_with(&url, id, components, &["--auth-token", "s3cret"])
    };
    let a = with_token("a", &[&approval])?;
    a.wait_stderr("node a serves (epoch")?;
    let b = with_token("b", &[])?;
    b.wait_stderr("node b serves (epoch")?;
    let http = reqwest::Client::new();
    let rt = runtime()?;
    let owned_by_a = rt.block_on(async {
        let cid: Value = http
            .get(format!("{}/v1/components", b.url))
            .bearer_auth("s3cret")
            .send()
            .await?
            .json()
            .await?;
        let cid = cid["components"][0]["componentId"]
            .as_str()
            .context("a component")?
            .to_owned();
        let created = http
            .post(format!("{}/v1/components/{cid}/workers", a.url))
            .bearer_auth("s3cret")
            .json(&json!({"name": "w"}))
            .send()
            .await?;
        assert_eq!(created.status(), 200);
        let path = format!("{}{}", b.url, worker(&cid, "w"));
        for url in [format!("{}/v1/nodes", b.url), path.clone()] {
            let refused = http.get(&url).send().await?;
            assert_eq!(refused.status(), 401, "{url}");
            let wrong = http.get(&url).bearer_auth("guess").send().await?;
            assert_eq!(wrong.status(), 401, "{url}");
            let answered = http.get(&url).bearer_auth("s3cret").send().await?;
            assert_eq!(answered.status(), 200, "{url}");
        }
        anyhow::Ok(path)
    })?;
    // With the owner gone (and its run not yet expired), node b still
    // answers 401 itself to a request without the token, and 503 to one
    // with it, which it cannot forward.
    a.kill()?;
    rt.block_on(async {
        assert_eq!(http.get(&owned_by_a).send().await?.status(), 401);
        let unforwarded = http.get(&owned_by_a).bearer_auth("s3cret").send().await?;
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

/// Nodes served over HTTPS with a self-signed certificate: a node given it
/// with --cluster-ca-cert forwards to a worker's owner; one without it
/// does not trust the owner and says so (503), forwarding nothing.
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
    let b = tls("b", &[], true)?;
    let c = tls("c", &[], false)?;
    for (server, id) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        server.wait_stderr(&format!("node {id} serves (epoch"))?;
    }
    runtime()?.block_on(async {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&cert)?)?)
            .build()?;
        let listed: Value = http
            .get(format!("{}/v1/components", b.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let cid = listed["components"][0]["componentId"]
            .as_str()
            .context("a component")?
            .to_owned();
        http.post(format!("{}/v1/components/{cid}/workers", a.url))
            .json(&json!({"name": "w"}))
            .send()
            .await?
            .error_for_status()?;
        let through_b: Value = http
            .get(format!("{}{}", b.url, worker(&cid, "w")))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(through_b["workerId"]["workerName"], "w", "{through_b}");
        let through_c = http
            .get(format!("{}{}", c.url, worker(&cid, "w")))
            .send()
            .await?;
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

/// Guests reach promises of workers on other nodes: a worker on node b
/// awaits a promise of a worker on node a, and a worker on node c
/// completes it (first completion `true`, second `false`); the waiter
/// resumes with the payload. A waiter whose node is killed while it waits
/// is taken over by another node and resumes there.
#[test]
fn guests_await_and_complete_promises_of_workers_on_other_nodes() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let harness = vow_tests::guest("harness")?;
    let started = nodes(&url, &["a", "b", "c"], &[&harness])?;
    let [a, b, c] = <[Server; 3]>::try_from(started).map_err(|_| anyhow!("three nodes"))?;
    let client = Client::new();
    let rt = runtime()?;
    let call = |node: &str, name: &str, function: &str, params: Value, key: &str| {
        let url = format!(
            "{node}/v1/components/{{cid}}/workers/{name}/invoke-and-await?function={function}"
        );
        (url, json!({ "params_json": params }), key.to_owned())
    };
    let (hid, first, second) = rt.block_on(async {
        let hid = client.component(&a.url, "harness").await?;
        for (node, name) in [
            (&a.url, "maker"),
            (&b.url, "waiter"),
            (&b.url, "waiter2"),
            (&c.url, "settler"),
        ] {
            client.start(node, &hid, name).await?;
        }
        let mut ids = Vec::new();
        for key in ["p1", "p2"] {
            let (url, body, key) = call(&a.url, "maker", "new-promise", json!([]), key);
            let made = client
                .ok(
                    Method::POST,
                    &url.replace("{cid}", &hid),
                    Some(body),
                    Some(&key),
                )
                .await?;
            ids.push(made["result"].clone());
        }
        let waiters = [("waiter", &ids[0], "w1"), ("waiter2", &ids[1], "w2")];
        for (name, id, key) in waiters {
            client
                .invoke(
                    &b.url,
                    &worker(&hid, name),
                    "await-payload",
                    id.clone(),
                    key,
                )
                .await?;
        }
        // Both wait on b, each on a promise of a worker on a.
        let deadline = Instant::now() + QUICK;
        loop {
            let mut parked = 0;
            for name in ["waiter", "waiter2"] {
                let shown = client
                    .ok(
                        Method::GET,
                        &format!("{}{}", c.url, worker(&hid, name)),
                        None,
                        None,
                    )
                    .await?;
                if shown["status"] == "Suspended" {
                    parked += 1;
                }
            }
            if parked == 2 {
                break;
            }
            ensure!(Instant::now() < deadline, "the waiters never parked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok((hid, ids[0].clone(), ids[1].clone()))
    })?;
    let settle = |id: &Value, data: &[u8], key: &str| {
        let (url, body, key) = call(&c.url, "settler", "complete", json!([id, data]), key);
        (url.replace("{cid}", &hid), body, key)
    };
    rt.block_on(async {
        let (url, body, key) = settle(&first, b"hi", "s1");
        let done = client
            .ok(Method::POST, &url, Some(body), Some(&key))
            .await?;
        assert_eq!(done["result"], json!(true));
        let (url, body, key) = settle(&first, b"late", "s1-again");
        let again = client
            .ok(Method::POST, &url, Some(body), Some(&key))
            .await?;
        assert_eq!(again["result"], json!(false));
        let payload = client
            .result(
                &a.url,
                &worker(&hid, "waiter"),
                "await-payload",
                first.clone(),
                "w1",
            )
            .await?;
        assert_eq!(payload, json!(b"hi"));
        anyhow::Ok(())
    })?;
    // waiter2's node dies while it waits: it is free, and the node whose
    // guest settles its promise takes it, with no request about it.
    b.kill()?;
    rt.block_on(async {
        let deadline = Instant::now() + QUICK;
        while client
            .roles(&a.url)
            .await?
            .iter()
            .any(|(n, r)| n == "b" && r != "gone")
        {
            ensure!(Instant::now() < deadline, "b never expired");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (url, body, key) = settle(&second, b"after", "s2");
        let done = client
            .ok(Method::POST, &url, Some(body), Some(&key))
            .await?;
        assert_eq!(done["result"], json!(true));
        // Listed (not asked about): it resumed and finished by itself.
        let listing = format!("{}/v1/components/{hid}/workers", a.url);
        loop {
            let listed = client.ok(Method::GET, &listing, None, None).await?;
            let status = listed["workers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|w| w["workerId"]["workerName"] == "waiter2")
                .map(|w| w["status"].clone());
            if status == Some(json!("Idle")) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "waiter2 never resumed: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let payload = client
            .result(
                &c.url,
                &worker(&hid, "waiter2"),
                "await-payload",
                second.clone(),
                "w2",
            )
            .await?;
        assert_eq!(payload, json!(b"after"));
        assert_eq!(
            client.invocations(&a.url, &worker(&hid, "waiter2")).await?,
            (1, 1)
        );
        anyhow::Ok(())
    })?;
    Ok(())
}

/// A killed node's timers and continuations fire once, on the node that
/// takes its workers over: a promise's timeout, and a `then` that waits on
/// a promise of a worker on another node.
#[test]
fn timers_and_continuations_of_a_killed_node_fire_on_its_successor() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let harness = vow_tests::guest("harness")?;
    let started = nodes(&url, &["a", "b"], &[&harness])?;
    let [a, b] = <[Server; 2]>::try_from(started).map_err(|_| anyhow!("two nodes"))?;
    let client = Client::new();
    let rt = runtime()?;
    let (hid, timed, source, then_worker) = rt.block_on(async {
        let hid = client.component(&a.url, "harness").await?;
        client.start(&a.url, &hid, "timed").await?;
        client.start(&b.url, &hid, "source").await?;
        let options = json!({ "timeout-ms": 5000, "retention-ms": null, "payload-type": null });
        let timed = client
            .result(&a.url, &worker(&hid, "timed"), "vow-create", options, "t")
            .await?;
        let source = client
            .ok(
                Method::POST,
                &format!(
                    "{}{}/invoke-and-await?function=new-promise",
                    b.url,
                    worker(&hid, "source")
                ),
                Some(json!({ "params_json": [] })),
                Some("s"),
            )
            .await?["result"]
            .clone();
        let index = source["oplog-idx"].as_u64().context("a promise id")?;
        // The continuation's worker is made, and owned, by node a.
        let then = client
            .ok(
                Method::POST,
                &format!("{}/v1/components/{hid}/then", a.url),
                Some(json!({
                    "source": format!("{hid}/source/{index}"),
                    "function": "complete-then-await"
                })),
                None,
            )
            .await?;
        let then_worker = then["workerName"]
            .as_str()
            .context("the continuation's worker")?
            .to_owned();
        anyhow::Ok((hid, timed, index, then_worker))
    })?;
    let killed = Instant::now();
    a.kill()?;
    let timed_index = timed["oplog-idx"].as_u64().context("a promise id")?;
    rt.block_on(async {
        // The timeout fires on b, once b took the worker over.
        let path = format!("{}{}/promises/{timed_index}", b.url, worker(&hid, "timed"));
        let deadline = Instant::now() + QUICK;
        loop {
            let shown = client.ok(Method::GET, &path, None, None).await?;
            if shown["status"] == "timed-out" {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the timeout never fired: {shown}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ensure!(
            killed.elapsed() >= Duration::from_secs(4),
            "fired before a's run expired"
        );
        // The continuation runs on b once its source settles.
        let settled = client
            .complete(&b.url, &worker(&hid, "source"), source, b"go")
            .await?;
        assert_eq!(settled, json!(true));
        let path = format!("{}{}/promises/1", b.url, worker(&hid, &then_worker));
        let deadline = Instant::now() + QUICK;
        loop {
            let shown = client.ok(Method::GET, &path, None, None).await?;
            if shown["status"] == "completed" {
                break;
            }
            ensure!(
                shown["status"] == "pending" && Instant::now() < deadline,
                "the continuation did not complete: {shown}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            client
                .invocations(&b.url, &worker(&hid, &then_worker))
                .await?,
            (1, 1)
        );
        anyhow::Ok(())
    })?;
    Ok(())
}

/// A worker that left its node's memory with nothing to do (parked on a
/// pending promise, evicted at once here) is let go of: no node owns it,
/// nothing moved while it waited, and the node that gets its completion
/// takes it, loads it from the store and resumes it, once.
#[test]
fn an_evicted_worker_has_no_owner_until_a_node_needs_it() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let approval = vow_tests::guest("approval")?;
    let a = node_with(&url, "a", &[&approval], &["--evict-after", "0"])?;
    a.wait_stderr("node a serves (epoch")?;
    let b = node(&url, "b", &[])?;
    b.wait_stderr("node b serves (epoch")?;

    let client = Client::new();
    runtime()?.block_on(async {
        let cid = client.component(&b.url, "approval").await?;
        client.start(&a.url, &cid, "w").await?;
        let path = worker(&cid, "w");
        client
            .invoke(&a.url, &path, "request-approval", json!("evicted"), "k")
            .await?;
        let parked = client.parked(&b.url, 1).await?;
        // Evicted as it parked; let go of a couple of seconds later.
        let started = Instant::now();
        loop {
            let owned = client.owned(&b.url).await?;
            if owned.values().all(|n| *n == 0) {
                break;
            }
            ensure!(
                started.elapsed() < QUICK,
                "node a kept its evicted worker: {owned:?}; its log: {}",
                a.wait_stderr("").unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let listed = client
            .ok(
                Method::GET,
                &format!("{}/v1/components/{cid}/workers", a.url),
                None,
                None,
            )
            .await?;
        assert_eq!(
            listed["workers"][0]["status"],
            json!("Suspended"),
            "{listed}"
        );
        // Its completion through b: b takes it and resumes it.
        assert_eq!(
            client.complete(&b.url, &path, parked["w"], b"yes").await?,
            json!(true)
        );
        let owned = client.owned(&a.url).await?;
        assert_eq!(owned.get("b"), Some(&1), "{owned:?}");
        let result = client
            .result(&a.url, &path, "request-approval", json!("evicted"), "k")
            .await?;
        assert_eq!(result, json!("\"evicted\": yes"));
        assert_eq!(client.invocations(&a.url, &path).await?, (1, 1));
        anyhow::Ok(())
    })?;
    Ok(())
}
