//! The backend-independent suite, on fresh files with different options.

use futures::join;
use vow_store::conformance::run_all;
use vow_store_sqlite::{SqliteOptions, SqliteStorage, Synchronous};

use crate::temp_store_path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_with_full_sync() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let store = SqliteStorage::open(&path, SqliteOptions::default())?;
    run_all(&store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_with_normal_sync() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let store = SqliteStorage::open(
        &path,
        SqliteOptions::default().synchronous(Synchronous::Normal),
    )?;
    run_all(&store).await;
    Ok(())
}

/// Two runs at once on one store, with one reader connection (reads wait
/// for each other) and groups of one batch (no grouping at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_with_one_reader_and_no_grouping() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let options = SqliteOptions::default()
        .synchronous(Synchronous::Normal)
        .readers(1)
        .max_group(1);
    let store = SqliteStorage::open(&path, options)?;
    join!(run_all(&store), run_all(&store));
    Ok(())
}

/// On a current-thread runtime, reads still go to the blocking pool.
#[tokio::test]
async fn conforms_on_a_current_thread_runtime() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let store = SqliteStorage::open(
        &path,
        SqliteOptions::default().synchronous(Synchronous::Normal),
    )?;
    run_all(&store).await;
    Ok(())
}

/// Outside any tokio runtime reads run in place.
#[test]
fn conforms_without_a_tokio_runtime() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let store = SqliteStorage::open(
        &path,
        SqliteOptions::default().synchronous(Synchronous::Normal),
    )?;
    futures::executor::block_on(run_all(&store));
    Ok(())
}
