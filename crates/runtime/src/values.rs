//! Checking [`Val`]s against component types, and printing types as WIT.
//!
//! Arguments are checked before a call enters the guest, so a wrong argument is
//! an [`Error::InvalidArguments`](crate::Error::InvalidArguments) naming the
//! parameter and the path inside it, and the worker's instance is untouched.

use std::fmt::Write as _;

use wasmtime::component::Val;
use wasmtime::component::types::Type;

/// Checks that `val` has type `ty`; the error names the offending path.
pub(crate) fn check(val: &Val, ty: &Type, path: &mut String) -> Result<(), String> {
    let mismatch = |path: &str| {
        Err(format!(
            "{path}: expected {}, got {}",
            wit_type(ty),
            val_kind(val)
        ))
    };
    match (ty, val) {
        (Type::Bool, Val::Bool(_))
        | (Type::S8, Val::S8(_))
        | (Type::U8, Val::U8(_))
        | (Type::S16, Val::S16(_))
        | (Type::U16, Val::U16(_))
        | (Type::S32, Val::S32(_))
        | (Type::U32, Val::U32(_))
        | (Type::S64, Val::S64(_))
        | (Type::U64, Val::U64(_))
        | (Type::Float32, Val::Float32(_))
        | (Type::Float64, Val::Float64(_))
        | (Type::Char, Val::Char(_))
        | (Type::String, Val::String(_)) => Ok(()),
        (Type::List(list), Val::List(items)) => {
            let elem = list.ty();
            for (i, item) in items.iter().enumerate() {
                nested(path, &format!("[{i}]"), |p| check(item, &elem, p))?;
            }
            Ok(())
        }
        (Type::Record(record), Val::Record(fields)) => {
            let expected: Vec<_> = record.fields().collect();
            for field in &expected {
                let Some((_, v)) = fields.iter().find(|(n, _)| n == field.name) else {
                    return Err(format!("{path}: missing field {:?}", field.name));
                };
                nested(path, &format!(".{}", field.name), |p| {
                    check(v, &field.ty, p)
                })?;
            }
            if let Some((extra, _)) = fields
                .iter()
                .find(|(n, _)| !expected.iter().any(|f| f.name == n))
            {
                return Err(format!("{path}: unknown field {extra:?}"));
            }
            Ok(())
        }
        (Type::Tuple(tuple), Val::Tuple(items)) => {
            let types: Vec<_> = tuple.types().collect();
            if types.len() != items.len() {
                return Err(format!(
                    "{path}: expected a tuple of {} elements, got {}",
                    types.len(),
                    items.len()
                ));
            }
            for (i, (t, v)) in types.iter().zip(items).enumerate() {
                nested(path, &format!(".{i}"), |p| check(v, t, p))?;
            }
            Ok(())
        }
        (Type::Variant(variant), Val::Variant(name, payload)) => {
            let Some(case) = variant.cases().find(|c| c.name == name) else {
                let names: Vec<_> = variant.cases().map(|c| c.name.to_owned()).collect();
                return Err(format!(
                    "{path}: unknown case {name:?} (expected one of {})",
                    names.join(", ")
                ));
            };
            match (&case.ty, payload) {
                (None, None) => Ok(()),
                (Some(t), Some(v)) => nested(path, &format!("<{name}>"), |p| check(v, t, p)),
                (None, Some(_)) => Err(format!("{path}: case {name:?} takes no payload")),
                (Some(_), None) => Err(format!("{path}: case {name:?} needs a payload")),
            }
        }
        (Type::Enum(e), Val::Enum(name)) => {
            if e.names().any(|n| n == name) {
                Ok(())
            } else {
                let names: Vec<_> = e.names().collect();
                Err(format!(
                    "{path}: unknown enum case {name:?} (expected one of {})",
                    names.join(", ")
                ))
            }
        }
        (Type::Option(o), Val::Option(v)) => match v {
            None => Ok(()),
            Some(v) => nested(path, "?", |p| check(v, &o.ty(), p)),
        },
        (Type::Result(r), Val::Result(v)) => {
            let (label, expected, payload) = match v {
                Ok(p) => ("ok", r.ok(), p),
                Err(p) => ("err", r.err(), p),
            };
            match (expected, payload) {
                (None, None) => Ok(()),
                (Some(t), Some(v)) => nested(path, &format!("<{label}>"), |p| check(v, &t, p)),
                (None, Some(_)) => Err(format!("{path}: {label} takes no payload")),
                (Some(_), None) => Err(format!("{path}: {label} needs a payload")),
            }
        }
        (Type::Flags(f), Val::Flags(names)) => {
            for name in names {
                if !f.names().any(|n| n == name) {
                    return Err(format!("{path}: unknown flag {name:?}"));
                }
            }
            Ok(())
        }
        (Type::Own(_) | Type::Borrow(_), Val::Resource(_)) => Ok(()),
        _ => mismatch(path),
    }
}

