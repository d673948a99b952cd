//! Hostile mDNS TXT values where a contact's LAN tag is looked for: never panic, and random
//! values practically never match.
#![no_main]

use extrasafe_core::lan::{matches, LanKey};
use extrasafe_core::rendezvous::PairSecret;
use extrasafe_core::Identity;
use libfuzzer_sys::fuzz_target;

static KEY: std::sync::OnceLock<LanKey> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(|| {
        let me = Identity::from_seed(&[1; 32]);
        let them = Identity::from_seed(&[2; 32]).peer_id();
        PairSecret::new(&me, &them).unwrap().lan_key()
    });
    // `n|t`, as the two TXT values arrive.
    let text = String::from_utf8_lossy(data);
    let (n, t) = text.split_once('|').unwrap_or(("", &text));
    assert!(!matches(n, t, key, 2_991_000) || n.len() == 32);
});
