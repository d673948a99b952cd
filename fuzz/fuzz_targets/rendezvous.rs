//! Hostile bytes as a rendezvous record value: never panic; what opens seals again to a value
//! that opens to the same record.
#![no_main]

use extrasafe_core::rendezvous::{epoch_of, PairSecret};
use extrasafe_core::Identity;
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_795_000_000_000;

fuzz_target!(|data: &[u8]| {
    let a = Identity::from_seed(&[1; 32]);
    let b = Identity::from_seed(&[2; 32]);
    let keys = PairSecret::new(&a, &b.peer_id())
        .unwrap()
        .incoming(epoch_of(NOW));
    if let Ok(record) = keys.open(data, NOW) {
        let again = keys.seal(&record, [5; 24]).unwrap();
        assert_eq!(keys.open(&again, NOW).unwrap(), record);
    }
});
