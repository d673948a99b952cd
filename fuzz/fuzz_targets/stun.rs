//! Hostile datagrams where a STUN server's answer is expected: never panic; anything taken
//! for STUN is never a punch probe; an address read back names a port.
#![no_main]

use extrasafe_core::stun::{looks_like_stun, mapped_address};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let stun = looks_like_stun(data);
    if stun {
        assert!(!extrasafe_core::punch::is_probe(data));
    }
    let txid: [u8; 12] = data.get(8..20).and_then(|t| t.try_into().ok()).unwrap_or([0; 12]);
    if mapped_address(data, txid).is_some() {
        assert!(stun);
    }
});
