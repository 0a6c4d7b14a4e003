//! Encodings of values SQLite has no column type for.
//!
//! A worker's arguments and environment are lists of strings, stored as one
//! BLOB each: every string as its length (4 bytes, little-endian) followed by
//! its UTF-8 bytes; an environment is the flat list `name, value, name,
//! value, ...`. Unlike a separator, this keeps any string intact (NUL, `=`,
//! newlines), and unlike JSON it needs no dependency.
//!
//! Unsigned numbers (indices, times, sequence numbers) are stored as SQLite's
//! signed 64-bit integers; values above `i64::MAX` are refused on write.

use crate::error::out_of_range;
use vow_store::Result;

/// `value` as a SQLite integer, or an error naming `what`.
pub(crate) fn int(what: &str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| out_of_range(what, value))
}

/// `value` as a SQLite integer for a comparison: values past the largest
/// storable one compare like it.
pub(crate) fn int_saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Encodes a list of strings.
pub(crate) fn encode_strings<'a>(strings: impl IntoIterator<Item = &'a str>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for s in strings {
        let len = u32::try_from(s.len())
            .map_err(|_| out_of_range("a string of length", s.len() as u64))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    Ok(out)
}

/// Decodes what [`encode_strings`] wrote; `None` if it is malformed.
pub(crate) fn decode_strings(mut bytes: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (s, rest) = rest.split_at(len);
        out.push(String::from_utf8(s.to_vec()).ok()?);
        bytes = rest;
    }
    Some(out)
}

/// Encodes an environment as the flat list of its names and values.
pub(crate) fn encode_env(env: &[(String, String)]) -> Result<Vec<u8>> {
    encode_strings(env.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
}

/// Decodes what [`encode_env`] wrote; `None` if it is malformed.
pub(crate) fn decode_env(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let flat = decode_strings(bytes)?;
    if flat.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() -> anyhow::Result<()> {
        let cases: [&[&str]; 4] = [&[], &[""], &["a", "", "b=c\0d"], &["ünï", "\n"]];
        for case in cases {
            let bytes = encode_strings(case.iter().copied())?;
            assert_eq!(
                decode_strings(&bytes),
                Some(case.iter().map(|s| (*s).to_owned()).collect())
            );
        }
        Ok(())
    }

    #[test]
    fn env_round_trips() -> anyhow::Result<()> {
        let env = vec![
            ("B".to_owned(), "x=y".to_owned()),
            ("A".to_owned(), String::new()),
        ];
        assert_eq!(decode_env(&encode_env(&env)?), Some(env));
        Ok(())
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(decode_strings(&[1, 0, 0]), None, "a truncated length");
        assert_eq!(
            decode_strings(&[5, 0, 0, 0, b'a']),
            None,
            "a truncated string"
        );
        assert_eq!(decode_strings(&[1, 0, 0, 0, 0xff]), None, "invalid UTF-8");
        assert_eq!(
            decode_env(&[1, 0, 0, 0, b'a']),
            None,
            "a name without a value"
        );
    }

    #[test]
    fn numbers_past_i64_are_refused() {
        assert!(int("index", u64::MAX).is_err());
        assert_eq!(int("index", 7).ok(), Some(7));
        assert_eq!(int_saturating(u64::MAX), i64::MAX);
    }
}

/// Properties of the encodings over generated strings and bytes (the
/// decoders read columns back from the database file, which may be
/// damaged): what is written reads back the same, and any bytes give
/// strings or `None`, never a panic. `PROPTEST_CASES=N` runs each N times.
#[cfg(test)]
mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn config(cases: u32) -> ProptestConfig {
        let mut config = ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = cases;
        }
        config
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn strings_round_trip(strings in vec(".{0,8}", 0..5)) {
            let bytes = encode_strings(strings.iter().map(String::as_str));
            prop_assert_eq!(bytes.ok().and_then(|b| decode_strings(&b)), Some(strings));
        }

        #[test]
        fn env_round_trips(env in vec((".{0,6}", ".{0,6}"), 0..4)) {
            prop_assert_eq!(encode_env(&env).ok().and_then(|b| decode_env(&b)), Some(env));
        }

        #[test]
        fn decoding_any_bytes_returns(bytes in vec(any::<u8>(), 0..64)) {
            if let Some(strings) = decode_strings(&bytes) {
                // One spelling per list of strings.
                let again = encode_strings(strings.iter().map(String::as_str)).ok();
                prop_assert_eq!(again, Some(bytes.clone()));
            }
            let _ = decode_env(&bytes);
        }

        #[test]
        fn decoding_mutated_strings_returns(
            strings in vec(".{0,8}", 1..5),
            edits in vec(any::<(usize, u8, u8)>(), 1..4),
        ) {
            let mut bytes = encode_strings(strings.iter().map(String::as_str)).unwrap_or_default();
            for (at, op, b) in edits {
                let at = at % (bytes.len() + 1);
                match op % 4 {
                    0 if at < bytes.len() => bytes[at] ^= 1 << (b % 8),
                    1 => bytes.insert(at, b),
                    2 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            if let Some(strings) = decode_strings(&bytes) {
                let again = encode_strings(strings.iter().map(String::as_str)).ok();
                prop_assert_eq!(again, Some(bytes.clone()));
            }
            let _ = decode_env(&bytes);
        }
    }
}
