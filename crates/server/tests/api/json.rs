//! Golem's JSON encoding for every kind of WIT type, through
//! `vow_server::json`. The types come from a component that only declares
//! them (it imports one function whose parameters use them), so every case
//! of the encoding is covered without a guest that exports each type.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use vow_runtime::{Type, Val};
use vow_server::json::{from_json, to_json};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

const TYPES: &str = r#"
(component
  (type $perm' (flags "read" "write" "exec"))
  (import "perm" (type $perm (eq $perm')))
  (type $color' (enum "red" "green"))
  (import "color" (type $color (eq $color')))
  (type $shape' (variant (case "empty") (case "circle" u32) (case "label" string)))
  (import "shape" (type $shape (eq $shape')))
  (type $point' (record (field "x" s32) (field "y" s32) (field "tag" (option string))))
  (import "point" (type $point (eq $point')))
  (import "f" (func
    (param "b" bool) (param "s8" s8) (param "u8" u8) (param "s16" s16) (param "u16" u16)
    (param "s32" s32) (param "u32" u32) (param "s64" s64) (param "u64" u64)
    (param "f32" float32) (param "f64" float64) (param "c" char) (param "s" string)
    (param "list" (list char)) (param "tuple" (tuple u8 string))
    (param "perm" $perm) (param "color" $color) (param "shape" $shape) (param "point" $point)
    (param "opt" (option (list $point))) (param "res" (result u32 (error string)))
    (param "unit" (result))
  ))
)
"#;

/// The parameter types of `f`, by name.
fn types() -> Result<HashMap<String, Type>> {
    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, TYPES)?;
    let ty = component.component_type();
    let (_, item) = ty
        .imports(&engine)
        .find(|(name, _)| *name == "f")
        .context("no import f")?;
    let ComponentItem::ComponentFunc(func) = item.ty else {
        anyhow::bail!("f is not a function");
    };
    Ok(func.params().map(|(n, t)| (n.to_owned(), t)).collect())
}

/// Decodes and encodes again.
fn round_trip(ty: &Type, value: &Value) -> Result<Value, String> {
    from_json(ty, value).map(|v| to_json(&v))
}

#[test]
fn every_kind_of_value_round_trips() -> Result<()> {
    let types = types()?;
    let cases = [
        ("b", json!(true)),
        ("s8", json!(-128)),
        ("u8", json!(255)),
        ("s16", json!(-300)),
        ("u16", json!(65535)),
        ("s32", json!(-2_147_483_648i64)),
        ("u32", json!(4_294_967_295u64)),
        ("s64", json!(i64::MIN)),
        ("u64", json!(u64::MAX)),
        ("f32", json!(0.1)),
        ("f64", json!(-2.5e300)),
        ("f64", json!("NaN")),
        ("f32", json!("-Infinity")),
        ("c", json!("✓")),
        ("s", json!("hello")),
        ("list", json!(["a", "b"])),
        ("tuple", json!([7, "seven"])),
        ("perm", json!(["read", "exec"])),
        ("perm", json!([])),
        ("color", json!("green")),
        ("shape", json!({ "empty": null })),
        ("shape", json!({ "circle": 3 })),
        ("shape", json!({ "label": "hi" })),
        ("point", json!({ "x": 1, "y": -1, "tag": "p" })),
        ("point", json!({ "x": 1, "y": -1, "tag": null })),
        ("opt", json!(null)),
        ("opt", json!([{ "x": 0, "y": 0, "tag": null }])),
        ("res", json!({ "ok": 1 })),
        ("res", json!({ "err": "bad" })),
        ("unit", json!({ "ok": null })),
        ("unit", json!({ "err": null })),
    ];
    for (name, value) in cases {
        let ty = &types[name];
        assert_eq!(round_trip(ty, &value), Ok(value.clone()), "{name}: {value}");
    }
    Ok(())
}

#[test]
fn lenient_inputs_decode_to_the_canonical_encoding() -> Result<()> {
    let types = types()?;
    let cases = [
        ("s64", json!("-42"), json!(-42)),
        ("u64", json!("18446744073709551615"), json!(u64::MAX)),
        ("shape", json!("empty"), json!({ "empty": null })),
        ("unit", json!("ok"), json!({ "ok": null })),
        (
            "point",
            json!({ "x": 1, "y": 2 }),
            json!({ "x": 1, "y": 2, "tag": null }),
        ),
        ("f64", json!(1), json!(1.0)),
    ];
    for (name, given, canonical) in cases {
        assert_eq!(
            round_trip(&types[name], &given),
            Ok(canonical),
            "{name}: {given}"
        );
    }
    assert!(matches!(from_json(&types["f32"], &json!(0.1)), Ok(Val::Float32(f)) if f == 0.1f32));
    Ok(())
}

#[test]
fn errors_name_the_path_and_the_problem() -> Result<()> {
    let types = types()?;
    let cases = [
        ("b", json!("yes"), "expected bool, got string"),
        ("u8", json!(256), "expected u8, got 256"),
        ("u8", json!(-1), "expected u8, got -1"),
        ("s32", json!(1.5), "expected s32, got 1.5"),
        ("u32", json!("7"), "expected u32, got string"),
        ("s64", json!("x"), "expected s64, got string \"x\""),
        ("f64", json!("fast"), "expected f64, got string \"fast\""),
        (
            "f32",
            json!(1e300),
            "expected f32, got 1e+300 (out of range)",
        ),
        ("c", json!("ab"), "expected one character, got \"ab\""),
        ("list", json!(["a", true]), "[1]: expected char, got bool"),
        (
            "list",
            json!(["a", 55296]),
            "[1]: expected a Unicode code point (char), got 55296",
        ),
        ("tuple", json!([1]), "expected 2 elements, got 1"),
        ("tuple", json!([1, 2]), "[1]: expected string, got number"),
        (
            "perm",
            json!(["read", "fly"]),
            "[1]: expected one of the flags read, write, exec, got \"fly\"",
        ),
        (
            "color",
            json!("blue"),
            "unknown case \"blue\" (expected one of red, green)",
        ),
        (
            "shape",
            json!({ "circle": "big" }),
            ".circle: expected u32, got string",
        ),
        (
            "shape",
            json!({ "circle": null }),
            ".circle: expected u32, got null",
        ),
        (
            "shape",
            json!("circle"),
            "case \"circle\" needs a payload of type u32",
        ),
        (
            "shape",
            json!({ "empty": 1 }),
            ".empty: expected no payload, got number",
        ),
        (
            "shape",
            json!({ "a": 1, "b": 2 }),
            "expected variant { empty, circle(u32), label(string) }, got object",
        ),
        ("point", json!({ "x": 1 }), "missing field \"y\""),
        (
            "point",
            json!({ "x": 1, "y": 2, "z": 3 }),
            "unknown field \"z\"",
        ),
        (
            "point",
            json!({ "x": true, "y": 2 }),
            ".x: expected s32, got bool",
        ),
        (
            "opt",
            json!([{ "x": 0, "y": "0" }]),
            "[0].y: expected s32, got string",
        ),
        (
            "res",
            json!({ "maybe": 1 }),
            "expected \"ok\" or \"err\", got \"maybe\"",
        ),
        (
            "res",
            json!({ "err": 5 }),
            ".err: expected string, got number",
        ),
    ];
    for (name, value, expected) in cases {
        assert_eq!(
            from_json(&types[name], &value).map(|_| ()),
            Err(expected.to_owned()),
            "{name}: {value}"
        );
    }
    Ok(())
}

#[test]
fn values_without_a_json_form_are_null() {
    assert_eq!(to_json(&Val::Option(None)), json!(null));
    assert_eq!(to_json(&Val::Float32(f32::INFINITY)), json!("Infinity"));
    assert_eq!(
        to_json(&Val::Map(vec![(Val::String("k".into()), Val::U8(1))])),
        json!([["k", 1]])
    );
}
