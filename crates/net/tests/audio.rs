//! Audio through real UDP sockets on loopback, with the real codec.

mod common;

use std::time::Duration;

use common::*;
use extrasafe_net::audio::AudioCall;
use extrasafe_net::media::io::{Discard, RecordingSink, SamplesSource, Silence};
use extrasafe_net::media::pipeline::align;
use extrasafe_net::media::{speech, AudioConfig};
use extrasafe_net::AcceptPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_crosses_a_real_call_and_garbage_does_not_stop_it() {
    let (_a_id, a) = node(AcceptPolicy::Ask).await;
    let (_b_id, b) = node(AcceptPolicy::Anyone).await;
    let (out, inc) = connected(&a, &b).await;

    let voice = speech::sample(3.0);
    let heard = RecordingSink::memory();
    let config = AudioConfig::default();
    let alice = AudioCall::start(
        out.media(),
        config.clone(),
        Box::new(SamplesSource::new(voice.clone(), false)),
        Box::new(Discard),
    )
    .unwrap();
    let bob = AudioCall::start(
        inc.media(),
        config.clone(),
        Box::new(Silence),
        Box::new(heard.clone()),
    )
    .unwrap();

    // Hostile datagrams in the middle of the call: counted, dropped, harmless.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for junk in [&[][..], &[0xFFu8; 50][..], &[0x10u8; 200][..]] {
        out.media().send(junk).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (a_stats, _) = alice.stop().await;
    let (b_stats, written) = bob.stop().await;
    written.unwrap();

    assert!(a_stats.sent >= 160, "{a_stats:?}");
    assert_eq!(
        a_stats.sent_bytes,
        a_stats.sent * config.datagram_size as u64
    );
    assert_eq!(b_stats.received.malformed, 3, "{b_stats:?}");
    assert_eq!(b_stats.jitter.lost, 0, "{b_stats:?}");
    let (lag, corr) = align(&voice, &heard.samples(), 48_000 / 2);
    eprintln!(
        "lag {:.1} ms, correlation {corr:.3}, target delay {:?}, {:.1} kb/s UDP",
        lag as f64 / 48.0,
        b_stats.target_delay,
        a_stats.udp_tx_bytes as f64 * 8.0 / a_stats.elapsed.as_secs_f64() / 1000.0
    );
    assert!(corr > 0.6, "correlation {corr}");
    assert!(lag < 48 * 150, "lag {lag} samples");
    out.hangup();
}
