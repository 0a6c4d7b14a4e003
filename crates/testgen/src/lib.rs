//! # vow-testgen
//!
//! Generators for Vow's property tests and fuzz targets: WIT value types
//! (as [`PayloadType`]s: `bool`, the integers, floats, `char`, `string`,
//! `list`, `option`, `result`, `tuple`, `record`, `variant`, `enum` and
//! `flags`), values of them in Vow's plain JSON encoding, arbitrary JSON,
//! and the component-model [`Type`](wasmtime::component::types::Type) of a
//! generated type, which the server's decoders and WAVE need.
//!
//! The same shapes come from two sources: [`strategy`] has proptest
//! strategies (the property tests, on stable, which shrink failures), and
//! [`unstructured`] reads them from raw bytes with `arbitrary` (the fuzz
//! targets in `fuzz/`, on nightly, which are guided by coverage).
//!
//! Generated values are in the *canonical* form that
//! [`PayloadType::check`] answers, with one exception forced by the
//! encoding: an `option` whose payload would itself be `null` (`some(none)`
//! of an `option<option<T>>`) is never generated, because `null` reads back
//! as `none`.
//!
//! 1. Make a type: `strategy::payload_type()` or
//!    `unstructured::payload_type(&mut u)`.
//! 2. Make a value of it: `strategy::value(&ty)` or
//!    `unstructured::value(&mut u, &ty)`.
//! 3. For the server's decoders, get its component type with
//!    [`component::component_type`].
//!
//! ```
//! use proptest::strategy::{Strategy, ValueTree};
//! use proptest::test_runner::TestRunner;
//! use vow_testgen::strategy;
//!
//! let mut runner = TestRunner::deterministic();
//! let ty = strategy::payload_type().new_tree(&mut runner).unwrap().current();
//! let value = strategy::value(&ty).new_tree(&mut runner).unwrap().current();
//! assert_eq!(ty.check(&value).ok(), Some(value));
//! ```

pub mod component;
pub mod strategy;
pub mod unstructured;

use serde_json::Value;
pub use vow_payload_type::PayloadType;

/// WIT keywords used as names, so that generated types exercise the `%`
/// escape of the WIT text.
pub const KEYWORD_NAMES: &[&str] = &["type", "enum", "own", "list", "result", "u8", "record"];

/// The most flags a generated `flags` type has (the component model allows
/// 32).
pub const MAX_FLAGS: usize = 32;

/// The canonical JSON of a float, as [`PayloadType::check`] answers it: a
/// number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
pub fn float_json(f: f64) -> Value {
    match serde_json::Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::from("NaN"),
        None if f > 0.0 => Value::from("Infinity"),
        None => Value::from("-Infinity"),
    }
}

/// The canonical JSON of an `f32`: through its shortest decimal form, so
/// `0.1f32` is `0.1`.
pub fn f32_json(f: f32) -> Value {
    float_json(f.to_string().parse().unwrap_or(f64::from(f)))
}

/// The number of nodes of `value` (itself, array elements, object values,
/// recursively): what [`replace_node`] counts.
pub fn node_count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(node_count).sum(),
        Value::Object(object) => object.values().map(node_count).sum(),
        _ => 0,
    }
}

/// Replaces the node at position `at` (preorder, modulo [`node_count`])
/// with `replacement`: a valid value made invalid at one place, which
/// reaches deeper into a decoder than arbitrary JSON does.
pub fn replace_node(value: &mut Value, at: usize, replacement: Value) {
    let mut at = at % node_count(value);
    replace_at(value, &mut at, replacement);
}

/// Counts `at` down through the nodes; replaces the one where it hits 0.
/// Returns the replacement back when the node is not under `value`.
fn replace_at(value: &mut Value, at: &mut usize, replacement: Value) -> Option<Value> {
    if *at == 0 {
        *value = replacement;
        return None;
    }
    *at -= 1;
    let mut replacement = Some(replacement);
    let children: Vec<&mut Value> = match value {
        Value::Array(items) => items.iter_mut().collect(),
        Value::Object(object) => object.values_mut().collect(),
        _ => Vec::new(),
    };
    for child in children {
        let r = replacement.take()?;
        replacement = replace_at(child, at, r);
    }
    replacement
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn replace_node_counts_in_preorder() {
        let value = json!({ "a": [1, 2], "b": null });
        assert_eq!(node_count(&value), 5);
        let mut replaced = value.clone();
        replace_node(&mut replaced, 3, json!("x"));
        assert_eq!(replaced, json!({ "a": [1, "x"], "b": null }));
        let mut replaced = value;
        replace_node(&mut replaced, 5, json!(0));
        assert_eq!(replaced, json!(0));
    }

    #[test]
    fn floats_are_canonical() {
        assert_eq!(f32_json(0.1), json!(0.1));
        assert_eq!(f32_json(f32::NAN), json!("NaN"));
        assert_eq!(float_json(f64::NEG_INFINITY), json!("-Infinity"));
    }
}
