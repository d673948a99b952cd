//! Video through real UDP sockets on loopback with the real H.264 codec: both ways on a clean
//! path, and one way through a relay that drops 5 % and 20 % of all packets. Every picture
//! shown is checked against the exact test picture it claims to be: a corrupted frame would
//! fail that check.

mod common;
#[path = "../../video/tests/common/webcam.rs"]
mod webcam;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use extrasafe_net::video::{VideoCall, VideoConfig, VideoStats};
use extrasafe_net::video_media::{pattern, psnr_y, FnSink, Frame, TestPattern, VideoSink};
use extrasafe_net::AcceptPolicy;
use tokio::net::UdpSocket;

/// The tests of this file encode and decode video at once; two cores hold one at a time
/// without starving its audio, so they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const W: u32 = 640;
const H: u32 = 360;

/// What a receiving end saw: per shown picture (sink index, code index, PSNR).
#[derive(Default)]
struct Seen {
    pictures: Vec<(u64, Option<u32>, f64)>,
}

fn checking_sink() -> (Box<dyn VideoSink>, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let sink = FnSink(move |f: &Frame, index: u64| {
        let code = pattern::read_code(f);
        let psnr = code.map_or(0.0, |(i, stamp)| {
            let reference = pattern::draw(W, H, i, stamp).downscale(W / f.width);
            psnr_y(f, &reference)
        });
        s.lock()
            .unwrap()
            .pictures
            .push((index, code.map(|c| c.0), psnr));
    });
    (Box::new(sink), seen)
}

/// Waits until `enough` holds, checking every 100 ms: these tests check what arrived, not how
/// fast (the frame rates are promised by core's virtual-time tests, `video/tests.rs`). The
/// bound only stops a broken build from hanging; a loaded machine just takes longer.
async fn until(what: &str, mut enough: impl FnMut() -> bool) {
    let limit = Duration::from_secs(120);
    let t0 = tokio::time::Instant::now();
    while !enough() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn summary(label: &str, seen: &Seen, stats: &VideoStats) -> (usize, f64, f64) {
    let n = seen.pictures.len();
    let worst = seen.pictures.iter().map(|p| p.2).fold(f64::MAX, f64::min);
    let mean = seen.pictures.iter().map(|p| p.2).sum::<f64>() / n.max(1) as f64;
    eprintln!(
        "{label}: shown {n}, PSNR mean {mean:.1} worst {worst:.1} dB; sender {:?}; receiver {:?}; target {} b/s, skipped {}",
        stats.sender, stats.receiver, stats.target_bps, stats.skipped
    );
    (n, mean, worst)
}

fn assert_never_corrupted(seen: &Seen) {
    for &(index, code, psnr) in &seen.pictures {
        assert!(
            code.is_some(),
            "picture {index} shown with an unreadable code"
        );
        // The code says which picture this is; it must look like that picture.
        assert!(
            psnr > 24.0,
            "picture {index} (code {code:?}) differs from its source: {psnr:.1} dB"
        );
        assert_eq!(code.unwrap() as u64, index, "picture shown out of place");
    }
    let idx: Vec<u64> = seen.pictures.iter().map(|p| p.0).collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "pictures out of order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_both_ways_on_a_clean_path() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (out, inc) = connected(&a, &b).await;
    let (sink_a, seen_a) = checking_sink();
    let (sink_b, seen_b) = checking_sink();
    let cfg = VideoConfig::default();
    let alice = VideoCall::start(
        out.media(),
        cfg.clone(),
        Some(Box::new(TestPattern::new(W, H, 30))),
        sink_a,
    );
    let bob = VideoCall::start(
        inc.media(),
        cfg,
        Some(Box::new(TestPattern::new(W, H, 30))),
        sink_b,
    );
    until("60 pictures each way", || {
        seen_a.lock().unwrap().pictures.len() >= 60 && seen_b.lock().unwrap().pictures.len() >= 60
    })
    .await;
    let mid = bob.stats();
    let (sa, ra) = alice.stop().await;
    let (sb, rb) = bob.stop().await;
    ra.unwrap();
    rb.unwrap();
    for (label, seen, stats) in [("alice sees", &seen_a, &sa), ("bob sees", &seen_b, &sb)] {
        let seen = seen.lock().unwrap();
        let (n, mean, _) = summary(label, &seen, stats);
        assert_never_corrupted(&seen);
        assert!(n >= 60, "{label}: only {n} pictures");
        assert!(mean > 32.0, "{label}: mean PSNR {mean:.1}");
    }
    // A clean path carries the source at full size.
    assert_eq!(mid.recv_size, Some((W, H)), "{mid:?}");
    out.hangup();
}

/// A UDP relay on loopback between a caller and `target` that drops each packet, either
/// way, with probability `loss` once armed.
async fn lossy_relay(target: SocketAddr, loss: f64, armed: Arc<AtomicBool>) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let caller: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let seed = Arc::new(Mutex::new(0x2545_F491_4F6C_DD1Du64));
    let drop_it = move |seed: &Mutex<u64>, armed: &AtomicBool| {
        let mut s = seed.lock().unwrap();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        armed.load(Ordering::Relaxed) && (*s % 10_000) as f64 / 10_000.0 < loss
    };
    {
        let (front, back, caller, seed, armed) = (
            front.clone(),
            back.clone(),
            caller.clone(),
            seed.clone(),
            armed.clone(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, from) = match front.recv_from(&mut buf).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("relay, from the caller: {e}");
                        continue;
                    }
                };
                *caller.lock().unwrap() = Some(from);
                if !drop_it(&seed, &armed) {
                    if let Err(e) = back.send_to(&buf[..n], target).await {
                        eprintln!("relay, to the callee: {e}");
                    }
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match back.recv_from(&mut buf).await {
                Ok((n, _)) => n,
                Err(e) => {
                    eprintln!("relay, from the callee: {e}");
                    continue;
                }
            };
            let to = *caller.lock().unwrap();
            if let Some(to) = to {
                if !drop_it(&seed, &armed) {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        }
    });
    addr
}

