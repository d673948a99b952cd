//! Hostile text where a ticket or peer ID is expected: never panic; what parses re-encodes to
//! something that parses to the same value.
#![no_main]

use extrasafe_core::{PeerId, Ticket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = s.parse::<Ticket>() {
        assert_eq!(t.to_string().parse::<Ticket>().unwrap(), t);
        assert_eq!(t.to_uppercase_string().parse::<Ticket>().unwrap(), t);
    }
    if let Ok(p) = s.parse::<PeerId>() {
        assert_eq!(p.to_string().parse::<PeerId>().unwrap(), p);
    }
});
