//! Completion-link tokens: arbitrary text never verifies, a signed token
//! verifies as its grant, and one with a bit flipped (in its bytes or a
//! character of its text) never does. Nothing panics.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use vow_runtime::links::LinkKeys;

fn keys() -> &'static LinkKeys {
    static KEYS: OnceLock<LinkKeys> = OnceLock::new();
    KEYS.get_or_init(LinkKeys::ephemeral)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    match u.arbitrary::<bool>() {
        Ok(true) => {
            let Ok(grant) = vow_fuzz::grant(&mut u) else {
                return;
            };
            let token = keys().sign(&grant);
            assert_eq!(keys().verify(&token, grant.expires_at - 1), Ok(grant));
            let Ok(bytes) = URL_SAFE_NO_PAD.decode(&token) else {
                panic!("{token} is not base64");
            };
            let Ok(mutated) = vow_fuzz::mutate(&mut u, bytes.clone()) else {
                return;
            };
            if mutated != bytes {
                let altered = URL_SAFE_NO_PAD.encode(&mutated);
                assert!(keys().verify(&altered, 0).is_err(), "{altered} verifies");
            }
            let Ok(text) = vow_fuzz::mutate(&mut u, token.clone().into_bytes()) else {
                return;
            };
            let text = String::from_utf8_lossy(&text).into_owned();
            if text != token {
                assert!(keys().verify(&text, 0).is_err(), "{text} verifies");
            }
        }
        _ => {
            let text = String::from_utf8_lossy(u.take_rest()).into_owned();
            assert!(keys().verify(&text, 0).is_err(), "{text} verifies");
        }
    }
});
