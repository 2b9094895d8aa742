//! The witness's inputs: `add-checkpoint` bodies (parse, encode, parse again) and
//! verifier keys (parse, print, parse again).
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::cosign::VerifierKey;
use warden_core::witness::AddCheckpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = AddCheckpoint::parse(data) {
        let again = AddCheckpoint::parse(r.encode().as_bytes()).expect("re-parse");
        assert_eq!(again, r);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(k) = VerifierKey::parse(text)
    {
        assert_eq!(VerifierKey::parse(&k.to_string()).expect("re-parse"), k);
    }
});
