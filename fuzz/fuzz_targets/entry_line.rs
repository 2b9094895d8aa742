//! Entry lines: the strict parser never panics, and whatever it accepts is canonical:
//! re-encoding the header reproduces the associated data byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::entry::parse_line;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = parse_line(data) {
        let mut aad = Vec::new();
        e.header.write_to(&mut aad);
        assert_eq!(aad.as_slice(), e.aad);
        assert!(data.starts_with(e.aad));
        let mut line = aad;
        line.extend_from_slice(b",\"encrypted\":\"");
        line.extend_from_slice(e.encrypted_hex);
        line.extend_from_slice(b"\"}");
        assert_eq!(line.as_slice(), data);
    }
});
