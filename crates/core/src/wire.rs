//! The control protocol: typed messages on one bidirectional QUIC stream.
//!
//! # Framing
//! ```text
//! frame = length:u16 (big-endian, 1..=MAX_FRAME) | type:u8 | body: length-1 bytes
//! ```
//! Bodies are [postcard](https://postcard.jamesmunns.com/wire-format) encodings of the structs
//! below. A frame longer than [`MAX_FRAME`] is a protocol violation: the connection is closed
//! before any of it is buffered.
//!
//! # Evolution (the rules every version follows)
//! * Types `0x00..=0x7F` are *critical*: a receiver that does not know one must end the
//!   session with [`HangupReason::ProtocolError`]. Types `0x80..=0xFF` are *optional*: an
//!   unknown one is skipped silently. New features that old peers may ignore use optional types.
//! * A body may grow new fields at its end; receivers ignore bytes after the fields they know.
//! * Both sides send `Hello` first. The session runs at `min(both max_version)` if that is at
//!   least `max(both min_version)`; otherwise it ends with [`HangupReason::IncompatibleVersion`].
//! * Unknown capability bits and unknown hang-up reasons are ignored / shown as "other".

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Highest protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 2;
/// Lowest protocol version this build accepts. Version 2 made the verification code a
/// commit-and-reveal (`SasCommit`, `SasNonce`, `SasReveal`): a version 1 peer's code could be
/// ground by a man in the middle, so version 1 is no longer spoken.
pub const MIN_PROTOCOL_VERSION: u16 = 2;
/// Largest frame (type byte + body) accepted or sent.
pub const MAX_FRAME: usize = 8 * 1024;
/// Largest chat line, in bytes of UTF-8.
pub const MAX_CHAT_BYTES: usize = 4000;

/// Capability bits carried in `Hello` and `Ring`.
pub mod caps {
    /// Text chat during a call.
    pub const CHAT: u64 = 1 << 0;
    /// A call survives the loss of its connection: the caller dials again and resumes it on
    /// a new connection ([`super::Message::Resume`]).
    pub const RESUME: u64 = 1 << 1;
}

/// Message type codes.
mod kind {
    pub(super) const HELLO: u8 = 0x01;
    pub(super) const RING: u8 = 0x02;
    pub(super) const RINGING: u8 = 0x03;
    pub(super) const ACCEPT: u8 = 0x04;
    pub(super) const DECLINE: u8 = 0x05;
    pub(super) const BUSY: u8 = 0x06;
    pub(super) const HANGUP: u8 = 0x07;
    pub(super) const CHAT: u8 = 0x08;
    pub(super) const PING: u8 = 0x09;
    pub(super) const PONG: u8 = 0x0A;
    pub(super) const SAS_COMMIT: u8 = 0x0B;
    pub(super) const SAS_NONCE: u8 = 0x0C;
    pub(super) const SAS_REVEAL: u8 = 0x0D;
    pub(super) const RESUME: u8 = 0x0E;
    pub(super) const RESUMED: u8 = 0x0F;
    pub(super) const FIRST_OPTIONAL: u8 = 0x80;
    pub(super) const OBSERVED: u8 = 0x81;
    pub(super) const PAIR_CHECKS: u8 = 0x82;
    pub(super) const PAIR_STORED: u8 = 0x83;
    pub(super) const INBOX_CHAIN: u8 = 0x84;
}

/// Why a call ended, as carried on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HangupReason {
    /// The person hung up.
    Normal,
    /// Nobody answered in time.
    NoAnswer,
    /// The peer broke the protocol.
    ProtocolError,
    /// No common protocol version.
    IncompatibleVersion,
    /// The application is shutting down.
    Shutdown,
    /// A code this version does not know.
    Other(u8),
}

