//! Stored oplog entries, as replay reads them back: decoding any bytes
//! gives an entry or an error, never a panic, and a decoded entry encodes
//! as bytes that decode to it again. `dicts/oplog_entry.dict` gives
//! libFuzzer the entry kinds and field names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vow_runtime::OplogEntry;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = OplogEntry::decode(data) {
        assert_eq!(OplogEntry::decode(&entry.encode()), Ok(entry));
    }
});
