//! Identifiers of components, workers and promises, and their text forms.
//!
//! The text forms are what users see and type: a component id is a canonical
//! UUID, a worker id is `{component-id}/{worker-name}` and a promise id is
//! `{component-id}/{worker-name}/{oplog-index}`. The Rust guest SDK prints the
//! same forms, so an id logged by a guest can be pasted into the CLI or REST API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

/// Position of an entry in a worker's operation log. The first entry (the
/// worker's creation) has index 1.
pub type OplogIndex = u64;

/// Identifies a component added to an [`Executor`](crate::Executor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ComponentId(pub Uuid);

impl ComponentId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id's 128 bits split as in the WIT `uuid` record: (upper, lower).
    pub fn as_u64_pair(&self) -> (u64, u64) {
        self.0.as_u64_pair()
    }

    /// Builds the id from the WIT `uuid` record's halves.
    pub fn from_u64_pair(high: u64, low: u64) -> Self {
        Self(Uuid::from_u64_pair(high, low))
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for ComponentId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Identifies a worker: a component and a name unique within it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerId {
    /// The component the worker instantiates.
    pub component_id: ComponentId,
    /// The worker's name.
    pub worker_name: String,
}

impl WorkerId {
    /// Builds a worker id.
    pub fn new(component_id: ComponentId, worker_name: impl Into<String>) -> Self {
        Self {
            component_id,
            worker_name: worker_name.into(),
        }
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.component_id, self.worker_name)
    }
}

/// Longest accepted worker name, in bytes.
pub const MAX_WORKER_NAME_LEN: usize = 256;

/// Checks that a worker name can be used in ids, URLs and file names.
pub(crate) fn validate_worker_name(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_WORKER_NAME_LEN {
        Some("it is longer than 256 bytes")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidWorkerName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Identifies a promise: the worker that created it and the oplog index of the
/// `create-promise` call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromiseId {
    /// The creating worker.
    pub worker_id: WorkerId,
    /// Index of the creating call in that worker's operation log.
    pub oplog_idx: OplogIndex,
}

impl fmt::Display for PromiseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.worker_id, self.oplog_idx)
    }
}

impl FromStr for PromiseId {
    type Err = Error;

    /// Parses `{component-id}/{worker-name}/{oplog-index}`. The component id
    /// ends at the first `/` and the index starts after the last one, so the
    /// form stays unambiguous even for names written by other tools.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| Error::InvalidPromiseId {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (component, rest) = text
            .split_once('/')
            .ok_or_else(|| invalid("expected {component-id}/{worker-name}/{oplog-index}"))?;
        let (name, index) = rest
            .rsplit_once('/')
            .ok_or_else(|| invalid("expected {component-id}/{worker-name}/{oplog-index}"))?;
        let component_id = component
            .parse::<ComponentId>()
            .map_err(|e| invalid(&format!("component id {component:?} is not a uuid: {e}")))?;
        if name.is_empty() {
            return Err(invalid("the worker name is empty"));
        }
        let oplog_idx = index
            .parse::<OplogIndex>()
            .map_err(|_| invalid(&format!("oplog index {index:?} is not a number")))?;
        Ok(Self {
            worker_id: WorkerId::new(component_id, name),
            oplog_idx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promise_id_text_round_trips() {
        let id = PromiseId {
            worker_id: WorkerId::new(ComponentId::from_u64_pair(1, 2), "approver-7"),
            oplog_idx: 3,
        };
        let text = id.to_string();
        assert_eq!(text, "00000000-0000-0001-0000-000000000002/approver-7/3");
        assert_eq!(text.parse::<PromiseId>().ok(), Some(id));
    }

    #[test]
    fn promise_id_parse_errors_name_the_problem() {
        let err = "nonsense".parse::<PromiseId>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "invalid promise id \"nonsense\": expected {component-id}/{worker-name}/{oplog-index}"
            )
        );
        let err = "00000000-0000-0001-0000-000000000002/w/x"
            .parse::<PromiseId>()
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("oplog index \"x\" is not a number")));
        let err = "abc/w/1".parse::<PromiseId>().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("component id \"abc\" is not a uuid")));
    }

    #[test]
    fn worker_names_are_checked() {
        assert!(validate_worker_name("ok-name_1.2").is_ok());
        for bad in ["", "a/b", "tab\there"] {
            assert!(validate_worker_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_worker_name(&"x".repeat(257)).is_err());
    }
}
