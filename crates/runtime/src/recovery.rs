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

use std::collections::HashMap;

use vow_store::{InvocationRecord, InvocationState, WorkerKey, WorkerRecord};

use crate::error::Result;
use crate::executor::{Executor, queue_job};
use crate::ids::ComponentId;
use crate::persist;
use crate::run;
use crate::worker::{UNKNOWN_SEQ, WorkerConfig, WorkerEntry, WorkerStatus};

/// Loads every component and worker the executor's store holds.
pub(crate) async fn recover(executor: &Executor) -> Result<()> {
    let storage = Arc::clone(executor.storage());
    for component in storage.components().await? {
        let id = ComponentId(component.id);
        if let Err(error) = executor
            .install_component(id, &component.name, component.bytes, component.sha256)
            .await
        {
            // Its workers cannot run, but everything else can.
            tracing::error!(component = %id, %error, "stored component cannot be loaded");
        }
    }
    let workers = storage.workers().await?;
    let mut unfinished: HashMap<WorkerKey, Vec<InvocationRecord>> = HashMap::new();
    for invocation in storage.all_unfinished_invocations().await? {
        unfinished
            .entry(invocation.worker.clone())
            .or_default()
            .push(invocation);
    }
    let count = workers.len();
    let mut resumed = 0;
    for record in workers {
        let invocations = unfinished.remove(&record.key).unwrap_or_default();
        if recover_worker(executor, record, invocations)? {
            resumed += 1;
        }
    }
    if count > 0 {
        tracing::info!(workers = count, resumed, "workers recovered from the store");
    }
    Ok(())
}

/// Registers one stored worker with its unfinished invocations; `true` if
/// it has work to resume.
fn recover_worker(
    executor: &Executor,
    record: WorkerRecord,
    invocations: Vec<InvocationRecord>,
) -> Result<bool> {
    let id = persist::worker_id(&record.key);
    let Ok(component) = executor.loaded_component(id.component_id) else {
        tracing::error!(worker = %id, "worker's component is missing; worker not recovered");
        return Ok(false);
    };
    // Sequence numbers only grow, so the last unfinished invocation holds
    // the last one; otherwise it is read at the worker's next invocation.
    let last_seq = invocations.last().map_or(UNKNOWN_SEQ, |i| i.seq);
    let entry = WorkerEntry::new(
        id.clone(),
        WorkerConfig {
            args: record.args,
            env: record.env,
        },
        SystemTime::UNIX_EPOCH + Duration::from_millis(record.created_at),
        executor.shared(),
        0,
        last_seq,
    );
    let mut status = WorkerStatus::parse(&record.state.status).unwrap_or(WorkerStatus::Idle);
    let mut parked_on = None;
    match status {
        WorkerStatus::Running | WorkerStatus::Interrupted => {
            status = WorkerStatus::Interrupted;
            entry
                .interrupted
                .store(true, std::sync::atomic::Ordering::Release);
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
    if status == WorkerStatus::Interrupted {
        entry.persist_state();
    }
    executor.registry().insert(Arc::clone(&entry))?;
    let mut pending = 0;
    if status != WorkerStatus::Failed {
        for invocation in invocations {
            let request: persist::Request = persist::decode(&invocation.request, "a request")?;
            let Some(export) = component.export(&request.function) else {
                tracing::error!(worker = %id, function = request.function, "stored invocation names an unknown function");
                continue;
            };
            let types: Vec<_> = export.ty.params().map(|(_, t)| t).collect();
            let params = persist::from_wave(&request.params, &types)?;
            debug_assert!(!matches!(invocation.state, InvocationState::Finished(_)));
            drop(queue_job(
                &entry,
                export,
                params,
                invocation.idempotency_key,
                invocation.seq,
            )?);
            pending += 1;
        }
    }
    let env = executor.env(component);
    let task = tokio::spawn(run::run(Arc::clone(&entry), env, None, parked_on));
    entry.set_task(task.abort_handle());
    Ok(pending > 0)
}
