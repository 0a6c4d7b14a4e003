//! Shared helpers: executors, workers and promise-id values.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use vow_runtime::{
    ComponentId, Executor, ExecutorBuilder, PromiseFilter, PromiseId, PromiseInfo, Val,
    WorkerConfig, WorkerId,
};

#[path = "../common/vals.rs"]
mod vals;
pub use vals::{field, promise_from_val, u64_of};

/// A compilation cache shared by the tests of this binary, so each guest is
/// compiled once per run rather than once per test.
pub fn cache_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| vow_tests::guest_target_dir().join("e2e-compile-cache"))
        .clone()
}

pub fn builder() -> ExecutorBuilder {
    Executor::builder().cache_dir(cache_dir())
}

pub async fn executor_with(
    builder: ExecutorBuilder,
    guest: &str,
) -> Result<(Executor, ComponentId)> {
    let executor = builder.build()?;
    let path = vow_tests::guest(guest)?;
    let component = executor
        .add_component_file(&path)
        .await
        .with_context(|| format!("adding {}", path.display()))?;
    Ok((executor, component))
}

pub async fn harness() -> Result<(Executor, ComponentId)> {
    executor_with(builder(), "harness").await
}

pub async fn start(executor: &Executor, component: ComponentId, name: &str) -> Result<WorkerId> {
    Ok(executor
        .start_worker(component, name, WorkerConfig::default())
        .await?)
}

/// Polls `probe` until it yields a value. A guard against hangs: gives up
/// after a generous 60 s with `what` in the error; no timing is asserted.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!("gave up waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The awaited pending promise of `worker`, once the worker is parked on it.
pub async fn parked_on(executor: &Executor, worker: &WorkerId) -> Result<PromiseInfo> {
    eventually(&format!("{worker} to park on a promise"), || async {
        let filter = PromiseFilter {
            worker: Some(worker.clone()),
            ..PromiseFilter::pending()
        };
        executor
            .promises(filter)
            .await
            .ok()?
            .into_iter()
            .find(|p| p.awaited)
    })
    .await
}

fn record(fields: Vec<(&str, Val)>) -> Val {
    Val::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

pub fn worker_val(id: &WorkerId) -> Val {
    let (high, low) = id.component_id.as_u64_pair();
    record(vec![
        ("component-id", component_val_pair(high, low)),
        ("worker-name", Val::String(id.worker_name.clone())),
    ])
}

pub fn component_val(id: ComponentId) -> Val {
    let (high, low) = id.as_u64_pair();
    component_val_pair(high, low)
}

fn component_val_pair(high: u64, low: u64) -> Val {
    record(vec![(
        "uuid",
        record(vec![
            ("high-bits", Val::U64(high)),
            ("low-bits", Val::U64(low)),
        ]),
    )])
}

pub fn promise_val(id: &PromiseId) -> Val {
    record(vec![
        ("worker-id", worker_val(&id.worker_id)),
        ("oplog-idx", Val::U64(id.oplog_idx)),
    ])
}

pub fn bytes_val(bytes: &[u8]) -> Val {
    Val::List(bytes.iter().map(|b| Val::U8(*b)).collect())
}

pub fn bytes_of(val: &Val) -> Result<Vec<u8>> {
    match val {
        Val::List(items) => items
            .iter()
            .map(|v| match v {
                Val::U8(b) => Ok(*b),
                other => Err(anyhow!("expected u8, got {other:?}")),
            })
            .collect(),
        other => Err(anyhow!("expected list<u8>, got {other:?}")),
    }
}

/// The single result of an invocation.
pub fn single(results: Vec<Val>) -> Result<Val> {
    let mut results = results.into_iter();
    match (results.next(), results.next()) {
        (Some(v), None) => Ok(v),
        _ => Err(anyhow!("expected exactly one result")),
    }
}

/// Where a restart test keeps its state: every such test runs on both
/// durable backends.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    pub fn sqlite() -> Result<Self> {
        Ok(Self::Sqlite(tempfile::tempdir()?))
    }

    /// A fresh PostgreSQL database; `None` when the run skips PostgreSQL.
    pub fn postgres() -> Result<Option<Self>> {
        Ok(vow_tests::fresh_postgres_database()?.map(Self::Postgres))
    }

    /// An executor on this store, as after a (re)start.
    pub async fn open(&self) -> Result<Executor> {
        Ok(match self {
            Self::Sqlite(dir) => builder().data_dir(dir.path()).open().await?,
            Self::Postgres(url) => {
                let store = vow_store_postgres::PostgresStorage::connect(
                    url,
                    vow_store_postgres::PostgresOptions::default(),
                )
                .await?;
                builder().storage(Arc::new(store)).open().await?
            }
        })
    }
}

pub async fn harness_in(executor: &Executor) -> Result<ComponentId> {
    Ok(executor
        .ensure_component_file(vow_tests::guest("harness")?)
        .await?)
}
