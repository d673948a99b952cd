//! Hostile datagrams where a DHT node's answer is expected: never panic, and whatever is
//! accepted is a usable address.
#![no_main]

use extrasafe_core::krpc::{observed_address, response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(a) = observed_address(data, *b"abcd") {
        assert!(a.port() != 0 && !a.ip().is_unspecified());
    }
    if let Some(r) = response(data, *b"abcd") {
        assert!(r.value.is_none_or(|v| v.len() < data.len()));
    }
});
