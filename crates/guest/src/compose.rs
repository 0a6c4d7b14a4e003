//! Typed, composable promises over `vow:host/promises`: values travel as
//! JSON (serde), rejections as [`Rejection`], and work runs in other
//! workers with [`when`] and [`Promise::then`], joined with [`all`] and
//! [`any`].
//!
//! ```no_run
//! use std::time::Duration;
//! use vow_guest::compose::{self, Options, Promise};
//!
//! # fn main() -> Result<(), compose::Error> {
//! // Count the words of three chunks, each in a worker of its own, then
//! // add them up in another; give up on a chunk after ten seconds.
//! let chunks = ["a b c", "d e", "f"];
//! let counts: Vec<Promise<usize>> = chunks
//!     .iter()
//!     .map(|chunk| compose::when("count-words", chunk, Options::timeout(Duration::from_secs(10))))
//!     .collect::<Result<_, _>>()?;
//! let total: Promise<usize> = compose::all(&counts, Options::default())?
//!     .then("add-up", Options::default())?;
//! match total.wait() {
//!     Ok(total) => println!("{total} words"),
//!     Err(rejection) => println!("no total: {rejection}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The functions `when` and `then` name are exports of a component (the
//! caller's own unless given), with the WIT shapes `vow:host/promises`
//! requires: they take `list<u8>` (the JSON of the input, or of the source's
//! value) or `result<list<u8>, error>` (the source's whole settlement), and
//! return `list<u8>`, `result<list<u8>, string>`, `result<list<u8>, error>`
//! or nothing. [`decode`], [`encode`], [`settled`] and [`settle`] turn those
//! into typed values in the export's code:
//!
//! ```ignore
//! // export count-words: func(input: list<u8>) -> result<list<u8>, error>;
//! fn count_words(input: Vec<u8>) -> Result<Vec<u8>, promises::Error> {
//!     let words = compose::decode::<String>(&input).map(|chunk| chunk.split_whitespace().count());
//!     compose::settle(words)
//! }
//! ```
//!
//! An [`all`] of promises of `T` is a promise of `Vec<T>`: its payload is
//! the inputs' JSON payloads, each as a 4-byte little-endian length and its
//! bytes, which [`Promise::wait`] and [`settled`] read back.

use core::fmt;
use core::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::vow::host::promises as wit;
use crate::{ComponentId, PromiseId, host};

/// Why a promise was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// On purpose: by [`Promise::reject`], over REST, or by the function
    /// that was to settle it returning an error.
    Rejected,
    /// Its timeout passed while it was pending.
    TimedOut,
    /// The function that was to settle it failed (trapped), or its payload
    /// is not the JSON of the promised type.
    Failed,
}

/// The error a rejected promise settled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub kind: RejectionKind,
    /// What went wrong, for people.
    pub message: String,
    /// Whatever the rejecter attached.
    pub data: Vec<u8>,
}

