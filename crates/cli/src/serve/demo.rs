//! `vow serve --demo`: the approval flow, live. A worker of the `approval`
//! example parks on a promise; the server prints the promise id and the
//! commands that complete it, then the worker's result once it resumes.

use std::time::Duration;

use anyhow::{Context as _, bail};
use vow_runtime::{
    ComponentInfo, Executor, Invocation, PromiseFilter, Val, WorkerConfig, WorkerId,
};

use crate::{DEFAULT_SERVER, local, output};

const FUNCTION: &str = "request-approval";
const WORKER: &str = "approver";
const SUBJECT: &str = "deploy to production";

/// Starts the demo worker and a task that narrates it.
pub(crate) async fn start(
    executor: &Executor,
    components: &[ComponentInfo],
    base: &str,
) -> anyhow::Result<()> {
    let Some(component) = components
        .iter()
        .find(|c| c.exports.iter().any(|e| e.name == FUNCTION))
    else {
        bail!(
            "--demo needs the approval example among --component files \
             (build guest-examples/rust/approval, or run scripts/demo.sh)"
        );
    };
    // With a data directory the worker of an earlier run comes back, still
    // waiting; the idempotency key finds its invocation instead of
    // starting another one.
    let worker = WorkerId::new(component.id, WORKER);
    if executor.worker_status(&worker).is_ok() {
        output::line(&format!(
            "demo: worker {WORKER} is back from the data directory"
        ))?;
    } else {
        executor
            .start_worker(component.id, WORKER, WorkerConfig::default())
            .await
            .context("starting the demo worker")?;
    }
    let call = executor
        .submit(
            &worker,
            Invocation::new(FUNCTION, vec![Val::String(SUBJECT.into())])
                .with_idempotency_key("vow-demo"),
        )
        .await?;
    let executor = executor.clone();
    let base = base.to_owned();
    tokio::spawn(async move {
        let result = call.result();
        tokio::pin!(result);
        let outcome = tokio::select! {
            outcome = &mut result => outcome,
            narrated = narrate(&executor, &worker, &base) => {
                if let Err(error) = narrated {
                    output::error_line(&format!("demo: {error:#}"));
                    return;
                }
                result.await
            }
        };
        match outcome {
            Ok(results) => {
                let result = local::wave_results(&results).join(", ");
                let _ = output::line(&format!(
                    "demo: worker {WORKER} resumed and returned {result}"
                ));
            }
            Err(error) => output::error_line(&format!("demo: the invocation failed: {error}")),
        }
    });
    Ok(())
}

/// Waits until the worker parks, then prints how to complete its promise.
async fn narrate(executor: &Executor, worker: &WorkerId, base: &str) -> anyhow::Result<()> {
    let filter = PromiseFilter {
        worker: Some(worker.clone()),
        ..PromiseFilter::pending()
    };
    let promise = loop {
        if let Some(p) = executor
            .promises(filter.clone())
            .await?
            .into_iter()
            .find(|p| p.awaited)
        {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let server_flag = if base == DEFAULT_SERVER {
        String::new()
    } else {
        format!(" --server {base}")
    };
    let data: Vec<String> = b"approved".iter().map(u8::to_string).collect();
    let lines = [
        String::new(),
        format!(
            "demo: worker {WORKER} called {FUNCTION}(\"{SUBJECT}\") and is waiting on promise {}",
            promise.id
        ),
        format!("demo: complete it in a browser: open {base}/ and press Complete"),
        "demo: or from another terminal, with the CLI:".to_owned(),
        format!(
            "  cargo run -p vow-cli -- promise complete {} --data approved{server_flag}",
            promise.id
        ),
        "demo: or with curl:".to_owned(),
        format!(
            "  curl -X POST {base}/v1/components/{}/workers/{WORKER}/complete \\\n    \
             -H 'content-type: application/json' -d '{{\"oplogIdx\":{},\"data\":[{}]}}'",
            worker.component_id,
            promise.id.oplog_idx,
            data.join(",")
        ),
        String::new(),
    ];
    for line in lines {
        output::line(&line)?;
    }
    Ok(())
}
