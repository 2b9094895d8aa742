//! Encrypted datasets: arbitrary bytes never decrypt to anything (nor panic), and a
//! file made from the input's plaintext round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use warden_core::crypto::RecipientSecretKey;
use warden_data::dataset;

fn key() -> &'static RecipientSecretKey {
    static K: OnceLock<RecipientSecretKey> = OnceLock::new();
    K.get_or_init(|| RecipientSecretKey::generate(zeroize::Zeroizing::new([3u8; 32])).expect("key"))
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if dataset::decrypt(&mut &data[..], &mut out, key(), &mut |_| {}).is_ok() {
        // Only a file sealed for this key can open; random input cannot be one.
        assert!(data.starts_with(dataset::MAGIC));
    }
    let mut ct = Vec::new();
    dataset::encrypt(&mut &data[..], &mut ct, &[key().public().clone()], &mut |_| {}).expect("encrypt");
    let mut pt = Vec::new();
    dataset::decrypt(&mut &ct[..], &mut pt, key(), &mut |_| {}).expect("decrypt");
    assert_eq!(pt, data);
});
