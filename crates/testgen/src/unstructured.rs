//! The shapes of [`strategy`](crate::strategy), read from raw bytes with
//! `arbitrary`, for the fuzz targets: a fuzzer mutates the bytes and
//! these functions turn them into types, values and JSON.
//!
//! Running out of bytes gives the simplest choices (the first type, empty
//! lists), so every input makes something.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Value};

use crate::{KEYWORD_NAMES, MAX_FLAGS, PayloadType, f32_json, float_json};

/// How deep generated types and JSON nest.
const MAX_NESTING: usize = 5;

/// The most items of a generated list, tuple, record and the like.
const MAX_ITEMS: usize = 5;

/// A WIT value type, nested up to a few levels deep.
pub fn payload_type(u: &mut Unstructured<'_>) -> Result<PayloadType> {
    type_at(u, 0)
}

fn type_at(u: &mut Unstructured<'_>, depth: usize) -> Result<PayloadType> {
    let leaves = 15;
    let choices = if depth >= MAX_NESTING {
        leaves
    } else {
        leaves + 6
    };
    let boxed = |u: &mut Unstructured<'_>| type_at(u, depth + 1).map(Box::new);
    Ok(match u.choose_index(choices)? {
        0 => PayloadType::Bool,
        1 => PayloadType::U8,
        2 => PayloadType::U16,
        3 => PayloadType::U32,
        4 => PayloadType::U64,
        5 => PayloadType::S8,
        6 => PayloadType::S16,
        7 => PayloadType::S32,
        8 => PayloadType::S64,
        9 => PayloadType::F32,
        10 => PayloadType::F64,
        11 => PayloadType::Char,
        12 => PayloadType::String,
        13 => PayloadType::Enum(names(u, MAX_ITEMS)?),
        14 => PayloadType::Flags(names(u, MAX_FLAGS)?),
        15 => PayloadType::List(boxed(u)?),
        16 => PayloadType::Option(boxed(u)?),
        17 => PayloadType::Result {
            ok: if u.arbitrary()? {
                Some(boxed(u)?)
            } else {
                None
            },
            err: if u.arbitrary()? {
                Some(boxed(u)?)
            } else {
                None
            },
        },
        18 => PayloadType::Tuple(items(u, |u| type_at(u, depth + 1))?),
        19 => {
            let names = names(u, MAX_ITEMS)?;
            let mut fields = Vec::with_capacity(names.len());
            for name in names {
                fields.push((name, type_at(u, depth + 1)?));
            }
            PayloadType::Record(fields)
        }
        _ => {
            let names = names(u, MAX_ITEMS)?;
            let mut cases = Vec::with_capacity(names.len());
            for name in names {
                let ty = if u.arbitrary()? {
                    Some(type_at(u, depth + 1)?)
                } else {
                    None
                };
                cases.push((name, ty));
            }
            PayloadType::Variant(cases)
        }
    })
}

