//! Properties of the type parser and the value checker, over generated
//! types and values (the stable counterpart of the fuzz targets
//! `payload_type_text` and `json_value` in `fuzz/`).
//!
//! `PROPTEST_CASES=N` runs each property N times instead of the default.

use proptest::prelude::*;
use serde_json::Value;
use vow_payload_type::PayloadType;
use vow_testgen::strategy::{config, json, payload_type, value};
use vow_testgen::{node_count, replace_node};

/// A type and a canonical value of it.
fn typed_value() -> impl Strategy<Value = (PayloadType, Value)> {
    payload_type().prop_flat_map(|ty| {
        let values = value(&ty);
        (Just(ty), values)
    })
}

/// `text` with a few characters inserted, removed or replaced.
fn mutated_text() -> impl Strategy<Value = String> {
    let edit = (
        any::<usize>(),
        0..3u8,
        prop::sample::select(
            &[
                '<', '>', ',', '(', ')', '{', '}', ':', '%', '_', '/', '*', ' ', 'a', '-', '0', 'é',
            ][..],
        ),
    );
    (payload_type(), prop::collection::vec(edit, 1..4)).prop_map(|(ty, edits)| {
        let mut chars: Vec<char> = ty.to_string().chars().collect();
        for (at, op, c) in edits {
            let at = at % (chars.len() + 1);
            match op {
                0 => chars.insert(at, c),
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                _ if at < chars.len() => chars[at] = c,
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parsing_any_text_returns(text in any::<String>()) {
        let _ = PayloadType::parse(&text);
    }

    #[test]
    fn parsing_mutated_type_text_returns(text in mutated_text()) {
        if let Ok(ty) = PayloadType::parse(&text) {
            // Whatever parses prints as text that parses back the same.
            prop_assert_eq!(PayloadType::parse(&ty.to_string()), Ok(ty));
        }
    }

    #[test]
    fn type_text_round_trips(ty in payload_type()) {
        let text = ty.to_string();
        let parsed = PayloadType::parse(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&ty), "{}", text);
        let json = serde_json::to_value(&ty).ok();
        prop_assert_eq!(json.as_ref().and_then(Value::as_str), Some(text.as_str()));
    }

    #[test]
    fn canonical_values_check_as_themselves((ty, value) in typed_value()) {
        prop_assert_eq!(ty.check(&value), Ok(value.clone()), "{}", ty);
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        prop_assert_eq!(ty.check_bytes(&bytes), Ok(value));
    }

    #[test]
    fn checking_any_json_returns_and_is_idempotent(ty in payload_type(), json in json()) {
        if let Ok(canonical) = ty.check(&json) {
            prop_assert_eq!(ty.check(&canonical), Ok(canonical.clone()), "{}", ty);
        }
    }

    #[test]
    fn checking_a_value_broken_at_one_place_returns_and_is_idempotent(
        (ty, value) in typed_value(),
        at in any::<usize>(),
        replacement in json(),
    ) {
        let mut broken = value;
        replace_node(&mut broken, at, replacement);
        prop_assert!(node_count(&broken) > 0);
        if let Ok(canonical) = ty.check(&broken) {
            prop_assert_eq!(ty.check(&canonical), Ok(canonical.clone()), "{}", ty);
        }
    }

    #[test]
    fn checking_any_bytes_returns(ty in payload_type(), bytes in any::<Vec<u8>>()) {
        let _ = ty.check_bytes(&bytes);
    }
}
