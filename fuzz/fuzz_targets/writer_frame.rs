//! The writer protocol's decoder: a byte stream of frames never panics, every frame is
//! either rejected with a code or decodes to a request that re-encodes to one that
//! decodes to the same operation, id and kind (event numbers may round differently
//! through JSON, so the event is not compared).
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_store::writer::proto::{Request, decode_request, encode_request, read_frame};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let mut buf = Vec::new();
    while let Ok(Some(())) = read_frame(&mut r, &mut buf) {
        if let Ok(req) = decode_request(&buf) {
            let again = encode_request(&req).expect("a decoded request encodes");
            let back = decode_request(&again).expect("re-encoded request decodes");
            match (&req, &back) {
                (Request::Hello { .. }, Request::Hello { .. })
                | (Request::Yield, Request::Yield) => assert_eq!(req, back),
                (
                    Request::Append { id, kind, deadline_ms, .. },
                    Request::Append { id: i2, kind: k2, deadline_ms: d2, .. },
                ) => assert_eq!((id, kind, deadline_ms), (i2, k2, d2)),
                _ => panic!("operation changed"),
            }
        }
    }
});