fn nested(
    path: &mut String,
    step: &str,
    f: impl FnOnce(&mut String) -> Result<(), String>,
) -> Result<(), String> {
    let len = path.len();
    path.push_str(step);
    let result = f(path);
    path.truncate(len);
    result
}

fn val_kind(val: &Val) -> &'static str {
    match val {
        Val::Bool(_) => "bool",
        Val::S8(_) => "s8",
        Val::U8(_) => "u8",
        Val::S16(_) => "s16",
        Val::U16(_) => "u16",
        Val::S32(_) => "s32",
        Val::U32(_) => "u32",
        Val::S64(_) => "s64",
        Val::U64(_) => "u64",
        Val::Float32(_) => "f32",
        Val::Float64(_) => "f64",
        Val::Char(_) => "char",
        Val::String(_) => "string",
        Val::List(_) => "list",
        Val::Map(_) => "map",
        Val::Record(_) => "record",
        Val::Tuple(_) => "tuple",
        Val::Variant(..) => "variant",
        Val::Enum(_) => "enum",
        Val::Option(_) => "option",
        Val::Result(_) => "result",
        Val::Flags(_) => "flags",
        Val::Resource(_) => "resource",
        Val::Future(_) => "future",
        Val::Stream(_) => "stream",
        Val::ErrorContext(_) => "error-context",
        Val::FixedLengthList(_) => "fixed-length list",
    }
}

/// Prints a type in WIT syntax. Named types (records, variants, enums, flags)
/// are printed structurally because component types carry no names for them.
pub fn wit_type(ty: &Type) -> String {
    let mut out = String::new();
    write_type(&mut out, ty);
    out
}

fn write_type(out: &mut String, ty: &Type) {
    let simple = match ty {
        Type::Bool => "bool",
        Type::S8 => "s8",
        Type::U8 => "u8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::S32 => "s32",
        Type::U32 => "u32",
        Type::S64 => "s64",
        Type::U64 => "u64",
        Type::Float32 => "f32",
        Type::Float64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::ErrorContext => "error-context",
        _ => "",
    };
    if !simple.is_empty() {
        out.push_str(simple);
        return;
    }
    match ty {
        Type::List(l) => {
            out.push_str("list<");
            write_type(out, &l.ty());
            out.push('>');
        }
        Type::FixedLengthList(l) => {
            out.push_str("list<");
            write_type(out, &l.ty());
            let _ = write!(out, ", {}>", l.len());
        }
        Type::Map(m) => {
            out.push_str("map<");
            write_type(out, &m.key());
            out.push_str(", ");
            write_type(out, &m.value());
            out.push('>');
        }
        Type::Record(r) => {
            out.push_str("record { ");
            for (i, f) in r.fields().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(f.name);
                out.push_str(": ");
                write_type(out, &f.ty);
            }
            out.push_str(" }");
        }
        Type::Tuple(t) => {
            out.push_str("tuple<");
            for (i, t) in t.types().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_type(out, &t);
            }
            out.push('>');
        }
        Type::Variant(v) => {
            out.push_str("variant { ");
            for (i, c) in v.cases().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(c.name);
                if let Some(t) = &c.ty {
                    out.push('(');
                    write_type(out, t);
                    out.push(')');
                }
            }
            out.push_str(" }");
        }
        Type::Enum(e) => {
            let names: Vec<_> = e.names().collect();
            let _ = write!(out, "enum {{ {} }}", names.join(", "));
        }
        Type::Flags(f) => {
            let names: Vec<_> = f.names().collect();
            let _ = write!(out, "flags {{ {} }}", names.join(", "));
        }
        Type::Option(o) => {
            out.push_str("option<");
            write_type(out, &o.ty());
            out.push('>');
        }
        Type::Result(r) => match (r.ok(), r.err()) {
            (None, None) => out.push_str("result"),
            (Some(ok), None) => {
                out.push_str("result<");
                write_type(out, &ok);
                out.push('>');
            }
            (ok, Some(err)) => {
                out.push_str("result<");
                match ok {
                    Some(ok) => write_type(out, &ok),
                    None => out.push('_'),
                }
                out.push_str(", ");
                write_type(out, &err);
                out.push('>');
            }
        },
        Type::Own(_) => out.push_str("own<resource>"),
        Type::Borrow(_) => out.push_str("borrow<resource>"),
        Type::Future(f) => {
            out.push_str("future");
            if let Some(t) = f.ty() {
                out.push('<');
                write_type(out, &t);
                out.push('>');
            }
        }
        Type::Stream(s) => {
            out.push_str("stream");
            if let Some(t) = s.ty() {
                out.push('<');
                write_type(out, &t);
                out.push('>');
            }
        }
        _ => {}
    }
}