async fn one_way_through_loss(loss: f64, pictures: usize, repaired: u64) -> (Seen, VideoStats) {
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let armed = Arc::new(AtomicBool::new(false));
    let relay = lossy_relay(b.local_addr(), loss, armed.clone()).await;
    let mut out = a
        .call(&b.ticket_for(relay))
        .await
        .expect("call through the relay");
    let mut inc = incoming(&b).await;
    until_connected(&mut out).await;
    until_connected(&mut inc).await;
    armed.store(true, Ordering::Relaxed);
    let (sink, seen) = checking_sink();
    let cfg = VideoConfig::default();
    let sender = VideoCall::start(
        out.media(),
        cfg.clone(),
        Some(Box::new(TestPattern::new(W, H, 30))),
        Box::new(extrasafe_net::video_media::NoVideo),
    );
    let receiver = VideoCall::start(inc.media(), cfg, None, sink);
    until("pictures shown and repaired through the loss", || {
        seen.lock().unwrap().pictures.len() >= pictures
            && receiver.stats().receiver.repaired > repaired
    })
    .await;
    if std::env::var_os("VIDEO_DEBUG").is_some() {
        {
            let (t, r) = (sender.stats(), receiver.stats());
            eprintln!("fault {:?} sending {} target {} rtt {:?} cwnd {} send delay {:?} skipped {} size {:?} tx {:?} rx {:?} shown {}", t.fault, t.sending, t.target_bps, t.rtt, t.cwnd, t.send_delay, t.skipped, t.send_size, t.sender, r.receiver, r.shown);
        }
    }
    let (tx, _) = sender.stop().await;
    let (rx, r) = receiver.stop().await;
    r.unwrap();
    out.hangup();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let label = format!("{:.0} % loss", loss * 100.0);
    summary(&label, &seen, &rx);
    eprintln!(
        "{label}: sender side {:?}, target {}",
        tx.sender, tx.target_bps
    );
    (seen, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_is_repaired_and_nothing_corrupted_is_shown() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (seen, rx) = one_way_through_loss(0.05, 120, 3).await;
    assert_never_corrupted(&seen);
    // About one datagram in twenty is lost: some frames must have been repaired.
    assert!(rx.receiver.repaired > 3, "{:?}", rx.receiver);
    assert!(
        seen.pictures.len() >= 120,
        "{} pictures",
        seen.pictures.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_loss_freezes_rather_than_corrupts() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (seen, rx) = one_way_through_loss(0.20, 60, 10).await;
    assert_never_corrupted(&seen);
    assert!(rx.receiver.repaired > 10, "{:?}", rx.receiver);
    assert!(
        seen.pictures.len() >= 60,
        "{} pictures",
        seen.pictures.len()
    );
}

/// A relay whose caller → callee direction is a link of `rate_bps` (when `limited`) with a
/// 200 ms drop-tail queue; the other direction is free.
async fn narrow_relay(target: SocketAddr, rate_bps: f64, limited: Arc<AtomicBool>) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let caller: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let (qtx, mut qrx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    {
        let (front, caller) = (front.clone(), caller.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            // When the line is free again.
            let mut free = tokio::time::Instant::now();
            loop {
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    continue;
                };
                *caller.lock().unwrap() = Some(from);
                let now = tokio::time::Instant::now();
                if !limited.load(Ordering::Relaxed) {
                    let _ = qtx.send((now, buf[..n].to_vec()));
                    continue;
                }
                let start = free.max(now);
                if start - now > Duration::from_millis(200) {
                    continue; // queue full: dropped
                }
                free = start + Duration::from_secs_f64(n as f64 * 8.0 / rate_bps);
                let _ = qtx.send((free, buf[..n].to_vec()));
            }
        });
    }
    {
        let back = back.clone();
        tokio::spawn(async move {
            while let Some((at, d)) = qrx.recv().await {
                tokio::time::sleep_until(at).await;
                let _ = back.send_to(&d, target).await;
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, _)) = back.recv_from(&mut buf).await else {
                continue;
            };
            let to = *caller.lock().unwrap();
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

/// The path narrows to 300 kb/s (audio takes about 60 of it): the sender steps down (smaller pictures or fewer of them),
/// the call's audio goes on, and when the path clears the picture comes back to full size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_path_lowers_the_layer_keeps_audio_and_recovers() {
    let _turn = ONE_AT_A_TIME.lock().await;
    use extrasafe_net::audio::AudioCall;
    use extrasafe_net::media::io::{Discard, RecordingSink, SamplesSource};
    use extrasafe_net::media::{speech, AudioConfig};

    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let limited = Arc::new(AtomicBool::new(false));
    let relay = narrow_relay(b.local_addr(), 300_000.0, limited.clone()).await;
    let mut out = a.call(&b.ticket_for(relay)).await.unwrap();
    let mut inc = incoming(&b).await;
    until_connected(&mut out).await;
    until_connected(&mut inc).await;
    let heard = RecordingSink::memory();
    let voice = AudioCall::start(
        out.media(),
        AudioConfig::default(),
        Box::new(SamplesSource::new(speech::sample(3.0), true)),
        Box::new(Discard),
    )
    .unwrap();
    let ear = AudioCall::start(
        inc.media(),
        AudioConfig::default(),
        Box::new(SamplesSource::new(vec![0; 960], true)),
        Box::new(heard.clone()),
    )
    .unwrap();
    let cfg = VideoConfig::default();
    let tx = VideoCall::start(
        out.media(),
        cfg.clone(),
        Some(Box::new(TestPattern::new(W, H, 30))),
        Box::new(extrasafe_net::video_media::NoVideo),
    );
    let (sink, seen) = checking_sink();
    let rx = VideoCall::start(inc.media(), cfg, None, sink);
    let sample = |label: &str, tx: &VideoCall, rx: &VideoCall| {
        let (t, r) = (tx.stats(), rx.stats());
        eprintln!(
            "{label}: target {} sent {} b/s {:?} {:.0} fps; received {:?} {:.0} fps; delay {:?}",
            t.target_bps,
            t.send_bps,
            t.send_size,
            t.send_fps,
            r.recv_size,
            r.recv_fps,
            t.send_delay
        );
        (t, r)
    };
    // Each step waits for what must happen, not for a number of seconds: a loaded machine
    // only takes longer. Clear path: the 640x360 source is sent at full rate.
    until("full rate on the clear path", || {
        tx.stats().target_bps > 900_000
    })
    .await;
    sample("clear", &tx, &rx);
    limited.store(true, Ordering::Relaxed);
    let stepped_down = |t: &VideoStats| {
        t.target_bps <= 600_000
            && t.send_delay < Duration::from_millis(300)
            && (t.send_size.is_some_and(|s| s.0 < W) || t.send_fps < 20.0)
    };
    // The sender steps down (smaller pictures or fewer of them), its queue drains, and
    // pictures go on being shown (30 more: not a pause while the queue fills).
    let shown_before = rx.stats().shown;
    until(
        "a step down on the narrow path, pictures still shown",
        || stepped_down(&tx.stats()) && rx.stats().shown >= shown_before + 30,
    )
    .await;
    let (t_narrow, r_narrow) = sample("narrow", &tx, &rx);
    // Audio on the narrow path once video has adapted: of the next 250 frames (5 s of
    // audio) hardly one lost.
    let audio_before = ear.stats().jitter;
    until("250 audio frames on the narrow path", || {
        ear.stats().jitter.played >= audio_before.played + 250
    })
    .await;
    let audio_after = ear.stats().jitter;
    let lost = audio_after.lost - audio_before.lost;
    let played = audio_after.played - audio_before.played;
    eprintln!("audio on the narrow path: {lost} of {played} frames lost; {t_narrow:?}");
    assert!(
        lost * 25 <= played,
        "audio lost {lost} of {played} frames on the narrow path"
    );
    // Five seconds on, still stepped down: the step was no passing dip, and pictures go on
    // being shown. (The sender's queue delay is not asserted here: at one instant it counts
    // datagrams a busy machine has not yet handed to the socket, divided by the low target;
    // the wait above already required it to drain once.)
    let (t_later, _) = sample("narrow, later", &tx, &rx);
    assert!(
        t_later.target_bps <= 600_000
            && (t_later.send_size.is_some_and(|s| s.0 < W) || t_later.send_fps < 20.0),
        "{t_later:?}"
    );
    until("pictures still shown on the narrow path", || {
        rx.stats().shown >= r_narrow.shown + 30
    })
    .await;
    limited.store(false, Ordering::Relaxed);
    // The path clears: the picture comes back to full size.
    until("the picture back to full size", || {
        rx.stats().recv_size == Some((W, H)) && tx.stats().target_bps > 900_000
    })
    .await;
    sample("cleared", &tx, &rx);
    let _ = voice.stop().await;
    let _ = ear.stop().await;
    let _ = tx.stop().await;
    let (_, r) = rx.stop().await;
    r.unwrap();
    assert_never_corrupted(&seen.lock().unwrap());
    out.hangup();
}

/// Audio and video run on the call's one media engine but start and stop apart: with video
/// running, the audio is stopped and started again; the stopped handle, dropped later, does
/// not stop the new one; video goes on throughout, and the new audio crosses. Stopping the
/// video leaves the audio running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_and_video_start_and_stop_apart_on_one_call() {
    let _turn = ONE_AT_A_TIME.lock().await;
    use extrasafe_net::audio::AudioCall;
    use extrasafe_net::media::io::{Discard, SamplesSource};
    use extrasafe_net::media::{speech, AudioConfig};

    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (out, inc) = connected(&a, &b).await;
    let voice = |media| {
        AudioCall::start(
            media,
            AudioConfig::default(),
            Box::new(SamplesSource::new(speech::sample(2.0), true)),
            Box::new(Discard),
        )
        .unwrap()
    };
    let cfg = VideoConfig::default();
    let tx = VideoCall::start(
        out.media(),
        cfg.clone(),
        Some(Box::new(TestPattern::new(W, H, 30))),
        Box::new(extrasafe_net::video_media::NoVideo),
    );
    let (sink, seen) = checking_sink();
    let rx = VideoCall::start(inc.media(), cfg, None, sink);
    let first = voice(out.media());
    let ear = voice(inc.media());
    until("audio and video cross", || {
        ear.stats().jitter.played > 50 && seen.lock().unwrap().pictures.len() > 10
    })
    .await;
    let (stats, sink) = first.stop().await;
    sink.unwrap();
    assert!(stats.sent > 50, "{stats:?}");
    // Nothing more arrives once the caller's audio is stopped (a second of the callee's
    // playout later, its figures count no more than were sent); video goes on.
    let due = ear.stats().frames_due;
    let shown = seen.lock().unwrap().pictures.len();
    until("video goes on without audio", || {
        seen.lock().unwrap().pictures.len() > shown + 10 && ear.stats().frames_due > due + 50
    })
    .await;
    let quiet = ear.stats().received.datagrams;
    assert!(
        quiet <= stats.sent,
        "{quiet} arrived of {} sent",
        stats.sent
    );
    // Started again: a new part, not stopped by an older handle's goodbye.
    let second = voice(out.media());
    let stale = voice(out.media());
    drop(second); // replaced by `stale` at once: its drop must not stop `stale`
    until("the new audio crosses", || {
        ear.stats().received.datagrams > quiet + 50
    })
    .await;
    // Video stops; the audio goes on.
    let (_, ok) = tx.stop().await;
    ok.unwrap();
    let now = ear.stats().received.datagrams;
    until("audio goes on without video", || {
        ear.stats().received.datagrams > now + 50
    })
    .await;
    let (stats, _) = stale.stop().await;
    assert!(stats.sent > 100, "{stats:?}");
    rx.stop().await.1.unwrap();
    ear.stop().await.1.unwrap();
    assert_never_corrupted(&seen.lock().unwrap());
}

/// A source that gives `good` pictures of the test pattern, then fails (a camera unplugged).
struct FailingSource {
    inner: TestPattern,
    good: u64,
}

impl extrasafe_net::video_media::VideoSource for FailingSource {
    fn size(&self) -> (u32, u32) {
        self.inner.size()
    }
    fn fps(&self) -> u32 {
        self.inner.fps()
    }
    fn next_frame(
        &mut self,
        index: u64,
    ) -> Result<Option<Frame>, extrasafe_net::video_media::VideoError> {
        if self.good == 0 {
            return Err(extrasafe_net::video_media::VideoError::Source(
                "unplugged".into(),
            ));
        }
        self.good -= 1;
        self.inner.next_frame(index)
    }
}

/// A source that fails mid-call is reported typed (which problem, and the source's own
/// error) for the front end to word, and sending stops; the call's video goes on receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_fails_is_reported_as_such_and_sending_stops() {
    let _turn = ONE_AT_A_TIME.lock().await;
    use extrasafe_net::video::VideoFault;
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (out, inc) = connected(&a, &b).await;
    let source = FailingSource {
        inner: TestPattern::new(W, H, 30),
        good: 10,
    };
    let tx = VideoCall::start(
        out.media(),
        VideoConfig::default(),
        Some(Box::new(source)),
        Box::new(extrasafe_net::video_media::NoVideo),
    );
    let (sink, seen) = checking_sink();
    let rx = VideoCall::start(inc.media(), VideoConfig::default(), None, sink);
    until("the failure is reported", || tx.stats().fault.is_some()).await;
    let stats = tx.stats();
    match &stats.fault {
        Some(VideoFault::SourceStopped(e)) => assert_eq!(e.to_string(), "unplugged"),
        other => panic!("{other:?}"),
    }
    until("sending stops", || !tx.stats().sending).await;
    until("what was sent is shown", || {
        !seen.lock().unwrap().pictures.is_empty()
    })
    .await;
    tx.stop().await.1.unwrap();
    rx.stop().await.1.unwrap();
    assert!(seen.lock().unwrap().pictures.len() <= 10);
    assert_never_corrupted(&seen.lock().unwrap());
}

