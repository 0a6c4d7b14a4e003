//! Bringing an executor back from its store after a restart (clean or not).
//!
//! Recovery is lazy: components are compiled again (from the compile cache
//! when there is one) and every worker is listed with the status it had, but
//! no worker is instantiated here. Each worker gets its task and mailbox;
//! invocations that were queued or running are put back in the mailbox in
//! their order, and a worker that was parked waits for its promise before it
//! is replayed. A worker that was running is marked `interrupted` and runs
//! its invocation again from its start by replay.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::collections::HashSet;

use vow_store::{WorkerKey, WorkerRecord};

use crate::error::Result;
use crate::executor::Executor;
use crate::ids::ComponentId;
use crate::persist;
use crate::worker::{UNKNOWN_SEQ, WorkerConfig, WorkerEntry, WorkerStatus};

/// Loads every component and worker the executor's store holds.
pub(crate) async fn recover(executor: &Executor) -> Result<()> {
    recover_components(executor).await?;
    let storage = Arc::clone(executor.storage());
    let workers = storage.workers().await?;
    let with_work: HashSet<WorkerKey> = storage
        .workers_with_unfinished_invocations()
        .await?
        .into_iter()
        .collect();
    let count = workers.len();
    let mut woken = 0;
    for record in workers {
        let queued = with_work.contains(&record.key);
        if recover_worker(executor, record, queued)? {
            woken += 1;
        }
    }
    if count > 0 {
        tracing::info!(workers = count, woken, "workers recovered from the store");
    }
    Ok(())
}

/// Compiles every component the executor's store holds that it does not
/// have yet (from the compile cache when there is one).
pub(crate) async fn recover_components(executor: &Executor) -> Result<()> {
    for component in executor.storage().components().await? {
        let id = ComponentId(component.id);
        if executor.component(id).is_ok() {
            continue;
        }
        if let Err(error) = executor
            .install_component(id, &component.name, component.bytes, component.sha256)
            .await
        {
            // Its workers cannot run, but everything else can.
            tracing::error!(component = %id, %error, "stored component cannot be loaded");
        }
    }
    Ok(())
}

/// Registers one stored worker (`queued`: it has unfinished invocations);
/// `true` if it was woken to go on at once.
pub(crate) fn recover_worker(
    executor: &Executor,
    record: WorkerRecord,
    queued: bool,
) -> Result<bool> {
    let id = persist::worker_id(&record.key);
    let Ok(component) = executor.loaded_component(id.component_id) else {
        tracing::error!(worker = %id, "worker's component is missing; worker not recovered");
        return Ok(false);
    };
    // Its queue and last sequence number are read from the store when the
    // worker is woken or invoked.
    let entry = WorkerEntry::new(
        id.clone(),
        WorkerConfig {
            args: record.args,
            env: record.env,
        },
        SystemTime::UNIX_EPOCH + Duration::from_millis(record.created_at),
        executor.shared(),
        0,
        UNKNOWN_SEQ,
        executor.env(component),
    );
    let mut status = WorkerStatus::parse(&record.state.status).unwrap_or(WorkerStatus::Idle);
    let mut parked_on = None;
    match status {
        // Running when the process stopped: shown as interrupted, and run
        // again at once by replay. The store keeps `running` until it does,
        // so a second crash meanwhile is recovered the same way.
        WorkerStatus::Running => {
            status = WorkerStatus::Interrupted;
            entry
                .interrupted
                .store(true, std::sync::atomic::Ordering::Release);
        }
        // Interrupted by a user: stays so until resumed.
        WorkerStatus::Interrupted => {
            entry
                .interrupted
                .store(true, std::sync::atomic::Ordering::Release);
            entry.pause();
        }
        WorkerStatus::Suspended => {
            parked_on = record.state.awaiting.as_ref().map(persist::promise_id);
            if let Some(promise) = &parked_on {
                entry.restore_parked(promise.clone());
            }
        }
        _ => {}
    }
    entry.restore(status, record.state.last_error);
    executor.registry().insert(Arc::clone(&entry))?;
    if let Some(promise) = parked_on {
        // Waits without a task until its promise completes.
        entry.go_dormant(Some(promise));
        return Ok(false);
    }
    let go_on = match status {
        WorkerStatus::Interrupted => !entry.paused(),
        WorkerStatus::Failed => false,
        _ => queued,
    };
    if go_on {
        entry.wake_now();
    }
    Ok(go_on)
}
