//! # vow-payload-type
//!
//! The declared payload type of a Vow promise. A guest that creates a
//! promise may say what its completion carries, as the text of a WIT type
//! expression such as `record { approved: bool, note: option<string> }`.
//! Vow parses that text into a [`PayloadType`] and checks every completion
//! that arrives over REST against it, so a mistyped completion is refused
//! with a message that names the offending place in the value, instead of
//! surfacing later as a decoding failure inside the guest. The guest gets
//! the *canonical* JSON bytes of the value (see [`PayloadType::check`]), so
//! it only ever has to read one spelling of each value.
//!
//! Values use Vow's plain JSON encoding of component values, the one its
//! REST API uses for arguments and results:
//!
//! | WIT | JSON |
//! |---|---|
//! | `bool` | `true`, `false` |
//! | integers | numbers in range (`u64`/`s64` also from decimal strings) |
//! | `f32`, `f64` | numbers; `"NaN"`, `"Infinity"`, `"-Infinity"` for the rest |
//! | `char` | a one-character string (its code point, a number, is accepted too) |
//! | `string` | a string |
//! | `list`, `tuple` | arrays |
//! | `record` | an object keyed by field name; `option` fields may be left out |
//! | `variant` | `{"case": payload}`; `{"case": null}` or `"case"` without payload |
//! | `enum` | `"case"` |
//! | `option` | `null` or the value |
//! | `result` | `{"ok": v}` / `{"err": v}` (`null`, or a bare `"ok"`/`"err"`, without payload) |
//! | `flags` | an array of flag names |
//!
//! Where the table allows several spellings, [`PayloadType::check`] accepts
//! all of them and answers the first.
//!
//! ```
//! use serde_json::json;
//! use vow_payload_type::PayloadType;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ty = PayloadType::parse("record { approved: bool, note: option<string> }")?;
//!
//! // A missing `option` field is `null` in the canonical form.
//! let value = ty.check(&json!({ "approved": true }))?;
//! assert_eq!(value, json!({ "approved": true, "note": null }));
//!
//! // Errors name the place in the value.
//! let error = ty.check(&json!({ "approved": "yes" })).unwrap_err();
//! assert_eq!(error.to_string(), "approved: expected bool, got string");
//!
//! // The type prints as canonical WIT text.
//! assert_eq!(ty.to_string(), "record { approved: bool, note: option<string> }");
//! # Ok(())
//! # }
//! ```
//!
//! ## Limits
//!
//! Type text comes from guests and values from REST clients, so neither may
//! hurt the host: type text is at most [`MAX_TEXT_LEN`] bytes, and types
//! (and with them the values checked against them) nest at most
//! [`MAX_DEPTH`] levels deep. Going over a limit is an ordinary error.

use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

mod check;
mod error;
mod parse;

pub use error::{ParseError, ValueError};

/// The longest type text [`PayloadType::parse`] reads, in bytes (64 KiB).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// How deep types may nest: `list<…<u8>…>` with 64 `list`s is accepted,
/// with 65 it is not. [`PayloadType::check`] refuses to descend further
/// too, for types built in code rather than parsed.
pub const MAX_DEPTH: usize = 64;

/// A WIT value type, as a promise declares the type of its payload.
///
/// The component model's value types without handles (resources, futures,
/// streams), which have no JSON form. Names (of record fields, variant and
/// enum cases, flags) are WIT identifiers without the `%` escape.
///
/// [`PayloadType::parse`] only builds types that satisfy WIT's rules (names
/// are kebab-case and unique, records and the like are not empty, nesting
/// stays within [`MAX_DEPTH`]). A type built in code should keep to them
/// too: its [`Display`](fmt::Display) text is only parsed back when it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadType {
    /// `bool`.
    Bool,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `s8`.
    S8,
    /// `s16`.
    S16,
    /// `s32`.
    S32,
    /// `s64`.
    S64,
    /// `f32` (also written `float32`).
    F32,
    /// `f64` (also written `float64`).
    F64,
    /// `char`: a Unicode scalar value.
    Char,
    /// `string`.
    String,
    /// `list<T>`.
    List(Box<PayloadType>),
    /// `option<T>`.
    Option(Box<PayloadType>),
    /// `result<T, E>`, where either type may be absent: `result<T>`,
    /// `result<_, E>` and `result`.
    Result {
        /// The payload of `ok`, if it has one.
        ok: Option<Box<PayloadType>>,
        /// The payload of `err`, if it has one.
        err: Option<Box<PayloadType>>,
    },
    /// `tuple<T, …>`, with at least one element.
    Tuple(Vec<PayloadType>),
    /// `record { name: T, … }`: fields in declaration order.
    Record(Vec<(String, PayloadType)>),
    /// `variant { name, name(T), … }`: cases in declaration order, each with
    /// its payload type if it has one.
    Variant(Vec<(String, Option<PayloadType>)>),
    /// `enum { name, … }`: cases in declaration order.
    Enum(Vec<String>),
    /// `flags { name, … }`: flags in declaration order (at most 32).
    Flags(Vec<String>),
}

