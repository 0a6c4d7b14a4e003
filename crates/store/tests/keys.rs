//! Properties of [`encode_promise_keys`] and [`decode_promise_keys`], which
//! read a column back from a database: what is written reads back the same,
//! and any bytes read give keys or `None`, never a panic (the stable
//! counterpart of the fuzz target `store_keys` in `fuzz/`).
//!
//! `PROPTEST_CASES=N` runs each property N times instead of the default.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use uuid::Uuid;
use vow_store::{PromiseKey, WorkerKey, decode_promise_keys, encode_promise_keys};

/// Proptest's configuration with `cases` cases, unless `PROPTEST_CASES`
/// asks for another number.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

fn promise_key() -> impl Strategy<Value = PromiseKey> {
    (any::<u128>(), ".{0,12}", any::<u64>()).prop_map(|(component, name, index)| PromiseKey {
        worker: WorkerKey {
            component: Uuid::from_u128(component),
            name,
        },
        index,
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn promise_keys_round_trip(keys in vec(promise_key(), 0..5)) {
        prop_assert_eq!(decode_promise_keys(&encode_promise_keys(&keys)), Some(keys));
    }

    #[test]
    fn decoding_any_bytes_returns(bytes in vec(any::<u8>(), 0..96)) {
        if let Some(keys) = decode_promise_keys(&bytes) {
            // The encoding has one spelling per list of keys.
            prop_assert_eq!(encode_promise_keys(&keys), bytes);
        }
    }

    #[test]
    fn decoding_mutated_keys_returns(
        keys in vec(promise_key(), 1..4),
        edits in vec(any::<(usize, u8, u8)>(), 1..4),
    ) {
        let mut bytes = encode_promise_keys(&keys);
        for (at, op, b) in edits {
            let at = at % (bytes.len() + 1);
            match op % 4 {
                0 if at < bytes.len() => bytes[at] ^= 1 << (b % 8),
                1 => bytes.insert(at, b),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        if let Some(keys) = decode_promise_keys(&bytes) {
            prop_assert_eq!(encode_promise_keys(&keys), bytes);
        }
    }
}
