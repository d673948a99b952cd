//! Audio through real UDP sockets on loopback, with the real codec.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use extrasafe_net::audio::{AudioCall, AudioLink};
use extrasafe_net::media::io::{Discard, RecordingSink, SamplesSource, Silence};
use extrasafe_net::media::pipeline::align;
use extrasafe_net::media::{speech, AudioConfig};
use extrasafe_net::{AcceptPolicy, MediaSendError};

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

/// What an observer sees must not depend on what is said: every datagram that crosses a real
/// call has one size, while speaking, in silence and muted. (Their pace is checked exactly on
/// the virtual clock below; here the machine's load would decide it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_keep_one_size_whatever_is_said() {
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
    let mut sizes = Vec::new();
    // 1.5 s of speech is 75 frames; then silence; muted from the 110th datagram on.
    let received = tokio::time::timeout(Duration::from_secs(120), async {
        while sizes.len() < 160 {
            if sizes.len() == 110 {
                alice.set_muted(true);
            }
            match link.recv().await {
                Some(d) => sizes.push(d.len()),
                None => break,
            }
        }
    })
    .await;
    let (stats, _) = alice.stop().await;
    assert!(
        received.is_ok(),
        "160 datagrams never came: {}",
        sizes.len()
    );
    assert_eq!(sizes.len(), 160);
    assert!(
        sizes.iter().all(|&n| n == config.datagram_size),
        "sizes differ: {sizes:?}"
    );
    assert_eq!(stats.send_errors, 0, "{stats:?}");
    out.hangup();
}

/// A link in memory that stamps what the audio task sends with tokio's clock (virtual in the
/// test below) and never receives anything.
struct ClockedLink(Arc<Mutex<Vec<(tokio::time::Instant, usize)>>>);

impl AudioLink for ClockedLink {
    fn send(&self, datagram: &[u8]) -> Result<(), MediaSendError> {
        let at = tokio::time::Instant::now();
        self.0.lock().unwrap().push((at, datagram.len()));
        Ok(())
    }
    fn recv(&self) -> impl std::future::Future<Output = Option<bytes::Bytes>> + Send {
        std::future::pending()
    }
    fn remote(&self) -> Option<std::net::SocketAddr> {
        None
    }
    fn rtt(&self) -> Duration {
        Duration::ZERO
    }
    fn udp_tx_bytes(&self) -> u64 {
        0
    }
}

/// The audio clock on virtual time, so that its pace is checked exactly and no busy machine
/// can fail it: one datagram per 20 ms tick, each leaving 3 ms after its tick whatever
/// encoding it took, of one size, while speaking (1.5 s), in silence and muted (from 2.5 s).
#[tokio::test(start_paused = true)]
async fn the_audio_clock_sends_one_datagram_per_tick_at_a_fixed_offset() {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let config = AudioConfig::default();
    let t0 = tokio::time::Instant::now();
    let alice = AudioCall::start(
        ClockedLink(sent.clone()),
        config.clone(),
        Box::new(SamplesSource::new(speech::sample(1.5), false)),
        Box::new(Discard),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    alice.set_muted(true);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (stats, _) = alice.stop().await;
    let sent = sent.lock().unwrap().clone();
    // Ticks at 0, 20, ... 4480 ms; the one at 4500 ms would leave after the stop.
    assert_eq!(sent.len(), 225);
    assert_eq!(stats.sent, 225);
    for (i, (at, len)) in sent.iter().enumerate() {
        assert_eq!(*len, config.datagram_size, "datagram {i}");
        assert_eq!(
            at.duration_since(t0),
            Duration::from_millis(3 + 20 * i as u64),
            "datagram {i}"
        );
    }
}
