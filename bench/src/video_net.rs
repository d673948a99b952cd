//! Video over a real call on loopback, in one process (two nodes, real UDP sockets, the real
//! codec), through an in-process UDP relay that can drop packets and black the link out.
//!
//! `video-net-bench latency [SECS] [WxH]`: glass-to-glass latency. The sender's test picture
//! carries its capture time (wall clock, ms); the receiving sink reads it back when the
//! picture is shown. Printed with the per-stage figures the call measures (encode, decode).
//!
//! `video-net-bench quality DIR LOSS KBPS [SECS]`: one direction at a fixed bitrate through
//! LOSS (0–1) random loss on every packet both ways. Writes DIR/sent.y4m (every picture the
//! source gave, in capture order) and DIR/recv.y4m (what was on screen at each of those
//! frames: a frozen stretch repeats the last picture), and DIR/meta (first frame index
//! shown, frames shown, frames encoded). `bench/video_quality.sh` runs ffmpeg on them.
//!
//! `video-net-bench recovery [OUTAGE_MS]`: the link goes dark for OUTAGE_MS (longer than the
//! sender keeps frames, so only a keyframe can repair it); measured: from the link coming
//! back to the first new picture shown.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use extrasafe_core::video::RateConfig;
use extrasafe_net::video::{VideoCall, VideoConfig, VideoStats};
use extrasafe_net::video_media::source::wall_ms;
use extrasafe_net::video_media::y4m::Y4mWriter;
use extrasafe_net::video_media::{
    pattern, FnSink, Frame, TestPattern, VideoError, VideoSink, VideoSource, Y4mSink,
};
use extrasafe_net::{AcceptPolicy, Call, CallEvent, Node, NodeConfig};
use tokio::net::UdpSocket;

fn cfg(policy: AcceptPolicy) -> NodeConfig {
    NodeConfig {
        // The benchmark rings the same node many times from one address on purpose.
        ring_burst: 1_000_000,
        bind: "127.0.0.1:0".parse().unwrap(),
        policy,
        ..NodeConfig::default()
    }
}

/// Relay state: loss probability (×1e6) and whether the link is dark.
#[derive(Default)]
struct Link {
    loss_ppm: AtomicU64,
    dark: AtomicBool,
}

impl Link {
    fn drops(&self, seed: &Mutex<u64>) -> bool {
        if self.dark.load(Ordering::Relaxed) {
            return true;
        }
        let mut s = seed.lock().unwrap();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s % 1_000_000 < self.loss_ppm.load(Ordering::Relaxed)
    }
}

