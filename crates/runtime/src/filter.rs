//! Evaluation of `get-workers` filters.

use std::cmp::Ordering;

use crate::bindings::golem::api::host::{
    FilterComparator, StringFilterComparator, WorkerAnyFilter, WorkerPropertyFilter,
};
use crate::worker::{WorkerMetadata, WorkerStatus};

/// Whether `worker` matches `filter`: any of its groups, each group matching
/// all of its conditions. An empty `any` filter matches nothing, an empty group
/// matches everything — the plain reading of OR and AND over empty sets.
pub(crate) fn matches(filter: &WorkerAnyFilter, worker: &WorkerMetadata) -> bool {
    filter
        .filters
        .iter()
        .any(|all| all.filters.iter().all(|f| property_matches(f, worker)))
}

fn property_matches(filter: &WorkerPropertyFilter, worker: &WorkerMetadata) -> bool {
    match filter {
        WorkerPropertyFilter::Name(f) => {
            string_matches(f.comparator, &worker.id.worker_name, &f.value)
        }
        WorkerPropertyFilter::Status(f) => ordered(
            f.comparator,
            status_rank(worker.status).cmp(&status_rank(f.value.into())),
        ),
        WorkerPropertyFilter::Version(f) => {
            ordered(f.comparator, worker.component_version.cmp(&f.value))
        }
        WorkerPropertyFilter::CreatedAt(f) => {
            ordered(f.comparator, worker.created_at_millis().cmp(&f.value))
        }
        WorkerPropertyFilter::Env(f) => {
            let value = worker
                .env
                .iter()
                .find(|(k, _)| *k == f.name)
                .map(|(_, v)| v.as_str());
            match value {
                Some(value) => string_matches(f.comparator, value, &f.value),
                // A missing variable equals nothing and differs from everything.
                None => matches!(
                    f.comparator,
                    StringFilterComparator::NotEqual | StringFilterComparator::NotLike
                ),
            }
        }
    }
}

/// Declaration order of `worker-status` in the WIT.
fn status_rank(status: WorkerStatus) -> u8 {
    status as u8
}

fn ordered(comparator: FilterComparator, ordering: Ordering) -> bool {
    match comparator {
        FilterComparator::Equal => ordering.is_eq(),
        FilterComparator::NotEqual => ordering.is_ne(),
        FilterComparator::GreaterEqual => ordering.is_ge(),
        FilterComparator::Greater => ordering.is_gt(),
        FilterComparator::LessEqual => ordering.is_le(),
        FilterComparator::Less => ordering.is_lt(),
    }
}

fn string_matches(comparator: StringFilterComparator, value: &str, pattern: &str) -> bool {
    match comparator {
        StringFilterComparator::Equal => value == pattern,
        StringFilterComparator::NotEqual => value != pattern,
        StringFilterComparator::Like => like(value, pattern),
        StringFilterComparator::NotLike => !like(value, pattern),
    }
}

/// SQL `LIKE` with `%` (any run of characters) and `_` (one character).
pub(crate) fn like(value: &str, pattern: &str) -> bool {
    let value: Vec<char> = value.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    // Classic two-pointer wildcard match with backtracking to the last `%`.
    let (mut v, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && (pattern[p] == '_' || pattern[p] == value[v]) {
            v += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == '%' {
            star = Some((p, v));
            p += 1;
        } else if let Some((sp, sv)) = star {
            p = sp + 1;
            v = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '%')
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_handles_wildcards() {
        assert!(like("approver-1", "approver-%"));
        assert!(like("approver-1", "%-1"));
        assert!(like("approver-1", "%prov%"));
        assert!(like("abc", "a_c"));
        assert!(like("", "%"));
        assert!(!like("approver-1", "approver-2"));
        assert!(!like("abc", "a_"));
        assert!(like("a%c", "a%c"));
        assert!(!like("xyz", "x%y"));
    }
}
