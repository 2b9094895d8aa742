//! Rotation records (base64 JSON in the key.rotation header): decode, encode, decode.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::epoch::RotationRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(r) = RotationRecord::decode(s)
    {
        let enc = r.encode().expect("encode");
        assert_eq!(RotationRecord::decode(&enc).expect("re-decode"), r);
    }
});
