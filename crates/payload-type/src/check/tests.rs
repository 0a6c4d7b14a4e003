use serde_json::json;

use super::*;

fn ty(text: &str) -> PayloadType {
    match PayloadType::parse(text) {
        Ok(ty) => ty,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

/// The canonical form of `value`, which must have type `text`.
fn ok(text: &str, value: Value) -> Value {
    match ty(text).check(&value) {
        Ok(canonical) => canonical,
        Err(e) => panic!("{value} should have type {text}: {e}"),
    }
}

/// The error for `value`, which must not have type `text`.
fn err(text: &str, value: Value) -> String {
    match ty(text).check(&value) {
        Ok(canonical) => panic!("{value} should not have type {text}, but gave {canonical}"),
        Err(e) => e.to_string(),
    }
}

/// Checks a table of values that are their own canonical form.
fn accepts(text: &str, values: &[Value]) {
    for value in values {
        assert_eq!(&ok(text, value.clone()), value, "{text}");
    }
}

/// Checks a table of refused values and their messages.
fn refuses(text: &str, cases: &[(Value, &str)]) {
    for (value, message) in cases {
        assert_eq!(err(text, value.clone()), *message, "{text}: {value}");
    }
}

#[test]
fn bool() {
    accepts("bool", &[json!(true), json!(false)]);
    refuses(
        "bool",
        &[
            (json!("yes"), "expected bool, got string"),
            (json!(null), "expected bool, got null"),
            (json!(1), "expected bool, got number"),
            (json!([]), "expected bool, got array"),
            (json!({}), "expected bool, got object"),
        ],
    );
}

#[test]
fn integer_ranges() {
    accepts("u8", &[json!(0), json!(255)]);
    accepts("u16", &[json!(65_535)]);
    accepts("u32", &[json!(4_294_967_295_u32)]);
    accepts("u64", &[json!(u64::MAX)]);
    accepts("s8", &[json!(-128), json!(127)]);
    accepts("s16", &[json!(-32_768), json!(32_767)]);
    accepts("s32", &[json!(i32::MIN), json!(i32::MAX)]);
    accepts("s64", &[json!(i64::MIN), json!(i64::MAX)]);
    refuses(
        "u8",
        &[
            (json!(256), "expected u8, got 256 (out of range)"),
            (json!(-1), "expected u8, got -1 (out of range)"),
            (json!(1.5), "expected u8, got 1.5 (not an integer)"),
            (json!(300.0), "expected u8, got 300.0 (out of range)"),
            (
                json!(100.0),
                "expected u8, got 100.0 (write integers without a fraction or exponent)",
            ),
            (json!("5"), "expected u8, got string"),
            (json!(true), "expected u8, got bool"),
            (json!(null), "expected u8, got null"),
        ],
    );
    refuses(
        "u16",
        &[(json!(65_536), "expected u16, got 65536 (out of range)")],
    );
    refuses(
        "u32",
        &[(
            json!(4_294_967_296_u64),
            "expected u32, got 4294967296 (out of range)",
        )],
    );
    refuses(
        "s8",
        &[
            (json!(-129), "expected s8, got -129 (out of range)"),
            (json!(128), "expected s8, got 128 (out of range)"),
        ],
    );
    refuses(
        "s16",
        &[(json!(32_768), "expected s16, got 32768 (out of range)")],
    );
    refuses(
        "s32",
        &[(
            json!(2_147_483_648_u32),
            "expected s32, got 2147483648 (out of range)",
        )],
    );
    refuses(
        "s64",
        &[(
            json!(9_223_372_036_854_775_808_u64),
            "expected s64, got 9223372036854775808 (out of range)",
        )],
    );
}

#[test]
fn sixty_four_bit_integers_from_strings() {
    assert_eq!(ok("u64", json!("18446744073709551615")), json!(u64::MAX));
    assert_eq!(ok("u64", json!("007")), json!(7));
    assert_eq!(ok("u64", json!("-0")), json!(0));
    assert_eq!(ok("s64", json!("-9223372036854775808")), json!(i64::MIN));
    assert_eq!(ok("s64", json!("42")), json!(42));
    refuses(
        "u64",
        &[
            (
                json!("18446744073709551616"),
                "expected u64, got \"18446744073709551616\" (out of range)",
            ),
            (json!("-1"), "expected u64, got \"-1\" (out of range)"),
            (
                json!("1".repeat(60)),
                "expected u64, got \"1111111111111111111111111111111111111111\"… (out of range)",
            ),
            (json!("abc"), "expected u64, got \"abc\""),
            (json!("+1"), "expected u64, got \"+1\""),
            (json!(" 1"), "expected u64, got \" 1\""),
            (json!("1.0"), "expected u64, got \"1.0\""),
            (json!(""), "expected u64, got \"\""),
            (json!("-"), "expected u64, got \"-\""),
        ],
    );
    refuses(
        "s64",
        &[(
            json!("9223372036854775808"),
            "expected s64, got \"9223372036854775808\" (out of range)",
        )],
    );
    // Beyond 64 bits serde_json reads a number as a float.
    let huge: Value = serde_json::from_str("18446744073709551616").unwrap_or_default();
    assert_eq!(
        err("u64", huge),
        "expected u64, got 1.8446744073709552e+19 (out of range)"
    );
}

#[test]
fn floats() {
    accepts(
        "f64",
        &[
            json!(1.5),
            json!(-0.0),
            json!(1e308),
            json!("NaN"),
            json!("Infinity"),
            json!("-Infinity"),
        ],
    );
    accepts(
        "f32",
        &[
            json!(0.1),
            json!(3.402_823_5e38),
            json!("NaN"),
            json!("-Infinity"),
        ],
    );
    // Integers become floating-point numbers.
    assert_eq!(ok("f64", json!(3)), json!(3.0));
    assert_eq!(ok("f64", json!(-3)), json!(-3.0));
    // An f32 is rounded to the nearest f32, written as its shortest decimal.
    assert_eq!(ok("f32", json!(0.123_456_789_123)), json!(0.123_456_79));
    assert_eq!(ok("float32", json!(16_777_217)), json!(16_777_216.0));
    refuses(
        "f64",
        &[
            (json!("x"), "expected f64, got \"x\""),
            (json!("nan"), "expected f64, got \"nan\""),
            (json!("inf"), "expected f64, got \"inf\""),
            (json!(true), "expected f64, got bool"),
            (json!(null), "expected f64, got null"),
        ],
    );
    refuses(
        "f32",
        &[
            (json!(1e39), "expected f32, got 1e+39 (out of range)"),
            (json!(-1e39), "expected f32, got -1e+39 (out of range)"),
            (json!([]), "expected f32, got array"),
        ],
    );
}

#[test]
fn chars_and_strings() {
    accepts(
        "char",
        &[json!("a"), json!("é"), json!("😀"), json!("\u{0}")],
    );
    assert_eq!(ok("char", json!(97)), json!("a"));
    assert_eq!(ok("char", json!(0x1F600)), json!("😀"));
    refuses(
        "char",
        &[
            (json!("ab"), "expected char, got \"ab\" (not one character)"),
            (json!(""), "expected char, got \"\" (not one character)"),
            (
                json!("e\u{301}"),
                "expected char, got \"e\u{301}\" (not one character)",
            ),
            (
                json!(0xD800),
                "expected char, got 55296 (not a Unicode scalar value)",
            ),
            (
                json!(0x11_0000),
                "expected char, got 1114112 (not a Unicode scalar value)",
            ),
            (
                json!(-1),
                "expected char, got -1 (not a Unicode scalar value)",
            ),
            (
                json!(97.0),
                "expected char, got 97.0 (not a Unicode scalar value)",
            ),
            (json!(true), "expected char, got bool"),
        ],
    );
    accepts("string", &[json!(""), json!("hello, world"), json!("😀")]);
    refuses(
        "string",
        &[
            (json!(5), "expected string, got number"),
            (json!(null), "expected string, got null"),
        ],
    );
}

#[test]
fn lists_and_tuples() {
    accepts("list<u8>", &[json!([]), json!([1, 2, 3])]);
    accepts("list<list<string>>", &[json!([[], ["a"], ["b", "c"]])]);
    accepts("tuple<u8, string, bool>", &[json!([1, "a", true])]);
    assert_eq!(
        err(
            "record { items: list<u8> }",
            json!({ "items": [1, 2, 3, 300] })
        ),
        "items[3]: expected u8, got 300 (out of range)"
    );
    refuses(
        "list<u8>",
        &[
            (json!({}), "expected list<u8>, got object"),
            (json!("abc"), "expected list<u8>, got string"),
            (json!([1, -1]), "[1]: expected u8, got -1 (out of range)"),
        ],
    );
    refuses(
        "list<list<u8>>",
        &[(json!([[1], [2, "x"]]), "[1][1]: expected u8, got string")],
    );
    refuses(
        "tuple<u8, string>",
        &[
            (
                json!([1]),
                "expected tuple<u8, string>, got an array of 1 element",
            ),
            (
                json!([1, "a", 2]),
                "expected tuple<u8, string>, got an array of 3 elements",
            ),
            (json!([1, 5]), "[1]: expected string, got number"),
            (json!({}), "expected tuple<u8, string>, got object"),
        ],
    );
}

const APPROVAL: &str = "record { approved: bool, note: option<string> }";

#[test]
fn records() {
    assert_eq!(
        ok(APPROVAL, json!({ "approved": true })),
        json!({ "approved": true, "note": null })
    );
    accepts(
        APPROVAL,
        &[
            json!({ "approved": false, "note": null }),
            json!({ "approved": true, "note": "fine" }),
        ],
    );
    refuses(
        APPROVAL,
        &[
            (
                json!({ "approved": "yes" }),
                "approved: expected bool, got string",
            ),
            (
                json!({ "note": "x" }),
                "approved: missing field (expected bool)",
            ),
            (
                json!({ "approved": true, "notes": "x" }),
                "notes: unknown field (expected one of: approved, note)",
            ),
            (
                json!({ "approved": true, "Bad key": 1 }),
                "[\"Bad key\"]: unknown field (expected one of: approved, note)",
            ),
            (
                json!({ "approved": true, "note": 5 }),
                "note: expected string, got number",
            ),
            (
                json!([true, null]),
                "expected record { approved: bool, note: option<string> }, got array",
            ),
        ],
    );
    assert_eq!(
        err(
            "record { a: record { b: u8 } }",
            json!({ "a": { "b": 1, "c": 2 } })
        ),
        "a.c: unknown field (expected one of: b)"
    );
    assert_eq!(
        err("list<record { b: u8 }>", json!([{ "b": 1 }, {}])),
        "[1].b: missing field (expected u8)"
    );
    // Long types are named by their outer form.
    assert_eq!(
        err(
            "record { first-field: string, second-field: string, third: u8 }",
            json!(null)
        ),
        "expected record { … }, got null"
    );
    assert_eq!(
        err(
            "list<record { first-field: string, second-field: string, third: u8 }>",
            json!(null)
        ),
        "expected list<…>, got null"
    );
}

const SHAPE: &str = "record { shape: variant { none, circle(f64), rect(tuple<f64, f64>) } }";

#[test]
fn variants() {
    accepts(
        SHAPE,
        &[
            json!({ "shape": { "circle": 1.5 } }),
            json!({ "shape": { "rect": [1.0, 2.0] } }),
            json!({ "shape": { "none": null } }),
        ],
    );
    assert_eq!(
        ok(SHAPE, json!({ "shape": "none" })),
        json!({ "shape": { "none": null } })
    );
    let variant = "variant { none, circle(f64), rect(tuple<f64, f64>) }";
    refuses(
        SHAPE,
        &[
            (
                json!({ "shape": { "circle": "x" } }),
                "shape.circle: expected f64, got \"x\"",
            ),
            (
                json!({ "shape": { "rect": [1.0] } }),
                "shape.rect: expected tuple<f64, f64>, got an array of 1 element",
            ),
            (
                json!({ "shape": { "rect": [1.0, true] } }),
                "shape.rect[1]: expected f64, got bool",
            ),
            (
                json!({ "shape": { "none": 1 } }),
                "shape.none: expected null (case \"none\" has no payload), got number",
            ),
            (
                json!({ "shape": "circle" }),
                "shape: case \"circle\" needs a payload of type f64",
            ),
            (
                json!({ "shape": "square" }),
                "shape: unknown case \"square\" (expected one of: none, circle, rect)",
            ),
            (
                json!({ "shape": { "square": 1 } }),
                "shape: unknown case \"square\" (expected one of: none, circle, rect)",
            ),
            (
                json!({ "shape": 5 }),
                &format!("shape: expected {variant}, got number"),
            ),
            (
                json!({ "shape": { "circle": 1.0, "none": null } }),
                &format!(
                    "shape: expected {variant} (an object with one key, the case), got an object with 2 keys"
                ),
            ),
            (
                json!({ "shape": {} }),
                &format!(
                    "shape: expected {variant} (an object with one key, the case), got an object with 0 keys"
                ),
            ),
        ],
    );
    // A null payload is a value when the payload is an option.
    assert_eq!(
        ok("variant { maybe(option<u8>) }", json!({ "maybe": null })),
        json!({ "maybe": null })
    );
    assert_eq!(
        err("variant { maybe(option<u8>) }", json!("maybe")),
        "case \"maybe\" needs a payload of type option<u8>"
    );
}

#[test]
fn enums() {
    accepts("enum { red, green }", &[json!("red"), json!("green")]);
    refuses(
        "enum { red, green }",
        &[
            (
                json!("pink"),
                "unknown case \"pink\" (expected one of: red, green)",
            ),
            (json!(0), "expected enum { red, green }, got number"),
            (
                json!({ "red": null }),
                "expected enum { red, green }, got object",
            ),
        ],
    );
}

#[test]
fn options() {
    accepts("option<u8>", &[json!(null), json!(5)]);
    accepts("list<option<u8>>", &[json!([null, 1])]);
    refuses(
        "list<option<u8>>",
        &[(json!([null, 1, "x"]), "[2]: expected u8, got string")],
    );
    refuses("option<u8>", &[(json!("x"), "expected u8, got string")]);
    // The encoding cannot tell `none` from `some(none)`: both are null.
    assert_eq!(ok("option<option<u8>>", json!(null)), json!(null));
    assert_eq!(ok("option<option<u8>>", json!(7)), json!(7));
}

#[test]
fn results() {
    let full = "result<u8, string>";
    accepts(full, &[json!({ "ok": 1 }), json!({ "err": "bad" })]);
    refuses(
        full,
        &[
            (json!({ "ok": "x" }), "ok: expected u8, got string"),
            (json!({ "err": 1 }), "err: expected string, got number"),
            (json!("ok"), "case \"ok\" needs a payload of type u8"),
            (
                json!({ "maybe": 1 }),
                "unknown case \"maybe\" (expected one of: ok, err)",
            ),
            (json!(5), "expected result<u8, string>, got number"),
        ],
    );
    assert_eq!(
        err(
            "record { r: list<result<u8>> }",
            json!({ "r": [{ "ok": -1 }] })
        ),
        "r[0].ok: expected u8, got -1 (out of range)"
    );

    let bare = "result";
    accepts(bare, &[json!({ "ok": null }), json!({ "err": null })]);
    assert_eq!(ok(bare, json!("ok")), json!({ "ok": null }));
    assert_eq!(ok(bare, json!("err")), json!({ "err": null }));
    refuses(
        bare,
        &[(
            json!({ "ok": 1 }),
            "ok: expected null (case \"ok\" has no payload), got number",
        )],
    );

    let err_only = "result<_, string>";
    assert_eq!(ok(err_only, json!("ok")), json!({ "ok": null }));
    accepts(err_only, &[json!({ "err": "x" })]);
    refuses(
        err_only,
        &[(json!("err"), "case \"err\" needs a payload of type string")],
    );
}

#[test]
fn flags() {
    let text = "flags { read, write, exec }";
    assert_eq!(ok(text, json!(["exec", "read"])), json!(["read", "exec"]));
    accepts(text, &[json!([]), json!(["read", "write", "exec"])]);
    refuses(
        text,
        &[
            (json!(["read", "read"]), "[1]: duplicate flag \"read\""),
            (
                json!(["read", "delete"]),
                "[1]: unknown flag \"delete\" (expected one of: read, write, exec)",
            ),
            (json!([1]), "[0]: expected flag name, got number"),
            (
                json!("read"),
                "expected flags { read, write, exec }, got string",
            ),
        ],
    );
}

#[test]
fn check_bytes() {
    let approval = ty(APPROVAL);
    assert_eq!(
        approval.check_bytes(br#"{"approved": true}"#).ok(),
        Some(json!({ "approved": true, "note": null }))
    );
    let message = |bytes: &[u8]| approval.check_bytes(bytes).err().map(|e| e.to_string());
    assert_eq!(
        message(b"\xff").as_deref(),
        Some("payload is not JSON: invalid utf-8 sequence of 1 bytes from index 0")
    );
    assert_eq!(
        message(b"").as_deref(),
        Some("payload is not JSON: EOF while parsing a value at line 1 column 0")
    );
    assert_eq!(
        message(b"{\"approved\": true} x").as_deref(),
        Some("payload is not JSON: trailing characters at line 1 column 20")
    );
    assert_eq!(
        message(br#"{"approved": 1}"#).as_deref(),
        Some("approved: expected bool, got number")
    );
    // serde_json stops at 128 levels.
    assert_eq!(
        message("[".repeat(10_000).as_bytes()).as_deref(),
        Some("payload is not JSON: recursion limit exceeded at line 1 column 128")
    );
}

/// A value `n` arrays deep around `0`.
fn nested_arrays(n: usize) -> Value {
    (0..n).fold(json!(0), |inner, _| json!([inner]))
}

#[test]
fn nesting_limit() {
    // A parsed type is at most 64 deep, and so are its values.
    let deepest = format!("{}u8{}", "list<".repeat(MAX_DEPTH), ">".repeat(MAX_DEPTH));
    assert_eq!(
        ok(&deepest, nested_arrays(MAX_DEPTH)),
        nested_arrays(MAX_DEPTH)
    );
    // A value deeper than its type fails where it stops matching.
    assert_eq!(
        err("list<u8>", nested_arrays(100)),
        "[0]: expected u8, got array"
    );
    // A type built in code may be deeper; checking stops at the limit.
    let deep = (0..100).fold(PayloadType::U8, |inner, _| {
        PayloadType::List(Box::new(inner))
    });
    let error = deep.check(&nested_arrays(100)).err();
    assert_eq!(
        error.as_ref().map(ValueError::path),
        Some("[0]".repeat(MAX_DEPTH + 1).as_str())
    );
    assert_eq!(
        error.as_ref().map(ValueError::message),
        Some("value nested more than 64 levels deep")
    );
}

#[test]
fn canonical_form_is_a_fixed_point() {
    let text = "record { id: u64, shape: variant { none, circle(f64) }, \
                tags: flags { a, b }, at: char, ratio: f32, extra: option<s64> }";
    let canonical = ok(
        text,
        json!({
            "id": "18446744073709551615",
            "shape": "none",
            "tags": ["b", "a"],
            "at": 97,
            "ratio": "NaN",
        }),
    );
    assert_eq!(
        canonical,
        json!({
            "id": u64::MAX,
            "shape": { "none": null },
            "tags": ["a", "b"],
            "at": "a",
            "ratio": "NaN",
            "extra": null,
        })
    );
    assert_eq!(ok(text, canonical.clone()), canonical);
}

#[test]
fn error_parts() {
    let error = ty(APPROVAL).check(&json!({ "approved": 1 })).err();
    assert_eq!(error.as_ref().map(ValueError::path), Some("approved"));
    assert_eq!(
        error.as_ref().map(ValueError::message),
        Some("expected bool, got number")
    );
    let error = ty("bool").check(&json!(1)).err();
    assert_eq!(error.as_ref().map(ValueError::path), Some(""));
}
