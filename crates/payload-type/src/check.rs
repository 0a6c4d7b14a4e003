//! Checking JSON values against a [`PayloadType`], behind
//! [`PayloadType::check`].
//!
//! Recursion follows the type, one level per nested type, and stops at
//! [`MAX_DEPTH`]; a value can only go as deep as its type, so neither a
//! parsed type nor a hostile value can exhaust the stack.

use serde_json::{Map, Number, Value};

use crate::{MAX_DEPTH, PayloadType, ValueError};

/// How much of a string from the value an error message quotes, in
/// characters.
const QUOTE_LEN: usize = 40;

/// Types whose text is longer than this are abbreviated in error messages.
const TYPE_TEXT_LEN: usize = 60;

/// See [`PayloadType::check`].
pub(crate) fn check(ty: &PayloadType, value: &Value) -> Result<Value, ValueError> {
    let mut path = String::new();
    check_at(ty, value, 0, &mut path).map_err(|message| {
        // Paths are built with a `.` before each name; none leads.
        let path = path.strip_prefix('.').unwrap_or(&path).to_owned();
        ValueError::new(path, message)
    })
}

/// Checks `value`, nested `depth` levels deep, against `ty`. On error,
/// `path` is left naming the culprit and the message is returned.
fn check_at(
    ty: &PayloadType,
    value: &Value,
    depth: usize,
    path: &mut String,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("value nested more than {MAX_DEPTH} levels deep"));
    }
    let expected = || format!("expected {}, got {}", describe(ty), kind(value));
    match ty {
        PayloadType::Bool => match value {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            _ => Err(expected()),
        },
        PayloadType::U8 => integer(ty, value, u8::MIN.into(), u8::MAX.into()),
        PayloadType::U16 => integer(ty, value, u16::MIN.into(), u16::MAX.into()),
        PayloadType::U32 => integer(ty, value, u32::MIN.into(), u32::MAX.into()),
        PayloadType::U64 => integer(ty, value, u64::MIN.into(), u64::MAX.into()),
        PayloadType::S8 => integer(ty, value, i8::MIN.into(), i8::MAX.into()),
        PayloadType::S16 => integer(ty, value, i16::MIN.into(), i16::MAX.into()),
        PayloadType::S32 => integer(ty, value, i32::MIN.into(), i32::MAX.into()),
        PayloadType::S64 => integer(ty, value, i64::MIN.into(), i64::MAX.into()),
        PayloadType::F32 => {
            let wide = float(ty, value)?;
            // Rounds to the nearest f32, which must not overflow.
            let narrow = wide as f32;
            if wide.is_finite() && !narrow.is_finite() {
                return Err(format!("expected f32, got {} (out of range)", show(value)));
            }
            // Through the shortest decimal that reads back as this f32,
            // so that 0.1 stays 0.1 and does not become the f64 nearest to
            // the f32 nearest to 0.1.
            Ok(float_value(
                narrow.to_string().parse().unwrap_or(f64::from(narrow)),
            ))
        }
        PayloadType::F64 => Ok(float_value(float(ty, value)?)),
        PayloadType::Char => match value {
            Value::String(text) => {
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Ok(Value::String(c.to_string())),
                    _ => Err(format!(
                        "expected char, got {} (not one character)",
                        show(value)
                    )),
                }
            }
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .and_then(char::from_u32)
                .map(|c| Value::String(c.to_string()))
                .ok_or_else(|| format!("expected char, got {n} (not a Unicode scalar value)")),
            _ => Err(expected()),
        },
        PayloadType::String => match value {
            Value::String(text) => Ok(Value::String(text.clone())),
            _ => Err(expected()),
        },
        PayloadType::List(inner) => {
            let items = value.as_array().ok_or_else(expected)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(step(path, &format!("[{i}]"), |path| {
                    check_at(inner, item, depth + 1, path)
                })?);
            }
            Ok(Value::Array(out))
        }
        PayloadType::Tuple(types) => {
            let items = value.as_array().ok_or_else(expected)?;
            if items.len() != types.len() {
                let count = match items.len() {
                    1 => "1 element".to_owned(),
                    n => format!("{n} elements"),
                };
                return Err(format!(
                    "expected {}, got an array of {count}",
                    describe(ty)
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (item_ty, item)) in types.iter().zip(items).enumerate() {
                out.push(step(path, &format!("[{i}]"), |path| {
                    check_at(item_ty, item, depth + 1, path)
                })?);
            }
            Ok(Value::Array(out))
        }
        PayloadType::Record(fields) => {
            let object = value.as_object().ok_or_else(expected)?;
            if let Some(unknown) = object
                .keys()
                .find(|key| !fields.iter().any(|(name, _)| name == *key))
            {
                path.push_str(&key_segment(unknown));
                let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
                return Err(format!(
                    "unknown field (expected one of: {})",
                    names.join(", ")
                ));
            }
            let mut out = Map::new();
            for (name, field_ty) in fields {
                let field = match (object.get(name), field_ty) {
                    (Some(field), _) => step(path, &format!(".{name}"), |path| {
                        check_at(field_ty, field, depth + 1, path)
                    })?,
                    (None, PayloadType::Option(_)) => Value::Null,
                    (None, _) => {
                        path.push('.');
                        path.push_str(name);
                        return Err(format!("missing field (expected {})", describe(field_ty)));
                    }
                };
                out.insert(name.clone(), field);
            }
            Ok(Value::Object(out))
        }
        PayloadType::Variant(cases) => {
            let (name, payload) = case_of(ty, value)?;
            let Some((name, case_ty)) = cases.iter().find(|(case, _)| case == name) else {
                let names: Vec<&str> = cases.iter().map(|(case, _)| case.as_str()).collect();
                return Err(unknown_case(name, &names));
            };
            let payload = check_payload(case_ty.as_ref(), name, payload, depth, path)?;
            Ok(single(name, payload))
        }
        PayloadType::Enum(cases) => {
            let name = value.as_str().ok_or_else(expected)?;
            if !cases.iter().any(|case| case == name) {
                let names: Vec<&str> = cases.iter().map(String::as_str).collect();
                return Err(unknown_case(name, &names));
            }
            Ok(Value::String(name.to_owned()))
        }
        PayloadType::Option(inner) => match value {
            Value::Null => Ok(Value::Null),
            _ => check_at(inner, value, depth + 1, path),
        },
        PayloadType::Result { ok, err } => {
            let (name, payload) = case_of(ty, value)?;
            let case_ty = match name {
                "ok" => ok,
                "err" => err,
                _ => return Err(unknown_case(name, &["ok", "err"])),
            };
            let payload = check_payload(case_ty.as_deref(), name, payload, depth, path)?;
            Ok(single(name, payload))
        }
        PayloadType::Flags(names) => {
            let items = value.as_array().ok_or_else(expected)?;
            let mut set = vec![false; names.len()];
            for (i, item) in items.iter().enumerate() {
                let found = match item {
                    Value::String(flag) => match names.iter().position(|name| name == flag) {
                        Some(index) => match set.get_mut(index) {
                            Some(seen) if !*seen => {
                                *seen = true;
                                Ok(())
                            }
                            _ => Err(format!("duplicate flag {}", quote(flag))),
                        },
                        None => Err(format!(
                            "unknown flag {} (expected one of: {})",
                            quote(flag),
                            names.join(", ")
                        )),
                    },
                    _ => Err(format!("expected flag name, got {}", kind(item))),
                };
                if let Err(message) = found {
                    path.push_str(&format!("[{i}]"));
                    return Err(message);
                }
            }
            Ok(Value::Array(
                names
                    .iter()
                    .zip(set)
                    .filter(|(_, set)| *set)
                    .map(|(name, _)| Value::String(name.clone()))
                    .collect(),
            ))
        }
    }
}

