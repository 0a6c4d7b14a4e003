//! Spans, and joining them to a caller's trace.
//!
//! Every invocation runs in an `invocation` span (INFO, fields `worker`,
//! `function`, `seq`, `idempotency_key`, `trace_id`), from the moment it is
//! queued until its outcome is stored, entered whenever the worker task
//! works on it, across the guest's awaits and the replay that brings its
//! worker back. An invocation nobody awaits leaves memory with its worker
//! when that worker is evicted while it waits (the store keeps it): its
//! span ends there, and a new `invocation` span covers the rest once it is
//! read back.
//! Every host call the guest makes (`golem:api/host.*`,
//! `vow:host/promises.*`, `wasi:io/poll.*`) has a span of its own, named
//! after the import, with the `worker` and, where the call names one, the
//! `promise`; DEBUG for calls that act or wait, TRACE for the plain reads.
//! When no subscriber listens at a span's level the span is not created at
//! all: a host call then pays a few loads and compares.
//!
//! A caller joins an invocation to its own trace with a W3C `traceparent`
//! ([`TraceParent`], given with [`Invocation::with_trace_parent`]). It is
//! kept with the invocation, in memory and in the store, so an invocation
//! that runs later, on the worker's task, after an eviction or after a
//! restart, still joins that trace. The runtime knows no tracing backend:
//! it records the trace id in the span's `trace_id` field (so logs show
//! it), and hands the span and the parent to the hook set with
//! [`set_join_hook`], which the OpenTelemetry bridge of `vow serve
//! --otlp-endpoint` uses to make the caller's span the span's parent.
//!
//! [`Invocation::with_trace_parent`]: crate::Invocation::with_trace_parent

use std::fmt;
use std::sync::OnceLock;

use crate::ids::WorkerId;

/// A caller's position in a distributed trace: what a W3C `traceparent`
/// header carries (<https://www.w3.org/TR/trace-context/>). Plain data, so
/// that the runtime needs no tracing backend to carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// A trace parent; `None` when either id is all zeros, which W3C
    /// reserves for "invalid".
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<Self> {
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Parses a `traceparent` header value (`00-<trace-id>-<parent-id>-<flags>`,
    /// lowercase hex); `None` for one that W3C says to ignore: a malformed
    /// value, version `ff`, or an all-zero id. A later version is read by
    /// its version-00 prefix, as the specification asks.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim_matches([' ', '\t']);
        let bytes = text.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_byte(&bytes[0..2])?;
        let fits = match version {
            0xff => false,
            0 => bytes.len() == 55,
            _ => bytes.len() == 55 || bytes[55] == b'-',
        };
        if !fits || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let mut trace_id = [0; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&bytes[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0; 8];
        for (i, byte) in parent_id.iter_mut().enumerate() {
            *byte = hex_byte(&bytes[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&bytes[53..55])?;
        Self::new(trace_id, parent_id, flags)
    }

    /// The trace's id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The id of the caller's span: the parent of the span that joins.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags; bit 0 is "sampled".
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The trace id as 32 lowercase hex digits, as logs and trace viewers
    /// show it.
    pub fn trace_id_hex(&self) -> String {
        Hex(&self.trace_id).to_string()
    }
}

/// The version-00 header value.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            Hex(&self.trace_id),
            Hex(&self.parent_id),
            self.flags
        )
    }
}

/// Bytes as lowercase hex.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Two lowercase hex digits.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    match pair {
        [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
        _ => None,
    }
}

/// Makes a remote parent the parent of a span in the tracing backend the
/// process uses (see [`set_join_hook`]).
pub type JoinHook = fn(&tracing::Span, &TraceParent);

static JOIN_HOOK: OnceLock<JoinHook> = OnceLock::new();

/// Sets, once per process, how [`join`] gives a span its remote parent,
/// next to the global `tracing` subscriber it goes with; `false` if a hook
/// was set already (that one stays).
pub fn set_join_hook(hook: JoinHook) -> bool {
    JOIN_HOOK.set(hook).is_ok()
}

/// Joins `span` to the caller's trace: records the trace id in its
/// `trace_id` field (if it has one) and passes both to the hook set with
/// [`set_join_hook`]. Call it as soon as the span is created, before it is
/// first entered: a backend fixes a span's parent when it starts it.
pub fn join(span: &tracing::Span, parent: &TraceParent) {
    if span.is_disabled() {
        return;
    }
    span.record("trace_id", tracing::field::display(Hex(&parent.trace_id)));
    if let Some(hook) = JOIN_HOOK.get() {
        hook(span, parent);
    }
}

/// The span of one invocation (see the module docs). A root in `tracing`'s
/// tree: the invocation outlives the request that queued it, and replays
/// and restarts create it again from the store, where no caller's span
/// is; `parent` joins it to the caller's trace instead.
pub(crate) fn invocation_span(
    worker: &WorkerId,
    function: &str,
    seq: u64,
    idempotency_key: Option<&str>,
    parent: Option<&TraceParent>,
) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "invocation",
        worker = %worker,
        function,
        seq,
        idempotency_key,
        trace_id = tracing::field::Empty,
    );
    if let Some(parent) = parent {
        join(&span, parent);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_version_00_header_round_trips() {
        let parent = TraceParent::parse(HEADER).expect("valid");
        assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            parent.parent_id(),
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(parent.flags(), 1);
        assert_eq!(parent.to_string(), HEADER);
        // Surrounding whitespace is allowed in a header value.
        assert_eq!(TraceParent::parse(&format!(" {HEADER}\t")), Some(parent));
    }

    #[test]
    fn headers_w3c_says_to_ignore_are_refused() {
        let refused = [
            "",
            // Version ff, uppercase hex, all-zero ids, a wrong separator.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Version 00 takes nothing after the flags; truncated; not hex.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            // A later version with more fields still needs a dash after
            // the flags.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for text in refused {
            assert_eq!(TraceParent::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_version_00_prefix() {
        let parent =
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-else")
                .expect("valid");
        assert_eq!(parent.to_string(), HEADER);
    }
}
