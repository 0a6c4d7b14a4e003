use serde_json::json;

use super::*;

fn ty(text: &str) -> PayloadType {
    match PayloadType::parse(text) {
        Ok(ty) => ty,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

#[test]
fn analysed_type_of_primitives() {
    let cases = [
        ("bool", "Bool"),
        ("u8", "U8"),
        ("u16", "U16"),
        ("u32", "U32"),
        ("u64", "U64"),
        ("s8", "S8"),
        ("s16", "S16"),
        ("s32", "S32"),
        ("s64", "S64"),
        ("f32", "F32"),
        ("f64", "F64"),
        ("char", "Chr"),
        ("string", "Str"),
    ];
    for (text, tag) in cases {
        assert_eq!(ty(text).analysed_type(), json!({ "type": tag }), "{text}");
    }
}

#[test]
fn analysed_type_of_a_composite() {
    let text = "record { \
        approved: bool, \
        note: option<string>, \
        items: list<tuple<u8, char>>, \
        shape: variant { none, circle(f64) }, \
        level: enum { low, high }, \
        access: flags { read, write }, \
        outcome: result<u32, string>, \
        done: result, \
        failed: result<_, s64>, \
        sent: result<f32> \
    }";
    assert_eq!(
        ty(text).analysed_type(),
        json!({
            "type": "Record",
            "fields": [
                { "name": "approved", "typ": { "type": "Bool" } },
                { "name": "note", "typ": { "type": "Option", "inner": { "type": "Str" } } },
                {
                    "name": "items",
                    "typ": {
                        "type": "List",
                        "inner": { "type": "Tuple", "items": [{ "type": "U8" }, { "type": "Chr" }] },
                    },
                },
                {
                    "name": "shape",
                    "typ": {
                        "type": "Variant",
                        "cases": [
                            { "name": "none" },
                            { "name": "circle", "typ": { "type": "F64" } },
                        ],
                    },
                },
                { "name": "level", "typ": { "type": "Enum", "cases": ["low", "high"] } },
                { "name": "access", "typ": { "type": "Flags", "names": ["read", "write"] } },
                {
                    "name": "outcome",
                    "typ": { "type": "Result", "ok": { "type": "U32" }, "err": { "type": "Str" } },
                },
                { "name": "done", "typ": { "type": "Result" } },
                { "name": "failed", "typ": { "type": "Result", "err": { "type": "S64" } } },
                { "name": "sent", "typ": { "type": "Result", "ok": { "type": "F32" } } },
            ],
        })
    );
}

#[test]
fn display_of_types_built_in_code() {
    let built = PayloadType::Record(vec![
        ("type".to_owned(), PayloadType::F32),
        (
            "maybe".to_owned(),
            PayloadType::Result {
                ok: None,
                err: Some(Box::new(PayloadType::Variant(vec![
                    ("enum".to_owned(), None),
                    (
                        "x".to_owned(),
                        Some(PayloadType::Flags(vec!["own".to_owned()])),
                    ),
                ]))),
            },
        ),
    ]);
    let text = built.to_string();
    assert_eq!(
        text,
        "record { %type: f32, maybe: result<_, variant { %enum, x(flags { %own }) }> }"
    );
    assert_eq!(PayloadType::parse(&text), Ok(built));
}

#[test]
fn from_str_and_serde_use_the_text() {
    let text = "record { approved: bool, note: option<string> }";
    let parsed: Result<PayloadType, _> = "record{approved:bool,note:option<string>,}".parse();
    assert_eq!(parsed, Ok(ty(text)));

    let json = serde_json::to_value(ty(text)).ok();
    assert_eq!(json, Some(json!(text)));
    let back: Option<PayloadType> = serde_json::from_value(json!(text)).ok();
    assert_eq!(back, Some(ty(text)));

    let error = serde_json::from_value::<PayloadType>(json!("list<u8")).err();
    assert_eq!(
        error.map(|e| e.to_string()).as_deref(),
        Some("at 7: expected `>`, found end of input")
    );
}
