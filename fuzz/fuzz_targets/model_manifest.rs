//! Model manifests: DSSE envelopes and in-toto statements parse, re-encode and parse
//! again to the same value; the root digest and file-name checks never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::manifest::{self, Statement};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = manifest::parse_envelope(data) {
        let text = serde_json::to_vec(&env).expect("encode");
        assert_eq!(manifest::parse_envelope(&text).expect("re-parse"), env);
    }
    if let Ok(st) = serde_json::from_slice::<Statement>(data) {
        let text = serde_json::to_vec(&st).expect("encode");
        let again: Statement = serde_json::from_slice(&text).expect("re-parse");
        assert_eq!(again, st);
        let _ = manifest::root_digest(&st.predicate.resources);
        for r in &st.predicate.resources {
            let _ = manifest::check_file_name(&r.name);
        }
    }
});
