//! The `query` of Golem's oplog search: a small Lucene-like language over
//! the public entries.
//!
//! - `word` matches an entry with a searchable text containing it, ignoring
//!   case; `"a phrase"` matches one containing it exactly; `/regex/`
//!   matches one a regular expression finds.
//! - A searchable text is the entry's kind (`ImportedFunctionInvoked` as
//!   `importedfunctioninvoked` and `imported-function-invoked`, plus
//!   `imported-function` / `exported-function` for invocations), its
//!   function name, idempotency key, error, and every value in its typed
//!   request and response.
//! - `field:term` (or `field=term`) matches only values at that path: record
//!   fields, tuple positions, variant cases and `ok` / `err`, joined by `.`
//!   (`request.name:alice`... without the `request`, as Golem: `name:alice`).
//! - `a AND b`, `a OR b`, `NOT a`, parentheses; terms side by side must all
//!   match. `AND` binds tighter than `OR`, and side-by-side terms looser
//!   than both, as in Golem.

use regex::{Regex, RegexBuilder};
use serde_json::Value;

/// A parsed query.
#[derive(Debug)]
pub(crate) enum Query {
    Term(String),
    Phrase(String),
    Regex(Regex),
    Field(Vec<String>, Box<Query>),
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Phrase(String),
    Regex(String),
    Field(String),
    Open,
    Close,
    And,
    Or,
    Not,
}

/// Characters that end a word (unless escaped with `\`).
const SPECIAL: &str = " \t\r\n+-!():^<>=[]\"{}~\\/\u{3000}";

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            '"' | '/' => {
                chars.next();
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(format!(
                                "the {c}...{c} starting with {inner:?} is not closed"
                            ));
                        }
                        Some('\\') if chars.peek() == Some(&c) => {
                            chars.next();
                            inner.push(c);
                        }
                        Some(d) if d == c => break,
                        Some(d) => inner.push(d),
                    }
                }
                out.push(if c == '"' {
                    Token::Phrase(inner)
                } else {
                    Token::Regex(inner)
                });
            }
            _ => {
                let mut word = String::new();
                while let Some(&d) = chars.peek() {
                    if d == '\\' {
                        chars.next();
                        match chars.next() {
                            Some(escaped) => word.push(escaped),
                            None => return Err("the query ends with a lone `\\`".to_owned()),
                        }
                    } else if (d == '-' || d == '+') && !word.is_empty() {
                        // Inside a word, `-` and `+` are part of it.
                        chars.next();
                        word.push(d);
                    } else if SPECIAL.contains(d) {
                        break;
                    } else {
                        chars.next();
                        word.push(d);
                    }
                }
                if word.is_empty() {
                    return Err(format!("unexpected `{c}`"));
                }
                if matches!(chars.peek(), Some(':' | '=')) {
                    chars.next();
                    out.push(Token::Field(word));
                    continue;
                }
                out.push(match word.as_str() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    "NOT" => Token::Not,
                    _ => Token::Word(word),
                });
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: std::iter::Peekable<std::vec::IntoIter<Token>>,
}

impl Parser {
    /// Side-by-side disjunctions, up to a `)` or the end.
    fn sequence(&mut self) -> Result<Query, String> {
        let mut all = Vec::new();
        while !matches!(self.tokens.peek(), None | Some(Token::Close)) {
            all.push(self.disjunction()?);
        }
        match all.len() {
            0 => Err("an empty query or group".to_owned()),
            1 => Ok(all.remove(0)),
            _ => Ok(Query::And(all)),
        }
    }

    fn disjunction(&mut self) -> Result<Query, String> {
        let mut any = vec![self.conjunction()?];
        while self.tokens.next_if_eq(&Token::Or).is_some() {
            any.push(self.conjunction()?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Query::Or(any)
        })
    }

    fn conjunction(&mut self) -> Result<Query, String> {
        let mut all = vec![self.negation()?];
        while self.tokens.next_if_eq(&Token::And).is_some() {
            all.push(self.negation()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Query::And(all)
        })
    }

    fn negation(&mut self) -> Result<Query, String> {
        if self.tokens.next_if_eq(&Token::Not).is_some() {
            return Ok(Query::Not(Box::new(self.clause()?)));
        }
        self.clause()
    }