impl Rejection {
    /// A rejection on purpose with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            kind: RejectionKind::Rejected,
            message: message.into(),
            data: Vec::new(),
        }
    }

    fn failed(message: String) -> Self {
        Self {
            kind: RejectionKind::Failed,
            message,
            data: Vec::new(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RejectionKind::Rejected => "rejected",
            RejectionKind::TimedOut => "timed out",
            RejectionKind::Failed => "failed",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for Rejection {}

impl From<wit::Error> for Rejection {
    fn from(error: wit::Error) -> Self {
        Self {
            kind: match error.kind {
                wit::ErrorKind::Rejected => RejectionKind::Rejected,
                wit::ErrorKind::TimedOut => RejectionKind::TimedOut,
                wit::ErrorKind::Failed => RejectionKind::Failed,
            },
            message: error.message,
            data: error.data,
        }
    }
}

impl From<Rejection> for wit::Error {
    fn from(rejection: Rejection) -> Self {
        Self {
            kind: match rejection.kind {
                RejectionKind::Rejected => wit::ErrorKind::Rejected,
                RejectionKind::TimedOut => wit::ErrorKind::TimedOut,
                RejectionKind::Failed => wit::ErrorKind::Failed,
            },
            message: rejection.message,
            data: rejection.data,
        }
    }
}

/// Why `when`, `then`, `all` or `any` made no promise: the host's reason
/// (an unknown component or export, or one that cannot settle a promise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Options of a new promise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Rejected with [`RejectionKind::TimedOut`] if still pending after
    /// this long.
    pub timeout: Option<Duration>,
    /// Deleted this long after it settles; kept until deleted when `None`.
    pub retention: Option<Duration>,
    /// The payload's declared WIT type, as WIT text: completions (over REST
    /// too) are checked against it, and clients can build a form from it.
    pub payload_type: Option<String>,
}

impl Options {
    /// Options with only a timeout.
    pub fn timeout(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..Self::default()
        }
    }

    /// These options with a declared payload type (WIT text, such as
    /// `record { approved: bool }`).
    pub fn typed(self, payload_type: impl Into<String>) -> Self {
        Self {
            payload_type: Some(payload_type.into()),
            ..self
        }
    }

    /// These options with a retention.
    pub fn retained_for(self, retention: Duration) -> Self {
        Self {
            retention: Some(retention),
            ..self
        }
    }

    fn into_wit(self) -> wit::PromiseOptions {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        wit::PromiseOptions {
            timeout_ms: self.timeout.map(millis),
            retention_ms: self.retention.map(millis),
            payload_type: self.payload_type,
        }
    }
}

/// Payload of a promise made by [`all`]: each input's value, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined<T>(pub Vec<T>);

impl<T: Serialize + DeserializeOwned> Joined<T> {
    /// The joined payload: each value's JSON as a 4-byte little-endian
    /// length and its bytes.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for value in &self.0 {
            let bytes = encode(value);
            // A payload is at most a guest's list, far below 4 GiB.
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Reads a joined payload; the error says why it is not one.
    pub fn from_payload(mut bytes: &[u8]) -> Result<Self, String> {
        let mut values = Vec::new();
        while !bytes.is_empty() {
            let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
                return Err("a joined payload ends inside a length".to_owned());
            };
            let len = u32::from_le_bytes(*len) as usize;
            if rest.len() < len {
                return Err("a joined payload ends inside a value".to_owned());
            }
            let (value, rest) = rest.split_at(len);
            values.push(
                serde_json::from_slice(value)
                    .map_err(|e| format!("value {} of a joined payload: {e}", values.len()))?,
            );
            bytes = rest;
        }
        Ok(Self(values))
    }
}

/// The JSON payload of `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising to a Vec fails only for maps with non-string keys and
    // types whose Serialize fails on purpose; both are the caller's bug.
    serde_json::to_vec(value).unwrap_or_else(|e| panic!("a payload cannot be encoded as JSON: {e}"))
}

/// Reads a JSON payload as a `T`; a payload that is not one is a rejection
/// of kind [`RejectionKind::Failed`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Rejection> {
    serde_json::from_slice(bytes).map_err(|e| {
        Rejection::failed(format!(
            "the payload is not the JSON of a {}: {e}",
            core::any::type_name::<T>()
        ))
    })
}

/// Reads a settlement a `then` handler received as a `T`.
pub fn settled<T: DeserializeOwned>(settlement: wit::Settlement) -> Result<T, Rejection> {
    decode(&settlement.map_err(Rejection::from)?)
}

/// Reads the settlement of an [`all`] a `then` handler received.
pub fn settled_all<T: Serialize + DeserializeOwned>(
    settlement: wit::Settlement,
) -> Result<Vec<T>, Rejection> {
    let bytes = settlement.map_err(Rejection::from)?;
    Joined::from_payload(&bytes)
        .map(|joined| joined.0)
        .map_err(Rejection::failed)
}

/// What an export of shape `result<list<u8>, error>` returns to settle its
/// promise with `result`.
pub fn settle<T: Serialize>(result: Result<T, Rejection>) -> Result<Vec<u8>, wit::Error> {
    result.map(|value| encode(&value)).map_err(wit::Error::from)
}

