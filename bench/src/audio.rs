//! Audio quality, latency and cost benchmark on a deterministic impairment layer.
//!
//! Speech goes through the real sender (noise suppression off: the voices are clean),
//! Opus, the datagram format, a seeded network model (random or bursty loss, delay jitter
//! with the reordering it implies), the jitter buffer, decoding and concealment, all on
//! virtual time, so every run of a condition is identical. Each received signal is scored
//! with wideband PESQ (PyPI `pesq`, through `bench/pesq_score.py`) against what was sent.
//!
//! Schemes compared in the same run (the baseline first):
//! * `fec`        — Opus in-band FEC alone (no copies in the padding), the baseline;
//! * `copies+fec` — two earlier frames copied into each fixed-size datagram, plus FEC;
//! * `copies`     — ours, the default: the copies without in-band FEC (all of Opus's bits
//!   go to the frame itself).
//!
//! Run: `bash bench/audio.sh` (it makes the voices with espeak-ng and sets up PESQ).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use extrasafe_media::codec::{opus_pair, OpusImpl, OpusSettings};
use extrasafe_media::pipeline::align;
use extrasafe_media::{wav, AudioConfig, AudioReceiver, AudioSender, FRAME_SAMPLES};

#[derive(Clone, Copy, Debug)]
enum Loss {
    None,
    Random(f64),
    /// Gilbert–Elliott: average loss and mean burst length (in datagrams).
    Bursty(f64, f64),
}

#[derive(Clone, Copy, Debug)]
struct Condition {
    loss: Loss,
    /// Extra one-way delay, uniform in [0, jitter].
    jitter_ms: f64,
}

impl Condition {
    fn label(&self) -> String {
        let l = match self.loss {
            Loss::None => "0 %".to_string(),
            Loss::Random(p) => format!("{:.0} % random", p * 100.0),
            Loss::Bursty(p, b) => format!("{:.0} % bursts of {b:.0}", p * 100.0),
        };
        format!("{l}, jitter {:.0} ms", self.jitter_ms)
    }
}

struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Outcome {
    received: Vec<i16>,
    cpu_send: Duration,
    cpu_recv: Duration,
    lost_frames: u64,
}

/// Sends `speech` through the pipeline and the network model, on virtual time.
fn run(speech: &[i16], config: &AudioConfig, cond: Condition, seed: u64) -> Outcome {
    run_with(OpusImpl::Pure, speech, config, cond, seed)
}

fn run_with(
    which: OpusImpl,
    speech: &[i16],
    config: &AudioConfig,
    cond: Condition,
    seed: u64,
) -> Outcome {
    let settings = OpusSettings {
        implementation: which,
        ..config.opus.clone()
    };
    let (enc, dec) = opus_pair(&settings).unwrap();
    let mut tx = AudioSender::new(config, enc);
    let mut rx = AudioReceiver::new(config, dec);
    let mut rng = Rng(seed | 1);
    let (mut bad, frame) = (false, Duration::from_millis(20));
    let t0 = Instant::now();
    let mut flight: Vec<(Duration, Vec<u8>)> = Vec::new();
    let frames = speech.len() / FRAME_SAMPLES + 15;
    let mut out = Vec::with_capacity(frames * FRAME_SAMPLES);
    let (mut buf, mut dg) = (vec![0i16; FRAME_SAMPLES], Vec::new());
    let (mut cpu_send, mut cpu_recv) = (Duration::ZERO, Duration::ZERO);
    let mut pending: VecDeque<(Duration, Vec<u8>)> = VecDeque::new();
    for i in 0..frames {
        let sent_at = frame * i as u32;
        let pcm: Vec<i16> = speech
            .get(i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES)
            .map(|s| s.to_vec())
            .unwrap_or_else(|| vec![0; FRAME_SAMPLES]);
        let c = Instant::now();
        tx.send_frame(&pcm, &mut dg).unwrap();
        cpu_send += c.elapsed();
        let lost = match cond.loss {
            Loss::None => false,
            Loss::Random(p) => rng.unit() < p,
            Loss::Bursty(p, burst) => {
                // Leave the bad state after `burst` datagrams on average; enter it so that
                // the long-run loss is p.
                let leave = 1.0 / burst;
                let enter = p * leave / (1.0 - p);
                bad = if bad {
                    rng.unit() >= leave
                } else {
                    rng.unit() < enter
                };
                bad
            }
        };
        if !lost {
            let delay = Duration::from_secs_f64((1.0 + rng.unit() * cond.jitter_ms) / 1000.0);
            flight.push((sent_at + delay, dg.clone()));
        }
        flight.sort_by_key(|f| f.0);
        // The playout clock: 10 ms out of phase with capture.
        let play_at = sent_at + Duration::from_millis(10);
        while flight.first().is_some_and(|f| f.0 <= play_at) {
            pending.push_back(flight.remove(0));
        }
        let c = Instant::now();
        while let Some((at, d)) = pending.pop_front() {
            rx.handle_datagram(t0 + at, &d);
        }
        rx.play(t0 + play_at, &mut buf);
        cpu_recv += c.elapsed();
        out.extend_from_slice(&buf);
    }
    Outcome {
        received: out,
        cpu_send,
        cpu_recv,
        lost_frames: rx.jitter().stats().lost,
    }
}

