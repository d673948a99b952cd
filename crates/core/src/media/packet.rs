//! The media datagram: one fixed size for the whole call, so its length never tells an
//! observer whether someone speaks; the room that a frame does not use carries copies of the
//! previous frames, so a lost datagram is repaired by the next one without any round trip.
//!
//! ```text
//! 0      version:4 = 1 | kind:4 (0 = audio)
//! 1      flags: bit 0 = speech (the sender's voice activity), bit 1 = muted,
//!        bit 2 = a repair report follows in bits 3-4: how much the sender's own receiver had
//!        to rebuild of what it got from us lately (0 nothing, 1 a little, 2 much; see
//!        [`Repair`])
//! 2..6   seq: u32, +1 per datagram
//! 6..10  ts: u32, media timestamp of the primary frame, in samples at 48 kHz
//! 10..12 dur: u16, samples per frame (120..=2880, a multiple of 120)
//! 12     count: u8 (1..=8) frames follow
//! then   count × (len:u16 | len bytes); frame k is the one of seq − k, ts − k·dur
//! rest   zero padding up to the call's datagram size
//! ```
//! All integers are big-endian. The header is authenticated and encrypted by QUIC like all
//! other traffic; padding and flags are invisible on the wire.

/// Header bytes before the frames.
pub const HEADER_LEN: usize = 13;
/// Most frames one datagram may carry (the primary plus seven older copies).
pub const MAX_FRAMES: usize = 8;
/// Largest encoded frame accepted (Opus's maximum frame size, RFC 6716 §3.4).
pub const MAX_FRAME_BYTES: usize = 1275;
const VERSION: u8 = 1;
const KIND_AUDIO: u8 = 0;
const FLAG_SPEECH: u8 = 1;
const FLAG_MUTED: u8 = 2;
const FLAG_REPORT: u8 = 4;
const REPORT_SHIFT: u8 = 3;

/// How much of the peer's audio a receiver lately had to rebuild, reported back in every
/// datagram it sends: the sender spends its datagram's room on quality while nothing is
/// missing, and on copies of older frames when they are needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Every frame came in its own datagram, in time.
    Nothing,
    /// A few frames, each alone, came only as copies in later datagrams.
    Little,
    /// Frames were missing in runs, often, or were lost altogether.
    Much,
}

impl Repair {
    fn bits(self) -> u8 {
        match self {
            Repair::Nothing => 0,
            Repair::Little => 1,
            Repair::Much => 2,
        }
    }
    fn from_bits(b: u8) -> Self {
        match b {
            0 => Repair::Nothing,
            1 => Repair::Little,
            // 3 is not sent; read as the cautious answer.
            _ => Repair::Much,
        }
    }
}

/// Why a datagram was dropped. The call goes on; these are only counted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than a header, or a frame runs past the end.
    #[error("media datagram truncated")]
    Truncated,
    /// Another version or kind.
    #[error("unknown media datagram version or kind")]
    Unknown,
    /// A field is out of range.
    #[error("malformed media datagram: {0}")]
    Malformed(&'static str),
}

/// A parsed media datagram, borrowing its frames from the datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct MediaPacket<'a> {
    /// Sequence number of the primary frame.
    pub seq: u32,
    /// Media timestamp of the primary frame (48 kHz samples).
    pub ts: u32,
    /// Samples per frame.
    pub dur: u16,
    /// The sender marked the primary frame as speech.
    pub speech: bool,
    /// The sender is muted (the frames carry silence).
    pub muted: bool,
    /// What the sender's receiver had to rebuild of our audio lately, if it said.
    pub report: Option<Repair>,
    /// Frames, newest first: `frames[k]` belongs to `seq - k`.
    pub frames: Vec<&'a [u8]>,
}

