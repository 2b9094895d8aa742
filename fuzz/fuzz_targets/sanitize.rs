//! The PII sanitiser: findings are in order, inside the input and never overlapping;
//! valid UTF-8 stays valid UTF-8; JSON Lines output of valid JSON is valid JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_data::sanitize::{Rules, Sanitizer};
use warden_data::stream::{self, Fields, Format};

fuzz_target!(|data: &[u8]| {
    let mut s = Sanitizer::new(Rules::default());
    let mut found = Vec::new();
    s.find(data, &mut found);
    let mut last = 0;
    for f in &found {
        assert!(f.start >= last && f.start < f.end && f.end <= data.len());
        last = f.end;
    }
    let mut out = Vec::new();
    s.sanitize(data, &mut out);
    if std::str::from_utf8(data).is_ok() {
        assert!(std::str::from_utf8(&out).is_ok(), "UTF-8 broken");
    }
    if !data.contains(&b'\n') && serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        let mut out = Vec::new();
        let r = stream::run(Format::Jsonl, &Fields::default(), &mut s, &mut &data[..], &mut out, &mut |_| {});
        assert!(r.is_ok());
        serde_json::from_slice::<serde_json::Value>(&out).expect("still JSON");
    }
});
