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

/// What an observer sees must not depend on what is said: every datagram has one size and
/// they leave at one pace while speaking, in silence and muted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_keep_one_size_and_pace_whatever_is_said() {
    let (_a_id, a) = node(AcceptPolicy::Ask).await;
    let (_b_id, b) = node(AcceptPolicy::Anyone).await;
    let (out, inc) = connected(&a, &b).await;
    let config = AudioConfig::default();
    let alice = AudioCall::start(
        out.media(),
        config.clone(),
        Box::new(SamplesSource::new(speech::sample(1.5), false)),
        Box::new(Discard),
    )
    .unwrap();
    let link = inc.media();
    let t0 = std::time::Instant::now();
    let mut seen: Vec<(Duration, usize)> = Vec::new();
    let mut muted = false;
    while t0.elapsed() < Duration::from_millis(4500) {
        // Speech for 1.5 s, silence until 2.5 s, then muted.
        if !muted && t0.elapsed() > Duration::from_millis(2500) {
            alice.set_muted(true);
            muted = true;
        }
        if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(100), link.recv()).await {
            seen.push((t0.elapsed(), d.len()));
        }
    }
    let _ = alice.stop().await;
    assert!(
        seen.iter().all(|&(_, n)| n == config.datagram_size),
        "sizes differ"
    );
    let pace = |from: u64, to: u64| -> f64 {
        let w: Vec<Duration> = seen
            .iter()
            .map(|s| s.0)
            .filter(|t| *t >= Duration::from_millis(from) && *t < Duration::from_millis(to))
            .collect();
        (w[w.len() - 1] - w[0]).as_secs_f64() * 1e3 / (w.len() - 1) as f64
    };
    let (talking, silent, muted) = (pace(200, 1400), pace(1600, 2400), pace(2700, 4400));
    eprintln!("mean interval: talking {talking:.2} ms, silent {silent:.2} ms, muted {muted:.2} ms");
    for p in [talking, silent, muted] {
        assert!((p - 20.0).abs() < 0.5, "interval {p:.2} ms");
    }
    out.hangup();
}