async fn relay(target: SocketAddr, link: Arc<Link>) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let caller: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let seed = Arc::new(Mutex::new(0x9E37_79B9_7F4A_7C15u64));
    {
        let (front, back, caller, seed, link) = (
            front.clone(),
            back.clone(),
            caller.clone(),
            seed.clone(),
            link.clone(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    continue;
                };
                *caller.lock().unwrap() = Some(from);
                if !link.drops(&seed) {
                    let _ = back.send_to(&buf[..n], target).await;
                }
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
            if let (Some(to), false) = (to, link.drops(&seed)) {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

async fn connected(a: &Node, b: &Node, via: SocketAddr) -> (Call, Call) {
    let mut out = a.call(&b.ticket_for(via)).await.expect("call");
    let mut inc = b.incoming().await.expect("incoming");
    for c in [&mut out, &mut inc] {
        while !matches!(c.next_event().await, Some(CallEvent::Connected { .. })) {}
    }
    (out, inc)
}

/// A source that also writes every picture it gives to a Y4M file (the reference).
struct Tee {
    inner: TestPattern,
    out: Arc<Mutex<Option<Y4mWriter<std::io::BufWriter<std::fs::File>>>>>,
    last: Option<u64>,
}

impl VideoSource for Tee {
    fn size(&self) -> (u32, u32) {
        self.inner.size()
    }
    fn fps(&self) -> u32 {
        self.inner.fps()
    }
    fn next_frame(&mut self, index: u64) -> Result<Option<Frame>, VideoError> {
        let f = self.inner.next_frame(index)?.expect("endless");
        let mut out = self.out.lock().unwrap();
        if let Some(w) = out.as_mut() {
            // One reference picture per frame index (a skipped index repeats, as on screen).
            if let Some(last) = self.last {
                for _ in last + 1..index {
                    w.write(&f)?;
                }
            }
            w.write(&f)?;
        }
        self.last = Some(index);
        Ok(Some(f))
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn fixed_rate(kbps: u64) -> VideoConfig {
    VideoConfig {
        rate: RateConfig {
            min_bps: kbps * 1000,
            max_bps: kbps * 1000,
            start_bps: kbps * 1000,
        },
        ..VideoConfig::default()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let a = Node::bind(&extrasafe_net::new_identity(), cfg(AcceptPolicy::Ask))
        .await
        .unwrap();
    let b = Node::bind(&extrasafe_net::new_identity(), cfg(AcceptPolicy::Anyone))
        .await
        .unwrap();
    let link = Arc::new(Link::default());
    let via = relay(b.local_addr(), link.clone()).await;
    let (out, inc) = connected(&a, &b, via).await;
    match args.get(1).map(String::as_str) {
        Some("latency") => {
            let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10.0);
            let (w, h) = args
                .get(3)
                .and_then(|s| s.split_once('x'))
                .map_or((1280, 720), |(w, h)| {
                    (w.parse().unwrap(), h.parse().unwrap())
                });
            let delays = Arc::new(Mutex::new(Vec::new()));
            let d = delays.clone();
            let sink = FnSink(move |f: &Frame, _| {
                if let Some((_, stamp)) = pattern::read_code(f) {
                    d.lock().unwrap().push(wall_ms().wrapping_sub(stamp) as f64);
                }
            });
            let cfg = VideoConfig::default();
            let tx = VideoCall::start(
                out.media(),
                cfg.clone(),
                Some(Box::new(TestPattern::new(w, h, 30))),
                Box::new(extrasafe_net::video_media::NoVideo),
            );
            let rx = VideoCall::start(inc.media(), cfg, None, Box::new(sink));
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            let (ts, _) = tx.stop().await;
            let (rs, _) = rx.stop().await;
            let mut v = std::mem::take(&mut *delays.lock().unwrap());
            // The first second holds the start-up (first keyframe at the start rate).
            let skip = v.len().min(30);
            let mut steady = v.split_off(skip);
            let n = steady.len();
            let t = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "latency {w}x{h} {secs} s: {n} pictures after the first second; glass-to-glass median {:.1} ms, p95 {:.1} ms, max {:.1} ms (target ≤ 100 ms)",
                pct(&mut steady, 0.5), pct(&mut steady, 0.95), pct(&mut steady, 1.0)
            );
            println!(
                "  stages (means; the stamp is read just before the picture is drawn): draw ~3 ms at 720p (video-bench) · encode {:.1} ms · decode+show {:.1} ms · sum {:.1} ms; the rest is packetizing, QUIC, the relay, reassembly and thread hand-offs",
                t(ts.encode_time), t(rs.decode_time), 3.0 + t(ts.encode_time) + t(rs.decode_time)
            );
            println!(
                "  sent {} frames at {:.2} Mb/s target, shown {} at {:?}",
                ts.sender.frames,
                ts.target_bps as f64 / 1e6,
                rs.shown,
                rs.recv_size
            );
        }
        Some("quality") => {
            let dir = PathBuf::from(&args[2]);
            let loss: f64 = args[3].parse().unwrap();
            let kbps: u64 = args[4].parse().unwrap();
            let secs: f64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(10.0);
            std::fs::create_dir_all(&dir).unwrap();
            let (w, h) = (1280, 720);
            let file = std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(dir.join("sent.y4m")).unwrap(),
            );
            let writer = Arc::new(Mutex::new(Some(Y4mWriter::new(file, w, h, 30).unwrap())));
            let tee = Tee {
                inner: TestPattern::new(w, h, 30),
                out: writer.clone(),
                last: None,
            };
            let first = Arc::new(Mutex::new(None::<u64>));
            let shown = Arc::new(AtomicU64::new(0));
            struct Rec {
                inner: Y4mSink,
                first: Arc<Mutex<Option<u64>>>,
                shown: Arc<AtomicU64>,
            }
            impl VideoSink for Rec {
                fn show(&mut self, f: &Frame, i: u64) -> Result<(), VideoError> {
                    self.first.lock().unwrap().get_or_insert(i);
                    self.shown.fetch_add(1, Ordering::Relaxed);
                    self.inner.show(f, i)
                }
                fn finish(&mut self) -> Result<(), VideoError> {
                    self.inner.finish()
                }
            }
            let sink = Rec {
                inner: Y4mSink::new(dir.join("recv.y4m"), 30),
                first: first.clone(),
                shown: shown.clone(),
            };
            link.loss_ppm.store((loss * 1e6) as u64, Ordering::Relaxed);
            let tx = VideoCall::start(
                out.media(),
                fixed_rate(kbps),
                Some(Box::new(tee)),
                Box::new(extrasafe_net::video_media::NoVideo),
            );
            let rx = VideoCall::start(inc.media(), fixed_rate(kbps), None, Box::new(sink));
            let t0 = Instant::now();
            while t0.elapsed().as_secs_f64() < secs {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if std::env::var_os("VIDEO_DEBUG").is_some() {
                    let (t, r) = (tx.stats(), rx.stats());
                    eprintln!(
                        "{:>5.1}s tx frames {} dg {} retx {} kf {} delay {:?} cwnd {} rtt {:?} skipped {} | rx dg {} frames {} given_up {} held {} nacks {} kfreq {} shown {}",
                        t0.elapsed().as_secs_f64(), t.sender.frames, t.sender.datagrams, t.sender.retransmitted, t.sender.keyframes,
                        t.send_delay, t.cwnd, t.rtt, t.skipped, r.receiver.datagrams, r.receiver.frames, r.receiver.given_up,
                        r.receiver.held_back, r.receiver.nacks, r.receiver.keyframe_requests, r.shown
                    );
                }
            }
            let (ts, _) = tx.stop().await;
            let (rs, r) = rx.stop().await;
            r.unwrap();
            if let Some(w) = writer.lock().unwrap().take() {
                w.finish().unwrap();
            }
            let first = first.lock().unwrap().unwrap_or(0);
            let meta = format!(
                "first={first}\nshown={}\nencoded={}\nheld_back={}\ngiven_up={}\nrepaired={}\nkeyframe_requests={}\nsend_bps={}\n",
                shown.load(Ordering::Relaxed), ts.sender.frames, rs.receiver.held_back, rs.receiver.given_up,
                rs.receiver.repaired, rs.receiver.keyframe_requests, ts.sender.bytes * 8 / ts.elapsed.as_secs().max(1)
            );
            std::fs::write(dir.join("meta"), &meta).unwrap();
            print!("{meta}");
        }
        Some("recovery") => {
            let outage: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1500);
            let last_shown = Arc::new(Mutex::new(None::<Instant>));
            let ls = last_shown.clone();
            let sink = FnSink(move |_: &Frame, _| {
                *ls.lock().unwrap() = Some(Instant::now());
            });
            let cfg = fixed_rate(1500);
            let tx = VideoCall::start(
                out.media(),
                cfg.clone(),
                Some(Box::new(TestPattern::new(1280, 720, 30))),
                Box::new(extrasafe_net::video_media::NoVideo),
            );
            let rx = VideoCall::start(inc.media(), cfg, None, Box::new(sink));
            let mut results = Vec::new();
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                link.dark.store(true, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(outage)).await;
                let back = Instant::now();
                link.dark.store(false, Ordering::Relaxed);
                loop {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if last_shown.lock().unwrap().is_some_and(|t| t > back) {
                        break;
                    }
                    if back.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                let at = last_shown.lock().unwrap().unwrap();
                results.push(at.saturating_duration_since(back).as_secs_f64() * 1000.0);
            }
            let (ts, _) = tx.stop().await;
            let (rs, _): (VideoStats, _) = rx.stop().await;
            println!(
                "recovery after a {outage} ms outage (5 times): first new picture {:?} ms after the link came back; median {:.0} ms; keyframes sent {}, requested {}",
                results.iter().map(|r| r.round()).collect::<Vec<_>>(),
                pct(&mut results.clone(), 0.5),
                ts.sender.keyframes, rs.receiver.keyframe_requests
            );
        }
        _ => {
            eprintln!("usage: video-net-bench latency [SECS] [WxH] | quality DIR LOSS KBPS [SECS] | recovery [OUTAGE_MS]");
            std::process::exit(2);
        }
    }
    out.hangup();
}
