//! Tests of the SQLite backend: the shared conformance suite, and what only a
//! file on disk has (reopening, damage, schema versions, group commit).
//!
//! One test binary for the crate, a module per concern.

mod conformance;
mod durability;
mod group_commit;
mod open;

use std::path::{Path, PathBuf};

use vow_store_sqlite::{SqliteOptions, SqliteStorage};

/// A fresh directory and the store path in it; the directory goes with the
/// returned guard.
fn temp_store_path() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("vow.db");
    Ok((dir, path))
}

fn open(path: &Path) -> anyhow::Result<SqliteStorage> {
    Ok(SqliteStorage::open(path, SqliteOptions::default())?)
}