impl PayloadType {
    /// Parses the text of a WIT type expression.
    ///
    /// Accepts `bool`, `u8`…`u64`, `s8`…`s64`, `f32`, `f64` (or `float32`,
    /// `float64`), `char`, `string`, `list<T>`, `option<T>`, `result`,
    /// `result<T>`, `result<T, E>`, `result<_, E>`, `tuple<T, …>` and the
    /// inline forms `record { a: T, … }`, `variant { a, b(T), … }`,
    /// `enum { a, … }` and `flags { a, … }`. Whitespace and comments
    /// (`// …` and `/* … */`) may stand between any two tokens; the lists
    /// in braces and `tuple` take a trailing comma. Names are WIT's
    /// kebab-case identifiers (`max-size`); one spelled like a WIT keyword
    /// needs a leading `%` (`%type`).
    ///
    /// The error says where the text is wrong and what was expected there:
    /// ``at 13: expected `>`, found `,` ``.
    pub fn parse(text: &str) -> Result<PayloadType, ParseError> {
        parse::parse(text)
    }

    /// Checks a JSON value against this type and returns its canonical
    /// form.
    ///
    /// The value may use any spelling the [encoding](crate) allows; the
    /// answer uses one: numbers for integers (also for a `u64` given as a
    /// string), floats as floating-point numbers (an `f32` rounded to the
    /// nearest `f32`) or `"NaN"`, `"Infinity"`, `"-Infinity"`, a `char` as a
    /// string, every record field (`null` for a missing `option` field),
    /// `{"case": null}` for a case without payload, and flags in
    /// declaration order.
    ///
    /// The error names where in the value the problem is (`items[3]`,
    /// `shape.circle`) and what was expected there.
    pub fn check(&self, value: &Value) -> Result<Value, ValueError> {
        check::check(self, value)
    }

    /// [`check`](Self::check) for a value given as JSON bytes (UTF-8), such
    /// as the body of a REST completion.
    pub fn check_bytes(&self, bytes: &[u8]) -> Result<Value, ValueError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| ValueError::new(String::new(), format!("payload is not JSON: {e}")))?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ValueError::new(String::new(), format!("payload is not JSON: {e}")))?;
        self.check(&value)
    }

    /// The type as Golem 1.1's `AnalysedType` JSON, which clients use to
    /// build a value of the type (a form, say): an object tagged by
    /// `"type"`, such as `{"type": "List", "inner": {"type": "U8"}}`.
    ///
    /// A variant case without payload has no `typ` key, and a `result`
    /// without `ok` or `err` type has no such key, as Golem's document
    /// describes them.
    pub fn analysed_type(&self) -> Value {
        let tag = |name: &str| json!({ "type": name });
        match self {
            PayloadType::Bool => tag("Bool"),
            PayloadType::U8 => tag("U8"),
            PayloadType::U16 => tag("U16"),
            PayloadType::U32 => tag("U32"),
            PayloadType::U64 => tag("U64"),
            PayloadType::S8 => tag("S8"),
            PayloadType::S16 => tag("S16"),
            PayloadType::S32 => tag("S32"),
            PayloadType::S64 => tag("S64"),
            PayloadType::F32 => tag("F32"),
            PayloadType::F64 => tag("F64"),
            PayloadType::Char => tag("Chr"),
            PayloadType::String => tag("Str"),
            PayloadType::List(inner) => json!({ "type": "List", "inner": inner.analysed_type() }),
            PayloadType::Option(inner) => {
                json!({ "type": "Option", "inner": inner.analysed_type() })
            }
            PayloadType::Result { ok, err } => {
                let mut typ = serde_json::Map::new();
                typ.insert("type".to_owned(), Value::from("Result"));
                if let Some(ok) = ok {
                    typ.insert("ok".to_owned(), ok.analysed_type());
                }
                if let Some(err) = err {
                    typ.insert("err".to_owned(), err.analysed_type());
                }
                Value::Object(typ)
            }
            PayloadType::Tuple(items) => json!({
                "type": "Tuple",
                "items": items.iter().map(PayloadType::analysed_type).collect::<Vec<_>>(),
            }),
            PayloadType::Record(fields) => json!({
                "type": "Record",
                "fields": fields
                    .iter()
                    .map(|(name, ty)| json!({ "name": name, "typ": ty.analysed_type() }))
                    .collect::<Vec<_>>(),
            }),
            PayloadType::Variant(cases) => json!({
                "type": "Variant",
                "cases": cases
                    .iter()
                    .map(|(name, ty)| match ty {
                        Some(ty) => json!({ "name": name, "typ": ty.analysed_type() }),
                        None => json!({ "name": name }),
                    })
                    .collect::<Vec<_>>(),
            }),
            PayloadType::Enum(cases) => json!({ "type": "Enum", "cases": cases }),
            PayloadType::Flags(names) => json!({ "type": "Flags", "names": names }),
        }
    }
}

