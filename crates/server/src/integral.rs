//! Integers in request bodies as JSON Schema counts them: `221` and `221.0`
//! alike. An `integer` of the OpenAPI document is any JSON number whose
//! fractional part is zero, so a body the document allows is a body the
//! server takes; `221.5`, a negative number or one past the field's range
//! is still refused, naming the field. Used with `deserialize_with` on
//! every integer and byte-array field of a request body, and [`Uint64`] and
//! [`Bytes`] are what the document says of such fields.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, Unexpected, Visitor};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

/// An integer from 0 to `MAX`, written as an integer or an integral float.
struct Int<const MAX: u64>(u64);

impl<'de, const MAX: u64> Deserialize<'de> for Int<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor::<MAX>(PhantomData))
    }
}

struct IntVisitor<const MAX: u64>(PhantomData<()>);

impl<const MAX: u64> Visitor<'_> for IntVisitor<MAX> {
    type Value = Int<MAX>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer from 0 to {MAX}")
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
        if v <= MAX {
            Ok(Int(v))
        } else {
            Err(E::invalid_value(Unexpected::Unsigned(v), &self))
        }
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
        // 2^64: the first f64 past `u64::MAX` (which f64 cannot hold).
        const PAST_U64: f64 = 18_446_744_073_709_551_616.0;
        if v.fract() == 0.0 && (0.0..PAST_U64).contains(&v) {
            // Integral and in range: the cast is exact.
            return self.visit_u64(v as u64);
        }
        Err(E::invalid_value(Unexpected::Float(v), &self))
    }
}

/// A `u64`.
pub(crate) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Int::<{ u64::MAX }>::deserialize(d).map(|i| i.0)
}

/// An optional `u64` (use with `#[serde(default)]`).
pub(crate) fn option_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<Int<{ u64::MAX }>>::deserialize(d).map(|i| i.map(|i| i.0))
}

/// Bytes: an array of integers from 0 to 255.
pub(crate) fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    Vec::<Int<255>>::deserialize(d).map(to_bytes)
}

/// Optional bytes (use with `#[serde(default)]`).
pub(crate) fn option_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    Option::<Vec<Int<255>>>::deserialize(d).map(|b| b.map(to_bytes))
}

fn to_bytes(ints: Vec<Int<255>>) -> Vec<u8> {
    ints.into_iter()
        .map(|i| u8::try_from(i.0).unwrap_or(u8::MAX))
        .collect()
}

/// The schema of a field read with [`u64()`] or [`option_u64`] (use with
/// `#[schema(inline, value_type = integral::Uint64)]`): an integer from 0
/// to 2^64 - 1. utoipa's own `u64` schema has no maximum, which would let
/// a client send a number past the range.
///
/// A field with this schema, or [`Bytes`], takes no doc comment: utoipa
/// writes the description of an inline schema as an `allOf` with an
/// `object` schema, which no number or array matches.
pub(crate) struct Uint64;

impl PartialSchema for Uint64 {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::Custom("uint64".to_owned())))
            .minimum(Some(0))
            .maximum(Some(u64::MAX))
            .into()
    }
}

impl ToSchema for Uint64 {}

/// The schema of a field read with [`bytes`] or [`option_bytes`] (use with
/// `#[schema(inline, value_type = integral::Bytes)]`): an array of integers
/// from 0 to 255.
pub(crate) struct Bytes;

impl PartialSchema for Bytes {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(u8::MAX)),
            )
            .into()
    }
}

impl ToSchema for Bytes {}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Body {
        #[serde(deserialize_with = "super::u64")]
        n: u64,
        #[serde(default, deserialize_with = "super::option_u64")]
        m: Option<u64>,
        #[serde(default, deserialize_with = "super::bytes")]
        data: Vec<u8>,
        #[serde(default, deserialize_with = "super::option_bytes")]
        input: Option<Vec<u8>>,
    }

    fn parse(text: &str) -> Result<Body, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_floats_are_integers() {
        assert_eq!(
            parse(
                r#"{"n": 3.0, "m": 18446744073709549568.0, "data": [221.0, 0, 255], "input": [1.0]}"#
            ),
            Ok(Body {
                n: 3,
                m: Some(18_446_744_073_709_549_568),
                data: vec![221, 0, 255],
                input: Some(vec![1]),
            })
        );
        assert_eq!(
            parse(r#"{"n": 18446744073709551615, "m": null}"#),
            Ok(Body {
                n: u64::MAX,
                m: None,
                data: vec![],
                input: None,
            })
        );
    }

    #[test]
    fn other_numbers_are_refused() {
        for bad in [
            r#"{"n": 3.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": -1.0}"#,
            r#"{"n": 18446744073709551616}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "3"}"#,
            r#"{"n": 1, "data": [256]}"#,
            r#"{"n": 1, "data": [255.5]}"#,
            r#"{"n": 1, "data": null}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
        let error = parse(r#"{"n": 1, "data": [256.0]}"#)
            .err()
            .unwrap_or_default();
        assert!(error.contains("an integer from 0 to 255"), "{error}");
    }
}
