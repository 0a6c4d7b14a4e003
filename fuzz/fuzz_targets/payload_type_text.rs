//! WIT type text, as guests declare payload types: parsing never panics,
//! and a parsed type prints as text that parses back the same. Half the
//! inputs are generated types' text with bytes mutated.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use vow_payload_type::PayloadType;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let text = match u.arbitrary::<bool>() {
        Ok(true) => {
            let Ok(ty) = vow_testgen::unstructured::payload_type(&mut u) else {
                return;
            };
            let text = ty.to_string();
            assert_eq!(PayloadType::parse(&text).as_ref(), Ok(&ty), "{text}");
            let Ok(bytes) = vow_fuzz::mutate(&mut u, text.into_bytes()) else {
                return;
            };
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => String::from_utf8_lossy(u.take_rest()).into_owned(),
    };
    if let Ok(ty) = PayloadType::parse(&text) {
        assert_eq!(PayloadType::parse(&ty.to_string()), Ok(ty), "{text}");
    }
});