/// One to `max` items made by `item`.
fn items<T>(
    u: &mut Unstructured<'_>,
    mut item: impl FnMut(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let len = u.int_in_range(1..=MAX_ITEMS)?;
    (0..len).map(|_| item(u)).collect()
}

/// A WIT name: kebab-case words, sometimes one spelled like a keyword.
pub fn name(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(1, 5)? {
        return Ok((*u.choose(KEYWORD_NAMES)?).to_owned());
    }
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut name = String::new();
    for word in 0..u.int_in_range(1..=3)? {
        if word > 0 {
            name.push('-');
        }
        name.push(char::from(*u.choose(LETTERS)?));
        for _ in 0..u.int_in_range(0..=4)? {
            name.push(char::from(*u.choose(ALNUM)?));
        }
    }
    Ok(name)
}

/// One to `max` distinct names.
pub fn names(u: &mut Unstructured<'_>, max: usize) -> Result<Vec<String>> {
    let len = u.int_in_range(1..=max)?;
    let mut out: Vec<String> = Vec::with_capacity(len);
    for i in 0..len {
        let mut name = name(u)?;
        if out.contains(&name) {
            // Bytes ran out, or the fuzzer repeated itself: still distinct.
            name = format!("n{i}");
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// A value of `ty` in its canonical plain JSON form, as
/// [`strategy::value`](crate::strategy::value) makes them.
pub fn value(u: &mut Unstructured<'_>, ty: &PayloadType) -> Result<Value> {
    Ok(match ty {
        PayloadType::Bool => Value::from(u.arbitrary::<bool>()?),
        PayloadType::U8 => Value::from(u.arbitrary::<u8>()?),
        PayloadType::U16 => Value::from(u.arbitrary::<u16>()?),
        PayloadType::U32 => Value::from(u.arbitrary::<u32>()?),
        PayloadType::U64 => Value::from(u.arbitrary::<u64>()?),
        PayloadType::S8 => Value::from(u.arbitrary::<i8>()?),
        PayloadType::S16 => Value::from(u.arbitrary::<i16>()?),
        PayloadType::S32 => Value::from(u.arbitrary::<i32>()?),
        PayloadType::S64 => Value::from(u.arbitrary::<i64>()?),
        PayloadType::F32 => f32_json(u.arbitrary()?),
        PayloadType::F64 => float_json(u.arbitrary()?),
        PayloadType::Char => Value::from(u.arbitrary::<char>()?.to_string()),
        PayloadType::String => Value::from(u.arbitrary::<String>()?),
        PayloadType::List(inner) => {
            let len = u.int_in_range(0..=MAX_ITEMS)?;
            Value::Array((0..len).map(|_| value(u, inner)).collect::<Result<_>>()?)
        }
        PayloadType::Option(inner) => match u.arbitrary::<bool>()? {
            false => Value::Null,
            // `null` would read back as `none`.
            true => match value(u, inner)? {
                Value::Null => Value::Null,
                some => some,
            },
        },
        PayloadType::Result { ok, err } => match u.arbitrary::<bool>()? {
            true => payload(u, "ok", ok.as_deref())?,
            false => payload(u, "err", err.as_deref())?,
        },
        PayloadType::Tuple(items) => {
            Value::Array(items.iter().map(|ty| value(u, ty)).collect::<Result<_>>()?)
        }
        PayloadType::Record(fields) => {
            let mut object = Map::new();
            for (name, ty) in fields {
                object.insert(name.clone(), value(u, ty)?);
            }
            Value::Object(object)
        }
        PayloadType::Variant(cases) => {
            let (name, ty) = u.choose(cases)?;
            payload(u, name, ty.as_ref())?
        }
        PayloadType::Enum(cases) => Value::from(u.choose(cases)?.as_str()),
        PayloadType::Flags(names) => {
            let mut set = Vec::new();
            for name in names {
                if u.arbitrary()? {
                    set.push(Value::from(name.as_str()));
                }
            }
            Value::Array(set)
        }
    })
}

/// `{"case": payload}`, with `null` for a case without payload.
fn payload(u: &mut Unstructured<'_>, case: &str, ty: Option<&PayloadType>) -> Result<Value> {
    let payload = match ty {
        Some(ty) => value(u, ty)?,
        None => Value::Null,
    };
    let mut object = Map::new();
    object.insert(case.to_owned(), payload);
    Ok(Value::Object(object))
}

/// Any JSON, biased like [`strategy::json`](crate::strategy::json)
/// towards what the decoders look for.
pub fn json(u: &mut Unstructured<'_>) -> Result<Value> {
    json_at(u, 0)
}

fn json_at(u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    let choices = if depth >= MAX_NESTING { 7 } else { 10 };
    Ok(match u.choose_index(choices)? {
        0 => Value::Null,
        1 => Value::from(u.arbitrary::<bool>()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => float_json(u.arbitrary()?),
        5 => Value::from(u.arbitrary::<String>()?),
        6 => Value::from(text(u)?),
        7 => {
            let len = u.int_in_range(0..=MAX_ITEMS)?;
            Value::Array(
                (0..len)
                    .map(|_| json_at(u, depth + 1))
                    .collect::<Result<_>>()?,
            )
        }
        _ => {
            let len = u.int_in_range(0..=MAX_ITEMS)?;
            let mut object = Map::new();
            for _ in 0..len {
                let key = if u.ratio(3, 4)? { name(u)? } else { text(u)? };
                object.insert(key, json_at(u, depth + 1)?);
            }
            Value::Object(object)
        }
    })
}

/// Strings a decoder gives a meaning to.
fn text(u: &mut Unstructured<'_>) -> Result<String> {
    const SPECIAL: &[&str] = &[
        "NaN",
        "Infinity",
        "-Infinity",
        "ok",
        "err",
        "",
        "18446744073709551616",
        "-9223372036854775809",
        "1e3",
        "-0",
    ];
    Ok(match u.choose_index(3)? {
        0 => (*u.choose(SPECIAL)?).to_owned(),
        1 => name(u)?,
        _ => u.arbitrary::<i128>()?.to_string(),
    })
}

/// `value` (a canonical value of some type) with one node replaced by
/// arbitrary JSON.
pub fn mutated(u: &mut Unstructured<'_>, mut value: Value) -> Result<Value> {
    let at = u.arbitrary::<usize>()?;
    let replacement = json(u)?;
    crate::replace_node(&mut value, at, replacement);
    Ok(value)
}
