//! The parser of WIT type expressions behind [`PayloadType::parse`].
//!
//! A hand-written recursive-descent parser over a lexer that works on
//! demand. Recursion follows the nesting of the type, which is capped at
//! [`MAX_DEPTH`], so hostile text cannot exhaust the stack.

use std::collections::HashSet;

use crate::{MAX_DEPTH, MAX_TEXT_LEN, ParseError, PayloadType};

/// WIT's keywords: a name spelled like one must be written with a `%`.
const KEYWORDS: &[&str] = &[
    "as",
    "async",
    "bool",
    "borrow",
    "char",
    "constructor",
    "enum",
    "error-context",
    "export",
    "f32",
    "f64",
    "flags",
    "from",
    "func",
    "future",
    "import",
    "include",
    "interface",
    "list",
    "map",
    "option",
    "own",
    "package",
    "record",
    "resource",
    "result",
    "s16",
    "s32",
    "s64",
    "s8",
    "static",
    "stream",
    "string",
    "tuple",
    "type",
    "u16",
    "u32",
    "u64",
    "u8",
    "use",
    "variant",
    "with",
    "world",
];

/// The most flags a `flags` type may have, as the component model says.
const MAX_FLAGS: usize = 32;

/// How much of a token an error message quotes, in characters.
const QUOTE_LEN: usize = 40;

/// Whether `word` is a WIT keyword.
pub(crate) fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

/// Whether `word` is a WIT identifier: words of lowercase ASCII letters and
/// digits joined by single `-`s, the first word starting with a letter.
pub(crate) fn is_name(word: &str) -> bool {
    let starts_with_letter = word.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    starts_with_letter
        && word.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// See [`PayloadType::parse`].
pub(crate) fn parse(text: &str) -> Result<PayloadType, ParseError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(ParseError::new(
            None,
            format!(
                "type text is {} bytes long, more than the limit of {MAX_TEXT_LEN}",
                text.len()
            ),
        ));
    }
    let mut parser = Parser {
        text,
        pos: 0,
        peeked: None,
    };
    let ty = parser.ty(0, "type")?;
    let end = parser.next()?;
    if end.kind != Kind::End {
        return Err(unexpected(&end, "end of input"));
    }
    Ok(ty)
}

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind<'a> {
    /// One of `< > , ( ) { } :`.
    Punct(char),
    /// `_`, the missing `ok` type in `result<_, E>`.
    Underscore,
    /// A run of ASCII letters, digits, `-` and `_`: a keyword, a name, or
    /// neither (then an error wherever it stands).
    Word(&'a str),
    /// `%` and a word: a name even if spelled like a keyword.
    Escaped(&'a str),
    /// Any other character.
    Other(char),
    /// The end of the text.
    End,
}

/// A token and where it starts.
#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Kind<'a>,
    at: usize,
}

/// An error at byte offset `at`.
fn error_at(at: usize, message: String) -> ParseError {
    ParseError::new(Some(at), message)
}

/// ``expected <what>, found `<token>` ``, at the token.
fn unexpected(token: &Token<'_>, expected: &str) -> ParseError {
    error_at(
        token.at,
        format!("expected {expected}, found {}", found(token)),
    )
}

/// How an error message shows a token.
fn found(token: &Token<'_>) -> String {
    match token.kind {
        Kind::Punct(c) => format!("`{c}`"),
        Kind::Underscore => "`_`".to_owned(),
        Kind::Word(word) => format!("`{}`", shorten(word)),
        Kind::Escaped(word) => format!("`%{}`", shorten(word)),
        Kind::Other(c) => format!("`{}`", c.escape_debug()),
        Kind::End => "end of input".to_owned(),
    }
}

/// The first [`QUOTE_LEN`] characters of `text`, with `…` if there is more.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LEN) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or(text)),
        None => text.to_owned(),
    }
}

/// Whether `b` may be part of a word.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The parser and its lexer: `text[pos..]` is what is left, after the
/// token in `peeked` if there is one.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    peeked: Option<Token<'a>>,
}

