//! WAVE text against generated component types, as `params_wave` and the
//! stored invocations are read: parsing never panics, a parsed value
//! prints as text that parses back the same, and generated values
//! round-trip. The text is arbitrary or a valid value's text mutated.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use vow_runtime::Val;
use vow_server::json::from_json;
use vow_testgen::component::sorted_flags;
use vow_testgen::unstructured;
use wasmtime::component::wasm_wave;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(ty) = unstructured::payload_type(&mut u) else {
        return;
    };
    let component = vow_fuzz::component_type(&ty);
    let text = match u.arbitrary::<bool>() {
        Ok(true) => {
            let Ok(value) = unstructured::value(&mut u, &ty) else {
                return;
            };
            let val = from_json(&component, &value).unwrap_or_else(|e| panic!("{ty}: {e}"));
            let text = wasm_wave::to_string(&val).unwrap_or_else(|e| panic!("{ty}: {e}"));
            let back = wasm_wave::from_str::<Val>(&component, &text)
                .unwrap_or_else(|e| panic!("{ty}: {e} for {text}"));
            // WAVE reads flags back in an order of its own: compare sets.
            assert_eq!(sorted_flags(&back), sorted_flags(&val), "{ty}: {text}");
            let Ok(bytes) = vow_fuzz::mutate(&mut u, text.into_bytes()) else {
                return;
            };
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => String::from_utf8_lossy(u.take_rest()).into_owned(),
    };
    if let Ok(val) = wasm_wave::from_str::<Val>(&component, &text) {
        let again = wasm_wave::to_string(&val).unwrap_or_else(|e| panic!("{ty}: {e}"));
        let back = wasm_wave::from_str::<Val>(&component, &again)
            .unwrap_or_else(|e| panic!("{ty}: {e} for {again}"));
        assert_eq!(
            sorted_flags(&back),
            sorted_flags(&val),
            "{ty}: {text} printed as {again}"
        );
    }
});
