//! From PostgreSQL's errors to [`vow_store::Error`]: no tokio-postgres type
//! leaves the crate, and every message names the store.

use tokio_postgres::error::SqlState;
use vow_store::Error;

/// The server's own message when there is one (tokio-postgres's `Display`
/// says only "db error"), else the client's.
pub(crate) fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        }
    }
}

/// An error met while the store is in use.
pub(crate) fn runtime(location: &str, e: &tokio_postgres::Error) -> Error {
    match e.code() {
        Some(code) if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY => {
            Error::Full {
                location: location.to_owned(),
                reason: message(e),
            }
        }
        Some(code) if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED => {
            Error::Corrupt {
                location: location.to_owned(),
                reason: message(e),
            }
        }
        _ => Error::Backend(format!("{location}: {}", message(e))),
    }
}

/// An error met while connecting or migrating.
pub(crate) fn at_open(location: &str, e: &tokio_postgres::Error) -> Error {
    match runtime(location, e) {
        Error::Backend(_) => Error::Open {
            location: location.to_owned(),
            reason: message(e),
        },
        other => other,
    }
}
