//! Golem 1.1's type-annotated values on `invoke-and-await`: every kind of
//! WIT value in and out, Golem's exact bytes, and the errors.

use anyhow::Result;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::App;

async fn harness_worker(name: &str) -> Result<(App, String)> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, name).await?;
    Ok((app, cid))
}

/// The `kinds` record of the harness, as Golem's `AnalysedType`.
fn kinds_type() -> Value {
    let prim = |t: &str| json!({ "type": t });
    let field = |name: &str, typ: Value| json!({ "name": name, "typ": typ });
    let shape = json!({
        "type": "Variant",
        "cases": [
            { "name": "point" },
            { "name": "circle", "typ": prim("F64") },
            { "name": "named", "typ": prim("Str") },
        ],
    });
    json!({
        "type": "Record",
        "fields": [
            field("b", prim("Bool")),
            field("u8v", prim("U8")),
            field("s8v", prim("S8")),
            field("u16v", prim("U16")),
            field("s16v", prim("S16")),
            field("u32v", prim("U32")),
            field("s32v", prim("S32")),
            field("u64v", prim("U64")),
            field("s64v", prim("S64")),
            field("f32v", prim("F32")),
            field("f64v", prim("F64")),
            field("c", prim("Chr")),
            field("text", prim("Str")),
            field("items", json!({ "type": "List", "inner": prim("U16") })),
            field("pair", json!({ "type": "Tuple", "items": [prim("U8"), prim("Str")] })),
            field("shape", shape.clone()),
            field("color", json!({ "type": "Enum", "cases": ["red", "green", "blue"] })),
            field("perms", json!({ "type": "Flags", "names": ["read", "write", "exec"] })),
            field("maybe", json!({ "type": "Option", "inner": prim("Str") })),
            field("outcome", json!({ "type": "Result", "ok": prim("U32"), "err": prim("Str") })),
            field("done", json!({ "type": "Result" })),
            field("nested", json!({ "type": "List", "inner": { "type": "Option", "inner": shape } })),
        ],
    })
}

/// A `kinds` value in Golem's encoding, with every extreme that matters.
fn kinds_value(shape: Value, outcome: Value, maybe: Value) -> Value {
    json!({
        "b": true,
        "u8v": 255,
        "s8v": -128,
        "u16v": 65535,
        "s16v": -32768,
        "u32v": 4_294_967_295u32,
        "s32v": -2_147_483_648i32,
        "u64v": u64::MAX,
        "s64v": i64::MIN,
        "f32v": 1.5,
        "f64v": 0.1,
        "c": 128_512,
        "text": "héllo \"w\"\n",
        "items": [1, 2, 65535],
        "pair": [7, "seven"],
        "shape": shape,
        "color": "green",
        "perms": ["read", "exec"],
        "maybe": maybe,
        "outcome": outcome,
        "done": { "ok": null },
        "nested": [null, { "point": null }, { "named": "n" }],
    })
}

#[tokio::test]
async fn every_kind_of_value_round_trips_in_the_type_annotated_form() -> Result<()> {
    let (app, cid) = harness_worker("w").await?;
    let cases = [
        (json!({ "point": null }), json!({ "ok": 3 }), json!(null)),
        (
            json!({ "circle": 2.5 }),
            json!({ "err": "bad" }),
            json!("some"),
        ),
        (json!({ "named": "x" }), json!({ "ok": 0 }), json!("")),
    ];
    for (shape, outcome, maybe) in cases {
        let value = kinds_value(shape, outcome, maybe);
        let param = json!({ "typ": kinds_type(), "value": value });
        let (status, body) = app
            .invoke_raw(&cid, "w", "echo-kinds", json!([param]))
            .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        let body: Value = serde_json::from_str(&body)?;
        assert_eq!(
            body,
            json!({
                "result": {
                    "typ": { "type": "Tuple", "items": [kinds_type()] },
                    "value": [value],
                }
            })
        );
    }
    Ok(())
}

