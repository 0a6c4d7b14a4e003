//! # vow-runtime
//!
//! A [wasmtime](https://docs.rs/wasmtime/48)-based runtime for WebAssembly
//! components that import `golem:api/host@1.1.0` (and WASI 0.2). Components
//! written for Golem run unchanged: a guest calls `create-promise`, hands the id
//! to someone, and `await-promise` parks it on its async fiber while every other
//! worker keeps running; a completion — from another guest or from your code —
//! resumes it with the payload.
//!
//! ## Concepts
//!
//! - An [`Executor`] is built once per process. It owns the wasmtime engine,
//!   the linker, the promise dispatcher and a thread that preempts busy guests.
//! - A component is added from bytes or a file and gets a [`ComponentId`].
//!   Imports Vow cannot satisfy are refused up front, each one named.
//! - A worker ([`WorkerId`] = component + name) is one instance with its own
//!   Store, args, env and captured stdout/stderr. Its invocations run one at a
//!   time, in arrival order.
//! - A promise ([`PromiseId`] = worker + oplog index) is created by a guest and
//!   completed by anyone, first writer wins.
//! - [`Executor::metrics`] counts and measures what the executor does, in
//!   Prometheus' data model (see [`metrics`]).
//!
//! ## Embedding
//!
//! 1. Build an [`Executor`] inside a tokio runtime.
//! 2. [`add_component`](Executor::add_component) (or
//!    [`add_component_file`](Executor::add_component_file)).
//! 3. [`start_worker`](Executor::start_worker).
//! 4. [`invoke`](Executor::invoke) an export with
//!    [`Val`](wasmtime::component::Val) arguments, or
//!    [`submit`](Executor::submit) it and await the handle later.
//! 5. Find what workers wait on with [`promises`](Executor::promises) and
//!    complete it with [`complete_promise`](Executor::complete_promise).
//!
//! ```no_run
//! use vow_runtime::{Executor, PromiseFilter, Val, WorkerConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let executor = Executor::builder().build()?;
//! let component = executor.add_component_file("approval.wasm").await?;
//! let worker = executor
//!     .start_worker(component, "approver-1", WorkerConfig::default())
//!     .await?;
//!
//! // The guest parks in `await-promise`; run the invocation in the background.
//! let call = executor
//!     .submit(
//!         &worker,
//!         vow_runtime::Invocation::new("request-approval", vec![Val::String("deploy".into())]),
//!     )
//!     .await?;
//!
//! // Find the promise it waits on and complete it.
//! let pending = loop {
//!     let pending = executor.promises(PromiseFilter::pending()).await?;
//!     if let Some(p) = pending.into_iter().find(|p| p.awaited) {
//!         break p;
//!     }
//!     tokio::task::yield_now().await;
//! };
//! assert!(executor.complete_promise(&pending.id, b"approved".to_vec()).await?);
//!
//! let results = call.result().await?;
//! println!("{results:?}");
//! println!("{}", String::from_utf8_lossy(&executor.worker_output(&worker)?.stdout));
//! # Ok(())
//! # }
//! ```

mod bindings;
mod changes;
mod component;
mod compose;
mod error;
mod executor;
mod filter;
mod host;
mod ids;
mod journal;
mod limits;
pub mod links;
mod member;
pub mod metrics;
mod oplog;
mod output;
mod persist;
mod promise;
mod recovery;
mod run;
pub mod trace;
mod values;
mod worker;

pub use changes::ChangeFeed;
pub use component::{ComponentInfo, ExportInfo, ParamInfo};
pub use error::{Error, Result};
pub use executor::{
    DATABASE_FILE, DEFAULT_MAX_QUEUED, DEFAULT_MAX_RESIDENT, DEFAULT_SNAPSHOT_EVERY, Executor,
    ExecutorBuilder, FinishedInvocation, FunctionType, Invocation, InvocationHandle,
    LINK_KEYS_FILE, POOLED_RESIDENT_LIMIT,
};
pub use host::WorkerListing;
pub use ids::{ComponentId, MAX_WORKER_NAME_LEN, OplogIndex, PromiseId, WorkerId};
pub use limits::{
    DEFAULT_MAX_OPEN_PROMISES, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_RUN_TIME, DEFAULT_MAX_WORKERS,
    DEFAULT_MAX_WORKERS_PER_COMPONENT,
};
pub use oplog::{
    ComposeCall, HostSettings, OplogEntry, OplogRecord, RecordedMetadata, StoredSettlement,
};
pub use output::WorkerOutput;
pub use prometheus_client;
pub use promise::{
    ErrorKind, PromiseError, PromiseFilter, PromiseInfo, PromiseOptions, PromiseStatus, Settlement,
};
pub use values::wit_type;
pub use vow_store;
pub use wasmtime::PoolingAllocationConfig;
pub use wasmtime::component::Val;
pub use wasmtime::component::types::Type;
pub use worker::{WorkerConfig, WorkerMetadata, WorkerStatus};
