//! Running the real `vow` binary: one-shot commands with a deadline, and a
//! background `vow serve` that is killed when the test ends.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

/// Longest a command that compiles nothing new may take.
pub const QUICK: Duration = Duration::from_secs(120);

/// Longest a command that may compile a component may take. A Python
/// component is 18 MB of wasm, which a debug build of the compiler needs
/// minutes for; the compiled code is cached (see [`cache_dir`]), so only
/// the first run of the tests pays this.
pub const COMPILING: Duration = Duration::from_secs(30 * 60);

/// The compilation cache shared by every test and kept between runs.
pub fn cache_dir() -> PathBuf {
    vow_tests::workspace_root()
        .join("target")
        .join("vow-cli-tests")
        .join("cache")
}

/// A `vow` command with an environment that does not leak the caller's
/// settings into the test.
pub fn vow() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vow"));
    command
        .env_remove("VOW_SERVER")
        .env_remove("VOW_AUTH_TOKEN")
        .env_remove("RUST_LOG")
        .env_remove("VOW_LOG_FORMAT")
        .env_remove("VOW_OTLP_FILTER")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_BACKTRACE", "0");
    command
}

/// Where a server keeps its state.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A data directory (SQLite).
    DataDir(PathBuf),
    /// A PostgreSQL database, by URL.
    Database(String),
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Fails with everything printed unless the command succeeded.
    pub fn success(self) -> anyhow::Result<Self> {
        if !self.status.success() {
            bail!("vow failed ({}): {self:#?}", self.status);
        }
        Ok(self)
    }

    /// Fails unless the command exited with `code`.
    pub fn code(self, code: i32) -> anyhow::Result<Self> {
        if self.status.code() != Some(code) {
            bail!("expected exit code {code}: {self:#?}");
        }
        Ok(self)
    }
}

/// Runs `vow ARGS` with no stdin and waits at most `limit`.
pub fn run(args: &[&str], limit: Duration) -> anyhow::Result<Finished> {
    let mut child = Running::spawn(args)?;
    child.finish(limit)
}

/// A `vow` process whose output is collected as it arrives.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Collector,
    stderr: Collector,
    label: String,
}

impl Running {
    /// Kills the process with SIGKILL and waits until it is gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends the process the signal `name` (`TERM`, `INT`, ...) with
    /// `kill(1)`, without waiting for it to act.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -{name} {} failed: {status}", self.child.id());
        }
        Ok(())
    }

    /// Starts `vow ARGS` with stdin, stdout and stderr piped.
    pub fn spawn(args: &[&str]) -> anyhow::Result<Self> {
        let mut child = vow()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start vow")?;
        let stdout = Collector::start(child.stdout.take().context("no stdout")?);
        let stderr = Collector::start(child.stderr.take().context("no stderr")?);
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            label: format!("vow {}", args.join(" ")),
        })
    }

    /// Writes to the process's stdin.
    pub fn write_stdin(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin.write_all(bytes)?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits until stderr contains `needle`; returns stderr so far.
    pub fn wait_stderr(&self, needle: &str, limit: Duration) -> anyhow::Result<String> {
        self.stderr.wait_for(needle, limit).with_context(|| {
            format!(
                "{}: no {needle:?} on stderr; stdout: {:?}",
                self.label,
                self.stdout.text()
            )
        })
    }

    /// Waits until stdout contains `needle`; returns stdout so far.
    pub fn wait_stdout(&self, needle: &str, limit: Duration) -> anyhow::Result<String> {
        self.stdout.wait_for(needle, limit).with_context(|| {
            format!(
                "{}: no {needle:?} on stdout; stderr: {:?}",
                self.label,
                self.stderr.text()
            )
        })
    }

    /// Closes stdin and waits at most `limit` for the process to exit.
    pub fn finish(&mut self, limit: Duration) -> anyhow::Result<Finished> {
        drop(self.stdin.take());
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{} did not finish within {limit:?}; stdout: {:?}, stderr: {:?}",
                    self.label,
                    self.stdout.text(),
                    self.stderr.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Finished {
            status,
            stdout: self.stdout.finish(),
            stderr: self.stderr.finish(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed half-way must not leave servers behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a pipe on a thread into a shared string.
struct Collector {
    text: Arc<Mutex<String>>,
    grew: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn start(pipe: impl std::io::Read + Send + 'static) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, grew) = mpsc::channel();
        let shared = Arc::clone(&text);
        let thread = std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            while let Ok(n) = reader.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                if let Ok(mut text) = shared.lock() {
                    text.push_str(&String::from_utf8_lossy(&line));
                }
                line.clear();
                let _ = tx.send(());
            }
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        });
        Self {
            text,
            grew,
            thread: Some(thread),
        }
    }

    fn text(&self) -> String {
        self.text.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, limit: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.text();
            if text.contains(needle) {
                return Ok(text);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.grew.recv_timeout(left) {
                Ok(()) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => bail!("timed out after {limit:?}"),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let text = self.text();
                    if text.contains(needle) {
                        return Ok(text);
                    }
                    bail!("the stream ended")
                }
            }
        }
    }

    /// Everything, once the pipe is closed.
    fn finish(&mut self) -> String {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.text()
    }
}

/// A `vow serve` in the background, killed on drop.
pub struct Server {
    /// Held so that dropping the server kills the process.
    process: Running,
    /// The data directory, removed when the server is dropped unless it
    /// was given by the test.
    _data: Option<tempfile::TempDir>,
    /// `http://ADDR`, as printed.
    pub url: String,
    /// Everything printed before `listening on`.
    pub banner: String,
}