/// Golem sends compact JSON with every object's keys sorted; a char is its
/// code point and an f32 the f64 it widens to.
#[tokio::test]
async fn typed_answers_are_golems_bytes() -> Result<()> {
    let (app, cid) = harness_worker("w").await?;
    let (status, body) = app
        .invoke_raw(
            &cid,
            "w",
            "ping",
            json!([{ "typ": { "type": "U32" }, "value": 41 }]),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"result":{"typ":{"items":[{"type":"U32"}],"type":"Tuple"},"value":[42]}}"#
    );

    // No parameters and no result: an empty tuple.
    let (status, body) = app.invoke_raw(&cid, "w", "nothing", json!([])).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"result":{"typ":{"items":[],"type":"Tuple"},"value":[]}}"#
    );

    // Key order in the request does not matter; a result type may leave
    // out `ok`/`err` it does not have, and a unit case its `typ`.
    let mut value = kinds_value(json!({ "circle": 0.1 }), json!({ "ok": 1 }), json!(null));
    value["f32v"] = json!(0.1);
    value["c"] = json!(97);
    let mut typ = kinds_type();
    typ["fields"][20]["typ"] = json!({ "type": "Result" });
    typ["fields"][15]["typ"]["cases"][0] = json!({ "name": "point" });
    let (status, body) = app
        .invoke_raw(
            &cid,
            "w",
            "echo-kinds",
            json!([{ "value": value, "typ": typ }]),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(
            r#""c":97,"color":"green","done":{"ok":null},"f32v":0.10000000149011612,"f64v":0.1,"#
        ),
        "{body}"
    );
    assert!(
        body.contains(r#"{"name":"done","typ":{"type":"Result"}}"#),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn wrong_typed_arguments_are_400_naming_the_parameter() -> Result<()> {
    let (app, cid) = harness_worker("w").await?;
    let errors = |body: &str| -> Result<Vec<String>> {
        let body: Value = serde_json::from_str(body)?;
        Ok(serde_json::from_value(body["errors"].clone())?)
    };

    let (status, body) = app
        .invoke_raw(
            &cid,
            "w",
            "ping",
            json!([{ "typ": { "type": "Str" }, "value": "x" }]),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(&body)?,
        vec![
            r#"params[0]: the value is annotated with type {"type":"Str"} but the parameter is u32 ({"type":"U32"})"#
        ]
    );

    let (status, body) = app
        .invoke_raw(
            &cid,
            "w",
            "ping",
            json!([{ "typ": { "type": "U32" }, "value": -1 }]),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(errors(&body)?, vec!["params[0]: expected u32, got -1"]);

    let (status, body) = app
        .invoke_raw(
            &cid,
            "w",
            "double-complete",
            json!([{ "typ": { "type": "List", "inner": { "type": "U8" } }, "value": [1] }, [2]]),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        errors(&body)?[0].starts_with("params[1] is not a type-annotated value"),
        "{body}"
    );

    let (status, body) = app.invoke_raw(&cid, "w", "ping", json!([])).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(&body)?,
        vec!["ping takes 1 parameter(s) (n: u32), got 0"]
    );
    Ok(())
}

/// Vow's own forms stay: plain JSON (`params_json`) and WAVE answer plain
/// JSON; `params` is Golem's form only.
#[tokio::test]
async fn plain_json_forms_answer_plain_json() -> Result<()> {
    let (app, cid) = harness_worker("w").await?;
    let uri = crate::support::invoke_uri(&cid, "w", "ping");
    for body in [
        json!({ "params_json": [1] }),
        json!({ "params_wave": ["1"] }),
    ] {
        assert_eq!(
            app.post(&uri, &body).await?,
            (StatusCode::OK, json!({ "result": 2 })),
            "{body}"
        );
    }
    let (status, body) = app
        .post(&uri, &json!({ "params": [1], "params_wave": ["1"] }))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app.post(&uri, &json!({ "params": [1] })).await?;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({ "errors": ["params[0] is not a type-annotated value ({\"typ\": ..., \"value\": ...}); plain JSON arguments go in params_json"] })
        )
    );
    Ok(())
}

/// Handles have no type-annotated form: a function that takes one is
/// refused with a message naming the type, and runs nothing.
#[tokio::test]
async fn handles_are_refused_with_a_clear_error() -> Result<()> {
    let (app, cid) = harness_worker("w").await?;
    let typed = json!({ "typ": { "type": "Handle", "resource_id": 0, "mode": "Borrowed" }, "value": "urn:worker:x/w/1" });
    let (status, body) = app
        .invoke_raw(&cid, "w", "take-handle", json!([typed]))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let body: Value = serde_json::from_str(&body)?;
    let message = body["errors"][0].as_str().unwrap_or_default();
    assert!(
        message.starts_with("params[0]: borrow<")
            && message.contains("has no type-annotated form in Vow"),
        "{body}"
    );
    Ok(())
}
