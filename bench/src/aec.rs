//! Echo cancellation benchmark, the signal side (`bench/aec.sh` runs it and scores).
//!
//! `aec-bench gen DIR FAR.wav NEAR.wav`: for each scenario, a 20 s call at 48 kHz as the
//! microphone of a laptop would hear it: the far end's voice played by its speaker through an
//! echo path (a pure delay, then a room impulse response of exponentially decaying noise),
//! the near end's voice, a faint noise floor (-70 dBFS). Timeline: 0–8 s the far end alone,
//! 8–12 s the near end alone, 12–16 s both talk, 16–20 s the far end alone (in `change` the
//! echo path changes at 16 s). Writes `far.wav` (what the speaker is sent), `mic.wav`,
//! `echo.wav` (the echo part of the microphone alone) and `nearmic.wav` (what the
//! microphone would hear without any echo: the near end's voice and the noise floor).
//!
//! `aec-bench run DIR`: each canceller on each scenario, 10 ms frames, the speaker's frame
//! given before the microphone's (as a call's playout runs ahead of its capture): writes
//! `out-<canceller>.wav` and prints the CPU each took (% of one core for real time).
//!
//! The cancellers: `sonora` 0.2 (a Rust port of WebRTC's audio processing: AEC3 alone here,
//! with its high-pass filter) and `aec3` 0.4 (another port of AEC3, its linear pipeline with
//! noise suppression and gain control off). The anchor, PulseAudio's
//! `module-echo-cancel aec_method=webrtc`, is run by the script on the same files.

use std::path::{Path, PathBuf};
use std::time::Instant;

const RATE: usize = 48_000;
const FRAME: usize = RATE / 100;
const SECONDS: usize = 20;

/// One scenario: its name, the echo path's delay (ms), whether the speaker clips, the
/// path after the change (delay ms) if it changes, whether there is an echo at all, and how
/// much weaker (dB) than the usual 6 dB of loss it is.
struct Scenario {
    name: &'static str,
    delay_ms: usize,
    clip: bool,
    change_to_ms: Option<usize>,
    echo: bool,
    weaker_db: f32,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "delay40",
        delay_ms: 40,
        clip: false,
        change_to_ms: None,
        echo: true,
        weaker_db: 0.0,
    },
    Scenario {
        name: "delay120",
        delay_ms: 120,
        clip: false,
        change_to_ms: None,
        echo: true,
        weaker_db: 0.0,
    },
    Scenario {
        name: "delay250",
        delay_ms: 250,
        clip: false,
        change_to_ms: None,
        echo: true,
        weaker_db: 0.0,
    },
    Scenario {
        name: "clipping",
        delay_ms: 120,
        clip: true,
        change_to_ms: None,
        echo: true,
        weaker_db: 0.0,
    },
    Scenario {
        name: "change",
        delay_ms: 40,
        clip: false,
        change_to_ms: Some(250),
        echo: true,
        weaker_db: 0.0,
    },
    Scenario {
        name: "headset",
        delay_ms: 0,
        clip: false,
        change_to_ms: None,
        echo: false,
        weaker_db: 0.0,
    },
    Scenario {
        name: "weak",
        delay_ms: 120,
        clip: false,
        change_to_ms: None,
        echo: true,
        weaker_db: 30.0,
    },
];

/// A small deterministic generator (xorshift), so every run makes the same signals.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn read_wav(path: &Path) -> Vec<f32> {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels),
        (RATE as u32, 1),
        "{}",
        path.display()
    );
    r.samples::<i16>()
        .map(|s| s.expect("a sample") as f32 / 32768.0)
        .collect()
}

fn write_wav(path: &Path, x: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("writable");
    for &s in x {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .expect("written");
    }
    w.finalize().expect("finished");
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// `voice` looped to fill `len` samples, scaled to `dbfs` RMS over its speech.
fn voice(src: &[f32], len: usize, dbfs: f32) -> Vec<f32> {
    let gain = 10f32.powf(dbfs / 20.0) / rms(src).max(1e-6);
    (0..len).map(|i| src[i % src.len()] * gain).collect()
}

/// An echo path: `delay_ms` of pure delay, a direct sound, then 0.2 s of exponentially
/// decaying noise (RT60 `rt60` s); the whole path attenuates by about `loss_db`.
fn impulse_response(delay_ms: usize, rt60: f32, loss_db: f32, rng: &mut Rng) -> Vec<f32> {
    let delay = delay_ms * RATE / 1000;
    let tail = RATE / 5;
    let mut h = vec![0.0f32; delay + tail];
    // -60 dB after rt60 seconds.
    let decay = (-6.91 / (rt60 * RATE as f32)).exp();
    let mut env = 0.5f32;
    for t in 0..tail {
        h[delay + t] = rng.next() * env;
        env *= decay;
    }
    h[delay] = 1.0;
    let energy = h.iter().map(|v| v * v).sum::<f32>().sqrt();
    let gain = 10f32.powf(-loss_db / 20.0) / energy;
    h.iter_mut().for_each(|v| *v *= gain);
    h
}

/// `x` through `h` (direct convolution, skipping the zeros of the delay).
fn convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    let first = h.iter().position(|v| *v != 0.0).unwrap_or(h.len());
    let taps = &h[first..];
    let mut y = vec![0.0f32; x.len()];
    for (n, out) in y.iter_mut().enumerate().skip(first) {
        let m = n - first;
        let k = taps.len().min(m + 1);
        let xs = &x[m + 1 - k..=m];
        *out = xs.iter().rev().zip(&taps[..k]).map(|(a, b)| a * b).sum();
    }
    y
}