impl<'a> MediaPacket<'a> {
    /// Parses a datagram. Never panics; allocation is bounded by [`MAX_FRAMES`].
    pub fn parse(d: &'a [u8]) -> Result<Self, PacketError> {
        if d.len() < HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        if d[0] >> 4 != VERSION || d[0] & 0x0f != KIND_AUDIO {
            return Err(PacketError::Unknown);
        }
        let flags = d[1];
        let seq = u32::from_be_bytes([d[2], d[3], d[4], d[5]]);
        let ts = u32::from_be_bytes([d[6], d[7], d[8], d[9]]);
        let dur = u16::from_be_bytes([d[10], d[11]]);
        if !(120..=2880).contains(&dur) || !dur.is_multiple_of(120) {
            return Err(PacketError::Malformed("frame duration"));
        }
        let count = d[12] as usize;
        if count == 0 || count > MAX_FRAMES {
            return Err(PacketError::Malformed("frame count"));
        }
        let mut frames = Vec::with_capacity(count);
        let mut at = HEADER_LEN;
        for _ in 0..count {
            let len_bytes = d.get(at..at + 2).ok_or(PacketError::Truncated)?;
            let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
            if len > MAX_FRAME_BYTES {
                return Err(PacketError::Malformed("frame too large"));
            }
            at += 2;
            frames.push(d.get(at..at + len).ok_or(PacketError::Truncated)?);
            at += len;
        }
        Ok(Self {
            seq,
            ts,
            dur,
            speech: flags & FLAG_SPEECH != 0,
            muted: flags & FLAG_MUTED != 0,
            report: (flags & FLAG_REPORT != 0)
                .then(|| Repair::from_bits((flags >> REPORT_SHIFT) & 3)),
            frames,
        })
    }
}

/// Builds fixed-size datagrams, filling the room left by the current frame with as many of
/// the previous frames as fit, newest first.
#[derive(Debug)]
pub struct Packetizer {
    size: usize,
    max_redundant: usize,
    /// Older frames kept: the most copies this packetizer was made for.
    keep: usize,
    seq: u32,
    /// Previous frames, newest first.
    history: Vec<Vec<u8>>,
    /// The repair report the next datagrams carry.
    report: Option<Repair>,
}

impl Packetizer {
    /// `size` is the datagram size of the call; `max_redundant` caps the older copies.
    pub fn new(size: usize, max_redundant: usize) -> Self {
        Self {
            // Never smaller than a header and an empty frame.
            size: size.max(HEADER_LEN + 2),
            max_redundant: max_redundant.min(MAX_FRAMES - 1),
            keep: max_redundant.min(MAX_FRAMES - 1),
            seq: 0,
            history: Vec::new(),
            report: None,
        }
    }

    /// At most this many older frames from the next datagram on (as room allows), up to the
    /// number it was made with.
    pub fn set_redundancy(&mut self, max_redundant: usize) {
        self.max_redundant = max_redundant.min(self.keep);
    }

    /// The repair report the next datagrams carry.
    pub fn set_report(&mut self, report: Option<Repair>) {
        self.report = report;
    }

