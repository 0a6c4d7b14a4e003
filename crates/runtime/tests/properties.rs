//! Properties of what the runtime reads from outside: promise ids typed
//! by people, stored oplog entries, and completion-link tokens (the stable
//! counterpart of the fuzz targets `promise_id`, `oplog_entry` and
//! `link_token` in `fuzz/`). Reading never panics, and what is written
//! reads back the same.
//!
//! `PROPTEST_CASES=N` runs each property N times instead of the default.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use vow_runtime::links::{LinkAction, LinkGrant, LinkKeys};
use vow_runtime::{
    ComponentId, ErrorKind, HostSettings, OplogEntry, PromiseError, PromiseId, RecordedMetadata,
    StoredSettlement, WorkerId,
};

/// Proptest's configuration with `cases` cases, unless `PROPTEST_CASES`
/// asks for another number.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

fn worker_id() -> impl Strategy<Value = WorkerId> {
    // Any non-empty name: ids are read back even with names the runtime
    // would refuse (a `/` in them), since other tools may write them.
    let name = prop_oneof![3 => "[a-z0-9._-]{1,12}", 1 => ".{1,12}"];
    (any::<u128>(), name)
        .prop_map(|(id, name)| WorkerId::new(ComponentId(uuid::Uuid::from_u128(id)), name))
}

fn promise_id() -> impl Strategy<Value = PromiseId> {
    (worker_id(), any::<u64>()).prop_map(|(worker_id, oplog_idx)| PromiseId {
        worker_id,
        oplog_idx,
    })
}

fn settlement() -> impl Strategy<Value = StoredSettlement> {
    let kind = prop_oneof![
        Just(ErrorKind::Rejected),
        Just(ErrorKind::TimedOut),
        Just(ErrorKind::Failed),
    ];
    prop_oneof![
        vec(any::<u8>(), 0..8).prop_map(Ok),
        (kind, ".{0,8}", vec(any::<u8>(), 0..4)).prop_map(|(kind, message, data)| Err(
            PromiseError {
                kind,
                message,
                data
            }
        )),
    ]
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    vec(".{0,8}", 0..3)
}

/// Oplog entries of most shapes (those with floats keep them finite:
/// JSON has no NaN).
fn oplog_entry() -> impl Strategy<Value = OplogEntry> {
    let settings = (
        (
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            -1e9..1e9f64,
            option::of(0.0..1.0f64),
        ),
        ".{0,8}",
        any::<bool>(),
    )
        .prop_map(|(retry_policy, persistence, idempotent)| HostSettings {
            retry_policy,
            persistence,
            idempotent,
        });
    let metadata = (worker_id(), strings(), ".{0,8}", any::<u64>(), any::<u64>()).prop_map(
        |(id, args, status, component_version, retry_count)| RecordedMetadata {
            id,
            args,
            env: vec![("K".to_owned(), "v=1".to_owned())],
            status,
            component_version,
            retry_count,
        },
    );
    prop_oneof![
        (
            strings(),
            vec((".{0,4}", ".{0,4}"), 0..3),
            any::<(u64, u64)>()
        )
            .prop_map(|(args, env, insecure_seed)| OplogEntry::Create {
                args,
                env,
                insecure_seed
            }),
        (
            ".{0,8}",
            option::of(".{0,8}"),
            any::<u64>(),
            strings(),
            option::of(promise_id())
        )
            .prop_map(|(function, idempotency_key, seq, params, settles)| {
                OplogEntry::InvocationStarted {
                    function,
                    idempotency_key,
                    seq,
                    params,
                    settles,
                }
            }),
        (any::<bool>(), any::<u64>())
            .prop_map(|(ok, seq)| OplogEntry::InvocationFinished { ok, seq }),
        Just(OplogEntry::CreatePromise),
        (promise_id(), vec(any::<u8>(), 0..16))
            .prop_map(|(promise, payload)| OplogEntry::AwaitPromise { promise, payload }),
        (promise_id(), any::<bool>())
            .prop_map(|(promise, completed)| OplogEntry::CompletePromise { promise, completed }),
        (promise_id(), option::of(settlement())).prop_map(|(promise, settlement)| {
            OplogEntry::PollPromise {
                promise,
                settlement,
            }
        }),
        (
            vec(promise_id(), 0..3),
            option::of((any::<u32>(), settlement()))
        )
            .prop_map(|(promises, answer)| OplogEntry::WaitAny { promises, answer }),
        (vec(promise_id(), 0..3), option::of(vec(settlement(), 0..3)))
            .prop_map(|(promises, answer)| OplogEntry::WaitAll { promises, answer }),
        vec(any::<u32>(), 0..4).prop_map(|ready| OplogEntry::WasiPoll { ready }),
        any::<(u64, u64)>().prop_map(|key| OplogEntry::IdempotencyKey { key }),
        (".{0,8}", option::of(settings.clone()))
            .prop_map(|(setting, settings)| OplogEntry::SettingChanged { setting, settings }),
        (".{0,8}", vec(metadata, 0..2))
            .prop_map(|(function, answer)| OplogEntry::MetadataRead { function, answer }),
        vec(any::<u8>(), 0..32).prop_map(|bytes| OplogEntry::Random { bytes }),
        any::<u64>().prop_map(|nanos| OplogEntry::WallClock { nanos }),
        any::<u64>().prop_map(|to| OplogEntry::Jump { to }),
        (any::<u64>(), settings, any::<u64>()).prop_map(|(size, settings, monotonic)| {
            OplogEntry::Snapshot {
                size,
                settings,
                monotonic,
            }
        }),
    ]
}