fn schemes() -> Vec<(&'static str, AudioConfig)> {
    let base = AudioConfig {
        noise_suppression: false,
        ..AudioConfig::default()
    };
    let fec = OpusSettings {
        inband_fec: true,
        expected_loss: 10,
        ..OpusSettings::default()
    };
    vec![
        (
            "fec",
            AudioConfig {
                redundancy: 0,
                opus: fec.clone(),
                ..base.clone()
            },
        ),
        (
            "copies+fec",
            AudioConfig {
                opus: fec,
                ..base.clone()
            },
        ),
        ("copies", base),
    ]
}

fn conditions() -> Vec<Condition> {
    let mut c = Vec::new();
    for loss in [
        Loss::None,
        Loss::Random(0.02),
        Loss::Random(0.05),
        Loss::Random(0.10),
        Loss::Random(0.20),
        Loss::Bursty(0.10, 3.0),
    ] {
        for jitter_ms in [0.0, 30.0, 80.0] {
            c.push(Condition { loss, jitter_ms });
        }
    }
    c
}

fn main() {
    let voices: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let mut refs: Vec<(String, Vec<i16>)> = voices
        .iter()
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                wav::read(p).expect("voice file"),
            )
        })
        .collect();
    refs.push(("synthetic".into(), extrasafe_media::speech::sample(8.0)));
    let dir = std::env::temp_dir().join(format!("extrasafe-audio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let python = std::env::var("PESQ_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut scorer = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("pesq_score.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the PESQ scorer");
    let mut to_scorer = scorer.stdin.take().unwrap();
    let mut from_scorer = std::io::BufReader::new(scorer.stdout.take().unwrap()).lines();
    let mut score = |reference: &Path, degraded: &Path| -> f64 {
        writeln!(to_scorer, "{} {}", reference.display(), degraded.display()).unwrap();
        from_scorer
            .next()
            .unwrap()
            .unwrap()
            .trim()
            .parse()
            .unwrap_or(f64::NAN)
    };

    let mut ref_paths = Vec::new();
    for (name, pcm) in &refs {
        let p = dir.join(format!("{name}-ref.wav"));
        wav::write(&p, pcm).unwrap();
        ref_paths.push(p);
    }
    println!(
        "EXTRA SAFE audio benchmark: wideband PESQ (MOS-LQO), mean over {} voices",
        refs.len()
    );
    println!(
        "voices: {}",
        refs.iter()
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("baseline: `fec` (Opus in-band FEC alone); ratio = ours (`copies`, the default) / baseline\n");
    println!(
        "{:<34} {:>7} {:>11} {:>7} {:>7}   {:>9}",
        "condition", "fec", "copies+fec", "copies", "ratio", "lost (c/f)"
    );
    let (mut cpu_s, mut cpu_r, mut audio_secs) = (Duration::ZERO, Duration::ZERO, 0.0);
    let mut latencies: Vec<(String, f64)> = Vec::new();
    for (ci, cond) in conditions().into_iter().enumerate() {
        let mut mos = Vec::new();
        let mut lost = Vec::new();
        for (name, config) in schemes() {
            let mut sum = 0.0;
            let mut n = 0;
            let mut lost_sum = 0;
            for (vi, (vname, pcm)) in refs.iter().enumerate() {
                let o = run(pcm, &config, cond, 0xA5A5 + ci as u64 * 31 + vi as u64);
                cpu_s += o.cpu_send;
                cpu_r += o.cpu_recv;
                audio_secs += pcm.len() as f64 / 48_000.0;
                lost_sum += o.lost_frames;
                if name == "copies" && matches!(cond.loss, Loss::None) {
                    // Over the second half, once the buffer has settled (it gives back its
                    // start-up margin in the first pause).
                    let half = pcm.len() / 2;
                    let (lag, _) = align(&pcm[half..], &o.received, half + 48_000 / 4);
                    // The playout clock runs 10 ms behind capture (see `run`).
                    latencies.push((cond.label(), lag.saturating_sub(half) as f64 / 48.0 + 10.0));
                }
                let p = dir.join(format!("{vname}-{name}-{ci}.wav"));
                wav::write(&p, &o.received).unwrap();
                let m = score(&ref_paths[vi], &p);
                if m.is_finite() {
                    sum += m;
                    n += 1;
                }
            }
            mos.push(sum / n.max(1) as f64);
            lost.push(lost_sum);
        }
        println!(
            "{:<34} {:>7.2} {:>11.2} {:>7.2} {:>6.2}×   {:>4}/{}",
            cond.label(),
            mos[0],
            mos[1],
            mos[2],
            mos[2] / mos[0],
            lost[2],
            lost[0]
        );
    }
    // What the bitrate buys on a clean path and at 10 % loss with 30 ms jitter, with the
    // datagram sized to keep two copies.
    println!("\nBitrate sweep, `copies` scheme (datagram sized for the frame and two copies):");
    println!(
        "{:>8} {:>10} {:>10} {:>18}",
        "kb/s", "datagram", "0 %", "10 %, 30 ms"
    );
    for kbps in [16, 24, 32, 40, 48, 64] {
        let frame_bytes = kbps * 1000 / 8 / 50;
        let config = AudioConfig {
            noise_suppression: false,
            datagram_size: 13 + 3 * (2 + frame_bytes),
            opus: OpusSettings {
                bitrate: kbps as i32 * 1000,
                ..OpusSettings::default()
            },
            ..AudioConfig::default()
        };
        let mut row = Vec::new();
        for (ci, cond) in [
            Condition {
                loss: Loss::None,
                jitter_ms: 0.0,
            },
            Condition {
                loss: Loss::Random(0.10),
                jitter_ms: 30.0,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let (mut sum, mut n) = (0.0, 0);
            for (vi, (vname, pcm)) in refs.iter().enumerate() {
                let o = run(pcm, &config, cond, 0x5EED + vi as u64);
                let p = dir.join(format!("{vname}-rate{kbps}-{ci}.wav"));
                wav::write(&p, &o.received).unwrap();
                let m = score(&ref_paths[vi], &p);
                if m.is_finite() {
                    sum += m;
                    n += 1;
                }
            }
            row.push(sum / n.max(1) as f64);
        }
        println!(
            "{kbps:>8} {:>8} B {:>10.2} {:>18.2}",
            config.datagram_size, row[0], row[1]
        );
    }

    // What the encoder's complexity buys, and what it costs, on a clean path.
    println!("\nEncoder complexity, `copies` scheme, 0 % loss (CPU: sender, one core, noise suppression off):");
    println!("{:>11} {:>7} {:>10}", "complexity", "PESQ", "CPU");
    for complexity in [5, 7, 8, 9, 10] {
        let config = AudioConfig {
            noise_suppression: false,
            opus: OpusSettings {
                complexity,
                ..OpusSettings::default()
            },
            ..AudioConfig::default()
        };
        let cond = Condition {
            loss: Loss::None,
            jitter_ms: 0.0,
        };
        let (mut sum, mut n, mut cpu, mut secs) = (0.0, 0, Duration::ZERO, 0.0);
        for (vi, (vname, pcm)) in refs.iter().enumerate() {
            let o = run(pcm, &config, cond, 0xC0 + vi as u64);
            cpu += o.cpu_send;
            secs += pcm.len() as f64 / 48_000.0;
            let p = dir.join(format!("{vname}-cx{complexity}.wav"));
            wav::write(&p, &o.received).unwrap();
            let m = score(&ref_paths[vi], &p);
            if m.is_finite() {
                sum += m;
                n += 1;
            }
        }
        println!(
            "{complexity:>11} {:>7.2} {:>9.2}%",
            sum / n.max(1) as f64,
            cpu.as_secs_f64() / secs * 100.0
        );
    }

    // The same pipeline with the system's libopus in place of the pure-Rust codec.
    println!("\nCodec comparison (same pipeline; ratio = opus-pure / libopus):");
    if OpusImpl::System.available() {
        println!(
            "{:<34} {:>16} {:>16} {:>7}",
            "condition", "scheme", "opus-pure  libopus", "ratio"
        );
        for (ci, cond) in conditions().into_iter().enumerate() {
            if !(cond.jitter_ms == 30.0 || matches!(cond.loss, Loss::None)) {
                continue;
            }
            for (name, config) in schemes() {
                if name == "copies+fec" {
                    continue;
                }
                let mut mos = [0.0f64; 2];
                for (k, which) in [OpusImpl::Pure, OpusImpl::System].into_iter().enumerate() {
                    let (mut sum, mut n) = (0.0, 0);
                    for (vi, (vname, pcm)) in refs.iter().enumerate() {
                        let o = run_with(
                            which,
                            pcm,
                            &config,
                            cond,
                            0xC0DE + ci as u64 * 31 + vi as u64,
                        );
                        let p = dir.join(format!("{vname}-{name}-codec{k}-{ci}.wav"));
                        wav::write(&p, &o.received).unwrap();
                        let m = score(&ref_paths[vi], &p);
                        if m.is_finite() {
                            sum += m;
                            n += 1;
                        }
                    }
                    mos[k] = sum / n.max(1) as f64;
                }
                println!(
                    "{:<34} {:>16} {:>8.2} {:>8.2} {:>6.2}×",
                    cond.label(),
                    name,
                    mos[0],
                    mos[1],
                    mos[0] / mos[1]
                );
            }
        }
    } else {
        println!("  (not built: `bash bench/audio.sh` builds it with --features libopus when libopus-dev is installed)");
    }

    println!(
        "\nPipeline latency: from a 20 ms frame handed to the sender to its samples handed to the\n\
         playout device (no capture framing, no device buffers; noise suppression off, on it adds\n\
         10 ms; network delay 1 ms + jitter):"
    );
    // Per condition: the median over the voices (how many start-up underruns a voice's
    // pauses let the buffer give back within its few seconds varies), and the range.
    let mut labels: Vec<String> = latencies.iter().map(|l| l.0.clone()).collect();
    labels.dedup();
    for label in labels {
        let mut v: Vec<f64> = latencies
            .iter()
            .filter(|l| l.0 == label)
            .map(|l| l.1)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "  {label:<34} {:.1} ms (voices: {:.1}–{:.1} ms)",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
    // The sender as it runs in a call, noise suppression on.
    let (mut cpu_ns, mut ns_secs) = (Duration::ZERO, 0.0);
    let clean = Condition {
        loss: Loss::None,
        jitter_ms: 0.0,
    };
    for (vi, (_, pcm)) in refs.iter().enumerate() {
        let o = run(pcm, &AudioConfig::default(), clean, 0xD0 + vi as u64);
        cpu_ns += o.cpu_send;
        ns_secs += pcm.len() as f64 / 48_000.0;
    }
    let (send, recv, send_ns) = (
        cpu_s.as_secs_f64() / audio_secs * 100.0,
        cpu_r.as_secs_f64() / audio_secs * 100.0,
        cpu_ns.as_secs_f64() / ns_secs * 100.0,
    );
    println!(
        "\nCPU per second of audio, one core: sender {send:.2} % (noise suppression off), {send_ns:.2} % (on, the default); receiver {recv:.2} %"
    );
    println!(
        "One side of a call (sends and receives, defaults): {:.2} % of one core",
        send_ns + recv
    );
    let d = AudioConfig::default().datagram_size;
    println!(
        "Bytes on the wire per second: 50 datagrams × {d} bytes = {} B/s of payload ({} kb/s) plus QUIC headers",
        50 * d,
        50 * d * 8 / 1000
    );
    drop(to_scorer);
    let _ = scorer.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
