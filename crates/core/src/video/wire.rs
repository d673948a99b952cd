//! The two video datagrams: a fragment of an encoded frame, and the receiver's feedback.
//!
//! ```text
//! fragment (kind 1), padded with zeros to a size bucket:
//! 0      version:4 = 1 | kind:4 = 1
//! 1      flags: bit 0 = keyframe, bit 1 = retransmission
//! 2..6   seq: u32, +1 per video datagram sent (retransmissions too)
//! 6..10  frame: u32, +1 per encoded frame
//! 10..14 capture: u32, the frame's capture time, ms on the sender's media clock
//! 14..18 sent: u32, when this datagram left, µs on the sender's media clock (wraps)
//! 18..20 index: u16, this fragment's place in the frame
//! 20..22 count: u16, fragments in the frame (1..=MAX_FRAGMENTS)
//! 22..24 len: u16, payload bytes that follow
//!
//! feedback (kind 2), always FEEDBACK_SIZE bytes:
//! 0      version:4 = 1 | kind:4 = 2
//! 1      flags: bit 0 = send a keyframe
//! 2..6   highest seq received
//! 6..8   interval: u16 ms this report covers
//! 8..12  bytes: u32 received in the interval (whole datagrams)
//! 12..14 received: u16 datagrams in the interval
//! 14..16 lost: u16 datagrams missing in the interval (by seq)
//! 16..18 queue delay: u16 ms, the one-way delay above its recent minimum
//! 18     nacks: u8 (≤ MAX_NACKS), then nacks × (frame: u32 | index: u16); index
//!        WHOLE_FRAME asks for every fragment of a frame none of which arrived
//! ```
//! Big-endian throughout. QUIC encrypts and authenticates all of it.

/// Bytes before a fragment's payload.
pub const FRAGMENT_HEADER: usize = 24;
/// Most fragments in one frame: with 1200-byte datagrams, about 1.4 MB of encoded frame.
pub const MAX_FRAGMENTS: u16 = 1200;
/// Every feedback datagram has this size, whatever it reports.
pub const FEEDBACK_SIZE: usize = 256;
/// Most retransmission requests in one feedback datagram.
pub const MAX_NACKS: usize = (FEEDBACK_SIZE - 19) / 6;
/// A NACK index asking for the whole of a frame.
pub const WHOLE_FRAME: u16 = u16::MAX;
/// Smallest useful datagram size for video (a header and some payload).
pub const MIN_DATAGRAM: usize = 256;

const VERSION: u8 = 1;
/// The kind nibble of a video fragment.
pub const KIND_FRAGMENT: u8 = 1;
/// The kind nibble of video feedback.
pub const KIND_FEEDBACK: u8 = 2;
const FLAG_KEY: u8 = 1;
const FLAG_RETX: u8 = 2;

/// Why a video datagram was dropped. The call goes on; these are only counted.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum VideoWireError {
    /// Shorter than its header, or the payload runs past the end.
    #[error("video datagram truncated")]
    Truncated,
    /// Another version or kind.
    #[error("not a video datagram")]
    Unknown,
    /// A field is out of range.
    #[error("malformed video datagram: {0}")]
    Malformed(&'static str),
}

/// The media kind of any call datagram (audio is 0), or `None` for a version we do not know.
pub fn datagram_kind(d: &[u8]) -> Option<u8> {
    let b = *d.first()?;
    (b >> 4 == VERSION).then_some(b & 0x0f)
}

