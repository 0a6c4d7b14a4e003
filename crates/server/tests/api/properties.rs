//! Properties of `vow_server::json` and of WAVE text over generated WIT
//! types and values (the stable counterpart of the fuzz targets
//! `json_value` and `wave_value` in `fuzz/`): decoding never panics,
//! values round-trip, and the server's decoder agrees with the payload
//! checker of `vow-payload-type`, which reads the same encoding.
//!
//! WAVE reads `flags` back in an order of its own; they are compared as
//! sets. The component types come from `vow_testgen::component`, which declares
//! each generated type in a component of its own. `PROPTEST_CASES=N` runs
//! each property N times instead of the default.

use proptest::prelude::*;
use serde_json::Value;
use vow_payload_type::PayloadType;
use vow_runtime::{Type, Val};
use vow_server::json::{from_json, to_json};
use vow_server::typed::analysed_type;
use vow_testgen::component::{component_type, sorted_flags};
use vow_testgen::replace_node;
use vow_testgen::strategy::{config, json, payload_type, value};
use wasmtime::component::wasm_wave;

/// A type, its component type and a canonical value of it.
fn typed_value() -> impl Strategy<Value = (PayloadType, Type, Value)> {
    payload_type().prop_flat_map(|ty| {
        let values = value(&ty);
        (Just(ty), values).prop_map(|(ty, value)| {
            let component = component_type(&ty).unwrap_or_else(|e| panic!("{e:#}"));
            (ty, component, value)
        })
    })
}

/// A generated type with its component type.
fn typed() -> impl Strategy<Value = (PayloadType, Type)> {
    payload_type().prop_map(|ty| {
        let component = component_type(&ty).unwrap_or_else(|e| panic!("{e:#}"));
        (ty, component)
    })
}

/// Decodes `json` with the server and with the payload checker, and
/// checks that they agree: both refuse it, or both accept it and the
/// server's value encodes as the checker's canonical form.
fn decoders_agree(ty: &PayloadType, component: &Type, json: &Value) -> Result<(), TestCaseError> {
    let checked = ty.check(json);
    let decoded = from_json(component, json);
    match (&checked, &decoded) {
        (Ok(canonical), Ok(val)) => {
            prop_assert_eq!(&to_json(val), canonical, "{} {}", ty, json);
        }
        (Err(_), Err(_)) => {}
        _ => prop_assert!(
            false,
            "{ty}: the checker says {checked:?}, the server {decoded:?}, for {json}"
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn component_types_are_the_generated_types((ty, component) in typed()) {
        prop_assert_eq!(analysed_type(&component), Ok(ty.analysed_type()));
    }

    #[test]
    fn json_values_round_trip((ty, component, json) in typed_value()) {
        let val = from_json(&component, &json);
        prop_assert!(val.is_ok(), "{}: {:?} for {}", ty, val, json);
        let val = val.unwrap_or(Val::Bool(false));
        prop_assert_eq!(&to_json(&val), &json, "{}", ty);
        prop_assert_eq!(from_json(&component, &to_json(&val)), Ok(val));
    }

    #[test]
    fn wave_text_round_trips((ty, component, json) in typed_value()) {
        let Ok(val) = from_json(&component, &json) else {
            return Err(TestCaseError::fail(format!("{ty}: {json} does not decode")));
        };
        let text = wasm_wave::to_string(&val);
        prop_assert!(text.is_ok(), "{}: {:?}", ty, text);
        let text = text.unwrap_or_default();
        let back = wasm_wave::from_str::<Val>(&component, &text);
        prop_assert!(back.is_ok(), "{}: {:?} for {}", ty, back.err(), text);
        let back = back.unwrap_or(Val::Bool(false));
        // WAVE reads flags back in an order of its own.
        prop_assert_eq!(sorted_flags(&back), sorted_flags(&val), "{} {}", ty, text);
        // Text printed from parsed text is a fixed point.
        let again = wasm_wave::to_string(&back).unwrap_or_default();
        let reparsed = wasm_wave::from_str::<Val>(&component, &again).ok();
        let printed = reparsed.as_ref().and_then(|v| wasm_wave::to_string(v).ok());
        prop_assert_eq!(printed, Some(again));
    }

    #[test]
    fn decoding_any_json_agrees_with_the_checker((ty, component) in typed(), json in json()) {
        decoders_agree(&ty, &component, &json)?;
    }

    #[test]
    fn decoding_a_value_broken_at_one_place_agrees_with_the_checker(
        (ty, component, json) in typed_value(),
        at in any::<usize>(),
        replacement in json(),
    ) {
        let mut broken = json;
        replace_node(&mut broken, at, replacement);
        decoders_agree(&ty, &component, &broken)?;
    }

    #[test]
    fn parsing_any_wave_text_returns((_ty, component) in typed(), text in any::<String>()) {
        if let Ok(val) = wasm_wave::from_str::<Val>(&component, &text) {
            let again = wasm_wave::to_string(&val).ok();
            let back = again.as_deref().map(|t| wasm_wave::from_str::<Val>(&component, t).ok());
            prop_assert_eq!(back, Some(Some(val)));
        }
    }

    #[test]
    fn parsing_mutated_wave_text_returns(
        (ty, component, json) in typed_value(),
        edits in prop::collection::vec((any::<usize>(), any::<char>(), any::<bool>()), 1..4),
    ) {
        let Ok(val) = from_json(&component, &json) else {
            return Err(TestCaseError::fail(format!("{ty}: {json} does not decode")));
        };
        let mut chars: Vec<char> = wasm_wave::to_string(&val).unwrap_or_default().chars().collect();
        for (at, c, insert) in edits {
            let at = at % (chars.len() + 1);
            if insert || at == chars.len() {
                chars.insert(at, c);
            } else {
                chars[at] = c;
            }
        }
        let text: String = chars.into_iter().collect();
        if let Ok(val) = wasm_wave::from_str::<Val>(&component, &text) {
            let again = wasm_wave::to_string(&val).ok();
            let back = again.as_deref().map(|t| wasm_wave::from_str::<Val>(&component, t).ok());
            prop_assert_eq!(back, Some(Some(val)), "{}", text);
        }
    }
}

/// Found by the `json_value` fuzz target: the server read a `u64` given as
/// `"-0"` as an error where the payload checker reads 0, and `"+1"` as 1
/// where the checker refuses it.
#[test]
fn wide_integers_in_strings_read_as_the_checker_reads_them() -> anyhow::Result<()> {
    let u64_type = component_type(&PayloadType::U64)?;
    let s64_type = component_type(&PayloadType::S64)?;
    assert_eq!(from_json(&u64_type, &Value::from("-0")), Ok(Val::U64(0)));
    assert_eq!(from_json(&s64_type, &Value::from("-0")), Ok(Val::S64(0)));
    for text in ["+1", " 1", "1.0", "", "-", "18446744073709551616"] {
        assert!(
            from_json(&u64_type, &Value::from(text)).is_err(),
            "{text:?}"
        );
        assert!(
            PayloadType::U64.check(&Value::from(text)).is_err(),
            "{text:?}"
        );
    }
    Ok(())
}
