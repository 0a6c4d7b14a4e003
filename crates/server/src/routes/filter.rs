//! Golem 1.1's worker filters: the `WorkerFilter` body of `workers/find`
//! and the `filter=` strings of the worker listing, and what they match.

use std::time::SystemTime;

use serde::Deserialize;
use vow_runtime::{WorkerMetadata, WorkerStatus};

/// A filter on workers, as Golem's `WorkerFilter` (tagged by `type`).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub(crate) enum WorkerFilter {
    Name {
        comparator: StringComparator,
        value: String,
    },
    Status {
        comparator: Comparator,
        #[serde(deserialize_with = "golem_status_value")]
        value: WorkerStatus,
    },
    Version {
        comparator: Comparator,
        #[serde(deserialize_with = "crate::integral::u64")]
        value: u64,
    },
    CreatedAt {
        comparator: Comparator,
        #[serde(deserialize_with = "timestamp")]
        value: SystemTime,
    },
    Env {
        name: String,
        comparator: StringComparator,
        value: String,
    },
    And {
        filters: Vec<WorkerFilter>,
    },
    Or {
        filters: Vec<WorkerFilter>,
    },
    Not {
        filter: Box<WorkerFilter>,
    },
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub(crate) enum StringComparator {
    Equal,
    NotEqual,
    Like,
    NotLike,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub(crate) enum Comparator {
    Equal,
    NotEqual,
    GreaterEqual,
    Greater,
    LessEqual,
    Less,
}

/// Golem's spelling of a worker status (`Running`, `Idle`, ...).
pub(crate) fn golem_status(status: WorkerStatus) -> &'static str {
    match status {
        WorkerStatus::Running => "Running",
        WorkerStatus::Idle => "Idle",
        WorkerStatus::Suspended => "Suspended",
        WorkerStatus::Interrupted => "Interrupted",
        WorkerStatus::Retrying => "Retrying",
        WorkerStatus::Failed => "Failed",
        WorkerStatus::Exited => "Exited",
    }
}

/// A status in a `WorkerFilter` body: exactly Golem's spelling.
fn golem_status_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<WorkerStatus, D::Error> {
    let text = String::deserialize(d)?;
    WorkerStatus::parse(&text.to_ascii_lowercase())
        .filter(|status| golem_status(*status) == text)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown worker status {text:?} (expected Running, Idle, Suspended, Interrupted, Retrying, Failed or Exited)"
            ))
        })
}

fn timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(d)?;
    parse_time(&text).map_err(serde::de::Error::custom)
}

fn parse_time(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text).map_err(|e| {
        format!(
            "invalid timestamp {text:?} ({e}); expected RFC 3339, such as 2024-12-01T10:00:00.000Z"
        )
    })
}

impl WorkerFilter {
    /// Whether `worker` matches. `Like` is "contains", as in Golem; an
    /// empty `And` or `Or` matches everything, as in Golem.
    pub(crate) fn matches(&self, worker: &WorkerMetadata) -> bool {
        match self {
            Self::Name { comparator, value } => strings(*comparator, &worker.id.worker_name, value),
            // By declaration order, as Golem compares statuses.
            Self::Status { comparator, value } => {
                ordered(*comparator, (worker.status as u8).cmp(&(*value as u8)))
            }
            Self::Version { comparator, value } => {
                ordered(*comparator, worker.component_version.cmp(value))
            }
            Self::CreatedAt { comparator, value } => {
                ordered(*comparator, worker.created_at.cmp(value))
            }
            Self::Env {
                name,
                comparator,
                value,
            } => worker
                .env
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .is_some_and(|(_, v)| strings(*comparator, v, value)),
            Self::And { filters } => filters.iter().all(|f| f.matches(worker)),
            Self::Or { filters } => filters.is_empty() || filters.iter().any(|f| f.matches(worker)),
            Self::Not { filter } => !filter.matches(worker),
        }
    }

    /// One `filter=` string: `<property> <comparator> <value>`, where the
    /// property is `name`, `status`, `version`, `created_at` (or
    /// `createdAt`) or `env.NAME`, as Golem's listing takes it.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [property, comparator, value] = parts[..] else {
            return Err(format!(
                "Invalid filter: {text} (expected `<property> <comparator> <value>`, such as `status == Idle`)"
            ));
        };
        let value = value.to_owned();
        Ok(match property {
            "name" => Self::Name {
                comparator: string_comparator(comparator)?,
                value,
            },
            "status" => Self::Status {
                comparator: comparator_of(comparator)?,
                value: WorkerStatus::parse(&value.to_ascii_lowercase())
                    .ok_or_else(|| format!("Unknown worker status: {value}"))?,
            },
            "version" => Self::Version {
                comparator: comparator_of(comparator)?,
                value: value.parse().map_err(|_| {
                    format!("Invalid filter value: {value} is not a version number")
                })?,
            },
            "created_at" | "createdAt" => Self::CreatedAt {
                comparator: comparator_of(comparator)?,
                value: parse_time(&value)?,
            },
            other => match other.strip_prefix("env.") {
                Some(name) => Self::Env {
                    name: name.to_owned(),
                    comparator: string_comparator(comparator)?,
                    value,
                },
                None => {
                    return Err(format!(
                        "Invalid filter: {text} (unknown property {other:?}; expected name, status, version, created_at or env.NAME)"
                    ));
                }
            },
        })
    }
}

fn string_comparator(text: &str) -> Result<StringComparator, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "==" | "=" | "equal" | "eq" => StringComparator::Equal,
        "!=" | "notequal" | "ne" => StringComparator::NotEqual,
        "like" => StringComparator::Like,
        "notlike" => StringComparator::NotLike,
        _ => return Err(format!("Unknown String Filter Comparator: {text}")),
    })
}

fn comparator_of(text: &str) -> Result<Comparator, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "==" | "=" | "equal" | "eq" => Comparator::Equal,
        "!=" | "notequal" | "ne" => Comparator::NotEqual,
        ">=" | "greaterequal" | "ge" => Comparator::GreaterEqual,
        ">" | "greater" | "gt" => Comparator::Greater,
        "<=" | "lessequal" | "le" => Comparator::LessEqual,
        "<" | "less" | "lt" => Comparator::Less,
        _ => return Err(format!("Unknown Filter Comparator: {text}")),
    })
}

fn ordered(comparator: Comparator, ordering: std::cmp::Ordering) -> bool {
    match comparator {
        Comparator::Equal => ordering.is_eq(),
        Comparator::NotEqual => ordering.is_ne(),
        Comparator::GreaterEqual => ordering.is_ge(),
        Comparator::Greater => ordering.is_gt(),
        Comparator::LessEqual => ordering.is_le(),
        Comparator::Less => ordering.is_lt(),
    }
}

fn strings(comparator: StringComparator, value: &str, pattern: &str) -> bool {
    match comparator {
        StringComparator::Equal => value == pattern,
        StringComparator::NotEqual => value != pattern,
        StringComparator::Like => value.contains(pattern),
        StringComparator::NotLike => !value.contains(pattern),
    }
}
