//! Golem 1.1's type-annotated values: `{"typ": <type>, "value": <json>}`.
//!
//! Golem's clients send each argument with its type and get the result the
//! same way. The type is Golem's `AnalysedType`, a JSON object tagged by
//! `"type"`:
//!
//! | WIT | `typ` |
//! |---|---|
//! | `bool`, `u8`…`u64`, `s8`…`s64` | `{"type":"Bool"}`, `{"type":"U8"}`, …, `{"type":"S64"}` |
//! | `f32`, `f64`, `char`, `string` | `{"type":"F32"}`, `{"type":"F64"}`, `{"type":"Chr"}`, `{"type":"Str"}` |
//! | `list<T>` | `{"type":"List","inner":T}` |
//! | `tuple<…>` | `{"type":"Tuple","items":[…]}` |
//! | `record` | `{"type":"Record","fields":[{"name":…,"typ":…}]}` |
//! | `variant` | `{"type":"Variant","cases":[{"name":…,"typ":T}]}` (no `typ` without payload) |
//! | `enum` | `{"type":"Enum","cases":[…]}` |
//! | `flags` | `{"type":"Flags","names":[…]}` |
//! | `option<T>` | `{"type":"Option","inner":T}` |
//! | `result<O, E>` | `{"type":"Result","ok":O,"err":E}` (each left out when absent) |
//!
//! The `value` is Golem's JSON encoding (see [`crate::json`]); it differs
//! from Vow's plain JSON in that a `char` is its code point and an `f32` is
//! written as the `f64` it widens to. Handles (resources) have no
//! type-annotated form in Vow: a function that takes or returns one is
//! refused with a message saying so.
//!
//! A result is a tuple of the function's results (one or none), as Golem
//! answers for functions with unnamed results, which is every function of a
//! component built from today's WIT.

use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type as SchemaType};
use utoipa::{PartialSchema, ToSchema};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

use vow_runtime::wit_type;

use crate::json::{from_json_at, to_golem_json};

/// The schema of a type-annotated value, for the OpenAPI document (the
/// server reads and writes them as JSON values, checked by [`is_typed`]).
pub(crate) struct TypeAnnotatedValue;

impl PartialSchema for TypeAnnotatedValue {
    fn schema() -> RefOr<Schema> {
        let tag = ObjectBuilder::new().schema_type(SchemaType::String);
        let typ = ObjectBuilder::new()
            .schema_type(SchemaType::Object)
            .property("type", tag)
            .required("type")
            .description(Some("Golem's AnalysedType, tagged by `type`"));
        let value = ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .description(Some("The value in Golem's JSON encoding"));
        ObjectBuilder::new()
            .schema_type(SchemaType::Object)
            .property("typ", typ)
            .property("value", value)
            .required("typ")
            .required("value")
            .into()
    }
}

impl ToSchema for TypeAnnotatedValue {}