impl<'a> Parser<'a> {
    /// Consumes the next token.
    fn next(&mut self) -> Result<Token<'a>, ParseError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lex(),
        }
    }

    /// The next token, left in place.
    fn peek(&mut self) -> Result<Token<'a>, ParseError> {
        match self.peeked {
            Some(token) => Ok(token),
            None => {
                let token = self.lex()?;
                self.peeked = Some(token);
                Ok(token)
            }
        }
    }

    /// Consumes the next token if it is the punctuation `c`.
    fn eat(&mut self, c: char) -> Result<bool, ParseError> {
        if self.peek()?.kind == Kind::Punct(c) {
            self.peeked = None;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Consumes the punctuation `c`, or fails saying that `expected` was.
    fn expect(&mut self, c: char, expected: &str) -> Result<(), ParseError> {
        let token = self.next()?;
        if token.kind == Kind::Punct(c) {
            Ok(())
        } else {
            Err(unexpected(&token, expected))
        }
    }

    /// Lexes one token after skipping whitespace and comments.
    fn lex(&mut self) -> Result<Token<'a>, ParseError> {
        self.skip_trivia()?;
        let at = self.pos;
        let rest = self.text.get(at..).unwrap_or_default();
        let Some(c) = rest.chars().next() else {
            return Ok(Token {
                kind: Kind::End,
                at,
            });
        };
        let word_len = |from: usize| {
            rest.as_bytes()
                .iter()
                .skip(from)
                .take_while(|b| is_word_byte(**b))
                .count()
        };
        let (kind, len) = match c {
            '<' | '>' | ',' | '(' | ')' | '{' | '}' | ':' => (Kind::Punct(c), 1),
            '%' => match word_len(1) {
                0 => (Kind::Other(c), 1),
                n => (Kind::Escaped(rest.get(1..=n).unwrap_or_default()), 1 + n),
            },
            c if c.is_ascii() && is_word_byte(c as u8) => {
                let n = word_len(0);
                match rest.get(..n).unwrap_or_default() {
                    "_" => (Kind::Underscore, n),
                    word => (Kind::Word(word), n),
                }
            }
            c => (Kind::Other(c), c.len_utf8()),
        };
        self.pos = at + len;
        Ok(Token { kind, at })
    }

    /// Skips whitespace, `// line` and (nested) `/* block */` comments.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        let bytes = self.text.as_bytes();
        loop {
            let rest = bytes.get(self.pos..).unwrap_or_default();
            match rest {
                [b' ' | b'\t' | b'\n' | b'\r', ..] => self.pos += 1,
                [b'/', b'/', ..] => {
                    self.pos += rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
                }
                [b'/', b'*', ..] => {
                    let mut depth = 0usize;
                    let mut i = 0;
                    loop {
                        match rest.get(i..).unwrap_or_default() {
                            [b'/', b'*', ..] => {
                                depth += 1;
                                i += 2;
                            }
                            [b'*', b'/', ..] => {
                                depth -= 1;
                                i += 2;
                                if depth == 0 {
                                    break;
                                }
                            }
                            [_, ..] => i += 1,
                            [] => {
                                return Err(error_at(self.pos, "unterminated comment".to_owned()));
                            }
                        }
                    }
                    // `i` is just after an ASCII `*/`: a character boundary.
                    self.pos += i;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Parses a type nested `depth` levels deep; `expected` says what may
    /// stand here, for the error when something else does.
    fn ty(&mut self, depth: usize, expected: &str) -> Result<PayloadType, ParseError> {
        let token = self.next()?;
        if depth > MAX_DEPTH {
            return Err(error_at(
                token.at,
                format!("types nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let word = match token.kind {
            Kind::Word(word) => word,
            Kind::Escaped(name) => return Err(unknown_type(&token, &format!("%{name}"))),
            _ => return Err(unexpected(&token, expected)),
        };
        Ok(match word {
            "bool" => PayloadType::Bool,
            "u8" => PayloadType::U8,
            "u16" => PayloadType::U16,
            "u32" => PayloadType::U32,
            "u64" => PayloadType::U64,
            "s8" => PayloadType::S8,
            "s16" => PayloadType::S16,
            "s32" => PayloadType::S32,
            "s64" => PayloadType::S64,
            "f32" | "float32" => PayloadType::F32,
            "f64" | "float64" => PayloadType::F64,
            "char" => PayloadType::Char,
            "string" => PayloadType::String,
            "list" => PayloadType::List(Box::new(self.angled(depth)?)),
            "option" => PayloadType::Option(Box::new(self.angled(depth)?)),
            "result" => self.result(depth)?,
            "tuple" => self.tuple(&token, depth)?,
            "record" => self.record(&token, depth)?,
            "variant" => self.variant(&token, depth)?,
            "enum" => PayloadType::Enum(self.names(
                &token,
                "case",
                "empty enum (an enum needs at least one case)",
                None,
            )?),
            "flags" => PayloadType::Flags(self.names(
                &token,
                "flag",
                "empty flags (flags need at least one flag)",
                Some(MAX_FLAGS),
            )?),
            "own" | "borrow" | "future" | "stream" | "error-context" => {
                return Err(error_at(
                    token.at,
                    format!("`{word}` has no JSON form and cannot be a payload type"),
                ));
            }
            "map" => {
                return Err(error_at(
                    token.at,
                    "`map` is not supported in payload types (use `list<tuple<K, V>>`)".to_owned(),
                ));
            }
            _ if is_name(word) && !is_keyword(word) => return Err(unknown_type(&token, word)),
            _ => return Err(unexpected(&token, expected)),
        })
    }

    /// `<T>`, after `list` or `option`.
    fn angled(&mut self, depth: usize) -> Result<PayloadType, ParseError> {
        self.expect('<', "`<`")?;
        let ty = self.ty(depth + 1, "type")?;
        self.expect('>', "`>`")?;
        Ok(ty)
    }

    /// What follows `result`: nothing, `<T>`, `<T, E>` or `<_, E>`.
    fn result(&mut self, depth: usize) -> Result<PayloadType, ParseError> {
        if !self.eat('<')? {
            return Ok(PayloadType::Result {
                ok: None,
                err: None,
            });
        }
        if self.peek()?.kind == Kind::Underscore {
            self.peeked = None;
            self.expect(',', "`,`")?;
            let err = self.ty(depth + 1, "type")?;
            self.expect('>', "`>`")?;
            return Ok(PayloadType::Result {
                ok: None,
                err: Some(Box::new(err)),
            });
        }
        let ok = self.ty(depth + 1, "type or `_`")?;
        let err = if self.eat(',')? {
            let err = self.ty(depth + 1, "type")?;
            self.expect('>', "`>`")?;
            Some(Box::new(err))
        } else {
            self.expect('>', "`,` or `>`")?;
            None
        };
        Ok(PayloadType::Result {
            ok: Some(Box::new(ok)),
            err,
        })
    }

    /// `<T, …>` after `tuple` (the token `keyword`).
    fn tuple(&mut self, keyword: &Token<'a>, depth: usize) -> Result<PayloadType, ParseError> {
        self.expect('<', "`<`")?;
        let items = self.items('>', |p| p.ty(depth + 1, "type"))?;
        if items.is_empty() {
            return Err(error_at(
                keyword.at,
                "empty tuple (a tuple needs at least one type)".to_owned(),
            ));
        }
        Ok(PayloadType::Tuple(items))
    }

    /// `{ name: T, … }` after `record` (the token `keyword`).
    fn record(&mut self, keyword: &Token<'a>, depth: usize) -> Result<PayloadType, ParseError> {
        self.expect('{', "`{`")?;
        let mut seen = Names::default();
        let fields = self.items('}', |p| {
            let name = p.name("field name")?;
            seen.insert("field", &name)?;
            p.expect(':', "`:`")?;
            let ty = p.ty(depth + 1, "type")?;
            Ok((name.text, ty))
        })?;
        if fields.is_empty() {
            return Err(error_at(
                keyword.at,
                "empty record (a record needs at least one field)".to_owned(),
            ));
        }
        Ok(PayloadType::Record(fields))
    }

    /// `{ name, name(T), … }` after `variant` (the token `keyword`).
    fn variant(&mut self, keyword: &Token<'a>, depth: usize) -> Result<PayloadType, ParseError> {
        self.expect('{', "`{`")?;
        let mut seen = Names::default();
        let cases = self.items('}', |p| {
            let name = p.name("case name")?;
            seen.insert("case", &name)?;
            let payload = if p.eat('(')? {
                let ty = p.ty(depth + 1, "type")?;
                p.expect(')', "`)`")?;
                Some(ty)
            } else {
                let next = p.peek()?;
                if !matches!(next.kind, Kind::Punct(',' | '}')) {
                    return Err(unexpected(&next, "`(`, `,` or `}`"));
                }
                None
            };
            Ok((name.text, payload))
        })?;
        if cases.is_empty() {
            return Err(error_at(
                keyword.at,
                "empty variant (a variant needs at least one case)".to_owned(),
            ));
        }
        Ok(PayloadType::Variant(cases))
    }

    /// `{ name, … }` after `enum` or `flags` (the token `keyword`), whose
    /// names are each a `what`: at least one (else the error `empty`), and
    /// at most `max` if given.
    fn names(
        &mut self,
        keyword: &Token<'a>,
        what: &str,
        empty: &str,
        max: Option<usize>,
    ) -> Result<Vec<String>, ParseError> {
        self.expect('{', "`{`")?;
        let mut seen = Names::default();
        let names = self.items('}', |p| {
            let name = p.name(&format!("{what} name"))?;
            seen.insert(what, &name)?;
            if let Some(max) = max
                && seen.len() > max
            {
                return Err(error_at(
                    name.at,
                    format!("too many {what}s (at most {max})"),
                ));
            }
            Ok(name.text)
        })?;
        if names.is_empty() {
            return Err(error_at(keyword.at, empty.to_owned()));
        }
        Ok(names)
    }

    /// Items separated by commas up to `close` (a trailing comma is fine),
    /// after the opening bracket.
    fn items<T>(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Self) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut items = Vec::new();
        loop {
            if self.eat(close)? {
                break;
            }
            items.push(item(self)?);
            if !self.eat(',')? {
                self.expect(close, &format!("`,` or `{close}`"))?;
                break;
            }
        }
        Ok(items)
    }

    /// A name (a field, case or flag), described as `what` in errors.
    fn name(&mut self, what: &str) -> Result<Name, ParseError> {
        let token = self.next()?;
        let text = match token.kind {
            Kind::Word(word) if is_keyword(word) => {
                return Err(error_at(
                    token.at,
                    format!(
                        "expected {what}, found keyword `{word}` (write `%{word}` to use it as a name)"
                    ),
                ));
            }
            Kind::Word(word) | Kind::Escaped(word) if is_name(word) => word,
            Kind::Word(_) | Kind::Escaped(_) | Kind::Underscore => {
                return Err(error_at(
                    token.at,
                    format!(
                        "invalid {what} {} (names are kebab-case: lowercase letters and digits, \
                         in words joined by `-`, starting with a letter)",
                        found(&token)
                    ),
                ));
            }
            _ => return Err(unexpected(&token, what)),
        };
        Ok(Name {
            text: text.to_owned(),
            at: token.at,
        })
    }
}

/// ``unknown type `name` ``: payload types cannot refer to named types.
fn unknown_type(token: &Token<'_>, name: &str) -> ParseError {
    error_at(
        token.at,
        format!(
            "unknown type `{}` (a payload type is written out inline; it cannot refer to named types)",
            shorten(name)
        ),
    )
}

/// A name and where it starts.
struct Name {
    text: String,
    at: usize,
}

/// The names of one record, variant, enum or flags type so far.
#[derive(Default)]
struct Names(HashSet<String>);

impl Names {
    /// Adds `name`, a `what`; fails if it is there already.
    fn insert(&mut self, what: &str, name: &Name) -> Result<(), ParseError> {
        if self.0.insert(name.text.clone()) {
            Ok(())
        } else {
            Err(error_at(
                name.at,
                format!("duplicate {what} `{}`", name.text),
            ))
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests;