/// A parsed fragment, borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Datagram sequence number.
    pub seq: u32,
    /// Frame number.
    pub frame: u32,
    /// The frame can be decoded without any earlier frame.
    pub keyframe: bool,
    /// This is a second (or later) copy, sent on request.
    pub retransmission: bool,
    /// Capture time, ms on the sender's clock.
    pub capture_ms: u32,
    /// Send time, µs on the sender's clock.
    pub sent_us: u32,
    /// Place in the frame.
    pub index: u16,
    /// Fragments in the frame.
    pub count: u16,
    /// Encoded bytes.
    pub payload: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Parses a fragment. Never panics, never allocates.
    pub fn parse(d: &'a [u8]) -> Result<Self, VideoWireError> {
        if d.len() < FRAGMENT_HEADER {
            return Err(VideoWireError::Truncated);
        }
        if datagram_kind(d) != Some(KIND_FRAGMENT) {
            return Err(VideoWireError::Unknown);
        }
        let u32_at = |i: usize| u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        let u16_at = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
        let (index, count, len) = (u16_at(18), u16_at(20), u16_at(22) as usize);
        if count == 0 || count > MAX_FRAGMENTS {
            return Err(VideoWireError::Malformed("fragment count"));
        }
        if index >= count {
            return Err(VideoWireError::Malformed("fragment index"));
        }
        if len == 0 {
            return Err(VideoWireError::Malformed("empty fragment"));
        }
        let payload = d
            .get(FRAGMENT_HEADER..FRAGMENT_HEADER + len)
            .ok_or(VideoWireError::Truncated)?;
        Ok(Self {
            seq: u32_at(2),
            frame: u32_at(6),
            keyframe: d[1] & FLAG_KEY != 0,
            retransmission: d[1] & FLAG_RETX != 0,
            capture_ms: u32_at(10),
            sent_us: u32_at(14),
            index,
            count,
            payload,
        })
    }

    /// Writes this fragment into `out` (cleared first), padded with zeros to `size`.
    pub fn write(&self, size: usize, out: &mut Vec<u8>) {
        out.clear();
        out.push(VERSION << 4 | KIND_FRAGMENT);
        out.push(
            if self.keyframe { FLAG_KEY } else { 0 }
                | if self.retransmission { FLAG_RETX } else { 0 },
        );
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.frame.to_be_bytes());
        out.extend_from_slice(&self.capture_ms.to_be_bytes());
        out.extend_from_slice(&self.sent_us.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u16).to_be_bytes());
        out.extend_from_slice(self.payload);
        out.resize(size.max(out.len()), 0);
    }
}

/// One retransmission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nack {
    /// Frame number.
    pub frame: u32,
    /// Fragment index, or [`WHOLE_FRAME`].
    pub index: u16,
}

/// What the receiver tells the sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Feedback {
    /// The receiver cannot go on without a keyframe.
    pub keyframe: bool,
    /// Highest datagram sequence number received.
    pub highest_seq: u32,
    /// How long the report covers, ms.
    pub interval_ms: u16,
    /// Bytes received in that time.
    pub bytes: u32,
    /// Datagrams received in that time.
    pub received: u16,
    /// Datagrams missing in that time.
    pub lost: u16,
    /// One-way delay above its recent minimum, ms.
    pub queue_delay_ms: u16,
    /// Fragments to send again.
    pub nacks: Vec<Nack>,
}

impl Feedback {
    /// Parses feedback. Never panics; allocation is bounded by [`MAX_NACKS`].
    pub fn parse(d: &[u8]) -> Result<Self, VideoWireError> {
        if d.len() < 19 {
            return Err(VideoWireError::Truncated);
        }
        if datagram_kind(d) != Some(KIND_FEEDBACK) {
            return Err(VideoWireError::Unknown);
        }
        let u32_at = |i: usize| u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        let u16_at = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
        let n = d[18] as usize;
        if n > MAX_NACKS {
            return Err(VideoWireError::Malformed("nack count"));
        }
        let list = d.get(19..19 + 6 * n).ok_or(VideoWireError::Truncated)?;
        let nacks = list
            .chunks_exact(6)
            .map(|c| Nack {
                frame: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                index: u16::from_be_bytes([c[4], c[5]]),
            })
            .collect();
        Ok(Self {
            keyframe: d[1] & 1 != 0,
            highest_seq: u32_at(2),
            interval_ms: u16_at(6),
            bytes: u32_at(8),
            received: u16_at(12),
            lost: u16_at(14),
            queue_delay_ms: u16_at(16),
            nacks,
        })
    }

