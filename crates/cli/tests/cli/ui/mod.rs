//! The web page in a real headless Chromium, against a real `vow serve`
//! with an API token: a person completes a parked worker's typed promise
//! from the pending list and through a completion link, live, without a
//! reload.
//!
//! `VOW_SCREENSHOTS=1` also writes the screenshots in `docs/images/`; the
//! tests print the page's weight and how long a change takes to show
//! (`benchmarks/operators.md`):
//!
//! ```sh
//! VOW_SCREENSHOTS=1 cargo test -p vow-cli --test cli ui:: -- --nocapture --test-threads 1
//! ```

#![allow(
    clippy::print_stdout,
    reason = "the tests print what they measured and the screenshots they wrote"
)]

mod browser;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use fantoccini::key::Key;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use self::browser::Browser;
use crate::support::Server;

const TOKEN: &str = "page-t0ken";

/// The declared type of the promises the tests answer.
const APPROVAL: &str =
    "record { approved: bool, note: option<string>, level: enum { low, high }, count: u32 }";

/// The REST API with the token, for what the test does besides the page.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.url.clone(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let reply = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await?;
        let status = reply.status();
        let body: Value = reply.json().await?;
        ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    async fn start_worker(&self, cid: &str, name: &str) -> anyhow::Result<()> {
        self.post(
            &format!("/v1/components/{cid}/workers"),
            json!({ "name": name }),
        )
        .await
        .map(drop)
    }

    /// Invokes `function` of worker `name` and awaits its result.
    async fn invoke(
        &self,
        cid: &str,
        name: &str,
        function: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        let path =
            format!("/v1/components/{cid}/workers/{name}/invoke-and-await?function={function}");
        Ok(self.post(&path, json!({ "params_json": params })).await?["result"].take())
    }

    /// A new worker parked on a promise of type [`APPROVAL`]: the promise's
    /// id and the invocation, which returns the payload.
    async fn park_typed(
        &self,
        cid: &str,
        name: &str,
    ) -> anyhow::Result<(String, u64, JoinHandle<anyhow::Result<Value>>)> {
        self.start_worker(cid, name).await?;
        let options = json!({ "timeout-ms": null, "retention-ms": null, "payload-type": APPROVAL });
        let id = self
            .invoke(cid, name, "vow-create", json!([options]))
            .await?;
        let idx = id["oplog-idx"].as_u64().context("no oplog-idx")?;
        let promise = format!("{cid}/{name}/{idx}");
        let api = self.clone();
        let (cid, name) = (cid.to_owned(), name.to_owned());
        let call =
            tokio::spawn(
                async move { api.invoke(&cid, &name, "await-payload", json!([id])).await },
            );
        Ok((promise, idx, call))
    }
}

/// Milliseconds since the Unix epoch, the clock the page's `Date.now()` reads.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The payload bytes an `await-payload` returned, parsed as JSON.
fn payload(result: &Value) -> anyhow::Result<Value> {
    let bytes: Vec<u8> = serde_json::from_value(result.clone())?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn images() -> PathBuf {
    vow_tests::workspace_root().join("docs").join("images")
}

/// The median, 90th percentile and maximum of `samples`, in ms.
fn spread(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.9), at(1.0))
}

/// Fills the form of card `card` with an approval.
async fn fill_approval(
    browser: &Browser,
    card: &str,
    note: &str,
    level: &str,
    count: &str,
) -> anyhow::Result<()> {
    browser.field(card, "approved").await?.click().await?;
    browser.field(card, "note").await?.send_keys(note).await?;
    browser
        .field(card, "level")
        .await?
        .select_by_value(level)
        .await?;
    browser.field(card, "count").await?.send_keys(count).await?;
    Ok(())
}

