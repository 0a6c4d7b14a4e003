//! Proptest strategies for WIT types, their values and arbitrary JSON.

use proptest::collection::{btree_set, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value};

use crate::{KEYWORD_NAMES, PayloadType, f32_json, float_json};

/// Proptest's configuration with `cases` cases, unless the `PROPTEST_CASES`
/// environment variable asks for another number: the defaults keep
/// `cargo test` quick, and a longer run is `PROPTEST_CASES=100000 cargo
/// test ...`.
pub fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        // Next to the test's source (`properties.proptest-regressions`):
        // proptest's default only finds crates' `src/` folders.
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

/// A WIT name: kebab-case words, sometimes one spelled like a keyword.
pub fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9]{0,5}(-[a-z][a-z0-9]{0,3}){0,2}",
        1 => select(KEYWORD_NAMES).prop_map(str::to_owned),
    ]
}

/// Between `min` and `max` distinct names, in a generated order.
pub fn names(min: usize, max: usize) -> impl Strategy<Value = Vec<String>> {
    btree_set(name(), min..=max).prop_flat_map(|set| Just(set.into_iter().collect()).prop_shuffle())
}

/// A type without nested types.
pub fn leaf_type() -> impl Strategy<Value = PayloadType> {
    prop_oneof![
        Just(PayloadType::Bool),
        Just(PayloadType::U8),
        Just(PayloadType::U16),
        Just(PayloadType::U32),
        Just(PayloadType::U64),
        Just(PayloadType::S8),
        Just(PayloadType::S16),
        Just(PayloadType::S32),
        Just(PayloadType::S64),
        Just(PayloadType::F32),
        Just(PayloadType::F64),
        Just(PayloadType::Char),
        Just(PayloadType::String),
        names(1, 5).prop_map(PayloadType::Enum),
        names(1, 6).prop_map(PayloadType::Flags),
    ]
}

/// A WIT value type, nested up to 4 levels deep.
pub fn payload_type() -> impl Strategy<Value = PayloadType> {
    leaf_type().prop_recursive(4, 32, 4, |inner| {
        let boxed = || inner.clone().prop_map(Box::new);
        prop_oneof![
            boxed().prop_map(PayloadType::List),
            boxed().prop_map(PayloadType::Option),
            (option::of(boxed()), option::of(boxed()))
                .prop_map(|(ok, err)| PayloadType::Result { ok, err }),
            vec(inner.clone(), 1..4).prop_map(PayloadType::Tuple),
            fields(inner.clone()).prop_map(PayloadType::Record),
            fields(option::of(inner.clone())).prop_map(PayloadType::Variant),
        ]
    })
}

/// One to four distinct names, each with a `T`.
fn fields<T: std::fmt::Debug + Clone>(
    item: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = Vec<(String, T)>> {
    names(1, 4).prop_flat_map(move |names| {
        vec(item.clone(), names.len())
            .prop_map(move |items| names.iter().cloned().zip(items).collect())
    })
}

/// A value of `ty` in its canonical plain JSON form (see the
/// [crate docs](crate) for the one shape left out).
pub fn value(ty: &PayloadType) -> BoxedStrategy<Value> {
    match ty {
        PayloadType::Bool => any::<bool>().prop_map(Value::from).boxed(),
        PayloadType::U8 => any::<u8>().prop_map(Value::from).boxed(),
        PayloadType::U16 => any::<u16>().prop_map(Value::from).boxed(),
        PayloadType::U32 => any::<u32>().prop_map(Value::from).boxed(),
        PayloadType::U64 => any::<u64>().prop_map(Value::from).boxed(),
        PayloadType::S8 => any::<i8>().prop_map(Value::from).boxed(),
        PayloadType::S16 => any::<i16>().prop_map(Value::from).boxed(),
        PayloadType::S32 => any::<i32>().prop_map(Value::from).boxed(),
        PayloadType::S64 => any::<i64>().prop_map(Value::from).boxed(),
        PayloadType::F32 => any::<f32>().prop_map(f32_json).boxed(),
        PayloadType::F64 => any::<f64>().prop_map(float_json).boxed(),
        PayloadType::Char => any::<char>()
            .prop_map(|c| Value::from(c.to_string()))
            .boxed(),
        PayloadType::String => any::<String>().prop_map(Value::from).boxed(),
        PayloadType::List(inner) => vec(value(inner), 0..4).prop_map(Value::Array).boxed(),
        PayloadType::Option(inner) => prop_oneof![
            1 => Just(Value::Null),
            3 => value(inner).prop_filter("`null` reads back as `none`", |v| !v.is_null()),
        ]
        .boxed(),
        PayloadType::Result { ok, err } => {
            prop_oneof![payload("ok", ok.as_deref()), payload("err", err.as_deref()),].boxed()
        }
        PayloadType::Tuple(items) => items
            .iter()
            .map(value)
            .collect::<Vec<_>>()
            .prop_map(Value::Array)
            .boxed(),
        PayloadType::Record(fields) => {
            let names: Vec<String> = fields.iter().map(|(name, _)| name.clone()).collect();
            fields
                .iter()
                .map(|(_, ty)| value(ty))
                .collect::<Vec<_>>()
                .prop_map(move |values| Value::Object(names.iter().cloned().zip(values).collect()))
                .boxed()
        }
        PayloadType::Variant(cases) => {
            let cases: Vec<BoxedStrategy<Value>> = cases
                .iter()
                .map(|(name, ty)| payload(name, ty.as_ref()))
                .collect();
            proptest::strategy::Union::new(cases).boxed()
        }
        PayloadType::Enum(cases) => select(cases.clone()).prop_map(Value::from).boxed(),
        PayloadType::Flags(names) => {
            let names = names.clone();
            vec(any::<bool>(), names.len())
                .prop_map(move |set| {
                    let set = names.iter().zip(set).filter(|(_, on)| *on);
                    Value::Array(set.map(|(name, _)| Value::from(name.as_str())).collect())
                })
                .boxed()
        }
    }
}

/// `{"case": payload}`, with `null` for a case without payload.
fn payload(case: &str, ty: Option<&PayloadType>) -> BoxedStrategy<Value> {
    let case = case.to_owned();
    match ty {
        None => Just(single(case, Value::Null)).boxed(),
        Some(ty) => value(ty).prop_map(move |v| single(case.clone(), v)).boxed(),
    }
}

fn single(case: String, payload: Value) -> Value {
    let mut object = Map::new();
    object.insert(case, payload);
    Value::Object(object)
}

/// Any JSON, biased towards what the decoders look for: names, case
/// names, float spellings, integers at the edges of their ranges,
/// one-key objects.
pub fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(&[0i64, -1, 127, 128, 255, 256, -129, 65536, 1 << 32][..]).prop_map(Value::from),
        any::<f64>().prop_map(float_json),
        any::<String>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((key(), inner.clone()), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            (key(), inner).prop_map(|(k, v)| single(k, v)),
        ]
    })
}

/// Strings a decoder gives a meaning to.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        select(
            &[
                "NaN",
                "Infinity",
                "-Infinity",
                "ok",
                "err",
                "",
                "a",
                "18446744073709551616",
                "-9223372036854775809",
                "1e3"
            ][..]
        )
        .prop_map(str::to_owned),
        name(),
        "-?[0-9]{1,21}",
    ]
}

/// An object key: usually a name.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => name(), 1 => text(), 1 => any::<String>()]
}
