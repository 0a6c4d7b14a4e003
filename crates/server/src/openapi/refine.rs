//! What a derived schema cannot state, added to the document by name:
//!
//! - body fields that exclude each other, which the handlers check (a 400
//!   otherwise): a schema of properties cannot say "one of these two";
//! - `additionalProperties: false` on the variants of a tagged enum that
//!   refuses unknown fields (utoipa sets it on structs only).
//!
//! A test checks that every schema and field named here is in the
//! document, so renaming a field cannot leave a rule behind.

use serde_json::{Map, Value, json};

/// How many of a body's fields may be given.
#[derive(Clone, Copy, Debug)]
enum Exclusive {
    /// Exactly one of them.
    One,
    /// At most one of them.
    AtMostOne,
}

/// Schemas whose fields exclude each other, and the handler that checks it.
const EXCLUSIVE: &[(&str, Exclusive, &[&str])] = &[
    // `promises::Payload::payload`
    ("Completion", Exclusive::One, &["data", "value"]),
    ("LinkCompletion", Exclusive::One, &["data", "value"]),
    // `invoke::invocation`
    (
        "InvokeParameters",
        Exclusive::AtMostOne,
        &["params", "params_json", "params_wave"],
    ),
    // `promises::when`
    ("WhenRequest", Exclusive::AtMostOne, &["input", "inputJson"]),
];

/// Tagged enums (`oneOf` one object per variant) with
/// `#[serde(deny_unknown_fields)]`.
const CLOSED_VARIANTS: &[&str] = &["WorkerFilter"];

/// Adds the rules above to `document`.
pub(super) fn refine(document: &mut Value) {
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (name, rule, fields) in EXCLUSIVE {
        if let Some(schema) = schemas.get_mut(*name).and_then(Value::as_object_mut) {
            exclude(schema, *rule, fields);
        }
    }
    for name in CLOSED_VARIANTS {
        let variants = schemas
            .get_mut(*name)
            .and_then(|s| s.get_mut("oneOf"))
            .and_then(Value::as_array_mut);
        for variant in variants.into_iter().flatten() {
            variant["additionalProperties"] = Value::Bool(false);
        }
    }
}

/// `oneOf` a branch per field that requires it (one), or `anyOf` a branch
/// per field in which the others are absent (at most one: `false` is the
/// schema no value matches, so a property whose schema is `false` cannot
/// be there).
fn exclude(schema: &mut Map<String, Value>, rule: Exclusive, fields: &[&str]) {
    match rule {
        Exclusive::One => {
            let branches = fields.iter().map(|f| json!({ "required": [f] })).collect();
            schema.insert("oneOf".to_owned(), Value::Array(branches));
        }
        Exclusive::AtMostOne => {
            let branches = fields
                .iter()
                .map(|given| {
                    let absent: Map<String, Value> = fields
                        .iter()
                        .filter(|f| *f != given)
                        .map(|f| ((*f).to_owned(), Value::Bool(false)))
                        .collect();
                    json!({ "properties": absent })
                })
                .collect();
            schema.insert("anyOf".to_owned(), Value::Array(branches));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_names_what_the_document_has() {
        let document = super::super::tests::served();
        let schemas = &document["components"]["schemas"];
        for (name, _, fields) in EXCLUSIVE {
            for field in *fields {
                assert!(
                    schemas[name]["properties"].get(field).is_some(),
                    "{name} has no field {field}"
                );
            }
        }
        for name in CLOSED_VARIANTS {
            let variants = schemas[name]["oneOf"].as_array();
            assert!(variants.is_some_and(|v| !v.is_empty()), "{name}");
            for variant in variants.into_iter().flatten() {
                assert_eq!(variant["type"], "object", "{name}: {variant}");
                assert_eq!(variant["additionalProperties"], false, "{name}");
            }
        }
    }

    #[test]
    fn at_most_one_leaves_the_others_absent() {
        let mut schema = Map::new();
        exclude(&mut schema, Exclusive::AtMostOne, &["a", "b", "c"]);
        assert_eq!(
            Value::Object(schema),
            json!({ "anyOf": [
                { "properties": { "b": false, "c": false } },
                { "properties": { "a": false, "c": false } },
                { "properties": { "a": false, "b": false } },
            ] })
        );
    }
}