    /// The datagram size every packet of this call has.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Writes the datagram for `frame` (encoded) into `out` (cleared first); returns its
    /// sequence number. A frame that cannot fit even alone is an error of the caller's
    /// bitrate choice: it is sent truncated to nothing rather than changing the size.
    pub fn packetize(
        &mut self,
        ts: u32,
        dur: u16,
        speech: bool,
        muted: bool,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> u32 {
        out.clear();
        out.push(VERSION << 4 | KIND_AUDIO);
        let report = self
            .report
            .map_or(0, |r| FLAG_REPORT | r.bits() << REPORT_SHIFT);
        out.push(
            if speech { FLAG_SPEECH } else { 0 } | if muted { FLAG_MUTED } else { 0 } | report,
        );
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&dur.to_be_bytes());
        let count_at = out.len();
        out.push(0);
        let primary = if HEADER_LEN + 2 + frame.len() <= self.size && frame.len() <= MAX_FRAME_BYTES
        {
            frame
        } else {
            &[][..]
        };
        let mut count = 1u8;
        out.extend_from_slice(&(primary.len() as u16).to_be_bytes());
        out.extend_from_slice(primary);
        for old in self.history.iter().take(self.max_redundant) {
            if out.len() + 2 + old.len() > self.size {
                break;
            }
            out.extend_from_slice(&(old.len() as u16).to_be_bytes());
            out.extend_from_slice(old);
            count += 1;
        }
        out[count_at] = count;
        out.resize(self.size, 0);
        // Kept up to the most copies it was made for, so that a switch back to more copies
        // has them at once.
        if self.keep > 0 {
            self.history.insert(0, primary.to_vec());
            self.history.truncate(self.keep);
        }
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datagram_has_the_same_size_and_carries_history() {
        let mut p = Packetizer::new(200, 3);
        let mut out = Vec::new();
        let frames: Vec<Vec<u8>> = (0..6u8)
            .map(|i| vec![i; 10 + 15 * (i as usize % 3)])
            .collect();
        for (i, f) in frames.iter().enumerate() {
            let seq = p.packetize(960 * i as u32, 960, i % 2 == 0, false, f, &mut out);
            assert_eq!(seq, i as u32);
            assert_eq!(out.len(), 200);
            let m = MediaPacket::parse(&out).unwrap();
            assert_eq!(
                (m.seq, m.ts, m.dur, m.speech),
                (i as u32, 960 * i as u32, 960, i % 2 == 0)
            );
            assert_eq!(m.frames[0], &f[..]);
            for (k, older) in m.frames.iter().enumerate().skip(1) {
                assert_eq!(*older, &frames[i - k][..], "copy {k} of packet {i}");
            }
            assert_eq!(m.frames.len(), (i + 1).min(4));
        }
    }

    #[test]
    fn history_stops_where_room_ends() {
        let mut p = Packetizer::new(100, 7);
        let mut out = Vec::new();
        for i in 0..5 {
            p.packetize(i * 960, 960, true, false, &[7; 40], &mut out);
        }
        // 13 header + 2 × (2 + 40) = 97 ≤ 100: one old copy fits.
        assert_eq!(MediaPacket::parse(&out).unwrap().frames.len(), 2);
    }

    #[test]
    fn hostile_datagrams_are_refused_without_panic() {
        let mut p = Packetizer::new(120, 2);
        let mut good = Vec::new();
        p.packetize(0, 960, true, false, &[1; 30], &mut good);
        // Cut anywhere before the end of the frames: refused. (Cutting padding is harmless.)
        for n in 0..HEADER_LEN + 2 + 30 {
            assert!(
                MediaPacket::parse(&good[..n]).is_err(),
                "prefix {n} accepted"
            );
        }
        assert_eq!(MediaPacket::parse(&good[..5]), Err(PacketError::Truncated));
        let mut bad = good.clone();
        bad[0] = 0x21;
        assert_eq!(MediaPacket::parse(&bad), Err(PacketError::Unknown));
        let mut bad = good.clone();
        bad[12] = 9;
        assert!(MediaPacket::parse(&bad).is_err());
        let mut bad = good.clone();
        bad[13] = 0xff; // first frame claims 65 KB
        assert!(MediaPacket::parse(&bad).is_err());
        let mut bad = good.clone();
        bad[10..12].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            MediaPacket::parse(&bad),
            Err(PacketError::Malformed("frame duration"))
        );
    }

    #[test]
    fn muted_is_carried() {
        let mut p = Packetizer::new(64, 0);
        let mut out = Vec::new();
        p.packetize(0, 960, false, true, &[0; 3], &mut out);
        let m = MediaPacket::parse(&out).unwrap();
        assert!(m.muted && !m.speech);
        assert_eq!(m.frames.len(), 1);
    }

    /// The repair report rides in the flags, beside speech and muted; a datagram without one
    /// says nothing (not "nothing to rebuild"), and the unused level reads as the cautious one.
    #[test]
    fn the_repair_report_travels_in_the_flags() {
        let mut p = Packetizer::new(200, 2);
        let mut out = Vec::new();
        p.packetize(0, 960, true, false, &[1; 20], &mut out);
        assert_eq!(MediaPacket::parse(&out).unwrap().report, None);
        for r in [Repair::Nothing, Repair::Little, Repair::Much] {
            p.set_report(Some(r));
            p.packetize(960, 960, true, true, &[2; 20], &mut out);
            let m = MediaPacket::parse(&out).unwrap();
            assert_eq!((m.report, m.speech, m.muted), (Some(r), true, true));
        }
        out[1] = FLAG_REPORT | 3 << REPORT_SHIFT;
        let m = MediaPacket::parse(&out).unwrap();
        assert_eq!(
            (m.report, m.speech, m.muted),
            (Some(Repair::Much), false, false)
        );
        // Fewer copies from the next datagram on.
        p.set_redundancy(1);
        p.packetize(1920, 960, true, false, &[3; 20], &mut out);
        assert_eq!(MediaPacket::parse(&out).unwrap().frames.len(), 2);
        p.set_redundancy(2);
        p.packetize(2880, 960, true, false, &[4; 20], &mut out);
        assert_eq!(
            MediaPacket::parse(&out).unwrap().frames,
            [&[4u8; 20][..], &[3; 20], &[2; 20]]
        );
    }
}