/// The `AnalysedType` of `ty`, as Golem 1.1's document defines it. Golem's
/// server writes a variant case without payload as `"typ": null` and a
/// result without `ok` or `err` type with `null` there; its document
/// allows those keys to be missing but not `null`, and its clients read
/// both, so Vow leaves them out.
///
/// Fails for the types that have none in Vow (handles, futures, streams,
/// maps, fixed-length lists), naming the type.
pub fn analysed_type(ty: &Type) -> Result<Value, String> {
    let tag = |name: &str| json!({ "type": name });
    Ok(match ty {
        Type::Bool => tag("Bool"),
        Type::S8 => tag("S8"),
        Type::U8 => tag("U8"),
        Type::S16 => tag("S16"),
        Type::U16 => tag("U16"),
        Type::S32 => tag("S32"),
        Type::U32 => tag("U32"),
        Type::S64 => tag("S64"),
        Type::U64 => tag("U64"),
        Type::Float32 => tag("F32"),
        Type::Float64 => tag("F64"),
        Type::Char => tag("Chr"),
        Type::String => tag("Str"),
        Type::List(list) => json!({ "type": "List", "inner": analysed_type(&list.ty())? }),
        Type::Tuple(tuple) => json!({
            "type": "Tuple",
            "items": tuple.types().map(|t| analysed_type(&t)).collect::<Result<Vec<_>, _>>()?,
        }),
        Type::Record(record) => json!({
            "type": "Record",
            "fields": record
                .fields()
                .map(|f| Ok(json!({ "name": f.name, "typ": analysed_type(&f.ty)? })))
                .collect::<Result<Vec<_>, String>>()?,
        }),
        Type::Variant(variant) => json!({
            "type": "Variant",
            "cases": variant
                .cases()
                .map(|c| {
                    let mut case = json!({ "name": c.name });
                    if let Some(ty) = &c.ty {
                        case["typ"] = analysed_type(ty)?;
                    }
                    Ok(case)
                })
                .collect::<Result<Vec<_>, String>>()?,
        }),
        Type::Enum(e) => json!({ "type": "Enum", "cases": e.names().collect::<Vec<_>>() }),
        Type::Flags(flags) => {
            json!({ "type": "Flags", "names": flags.names().collect::<Vec<_>>() })
        }
        Type::Option(option) => json!({ "type": "Option", "inner": analysed_type(&option.ty())? }),
        Type::Result(result) => {
            let mut typ = tag("Result");
            if let Some(ok) = result.ok() {
                typ["ok"] = analysed_type(&ok)?;
            }
            if let Some(err) = result.err() {
                typ["err"] = analysed_type(&err)?;
            }
            typ
        }
        Type::Own(_)
        | Type::Borrow(_)
        | Type::Future(_)
        | Type::Stream(_)
        | Type::ErrorContext
        | Type::Map(_)
        | Type::FixedLengthList(_) => {
            return Err(format!(
                "{} has no type-annotated form in Vow (pass it as plain JSON or WAVE where it has one)",
                wit_type(ty)
            ));
        }
    })
}

/// Whether `value` is in the type-annotated form: an object with exactly
/// the keys `typ` (an object) and `value`.
pub(crate) fn is_typed(value: &Value) -> bool {
    value.as_object().is_some_and(|o| {
        o.len() == 2 && o.get("typ").is_some_and(Value::is_object) && o.contains_key("value")
    })
}

/// Decodes a type-annotated argument for a parameter of type `ty`; `path`
/// (such as `params[0]`) prefixes the error.
pub(crate) fn from_typed(ty: &Type, typed: &Value, path: String) -> Result<Val, String> {
    let expected = analysed_type(ty).map_err(|e| format!("{path}: {e}"))?;
    let given = typed.get("typ").cloned().unwrap_or(Value::Null);
    if normalized(&given) != normalized(&expected) {
        return Err(format!(
            "{path}: the value is annotated with type {given} but the parameter is {} ({expected})",
            wit_type(ty)
        ));
    }
    from_json_at(ty, typed.get("value").unwrap_or(&Value::Null), path)
}

/// The type-annotated result of a function whose results have the
/// `AnalysedType`s `types`: `{"typ": {"type": "Tuple", ...}, "value": [...]}`.
pub(crate) fn typed_result(types: Vec<Value>, values: &[Val]) -> Value {
    json!({
        "typ": { "type": "Tuple", "items": types },
        "value": values.iter().map(to_golem_json).collect::<Vec<_>>(),
    })
}

/// `typ` with the optional parts Golem may leave out (a result's `ok` or
/// `err`, a variant case's `typ`) written as `null`, so that two spellings
/// of one type compare equal.
fn normalized(typ: &Value) -> Value {
    match typ {
        Value::Object(object) => {
            let mut out: Map<String, Value> = object
                .iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect();
            match object.get("type").and_then(Value::as_str) {
                Some("Result") => {
                    out.entry("ok").or_insert(Value::Null);
                    out.entry("err").or_insert(Value::Null);
                }
                Some("Variant") => {
                    if let Some(Value::Array(cases)) = out.get_mut("cases") {
                        for case in cases {
                            if let Value::Object(case) = case {
                                case.entry("typ").or_insert(Value::Null);
                            }
                        }
                    }
                }
                _ => {}
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}
