//! Hostile file names from a sender: never panic; whatever is accepted is a plain relative
//! path that stays under the download folder, and is already in its normal form.
#![no_main]

use extrasafe_core::transfer::names::SafePath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = SafePath::parse(s) {
        assert!(!p.as_str().starts_with('/'));
        for c in p.components() {
            assert!(!c.is_empty() && c != "." && c != "..");
            assert!(!c.contains('\\') && !c.contains('\0'));
        }
        assert_eq!(SafePath::parse(p.as_str()).as_ref(), Ok(&p));
    }
});
