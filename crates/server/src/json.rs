//! Vow's plain JSON encoding of component values (Golem's value encoding, without
//! the type annotation of [`crate::typed`]), typed by WIT signatures.
//!
//! JSON alone cannot say whether `3` is a `u8` or an `f64`, or whether
//! `"read"` is a string or an enum case, so decoding needs the parameter's
//! [`Type`]. Encoding needs none: every [`Val`] carries enough to print it.
//!
//! | WIT | JSON |
//! |---|---|
//! | `bool` | `true` |
//! | integers | numbers (`u64`/`s64` also from decimal strings) |
//! | `f32`, `f64` | numbers; `"NaN"`, `"Infinity"`, `"-Infinity"` for the rest |
//! | `char`, `string` | strings (a char is one character; its code point, a number, is accepted too) |
//! | `list`, `tuple` | arrays |
//! | `record` | object keyed by field name; `option` fields may be left out |
//! | `variant` | `{"case": payload}`, `{"case": null}` or `"case"` without payload |
//! | `enum` | `"case"` |
//! | `option` | `null` or the value |
//! | `result` | `{"ok": v}` / `{"err": v}` (`null` without payload) |
//! | `flags` | array of flag names |
//! | `map` | array of `[key, value]` pairs (an object too, for string keys) |
//!
//! Handles (resources, futures, streams) have no JSON form: they cannot be
//! decoded and are encoded as `null`.

use serde_json::{Map, Number, Value};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

use vow_runtime::wit_type;

/// Decodes `value` as a value of type `ty`.
///
/// The error names the path inside the value that is wrong, for example
/// `.approved: expected bool, got string`, or just the problem when the
/// value itself is wrong.
pub fn from_json(ty: &Type, value: &Value) -> Result<Val, String> {
    from_json_at(ty, value, String::new())
}

/// [`from_json`] for a value found at `path` (such as `params[1]`), which
/// prefixes the error's path.
pub(crate) fn from_json_at(ty: &Type, value: &Value, mut path: String) -> Result<Val, String> {
    decode(ty, value, &mut path).map_err(|message| {
        if path.is_empty() {
            message
        } else {
            format!("{path}: {message}")
        }
    })
}

/// Encodes a value; see the [module docs](self) for the encoding.
pub fn to_json(val: &Val) -> Value {
    encode(val, Flavor::Plain)
}

/// Encodes a value as the `value` of Golem's type-annotated form: as
/// [`to_json`], except that a `char` is its code point (a number) and an
/// `f32` is written as the `f64` it widens to, as Golem 1.1 writes them.
pub(crate) fn to_golem_json(val: &Val) -> Value {
    encode(val, Flavor::Golem)
}

/// Where the two encodings differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Plain,
    Golem,
}

fn encode(val: &Val, flavor: Flavor) -> Value {
    let each = |items: &[Val]| Value::Array(items.iter().map(|v| encode(v, flavor)).collect());
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => Value::from(*n),
        Val::U8(n) => Value::from(*n),
        Val::S16(n) => Value::from(*n),
        Val::U16(n) => Value::from(*n),
        Val::S32(n) => Value::from(*n),
        Val::U32(n) => Value::from(*n),
        Val::S64(n) => Value::from(*n),
        Val::U64(n) => Value::from(*n),
        Val::Float32(f) if flavor == Flavor::Golem => float(f64::from(*f)),
        // Through the shortest decimal form, so 0.1f32 prints as 0.1 and
        // not as the nearest f64 of its binary value.
        Val::Float32(f) => float(f.to_string().parse().unwrap_or(f64::from(*f))),
        Val::Float64(f) => float(*f),
        Val::Char(c) if flavor == Flavor::Golem => Value::from(u32::from(*c)),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => each(items),
        Val::Map(pairs) => Value::Array(
            pairs
                .iter()
                .map(|(k, v)| Value::Array(vec![encode(k, flavor), encode(v, flavor)]))
                .collect(),
        ),
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), encode(v, flavor)))
                .collect(),
        ),
        Val::Variant(case, payload) => single(case, payload.as_deref(), flavor),
        Val::Enum(case) => Value::String(case.clone()),
        Val::Option(v) => v.as_deref().map_or(Value::Null, |v| encode(v, flavor)),
        Val::Result(Ok(v)) => single("ok", v.as_deref(), flavor),
        Val::Result(Err(v)) => single("err", v.as_deref(), flavor),
        Val::Flags(names) => Value::Array(names.iter().cloned().map(Value::String).collect()),
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => Value::Null,
    }
}

/// `{"name": payload}`, with `null` for no payload.
fn single(name: &str, payload: Option<&Val>, flavor: Flavor) -> Value {
    let mut object = Map::new();
    object.insert(
        name.to_owned(),
        payload.map_or(Value::Null, |v| encode(v, flavor)),
    );
    Value::Object(object)
}

fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// What a JSON value is, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Decodes `value`; on error, `path` is left pointing at the culprit.
fn decode(ty: &Type, value: &Value, path: &mut String) -> Result<Val, String> {
    let expected = || format!("expected {}, got {}", wit_type(ty), kind(value));
    Ok(match ty {
        Type::Bool => Val::Bool(value.as_bool().ok_or_else(expected)?),
        Type::S8 => Val::S8(signed(ty, value)?),
        Type::U8 => Val::U8(unsigned(ty, value)?),
        Type::S16 => Val::S16(signed(ty, value)?),
        Type::U16 => Val::U16(unsigned(ty, value)?),
        Type::S32 => Val::S32(signed(ty, value)?),
        Type::U32 => Val::U32(unsigned(ty, value)?),
        Type::S64 => Val::S64(signed(ty, value)?),
        Type::U64 => Val::U64(unsigned(ty, value)?),
        Type::Float32 => {
            // Narrowing rounds to the nearest f32, but must not overflow.
            let wide = decode_float(ty, value)?;
            let narrow = wide as f32;
            if wide.is_finite() && !narrow.is_finite() {
                return Err(format!("expected f32, got {value} (out of range)"));
            }
            Val::Float32(narrow)
        }
        Type::Float64 => Val::Float64(decode_float(ty, value)?),
        // One character, or (Golem's form) its code point.
        Type::Char => match value {
            Value::Number(n) => {
                let c = n.as_u64().and_then(|n| u32::try_from(n).ok());
                Val::Char(
                    c.and_then(char::from_u32)
                        .ok_or_else(|| format!("expected a Unicode code point (char), got {n}"))?,
                )
            }
            _ => {
                let text = value.as_str().ok_or_else(expected)?;
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Val::Char(c),
                    _ => return Err(format!("expected one character, got {text:?}")),
                }
            }
        },
        Type::String => Val::String(value.as_str().ok_or_else(expected)?.to_owned()),
        Type::List(list) => {
            let items = value.as_array().ok_or_else(expected)?;
            Val::List(elements(&list.ty(), items, path)?)
        }
        Type::FixedLengthList(list) => {
            let items = value.as_array().ok_or_else(expected)?;
            if items.len() != list.len() as usize {
                return Err(format!(
                    "expected {} elements, got {}",
                    list.len(),
                    items.len()
                ));
            }
            Val::FixedLengthList(elements(&list.ty(), items, path)?)
        }
        Type::Tuple(tuple) => {
            let items = value.as_array().ok_or_else(expected)?;
            let types: Vec<Type> = tuple.types().collect();
            if types.len() != items.len() {
                return Err(format!(
                    "expected {} elements, got {}",
                    types.len(),
                    items.len()
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (t, item)) in types.iter().zip(items).enumerate() {
                out.push(step(path, &format!("[{i}]"), |p| decode(t, item, p))?);
            }
            Val::Tuple(out)
        }
        Type::Record(record) => {
            let object = value.as_object().ok_or_else(expected)?;
            let mut fields = Vec::with_capacity(record.fields().len());
            for field in record.fields() {
                let val = match (object.get(field.name), &field.ty) {
                    (Some(v), t) => step(path, &format!(".{}", field.name), |p| decode(t, v, p))?,
                    (None, Type::Option(_)) => Val::Option(None),
                    (None, _) => return Err(format!("missing field {:?}", field.name)),
                };
                fields.push((field.name.to_owned(), val));
            }
            if let Some(extra) = object
                .keys()
                .find(|k| !record.fields().any(|f| f.name == k.as_str()))
            {
                return Err(format!("unknown field {extra:?}"));
            }
            Val::Record(fields)
        }
        Type::Variant(variant) => {
            let (name, payload) = case_of(value).ok_or_else(expected)?;
            let Some(case) = variant.cases().find(|c| c.name == name) else {
                let names: Vec<&str> = variant.cases().map(|c| c.name).collect();
                return Err(format!(
                    "unknown case {name:?} (expected one of {})",
                    names.join(", ")
                ));
            };
            let payload = decode_payload(case.ty.as_ref(), name, payload, path)?;
            Val::Variant(name.to_owned(), payload)
        }
        Type::Enum(e) => {
            let name = value.as_str().ok_or_else(expected)?;
            if !e.names().any(|n| n == name) {
                let names: Vec<&str> = e.names().collect();
                return Err(format!(
                    "unknown case {name:?} (expected one of {})",
                    names.join(", ")
                ));
            }
            Val::Enum(name.to_owned())
        }
        Type::Option(option) => match value {
            Value::Null => Val::Option(None),
            v => Val::Option(Some(Box::new(decode(&option.ty(), v, path)?))),
        },
        Type::Result(result) => {
            let (name, payload) = case_of(value).ok_or_else(expected)?;
            let (ok, ty) = match name {
                "ok" => (true, result.ok()),
                "err" => (false, result.err()),
                other => return Err(format!("expected \"ok\" or \"err\", got {other:?}")),
            };
            let payload = decode_payload(ty.as_ref(), name, payload, path)?;
            Val::Result(if ok { Ok(payload) } else { Err(payload) })
        }
        Type::Flags(flags) => {
            let items = value.as_array().ok_or_else(expected)?;
            let mut names = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let name = item.as_str().filter(|n| flags.names().any(|f| f == *n));
                match name {
                    Some(name) => names.push(name.to_owned()),
                    None => {
                        path.push_str(&format!("[{i}]"));
                        let known: Vec<&str> = flags.names().collect();
                        return Err(format!(
                            "expected one of the flags {}, got {item}",
                            known.join(", ")
                        ));
                    }
                }
            }
            Val::Flags(names)
        }
        Type::Map(map) => Val::Map(decode_map(&map.key(), &map.value(), value, path)?),
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(format!("{} values cannot be passed as JSON", wit_type(ty)));
        }
    })
}