    fn clause(&mut self) -> Result<Query, String> {
        match self.tokens.next() {
            Some(Token::Field(field)) => {
                let path = field.split('.').map(str::to_lowercase).collect();
                Ok(Query::Field(path, Box::new(self.clause()?)))
            }
            Some(Token::Open) => {
                let inner = self.sequence()?;
                match self.tokens.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("a `(` is not closed".to_owned()),
                }
            }
            Some(Token::Word(word)) => Ok(Query::Term(word.to_lowercase())),
            Some(Token::Phrase(phrase)) => Ok(Query::Phrase(phrase)),
            Some(Token::Regex(pattern)) => RegexBuilder::new(&pattern)
                .size_limit(1 << 20)
                .build()
                .map(Query::Regex)
                .map_err(|e| format!("invalid regular expression /{pattern}/: {e}")),
            Some(Token::Close) => Err("unexpected `)`".to_owned()),
            Some(Token::And | Token::Or | Token::Not) | None => {
                Err("AND, OR and NOT need a term after them".to_owned())
            }
        }
    }
}

impl Query {
    /// Parses a query; the error says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parser = Parser {
            tokens: tokens(text)?.into_iter().peekable(),
        };
        let query = parser.sequence()?;
        match parser.tokens.next() {
            None => Ok(query),
            Some(_) => Err("unexpected `)`".to_owned()),
        }
    }

    /// Whether a rendered public entry matches.
    pub(crate) fn matches(&self, entry: &Value) -> bool {
        let texts = searchable(entry);
        self.matches_texts(&texts, &[])
    }

    fn matches_texts(&self, texts: &[(Vec<String>, String)], path: &[String]) -> bool {
        let leaf = |test: &dyn Fn(&str) -> bool| {
            texts
                .iter()
                .any(|(at, text)| (path.is_empty() || at == path) && test(text))
        };
        match self {
            Self::Term(word) => leaf(&|t| t.to_lowercase().contains(word.as_str())),
            Self::Phrase(phrase) => leaf(&|t| t.contains(phrase.as_str())),
            Self::Regex(regex) => leaf(&|t| regex.is_match(t)),
            Self::Field(field, inner) => {
                let mut deeper = path.to_vec();
                deeper.extend(field.iter().cloned());
                inner.matches_texts(texts, &deeper)
            }
            Self::And(all) => all.iter().all(|q| q.matches_texts(texts, path)),
            Self::Or(any) => any.iter().any(|q| q.matches_texts(texts, path)),
            Self::Not(inner) => !inner.matches_texts(texts, path),
        }
    }
}

/// The texts a query searches in an entry, each with its path (empty for
/// the entry's own fields; record fields etc. for values, lower case).
fn searchable(entry: &Value) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let kind = entry["type"].as_str().unwrap_or_default();
    out.push((Vec::new(), kind.to_lowercase()));
    out.push((Vec::new(), kebab(kind)));
    match kind {
        "ImportedFunctionInvoked" => out.push((Vec::new(), "imported-function".to_owned())),
        "ExportedFunctionInvoked" | "ExportedFunctionCompleted" => {
            out.push((Vec::new(), "exported-function".to_owned()));
        }
        _ => {}
    }
    for field in ["function_name", "idempotency_key", "error"] {
        if let Some(text) = entry[field].as_str() {
            out.push((Vec::new(), text.to_owned()));
        }
    }
    for field in ["request", "response"] {
        match &entry[field] {
            Value::Array(items) => {
                for item in items {
                    typed_texts(&item["typ"], &item["value"], &mut Vec::new(), &mut out);
                }
            }
            item @ Value::Object(_) => {
                typed_texts(&item["typ"], &item["value"], &mut Vec::new(), &mut out);
            }
            _ => {}
        }
    }
    out
}