impl HangupReason {
    fn code(self) -> u8 {
        match self {
            Self::Normal => 0,
            Self::NoAnswer => 1,
            Self::ProtocolError => 2,
            Self::IncompatibleVersion => 3,
            Self::Shutdown => 4,
            Self::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> Self {
        match c {
            0 => Self::Normal,
            1 => Self::NoAnswer,
            2 => Self::ProtocolError,
            3 => Self::IncompatibleVersion,
            4 => Self::Shutdown,
            c => Self::Other(c),
        }
    }
}

/// A control message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// First message from both sides.
    Hello {
        /// Highest version the sender speaks.
        max_version: u16,
        /// Lowest version the sender accepts.
        min_version: u16,
        /// Capability bits ([`caps`]).
        capabilities: u64,
    },
    /// The caller asks to start a call with these capabilities.
    Ring {
        /// Requested capability bits.
        media: u64,
    },
    /// The callee is alerting its user.
    Ringing,
    /// The callee answered.
    Accept,
    /// The callee (or its policy) declined. Carries nothing else, by design.
    Decline,
    /// The callee is in another call.
    Busy,
    /// The call is over.
    Hangup {
        /// Why.
        reason: HangupReason,
    },
    /// A chat line.
    Chat {
        /// Sender's sequence number, for ordering and de-duplication.
        id: u64,
        /// UTF-8 text, at most [`MAX_CHAT_BYTES`].
        text: String,
    },
    /// Liveness probe; also keeps NAT mappings open.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Answer to a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Caller, in its first flight: commits to its verification nonce (see `crate::sas`).
    SasCommit {
        /// `BLAKE3-derive("… sas commit v2", exporter | nonce)`.
        commit: [u8; 32],
    },
    /// Callee, once it holds the commitment: its verification nonce.
    SasNonce {
        /// 32 random bytes.
        nonce: [u8; 32],
    },
    /// Caller, once it holds the callee's nonce: the nonce it committed to.
    SasReveal {
        /// The caller's 32 random bytes.
        nonce: [u8; 32],
    },
    /// Caller, as the first message on a new connection: carry on the call whose connection
    /// was lost. Sent only to a peer that offered [`caps::RESUME`].
    Resume {
        /// The lost connection's TLS exporter under `crate::session::RESUME_EXPORTER_LABEL`:
        /// names the call, and only its two ends know it.
        token: [u8; 32],
    },
    /// Callee: the call goes on over this connection.
    Resumed,
    /// The address the sender sees our packets come from (optional type: a reflexive
    /// candidate we could not learn otherwise without asking a third party).
    Observed {
        /// As the sender saw it.
        addr: SocketAddr,
    },
    /// Once the call is up between contacts (optional type): the checks of the rendezvous
    /// roots the sender holds for this pair, newest first (`crate::inbox::RootState`).
    PairChecks {
        /// At most [`crate::inbox::MAX_CHECKS`].
        checks: Vec<[u8; 8]>,
    },
    /// The sender stored the pair's new root, whose check this is (optional type).
    PairStored {
        /// `pair_check` of the new root.
        check: [u8; 8],
    },
    /// Once the call is up between contacts (optional type): the sender's inbox chain at the
    /// current epoch (`crate::inbox::InboxChain`), so the peer can find its inbox later.
    InboxChain {
        /// The chain's value for `epoch`.
        value: [u8; 32],
        /// Its epoch.
        epoch: u64,
    },
}

#[derive(Serialize, Deserialize)]
struct HelloBody {
    max_version: u16,
    min_version: u16,
    capabilities: u64,
}
#[derive(Serialize, Deserialize)]
struct U64Body(u64);
#[derive(Serialize, Deserialize)]
struct U8Body(u8);
#[derive(Serialize, Deserialize)]
struct Bytes32([u8; 32]);
#[derive(Serialize, Deserialize)]
struct ObservedBody {
    /// IPv6, or IPv4-mapped.
    ip: [u8; 16],
    port: u16,
}
#[derive(Serialize, Deserialize)]
struct PairChecksBody(Vec<[u8; 8]>);
#[derive(Serialize, Deserialize)]
struct Bytes8([u8; 8]);
#[derive(Serialize, Deserialize)]
struct InboxChainBody {
    value: [u8; 32],
    epoch: u64,
}
#[derive(Serialize, Deserialize)]
struct ChatBody {
    id: u64,
    text: String,
}

/// Why bytes from the peer are not a valid control stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// A frame announced more than [`MAX_FRAME`] bytes.
    #[error("control frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// A zero-length frame (no type byte).
    #[error("empty control frame")]
    Empty,
    /// An unknown critical message type.
    #[error("unknown critical message type {0:#04x}")]
    UnknownCritical(u8),
    /// A known type whose body does not decode.
    #[error("malformed message of type {0:#04x}")]
    Malformed(u8),
    /// A chat line over the limit.
    #[error("chat line too long")]
    ChatTooLong,
}