/// Runs `f` with `step` appended to the path; keeps it appended on error.
fn step<T>(
    path: &mut String,
    step: &str,
    f: impl FnOnce(&mut String) -> Result<T, String>,
) -> Result<T, String> {
    let len = path.len();
    path.push_str(step);
    let result = f(path)?;
    path.truncate(len);
    Ok(result)
}

fn elements(ty: &Type, items: &[Value], path: &mut String) -> Result<Vec<Val>, String> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(step(path, &format!("[{i}]"), |p| decode(ty, item, p))?);
    }
    Ok(out)
}

/// The case name and payload of `"case"` or `{"case": payload}`.
fn case_of(value: &Value) -> Option<(&str, Option<&Value>)> {
    match value {
        Value::String(name) => Some((name, None)),
        Value::Object(object) if object.len() == 1 => {
            object.iter().next().map(|(k, v)| (k.as_str(), Some(v)))
        }
        _ => None,
    }
}

/// The payload of case `name`: `payload` is `None` when the case was given
/// as a bare string, and then there is no `.name` in the path.
fn decode_payload(
    ty: Option<&Type>,
    name: &str,
    payload: Option<&Value>,
    path: &mut String,
) -> Result<Option<Box<Val>>, String> {
    match (ty, payload) {
        (None, None) => Ok(None),
        (Some(t), None) => Err(format!(
            "case {name:?} needs a payload of type {}",
            wit_type(t)
        )),
        (ty, Some(v)) => step(path, &format!(".{name}"), |p| match (ty, v) {
            (None, Value::Null) => Ok(None),
            (None, v) => Err(format!("expected no payload, got {}", kind(v))),
            (Some(t), v) => Ok(Some(Box::new(decode(t, v, p)?))),
        }),
    }
}

fn decode_map(
    key: &Type,
    value_ty: &Type,
    value: &Value,
    path: &mut String,
) -> Result<Vec<(Val, Val)>, String> {
    let mut out = Vec::new();
    match value {
        Value::Object(object) if matches!(key, Type::String) => {
            for (k, v) in object {
                let v = step(path, &format!(".{k}"), |p| decode(value_ty, v, p))?;
                out.push((Val::String(k.clone()), v));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let pair = match item.as_array().map(Vec::as_slice) {
                    Some([k, v]) => (k, v),
                    _ => {
                        path.push_str(&format!("[{i}]"));
                        return Err(format!("expected a [key, value] pair, got {}", kind(item)));
                    }
                };
                let k = step(path, &format!("[{i}][0]"), |p| decode(key, pair.0, p))?;
                let v = step(path, &format!("[{i}][1]"), |p| decode(value_ty, pair.1, p))?;
                out.push((k, v));
            }
        }
        other => {
            return Err(format!(
                "expected an array of [key, value] pairs, got {}",
                kind(other)
            ));
        }
    }
    Ok(out)
}

fn decode_float(ty: &Type, value: &Value) -> Result<f64, String> {
    match value {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("expected {}, got {n}", wit_type(ty))),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(format!("expected {}, got string {s:?}", wit_type(ty))),
        },
        other => Err(format!("expected {}, got {}", wit_type(ty), kind(other))),
    }
}

/// An integer from a JSON number (or, for 64-bit types, a decimal string).
fn integer<T>(
    ty: &Type,
    value: &Value,
    from_number: impl Fn(&Number) -> Option<T>,
) -> Result<T, String>
where
    T: TryFrom<i128>,
{
    let wit = wit_type(ty);
    let wide = matches!(ty, Type::S64 | Type::U64);
    match value {
        Value::Number(n) => from_number(n).ok_or_else(|| format!("expected {wit}, got {n}")),
        Value::String(s) if wide => decimal(s)
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| format!("expected {wit}, got string {s:?}")),
        other => Err(format!("expected {wit}, got {}", kind(other))),
    }
}

/// A decimal integer as the payload checker of `vow-payload-type` reads
/// one: an optional `-` and digits, so `"-0"` is a `u64` and `"+1"` is
/// not (Rust's `parse` says the opposite of both).
fn decimal(text: &str) -> Option<i128> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let is_decimal = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    is_decimal.then(|| text.parse().ok()).flatten()
}

fn signed<T: TryFrom<i64> + TryFrom<i128>>(ty: &Type, value: &Value) -> Result<T, String> {
    integer(ty, value, |n| n.as_i64().and_then(|i| T::try_from(i).ok()))
}

fn unsigned<T: TryFrom<u64> + TryFrom<i128>>(ty: &Type, value: &Value) -> Result<T, String> {
    integer(ty, value, |n| n.as_u64().and_then(|i| T::try_from(i).ok()))
}