/// A promise of a `T`, settled once with a value or a [`Rejection`].
pub struct Promise<T> {
    id: PromiseId,
    read: fn(&[u8]) -> Result<T, String>,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for Promise<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            read: self.read,
            _value: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Promise").field(&self.id).finish()
    }
}

impl<T> fmt::Display for Promise<T> {
    /// The id's text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.id, f)
    }
}

fn read_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

fn read_joined<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, String> {
    Joined::from_payload(bytes).map(|joined| joined.0)
}

fn made<T>(
    result: Result<PromiseId, String>,
    read: fn(&[u8]) -> Result<T, String>,
) -> Result<Promise<T>, Error> {
    result
        .map(|id| Promise::with_reader(id, read))
        .map_err(Error)
}

fn own(function: &str) -> wit::Target {
    wit::Target {
        component: None,
        function: function.to_owned(),
    }
}

impl<T: Serialize + DeserializeOwned> Promise<T> {
    /// A pending promise owned by the calling worker.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(options: Options) -> Self {
        Self::with_reader(wit::create(&options.into_wit()), read_json::<T>)
    }

    /// A handle to an existing promise of a `T`. Calls nothing.
    pub fn from_id(id: PromiseId) -> Self {
        Self::with_reader(id, read_json::<T>)
    }

    /// Fulfils the promise with `value`: `true` if this call settled it.
    pub fn resolve(&self, value: &T) -> bool {
        host::complete_promise(&self.id, &encode(value))
    }

    /// Settles the promise with a value or a rejection (whose kind is
    /// always `rejected` when set from a guest): `true` if this call
    /// settled it.
    pub fn settle(&self, result: Result<T, Rejection>) -> bool {
        match result {
            Ok(value) => self.resolve(&value),
            Err(rejection) => wit::reject(&self.id, &rejection.message, &rejection.data),
        }
    }
}

impl<T> Promise<T> {
    fn with_reader(id: PromiseId, read: fn(&[u8]) -> Result<T, String>) -> Self {
        Self {
            id,
            read,
            _value: PhantomData,
        }
    }

    /// The promise's id.
    pub fn id(&self) -> &PromiseId {
        &self.id
    }

    /// Rejects the promise with `message`: `true` if this call settled it.
    pub fn reject(&self, message: &str) -> bool {
        wit::reject(&self.id, message, &[])
    }

    fn read(&self, settlement: wit::Settlement) -> Result<T, Rejection> {
        let bytes = settlement.map_err(Rejection::from)?;
        (self.read)(&bytes).map_err(|e| {
            Rejection::failed(format!(
                "the payload of promise {} is not the JSON of a {}: {e}",
                self.id,
                core::any::type_name::<T>()
            ))
        })
    }

    /// Suspends the worker until the promise settles: its value or its
    /// rejection.
    pub fn wait(&self) -> Result<T, Rejection> {
        self.read(wit::wait(&self.id))
    }

    /// Like [`wait`](Self::wait), giving up after `timeout` (the promise
    /// stays as it is): `None` then.
    pub fn wait_for(&self, timeout: Duration) -> Option<Result<T, Rejection>> {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        wit::wait_any(core::slice::from_ref(&self.id), Some(millis)).map(|(_, s)| self.read(s))
    }

    /// The settlement if there is one, without waiting.
    pub fn poll(&self) -> Option<Result<T, Rejection>> {
        wit::poll(&self.id).map(|s| self.read(s))
    }

    /// Once this promise settles, runs `function` (an export of the
    /// caller's component) in a new worker with the settlement, and returns
    /// a promise of its result. See the module docs for the export's shape.
    pub fn then<U: Serialize + DeserializeOwned>(
        &self,
        function: &str,
        options: Options,
    ) -> Result<Promise<U>, Error> {
        made(
            wit::then(&self.id, &own(function), &options.into_wit()),
            read_json::<U>,
        )
    }

