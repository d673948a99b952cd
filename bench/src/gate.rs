//! What the gate in front of QUIC (`core::access`) costs per datagram, against the work every
//! received datagram costs anyway, measured in the same run (interleaved rounds, medians):
//!
//! * `copy`: copying one 1,452-byte datagram (the socket filter moves datagrams within the
//!   receive buffers; QUIC copies each into its own buffers too);
//! * `aead`: AES-128-GCM opening of one 1,452-byte datagram with aws-lc-rs, what QUIC does to
//!   every packet of a call or a transfer.
//!
//! The gate is timed on what it sees most (short-header packets of a running connection), on
//! a stranger's first flight (dropped), and on an honest first flight (a tag to verify per key
//! and window) with 1 and 1,000 contacts.
//!
//! Run: `cargo run --release -p extrasafe-bench --bin gate-bench`
#![forbid(unsafe_code)]

#[path = "stats.rs"]
mod stats;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use extrasafe_core::access::{
    first_flight_dcid, AccessKey, Gate, LocalCidKey, TicketSecret, FIRST_FLIGHT_DCID_LEN,
};
use extrasafe_core::rendezvous::PairSecret;
use stats::median;

const N: u32 = 200_000;
const ROUNDS: usize = 7;
const LEN: usize = 1452;

fn per_op(n: u32, f: impl FnMut()) -> Duration {
    let mut f = f;
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n
}

fn main() {
    let listener = extrasafe_net::new_identity();
    let secret = TicketSecret::from_bytes([7; 16]);
    let ticket_key = secret.access_key(&listener.peer_id());
    let local = LocalCidKey::new([3; 32]);
    let contacts = |n: usize| -> Vec<(extrasafe_core::PeerId, AccessKey)> {
        (0..n)
            .map(|_| {
                let p = extrasafe_net::new_identity().peer_id();
                (p, PairSecret::new(&listener, &p).unwrap().access_key())
            })
            .collect()
    };
    let one = contacts(1);
    let many = contacts(1000);
    let gate_with = |c: &Vec<(extrasafe_core::PeerId, AccessKey)>| {
        let mut g = Gate::new(local.clone(), true);
        g.set_ticket(Some(ticket_key.clone()));
        g.set_contacts(c.clone());
        g
    };
    let from: SocketAddr = "198.51.100.7:5000".parse().unwrap();
    let now_ms: u64 = 1_800_000_000_000;
    let mut short = vec![0x40u8];
    short.extend_from_slice(&local.issue([1; 4], now_ms / 1000));
    short.resize(LEN, 0x5a);
    let long = |dcid: &[u8]| {
        let mut p = vec![0xc0u8, 0, 0, 0, 1, dcid.len() as u8];
        p.extend_from_slice(dcid);
        p.resize(1200, 0);
        p
    };
    let stranger = long(&[9u8; FIRST_FLIGHT_DCID_LEN]);
    // An honest contact's flight, tagged by the last contact of the list (the worst case).
    let last_key = &many.last().unwrap().1;
    let key = aws_lc_rs::aead::LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[1; 16]).unwrap());
    let mut sealed = vec![0x33u8; LEN - 16];
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::from(&[0u8; 20]),
        &mut sealed,
    )
    .unwrap();
    let open_key: LessSafeKey = key;

    let mut rows: Vec<(&str, Vec<Duration>)> = [
        "copy 1452 B",
        "AES-128-GCM open 1452 B",
        "gate: short header (ours)",
        "gate: stranger's first flight",
        "gate: honest first flight, 1 contact",
        "gate: honest first flight, 1000 contacts",
    ]
    .into_iter()
    .map(|r| (r, Vec::new()))
    .collect();
    let mut g1 = gate_with(&one);
    let mut g1000 = gate_with(&many);
    let mut dst = vec![0u8; LEN];
    let mut nonce_counter = 0u64;
    for _ in 0..ROUNDS {
        rows[0].1.push(per_op(N, || {
            dst.copy_from_slice(black_box(&short));
            black_box(&dst);
        }));
        rows[1].1.push(per_op(N / 4, || {
            let mut buf = sealed.clone();
            let _ = black_box(open_key.open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(&[0u8; 20]),
                &mut buf,
            ));
        }));
        rows[2].1.push(per_op(N, || {
            black_box(g1.check(now_ms, from, black_box(&short)));
        }));
        rows[3].1.push(per_op(N / 4, || {
            black_box(g1000.check(now_ms, from, black_box(&stranger)));
        }));
        // Fresh nonces each time (a repeated one would be a replay); the gate forgets them
        // between batches so the replay memory never fills.
        for (row, gate, k) in [(4, &mut g1, &one[0].1), (5, &mut g1000, last_key)] {
            let n = 2_000;
            let flights: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    nonce_counter += 1;
                    let mut r = [0u8; FIRST_FLIGHT_DCID_LEN];
                    r[..8].copy_from_slice(&nonce_counter.to_le_bytes());
                    long(&first_flight_dcid(None, Some(k), now_ms, r))
                })
                .collect();
            let t = Instant::now();
            for f in &flights {
                black_box(gate.check(now_ms, from, f));
            }
            rows[row].1.push(t.elapsed() / n);
            gate.expire(now_ms + 3_600_000);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "gate-bench: {ROUNDS} interleaved rounds, medians; load average {}",
        load.trim()
    );
    let copy = median(rows[0].1.clone());
    let aead = median(rows[1].1.clone());
    for (name, v) in &rows {
        let m = median(v.clone());
        println!(
            "{name:<42} {:>9.1} ns   {:>6.2}x copy   {:>6.3}x AEAD",
            m.as_secs_f64() * 1e9,
            m.as_secs_f64() / copy.as_secs_f64(),
            m.as_secs_f64() / aead.as_secs_f64()
        );
    }
}
