//! `extrasafe demo`: a real call between two peers in this process, over UDP on loopback.

use std::time::{Duration, Instant};

use extrasafe_core::EndReason;
use extrasafe_net::audio::AudioCall;
use extrasafe_net::media::io::{Discard, RecordingSink, SamplesSource, Silence};
use extrasafe_net::media::pipeline::align;
use extrasafe_net::media::{speech, AudioConfig};
use extrasafe_net::{AcceptPolicy, Call, CallEvent, Node, NodeConfig};
use serde_json::json;

use std::sync::{Arc, Mutex};

use extrasafe_net::video::{VideoCall, VideoConfig};
use extrasafe_net::video_media::source::wall_ms;
use extrasafe_net::video_media::{pattern, FnSink, Frame, TestPattern};

use crate::args::DemoArgs;
use crate::exit::{Failure, OTHER, USAGE};
use crate::output::Output;

const LINES: [(bool, &str); 3] = [
    (true, "Hi Bob, this is Alice. Can you read me?"),
    (false, "Loud and clear. Our codes match."),
    (true, "Great. Hanging up now."),
];

async fn next(call: &mut Call) -> Result<CallEvent, Failure> {
    match tokio::time::timeout(Duration::from_secs(10), call.next_event()).await {
        Ok(Some(ev)) => Ok(ev),
        _ => Err(Failure::new(
            OTHER,
            "The demo call stalled; please report this.",
        )),
    }
}

async fn until_connected(call: &mut Call) -> Result<Duration, Failure> {
    loop {
        match next(call).await? {
            CallEvent::Connected { after } => return Ok(after),
            CallEvent::Ended(r) => {
                return Err(Failure::new(
                    OTHER,
                    format!("The demo call ended early: {r:?}."),
                ))
            }
            _ => {}
        }
    }
}

/// What one end saw of the other's test picture.
#[derive(Default)]
struct Seen {
    psnr: Vec<f64>,
    delay_ms: Vec<f64>,
    unreadable: u64,
    size: Option<(u32, u32)>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

pub async fn run(args: &DemoArgs, out: Output) -> Result<i32, Failure> {
    let loopback = |policy, listen| NodeConfig {
        bind: "127.0.0.1:0".parse().expect("valid literal"),
        policy,
        listen,
        ..NodeConfig::default()
    };
    let alice_id = extrasafe_net::new_identity();
    let bob_id = extrasafe_net::new_identity();
    let alice = Node::bind(&alice_id, loopback(AcceptPolicy::Ask, false)).await?;
    // Bob answers only Alice: the ticket-and-policy path a real user would set up.
    let bob = Node::bind(
        &bob_id,
        loopback(AcceptPolicy::Only(vec![alice.peer_id()]), true),
    )
    .await?;
    out.emit(
        format!(
            "EXTRA SAFE demo: two peers in this process, real UDP sockets on 127.0.0.1.\n  Alice {}  at {}\n  Bob   {}  at {}",
            alice.peer_id(), alice.local_addr(), bob.peer_id(), bob.local_addr()
        ),
        json!({"event": "demo_peers", "alice": alice.peer_id().to_string(), "bob": bob.peer_id().to_string(),
               "alice_addr": alice.local_addr().to_string(), "bob_addr": bob.local_addr().to_string()}),
    );
    let ticket = bob.ticket_for(bob.local_addr());
    let t0 = Instant::now();
    let mut a = alice.call(&ticket).await?;
    let mut b = tokio::time::timeout(Duration::from_secs(10), bob.incoming())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| Failure::new(OTHER, "Bob never saw the call."))?;
    let rang = t0.elapsed();
    let a_after = until_connected(&mut a).await?;
    let b_after = until_connected(&mut b).await?;
    // Bob answered at once; his half of the code arrives a round trip after the ring.
    while b.info().sas().is_none() {
        next(&mut b).await?;
    }
    let (ai, bi) = (a.info().clone(), b.info().clone());
    let (a_sas, b_sas) = (ai.sas().unwrap_or_default(), bi.sas().unwrap_or_default());
    let same = !a_sas.is_empty() && a_sas == b_sas && ai.safety_number == bi.safety_number;
    out.emit(
        format!(
            "Connected ({}, TLS 1.3, both keys verified).\n  Alice sees code {}   Bob sees code {}   {}\n  Safety number (both): {}",
            ai.key_exchange, a_sas, b_sas,
            if same { "→ equal: nobody in the middle" } else { "→ DIFFERENT" },
            ai.safety_number
        ),
        json!({"event": "connected", "alice_sas": a_sas, "bob_sas": b_sas, "sas_equal": same,
               "safety_number": ai.safety_number, "key_exchange": ai.key_exchange}),
    );
    if !same {
        return Err(Failure::new(
            OTHER,
            "The two ends show different codes; this is a bug.",
        ));
    }