impl Server {
    /// Starts `vow serve --addr 127.0.0.1:0` with these components on a
    /// fresh data directory and waits until it prints the address it
    /// listens on (http:// or, with --tls-cert, https://).
    pub fn start(components: &[&Path]) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let mut server = Self::start_in(data.path(), components, &[])?;
        server._data = Some(data);
        Ok(server)
    }

    /// Starts `vow serve` on the data directory `data` with extra flags.
    pub fn start_in(data: &Path, components: &[&Path], extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_on(&Backend::DataDir(data.to_owned()), components, extra)
    }

    /// Starts `vow serve` keeping its state in `backend`, with extra flags.
    pub fn start_on(
        backend: &Backend,
        components: &[&Path],
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let args = Self::args(backend, components, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Running::spawn(&args)?;
        let stdout = process.wait_stdout("listening on http", COMPILING)?;
        Self::listening(process, &stdout)
    }

    /// Starts `vow serve` as [`Server::start_on`] does, for a server that
    /// may refuse to start: the server once it listens, or what it printed
    /// and its exit status if it exits first.
    pub fn start_or_exit(
        backend: &Backend,
        components: &[&Path],
        extra: &[&str],
    ) -> anyhow::Result<Result<Self, Finished>> {
        let args = Self::args(backend, components, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut process = Running::spawn(&args)?;
        match process.wait_stdout("listening on http", COMPILING) {
            Ok(stdout) => Ok(Ok(Self::listening(process, &stdout)?)),
            Err(_) => Ok(Err(process.finish(QUICK)?)),
        }
    }

    /// The arguments of `vow serve` on `backend` with these components.
    fn args(backend: &Backend, components: &[&Path], extra: &[&str]) -> Vec<String> {
        let cache = cache_dir();
        let mut args = vec![
            "serve".to_owned(),
            "--addr".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--cache-dir".to_owned(),
            cache.display().to_string(),
        ];
        match backend {
            Backend::DataDir(dir) => {
                args.extend(["--data-dir".to_owned(), dir.display().to_string()]);
            }
            Backend::Database(url) => args.extend(["--database-url".to_owned(), url.clone()]),
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        for component in components {
            args.push("--component".to_owned());
            args.push(component.display().to_string());
        }
        args
    }

    /// The server `process`, which printed `stdout` up to its address.
    fn listening(process: Running, stdout: &str) -> anyhow::Result<Self> {
        let (banner, rest) = stdout
            .split_once("listening on ")
            .ok_or_else(|| anyhow!("no address in {stdout:?}"))?;
        let url = rest.lines().next().unwrap_or_default().trim().to_owned();
        Ok(Self {
            process,
            _data: None,
            url,
            banner: banner.to_owned(),
        })
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and waits
    /// until it is gone.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.process.kill()
    }

    /// Sends the server SIGTERM (a graceful shutdown) without waiting.
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.process.signal("TERM")
    }

    /// Waits at most `limit` for the server to exit by itself (after
    /// [`Server::terminate`]); what it printed and its exit status.
    pub fn wait_exit(mut self, limit: Duration) -> anyhow::Result<Finished> {
        self.process.finish(limit)
    }

    /// Waits until the server's stderr contains `needle`; returns its
    /// stderr so far.
    pub fn wait_stderr(&self, needle: &str) -> anyhow::Result<String> {
        self.process.wait_stderr(needle, QUICK)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Runs a client command against this server.
    pub fn client(&self, args: &[&str]) -> anyhow::Result<Finished> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", &self.url]);
        run(&all, QUICK)
    }

    /// Starts a client command against this server without waiting for it.
    pub fn spawn_client(&self, args: &[&str]) -> anyhow::Result<Running> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", &self.url]);
        Running::spawn(&all)
    }

    /// The id of the preloaded component named `name`, from the banner.
    pub fn component_id(&self, name: &str) -> anyhow::Result<String> {
        let prefix = format!("component {name} ");
        self.banner
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no component {name} in the banner {:?}", self.banner))
    }

    /// Polls `vow promise list --json` until a pending promise of `worker`
    /// is awaited; returns its id.
    pub fn awaited_promise(&self, component: &str, worker: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + QUICK;
        loop {
            let listed = self
                .client(&[
                    "promise",
                    "list",
                    "--json",
                    "--status",
                    "pending",
                    "--component",
                    component,
                    "--worker",
                    worker,
                ])?
                .success()?;
            let json: serde_json::Value = serde_json::from_str(&listed.stdout)?;
            let awaited = json["promises"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["awaited"] == true);
            if let Some(promise) = awaited {
                return promise["promiseId"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("no promiseId in {promise}"));
            }
            if Instant::now() >= deadline {
                bail!("worker {worker} never awaited a promise: {json}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `vow worker get --json` until the worker has `status`.
    pub fn wait_status(&self, component: &str, worker: &str, status: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + QUICK;
        loop {
            let got = self
                .client(&["worker", "get", component, worker, "--json"])?
                .success()?;
            let json: serde_json::Value = serde_json::from_str(&got.stdout)?;
            // The API spells statuses as Golem does (`Suspended`).
            if json["status"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(status))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("worker {worker} never became {status}: {json}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a server answered to one HTTP request: the status and the body,
/// parsed as JSON (a body that is not JSON is kept as a JSON string).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Sends one request with `reqwest` (a JSON body when `body` is given, and
/// an `Idempotency-Key` header when `key` is) and reads the whole answer.
/// A transport failure, including a connection closed before the body was
/// complete, is an `Err`: only a full answer is a [`Reply`].
pub async fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&serde_json::Value>,
    key: Option<&str>,
) -> reqwest::Result<Reply> {
    let mut builder = http.request(method, url);
    if let Some(body) = body {
        builder = builder
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    let response = builder.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok(Reply { status, body })
}
