//! The system's libopus (feature `libopus`: apt libopus-dev, found through pkg-config), behind
//! the same traits as the pure-Rust codec so the two can be compared in one run.

use crate::codec::{CodecError, Decoder, Encoder, OpusSettings};

fn err(e: opus::Error) -> CodecError {
    CodecError(e.to_string())
}

/// libopus encoder: 48 kHz mono, VOIP, CBR, no DTX, same settings as the pure-Rust one.
pub struct LibopusEncoder {
    inner: opus::Encoder,
    settings: OpusSettings,
}

impl LibopusEncoder {
    /// A VOIP-mode encoder with these settings.
    pub fn new(settings: OpusSettings) -> Result<Self, CodecError> {
        let mut inner =
            opus::Encoder::new(crate::RATE, opus::Channels::Mono, opus::Application::Voip)
                .map_err(err)?;
        inner
            .set_bitrate(opus::Bitrate::Bits(settings.bitrate))
            .map_err(err)?;
        inner.set_vbr(false).map_err(err)?;
        // Never stop sending in silence: the packet rate must not reveal who speaks.
        inner.set_dtx(false).map_err(err)?;
        inner.set_inband_fec(settings.inband_fec).map_err(err)?;
        inner
            .set_packet_loss_perc(settings.expected_loss)
            .map_err(err)?;
        inner.set_complexity(settings.complexity).map_err(err)?;
        Ok(Self { inner, settings })
    }
}

impl Encoder for LibopusEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        self.inner.encode(pcm, out).map_err(err)
    }
    fn set_bitrate(&mut self, bitrate: i32) -> Result<(), CodecError> {
        self.inner
            .set_bitrate(opus::Bitrate::Bits(bitrate))
            .map_err(err)?;
        self.settings.bitrate = bitrate;
        Ok(())
    }
    fn describe(&self) -> String {
        format!(
            "libopus {} {} kb/s CBR{}",
            opus::version(),
            self.settings.bitrate / 1000,
            if self.settings.inband_fec {
                " + in-band FEC"
            } else {
                ""
            }
        )
    }
}

/// libopus decoder.
pub struct LibopusDecoder {
    inner: opus::Decoder,
}

impl LibopusDecoder {
    /// A 48 kHz mono decoder.
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            inner: opus::Decoder::new(crate::RATE, opus::Channels::Mono).map_err(err)?,
        })
    }
}

impl Decoder for LibopusDecoder {
    fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        self.inner.decode(packet, out, false).map_err(err)
    }
    fn conceal(&mut self, next: Option<&[u8]>, out: &mut [i16]) -> Result<usize, CodecError> {
        match next {
            Some(p) if !p.is_empty() => self.inner.decode(p, out, true),
            _ => self.inner.decode(&[], out, false),
        }
        .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{OpusPureDecoder, OpusPureEncoder};
    use crate::FRAME_SAMPLES;

    /// Both codecs speak the same Opus: each decodes the other's packets, and libopus keeps
    /// every packet the same size too.
    #[test]
    fn libopus_and_the_pure_rust_codec_interoperate() {
        let speech = crate::speech::sample(2.0);
        let settings = OpusSettings::default();
        let mut lib_enc = LibopusEncoder::new(settings.clone()).unwrap();
        let mut pure_enc = OpusPureEncoder::new(settings).unwrap();
        let mut lib_dec = LibopusDecoder::new().unwrap();
        let mut pure_dec = OpusPureDecoder::new().unwrap();
        let (mut a, mut b) = ([0u8; 1500], [0u8; 1500]);
        let mut pcm = [0i16; FRAME_SAMPLES];
        let mut sizes = std::collections::BTreeSet::new();
        let (mut energy_in, mut energy_out) = (0.0f64, 0.0f64);
        for f in speech.chunks_exact(FRAME_SAMPLES) {
            let n = lib_enc.encode(f, &mut a).unwrap();
            sizes.insert(n);
            assert_eq!(pure_dec.decode(&a[..n], &mut pcm).unwrap(), FRAME_SAMPLES);
            energy_in += f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
            energy_out += pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
            let m = pure_enc.encode(f, &mut b).unwrap();
            assert_eq!(lib_dec.decode(&b[..m], &mut pcm).unwrap(), FRAME_SAMPLES);
        }
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), vec![100]);
        // The decoded speech carries about the energy that went in (within 3 dB).
        let ratio = energy_out / energy_in;
        assert!((0.5..2.0).contains(&ratio), "{ratio}");
        assert_eq!(lib_dec.conceal(None, &mut pcm).unwrap(), FRAME_SAMPLES);
    }
}