/// `ImportedFunctionInvoked` as `imported-function-invoked`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The leaves of a typed value (Golem's JSON encoding, typed by `typ`).
fn typed_texts(
    typ: &Value,
    value: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) {
    let mut nested = |name: &str, typ: &Value, value: &Value, out: &mut Vec<_>| {
        path.push(name.to_lowercase());
        typed_texts(typ, value, path, out);
        path.pop();
    };
    match typ["type"].as_str().unwrap_or_default() {
        "List" => {
            for item in value.as_array().into_iter().flatten() {
                typed_texts(&typ["inner"], item, path, out);
            }
        }
        "Option" => {
            if !value.is_null() {
                typed_texts(&typ["inner"], value, path, out);
            }
        }
        "Tuple" => {
            let items = typ["items"].as_array().into_iter().flatten();
            for (i, (t, v)) in items
                .zip(value.as_array().into_iter().flatten())
                .enumerate()
            {
                nested(&i.to_string(), t, v, out);
            }
        }
        "Record" => {
            for field in typ["fields"].as_array().into_iter().flatten() {
                let name = field["name"].as_str().unwrap_or_default();
                nested(name, &field["typ"], &value[name], out);
            }
        }
        "Variant" | "Result" => {
            let Some((case, payload)) = value.as_object().and_then(|o| o.iter().next()) else {
                return;
            };
            let case_typ = if typ["type"] == "Result" {
                typ[case.as_str()].clone()
            } else {
                typ["cases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["name"] == case.as_str())
                    .map_or(Value::Null, |c| c["typ"].clone())
            };
            if !case_typ.is_null() {
                nested(case, &case_typ, payload, out);
            } else if typ["type"] == "Variant" {
                out.push((path.clone(), case.clone()));
            }
        }
        "Chr" => {
            let text = value
                .as_u64()
                .and_then(|c| char::from_u32(u32::try_from(c).ok()?))
                .map(String::from)
                .unwrap_or_default();
            out.push((path.clone(), text));
        }
        "Flags" => {
            for name in value.as_array().into_iter().flatten() {
                out.push((path.clone(), name.as_str().unwrap_or_default().to_owned()));
            }
        }
        _ => out.push((
            path.clone(),
            match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Value {
        json!({
            "type": "ExportedFunctionInvoked",
            "function_name": "golem:it/api.{greet}",
            "idempotency_key": "key-7",
            "request": [
                { "typ": { "type": "Record", "fields": [
                    { "name": "name", "typ": { "type": "Str" } },
                    { "name": "age", "typ": { "type": "U8" } },
                ] }, "value": { "name": "Alice Smith", "age": 42 } },
                { "typ": { "type": "Result", "ok": { "type": "Chr" }, "err": null },
                  "value": { "ok": 955 } },
            ],
        })
    }

    fn matches(query: &str) -> bool {
        Query::parse(query)
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .matches(&entry())
    }

    #[test]
    fn terms_phrases_and_regexes() {
        assert!(matches("exported-function"));
        assert!(matches("exportedfunctioninvoked"));
        assert!(matches("GREET"));
        assert!(matches("alice"));
        assert!(!matches("\"alice\""));
        assert!(matches("\"Alice Smith\""));
        assert!(matches("/A.ice S/"));
        assert!(matches("42"));
        assert!(matches("λ"));
        assert!(!matches("bob"));
        assert!(!matches("imported-function"));
    }

    #[test]
    fn fields_name_paths_into_values() {
        assert!(matches("name:alice"));
        assert!(!matches("age:alice"));
        assert!(matches("age=42"));
        assert!(matches("ok:λ"));
    }

    #[test]
    fn operators_bind_as_in_golem() {
        assert!(matches("alice AND greet"));
        assert!(!matches("alice AND bob"));
        assert!(matches("bob OR alice"));
        assert!(matches("NOT bob"));
        assert!(!matches("NOT alice"));
        assert!(matches("(bob OR alice) greet"));
        assert!(!matches("bob OR alice nobody"));
        assert!(matches("key-7"));
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        let error = |q: &str| match Query::parse(q) {
            Ok(parsed) => panic!("{q} parsed as {parsed:?}"),
            Err(e) => e,
        };
        assert_eq!(error("(alice"), "a `(` is not closed");
        assert_eq!(error("alice)"), "unexpected `)`");
        assert_eq!(error("alice AND"), "AND, OR and NOT need a term after them");
        assert!(error("/(/").starts_with("invalid regular expression /(/"));
        assert!(error("\"open").contains("is not closed"));
        assert_eq!(error(""), "an empty query or group");
    }
}
