//! The errors of parsing a type and of checking a value.

use std::fmt;

/// Why type text is not a payload type: what was expected, and where.
///
/// Displays as `at <offset>: <message>`, such as
/// ``at 13: expected `>`, found `,` ``; an error about the text as a
/// whole (it is too long) has no offset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", At(*.offset, .message))]
pub struct ParseError {
    offset: Option<usize>,
    message: String,
}

impl ParseError {
    pub(crate) fn new(offset: Option<usize>, message: String) -> ParseError {
        ParseError { offset, message }
    }

    /// The byte offset in the text where the problem is, if it is at one
    /// place.
    pub fn offset(&self) -> Option<usize> {
        self.offset
    }

    /// What is wrong, without the offset.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// `at N: message`, or just the message.
struct At<'a>(Option<usize>, &'a str);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(offset) => write!(f, "at {offset}: {}", self.1),
            None => f.write_str(self.1),
        }
    }
}

/// Why a value does not have the payload type: where in the value the
/// problem is, and what it is.
///
/// Displays as `<path>: <message>`, such as
/// `items[3]: expected u8, got 300 (out of range)`, or as just the message
/// when the value as a whole is wrong (`expected bool, got string`). The
/// path names record fields (`note`), list and tuple elements (`[3]`),
/// variant payloads (`circle`) and result payloads (`ok`, `err`), joined
/// by `.` where a name follows: `orders[2].shape.circle`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", Located(.path, .message))]
pub struct ValueError {
    path: String,
    message: String,
}

impl ValueError {
    pub(crate) fn new(path: String, message: String) -> ValueError {
        ValueError { path, message }
    }

    /// Where in the value the problem is (`items[3]`); empty for the value
    /// itself.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// `path: message`, or just the message at the root.
struct Located<'a>(&'a str, &'a str);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str(self.1)
        } else {
            write!(f, "{}: {}", self.0, self.1)
        }
    }
}
