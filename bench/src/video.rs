//! H.264 speed and quality on this machine: encode and decode frames per second at 720p30
//! and 1080p30 with one and two threads, for our encoder settings and for openh264's own
//! defaults (the baseline, measured in the same run), with the quality each costs.
//!
//! Content: the built-in test picture, and ffmpeg's `testsrc2` (more texture and motion) when
//! ffmpeg is installed. Usage: `cargo run --release -p extrasafe-bench --bin video-bench
//! [FRAMES]` (default 150 frames per measurement; three runs each, medians).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use extrasafe_video::frame::i420_len;
use extrasafe_video::{pattern, psnr_y, Effort, EncoderSettings, Frame, H264Decoder, H264Encoder};

fn testsrc2(w: u32, h: u32, n: usize) -> Option<Vec<Frame>> {
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={w}x{h}:rate=30"))
        .args([
            "-frames:v",
            &n.to_string(),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "pipe:1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut out = child.stdout.take()?;
    let mut frames = Vec::new();
    for _ in 0..n {
        let mut data = vec![0u8; i420_len(w, h)];
        out.read_exact(&mut data).ok()?;
        frames.push(Frame {
            width: w,
            height: h,
            data,
        });
    }
    child.wait().ok()?;
    Some(frames)
}

/// CPU seconds of this process so far (user + system).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

struct Run {
    enc_fps: f64,
    enc_cpu_per_frame_ms: f64,
    dec_fps: f64,
    psnr: f64,
    kbps: f64,
    skipped: usize,
}

fn run(frames: &[Frame], s: EncoderSettings) -> Run {
    let mut enc = H264Encoder::new(s).expect("encoder");
    let (t0, c0) = (Instant::now(), cpu_s());
    let mut coded = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if let Some(e) = enc.encode(f).expect("encode") {
            coded.push((i, e.data));
        }
    }
    let (enc_s, enc_cpu) = (t0.elapsed().as_secs_f64(), cpu_s() - c0);
    let mut dec = H264Decoder::new().expect("decoder");
    let t1 = Instant::now();
    let mut out = Vec::new();
    for (i, d) in &coded {
        if let Some(p) = dec.decode(d).expect("decode") {
            out.push((*i, p));
        }
    }
    let dec_s = t1.elapsed().as_secs_f64();
    let psnr =
        out.iter().map(|(i, p)| psnr_y(&frames[*i], p)).sum::<f64>() / out.len().max(1) as f64;
    let bytes: usize = coded.iter().map(|c| c.1.len()).sum();
    Run {
        enc_fps: frames.len() as f64 / enc_s,
        enc_cpu_per_frame_ms: enc_cpu * 1000.0 / frames.len() as f64,
        dec_fps: coded.len() as f64 / dec_s,
        psnr,
        kbps: bytes as f64 * 8.0 / (frames.len() as f64 / 30.0) / 1000.0,
        skipped: frames.len() - coded.len(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(150);
    println!("video-bench: {n} frames per measurement, median of 3 runs; bitrate 2.5 Mb/s at 720p, 5 Mb/s at 1080p");
    println!("baseline: openh264's defaults (medium complexity, adaptive quantisation and background detection on)");
    println!(
        "{:<10} {:<9} {:<28} {:>8} {:>8} {:>12} {:>8} {:>7} {:>7} {:>6}",
        "size",
        "content",
        "encoder",
        "enc fps",
        "×base",
        "CPU ms/frame",
        "dec fps",
        "PSNR",
        "kb/s",
        "skip"
    );
    for (w, h, bitrate) in [(1280u32, 720u32, 2_500_000u32), (1920, 1080, 5_000_000)] {
        let t = Instant::now();
        for i in 0..30 {
            std::hint::black_box(pattern::draw(w, h, i, i));
        }
        println!(
            "{w}x{h}: drawing the test picture takes {:.1} ms",
            t.elapsed().as_secs_f64() * 1000.0 / 30.0
        );
        let mut contents = vec![(
            "pattern",
            (0..n as u32)
                .map(|i| pattern::draw(w, h, i, 1000 + 33 * i))
                .collect::<Vec<_>>(),
        )];
        if let Some(f) = testsrc2(w, h, n) {
            contents.push(("testsrc2", f));
        }
        for (name, frames) in &contents {
            let base = EncoderSettings {
                bitrate,
                effort: Effort::Medium,
                threads: 1,
                analysis: true,
                ..Default::default()
            };
            let configs = [
                ("baseline (defaults, 1 thr)", base),
                (
                    "ours: low, lean, 1 thread",
                    EncoderSettings {
                        bitrate,
                        threads: 1,
                        ..Default::default()
                    },
                ),
                (
                    "ours: low, lean, 2 threads",
                    EncoderSettings {
                        bitrate,
                        threads: 2,
                        ..Default::default()
                    },
                ),
                (
                    "low effort + analysis, 1 thr",
                    EncoderSettings {
                        bitrate,
                        threads: 1,
                        analysis: true,
                        ..Default::default()
                    },
                ),
                (
                    "baseline, 2 threads",
                    EncoderSettings { threads: 2, ..base },
                ),
            ];
            let mut base_fps = 0.0;
            for (label, s) in configs {
                let runs: Vec<Run> = (0..3).map(|_| run(frames, s)).collect();
                let fps = median(runs.iter().map(|r| r.enc_fps).collect());
                if base_fps == 0.0 {
                    base_fps = fps;
                }
                println!(
                    "{:<10} {:<9} {:<28} {:>8.1} {:>7.2}× {:>12.1} {:>8.1} {:>6.1} {:>7.0} {:>6}",
                    format!("{w}x{h}"),
                    name,
                    label,
                    fps,
                    fps / base_fps,
                    median(runs.iter().map(|r| r.enc_cpu_per_frame_ms).collect()),
                    median(runs.iter().map(|r| r.dec_fps).collect()),
                    median(runs.iter().map(|r| r.psnr).collect()),
                    median(runs.iter().map(|r| r.kbps).collect()),
                    runs[0].skipped,
                );
            }
        }
    }
}
