//! Checkpoint records (one JSON line each): strict decode, canonical re-encode.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::record::CheckpointRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = CheckpointRecord::decode(data) {
        let enc = r.encode().expect("encode");
        assert_eq!(enc.as_slice(), data);
    }
});
