//! Statistics, CPU accounting, the profiler hook and the markdown table.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Result;

use crate::conn::Kind;

/// The p50 targets: in memory, and with a durable store (issue 6).
pub const TARGET_P50: Duration = Duration::from_micros(200);
pub const TARGET_P50_DURABLE: Duration = Duration::from_micros(500);
const TARGET_RATE: f64 = 20_000.0;

/// Percentiles of a set of durations.
pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub count: usize,
}

impl Stats {
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len().saturating_sub(1)) as f64 * q).round() as usize;
            samples.get(i).copied().unwrap_or_default()
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
            count: samples.len(),
        }
    }
}

/// What one kind of client measured.
pub struct Run {
    pub kind: Kind,
    /// `POST complete` sent → parked response arrived.
    pub to_resume: Stats,
    /// `POST complete` sent → its own answer arrived.
    pub to_answer: Stats,
    /// Median of the throughput rounds, completions per second.
    pub rate: f64,
    pub rates: Vec<f64>,
    pub cpu_per_completion: Duration,
    pub busy_cores: f64,
    /// A completion of an already completed promise, round trip.
    pub http_only: Stats,
    /// Such completions per second with the throughput clients.
    pub http_rate: f64,
}

/// Everything the report shows.
pub struct Measured {
    /// The p50 target of a single completion.
    pub target_p50: Duration,
    pub workers: usize,
    pub clients: usize,
    pub runs: Vec<Run>,
    pub direct: Stats,
}

/// CPU time of every thread of this process so far (from
/// `/proc/self/task/*/schedstat`; zero where unavailable).
pub fn cpu_time() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Lets `perf record -D -1 --control fifo:FIFO` profile only the throughput
/// rounds of the minimal client: set `REST_BENCH_PERF_FIFO=FIFO`.
pub struct Profiler(Option<std::sync::Mutex<std::fs::File>>);

impl Profiler {
    pub fn from_env() -> Result<Self> {
        match std::env::var_os("REST_BENCH_PERF_FIFO") {
            None => Ok(Self::off()),
            Some(path) => {
                let file = std::fs::OpenOptions::new().write(true).open(path)?;
                Ok(Self(Some(std::sync::Mutex::new(file))))
            }
        }
    }

    pub fn off() -> Self {
        Self(None)
    }

    fn send(&self, command: &str) {
        use std::io::Write as _;
        if let Some(fifo) = &self.0
            && let Ok(mut fifo) = fifo.lock()
        {
            let _ = writeln!(fifo, "{command}");
        }
    }

    pub fn enable(&self) {
        self.send("enable");
    }

    pub fn disable(&self) {
        self.send("disable");
    }
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn first_line(command: &str, args: &[&str]) -> String {
    std::process::Command::new(command)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The report as markdown.
pub fn render(m: &Measured) -> String {
    let cpu = vow_tests::cpu_model();
    let nproc = first_line("nproc", &[]);
    let date = first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let (workers, clients) = (m.workers, m.clients);
    let mut out = String::new();
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    line("# REST benchmark: completion → resume → `invoke-and-await` answer\n".into());
    line(format!(
        "Command: `cargo bench -p vow-server --bench rest` (release). Date: {date}.  "
    ));
    line(format!(
        "Machine: `nproc` = {nproc}, {cpu}. Server and clients run in one process, on two tokio runtimes (two worker threads each), so they share these cores.  "
    ));
    line(format!(
        "Setup: {workers} harness workers, each parked in `create-and-await` by an open `invoke-and-await` request on a keep-alive connection of its own.\n"
    ));
    line("| measurement | client | target | measured | |".into());
    line("|---|---|---|---|---|".into());
    for run in &m.runs {
        let client = run.kind.label();
        let rates: Vec<String> = run.rates.iter().map(|r| format!("{r:.0}")).collect();
        line(format!(
            "| single completion: `POST complete` sent → parked `invoke-and-await` answer arrived, p50 ({} samples, one at a time) | {client} | ≤ {} | {} | {} |",
            run.to_resume.count,
            micros(m.target_p50),
            micros(run.to_resume.p50),
            verdict(run.to_resume.p50 <= m.target_p50)
        ));
        line(format!(
            "| same, p99 / max | {client} | | {} / {} | |",
            micros(run.to_resume.p99),
            micros(run.to_resume.max)
        ));
        line(format!(
            "| throughput: {clients} concurrent keep-alive clients complete {workers} parked workers; first completion sent → last answer arrived (rounds: {}) | {client} | ≥ {TARGET_RATE:.0}/s | {:.0}/s | {} |",
            rates.join(", "),
            run.rate,
            verdict(run.rate >= TARGET_RATE)
        ));
        line(format!(
            "| CPU per completion during the throughput rounds (all threads: clients, server, guests); cores busy | {client} | | {} ; {:.2} | |",
            micros(run.cpu_per_completion),
            run.busy_cores
        ));
        line(format!(
            "| reference: `POST complete` round trip (answer `true`), p50 | {client} | | {} | |",
            micros(run.to_answer.p50)
        ));
        line(format!(
            "| reference: `POST complete` of an already completed promise (`false`: HTTP and routing, no resume), p50 / p99 | {client} | | {} / {} | |",
            micros(run.http_only.p50),
            micros(run.http_only.p99)
        ));
        line(format!(
            "| reference: the throughput clients sending only such no-resume completions (the HTTP stack's ceiling here) | {client} | | {:.0}/s | |",
            run.http_rate
        ));
    }
    line(format!(
        "| reference: `Executor::complete_promise` → `InvocationHandle::result`, no HTTP, p50 / p99 | none | | {} / {} | |",
        micros(m.direct.p50),
        micros(m.direct.p99)
    ));
    line(String::new());
    line("Reading the table: a completion that resumes a guest costs the server two HTTP messages (the `complete` exchange and the parked request's answer) plus the resume, so its rate is bounded by about half of the no-resume ceiling on the same machine. The two clients differ only in client-side CPU, which here comes out of the same cores as the server's.".into());
    out
}
