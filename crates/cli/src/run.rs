//! `vow run`: one invocation in this process.
//!
//! The call runs on a worker of its own. While it runs, the guest's output is
//! forwarded as it appears, and whenever the guest parks in `await-promise`
//! on one of its promises, the person at the terminal is asked for the
//! payload: the next line of stdin completes the promise.

use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::mpsc;
use vow_runtime::{
    Executor, Invocation, PromiseFilter, PromiseId, PromiseStatus, WorkerConfig, WorkerId,
};

use crate::RunArgs;
use crate::local;
use crate::output;

/// How often the worker's output and promises are looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let executor = local::limit(local::builder(&args.cache), &args.limits)?
        .build()
        .context("cannot set up the runtime")?;
    let component = local::load(&executor, &args.component).await?;
    if args.list {
        if args.json {
            return output::json(&component.exports);
        }
        for export in &component.exports {
            output::line(&output::signature(export))?;
        }
        return Ok(());
    }
    let Some(text) = args.invoke.as_deref() else {
        bail!("nothing to do: pass --invoke 'FUNCTION(ARGS)' or --list");
    };
    let call = local::parse_call(&executor, &component, text)?;
    let config = WorkerConfig {
        args: args.args,
        env: args.env,
    };
    let worker = executor
        .start_worker(component.id, &args.worker, config)
        .await?;
    let handle = executor
        .submit(&worker, Invocation::new(call.function, call.params))
        .await?;
    let results = watch(&executor, &worker, handle.result()).await?;
    for text in local::wave_results(&results) {
        output::line(&text)?;
    }
    Ok(())
}

/// Waits for the invocation while forwarding output and answering promises.
async fn watch(
    executor: &Executor,
    worker: &WorkerId,
    outcome: impl Future<Output = vow_runtime::Result<Vec<vow_runtime::Val>>>,
) -> anyhow::Result<Vec<vow_runtime::Val>> {
    tokio::pin!(outcome);
    let mut forwarder = Forwarder::default();
    let mut stdin = StdinLines::default();
    // The promise the person was asked to complete and has not answered yet.
    let mut asked: Option<PromiseId> = None;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            outcome = &mut outcome => {
                forwarder.forward(executor, worker)?;
                return Ok(outcome?);
            }
            _ = tick.tick() => {
                forwarder.forward(executor, worker)?;
                if asked.is_none() && let Some(id) = awaited_promise(executor, worker).await? {
                    ask(&id);
                    asked = Some(id);
                }
            }
            line = stdin.next(), if asked.is_some() => {
                let Some(id) = asked.take() else { continue };
                let Some(line) = line? else {
                    bail!("stdin closed before promise {id} was completed");
                };
                if !executor.complete_promise(&id, line).await? {
                    output::error_line(&format!(
                        "promise {id} was already completed; that line was not used"
                    ));
                }
            }
        }
    }
}

/// The worker's pending promise it is parked on, if any and if a person
/// is to complete it: a promise settled by work the runtime runs (`when`,
/// `then`, `all`, `any`) is left to that work.
async fn awaited_promise(
    executor: &Executor,
    worker: &WorkerId,
) -> anyhow::Result<Option<PromiseId>> {
    let filter = PromiseFilter {
        status: Some(PromiseStatus::Pending),
        component: Some(worker.component_id),
        worker: Some(worker.clone()),
    };
    let promises = executor.promises(filter).await?;
    Ok(promises
        .into_iter()
        .find(|p| p.awaited && !p.composed)
        .map(|p| p.id))
}

fn ask(id: &PromiseId) {
    output::error_line(&format!(
        "the worker is waiting for promise {id}\n\
         type the payload and press Enter to complete it (end of input gives up):"
    ));
}

/// Copies what the worker writes to our stdout and stderr, once.
#[derive(Default)]
struct Forwarder {
    /// Bytes of each stream already copied, counted from the worker's start.
    stdout: u64,
    stderr: u64,
}

impl Forwarder {
    fn forward(&mut self, executor: &Executor, worker: &WorkerId) -> anyhow::Result<()> {
        let output = executor.worker_output(worker)?;
        if let Some(new) = unseen(&output.stdout, output.stdout_dropped, &mut self.stdout) {
            output::raw(new)?;
        }
        if let Some(new) = unseen(&output.stderr, output.stderr_dropped, &mut self.stderr) {
            output::raw_err(new)?;
        }
        Ok(())
    }
}

/// The part of a capture not copied yet. The capture keeps only the newest
/// bytes, so bytes that were dropped before anyone copied them are skipped.
fn unseen<'a>(buffer: &'a [u8], dropped: u64, copied: &mut u64) -> Option<&'a [u8]> {
    let total = dropped + buffer.len() as u64;
    let new = usize::try_from(total.saturating_sub(*copied)).unwrap_or(usize::MAX);
    *copied = total;
    let new = new.min(buffer.len());
    (new > 0).then(|| &buffer[buffer.len() - new..])
}

/// Lines of stdin, read on a thread of their own that starts only when the
/// first line is wanted (a blocking read would keep tokio from shutting down,
/// and a run that never asks should not touch stdin). Lines are bytes: a
/// payload need not be UTF-8.
#[derive(Default)]
struct StdinLines {
    lines: Option<mpsc::UnboundedReceiver<std::io::Result<Vec<u8>>>>,
}

impl StdinLines {
    /// The next line without its line ending; `None` at end of input.
    async fn next(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let lines = self.lines.get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            std::thread::spawn(move || read_lines(&tx));
            rx
        });
        match lines.recv().await {
            Some(line) => line.map(Some).context("cannot read stdin"),
            None => Ok(None),
        }
    }
}

fn read_lines(tx: &mpsc::UnboundedSender<std::io::Result<Vec<u8>>>) {
    use std::io::BufRead as _;
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut line = Vec::new();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.ends_with(b"\n") {
                    line.pop();
                    if line.ends_with(b"\r") {
                        line.pop();
                    }
                }
                if tx.send(Ok(line)).is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = tx.send(Err(error));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unseen;

    #[test]
    fn forwards_only_new_output() {
        let mut copied = 0;
        assert_eq!(unseen(b"hello", 0, &mut copied), Some(&b"hello"[..]));
        assert_eq!(unseen(b"hello", 0, &mut copied), None);
        assert_eq!(unseen(b"hello world", 0, &mut copied), Some(&b" world"[..]));
        // The capture dropped its first 6 bytes and gained "!!".
        assert_eq!(unseen(b"world!!", 6, &mut copied), Some(&b"!!"[..]));
        // More was written and dropped than the capture holds.
        assert_eq!(unseen(b"xyz", 100, &mut copied), Some(&b"xyz"[..]));
    }
}
