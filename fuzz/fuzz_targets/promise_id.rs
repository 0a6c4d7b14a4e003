//! Promise ids as people type them: parsing never panics, a parsed id
//! prints as text that parses back the same, and every id round-trips.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use vow_runtime::PromiseId;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let text = match u.choose_index(3) {
        Ok(0) => {
            let Ok(id) = vow_fuzz::promise_id(&mut u) else {
                return;
            };
            let text = id.to_string();
            assert_eq!(text.parse::<PromiseId>().ok(), Some(id), "{text}");
            let Ok(bytes) = vow_fuzz::mutate(&mut u, text.into_bytes()) else {
                return;
            };
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => String::from_utf8_lossy(u.take_rest()).into_owned(),
    };
    if let Ok(id) = text.parse::<PromiseId>() {
        assert_eq!(id.to_string().parse::<PromiseId>().ok(), Some(id), "{text}");
    }
});
