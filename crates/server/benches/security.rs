//! Security benchmark: what the API token costs, and how long a completion
//! through a completion link takes to reach a parked guest.
//!
//! Run with `cargo bench -p vow-server --bench security`. Two routers over
//! one in-memory executor are served in this process on 127.0.0.1:0, one
//! with an API token and one without, on a tokio runtime of their own; the
//! clients run on another. Then
//!
//! - requests per second: `CLIENTS` keep-alive clients send `GET
//!   /v1/components` for `ROUND` each round, alternating between the two
//!   servers for `ROUNDS` rounds each, so both see the same machine;
//! - link completion: a harness worker parks in `create-and-await` under an
//!   `invoke-and-await`, a link is minted for its promise, and the time from
//!   sending `POST /v1/links/{token}/complete` until the parked request's
//!   answer arrives is one sample; the same with Golem's `.../complete`
//!   route is the reference.
//!
//! The table is printed and written to `benchmarks/security.md`; what
//! follows its `KEPT` marker there (the chaos run's, schemathesis' and the
//! fuzz runs' numbers, copied from their output) is kept.

#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use vow_runtime::Executor;
use vow_server::ServerConfig;

const CLIENTS: usize = 8;
const ROUND: Duration = Duration::from_secs(2);
const ROUNDS: usize = 4;
const SAMPLES: usize = 300;
const TOKEN: &str = "bench-token-0123456789";
/// Where the part of `benchmarks/security.md` this bench does not write
/// starts.
const KEPT: &str = "<!-- measured by tests, not by this bench -->";

fn main() -> Result<()> {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("client")
        .enable_all()
        .build()?;
    let (open, guarded) = server_rt.block_on(async {
        let executor = Executor::builder().evict_after(None).build()?;
        let open = serve(executor.clone(), None).await?;
        let guarded = serve(executor, Some(TOKEN.to_owned())).await?;
        anyhow::Ok((open, guarded))
    })?;
    let wasm = vow_tests::guest("harness")?;
    let report = client_rt.block_on(async {
        let mut off = Vec::new();
        let mut on = Vec::new();
        for _ in 0..ROUNDS {
            off.push(throughput(&open, None).await?);
            on.push(throughput(&guarded, Some(TOKEN)).await?);
        }
        let (link, golem) = completions(&open, &wasm).await?;
        anyhow::Ok(render(&off, &on, &link, &golem))
    })?;
    println!("{report}");
    let path = vow_tests::workspace_root()
        .join("benchmarks")
        .join("security.md");
    // The numbers other runs measure (the chaos test, schemathesis, the
    // fuzz runs) follow the marker; they are kept.
    let kept = std::fs::read_to_string(&path)
        .ok()
        .and_then(|old| old.find(KEPT).map(|at| old[at..].to_owned()))
        .unwrap_or_default();
    std::fs::write(&path, format!("{report}\n{kept}"))?;
    println!("written to {}", path.display());
    Ok(())
}

/// Serves a router over `executor` on a free port; its base URL.
async fn serve(executor: Executor, auth_token: Option<String>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let config = ServerConfig {
        auth_token,
        ..ServerConfig::default()
    };
    let router = vow_server::router(executor, config);
    tokio::spawn(vow_server::serve(
        listener,
        router,
        std::future::pending::<()>(),
    ));
    Ok(base)
}