fn gen(dir: &Path, far_src: &Path, near_src: &Path) {
    let len = SECONDS * RATE;
    let far_voice = read_wav(far_src);
    let near_voice = read_wav(near_src);
    let mut far = voice(&far_voice, len, -20.0);
    let mut near = voice(&near_voice, len, -26.0);
    // The far end is silent while the near end talks alone; the near end talks alone,
    // then over the far end.
    for (i, s) in far.iter_mut().enumerate() {
        if (8 * RATE..12 * RATE).contains(&i) {
            *s = 0.0;
        }
    }
    for (i, s) in near.iter_mut().enumerate() {
        if !(8 * RATE..16 * RATE).contains(&i) {
            *s = 0.0;
        }
    }
    for sc in SCENARIOS {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ sc.delay_ms as u64);
        let speaker: Vec<f32> = if sc.clip {
            // A small speaker driven too hard: the loud parts flatten.
            far.iter().map(|s| (s * 4.0).clamp(-0.25, 0.25)).collect()
        } else {
            far.clone()
        };
        let echo = if !sc.echo {
            vec![0.0; len]
        } else {
            let h = impulse_response(sc.delay_ms, 0.3, 6.0 + sc.weaker_db, &mut rng);
            let mut e = convolve(&speaker, &h);
            if let Some(to) = sc.change_to_ms {
                // Someone moves the laptop: from 16 s on, another path.
                let h2 = impulse_response(to, 0.5, 3.0, &mut rng);
                let e2 = convolve(&speaker, &h2);
                e[16 * RATE..].copy_from_slice(&e2[16 * RATE..]);
            }
            e
        };
        // Uniform noise of this amplitude is about -70 dBFS.
        let floor: Vec<f32> = (0..len)
            .map(|_| rng.next() * 10f32.powf(-65.0 / 20.0))
            .collect();
        let nearmic: Vec<f32> = (0..len).map(|i| near[i] + floor[i]).collect();
        let mic: Vec<f32> = (0..len).map(|i| echo[i] + nearmic[i]).collect();
        let d = dir.join(sc.name);
        std::fs::create_dir_all(&d).expect("a folder");
        write_wav(&d.join("far.wav"), &far);
        write_wav(&d.join("mic.wav"), &mic);
        write_wav(&d.join("echo.wav"), &echo);
        write_wav(&d.join("nearmic.wav"), &nearmic);
        println!(
            "{}: echo at the microphone {:.1} dBFS, near end {:.1} dBFS",
            sc.name,
            20.0 * rms(&echo[RATE..8 * RATE]).max(1e-9).log10(),
            20.0 * rms(&near[8 * RATE..16 * RATE]).max(1e-9).log10()
        );
    }
}

/// A canceller: the speaker's 10 ms frame, then the microphone's, cleaned in place.
trait Canceller {
    fn render(&mut self, frame: &[f32]);
    fn capture(&mut self, frame: &mut [f32]);
}

struct Sonora(sonora::AudioProcessing);

impl Sonora {
    fn new() -> Self {
        // As the product runs it (crates/media/src/echo.rs): no high-pass filter, the full
        // 48 kHz band.
        let mut config = sonora::Config {
            echo_canceller: Some(sonora::config::EchoCanceller {
                enforce_high_pass_filtering: false,
                ..Default::default()
            }),
            ..Default::default()
        };
        config.pipeline.maximum_internal_processing_rate =
            sonora::config::MaxProcessingRate::Rate48kHz;
        Self(
            sonora::AudioProcessing::builder()
                .config(config)
                .capture_config(sonora::StreamConfig::new(RATE as u32, 1))
                .render_config(sonora::StreamConfig::new(RATE as u32, 1))
                .build(),
        )
    }
}

impl Canceller for Sonora {
    fn render(&mut self, frame: &[f32]) {
        let mut out = vec![0.0f32; frame.len()];
        self.0
            .process_render_f32(&[frame], &mut [&mut out])
            .expect("a 10 ms frame");
    }
    fn capture(&mut self, frame: &mut [f32]) {
        let src = frame.to_vec();
        self.0
            .process_capture_f32(&[&src], &mut [frame])
            .expect("a 10 ms frame");
    }
}

struct Aec3(aec3::pipelines::linear::LinearPipeline);

impl Aec3 {
    fn new() -> Self {
        let format = aec3::nodes::audio::AudioFormat::ten_ms(RATE as u32, 1);
        Self(
            aec3::pipelines::linear::builder(format, format)
                .enable_noise_suppression(false)
                .enable_gain_controller2(false)
                .build()
                .expect("an AEC3 pipeline"),
        )
    }
}

