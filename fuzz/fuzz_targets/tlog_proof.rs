//! Offline proofs in the C2SP tlog-proof form: parse, serialise, parse again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::checkpoint::TlogProof;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = TlogProof::parse(data) {
        let text = p.to_text();
        let again = TlogProof::parse(text.as_bytes()).expect("re-parse");
        assert_eq!(again, p);
    }
});
