//! Opening: files that are not stores, damaged stores, newer schemas, paths
//! that cannot be created. Every failure is an error naming the path, never
//! a panic.

use std::io::Write as _;
use std::path::Path;

use vow_store::{Error, Storage as _, WorkerKey, Write};
use vow_store_sqlite::{SCHEMA_VERSION, SqliteOptions, SqliteStorage};

use crate::{open, temp_store_path};

fn open_err(path: &Path, options: SqliteOptions) -> anyhow::Result<Error> {
    match SqliteStorage::open(path, options) {
        Ok(store) => anyhow::bail!("opening {} should fail, got {store:?}", path.display()),
        Err(e) => Ok(e),
    }
}

#[test]
fn a_new_store_has_the_current_schema_version() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    drop(open(&path)?);
    let conn = rusqlite::Connection::open(&path)?;
    let version: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    assert_eq!(mode, "wal");
    // Opening again leaves it as it is.
    drop(open(&path)?);
    Ok(())
}

/// A store written by the first release (schema 1: before snapshots, promise
/// rejection and reactions) is migrated in place when opened, and keeps its
/// data: its promises read back as they were, with the default spec.
#[tokio::test]
async fn a_version_1_store_is_migrated_and_keeps_its_data() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let worker = WorkerKey {
        component: uuid::Uuid::new_v4(),
        name: "old".to_owned(),
    };
    let promise = vow_store::PromiseKey {
        worker: worker.clone(),
        index: 1,
    };
    {
        let store = open(&path)?;
        store
            .write(vec![
                Write::AppendOplog {
                    worker: worker.clone(),
                    records: vec![vow_store::OplogRecord {
                        index: 1,
                        at: 5,
                        entry: b"first".to_vec().into(),
                    }],
                },
                Write::CreatePromise {
                    key: promise.clone(),
                    at: 5,
                    spec: Default::default(),
                },
                Write::CompletePromise {
                    key: promise.clone(),
                    data: b"done".to_vec().into(),
                    at: 6,
                },
            ])
            .await?;
    }
    // Take the file back to schema 1 as version 1 of this crate left it.
    {
        let conn = rusqlite::Connection::open(&path)?;
        conn.execute_batch(
            "DROP TABLE snapshots;
             DROP TABLE reactions;
             ALTER TABLE promises DROP COLUMN rejected;
             ALTER TABLE promises DROP COLUMN deadline;
             ALTER TABLE promises DROP COLUMN retention;
             ALTER TABLE promises DROP COLUMN options;",
        )?;
        conn.pragma_update(None, "user_version", 1)?;
    }
    let store = open(&path)?;
    let version: u32 =
        rusqlite::Connection::open(&path)?
            .query_row("PRAGMA user_version", [], |row| row.get(0))?;
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(store.oplog(&worker, 1, 10).await?.len(), 1);
    let promises = store.promises().await?;
    assert_eq!(promises.len(), 1);
    assert_eq!(
        promises[0].state,
        vow_store::PromiseState::Completed {
            data: b"done".to_vec().into(),
            at: 6
        }
    );
    assert_eq!(promises[0].spec, vow_store::PromiseSpec::default());
    assert!(store.reactions().await?.is_empty());
    store
        .write(vec![Write::PutSnapshot(vow_store::SnapshotRecord {
            worker: worker.clone(),
            index: 1,
            data: b"memory".to_vec().into(),
            at: 6,
        })])
        .await?;
    assert_eq!(
        store.snapshot(&worker).await?.map(|s| s.data.to_vec()),
        Some(b"memory".to_vec())
    );
    Ok(())
}

#[test]
fn a_newer_schema_is_refused() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    drop(open(&path)?);
    let newer = SCHEMA_VERSION + 7;
    rusqlite::Connection::open(&path)?.pragma_update(None, "user_version", newer)?;

    let error = open_err(&path, SqliteOptions::default())?;
    let Error::NewerSchema {
        location,
        found,
        supported,
    } = &error
    else {
        anyhow::bail!("expected NewerSchema, got {error:?}");
    };
    assert_eq!(location, &path.display().to_string());
    assert_eq!((*found, *supported), (newer, SCHEMA_VERSION));
    let message = error.to_string();
    for needle in [
        path.display().to_string(),
        newer.to_string(),
        SCHEMA_VERSION.to_string(),
    ] {
        assert!(
            message.contains(&needle),
            "{message:?} should name {needle}"
        );
    }
    Ok(())
}