    let mut chat_rtt = Duration::ZERO;
    for (from_alice, line) in LINES {
        let (tx, rx, name, peer) = if from_alice {
            (&a, &mut b, "Alice", "Bob")
        } else {
            (&b, &mut a, "Bob", "Alice")
        };
        let sent = Instant::now();
        tx.send_chat(line).await?;
        loop {
            if let CallEvent::Chat { text, at } = next(rx).await? {
                chat_rtt = chat_rtt.max(sent.elapsed());
                out.chat(&format!("{name} → {peer}"), &text, at);
                break;
            }
        }
    }
    // Ten seconds of talk: Alice's synthetic voice to Bob, silence back (still sent: every
    // datagram of a call has one size and one rate, whoever speaks).
    let secs = args.seconds;
    if !(0.5..=600.0).contains(&secs) {
        return Err(Failure::new(USAGE, "--seconds takes 0.5 to 600."));
    }
    let path = args
        .audio_out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("extrasafe-demo-received.wav"));
    let voice = speech::sample(secs);
    let heard = RecordingSink::to_file(path.clone());
    let config = AudioConfig::default();
    let codec_fail = |e: extrasafe_net::media::CodecError| {
        Failure::new(OTHER, format!("Audio could not start: {e}."))
    };
    let video = if args.no_video {
        None
    } else {
        let (w, h) = crate::videoplan::parse_size(&args.video_size)?;
        let start = |call: &Call, seen: &Arc<Mutex<Seen>>| {
            let seen = seen.clone();
            let sink = FnSink(move |f: &Frame, _index: u64| {
                let mut s = seen.lock().expect("demo sink");
                match pattern::check_received(f, w, h) {
                    Some((_, stamp, psnr)) => {
                        s.psnr.push(psnr);
                        s.delay_ms.push(wall_ms().wrapping_sub(stamp) as f64);
                    }
                    None => s.unreadable += 1,
                }
                s.size = Some((f.width, f.height));
            });
            VideoCall::start(
                call.media(),
                VideoConfig::default(),
                Some(Box::new(TestPattern::new(w, h, 30))),
                Box::new(sink),
            )
        };
        let (at_bob, at_alice) = (
            Arc::new(Mutex::new(Seen::default())),
            Arc::new(Mutex::new(Seen::default())),
        );
        Some((
            start(&a, &at_bob),
            start(&b, &at_alice),
            at_bob,
            at_alice,
            (w, h),
        ))
    };
    let alice_audio = AudioCall::start(
        a.media(),
        config.clone(),
        Box::new(SamplesSource::new(voice.clone(), false)),
        Box::new(Discard),
    )
    .map_err(codec_fail)?;
    let bob_audio = AudioCall::start(
        b.media(),
        config.clone(),
        Box::new(Silence),
        Box::new(heard.clone()),
    )
    .map_err(codec_fail)?;
    out.emit(
        format!(
            "Alice talks to Bob for {secs:.1} s: a synthetic voice, Opus {} kb/s, in {}-byte QUIC datagrams{}…",
            config.opus.bitrate / 1000,
            config.datagram_size,
            if args.no_video { "" } else { "; test video both ways" }
        ),
        json!({"event": "audio_started", "seconds": secs}),
    );
    // A little longer than the speech, so the last frames leave the jitter buffer.
    tokio::time::sleep(Duration::from_secs_f64(secs + 0.3)).await;
    let (sent, _) = alice_audio.stop().await;
    let (got, written) = bob_audio.stop().await;
    if let Some((va, vb, at_bob, at_alice, (w, h))) = video {
        let (sa, _) = va.stop().await;
        let (sb, _) = vb.stop().await;
        let mut lines = Vec::new();
        let mut json_dirs = Vec::new();
        for (dir, seen, tx) in [
            ("Alice → Bob", &at_bob, &sa),
            ("Bob → Alice", &at_alice, &sb),
        ] {
            let s = seen.lock().expect("demo sink");
            let n = s.psnr.len().max(1) as f64;
            let mean = s.psnr.iter().sum::<f64>() / n;
            let worst = s.psnr.iter().copied().fold(f64::INFINITY, f64::min);
            let mut d = s.delay_ms.clone();
            d.sort_by(|a, b| a.total_cmp(b));
            let median = d.get(d.len() / 2).copied().unwrap_or(0.0);
            let size = s.size.map_or("–".into(), |(w, h)| format!("{w}x{h}"));
            lines.push(format!(
                "  {dir}: {} pictures shown ({size}, {:.1} fps), PSNR {mean:.1} dB mean / {:.1} dB worst, capture-to-screen {median:.0} ms median, {:.2} Mb/s, {} unreadable",
                s.psnr.len(),
                s.psnr.len() as f64 / tx.elapsed.as_secs_f64().max(0.1),
                if worst.is_finite() { worst } else { 0.0 },
                tx.sender.bytes as f64 * 8.0 / secs / 1e6,
                s.unreadable
            ));
            json_dirs.push(json!({"direction": dir, "shown": s.psnr.len(), "size": size, "psnr_mean_db": mean,
                                  "psnr_worst_db": worst, "glass_to_glass_ms": median, "unreadable": s.unreadable,
                                  "send_mbps": tx.sender.bytes as f64 * 8.0 / secs / 1e6}));
        }
        out.emit(
            format!(
                "Video both ways, {w}x{h} test picture at 30 fps, H.264 in QUIC datagrams:\n{}",
                lines.join("\n")
            ),
            json!({"event": "video_done", "directions": json_dirs}),
        );
    }
    written.map_err(|e| Failure::new(OTHER, format!("Could not write {}: {e}", path.display())))?;
    // Measured over the second half: in the first pause the jitter buffer gives back the
    // start-up margin it no longer needs (one frame dropped in silence), which shifts the
    // delay once; a single alignment across that shift would blur both figures.
    let half = voice.len() / 2;
    let (lag, corr) = align(&voice[half..], &heard.samples(), half + 48_000 / 2);
    let lag = lag.saturating_sub(half);
    let kbps = sent.udp_tx_bytes as f64 * 8.0 / sent.elapsed.as_secs_f64().max(0.001) / 1000.0;
    out.emit(
        format!(
            "Audio: mouth-to-ear delay {:.1} ms (jitter buffer target {} ms, pauses shortened {}× / lengthened {}×), \
             waveform correlation {corr:.3}\n  \
             {} datagrams of {} bytes sent, {:.0} kb/s on the wire (the whole connection's UDP: QUIC{} included), \
             {} lost, {} concealed, {} malformed\n  Bob's audio: {}",
            lag as f64 / 48.0,
            got.target_delay.as_millis(),
            got.jitter.dropped,
            got.jitter.inserted,
            sent.sent,
            config.datagram_size,
            kbps,
            if args.no_video { "" } else { " and video" },
            got.jitter.lost,
            got.jitter.concealed,
            got.received.malformed,
            path.display()
        ),
        json!({"event": "audio_done", "latency_ms": lag as f64 / 48.0, "correlation": corr,
               "datagrams": sent.sent, "datagram_bytes": config.datagram_size, "wire_kbps": kbps,
               "lost": got.jitter.lost, "concealed": got.jitter.concealed,
               "dropped": got.jitter.dropped, "inserted": got.jitter.inserted,
               "target_delay_ms": got.target_delay.as_millis() as u64, "wav": path.display().to_string()}),
    );

    let hang = Instant::now();
    a.hangup();
    let mut ends = Vec::new();
    for c in [&mut a, &mut b] {
        loop {
            if let CallEvent::Ended(r) = next(c).await? {
                ends.push(r);
                break;
            }
        }
    }
    let hangup_time = hang.elapsed();
    let ok = ends == [EndReason::LocalHangup, EndReason::RemoteHangup];
    out.emit(
        format!(
            "Alice hung up; Bob was told ({:.1} ms).\n\nTimings on loopback:\n  secure connection (QUIC + TLS 1.3 handshake):                 {:.2} ms\n  call placed → ringing at Bob:                                 {:.2} ms\n  connected: Alice since dialling / Bob since the first packet: {:.2} / {:.2} ms\n  slowest chat line delivery:                                   {:.2} ms\nNothing else was written to disk.",
            ms(hangup_time), ms(ai.handshake), ms(rang), ms(a_after), ms(b_after), ms(chat_rtt)
        ),
        json!({"event": "demo_done", "handshake_ms": ms(ai.handshake), "ring_ms": ms(rang),
               "connect_ms": ms(a_after), "callee_connect_ms": ms(b_after), "chat_ms": ms(chat_rtt),
               "hangup_ms": ms(hangup_time), "ended": format!("{ends:?}")}),
    );
    alice.shutdown().await;
    bob.shutdown().await;
    Ok(if ok { 0 } else { OTHER })
}
