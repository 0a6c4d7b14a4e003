//! The component-model type of a generated [`PayloadType`]: what the
//! server's JSON decoder and WAVE take.
//!
//! wasmtime only makes [`Type`]s from a component, so
//! [`component_type`] writes a component that imports a function with one
//! parameter of the type and reads the parameter's type back. Records,
//! variants, enums and flags are imported as named types, as the
//! component model requires of types in an import's signature.

use std::fmt::Write as _;
use std::sync::OnceLock;

use anyhow::bail;
use wasmtime::Engine;
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, Val};

use crate::PayloadType;

/// One engine for the process: making one is slow, and the components
/// made here have no code to compile.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::default)
}

/// The component-model type of `ty`.
pub fn component_type(ty: &PayloadType) -> anyhow::Result<Type> {
    let wat = component_text(ty);
    let component = Component::new(engine(), &wat)
        .map_err(|e| anyhow::anyhow!("no component for {ty}: {e:?}\n{wat}"))?;
    let component_ty = component.component_type();
    let import = component_ty
        .get_import(engine(), "f")
        .map(|import| import.ty);
    match import {
        Some(ComponentItem::ComponentFunc(func)) => match func.params().next() {
            Some((_, ty)) => Ok(ty),
            None => bail!("the function for {ty} has no parameter"),
        },
        _ => bail!("the component for {ty} has no function import"),
    }
}

/// The component text: named types first, then `(import "f" (func (param
/// "x" T)))`.
pub fn component_text(ty: &PayloadType) -> String {
    let mut types = Types::default();
    let param = types.valtype(ty);
    format!(
        "(component\n{}  (import \"f\" (func (param \"x\" {param})))\n)",
        types.text
    )
}

/// The named types written so far.
#[derive(Default)]
struct Types {
    text: String,
    count: usize,
}

impl Types {
    /// `ty` as a value type of the component text, defining and importing
    /// the named types it needs.
    fn valtype(&mut self, ty: &PayloadType) -> String {
        match ty {
            PayloadType::Bool => "bool".to_owned(),
            PayloadType::U8 => "u8".to_owned(),
            PayloadType::U16 => "u16".to_owned(),
            PayloadType::U32 => "u32".to_owned(),
            PayloadType::U64 => "u64".to_owned(),
            PayloadType::S8 => "s8".to_owned(),
            PayloadType::S16 => "s16".to_owned(),
            PayloadType::S32 => "s32".to_owned(),
            PayloadType::S64 => "s64".to_owned(),
            PayloadType::F32 => "f32".to_owned(),
            PayloadType::F64 => "f64".to_owned(),
            PayloadType::Char => "char".to_owned(),
            PayloadType::String => "string".to_owned(),
            PayloadType::List(inner) => format!("(list {})", self.valtype(inner)),
            PayloadType::Option(inner) => format!("(option {})", self.valtype(inner)),
            PayloadType::Result { ok, err } => {
                let mut out = "(result".to_owned();
                if let Some(ok) = ok {
                    out.push(' ');
                    out.push_str(&self.valtype(ok));
                }
                if let Some(err) = err {
                    let _ = write!(out, " (error {})", self.valtype(err));
                }
                out.push(')');
                out
            }
            PayloadType::Tuple(items) => {
                let items: Vec<String> = items.iter().map(|t| self.valtype(t)).collect();
                format!("(tuple {})", items.join(" "))
            }
            PayloadType::Record(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(name, ty)| format!("(field {name:?} {})", self.valtype(ty)))
                    .collect();
                self.named(&format!("(record {})", fields.join(" ")))
            }
            PayloadType::Variant(cases) => {
                let cases: Vec<String> = cases
                    .iter()
                    .map(|(name, ty)| match ty {
                        Some(ty) => format!("(case {name:?} {})", self.valtype(ty)),
                        None => format!("(case {name:?})"),
                    })
                    .collect();
                self.named(&format!("(variant {})", cases.join(" ")))
            }
            PayloadType::Enum(cases) => self.named(&format!("(enum {})", quoted(cases))),
            PayloadType::Flags(names) => self.named(&format!("(flags {})", quoted(names))),
        }
    }

    /// Defines `def` and imports it under a name; answers the import.
    fn named(&mut self, def: &str) -> String {
        let n = self.count;
        self.count += 1;
        let _ = writeln!(self.text, "  (type $d{n} {def})");
        let _ = writeln!(self.text, "  (import \"t{n}\" (type $t{n} (eq $d{n})))");
        format!("$t{n}")
    }
}

fn quoted(names: &[String]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    names.join(" ")
}

/// `val` with the names of every `flags` value sorted: flags are a set,
/// and WAVE reads them back in another order than JSON gives them, which
/// [`Val`]'s equality would count as a difference.
pub fn sorted_flags(val: &Val) -> Val {
    let each = |items: &[Val]| items.iter().map(sorted_flags).collect();
    let boxed = |v: &Option<Box<Val>>| v.as_deref().map(|v| Box::new(sorted_flags(v)));
    match val {
        Val::Flags(names) => {
            let mut names = names.clone();
            names.sort();
            Val::Flags(names)
        }
        Val::List(items) => Val::List(each(items)),
        Val::Tuple(items) => Val::Tuple(each(items)),
        Val::Record(fields) => Val::Record(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), sorted_flags(v)))
                .collect(),
        ),
        Val::Variant(case, payload) => Val::Variant(case.clone(), boxed(payload)),
        Val::Option(v) => Val::Option(boxed(v)),
        Val::Result(Ok(v)) => Val::Result(Ok(boxed(v))),
        Val::Result(Err(v)) => Val::Result(Err(boxed(v))),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_composite_type_round_trips_through_a_component() -> anyhow::Result<()> {
        let ty = PayloadType::parse(
            "record { a: list<option<variant { x, %type(enum { p, q }) }>>, \
             b: result<_, flags { r, s }>, c: tuple<f32, char, string> }",
        )?;
        let component = component_type(&ty)?;
        let Type::Record(record) = &component else {
            bail!("expected a record, got {component:?}");
        };
        let names: Vec<&str> = record.fields().map(|f| f.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        Ok(())
    }
}
