//! Hostile datagrams at the gate in front of QUIC (`core::access`), raw and as validly tagged
//! first flights from many addresses at many times: never panic, and let through only what
//! the rules allow (a first flight only as a version 1 Initial or 0-RTT packet with a 20-byte
//! DCID, anything else only on a connection ID we issued).
#![no_main]

use std::net::SocketAddr;

use extrasafe_core::access::{
    first_flight_dcid, Gate, LocalCidKey, TicketSecret, Verdict, FIRST_FLIGHT_DCID_LEN,
    LOCAL_CID_LEN,
};
use extrasafe_core::Identity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let listener = Identity::from_seed(&[1; 32]);
    let key = TicketSecret::from_bytes([2; 16]).access_key(&listener.peer_id());
    let local = LocalCidKey::new([3; 32]);
    let mut gate = Gate::new(local.clone(), true);
    gate.set_ticket(Some(key.clone()));
    let t0: u64 = 1_800_000_000_000;
    let mut rest = data;
    let mut i = 0u64;
    while rest.len() >= 4 {
        let (head, tail) = rest.split_at(4);
        let len = (usize::from(head[3]) * 6).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        i += 1;
        let now = t0 + u64::from(head[1]) * 1_000 * i;
        let from = SocketAddr::from(([198, 51, 100, head[2]], 4000 + (head[0] >> 4) as u16));
        let datagram: Vec<u8> = match head[0] & 3 {
            // A well-formed first flight with a valid tag and fuzzed nonce and tail.
            1 => {
                let mut random = [0u8; FIRST_FLIGHT_DCID_LEN];
                for (r, b) in random.iter_mut().zip(body) {
                    *r = *b;
                }
                let dcid = first_flight_dcid(Some(&key), None, now, random);
                let mut p = vec![0xc0, 0, 0, 0, 1, FIRST_FLIGHT_DCID_LEN as u8];
                p.extend_from_slice(&dcid);
                p.extend_from_slice(body);
                p
            }
            // A short header on one of our IDs, with a fuzzed tail.
            2 => {
                let mut random = [0u8; 4];
                for (r, b) in random.iter_mut().zip(body) {
                    *r = *b;
                }
                let mut p = vec![0x40];
                p.extend_from_slice(&local.issue(random, now / 1000 - u64::from(head[1])));
                p.extend_from_slice(body);
                p
            }
            _ => body.to_vec(),
        };
        let verdict = gate.check(now, from, &datagram);
        if matches!(verdict, Verdict::Admit(_) | Verdict::Repeat) {
            assert!(datagram[0] & 0x80 != 0);
            assert_eq!(&datagram[1..5], &[0, 0, 0, 1]);
            assert!((datagram[0] >> 4) & 3 <= 1);
            assert_eq!(usize::from(datagram[5]), FIRST_FLIGHT_DCID_LEN);
        }
        if verdict == Verdict::Pass {
            let cid = if datagram[0] & 0x80 == 0 {
                &datagram[1..1 + LOCAL_CID_LEN]
            } else {
                &datagram[6..6 + usize::from(datagram[5])]
            };
            assert!(local.is_ours(cid, now / 1000));
        }
        if i % 64 == 0 {
            gate.expire(now);
        }
    }
});
