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
    fn try_recv(&self) -> Option<bytes::Bytes> {
        None
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

/// A source that says it has no frame ready beyond the one each tick reads: a microphone
/// whose sound server stalled with the call's task.
struct NeverAhead(SamplesSource);

impl extrasafe_net::media::io::AudioSource for NeverAhead {
    fn read_frame(&mut self, out: &mut [i16]) -> bool {
        self.0.read_frame(out)
    }
    fn ready(&self) -> bool {
        false
    }
}

/// Runs a call's audio on virtual time for 10 rounds of 400 ms on time and then 120 ms in
/// which the task is not run (tokio's clock moved at once, as a busy machine that did not
/// schedule it), then 400 ms more; what was sent (when, how big) and the final figures.
async fn held_up(
    source: Box<dyn extrasafe_net::media::io::AudioSource>,
    heard: RecordingSink,
) -> (
    tokio::time::Instant,
    Vec<(tokio::time::Instant, usize)>,
    extrasafe_net::audio::AudioStats,
) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let t0 = tokio::time::Instant::now();
    let call = AudioCall::start(
        ClockedLink(sent.clone()),
        AudioConfig::default(),
        source,
        Box::new(heard),
    )
    .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        tokio::time::advance(Duration::from_millis(120)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (stats, _) = call.stop().await;
    let sent = sent.lock().unwrap().clone();
    (t0, sent, stats)
}

/// Held up for 120 ms ten times, the task does every frame it owes when it runs again: as
/// many datagrams sent and frames played as fell due (none lost, none dropped), the owed
/// datagrams leaving together when it wakes, and then again 3 ms after each tick. (With
/// missed ticks skipped, 60 frames would be missing from both.)
#[tokio::test(start_paused = true)]
async fn a_held_up_audio_task_does_every_frame_it_owes() {
    let heard = RecordingSink::memory();
    let (t0, sent, stats) = held_up(
        Box::new(SamplesSource::new(speech::sample(3.0), true)),
        heard.clone(),
    )
    .await;
    // 5.6 s of virtual time: frames at 0, 20, ... 5580 ms (the stop comes before the tick
    // at 5600). Each stall starts as the test's sleep ends, before the task has run the tick
    // due then: the wake after it does that frame and the 6 of the 120 ms, 6 of them late.
    assert_eq!(stats.frames_due, 280, "{stats:?}");
    assert_eq!(stats.frames_dropped, 0);
    assert_eq!(stats.frames_unsent, 0);
    assert_eq!(stats.frames_caught_up, 10 * 6);
    assert_eq!(sent.len(), 280);
    assert_eq!(stats.sent, 280);
    assert_eq!(
        heard.samples().len(),
        280 * extrasafe_net::media::FRAME_SAMPLES
    );
    let config = AudioConfig::default();
    assert!(sent.iter().all(|(_, len)| *len == config.datagram_size));
    // Each datagram leaves 3 ms after its tick, or, for frames owed after a stall, at the
    // wake that ends it: never before its tick, never more than a stall after it.
    for (i, (at, _)) in sent.iter().enumerate() {
        let tick = Duration::from_millis(20 * i as u64);
        let after = at.duration_since(t0) - tick;
        assert!(
            after == Duration::from_millis(3) || after <= Duration::from_millis(140),
            "datagram {i}: {after:?} after its tick"
        );
    }
    // Between stalls, exactly on time.
    assert_eq!(sent[10].0.duration_since(t0), Duration::from_millis(203));
}

/// A microphone that stalled with the task has not captured what the task owes: those
/// frames are not made of silence and sent, but counted, and the far end conceals them;
/// the playout still gets every owed frame (a recording keeps the call's length).
#[tokio::test(start_paused = true)]
async fn owed_frames_a_stalled_microphone_never_captured_are_not_sent() {
    let heard = RecordingSink::memory();
    let (_, sent, stats) = held_up(
        Box::new(NeverAhead(SamplesSource::new(speech::sample(3.0), true))),
        heard.clone(),
    )
    .await;
    assert_eq!(stats.frames_due, 280, "{stats:?}");
    assert_eq!(stats.frames_unsent, 10 * 6);
    assert_eq!(sent.len(), 280 - 10 * 6);
    assert_eq!(
        heard.samples().len(),
        280 * extrasafe_net::media::FRAME_SAMPLES
    );
}

/// A recording that cannot be written (its folder is gone) is reported when the audio stops,
/// typed: which file, what the system said, and that it is this device's to act on. What was
/// heard meanwhile played on.
#[tokio::test(start_paused = true)]
async fn a_recording_that_cannot_be_written_is_reported_with_its_file() {
    use extrasafe_net::{Blame, MediaEndError};
    let missing = std::env::temp_dir()
        .join(format!("es-no-such-folder-{}", std::process::id()))
        .join("heard.wav");
    let call = AudioCall::start(
        ClockedLink(Arc::default()),
        AudioConfig::default(),
        Box::new(SamplesSource::new(speech::sample(0.5), true)),
        Box::new(RecordingSink::to_file(missing.clone())),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (stats, written) = call.stop().await;
    assert!(stats.frames_due >= 25, "{stats:?}");
    let Err(e) = written else {
        panic!("the recording was reported written")
    };
    assert_eq!(e.blame(), Blame::Local);
    let MediaEndError::Recording(r) = e else {
        panic!("{e:?}")
    };
    assert_eq!(r.path, missing);
    assert_eq!(r.source.kind(), std::io::ErrorKind::NotFound);
}
