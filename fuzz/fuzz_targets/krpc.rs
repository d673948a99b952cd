//! Hostile datagrams where a DHT node's answer is expected: never panic, whatever is accepted
//! is a usable address, and a walk fed such answers stays within its limits.
#![no_main]

use extrasafe_core::krpc::{observed_address, reply, response, TxIds};
use extrasafe_core::walk::{Limits, Walk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(a) = observed_address(data, *b"abcd") {
        assert!(a.port() != 0 && !a.ip().is_unspecified());
    }
    if let Some(r) = response(data, *b"abcd") {
        assert!(r.value.is_none_or(|v| v.len() < data.len()));
    }
    let _ = reply(data, *b"abcd");
    // A walk whose first query got `data` back (the transaction ID it used is `abcd`), then
    // the same bytes a few more times from each node it went on to ask.
    let seed: std::net::SocketAddr = "192.0.2.1:6881".parse().unwrap();
    let limits = Limits::default();
    let mut walk = Walk::new(
        [7; 20],
        [9; 20],
        TxIds::new(*b"abcd"),
        None,
        &[(seed, None)],
        limits,
    );
    let mut now = 0;
    let mut asked = Vec::new();
    while let Some((to, _)) = walk.poll_transmit(now) {
        asked.push(to);
    }
    for round in 0..4 {
        for to in asked.clone() {
            walk.handle(now, to, data);
        }
        now += 300 * (round + 1);
        walk.handle_timeout(now);
        while let Some((to, _)) = walk.poll_transmit(now) {
            asked.push(to);
        }
    }
    assert!(walk.queries() <= limits.max_queries);
    assert!(walk.closest().len() <= limits.k);
    let _ = walk.take_found();
});
