//! Signed notes and the checkpoint text inside them: parse, re-encode, parse again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::checkpoint::Checkpoint;
use warden_core::note::Note;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = Note::parse(data) {
        let text = n.to_string();
        assert_eq!(text.as_bytes(), data);
        let again = Note::parse(text.as_bytes()).expect("re-parse");
        assert_eq!(again, n);
    }
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(cp) = Checkpoint::from_text(s)
    {
        assert_eq!(cp.to_text(), s);
    }
});