/// What a frame turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A message this version understands.
    Message(Message),
    /// An optional message type this version does not know, skipped per the rules.
    Skipped(u8),
}

impl Message {
    /// Appends this message as one frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        let ser = |out: &mut Vec<u8>, kind: u8, body: Result<Vec<u8>, postcard::Error>| {
            out.push(kind);
            out.extend_from_slice(&body.expect("postcard encoding into a Vec cannot fail"));
        };
        match self {
            Message::Hello {
                max_version,
                min_version,
                capabilities,
            } => ser(
                out,
                kind::HELLO,
                postcard::to_allocvec(&HelloBody {
                    max_version: *max_version,
                    min_version: *min_version,
                    capabilities: *capabilities,
                }),
            ),
            Message::Ring { media } => {
                ser(out, kind::RING, postcard::to_allocvec(&U64Body(*media)))
            }
            Message::Ringing => out.push(kind::RINGING),
            Message::Accept => out.push(kind::ACCEPT),
            Message::Decline => out.push(kind::DECLINE),
            Message::Busy => out.push(kind::BUSY),
            Message::Hangup { reason } => ser(
                out,
                kind::HANGUP,
                postcard::to_allocvec(&U8Body(reason.code())),
            ),
            Message::Chat { id, text } => {
                if text.len() > MAX_CHAT_BYTES {
                    out.truncate(start);
                    return Err(WireError::ChatTooLong);
                }
                ser(
                    out,
                    kind::CHAT,
                    postcard::to_allocvec(&ChatBody {
                        id: *id,
                        text: text.clone(),
                    }),
                )
            }
            Message::Ping { nonce } => {
                ser(out, kind::PING, postcard::to_allocvec(&U64Body(*nonce)))
            }
            Message::Pong { nonce } => {
                ser(out, kind::PONG, postcard::to_allocvec(&U64Body(*nonce)))
            }
            Message::SasCommit { commit: b } => {
                ser(out, kind::SAS_COMMIT, postcard::to_allocvec(&Bytes32(*b)))
            }
            Message::SasNonce { nonce: b } => {
                ser(out, kind::SAS_NONCE, postcard::to_allocvec(&Bytes32(*b)))
            }
            Message::SasReveal { nonce: b } => {
                ser(out, kind::SAS_REVEAL, postcard::to_allocvec(&Bytes32(*b)))
            }
            Message::Resume { token } => {
                ser(out, kind::RESUME, postcard::to_allocvec(&Bytes32(*token)))
            }
            Message::Resumed => out.push(kind::RESUMED),
            Message::Observed { addr } => {
                let ip = match addr.ip() {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                ser(
                    out,
                    kind::OBSERVED,
                    postcard::to_allocvec(&ObservedBody {
                        ip: ip.octets(),
                        port: addr.port(),
                    }),
                )
            }
            Message::PairChecks { checks } => {
                let n = checks.len().min(crate::inbox::MAX_CHECKS);
                ser(
                    out,
                    kind::PAIR_CHECKS,
                    postcard::to_allocvec(&PairChecksBody(checks[..n].to_vec())),
                )
            }
            Message::PairStored { check } => ser(
                out,
                kind::PAIR_STORED,
                postcard::to_allocvec(&Bytes8(*check)),
            ),
            Message::InboxChain { value, epoch } => ser(
                out,
                kind::INBOX_CHAIN,
                postcard::to_allocvec(&InboxChainBody {
                    value: *value,
                    epoch: *epoch,
                }),
            ),
        }
        let len = out.len() - start - 2;
        debug_assert!(len <= MAX_FRAME);
        out[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
        Ok(())
    }

    /// Decodes one frame's content (type byte and body, without the length prefix).
    pub fn decode(frame: &[u8]) -> Result<Decoded, WireError> {
        let (&k, body) = frame.split_first().ok_or(WireError::Empty)?;
        if frame.len() > MAX_FRAME {
            return Err(WireError::TooLarge(frame.len()));
        }
        fn take<'a, T: Deserialize<'a>>(k: u8, body: &'a [u8]) -> Result<T, WireError> {
            // Trailing bytes are fields from a newer version: ignored by rule.
            postcard::take_from_bytes(body)
                .map(|(v, _rest)| v)
                .map_err(|_| WireError::Malformed(k))
        }
        let msg = match k {
            kind::HELLO => {
                let b: HelloBody = take(k, body)?;
                Message::Hello {
                    max_version: b.max_version,
                    min_version: b.min_version,
                    capabilities: b.capabilities,
                }
            }
            kind::RING => Message::Ring {
                media: take::<U64Body>(k, body)?.0,
            },
            kind::RINGING => Message::Ringing,
            kind::ACCEPT => Message::Accept,
            kind::DECLINE => Message::Decline,
            kind::BUSY => Message::Busy,
            kind::HANGUP => Message::Hangup {
                reason: HangupReason::from_code(take::<U8Body>(k, body)?.0),
            },
            kind::CHAT => {
                let b: ChatBody = take(k, body)?;
                if b.text.len() > MAX_CHAT_BYTES {
                    return Err(WireError::ChatTooLong);
                }
                Message::Chat {
                    id: b.id,
                    text: b.text,
                }
            }
            kind::PING => Message::Ping {
                nonce: take::<U64Body>(k, body)?.0,
            },
            kind::PONG => Message::Pong {
                nonce: take::<U64Body>(k, body)?.0,
            },
            kind::SAS_COMMIT => Message::SasCommit {
                commit: take::<Bytes32>(k, body)?.0,
            },
            kind::SAS_NONCE => Message::SasNonce {
                nonce: take::<Bytes32>(k, body)?.0,
            },
            kind::SAS_REVEAL => Message::SasReveal {
                nonce: take::<Bytes32>(k, body)?.0,
            },
            kind::RESUME => Message::Resume {
                token: take::<Bytes32>(k, body)?.0,
            },
            kind::RESUMED => Message::Resumed,
            kind::OBSERVED => {
                // Optional: one we cannot use is skipped, never a reason to end the call.
                let Ok(b) = take::<ObservedBody>(k, body) else {
                    return Ok(Decoded::Skipped(k));
                };
                let ip = Ipv6Addr::from(b.ip).to_canonical();
                if b.port == 0 || ip.is_unspecified() || ip.is_multicast() {
                    return Ok(Decoded::Skipped(k));
                }
                Message::Observed {
                    addr: SocketAddr::new(ip, b.port),
                }
            }
            kind::PAIR_CHECKS => {
                // A count is read before any entry, so a claimed million costs nothing; more
                // than allowed is skipped like any unusable optional message.
                let Ok(b) = take::<PairChecksBody>(k, body) else {
                    return Ok(Decoded::Skipped(k));
                };
                if b.0.is_empty() || b.0.len() > crate::inbox::MAX_CHECKS {
                    return Ok(Decoded::Skipped(k));
                }
                Message::PairChecks { checks: b.0 }
            }
            kind::PAIR_STORED => {
                let Ok(b) = take::<Bytes8>(k, body) else {
                    return Ok(Decoded::Skipped(k));
                };
                Message::PairStored { check: b.0 }
            }
            kind::INBOX_CHAIN => {
                let Ok(b) = take::<InboxChainBody>(k, body) else {
                    return Ok(Decoded::Skipped(k));
                };
                Message::InboxChain {
                    value: b.value,
                    epoch: b.epoch,
                }
            }
            k if k >= kind::FIRST_OPTIONAL => return Ok(Decoded::Skipped(k)),
            k => return Err(WireError::UnknownCritical(k)),
        };
        Ok(Decoded::Message(msg))
    }
}

