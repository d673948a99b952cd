//! The ring of an incoming call: two mixed tones (440 and 480 Hz, as telephones in North
//! America ring), one second on and two off, played on the chosen speaker until the call is
//! answered, declined or gone.

use std::time::Duration;

use extrasafe_net::media::io::AudioSink;
use extrasafe_net::media::FRAME_SAMPLES;

const RATE: f64 = 48_000.0;
/// Seconds of one ring cycle, and of the sound in it.
const CYCLE: f64 = 3.0;
const ON: f64 = 1.0;
/// Each tone's amplitude: soft enough not to startle, loud enough to hear across a room.
const LEVEL: f64 = 0.15 * i16::MAX as f64;

/// Samples `start..start + out.len()` of the ring.
pub fn fill(start: u64, out: &mut [i16]) {
    for (i, s) in out.iter_mut().enumerate() {
        let t = (start + i as u64) as f64 / RATE;
        *s = if t % CYCLE < ON {
            let tau = std::f64::consts::TAU;
            (LEVEL * ((tau * 440.0 * t).sin() + (tau * 480.0 * t).sin())) as i16
        } else {
            0
        };
    }
}

/// Plays the ring into `speaker` until the task is stopped.
pub async fn play(mut speaker: Box<dyn AudioSink>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut at = 0u64;
    loop {
        tick.tick().await;
        fill(at, &mut frame);
        speaker.write_frame(&frame);
        at += FRAME_SAMPLES as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn one_second_of_sound_then_two_of_silence() {
        let mut cycle = vec![0i16; 3 * 48_000];
        fill(0, &mut cycle);
        let (on, off) = cycle.split_at(48_000);
        assert!(rms(on) > 0.1 * LEVEL, "audible: {}", rms(on));
        assert!(off.iter().all(|&s| s == 0));
        // The same cycle again, and frame by frame the same as at once.
        let mut next = vec![0i16; 960];
        fill(3 * 48_000 + 960 * 5, &mut next);
        assert_eq!(next, cycle[960 * 5..960 * 6]);
        // Never clips: the two tones together stay under full scale.
        assert!(on.iter().all(|&s| s.unsigned_abs() < i16::MAX as u16));
    }
}
