//! H.264 through openh264 (built from its bundled source): an encoder whose size, rate and
//! bitrate follow the controller's plan, and a decoder that reports what it cannot decode.

use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod,
    RateControlMode, UsageType,
};
use openh264::formats::{YUVSlices, YUVSource};
use openh264::OpenH264API;

use crate::frame::Frame;

/// A codec failure. The call goes on: the stream freezes and asks for a keyframe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The encoder refused its settings or a picture.
    #[error("H.264 encoder: {0}")]
    Encoder(String),
    /// The decoder could not decode a frame.
    #[error("H.264 decoder: {0}")]
    Decoder(String),
}

/// How hard the encoder works per frame: less effort is faster and costs some quality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    /// Fastest.
    Low,
    /// openh264's default.
    Medium,
    /// Best quality.
    High,
}

/// Encoder settings.
#[derive(Clone, Copy, Debug)]
pub struct EncoderSettings {
    /// Target bitrate, bits per second.
    pub bitrate: u32,
    /// Frames per second the encoder plans for.
    pub fps: f32,
    /// Encoder threads (0 lets openh264 choose).
    pub threads: u16,
    /// Effort per frame.
    pub effort: Effort,
    /// Screen content (sharp text, little motion) rather than a camera.
    pub screen: bool,
    /// openh264's adaptive quantisation and background detection: some quality for a good
    /// share of the encoding time (measured in bench/RESULTS.md).
    pub analysis: bool,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            bitrate: 1_000_000,
            fps: 30.0,
            threads: 1,
            effort: Effort::Low,
            screen: false,
            analysis: false,
        }
    }
}

/// An encoded frame.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// Annex-B H.264: start codes and NAL units.
    pub data: Vec<u8>,
    /// Decodes on its own (IDR).
    pub keyframe: bool,
}

/// The H.264 encoder.
pub struct H264Encoder {
    inner: Encoder,
    settings: EncoderSettings,
    force_key: bool,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl H264Encoder {
    /// An encoder with these settings.
    pub fn new(settings: EncoderSettings) -> Result<Self, CodecError> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(settings.bitrate))
            .max_frame_rate(FrameRate::from_hz(settings.fps))
            .rate_control_mode(RateControlMode::Bitrate)
            // Without frame skipping openh264's rate control overshoots badly.
            .skip_frames(true)
            .usage_type(if settings.screen {
                UsageType::ScreenContentRealTime
            } else {
                UsageType::CameraVideoRealTime
            })
            .complexity(match settings.effort {
                Effort::Low => Complexity::Low,
                Effort::Medium => Complexity::Medium,
                Effort::High => Complexity::High,
            })
            .num_threads(settings.threads)
            // Keyframes only on request: the receiver asks when it needs one.
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            // openh264 wants it for screen content; for a camera it only costs time.
            .scene_change_detect(settings.screen)
            .adaptive_quantization(settings.analysis)
            .background_detection(settings.analysis);
        let inner = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| CodecError::Encoder(e.to_string()))?;
        Ok(Self {
            inner,
            settings,
            force_key: false,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// The next frame will be a keyframe.
    pub fn request_keyframe(&mut self) {
        self.force_key = true;
    }

    /// Encodes a picture; `None` when rate control skipped it.
    pub fn encode(&mut self, frame: &Frame) -> Result<Option<Encoded>, CodecError> {
        if std::mem::take(&mut self.force_key) {
            self.inner.force_intra_frame();
        }
        let (w, h) = (frame.width as usize, frame.height as usize);
        let yuv = YUVSlices::new((frame.y(), frame.u(), frame.v()), (w, h), (w, w / 2, w / 2));
        let bs = self
            .inner
            .encode(&yuv)
            .map_err(|e| CodecError::Encoder(e.to_string()))?;
        let kind = bs.frame_type();
        if matches!(kind, FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        let data = bs.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(Encoded {
            data,
            keyframe: kind == FrameType::IDR,
        }))
    }
}

/// The H.264 decoder.
pub struct H264Decoder {
    inner: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H264Decoder")
    }
}

impl H264Decoder {
    /// A decoder.
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            inner: Decoder::new().map_err(|e| CodecError::Decoder(e.to_string()))?,
        })
    }

    /// Decodes one whole frame; `None` when it produced no picture.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<Frame>, CodecError> {
        let Some(yuv) = self
            .inner
            .decode(data)
            .map_err(|e| CodecError::Decoder(e.to_string()))?
        else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        if w % 2 == 1 || h % 2 == 1 || w == 0 || h == 0 {
            return Err(CodecError::Decoder(format!("odd picture size {w}x{h}")));
        }
        let (sy, su, sv) = yuv.strides();
        let mut out = Vec::with_capacity(crate::frame::i420_len(w as u32, h as u32));
        for (plane, stride, pw, ph) in [
            (yuv.y(), sy, w, h),
            (yuv.u(), su, w / 2, h / 2),
            (yuv.v(), sv, w / 2, h / 2),
        ] {
            for row in 0..ph {
                out.extend_from_slice(&plane[row * stride..row * stride + pw]);
            }
        }
        Ok(Some(Frame {
            width: w as u32,
            height: h as u32,
            data: out,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{pattern, psnr_y};

    #[test]
    fn pattern_survives_encode_and_decode_and_keyframes_come_on_request() {
        let mut enc = H264Encoder::new(EncoderSettings {
            bitrate: 1_500_000,
            ..EncoderSettings::default()
        })
        .unwrap();
        let mut dec = H264Decoder::new().unwrap();
        let (mut keys, mut shown, mut worst) = (0, 0, f64::MAX);
        for i in 0..30u32 {
            if i == 20 {
                enc.request_keyframe();
            }
            let src = pattern::draw(640, 360, i, 1000 + 33 * i);
            let Some(e) = enc.encode(&src).unwrap() else {
                continue;
            };
            if i == 0 || i == 20 {
                assert!(e.keyframe, "frame {i}");
            }
            keys += u32::from(e.keyframe);
            let out = dec.decode(&e.data).unwrap().unwrap();
            assert_eq!((out.width, out.height), (640, 360));
            assert_eq!(pattern::read_code(&out), Some((i, 1000 + 33 * i)));
            worst = worst.min(psnr_y(&src, &out));
            shown += 1;
        }
        assert_eq!(keys, 2);
        assert!(shown >= 25, "{shown}");
        assert!(worst > 28.0, "PSNR {worst}");
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut dec = H264Decoder::new().unwrap();
        for junk in [
            &[][..],
            &[0, 0, 0, 1, 0x65, 0xff, 0xff][..],
            &[0xAB; 3000][..],
        ] {
            let _ = dec.decode(junk);
        }
        // Still decodes a real stream afterwards.
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let e = enc.encode(&pattern::draw(320, 180, 0, 0)).unwrap().unwrap();
        assert!(dec.decode(&e.data).unwrap().is_some());
    }
}
