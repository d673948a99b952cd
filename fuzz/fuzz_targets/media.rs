//! Hostile media datagrams, and hostile arrival patterns fed to the jitter buffer: never
//! panic, never hold more than its capacity.
#![no_main]

use std::time::{Duration, Instant};

use extrasafe_core::media::{JitterBuffer, JitterConfig, MediaPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = MediaPacket::parse(data) {
        assert!(!p.frames.is_empty() && p.frames.len() <= 8);
    }
    // Read the input as (seq:u32, time step:u8, flags:u8) records.
    let t0 = Instant::now();
    let mut now = t0;
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for rec in data.chunks_exact(6) {
        let seq = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        now += Duration::from_millis(rec[4] as u64);
        if rec[5] & 1 == 0 {
            jb.push(now, seq, &rec[..2], rec[5] & 2 != 0, rec[5] & 4 != 0);
        } else {
            let _ = jb.pop(now);
        }
        assert!(jb.buffered() <= Duration::from_secs(60));
    }
});
