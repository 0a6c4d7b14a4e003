//! The promise-key column encoding of the stores: decoding any bytes gives
//! keys or `None`, never a panic, decoded keys encode as the same bytes,
//! and generated keys round-trip.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use vow_store::{PromiseKey, WorkerKey, decode_promise_keys, encode_promise_keys};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let bytes = match u.arbitrary::<bool>() {
        Ok(true) => {
            let Ok(keys) = u.arbitrary_iter::<(u128, String, u64)>().and_then(|items| {
                items
                    .map(|item| {
                        item.map(|(component, name, index)| PromiseKey {
                            worker: WorkerKey {
                                component: uuid::Uuid::from_u128(component),
                                name,
                            },
                            index,
                        })
                    })
                    .collect::<arbitrary::Result<Vec<_>>>()
            }) else {
                return;
            };
            let bytes = encode_promise_keys(&keys);
            assert_eq!(decode_promise_keys(&bytes).as_ref(), Some(&keys));
            match vow_fuzz::mutate(&mut u, bytes) {
                Ok(bytes) => bytes,
                Err(_) => return,
            }
        }
        _ => u.take_rest().to_vec(),
    };
    if let Some(keys) = decode_promise_keys(&bytes) {
        assert_eq!(encode_promise_keys(&keys), bytes);
    }
});
