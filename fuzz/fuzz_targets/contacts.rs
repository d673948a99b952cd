//! Hostile bytes as a contacts file, sealed or already opened: never panic, never allocate
//! without bound; what is accepted seals and opens again to the same list.
#![no_main]

use extrasafe_core::contacts::{ContactBook, ContactsKey};
use extrasafe_core::Identity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ContactsKey::of(&Identity::from_seed(&[7; 32]));
    let _ = ContactBook::decode(data, &key);
    if let Ok(book) = ContactBook::from_plaintext(data) {
        let sealed = book.encode(&key, [1; 24]);
        assert_eq!(ContactBook::decode(&sealed, &key).unwrap(), book);
    }
});
