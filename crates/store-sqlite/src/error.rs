//! From SQLite's errors to [`vow_store::Error`]: no rusqlite type leaves the
//! crate, and every message names the store's path.

use std::path::Path;

use rusqlite::ErrorCode;
use vow_store::Error;

/// The class of a SQLite failure that callers can act on.
fn code(e: &rusqlite::Error) -> Option<ErrorCode> {
    e.sqlite_error_code()
}

/// Whether SQLite says the file is not a database or is damaged, or a value
/// read back does not have the shape this crate wrote.
fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        code(e),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    ) || matches!(
        e,
        rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
    )
}

/// An error met while the store is in use.
pub(crate) fn runtime(location: &str, e: &rusqlite::Error) -> Error {
    if is_corrupt(e) {
        return Error::Corrupt {
            location: location.to_owned(),
            reason: e.to_string(),
        };
    }
    if code(e) == Some(ErrorCode::DiskFull) {
        return Error::Full {
            location: location.to_owned(),
            reason: e.to_string(),
        };
    }
    Error::Backend(format!("{location}: {e}"))
}

/// An error met while opening the store: what is not damage or a full disk
/// is a failure to open, with the operating system's reason when SQLite's
/// own message ("unable to open database file") does not say.
pub(crate) fn at_open(path: &Path, e: &rusqlite::Error) -> Error {
    let location = path.display().to_string();
    if is_corrupt(e) || code(e) == Some(ErrorCode::DiskFull) {
        return runtime(&location, e);
    }
    let mut reason = e.to_string();
    if code(e) == Some(ErrorCode::CannotOpen)
        && let Some(why) = probe(path)
    {
        reason = format!("{reason}: {why}");
    }
    Error::Open { location, reason }
}

/// The database at `path` could only be opened read-only: an open error,
/// with the operating system's reason when it gives one.
pub(crate) fn read_only(path: &Path) -> Error {
    let reason = match probe(path) {
        Some(why) => format!("the database can only be opened read-only: {why}"),
        None => "the database can only be opened read-only".to_owned(),
    };
    Error::Open {
        location: path.display().to_string(),
        reason,
    }
}

/// Asks the operating system why `path` cannot be opened for writing.
/// Creates nothing that stays: a file it had to create is removed again.
fn probe(path: &Path) -> Option<std::io::Error> {
    let exists = path.exists();
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(!exists)
        .open(path);
    match opened {
        Ok(_) => {
            if !exists {
                let _ = std::fs::remove_file(path);
            }
            None
        }
        Err(e) => Some(e),
    }
}

/// A number too large for SQLite's signed 64-bit integers.
pub(crate) fn out_of_range(what: &str, value: u64) -> Error {
    Error::Backend(format!(
        "{what} {value} is out of range: the store keeps numbers up to {}",
        i64::MAX
    ))
}