/// Runs `f` with `segment` appended to `path`, and leaves it appended on
/// error.
fn step<T>(
    path: &mut String,
    segment: &str,
    f: impl FnOnce(&mut String) -> Result<T, String>,
) -> Result<T, String> {
    let len = path.len();
    path.push_str(segment);
    let result = f(path)?;
    path.truncate(len);
    Ok(result)
}

/// The path segment of an object key: `.name` for a WIT name, `["key"]`
/// (JSON-quoted, shortened) for anything else.
fn key_segment(key: &str) -> String {
    if crate::parse::is_name(key) && key.chars().count() <= QUOTE_LEN {
        format!(".{key}")
    } else {
        format!("[{}]", quote(key))
    }
}

/// The case name and payload of a variant or result value: `"case"` (no
/// payload given) or `{"case": payload}`.
fn case_of<'v>(ty: &PayloadType, value: &'v Value) -> Result<(&'v str, Option<&'v Value>), String> {
    match value {
        Value::String(name) => Ok((name, None)),
        Value::Object(object) => {
            let mut entries = object.iter();
            match (entries.next(), entries.next()) {
                (Some((name, payload)), None) => Ok((name, Some(payload))),
                _ => Err(format!(
                    "expected {} (an object with one key, the case), got an object with {} keys",
                    describe(ty),
                    object.len()
                )),
            }
        }
        _ => Err(format!("expected {}, got {}", describe(ty), kind(value))),
    }
}

/// Checks the payload of case `name`, of type `ty` if it has one; the
/// payload is `None` for a bare case name.
fn check_payload(
    ty: Option<&PayloadType>,
    name: &str,
    payload: Option<&Value>,
    depth: usize,
    path: &mut String,
) -> Result<Value, String> {
    match (ty, payload) {
        (None, None | Some(Value::Null)) => Ok(Value::Null),
        (Some(ty), None) => Err(format!(
            "case {} needs a payload of type {}",
            quote(name),
            describe(ty)
        )),
        (None, Some(payload)) => {
            path.push('.');
            path.push_str(name);
            Err(format!(
                "expected null (case {} has no payload), got {}",
                quote(name),
                kind(payload)
            ))
        }
        (Some(ty), Some(payload)) => step(path, &format!(".{name}"), |path| {
            check_at(ty, payload, depth + 1, path)
        }),
    }
}