fn assert_corrupt(path: &Path, error: &Error) {
    match error {
        Error::Corrupt { location, reason } => {
            assert_eq!(location, &path.display().to_string());
            assert!(!reason.is_empty());
        }
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
}

#[test]
fn a_text_file_is_corrupt() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    std::fs::write(
        &path,
        "this is not a database, just some text\n".repeat(200),
    )?;
    let error = open_err(&path, SqliteOptions::default())?;
    assert_corrupt(&path, &error);
    assert!(error.to_string().contains(&path.display().to_string()));
    Ok(())
}

#[test]
fn random_bytes_are_corrupt() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let mut file = std::fs::File::create(&path)?;
    for _ in 0..1024 {
        file.write_all(uuid::Uuid::new_v4().as_bytes())?;
    }
    drop(file);
    let error = open_err(&path, SqliteOptions::default())?;
    assert_corrupt(&path, &error);
    Ok(())
}

/// A store whose header is intact but whose pages were overwritten: the
/// optional `quick_check` finds it at open; without it, reading the damaged
/// tables reports `Error::Corrupt` (never a panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_pages_are_corrupt() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    {
        let store = open(&path)?;
        let worker = WorkerKey {
            component: uuid::Uuid::new_v4(),
            name: "w".to_owned(),
        };
        let records = (1..=500)
            .map(|index| vow_store::OplogRecord {
                index,
                at: index,
                entry: bytes::Bytes::from(vec![b'x'; 200]),
            })
            .collect();
        store
            .write(vec![Write::AppendOplog { worker, records }])
            .await?;
    }
    // Closing the last connection checkpointed the WAL into the file.
    let mut bytes = std::fs::read(&path)?;
    anyhow::ensure!(
        bytes.len() > 16 * 4096,
        "the store is {} bytes",
        bytes.len()
    );
    for (i, byte) in bytes.iter_mut().enumerate().skip(4096) {
        *byte = (i * 7 + 13) as u8;
    }
    std::fs::write(&path, &bytes)?;

    let error = open_err(&path, SqliteOptions::default().quick_check(true))?;
    assert_corrupt(&path, &error);

    // Without the check, the damage shows at open or at the first read.
    match SqliteStorage::open(&path, SqliteOptions::default()) {
        Err(error) => assert_corrupt(&path, &error),
        Ok(store) => {
            let read = store.workers().await;
            match read {
                Err(error) => assert_corrupt(&path, &error),
                Ok(workers) => anyhow::bail!("reading a damaged store gave {workers:?}"),
            }
        }
    }
    Ok(())
}

#[test]
fn another_programs_database_is_refused() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let conn = rusqlite::Connection::open(&path)?;
    conn.execute_batch("PRAGMA application_id = 42; CREATE TABLE notes (text TEXT);")?;
    drop(conn);
    let error = open_err(&path, SqliteOptions::default())?;
    assert!(
        matches!(&error, Error::Open { reason, .. } if reason.contains("another program")),
        "{error:?}"
    );
    Ok(())
}

/// A path under a regular file cannot be created, even by root.
#[test]
fn a_path_under_a_file_is_an_open_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory")?;
    let path = file.join("vow.db");
    let error = open_err(&path, SqliteOptions::default())?;
    match &error {
        Error::Open { location, reason } => {
            assert_eq!(location, &path.display().to_string());
            assert!(
                reason.to_lowercase().contains("not a directory"),
                "the reason should say why: {reason}"
            );
        }
        other => anyhow::bail!("expected Error::Open, got {other:?}"),
    }
    assert!(error.to_string().contains(&path.display().to_string()));
    Ok(())
}

#[test]
fn a_missing_directory_is_an_open_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("missing").join("vow.db");
    let error = open_err(&path, SqliteOptions::default())?;
    assert!(matches!(&error, Error::Open { .. }), "{error:?}");
    assert!(!path.exists());
    Ok(())
}

#[cfg(unix)]
#[test]
fn a_read_only_directory_is_an_open_error() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir()?;
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked)?;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555))?;
    // Root (as in many containers) writes through permission bits: then
    // there is nothing to test here (the path-under-a-file test covers the
    // error for everyone).
    let probe = locked.join("probe");
    if std::fs::write(&probe, "").is_ok() {
        std::fs::remove_file(&probe)?;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755))?;
        return Ok(());
    }
    let path = locked.join("vow.db");
    let error = open_err(&path, SqliteOptions::default());
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755))?;
    match error? {
        Error::Open { location, reason } => {
            assert_eq!(location, path.display().to_string());
            assert!(
                reason.to_lowercase().contains("permission denied"),
                "{reason}"
            );
        }
        other => anyhow::bail!("expected Error::Open, got {other:?}"),
    }
    Ok(())
}
