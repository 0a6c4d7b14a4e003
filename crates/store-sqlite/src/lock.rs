//! One process per store: an exclusive lock on a file next to the
//! database (`vow.sqlite.lock` beside `vow.sqlite`), held for as long as the store
//! is open.
//!
//! Two processes writing one store would both recover and run the same
//! workers and interleave their logs; SQLite's own locks keep the file
//! consistent but cannot stop that. The lock is the operating system's
//! (`flock`), so it goes with the process: a process killed with SIGKILL
//! leaves no stale lock behind. The file holds the holder's process id,
//! for the message of the one that finds it taken.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vow_store::{Error, Result};

/// How often a process waiting for the lock tries again.
const RETRY: Duration = Duration::from_millis(50);

/// The lock of the store at `db`, taken: released when dropped.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

/// The lock file of the store at `db`.
pub(crate) fn path_of(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    db.with_file_name(name)
}

/// Takes the lock of the store at `db`, waiting up to `patience` for
/// another process to let go of it.
pub(crate) fn take(db: &Path, patience: Duration) -> Result<StoreLock> {
    let path = path_of(db);
    let open_error = |e: std::io::Error| Error::Open {
        location: db.display().to_string(),
        reason: format!("cannot open the lock file {}: {e}", path.display()),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(open_error)?;
    let deadline = Instant::now() + patience;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(RETRY);
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("process {pid}"),
                };
                return Err(Error::Open {
                    location: db.display().to_string(),
                    reason: format!(
                        "another Vow process uses this store: {holder} holds {} (waited {patience:?}). \
                         One process per data directory: stop that one, or give this one another \
                         --data-dir",
                        path.display()
                    ),
                });
            }
            Err(TryLockError::Error(e)) => return Err(open_error(e)),
        }
    }
    // Who holds it, for a process that finds it taken; the lock is what
    // counts, so failing to write this is no error.
    let _ = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    Ok(StoreLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_waits_then_says_who_holds_the_store() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("vow.db");
        assert_eq!(path_of(&db), dir.path().join("vow.db.lock"));
        let held = take(&db, Duration::ZERO).expect("the first lock");
        let started = Instant::now();
        let refused = take(&db, Duration::from_millis(200)).expect_err("a second lock");
        assert!(started.elapsed() >= Duration::from_millis(200));
        let text = refused.to_string();
        assert!(
            text.contains(&format!(
                "another Vow process uses this store: process {} holds",
                std::process::id()
            )),
            "{text}"
        );
        drop(held);
        take(&db, Duration::ZERO).expect("the lock once let go");
    }
}
