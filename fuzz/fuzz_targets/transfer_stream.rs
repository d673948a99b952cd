//! Hostile bytes on a transfer stream, at the receiving end: never panic, never hand
//! unverified data to the sink, never accept an offer with an unsafe name.
#![no_main]

use extrasafe_core::transfer::hash::Hash;
use extrasafe_core::transfer::offer::ValidFile;
use extrasafe_core::transfer::receive::{FileSink, ReceiveEvent, Receiver, SinkError};
use libfuzzer_sys::fuzz_target;

struct Count(u64);

impl FileSink for Count {
    fn begin(&mut self, _: usize, _: &ValidFile, _: u64, _: &[Hash]) -> Result<(), SinkError> {
        Ok(())
    }
    fn write(&mut self, _: usize, data: &[u8]) -> Result<(), SinkError> {
        self.0 += data.len() as u64;
        Ok(())
    }
    fn end(&mut self, _: usize) -> Result<(), SinkError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte cuts the input into reads of different sizes.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let step = cut as usize % 64 + 1;
    let mut rx = Receiver::new();
    let mut sink = Count(0);
    let mut total = 0u64;
    for piece in rest.chunks(step) {
        match rx.feed(piece, &mut sink) {
            Ok(Some(ReceiveEvent::Offer(offer))) => {
                for f in &offer.files {
                    assert!(!f.path.as_str().starts_with('/'));
                    assert!(f.path.components().all(|c| c != ".." && c != "."));
                }
                total = offer.total;
                let _ = rx.accept(&[]);
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
    // Whatever reached the sink was verified against the offer: never more than offered.
    assert!(sink.0 <= total);
});