    /// [`then`](Self::then) with an export of another component.
    pub fn then_in<U: Serialize + DeserializeOwned>(
        &self,
        component: ComponentId,
        function: &str,
        options: Options,
    ) -> Result<Promise<U>, Error> {
        let target = wit::Target {
            component: Some(component),
            function: function.to_owned(),
        };
        made(
            wit::then(&self.id, &target, &options.into_wit()),
            read_json::<U>,
        )
    }
}

/// Runs `function` (an export of the caller's component) with `input` in a
/// new worker, and returns a promise of its result.
pub fn when<A: Serialize + ?Sized, T: Serialize + DeserializeOwned>(
    function: &str,
    input: &A,
    options: Options,
) -> Result<Promise<T>, Error> {
    made(
        wit::when(&own(function), &encode(input), &options.into_wit()),
        read_json::<T>,
    )
}

/// [`when`] with an export of another component.
pub fn when_in<A: Serialize + ?Sized, T: Serialize + DeserializeOwned>(
    component: ComponentId,
    function: &str,
    input: &A,
    options: Options,
) -> Result<Promise<T>, Error> {
    let target = wit::Target {
        component: Some(component),
        function: function.to_owned(),
    };
    made(
        wit::when(&target, &encode(input), &options.into_wit()),
        read_json::<T>,
    )
}

/// A promise of every value of `promises`, in order, once all are
/// fulfilled; rejected with the first rejection.
pub fn all<T: Serialize + DeserializeOwned>(
    promises: &[Promise<T>],
    options: Options,
) -> Result<Promise<Vec<T>>, Error> {
    let ids: Vec<PromiseId> = promises.iter().map(|p| p.id.clone()).collect();
    made(wit::all(&ids, &options.into_wit()), read_joined::<T>)
}

/// A promise of the first value of `promises` to be fulfilled; rejected
/// once all are rejected.
pub fn any<T: Serialize + DeserializeOwned>(
    promises: &[Promise<T>],
    options: Options,
) -> Result<Promise<T>, Error> {
    let ids: Vec<PromiseId> = promises.iter().map(|p| p.id.clone()).collect();
    made(wit::any(&ids, &options.into_wit()), read_json::<T>)
}

/// The promise the running invocation settles (it was started by `when` or
/// `then`), for a function that returns nothing and settles it later (or
/// hands it on).
pub fn current<T: Serialize + DeserializeOwned>() -> Option<Promise<T>> {
    wit::current().map(Promise::from_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_payloads_round_trip() {
        let joined = Joined(vec!["a".to_owned(), String::new()]);
        let bytes = joined.to_payload();
        assert_eq!(bytes, b"\x03\x00\x00\x00\"a\"\x02\x00\x00\x00\"\"");
        assert_eq!(Joined::<String>::from_payload(&bytes), Ok(joined));
        assert_eq!(
            Joined::<String>::from_payload(b"\x05\x00\x00\x00ab"),
            Err("a joined payload ends inside a value".to_owned())
        );
    }

    #[test]
    fn settlements_read_as_values_or_rejections() {
        assert_eq!(settled::<u32>(Ok(b"7".to_vec())), Ok(7));
        let error = wit::Error {
            kind: wit::ErrorKind::TimedOut,
            message: "late".to_owned(),
            data: vec![1],
        };
        let rejection = settled::<u32>(Err(error));
        assert_eq!(
            rejection,
            Err(Rejection {
                kind: RejectionKind::TimedOut,
                message: "late".to_owned(),
                data: vec![1]
            })
        );
        let odd = decode::<u32>(b"\"seven\"");
        assert!(
            matches!(&odd, Err(r) if r.kind == RejectionKind::Failed
                && r.message.starts_with("the payload is not the JSON of a u32: ")),
            "{odd:?}"
        );
        assert_eq!(
            settled_all::<u8>(Ok(Joined(vec![1u8, 2]).to_payload())),
            Ok(vec![1, 2])
        );
        assert_eq!(settle::<u8>(Ok(5)), Ok(b"5".to_vec()));
        assert_eq!(Rejection::new("no").to_string(), "rejected: no");
    }
}