/// Canonical WIT text: single spaces, `, ` between items, no trailing
/// commas, `f32`/`f64` (never `float32`/`float64`), and a `%` before names
/// spelled like keywords. [`PayloadType::parse`] reads it back as the same
/// type.
impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadType::Bool => f.write_str("bool"),
            PayloadType::U8 => f.write_str("u8"),
            PayloadType::U16 => f.write_str("u16"),
            PayloadType::U32 => f.write_str("u32"),
            PayloadType::U64 => f.write_str("u64"),
            PayloadType::S8 => f.write_str("s8"),
            PayloadType::S16 => f.write_str("s16"),
            PayloadType::S32 => f.write_str("s32"),
            PayloadType::S64 => f.write_str("s64"),
            PayloadType::F32 => f.write_str("f32"),
            PayloadType::F64 => f.write_str("f64"),
            PayloadType::Char => f.write_str("char"),
            PayloadType::String => f.write_str("string"),
            PayloadType::List(inner) => write!(f, "list<{inner}>"),
            PayloadType::Option(inner) => write!(f, "option<{inner}>"),
            PayloadType::Result { ok, err } => match (ok, err) {
                (None, None) => f.write_str("result"),
                (Some(ok), None) => write!(f, "result<{ok}>"),
                (None, Some(err)) => write!(f, "result<_, {err}>"),
                (Some(ok), Some(err)) => write!(f, "result<{ok}, {err}>"),
            },
            PayloadType::Tuple(items) => {
                f.write_str("tuple<")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(">")
            }
            PayloadType::Record(fields) => braced(f, "record", fields, |f, (name, ty)| {
                write!(f, "{}: {ty}", Name(name))
            }),
            PayloadType::Variant(cases) => braced(f, "variant", cases, |f, (name, ty)| match ty {
                Some(ty) => write!(f, "{}({ty})", Name(name)),
                None => write!(f, "{}", Name(name)),
            }),
            PayloadType::Enum(cases) => {
                braced(f, "enum", cases, |f, name| write!(f, "{}", Name(name)))
            }
            PayloadType::Flags(names) => {
                braced(f, "flags", names, |f, name| write!(f, "{}", Name(name)))
            }
        }
    }
}

/// Writes `keyword { item, item }`.
fn braced<T>(
    f: &mut fmt::Formatter<'_>,
    keyword: &str,
    items: &[T],
    mut item: impl FnMut(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    write!(f, "{keyword} {{ ")?;
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        item(f, it)?;
    }
    f.write_str(" }")
}

/// A name as WIT text: with a `%` when it is spelled like a keyword.
struct Name<'a>(&'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if parse::is_keyword(self.0) {
            f.write_str("%")?;
        }
        f.write_str(self.0)
    }
}

/// [`PayloadType::parse`].
impl FromStr for PayloadType {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PayloadType::parse(text)
    }
}

/// Serialized as its canonical WIT text (a string).
impl serde::Serialize for PayloadType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Deserialized from WIT text (a string), as [`PayloadType::parse`] reads it.
impl<'de> serde::Deserialize<'de> for PayloadType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PayloadType::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