/// Splits a byte stream into frames, holding at most one frame of data.
#[derive(Default, Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Takes the bytes of the frame not yet complete (for another reader of the stream).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Most bytes worth reading from the stream at once: what completes the current frame,
    /// so the buffer never holds more than one maximal frame.
    pub fn wanted(&self) -> usize {
        if self.buf.len() < 2 {
            return 2 + MAX_FRAME - self.buf.len();
        }
        let len = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
        (2 + len).saturating_sub(self.buf.len()).max(1)
    }

    /// Feeds stream bytes and returns every complete frame's decoded message, stopping at
    /// the first error.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Decoded>) -> Result<(), WireError> {
        while !data.is_empty() {
            if self.buf.len() < 2 {
                let n = (2 - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.buf.len() < 2 {
                    break;
                }
            }
            let len = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
            if len > MAX_FRAME {
                return Err(WireError::TooLarge(len));
            }
            if len == 0 {
                return Err(WireError::Empty);
            }
            let need = 2 + len - self.buf.len();
            let n = need.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == 2 + len {
                let decoded = Message::decode(&self.buf[2..])?;
                self.buf.clear();
                out.push(decoded);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Message> {
        vec![
            Message::Hello {
                max_version: 1,
                min_version: 1,
                capabilities: caps::CHAT,
            },
            Message::Ring { media: caps::CHAT },
            Message::Ringing,
            Message::Accept,
            Message::Decline,
            Message::Busy,
            Message::Hangup {
                reason: HangupReason::NoAnswer,
            },
            Message::Hangup {
                reason: HangupReason::Other(77),
            },
            Message::Chat {
                id: 3,
                text: "héllo ✓".into(),
            },
            Message::Ping { nonce: u64::MAX },
            Message::Pong { nonce: 0 },
            Message::SasCommit { commit: [1; 32] },
            Message::SasNonce { nonce: [2; 32] },
            Message::SasReveal { nonce: [3; 32] },
            Message::Resume { token: [9; 32] },
            Message::Resumed,
            Message::Observed {
                addr: "203.0.113.7:40000".parse().unwrap(),
            },
            Message::Observed {
                addr: "[2001:db8::7]:1".parse().unwrap(),
            },
            Message::PairChecks {
                checks: vec![[4; 8]],
            },
            Message::PairChecks {
                checks: vec![[5; 8], [6; 8]],
            },
            Message::PairStored { check: [7; 8] },
            Message::InboxChain {
                value: [8; 32],
                epoch: 2_960_000,
            },
        ]
    }

    #[test]
    fn pair_checks_out_of_bounds_are_skipped() {
        // Three checks, or none, are not a message we act on.
        for n in [0usize, 3] {
            let body = postcard::to_allocvec(&PairChecksBody(vec![[1; 8]; n])).unwrap();
            let mut frame = vec![kind::PAIR_CHECKS];
            frame.extend_from_slice(&body);
            assert_eq!(
                Message::decode(&frame),
                Ok(Decoded::Skipped(kind::PAIR_CHECKS))
            );
        }
        // A count of a billion with no entries behind it allocates nothing and is skipped.
        assert_eq!(
            Message::decode(&[kind::PAIR_CHECKS, 0x80, 0x94, 0xeb, 0xdc, 0x03]),
            Ok(Decoded::Skipped(kind::PAIR_CHECKS))
        );
        // Encoding never sends more than allowed.
        let mut f = Vec::new();
        Message::PairChecks {
            checks: vec![[1; 8]; 5],
        }
        .encode(&mut f)
        .unwrap();
        assert_eq!(
            Message::decode(&f[2..]),
            Ok(Decoded::Message(Message::PairChecks {
                checks: vec![[1; 8]; 2]
            }))
        );
    }

    #[test]
    fn an_unusable_observed_address_is_skipped_not_fatal() {
        for bad in ["0.0.0.0:5", "203.0.113.7:0", "[ff02::1]:5"] {
            let mut f = Vec::new();
            Message::Observed {
                addr: bad.parse().unwrap(),
            }
            .encode(&mut f)
            .unwrap();
            assert_eq!(
                Message::decode(&f[2..]),
                Ok(Decoded::Skipped(kind::OBSERVED)),
                "{bad}"
            );
        }
        // A body that does not decode at all is skipped too: the message is optional.
        assert_eq!(
            Message::decode(&[kind::OBSERVED, 0xff]),
            Ok(Decoded::Skipped(kind::OBSERVED))
        );
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let mut stream = Vec::new();
        for m in all() {
            m.encode(&mut stream).unwrap();
        }
        let mut dec = FrameDecoder::default();
        let mut got = Vec::new();
        for b in &stream {
            dec.push(std::slice::from_ref(b), &mut got).unwrap();
        }
        let want: Vec<_> = all().into_iter().map(Decoded::Message).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut dec = FrameDecoder::default();
        let hdr = ((MAX_FRAME + 1) as u16).to_be_bytes();
        assert_eq!(
            dec.push(&hdr, &mut Vec::new()),
            Err(WireError::TooLarge(MAX_FRAME + 1))
        );
    }

    #[test]
    fn unknown_types_follow_the_rules() {
        let mut dec = FrameDecoder::default();
        let mut got = Vec::new();
        dec.push(&[0, 3, 0xC1, 9, 9], &mut got).unwrap();
        assert_eq!(got, vec![Decoded::Skipped(0xC1)]);
        assert_eq!(
            dec.push(&[0, 1, 0x42], &mut got),
            Err(WireError::UnknownCritical(0x42))
        );
    }

    #[test]
    fn newer_fields_are_ignored() {
        let mut frame = Vec::new();
        Message::Ping { nonce: 5 }.encode(&mut frame).unwrap();
        frame.extend_from_slice(&[1, 2, 3]);
        let len = (frame.len() - 2) as u16;
        frame[..2].copy_from_slice(&len.to_be_bytes());
        let mut got = Vec::new();
        FrameDecoder::default().push(&frame, &mut got).unwrap();
        assert_eq!(got, vec![Decoded::Message(Message::Ping { nonce: 5 })]);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        // chat with a length prefix pointing past the end
        assert_eq!(
            Message::decode(&[0x08, 1, 200]),
            Err(WireError::Malformed(0x08))
        );
        // chat with invalid UTF-8
        assert_eq!(
            Message::decode(&[0x08, 1, 1, 0xFF]),
            Err(WireError::Malformed(0x08))
        );
        assert_eq!(Message::decode(&[0x01]), Err(WireError::Malformed(0x01)));
        assert_eq!(Message::decode(&[]), Err(WireError::Empty));
        let long = Message::Chat {
            id: 1,
            text: "x".repeat(MAX_CHAT_BYTES + 1),
        };
        assert_eq!(long.encode(&mut Vec::new()), Err(WireError::ChatTooLong));
    }

    #[test]
    fn largest_chat_fits_a_frame() {
        let mut out = Vec::new();
        Message::Chat {
            id: u64::MAX,
            text: "✓".repeat(MAX_CHAT_BYTES / 3),
        }
        .encode(&mut out)
        .unwrap();
        assert!(out.len() - 2 <= MAX_FRAME);
    }
}