/// Requests per second of `GET /v1/components` from `CLIENTS` clients.
async fn throughput(base: &str, token: Option<&str>) -> Result<f64> {
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        let url = format!("{base}/v1/components");
        let token = token.map(|t| format!("Bearer {t}"));
        clients.spawn(async move {
            let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
            let deadline = Instant::now() + ROUND;
            let mut done = 0u64;
            while Instant::now() < deadline {
                let mut request = client.get(&url);
                if let Some(token) = &token {
                    request = request.header("authorization", token);
                }
                let reply = request.send().await?;
                ensure!(reply.status() == 200, "{}", reply.status());
                reply.bytes().await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(done) = clients.join_next().await {
        total += done??;
    }
    Ok(total as f64 / ROUND.as_secs_f64())
}

/// Samples of completion → answer through a link, and through Golem's
/// route.
async fn completions(base: &str, wasm: &std::path::Path) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let uploaded: Value = client
        .post(format!("{base}/v1/components?name=harness"))
        .body(std::fs::read(wasm)?)
        .send()
        .await?
        .json()
        .await?;
    let cid = uploaded["componentId"]
        .as_str()
        .context("upload")?
        .to_owned();
    let worker = format!("{base}/v1/components/{cid}/workers/w");
    client
        .post(format!("{base}/v1/components/{cid}/workers"))
        .json(&json!({ "name": "w" }))
        .send()
        .await?;
    let mut link = Vec::with_capacity(SAMPLES);
    let mut golem = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES * 2 {
        let parked = {
            let client = client.clone();
            let url = format!("{worker}/invoke-and-await?function=create-and-await");
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({ "params": [] }))
                    .send()
                    .await?
                    .bytes()
                    .await
            })
        };
        let idx = loop {
            let listed: Value = client
                .get(format!("{worker}/promises"))
                .send()
                .await?
                .json()
                .await?;
            let waiting = listed["promises"].as_array().and_then(|all| {
                all.iter()
                    .find(|p| p["status"] == "pending" && p["awaited"] == true)
                    .and_then(|p| p["oplogIdx"].as_u64())
            });
            if let Some(idx) = waiting {
                break idx;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let (url, body) = if i % 2 == 0 {
            let minted: Value = client
                .post(format!("{worker}/promises/{idx}/link"))
                .json(&json!({}))
                .send()
                .await?
                .json()
                .await?;
            let url = minted["url"].as_str().context("no link")?;
            (format!("{base}{url}/complete"), json!({ "data": [1] }))
        } else {
            (
                format!("{worker}/complete"),
                json!({ "oplogIdx": idx, "data": [1] }),
            )
        };
        let started = Instant::now();
        let answer: Value = client.post(url).json(&body).send().await?.json().await?;
        ensure!(answer == json!(true), "{answer}");
        parked.await??;
        let elapsed = started.elapsed();
        if i % 2 == 0 {
            link.push(elapsed);
        } else {
            golem.push(elapsed);
        }
    }
    Ok((link, golem))
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn render(off: &[f64], on: &[f64], link: &[Duration], golem: &[Duration]) -> String {
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let (off_rps, on_rps) = (median(off), median(on));
    let rounds = |values: &[f64]| {
        values
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "# Security benchmark\n\n\
         `cargo bench -p vow-server --bench security` on this project's 2-core machine; \
         server and clients in one process on separate tokio runtimes, in-memory executor.\n\n\
         ## API token on vs off\n\n\
         `GET /v1/components` from {CLIENTS} keep-alive clients (reqwest), {ROUNDS} rounds of \
         {} s per server, alternating, same run.\n\n\
         | API token | requests/s (median of rounds) | rounds |\n|---|---|---|\n\
         | off | {off_rps:.0} | {} |\n| on | {on_rps:.0} | {} |\n\n\
         Ratio on/off: **{:.3}**. The check is one SHA-256 of the presented token and a \
         constant-time comparison per request.\n\n\
         ## Completion through a link\n\n\
         One harness worker parked in `create-and-await` under an `invoke-and-await`; timed \
         from sending the completion until the parked request's answer arrived; {SAMPLES} \
         samples each, alternating.\n\n\
         | route | p50 | p90 | p99 |\n|---|---|---|---|\n\
         | `POST /v1/links/{{token}}/complete` | {:.0} µs | {:.0} µs | {:.0} µs |\n\
         | `POST .../workers/{{name}}/complete` (Golem's) | {:.0} µs | {:.0} µs | {:.0} µs |\n\n\
         A link adds the token's HMAC-SHA256 check to Golem's path (the key here is kept in memory; with a key file, one `stat` of it too).\n",
        ROUND.as_secs(),
        rounds(off),
        rounds(on),
        on_rps / off_rps,
        micros(percentile(link, 0.5)),
        micros(percentile(link, 0.9)),
        micros(percentile(link, 0.99)),
        micros(percentile(golem, 0.5)),
        micros(percentile(golem, 0.9)),
        micros(percentile(golem, 0.99)),
    )
}
