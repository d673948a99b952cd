//! Hostile bytes as a rendezvous record value (a pair's record, an inbox value, or a
//! listener's presence record): never panic; what opens seals again to a value that opens to the same record.
#![no_main]

use extrasafe_core::inbox::InboxChain;
use extrasafe_core::rendezvous::{epoch_of, seal_inbox, PairSecret, RecordKeys, VALUE_LEN};
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
    if let Ok(record) = keys.open_inbox(data, NOW) {
        let again = seal_inbox(&keys, None, &record, [[5; 24], [6; 24]], [7; VALUE_LEN]).unwrap();
        assert_eq!(keys.open_inbox(&again, NOW).unwrap(), record);
    }
    let presence = RecordKeys::presence(&InboxChain::new([3; 32], 7));
    if let Ok(record) = presence.open_presence(data, &a.peer_id(), NOW) {
        let again = presence.seal_presence(&record, &a, [6; 24]).unwrap();
        assert_eq!(
            presence.open_presence(&again, &a.peer_id(), NOW).unwrap(),
            record
        );
    }
});
