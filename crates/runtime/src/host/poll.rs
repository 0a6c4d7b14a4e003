//! `wasi:io/poll`, journaled: which pollables were ready is an answer the
//! guest's code cannot recompute (it depends on when promises settled and
//! timers fell due), so `poll`, `pollable.block` and `pollable.ready`
//! record their answers live and give them back in replay, without
//! waiting. These replace wasmtime-wasi's own functions of the same names,
//! which do the live work.
//!
//! Also the pollable of a promise (`vow:host/promises.subscribe`): ready
//! once the dispatcher answers a subscription, when the promise settles or
//! goes away.

use tokio::sync::oneshot;
use tracing::Instrument as _;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable};
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};

use super::{Step, trap};
use crate::oplog::OplogEntry;
use crate::promise::Answer;
use crate::worker::WorkerState;

/// What a promise's pollable waits on.
pub(crate) struct PromiseReady {
    /// The dispatcher's answer to come; `None` once it came.
    rx: Option<oneshot::Receiver<Answer>>,
}

impl PromiseReady {
    pub(crate) fn new(rx: oneshot::Receiver<Answer>) -> Self {
        Self { rx: Some(rx) }
    }
}

#[async_trait::async_trait]
impl Pollable for PromiseReady {
    async fn ready(&mut self) {
        if let Some(rx) = &mut self.rx {
            // A closed channel (the executor shut down) counts as ready:
            // reading the promise then says what happened.
            let _ = rx.await;
            self.rx = None;
        }
    }
}

/// Replaces `wasi:io/poll`'s functions in `linker` with journaled ones.
/// Must be called after wasmtime-wasi's own are added, with shadowing
/// allowed.
pub(crate) fn add_to_linker(linker: &mut Linker<WorkerState>) -> wasmtime::Result<()> {
    // The version wasmtime-wasi defines; guests importing any 0.2.x of
    // wasi:io reach it through the linker's semver matching.
    let mut poll = linker.instance("wasi:io/poll@0.2.12")?;
    poll.func_wrap_async(
        "poll",
        |mut store: StoreContextMut<'_, WorkerState>,
         (pollables,): (Vec<Resource<DynPollable>>,)| {
            let span = tracing::debug_span!(
                "wasi:io/poll.poll",
                worker = %store.data().golem.worker.id,
                pollables = pollables.len(),
            );
            Box::new(
                async move {
                    let state = store.data_mut();
                    match state.golem.step("wasi-poll")? {
                        Step::Replay(OplogEntry::WasiPoll { ready }) => return Ok((ready,)),
                        Step::Replay(other) => return Err(state.golem.unexpected(&other)),
                        Step::Live => {}
                    }
                    let ready = state.table.poll(pollables).await?;
                    state.golem.record(OplogEntry::WasiPoll {
                        ready: ready.clone(),
                    });
                    Ok((ready,))
                }
                .instrument(span),
            )
        },
    )?;
    poll.func_wrap_async(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, WorkerState>, (pollable,): (Resource<DynPollable>,)| {
            let span = tracing::debug_span!(
                "wasi:io/poll.pollable.block",
                worker = %store.data().golem.worker.id,
            );
            Box::new(
                async move {
                    let state = store.data_mut();
                    match state.golem.step("wasi-block")? {
                        Step::Replay(OplogEntry::WasiBlock) => return Ok(()),
                        Step::Replay(other) => return Err(state.golem.unexpected(&other)),
                        Step::Live => {}
                    }
                    state.table.block(pollable).await?;
                    state.golem.record(OplogEntry::WasiBlock);
                    Ok(())
                }
                .instrument(span),
            )
        },
    )?;
    poll.func_wrap_async(
        "[method]pollable.ready",
        |mut store: StoreContextMut<'_, WorkerState>, (pollable,): (Resource<DynPollable>,)| {
            // A check that does not wait, which guests make in loops.
            let span = tracing::trace_span!(
                "wasi:io/poll.pollable.ready",
                worker = %store.data().golem.worker.id,
            );
            Box::new(
                async move {
                    let state = store.data_mut();
                    match state.golem.step("wasi-ready")? {
                        Step::Replay(OplogEntry::WasiReady { ready }) => return Ok((ready,)),
                        Step::Replay(other) => return Err(state.golem.unexpected(&other)),
                        Step::Live => {}
                    }
                    let ready = state.table.ready(pollable).await?;
                    state.golem.record(OplogEntry::WasiReady { ready });
                    Ok((ready,))
                }
                .instrument(span),
            )
        },
    )?;
    Ok(())
}

/// A trap for a promise that cannot be subscribed to.
pub(crate) fn cannot_subscribe(error: impl std::fmt::Display) -> wasmtime::Error {
    trap(format!("subscribe: {error}"))
}
