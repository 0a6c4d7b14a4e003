//! Golem 1.1's worker filters: the `WorkerFilter` body of `workers/find`
//! and the `filter=` strings of the worker listing, and what they match.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};
use vow_runtime::{WorkerMetadata, WorkerStatus};

use crate::integral;

/// Golem's filter tree, tagged by `type`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub(crate) enum WorkerFilter {
    Name {
        comparator: StringComparator,
        value: String,
    },
    Status {
        comparator: Comparator,
        value: GolemStatus,
    },
    Version {
        comparator: Comparator,
        #[serde(deserialize_with = "integral::u64")]
        #[schema(inline, value_type = integral::Uint64)]
        value: u64,
    },
    CreatedAt {
        comparator: Comparator,
        #[serde(deserialize_with = "timestamp")]
        #[schema(inline, value_type = Timestamp)]
        value: SystemTime,
    },
    Env {
        /// Matched without regard to case
        name: String,
        comparator: StringComparator,
        value: String,
    },
    And {
        #[schema(no_recursion)]
        filters: Vec<WorkerFilter>,
    },
    Or {
        #[schema(no_recursion)]
        filters: Vec<WorkerFilter>,
    },
    Not {
        #[schema(no_recursion)]
        filter: Box<WorkerFilter>,
    },
}

/// How a string is compared (`Like`: contains).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, ToSchema)]
pub(crate) enum StringComparator {
    Equal,
    NotEqual,
    Like,
    NotLike,
}

/// How a status, version or time is compared.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, ToSchema)]
pub(crate) enum Comparator {
    Equal,
    NotEqual,
    GreaterEqual,
    Greater,
    LessEqual,
    Less,
}

/// A worker status as Golem spells it, in a worker's metadata and in a
/// `Status` filter (exactly so: `idle` is refused there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub(crate) enum GolemStatus {
    Running,
    Idle,
    Suspended,
    Interrupted,
    Retrying,
    Failed,
    Exited,
}

impl From<WorkerStatus> for GolemStatus {
    fn from(status: WorkerStatus) -> Self {
        match status {
            WorkerStatus::Running => Self::Running,
            WorkerStatus::Idle => Self::Idle,
            WorkerStatus::Suspended => Self::Suspended,
            WorkerStatus::Interrupted => Self::Interrupted,
            WorkerStatus::Retrying => Self::Retrying,
            WorkerStatus::Failed => Self::Failed,
            WorkerStatus::Exited => Self::Exited,
        }
    }
}

impl From<GolemStatus> for WorkerStatus {
    fn from(status: GolemStatus) -> Self {
        match status {
            GolemStatus::Running => Self::Running,
            GolemStatus::Idle => Self::Idle,
            GolemStatus::Suspended => Self::Suspended,
            GolemStatus::Interrupted => Self::Interrupted,
            GolemStatus::Retrying => Self::Retrying,
            GolemStatus::Failed => Self::Failed,
            GolemStatus::Exited => Self::Exited,
        }
    }
}

/// An RFC 3339 UTC timestamp as a worker filter reads it (Golem's form),
/// 1970 or later; days only up to 28, so that every text the pattern
/// allows is a real date.
const TIMESTAMP: &str = "(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z";

/// The schema of a `CreatedAt` filter's value.
struct Timestamp;

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^{TIMESTAMP}$")))
            .description(Some("RFC 3339, UTC"))
            .into()
    }
}

impl ToSchema for Timestamp {}

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
            Self::Status { comparator, value } => ordered(
                *comparator,
                (worker.status as u8).cmp(&(WorkerStatus::from(*value) as u8)),
            ),
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
                    .map(GolemStatus::from)
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

    /// The texts [`WorkerFilter::parse`] reads, as a pattern for the
    /// OpenAPI document (which cannot say that a date must exist, hence
    /// [`TIMESTAMP`]'s days).
    pub(crate) fn text_pattern() -> String {
        let ordered = "(==|=|!=|>=|>|<=|<|eq|equal|ne|notequal|ge|greaterequal|gt|greater|le|lessequal|lt|less)";
        let strings = "(==|=|!=|eq|equal|ne|notequal|like|notlike)";
        let statuses = "(Running|Idle|Suspended|Interrupted|Retrying|Failed|Exited|running|idle|suspended|interrupted|retrying|failed|exited)";
        format!(
            "^(name {strings} [^\\s]+|env\\.[^\\s]+ {strings} [^\\s]+|status {ordered} {statuses}|version {ordered} [0-9]{{1,19}}|(created_at|createdAt) {ordered} {TIMESTAMP})$"
        )
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