/// `{"name": payload}`.
fn single(name: &str, payload: Value) -> Value {
    let mut object = Map::new();
    object.insert(name.to_owned(), payload);
    Value::Object(object)
}

/// The message for a case `name` that is none of `names`.
fn unknown_case(name: &str, names: &[&str]) -> String {
    format!(
        "unknown case {} (expected one of: {})",
        quote(name),
        names.join(", ")
    )
}

/// An integer of type `ty`, between `min` and `max`: a JSON number, or for
/// 64-bit types also a decimal string.
fn integer(ty: &PayloadType, value: &Value, min: i128, max: i128) -> Result<Value, String> {
    let wide = matches!(ty, PayloadType::U64 | PayloadType::S64);
    let n: i128 = match value {
        Value::Number(n) => {
            if let Some(n) = n.as_u64() {
                n.into()
            } else if let Some(n) = n.as_i64() {
                n.into()
            } else {
                // A number with a fraction or an exponent (serde_json also
                // reads integers beyond 64 bits that way).
                let f = n.as_f64().unwrap_or(f64::NAN);
                let integral = f.is_finite() && f.fract() == 0.0;
                // The bounds are powers of two, exact as floats.
                let why = if integral && (f < min as f64 || f >= (max + 1) as f64) {
                    "out of range"
                } else if integral {
                    "write integers without a fraction or exponent"
                } else {
                    "not an integer"
                };
                return Err(format!("expected {ty}, got {n} ({why})"));
            }
        }
        Value::String(text) if wide && is_decimal(text) => {
            // Only overflow is left to fail.
            text.parse()
                .map_err(|_| format!("expected {ty}, got {} (out of range)", show(value)))?
        }
        Value::String(_) if wide => return Err(format!("expected {ty}, got {}", show(value))),
        _ => return Err(format!("expected {ty}, got {}", kind(value))),
    };
    let out_of_range = || format!("expected {ty}, got {} (out of range)", show(value));
    if n < min || n > max {
        return Err(out_of_range());
    }
    // Every range lies within those of u64 and i64.
    match (u64::try_from(n), i64::try_from(n)) {
        (Ok(n), _) => Ok(Value::from(n)),
        (_, Ok(n)) => Ok(Value::from(n)),
        _ => Err(out_of_range()),
    }
}

/// Whether `text` is a decimal integer: an optional `-` and digits.
fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A float of type `ty`: a JSON number or `"NaN"`, `"Infinity"`,
/// `"-Infinity"`.
fn float(ty: &PayloadType, value: &Value) -> Result<f64, String> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("expected {ty}, got {n}")),
        Value::String(text) => match text.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(format!("expected {ty}, got {}", show(value))),
        },
        _ => Err(format!("expected {ty}, got {}", kind(value))),
    }
}

/// A float as JSON: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn float_value(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".to_owned()),
        None if f > 0.0 => Value::String("Infinity".to_owned()),
        None => Value::String("-Infinity".to_owned()),
    }
}

/// What a JSON value is, in error messages.
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

/// A number or string from the value, as an error message quotes it; the
/// kind of anything else.
fn show(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(text) => quote(text),
        _ => kind(value).to_owned(),
    }
}

/// `text` as a JSON string, shortened to [`QUOTE_LEN`] characters (with
/// `…` after the closing quote if cut).
fn quote(text: &str) -> String {
    let (head, cut) = match text.char_indices().nth(QUOTE_LEN) {
        Some((end, _)) => (text.get(..end).unwrap_or(text), true),
        None => (text, false),
    };
    let quoted = Value::String(head.to_owned()).to_string();
    if cut { format!("{quoted}…") } else { quoted }
}

/// A type as error messages name it: its WIT text, or for a long one just
/// its outer form (`record { … }`).
fn describe(ty: &PayloadType) -> String {
    let text = ty.to_string();
    if text.len() <= TYPE_TEXT_LEN {
        return text;
    }
    match ty {
        PayloadType::List(_) => "list<…>",
        PayloadType::Option(_) => "option<…>",
        PayloadType::Result { .. } => "result<…>",
        PayloadType::Tuple(_) => "tuple<…>",
        PayloadType::Record(_) => "record { … }",
        PayloadType::Variant(_) => "variant { … }",
        PayloadType::Enum(_) => "enum { … }",
        PayloadType::Flags(_) => "flags { … }",
        _ => return text,
    }
    .to_owned()
}

#[cfg(test)]
mod tests;
