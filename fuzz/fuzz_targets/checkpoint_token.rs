//! Checkpoint export tokens: finding one in arbitrary text never fails badly, and any
//! note survives being wrapped in a token inside other text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::checkpoint::{export_token, find_export_token};

fuzz_target!(|data: &[u8]| {
    let _ = find_export_token(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let wrapped = format!("{s} {} ]\"", export_token(s));
        assert_eq!(find_export_token(wrapped.as_bytes()), Some(data.to_vec()));
    }
});
