use super::*;

fn parse_ok(text: &str) -> PayloadType {
    match parse(text) {
        Ok(ty) => ty,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn parse_err(text: &str) -> String {
    match parse(text) {
        Ok(ty) => panic!("{text:?} should not parse, but gave {ty:?}"),
        Err(e) => e.to_string(),
    }
}

fn boxed(ty: PayloadType) -> Option<Box<PayloadType>> {
    Some(Box::new(ty))
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn primitives() {
    let cases = [
        ("bool", PayloadType::Bool),
        ("u8", PayloadType::U8),
        ("u16", PayloadType::U16),
        ("u32", PayloadType::U32),
        ("u64", PayloadType::U64),
        ("s8", PayloadType::S8),
        ("s16", PayloadType::S16),
        ("s32", PayloadType::S32),
        ("s64", PayloadType::S64),
        ("f32", PayloadType::F32),
        ("f64", PayloadType::F64),
        ("float32", PayloadType::F32),
        ("float64", PayloadType::F64),
        ("char", PayloadType::Char),
        ("string", PayloadType::String),
    ];
    for (text, ty) in cases {
        assert_eq!(parse_ok(text), ty, "{text}");
    }
}

#[test]
fn composite_forms() {
    let cases = [
        ("list<u8>", PayloadType::List(Box::new(PayloadType::U8))),
        (
            "option<string>",
            PayloadType::Option(Box::new(PayloadType::String)),
        ),
        (
            "result",
            PayloadType::Result {
                ok: None,
                err: None,
            },
        ),
        (
            "result<u32>",
            PayloadType::Result {
                ok: boxed(PayloadType::U32),
                err: None,
            },
        ),
        (
            "result<u32, string>",
            PayloadType::Result {
                ok: boxed(PayloadType::U32),
                err: boxed(PayloadType::String),
            },
        ),
        (
            "result<_, string>",
            PayloadType::Result {
                ok: None,
                err: boxed(PayloadType::String),
            },
        ),
        (
            "tuple<u8, string, bool>",
            PayloadType::Tuple(vec![
                PayloadType::U8,
                PayloadType::String,
                PayloadType::Bool,
            ]),
        ),
        (
            "record { approved: bool, note: option<string> }",
            PayloadType::Record(vec![
                ("approved".to_owned(), PayloadType::Bool),
                (
                    "note".to_owned(),
                    PayloadType::Option(Box::new(PayloadType::String)),
                ),
            ]),
        ),
        (
            "variant { none, circle(f64), rect(tuple<f64, f64>) }",
            PayloadType::Variant(vec![
                ("none".to_owned(), None),
                ("circle".to_owned(), Some(PayloadType::F64)),
                (
                    "rect".to_owned(),
                    Some(PayloadType::Tuple(vec![PayloadType::F64, PayloadType::F64])),
                ),
            ]),
        ),
        (
            "enum { low, mid-2, high }",
            PayloadType::Enum(names(&["low", "mid-2", "high"])),
        ),
        (
            "flags { read, write }",
            PayloadType::Flags(names(&["read", "write"])),
        ),
    ];
    for (text, ty) in cases {
        assert_eq!(parse_ok(text), ty, "{text}");
    }
}

/// Canonical text prints back exactly, and the printed text parses back
/// to the same type.
#[test]
fn canonical_text_round_trips() {
    let texts = [
        "bool",
        "u8",
        "u16",
        "u32",
        "u64",
        "s8",
        "s16",
        "s32",
        "s64",
        "f32",
        "f64",
        "char",
        "string",
        "list<list<u8>>",
        "option<option<char>>",
        "result",
        "result<u8>",
        "result<_, string>",
        "result<list<u8>, result>",
        "tuple<u8>",
        "tuple<s64, tuple<bool, f32>>",
        "record { approved: bool, note: option<string> }",
        "record { a: record { b: record { c: u8 } } }",
        "variant { a, b(u8), c(record { x: f64 }) }",
        "enum { a }",
        "enum { red, green-2, blue }",
        "flags { read, write, exec }",
        "record { %type: u8, %record: enum { %u8, %list }, float32: f32 }",
        "variant { %result(result), %enum }",
        "flags { %use, %interface }",
    ];
    for text in texts {
        let ty = parse_ok(text);
        assert_eq!(ty.to_string(), text);
        assert_eq!(parse_ok(&ty.to_string()), ty, "{text}");
    }
}

#[test]
fn whitespace_comments_and_trailing_commas() {
    let text = "  // the payload\n record{approved:bool,/* later:\n /* nested */ u8, */\n\
                note :option < string > , // trailing comma\n}\r\n\t";
    let ty = parse_ok(text);
    assert_eq!(
        ty.to_string(),
        "record { approved: bool, note: option<string> }"
    );
    assert_eq!(parse_ok("tuple<u8,>").to_string(), "tuple<u8>");
    assert_eq!(parse_ok("enum{a,}").to_string(), "enum { a }");
    assert_eq!(parse_ok("flags{a,b,}").to_string(), "flags { a, b }");
    assert_eq!(
        parse_ok("variant{a(u8),b,}").to_string(),
        "variant { a(u8), b }"
    );
    assert_eq!(parse_ok("u8// no newline").to_string(), "u8");
    assert_eq!(parse_ok("result<_,u8>").to_string(), "result<_, u8>");
}

#[test]
fn escaped_names() {
    assert_eq!(
        parse_ok("record { %type: u8, %plain: u8 }"),
        PayloadType::Record(vec![
            ("type".to_owned(), PayloadType::U8),
            ("plain".to_owned(), PayloadType::U8),
        ])
    );
    // An escape is only needed for keywords; printing adds it only there.
    assert_eq!(
        parse_ok("enum { %plain, %error-context }").to_string(),
        "enum { plain, %error-context }"
    );
}

#[test]
fn errors() {
    let cases = [
        ("", "at 0: expected type, found end of input"),
        ("   ", "at 3: expected type, found end of input"),
        ("option<string, u8>", "at 13: expected `>`, found `,`"),
        ("list<u8", "at 7: expected `>`, found end of input"),
        ("list u8", "at 5: expected `<`, found `u8`"),
        ("list<>", "at 5: expected type, found `>`"),
        ("list<@>", "at 5: expected type, found `@`"),
        ("list<é>", "at 5: expected type, found `é`"),
        ("list<\u{0}>", "at 5: expected type, found `\\0`"),
        ("u8 u8", "at 3: expected end of input, found `u8`"),
        ("u8>", "at 2: expected end of input, found `>`"),
        ("%", "at 0: expected type, found `%`"),
        ("interface", "at 0: expected type, found `interface`"),
        ("U8", "at 0: expected type, found `U8`"),
        ("7", "at 0: expected type, found `7`"),
        ("_", "at 0: expected type, found `_`"),
        (
            "list<point>",
            "at 5: unknown type `point` (a payload type is written out inline; it cannot refer to named types)",
        ),
        (
            "%u8",
            "at 0: unknown type `%u8` (a payload type is written out inline; it cannot refer to named types)",
        ),
        (
            "option<future<u8>>",
            "at 7: `future` has no JSON form and cannot be a payload type",
        ),
        (
            "own<r>",
            "at 0: `own` has no JSON form and cannot be a payload type",
        ),
        (
            "map<string, u8>",
            "at 0: `map` is not supported in payload types (use `list<tuple<K, V>>`)",
        ),
        ("result<_>", "at 8: expected `,`, found `>`"),
        ("result<u8 u16>", "at 10: expected `,` or `>`, found `u16`"),
        ("result<u8, u16, u32>", "at 14: expected `>`, found `,`"),
        ("result<>", "at 7: expected type or `_`, found `>`"),
        ("result<u8,>", "at 10: expected type, found `>`"),
        ("tuple<u8 u8>", "at 9: expected `,` or `>`, found `u8`"),
        ("tuple<,>", "at 6: expected type, found `,`"),
        ("record a: u8", "at 7: expected `{`, found `a`"),
        ("record { a u8 }", "at 11: expected `:`, found `u8`"),
        (
            "record { a: u8 b: u8 }",
            "at 15: expected `,` or `}`, found `b`",
        ),
        ("record { , }", "at 9: expected field name, found `,`"),
        (
            "record { a: u8",
            "at 14: expected `,` or `}`, found end of input",
        ),
        (
            "variant { a b }",
            "at 12: expected `(`, `,` or `}`, found `b`",
        ),
        ("variant { a(u8 }", "at 15: expected `)`, found `}`"),
        ("variant { a() }", "at 12: expected type, found `)`"),
        ("enum { a b }", "at 9: expected `,` or `}`, found `b`"),
        ("flags { a: u8 }", "at 9: expected `,` or `}`, found `:`"),
        ("u8 /* open", "at 3: unterminated comment"),
        ("u8 /* /* */", "at 3: unterminated comment"),
    ];
    for (text, message) in cases {
        assert_eq!(parse_err(text), message, "{text:?}");
    }
}

#[test]
fn name_errors() {
    let cases = [
        (
            "record { type: u8 }",
            "at 9: expected field name, found keyword `type` (write `%type` to use it as a name)",
        ),
        (
            "variant { result }",
            "at 10: expected case name, found keyword `result` (write `%result` to use it as a name)",
        ),
        (
            "enum { u8 }",
            "at 7: expected case name, found keyword `u8` (write `%u8` to use it as a name)",
        ),
        (
            "flags { list }",
            "at 8: expected flag name, found keyword `list` (write `%list` to use it as a name)",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(parse_err(text), message, "{text:?}");
    }
    let rule = "(names are kebab-case: lowercase letters and digits, in words joined by `-`, \
                starting with a letter)";
    for (text, at, shown) in [
        ("record { Approved: bool }", 9, "`Approved`"),
        ("record { snake_case: bool }", 9, "`snake_case`"),
        ("record { 2nd: bool }", 9, "`2nd`"),
        ("record { a--b: bool }", 9, "`a--b`"),
        ("record { a-: bool }", 9, "`a-`"),
        ("record { %A: bool }", 9, "`%A`"),
        ("record { _: bool }", 9, "`_`"),
        ("enum { -a }", 7, "`-a`"),
    ] {
        assert_eq!(
            parse_err(text),
            format!("at {at}: invalid {} {shown} {rule}", {
                if text.starts_with("enum") {
                    "case name"
                } else {
                    "field name"
                }
            }),
            "{text:?}"
        );
    }
}

#[test]
fn duplicates_and_empty_forms() {
    let cases = [
        ("record { a: u8, a: u8 }", "at 16: duplicate field `a`"),
        ("record { a: u8, %a: u8 }", "at 16: duplicate field `a`"),
        ("variant { a, b(u8), b }", "at 20: duplicate case `b`"),
        ("enum { a, b, a }", "at 13: duplicate case `a`"),
        ("flags { x, x }", "at 11: duplicate flag `x`"),
        (
            "record {}",
            "at 0: empty record (a record needs at least one field)",
        ),
        (
            "list<variant { }>",
            "at 5: empty variant (a variant needs at least one case)",
        ),
        (
            "enum {}",
            "at 0: empty enum (an enum needs at least one case)",
        ),
        (
            "flags {}",
            "at 0: empty flags (flags need at least one flag)",
        ),
        (
            "tuple<>",
            "at 0: empty tuple (a tuple needs at least one type)",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(parse_err(text), message, "{text:?}");
    }
}

#[test]
fn at_most_32_flags() {
    let flags = |n: usize| {
        let names: Vec<String> = (0..n).map(|i| format!("flag{i}")).collect();
        format!("flags {{ {} }}", names.join(", "))
    };
    let ty = parse_ok(&flags(32));
    assert!(matches!(&ty, PayloadType::Flags(names) if names.len() == 32));
    let text = flags(33);
    let at = text.find("flag32").unwrap_or_default();
    assert_eq!(
        parse_err(&text),
        format!("at {at}: too many flags (at most 32)")
    );
}

/// `list<` `n` times around `u8`.
fn nested_lists(n: usize) -> String {
    format!("{}u8{}", "list<".repeat(n), ">".repeat(n))
}

#[test]
fn nesting_limit() {
    let mut ty = parse_ok(&nested_lists(MAX_DEPTH));
    let mut depth = 0;
    while let PayloadType::List(inner) = ty {
        depth += 1;
        ty = *inner;
    }
    assert_eq!((depth, ty), (MAX_DEPTH, PayloadType::U8));

    let text = nested_lists(MAX_DEPTH + 1);
    assert_eq!(
        parse_err(&text),
        format!(
            "at {}: types nested more than 64 levels deep",
            5 * (MAX_DEPTH + 1)
        )
    );
    // Every form counts, and hostile depth fails early without exhausting
    // the stack.
    let deep = "option<record { a: tuple<".repeat(20_000);
    assert_eq!(
        parse_err(&deep[..MAX_TEXT_LEN]),
        "at 544: types nested more than 64 levels deep"
    );
    let err = parse(&"list<".repeat(MAX_TEXT_LEN / 5)).err();
    assert_eq!(err.and_then(|e| e.offset()), Some(5 * (MAX_DEPTH + 1)));
}

#[test]
fn text_length_limit() {
    let padded = format!("{}u8", " ".repeat(MAX_TEXT_LEN - 2));
    assert_eq!(parse_ok(&padded), PayloadType::U8);
    let error = parse(&format!(" {padded}")).err();
    assert_eq!(
        error.as_ref().map(ToString::to_string).as_deref(),
        Some("type text is 65537 bytes long, more than the limit of 65536")
    );
    assert_eq!(error.and_then(|e| e.offset()), None);
}

#[test]
fn long_tokens_are_shortened_in_messages() {
    let word = "a".repeat(100);
    assert_eq!(
        parse_err(&format!("u8 {word}")),
        format!("at 3: expected end of input, found `{}…`", "a".repeat(40))
    );
}

#[test]
fn error_parts() {
    let error = parse("option<string, u8>").err();
    assert_eq!(error.as_ref().and_then(ParseError::offset), Some(13));
    assert_eq!(
        error.as_ref().map(ParseError::message),
        Some("expected `>`, found `,`")
    );
}

/// A small deterministic generator of types (no `rand` here): every
/// generated type prints as text that parses back to it.
#[test]
fn generated_types_round_trip() {
    struct Gen(u64);
    impl Gen {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
        fn name(&mut self, i: usize) -> String {
            const WORDS: &[&str] = &["a", "type", "x-1", "result", "long-name", "u8", "flags"];
            let word = WORDS.get(self.below(7) as usize).copied().unwrap_or("a");
            // Only the first name may be a bare word (a keyword, often),
            // so names stay unique.
            if i == 0 && self.below(2) == 0 {
                word.to_owned()
            } else {
                format!("{word}-{i}")
            }
        }
        fn names(&mut self) -> Vec<String> {
            (0..=self.below(3) as usize).map(|i| self.name(i)).collect()
        }
        fn ty(&mut self, depth: usize) -> PayloadType {
            let leaf = depth >= 6 || self.below(3) == 0;
            if leaf {
                return match self.below(13) {
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
                    _ => PayloadType::String,
                };
            }
            let d = depth + 1;
            match self.below(9) {
                0 => PayloadType::List(Box::new(self.ty(d))),
                1 => PayloadType::Option(Box::new(self.ty(d))),
                2 => PayloadType::Result {
                    ok: (self.below(2) == 0).then(|| Box::new(self.ty(d))),
                    err: (self.below(2) == 0).then(|| Box::new(self.ty(d))),
                },
                3 => PayloadType::Tuple((0..=self.below(3)).map(|_| self.ty(d)).collect()),
                4 => PayloadType::Record(
                    self.names()
                        .into_iter()
                        .map(|name| (name, self.ty(d)))
                        .collect(),
                ),
                5 => PayloadType::Variant(
                    self.names()
                        .into_iter()
                        .map(|name| (name, (self.below(2) == 0).then(|| self.ty(d))))
                        .collect(),
                ),
                6 => PayloadType::Enum(self.names()),
                7 => PayloadType::Flags(self.names()),
                _ => self.ty(d),
            }
        }
    }
    let mut generator = Gen(7);
    for _ in 0..2_000 {
        let ty = generator.ty(0);
        let text = ty.to_string();
        assert_eq!(parse_ok(&text), ty, "{text}");
    }
}
