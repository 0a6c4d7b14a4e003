//! JSON values against generated component types, through the payload
//! checker (`vow-payload-type`) and the server's decoder
//! (`vow_server::json`): neither panics, they accept the same values and
//! agree on their canonical form, checking is idempotent, and generated
//! values round-trip. The JSON is arbitrary, a valid value broken at one
//! place, or raw bytes.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vow_server::json::{from_json, to_json};
use vow_testgen::unstructured;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(ty) = unstructured::payload_type(&mut u) else {
        return;
    };
    let component = vow_fuzz::component_type(&ty);
    let Ok(mode) = u.choose_index(4) else {
        return;
    };
    let json = match mode {
        0 => {
            // A valid value: it checks as itself and round-trips.
            let Ok(value) = unstructured::value(&mut u, &ty) else {
                return;
            };
            assert_eq!(ty.check(&value).as_ref(), Ok(&value), "{ty}");
            let val = from_json(&component, &value).unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert_eq!(to_json(&val), value, "{ty}");
            value
        }
        1 => {
            let Ok(value) = unstructured::value(&mut u, &ty) else {
                return;
            };
            let Ok(broken) = unstructured::mutated(&mut u, value) else {
                return;
            };
            broken
        }
        2 => match unstructured::json(&mut u) {
            Ok(json) => json,
            Err(_) => return,
        },
        _ => {
            let bytes = u.take_rest();
            let _ = ty.check_bytes(bytes);
            match serde_json::from_slice::<Value>(bytes) {
                Ok(json) => json,
                Err(_) => return,
            }
        }
    };
    let checked = ty.check(&json);
    if let Ok(canonical) = &checked {
        assert_eq!(ty.check(canonical).as_ref(), Ok(canonical), "{ty}");
    }
    let decoded = from_json(&component, &json);
    match (&checked, &decoded) {
        (Ok(canonical), Ok(val)) => assert_eq!(&to_json(val), canonical, "{ty} {json}"),
        (Err(_), Err(_)) => {}
        _ => panic!("{ty}: the checker says {checked:?}, the server {decoded:?}, for {json}"),
    }
});