/// A laptop webcam (its recorded `v4l2-ctl` description: 720p at 30 only in Motion-JPEG)
/// replayed as Alice's camera: the call asks it for Motion-JPEG, decodes each picture, encodes
/// it in H.264 and Bob shows it, through real sockets. Each picture shown is checked against
/// the test picture its code names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_webcams_motion_jpeg_crosses_a_call() {
    use extrasafe_net::video_media::camera::{plan, Camera, PixelCode, Recorded};
    let _turn = ONE_AT_A_TIME.lock().await;
    let (cw, ch) = (1280u32, 720u32);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../video/tests/cameras/integrated-5986-212b.txt"
    ))
    .unwrap();
    let laptop = plan::parse_v4l2_ctl("Integrated Camera", &text);
    let pictures: Vec<(PixelCode, Vec<u8>)> = (0..30)
        .map(|i| {
            (
                PixelCode::Mjpeg,
                webcam::to_webcam_mjpeg(&pattern::draw(cw, ch, i, 1000 * i)),
            )
        })
        .collect();
    let camera =
        Camera::with_capture(Box::new(Recorded::new(laptop, pictures)), cw, ch, 30).unwrap();
    assert_eq!(camera.started().code, PixelCode::Mjpeg);

    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (out, inc) = connected(&a, &b).await;
    // Per picture shown: the code it carries, and its PSNR against that test picture.
    type Shown = Vec<(Option<u32>, f64)>;
    let seen: Arc<Mutex<Shown>> = Arc::default();
    let s = seen.clone();
    let sink = FnSink(move |f: &Frame, _index: u64| {
        let code = pattern::read_code(f);
        let psnr = code.map_or(0.0, |(i, stamp)| {
            psnr_y(f, &pattern::draw(cw, ch, i, stamp).downscale(cw / f.width))
        });
        s.lock().unwrap().push((code.map(|c| c.0), psnr));
    });
    let alice = VideoCall::start(
        out.media(),
        VideoConfig::default(),
        Some(Box::new(camera)),
        Box::new(extrasafe_net::video_media::NoVideo),
    );
    let bob = VideoCall::start(inc.media(), VideoConfig::default(), None, Box::new(sink));
    until("40 of the camera's pictures at Bob", || {
        seen.lock().unwrap().len() >= 40
    })
    .await;
    let (_, ra) = alice.stop().await;
    let (_, rb) = bob.stop().await;
    ra.unwrap();
    rb.unwrap();
    let seen = seen.lock().unwrap();
    let mean = seen.iter().map(|p| p.1).sum::<f64>() / seen.len() as f64;
    eprintln!(
        "recorded webcam at Bob: {} pictures, PSNR mean {mean:.1} dB",
        seen.len()
    );
    for (code, psnr) in seen.iter() {
        assert!(code.is_some(), "a picture with an unreadable code");
        assert!(
            *psnr > 24.0,
            "picture {code:?} differs from its source: {psnr:.1} dB"
        );
    }
    assert!(mean > 30.0, "mean PSNR {mean:.1}");
    out.hangup();
}
