//! Many workers parked at once, all resumed with their own payloads.

use anyhow::Result;
use vow_runtime::{Invocation, PromiseFilter};

use crate::support::*;

const WORKERS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_parked_workers_all_resume_with_their_payloads() -> Result<()> {
    let (executor, component) = harness().await?;
    let mut calls = Vec::with_capacity(WORKERS);
    for i in 0..WORKERS {
        let worker = start(&executor, component, &format!("w{i}")).await?;
        calls.push((
            i,
            executor
                .submit(&worker, Invocation::new("create-and-await", vec![]))
                .await?,
        ));
    }
    let parked = eventually("every worker to park", || async {
        let pending = executor.promises(PromiseFilter::pending()).await.ok()?;
        (pending.iter().filter(|p| p.awaited).count() == WORKERS).then_some(pending)
    })
    .await?;
    for promise in &parked {
        let i: usize = promise.id.worker_id.worker_name[1..].parse()?;
        assert!(
            executor
                .complete_promise(&promise.id, format!("payload {i}").into_bytes())
                .await?
        );
    }
    for (i, call) in calls {
        let payload = bytes_of(&single(call.result().await?)?)?;
        assert_eq!(payload, format!("payload {i}").into_bytes());
    }
    assert!(
        executor
            .promises(PromiseFilter::pending())
            .await?
            .is_empty()
    );
    Ok(())
}
