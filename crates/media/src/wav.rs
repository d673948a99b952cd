//! WAV files in and out of the pipeline's format (48 kHz mono 16-bit).

use std::path::Path;

use crate::resample::resample;
use crate::RATE;

/// Why a WAV file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct WavError {
    path: String,
    reason: String,
}

fn err(path: &Path, reason: impl ToString) -> WavError {
    WavError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads any PCM or float WAV, mixes it to mono and converts it to 48 kHz.
pub fn read(path: &Path) -> Result<Vec<i16>, WavError> {
    let mut r = hound::WavReader::open(path).map_err(|e| err(path, e))?;
    let spec = r.spec();
    let channels = spec.channels.max(1) as usize;
    let samples: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Float => r
            .samples::<f32>()
            .map(|s| s.map(|v| v as f64))
            .collect::<Result<_, _>>()
            .map_err(|e| err(path, e))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1i64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f64;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f64 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| err(path, e))?
        }
    };
    let mono: Vec<i16> = samples
        .chunks(channels)
        .map(|c| {
            (c.iter().sum::<f64>() / c.len() as f64 * 32_767.0).clamp(-32_768.0, 32_767.0) as i16
        })
        .collect();
    Ok(resample(&mono, spec.sample_rate, RATE))
}

/// Writes 48 kHz mono 16-bit samples.
pub fn write(path: &Path, samples: &[i16]) -> Result<(), WavError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| err(path, e))?;
    for &s in samples {
        w.write_sample(s).map_err(|e| err(path, e))?;
    }
    w.finalize().map_err(|e| err(path, e))
}
