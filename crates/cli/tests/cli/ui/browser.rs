//! A headless Chromium driven through WebDriver: Debian's `chromium` and
//! `chromedriver` (packages `chromium` and `chromium-driver`, which
//! `scripts/test.sh` installs), a fresh profile per browser, and helpers
//! that wait for the page instead of sleeping.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// Longest the page may take to show something.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The flags the browser tests start Chromium with: no sandbox (the tests
/// run as root), nothing that reaches the network by itself.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-crash-reporter",
    "--disable-breakpad",
];

/// Where chromedriver and Chromium are, or why the tests cannot run.
/// `VOW_SKIP_BROWSER=1` skips them (saying so) where neither is installed.
pub fn tools() -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    let driver = std::env::var_os("VOW_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| which("chromedriver"));
    // Debian's /usr/bin/chromium is a shell wrapper around this binary.
    let chromium = std::env::var_os("VOW_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/lib/chromium/chromium")).filter(|p| p.is_file()))
        .or_else(|| which("chromium"));
    match (driver, chromium) {
        (Some(driver), Some(chromium)) => Ok(Some((driver, chromium))),
        _ if std::env::var("VOW_SKIP_BROWSER").as_deref() == Ok("1") => {
            println!("skipped: VOW_SKIP_BROWSER=1 and no chromedriver/chromium installed");
            Ok(None)
        }
        _ => bail!(
            "the browser tests need Debian's chromium and chromium-driver \
             (apt-get install -y chromium chromium-driver; scripts/test.sh installs them), \
             or VOW_CHROMEDRIVER and VOW_CHROMIUM, or VOW_SKIP_BROWSER=1 to skip them"
        ),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A chromedriver process and one session of a headless Chromium.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a Chromium with a fresh
    /// profile and a `width`×`height` window.
    pub async fn start(
        tools: &(PathBuf, PathBuf),
        width: u32,
        height: u32,
    ) -> anyhow::Result<Self> {
        let (driver_path, chromium) = tools;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // A process group of its own, which Chromium joins: killing the
        // group ends both, even when a test fails before closing them.
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", driver_path.display()))?;
        let profile = tempfile::tempdir()?;
        let mut args: Vec<String> = FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": chromium, "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        // chromedriver takes a moment to listen.
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => bail!("cannot start a Chromium session at {url}: {error}"),
            }
        };
        Ok(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Ends the session, then chromedriver and Chromium.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.client.clone().close().await?;
        self.kill();
        Ok(())
    }

    /// Kills chromedriver's process group (Chromium's processes with it).
    fn kill(&mut self) {
        if let Ok(None) = self.driver.try_wait() {
            // Never through kill(1): see the rustix dependency's comment.
            let group = i32::try_from(self.driver.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            match group {
                Some(group) => {
                    let _ =
                        rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
                None => {
                    let _ = self.driver.kill();
                }
            }
            let _ = self.driver.wait();
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// Waits until `script` answers something truthy, and answers it.
    pub async fn until(&self, what: &str, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.js(script, args.clone()).await?;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            if truthy {
                return Ok(value);
            }
            if Instant::now() > deadline {
                let text = self.js("return document.body.innerText", vec![]).await?;
                bail!("the page never showed {what}; it shows: {text}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for the element `css` and answers it.
    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => return Ok(element),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => {
                    let text = self.js("return document.body.innerText", vec![]).await?;
                    bail!("no element {css}: {error}; the page shows: {text}")
                }
            }
        }
    }

    /// The form control labelled `label` inside the element `scope`.
    pub async fn field(&self, scope: &str, label: &str) -> anyhow::Result<Element> {
        let id = self
            .until(
                &format!("a field labelled {label:?} in {scope}"),
                "const scope = document.querySelector(arguments[0]);
                 const l = scope && [...scope.querySelectorAll('label')]
                   .find((l) => l.firstChild && l.firstChild.textContent.trim() === arguments[1]);
                 return l ? l.htmlFor : null;",
                vec![json!(scope), json!(label)],
            )
            .await?;
        let id = id.as_str().context("a label without for")?;
        self.find(&format!("#{id}")).await
    }

    /// Saves a PNG of the window to `path` when `VOW_SCREENSHOTS=1`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        if std::env::var("VOW_SCREENSHOTS").as_deref() != Ok("1") {
            return Ok(());
        }
        // Relative times and the focus ring settle first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let png = self.client.screenshot().await?;
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))?;
        println!("screenshot: {}", path.display());
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test must not leave chromedriver and Chromium behind.
        self.kill();
    }
}
