//! Hostile datagrams at a running punch, both raw and validly sealed with any content: never
//! panic, never track more than MAX_REMOTES addresses, only ever send fixed-size probes.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use extrasafe_core::punch::{
    probe_with_content, Candidate, CandidateKind, PunchConfig, PunchKey, PunchRole, Puncher,
    CONTENT_LEN, MAX_REMOTES, PROBE_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let key = || PunchKey::from_bytes([7; 32]);
    let peer: SocketAddr = "203.0.113.2:5000".parse().unwrap();
    let mut p = Puncher::new(
        key(),
        PunchRole::Controlling,
        &[Candidate {
            addr: peer,
            kind: CandidateKind::Reflexive,
        }],
        PunchConfig::default(),
        [1; 32],
        t0,
    );
    for (i, chunk) in data.chunks(3 + CONTENT_LEN).enumerate() {
        if chunk.len() < 3 + CONTENT_LEN {
            break;
        }
        let now = t0 + Duration::from_millis(i as u64 * 7);
        let from = SocketAddr::from(([198, 51, 100, chunk[1]], u16::from(chunk[2]) + 1));
        let content: [u8; CONTENT_LEN] = chunk[3..].try_into().unwrap();
        let datagram = if chunk[0] & 1 == 1 {
            probe_with_content(&key(), chunk[0] >> 1, &content)
        } else {
            let mut raw = content.to_vec();
            raw.resize(PROBE_LEN, chunk[0]);
            raw
        };
        p.handle(now, from, &datagram);
        p.handle_timeout(now);
        while let Some(t) = p.poll_transmit(now) {
            assert_eq!(t.bytes.len(), PROBE_LEN);
        }
        while p.poll_event().is_some() {}
        assert!(p.report().remotes <= MAX_REMOTES);
    }
});