/// `bytes` with a few bytes flipped, inserted or removed, or cut short.
fn mutated(bytes: Vec<u8>, edits: Vec<(usize, u8, u8)>) -> Vec<u8> {
    let mut bytes = bytes;
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
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    vec(any::<(usize, u8, u8)>(), 1..4)
}

fn grant() -> impl Strategy<Value = LinkGrant> {
    let action = prop_oneof![
        Just(LinkAction::Complete),
        Just(LinkAction::Reject),
        Just(LinkAction::Both),
    ];
    (promise_id(), action, 1u64..).prop_map(|(promise, action, expires_at)| LinkGrant {
        promise,
        action,
        expires_at,
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn promise_ids_round_trip_through_their_text(id in promise_id()) {
        let text = id.to_string();
        prop_assert_eq!(text.parse::<PromiseId>().ok(), Some(id), "{}", text);
    }

    #[test]
    fn parsing_any_text_as_a_promise_id_returns(text in any::<String>()) {
        if let Ok(id) = text.parse::<PromiseId>() {
            prop_assert_eq!(id.to_string().parse::<PromiseId>().ok(), Some(id));
        }
    }

    #[test]
    fn parsing_mutated_promise_ids_returns(id in promise_id(), edits in edits()) {
        let text = String::from_utf8_lossy(&mutated(id.to_string().into_bytes(), edits)).into_owned();
        if let Ok(id) = text.parse::<PromiseId>() {
            prop_assert_eq!(id.to_string().parse::<PromiseId>().ok(), Some(id), "{}", text);
        }
    }

    #[test]
    fn oplog_entries_round_trip_through_their_stored_form(entry in oplog_entry()) {
        prop_assert_eq!(OplogEntry::decode(&entry.encode()), Ok(entry));
    }

    #[test]
    fn decoding_any_bytes_as_an_oplog_entry_returns(bytes in vec(any::<u8>(), 0..64)) {
        let _ = OplogEntry::decode(&bytes);
    }

    #[test]
    fn decoding_mutated_oplog_entries_returns(entry in oplog_entry(), edits in edits()) {
        let bytes = mutated(entry.encode(), edits);
        if let Ok(entry) = OplogEntry::decode(&bytes) {
            prop_assert_eq!(OplogEntry::decode(&entry.encode()), Ok(entry));
        }
    }
}

proptest! {
    // Each case signs and verifies with HMAC: fewer cases by default.
    #![proptest_config(config(128))]

    #[test]
    fn links_verify_what_they_signed(grant in grant()) {
        let keys = LinkKeys::ephemeral();
        let token = keys.sign(&grant);
        prop_assert_eq!(keys.verify(&token, grant.expires_at - 1), Ok(grant.clone()));
        prop_assert!(keys.verify(&token, grant.expires_at).is_err(), "expired");
        // Another server's keys (with the same key id) refuse it.
        prop_assert!(LinkKeys::ephemeral().verify(&token, 0).is_err());
    }

    #[test]
    fn any_text_never_verifies(text in any::<String>(), b64 in "[A-Za-z0-9_-]{0,120}") {
        let keys = LinkKeys::ephemeral();
        prop_assert!(keys.verify(&text, 0).is_err());
        prop_assert!(keys.verify(&b64, 0).is_err());
    }

    #[test]
    fn tokens_with_a_flipped_bit_never_verify(grant in grant(), at in any::<usize>(), bit in 0..8u8) {
        let keys = LinkKeys::ephemeral();
        let token = keys.sign(&grant);
        let Ok(mut bytes) = URL_SAFE_NO_PAD.decode(&token) else {
            return Err(TestCaseError::fail(format!("{token} is not base64")));
        };
        let at = at % bytes.len();
        bytes[at] ^= 1 << bit;
        prop_assert!(keys.verify(&URL_SAFE_NO_PAD.encode(&bytes), 0).is_err(), "byte {}", at);
        // The same on the text: a character flipped to another base64 one.
        let mut text = token.into_bytes();
        let at = at % text.len();
        text[at] = if text[at] == b'A' { b'B' } else { b'A' };
        let text = String::from_utf8_lossy(&text).into_owned();
        prop_assert!(keys.verify(&text, 0).is_err(), "character {}", at);
    }

    #[test]
    fn mutated_tokens_never_verify(grant in grant(), edits in edits()) {
        let keys = LinkKeys::ephemeral();
        let token = keys.sign(&grant);
        let bytes = mutated(token.clone().into_bytes(), edits);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if text != token {
            prop_assert!(keys.verify(&text, 0).is_err(), "{}", text);
        }
    }
}