    /// Writes the feedback, always [`FEEDBACK_SIZE`] bytes; NACKs past [`MAX_NACKS`] are left
    /// out (the caller keeps them for the next report).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(VERSION << 4 | KIND_FEEDBACK);
        out.push(u8::from(self.keyframe));
        out.extend_from_slice(&self.highest_seq.to_be_bytes());
        out.extend_from_slice(&self.interval_ms.to_be_bytes());
        out.extend_from_slice(&self.bytes.to_be_bytes());
        out.extend_from_slice(&self.received.to_be_bytes());
        out.extend_from_slice(&self.lost.to_be_bytes());
        out.extend_from_slice(&self.queue_delay_ms.to_be_bytes());
        let n = self.nacks.len().min(MAX_NACKS);
        out.push(n as u8);
        for k in &self.nacks[..n] {
            out.extend_from_slice(&k.frame.to_be_bytes());
            out.extend_from_slice(&k.index.to_be_bytes());
        }
        out.resize(FEEDBACK_SIZE, 0);
    }
}

/// The size bucket a datagram of `len` bytes is padded to: the smallest of 256, 512 and
/// `full` that holds it. Three sizes leave an observer only a coarse idea of frame sizes.
pub fn bucket(len: usize, full: usize) -> usize {
    [MIN_DATAGRAM, 512, full]
        .into_iter()
        .find(|&b| b >= len && b <= full)
        .unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(payload: &[u8]) -> Fragment<'_> {
        Fragment {
            seq: 7,
            frame: 3,
            keyframe: true,
            retransmission: false,
            capture_ms: 1234,
            sent_us: 99,
            index: 1,
            count: 4,
            payload,
        }
    }

    #[test]
    fn fragment_round_trips_and_pads() {
        let mut out = Vec::new();
        let f = frag(&[9; 100]);
        f.write(512, &mut out);
        assert_eq!(out.len(), 512);
        assert_eq!(Fragment::parse(&out).unwrap(), f);
        assert_eq!(datagram_kind(&out), Some(KIND_FRAGMENT));
    }

    #[test]
    fn feedback_round_trips_at_one_size() {
        let mut out = Vec::new();
        let fb = Feedback {
            keyframe: true,
            highest_seq: 1 << 30,
            interval_ms: 100,
            bytes: 123_456,
            received: 88,
            lost: 3,
            queue_delay_ms: 17,
            nacks: (0..MAX_NACKS as u32 + 5)
                .map(|i| Nack {
                    frame: i,
                    index: i as u16,
                })
                .collect(),
        };
        fb.write(&mut out);
        assert_eq!(out.len(), FEEDBACK_SIZE);
        let back = Feedback::parse(&out).unwrap();
        assert_eq!(back.nacks.len(), MAX_NACKS);
        assert_eq!(back.nacks[..], fb.nacks[..MAX_NACKS]);
        assert_eq!(
            (back.keyframe, back.lost, back.queue_delay_ms),
            (true, 3, 17)
        );
        Feedback::default().write(&mut out);
        assert_eq!(out.len(), FEEDBACK_SIZE);
    }

    #[test]
    fn hostile_datagrams_are_refused() {
        let mut good = Vec::new();
        frag(&[1; 40]).write(256, &mut good);
        for n in 0..FRAGMENT_HEADER + 40 {
            assert!(Fragment::parse(&good[..n]).is_err(), "prefix {n}");
        }
        let mut bad = good.clone();
        bad[20..22].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(
            Fragment::parse(&bad),
            Err(VideoWireError::Malformed("fragment count"))
        );
        let mut bad = good.clone();
        bad[18..20].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(
            Fragment::parse(&bad),
            Err(VideoWireError::Malformed("fragment index"))
        );
        let mut bad = good.clone();
        bad[22..24].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(Fragment::parse(&bad), Err(VideoWireError::Truncated));
        let mut bad = good.clone();
        bad[0] = 0x10;
        assert_eq!(Fragment::parse(&bad), Err(VideoWireError::Unknown));
        let mut fb = Vec::new();
        Feedback::default().write(&mut fb);
        fb[18] = MAX_NACKS as u8 + 1;
        assert!(Feedback::parse(&fb).is_err());
        fb[18] = 2;
        assert!(Feedback::parse(&fb[..20]).is_err());
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket(30, 1200), 256);
        assert_eq!(bucket(256, 1200), 256);
        assert_eq!(bucket(257, 1200), 512);
        assert_eq!(bucket(700, 1200), 1200);
        assert_eq!(bucket(700, 400), 400);
    }
}