/// Types the API token into the page's dialog.
async fn give_token(browser: &Browser) -> anyhow::Result<()> {
    browser.find("#token-dialog[open] #token-input").await?;
    let input = browser.find("#token-input").await?;
    input.send_keys(TOKEN).await?;
    input.send_keys(&char::from(Key::Enter).to_string()).await?;
    browser
        .until(
            "the dialog closed",
            "return !document.getElementById('token-dialog').open",
            vec![],
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_completes_a_parked_workers_promise_on_the_page() -> anyhow::Result<()> {
    let Some(tools) = browser::tools()? else {
        return Ok(());
    };
    let harness = vow_tests::guest("harness")?;
    let data = tempfile::tempdir()?;
    let server = Server::start_in(data.path(), &[&harness], &["--auth-token", TOKEN])?;
    let cid = server.component_id("harness")?;
    let api = Api::new(&server);
    let browser = Browser::start(&tools, 1280, 900).await?;

    // The page asks for the token once, then lists nothing.
    browser.client.goto(&server.url).await?;
    give_token(&browser).await?;
    browser
        .until(
            "an empty pending list",
            "const e = document.getElementById('pending-empty'); return e && !e.hidden",
            vec![],
        )
        .await?;
    browser.find("#live.on").await?;
    // Set once; a reload would lose it.
    browser.js("window.sameDocument = true", vec![]).await?;

    // A worker parks: its promise appears, live.
    let (id, _, call) = api.park_typed(&cid, "approver").await?;
    let card = format!("#pending li[data-promise=\"{id}\"]");
    browser.find(&format!("{card} form")).await?;
    api.start_worker(&cid, "reviewer").await?;
    let reviewer = {
        let api = api.clone();
        let cid = cid.clone();
        tokio::spawn(async move {
            api.invoke(&cid, "reviewer", "create-and-await", json!([]))
                .await
        })
    };
    browser
        .find(&format!("#pending li[data-promise^=\"{cid}/reviewer/\"]"))
        .await?;

    fill_approval(&browser, &card, "ship it", "high", "3").await?;
    // The page learns live that the worker now waits on it.
    browser
        .until(
            "the worker parked on it",
            "return document.querySelector(`${arguments[0]} dd[data-fact=Awaited]`)
               .textContent.startsWith('yes')",
            vec![json!(card)],
        )
        .await?;
    browser.screenshot(&images().join("pending.png")).await?;
    browser.client.set_window_size(390, 844).await?;
    browser
        .js(
            "document.querySelector(arguments[0]).scrollIntoView()",
            vec![json!(card)],
        )
        .await?;
    browser
        .screenshot(&images().join("pending-phone.png"))
        .await?;
    browser.client.set_window_size(1280, 900).await?;

    // Complete: the worker gets the value, the card leaves the list.
    browser
        .find(&format!("{card} button[type=submit]"))
        .await?
        .click()
        .await?;
    let result = call.await??;
    assert_eq!(
        payload(&result)?,
        json!({ "approved": true, "note": "ship it", "level": "high", "count": 3 })
    );
    let answer = browser
        .until(
            "the answer in place",
            "const c = document.querySelector(`#settled li[data-promise=\"${arguments[0]}\"]`);
             return c && !document.querySelector(`#pending li[data-promise=\"${arguments[0]}\"]`)
               && c.querySelector('.answer').innerText;",
            vec![json!(id)],
        )
        .await?;
    let answer = answer.as_str().unwrap_or_default();
    assert!(answer.starts_with("Completed."), "{answer}");
    assert!(answer.contains("\"ship it\""), "{answer}");

    // Reject: Enter in the reason rejects (it never sends the completion
    // above it), and the worker's await fails with the reason.
    let (declined, _, decline) = api.park_typed(&cid, "decliner").await?;
    let decliner = format!("#pending li[data-promise=\"{declined}\"]");
    browser
        .find(&format!("{decliner} details.reject summary"))
        .await?
        .click()
        .await?;
    let reason = browser.field(&decliner, "Reason").await?;
    reason.send_keys("not this week").await?;
    reason
        .send_keys(&char::from(Key::Enter).to_string())
        .await?;
    let failed = match decline.await? {
        Ok(value) => bail!("the rejected promise's await returned {value}"),
        Err(error) => format!("{error:#}"),
    };
    assert!(failed.contains("not this week"), "{failed}");
    let answer = browser
        .until(
            "the rejection in place",
            "const c = document.querySelector(`#settled li[data-promise=\"${arguments[0]}\"]`);
             return c && c.querySelector('.answer').innerText;",
            vec![json!(declined)],
        )
        .await?;
    let answer = answer.as_str().unwrap_or_default();
    assert_eq!(answer, "Rejected. Reason: not this week");

    // How long a new wait and a settlement take to show.
    api.start_worker(&cid, "many").await?;
    let (mut appear, mut settle) = (Vec::new(), Vec::new());
    for round in 0..20u64 {
        // Changes come at any moment of the watcher's interval, not just
        // after the look that showed the previous one.
        tokio::time::sleep(std::time::Duration::from_millis(round * 37 % 100)).await;
        let made = api.invoke(&cid, "many", "new-promise", json!([])).await?;
        let created = now_ms();
        let idx = made["oplog-idx"].as_u64().context("no oplog-idx")?;
        let many = format!("{cid}/many/{idx}");
        let shown = browser
            .until(
                "a new promise",
                "const c = document.querySelector(`#pending li[data-promise=\"${arguments[0]}\"]`);
                 return c && Number(c.dataset.shownAt);",
                vec![json!(many)],
            )
            .await?;
        appear.push(shown.as_f64().unwrap_or_default() - created);
        tokio::time::sleep(std::time::Duration::from_millis(round * 53 % 100)).await;
        api.post(
            &format!("/v1/components/{cid}/workers/many/complete"),
            json!({ "oplogIdx": idx, "data": b"ok" }),
        )
        .await?;
        let completed = now_ms();
        let gone = browser
            .until(
                "a settlement",
                "const c = document.querySelector(`#settled li[data-promise=\"${arguments[0]}\"]`);
                 return c && Number(c.dataset.settledAt);",
                vec![json!(many)],
            )
            .await?;
        settle.push(gone.as_f64().unwrap_or_default() - completed);
    }
    let (p50, p90, max) = spread(appear);
    println!(
        "live: a new wait shows in {p50:.0} ms (median), {p90:.0} ms (p90), {max:.0} ms (max) of 20"
    );
    let (p50, p90, max) = spread(settle);
    println!(
        "live: a completion shows in {p50:.0} ms (median), {p90:.0} ms (p90), {max:.0} ms (max) of 20"
    );

    // What the page weighs, as the browser loaded it.
    let weight = browser
        .js(
            "const kinds = {html: 0, css: 0, js: 0, other: 0};
             kinds.html = performance.getEntriesByType('navigation')[0].decodedBodySize;
             for (const r of performance.getEntriesByType('resource')) {
               const path = new URL(r.name).pathname;
               if (!path.startsWith('/ui/')) continue;
               const kind = path.endsWith('.js') ? 'js' : path.endsWith('.css') ? 'css' : 'other';
               kinds[kind] += r.decodedBodySize;
             }
             return kinds;",
            vec![],
        )
        .await?;
    println!("page weight (bytes, uncompressed, as loaded): {weight}");

    // The worker's page links to its promises, and a promise back to it.
    browser
        .find(&format!(
            "#settled li[data-promise=\"{id}\"] dd a[href$=\"/approver\"]"
        ))
        .await?
        .click()
        .await?;
    browser
        .find(&format!("tr[data-promise=\"{id}\"] a"))
        .await?
        .click()
        .await?;
    browser
        .find("main > p a[href$=\"/approver\"]")
        .await?
        .click()
        .await?;
    browser.find(&format!("tr[data-promise=\"{id}\"]")).await?;
    browser.find("#oplog").await?;
    browser.screenshot(&images().join("worker.png")).await?;

    // Workers: filtered and searched.
    browser
        .find("#nav a[data-view=workers]")
        .await?
        .click()
        .await?;
    browser.find("tr[data-worker$=\"/reviewer\"]").await?;
    browser.screenshot(&images().join("workers.png")).await?;
    browser
        .find("#filter-search")
        .await?
        .send_keys("appr")
        .await?;
    browser
        .until(
            "only the approver",
            "const rows = [...document.querySelectorAll('tr[data-worker]')];
             return rows.length === 1 && rows[0].dataset.worker.endsWith('/approver');",
            vec![],
        )
        .await?;
    browser
        .find("#nav a[data-view=components]")
        .await?
        .click()
        .await?;
    browser.find("main table tbody tr").await?;
    browser.screenshot(&images().join("components.png")).await?;

    let same = browser
        .js("return window.sameDocument === true", vec![])
        .await?;
    assert_eq!(same, json!(true), "the page was reloaded");
    browser.close().await?;
    reviewer.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_link_shows_one_promise_and_a_second_click_is_too_late() -> anyhow::Result<()>
{
    let Some(tools) = browser::tools()? else {
        return Ok(());
    };
    let harness = vow_tests::guest("harness")?;
    let data = tempfile::tempdir()?;
    let server = Server::start_in(data.path(), &[&harness], &["--auth-token", TOKEN])?;
    let cid = server.component_id("harness")?;
    let api = Api::new(&server);
    let (id, idx, call) = api.park_typed(&cid, "signer").await?;
    let link = api
        .post(
            &format!("/v1/components/{cid}/workers/signer/promises/{idx}/link"),
            json!({}),
        )
        .await?;
    let url = link["url"].as_str().context("no url")?.to_owned();

    // Two people open the link; neither is asked for the API token.
    let browser = Browser::start(&tools, 900, 900).await?;
    browser.client.goto(&url).await?;
    let first = browser.client.window().await?;
    browser.find("li.card form").await?;
    let shown = browser
        .js(
            "return {cards: document.querySelectorAll('li.card').length,
                     nav: !!document.getElementById('nav'),
                     dialog: !!document.getElementById('token-dialog'),
                     id: document.querySelector('li.card').dataset.promise};",
            vec![],
        )
        .await?;
    assert_eq!(
        shown,
        json!({ "cards": 1, "nav": false, "dialog": false, "id": id })
    );
    let second = browser.client.new_window(true).await?.handle;
    browser.client.switch_to_window(second.clone()).await?;
    browser.client.goto(&url).await?;
    browser.find("li.card form").await?;

    // The first completes it.
    browser.client.switch_to_window(first).await?;
    fill_approval(&browser, "li.card", "by link", "low", "7").await?;
    browser.screenshot(&images().join("link.png")).await?;
    browser
        .find("li.card button[type=submit]")
        .await?
        .click()
        .await?;
    browser
        .until(
            "the completion",
            "return document.querySelector('li.card .answer').innerText.startsWith('Completed.')",
            vec![],
        )
        .await?;
    let result = call.await??;
    assert_eq!(
        payload(&result)?,
        json!({ "approved": true, "note": "by link", "level": "low", "count": 7 })
    );

    // The second answers from the keyboard (Enter in a field), too late.
    browser.client.switch_to_window(second).await?;
    let count = browser.field("li.card", "count").await?;
    count
        .send_keys(&format!("1{}", char::from(Key::Enter)))
        .await?;
    let answer = browser
        .until(
            "the second answer",
            "return document.querySelector('li.card .answer').innerText",
            vec![],
        )
        .await?;
    assert!(
        answer
            .as_str()
            .is_some_and(|a| a.starts_with("Already completed by someone else")),
        "{answer}"
    );
    browser.close().await?;
    Ok(())
}