impl Canceller for Aec3 {
    fn render(&mut self, frame: &[f32]) {
        self.0.handle_render_frame(frame).expect("a 10 ms frame");
    }
    fn capture(&mut self, frame: &mut [f32]) {
        let src = frame.to_vec();
        self.0
            .process_capture_frame(&src, frame)
            .expect("a 10 ms frame");
    }
}

/// The canceller as a call runs it (`extrasafe_media::echo::EchoCanceller`: sonora, and the
/// microphone passed untouched while no echo has been found), on 20 ms frames.
struct Product(extrasafe_media::echo::EchoCanceller);

impl Product {
    fn new() -> Self {
        Self(extrasafe_media::echo::EchoCanceller::with(true, false))
    }
    fn run(&mut self, far: &[f32], mic: &mut [f32]) {
        let to_i16 = |x: &[f32]| -> Vec<i16> {
            x.iter()
                .map(|s| (s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
                .collect()
        };
        let two = 2 * FRAME;
        for (f, m) in far.chunks_exact(two).zip(mic.chunks_exact_mut(two)) {
            self.0.far_end(&to_i16(f));
            let mut pcm = to_i16(m);
            self.0.process(&mut pcm);
            for (o, s) in m.iter_mut().zip(pcm) {
                *o = f32::from(s) / 32767.0;
            }
        }
    }
}

fn run(dir: &Path) {
    println!("CPU for real time (% of one core), 48 kHz mono, 10 ms frames:");
    for sc in SCENARIOS {
        let d = dir.join(sc.name);
        let far = read_wav(&d.join("far.wav"));
        let mic = read_wav(&d.join("mic.wav"));
        let mut line = format!("{:<10}", sc.name);
        for name in ["sonora", "aec3", "extrasafe"] {
            if name == "extrasafe" {
                let mut out = mic.clone();
                let start = Instant::now();
                Product::new().run(&far, &mut out);
                let cpu = start.elapsed().as_secs_f64() / SECONDS as f64 * 100.0;
                write_wav(&d.join(format!("out-{name}.wav")), &out);
                line += &format!(" {name} {cpu:.2} %");
                continue;
            }
            let mut c: Box<dyn Canceller> = match name {
                "sonora" => Box::new(Sonora::new()),
                _ => Box::new(Aec3::new()),
            };
            let mut out = mic.clone();
            let start = Instant::now();
            for (f, m) in far.chunks_exact(FRAME).zip(out.chunks_exact_mut(FRAME)) {
                c.render(f);
                c.capture(m);
            }
            let cpu = start.elapsed().as_secs_f64() / SECONDS as f64 * 100.0;
            write_wav(&d.join(format!("out-{name}.wav")), &out);
            line += &format!(" {name} {cpu:.2} %");
        }
        println!("{line}");
    }
}

/// The whole capture path of a call as the product runs it (echo cancellation, gain
/// control, noise suppression, Opus), on one scenario's microphone with its speaker frames:
/// CPU for real time, against the same path without the canceller and gain control.
fn pipeline_cpu(dir: &Path) {
    use extrasafe_media::codec::opus_pair;
    use extrasafe_media::{AudioConfig, AudioSender, FRAME_SAMPLES};
    let d = dir.join("delay120");
    let to_i16 = |x: Vec<f32>| -> Vec<i16> {
        x.iter()
            .map(|s| (s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .collect()
    };
    let far = to_i16(read_wav(&d.join("far.wav")));
    let mic = to_i16(read_wav(&d.join("mic.wav")));
    println!("Whole capture path on `delay120` (% of one core for real time):");
    for (label, echo, gain) in [
        (
            "echo cancellation + gain control + noise suppression + Opus",
            true,
            true,
        ),
        ("noise suppression + Opus (before)", false, false),
    ] {
        let config = AudioConfig {
            echo_cancellation: echo,
            gain_control: gain,
            ..AudioConfig::default()
        };
        let (encoder, _) = opus_pair(&config.opus).expect("Opus");
        let mut tx = AudioSender::new(&config, encoder);
        let start = Instant::now();
        for (f, m) in far
            .chunks_exact(FRAME_SAMPLES)
            .zip(mic.chunks_exact(FRAME_SAMPLES))
        {
            tx.far_end(f);
            let _ = tx.encode(m);
        }
        let cpu = start.elapsed().as_secs_f64() / SECONDS as f64 * 100.0;
        println!("  {label}: {cpu:.2} %");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") if args.len() == 5 => gen(
            &PathBuf::from(&args[2]),
            &PathBuf::from(&args[3]),
            &PathBuf::from(&args[4]),
        ),
        Some("run") if args.len() == 3 => {
            run(&PathBuf::from(&args[2]));
            pipeline_cpu(&PathBuf::from(&args[2]));
        }
        _ => {
            eprintln!("usage: aec-bench gen DIR FAR.wav NEAR.wav | aec-bench run DIR");
            std::process::exit(2);
        }
    }
}
