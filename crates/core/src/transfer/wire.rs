//! The transfer stream: one bidirectional QUIC stream per transfer, opened by the sender.
//!
//! ```text
//! message = length:u32 (big-endian, 1..=MAX_MESSAGE) | postcard(Message)
//!
//! sender → receiver   Offer
//! receiver → sender   Accept { resume } | Decline
//! sender → receiver   for each file not already complete:
//!                       File { index, start_chunk, chunks }  then the file's bytes from
//!                       start_chunk × CHUNK to its end, raw (no framing: the length is known)
//! receiver → sender   Received (every file verified and in place)
//! ```
//! A cancel from either side is a QUIC stream reset / stop-sending with [`CANCEL_CODE`]; a
//! receiver that finds bad data stops the stream with [`BAD_DATA_CODE`], one that cannot save
//! with [`SAVE_FAILED_CODE`].

use serde::{Deserialize, Serialize};

use super::hash::Hash;

/// Version of this stream's protocol, carried in the offer.
pub const TRANSFER_VERSION: u8 = 1;
/// Largest message accepted: the chunk list of a 128 GiB file, or an offer of many files.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Most files in one offer.
pub const MAX_FILES: usize = 100_000;
/// QUIC application error code on the transfer stream: cancelled by the person.
pub const CANCEL_CODE: u32 = 1;
/// QUIC application error code on the transfer stream: the data did not verify.
pub const BAD_DATA_CODE: u32 = 2;
/// QUIC application error code on the transfer stream: the receiver could not save the files
/// (its disk is full, its folder is not writable …); nothing was wrong with the data. A
/// receiver of an older version reads it as "stopped".
pub const SAVE_FAILED_CODE: u32 = 3;

/// One file offered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedFile {
    /// Relative path, `/`-separated, as the sender names it (untrusted).
    pub path: String,
    /// Length in bytes.
    pub size: u64,
    /// Root hash of the content (see [`super::hash::root`]).
    pub root: Hash,
}

/// Where a resumed file continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Index of the file in the offer.
    pub index: u32,
    /// Chunks already verified on the receiver's disk.
    pub chunks: u64,
}

/// Messages of the transfer stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// What the sender offers.
    Offer {
        /// [`TRANSFER_VERSION`].
        version: u8,
        /// The files, in the order their data will come.
        files: Vec<OfferedFile>,
    },
    /// The receiver takes the files, continuing where it has verified data already.
    Accept {
        /// Files with a verified prefix (files not listed start at zero).
        resume: Vec<Resume>,
    },
    /// The receiver does not want them.
    Decline,
    /// A file's data follows.
    File {
        /// Index in the offer.
        index: u32,
        /// First chunk sent (the receiver's resume point).
        start_chunk: u64,
        /// All of the file's chunk hashes.
        chunks: Vec<Hash>,
    },
    /// Everything verified and saved.
    Received,
}

/// A message that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferWireError {
    /// Declared longer than [`MAX_MESSAGE`] (or zero).
    #[error("transfer message of {0} bytes is over the limit")]
    TooLong(usize),
    /// The body does not decode.
    #[error("malformed transfer message")]
    Malformed,
}

impl Message {
    /// Encodes with its length prefix.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(self).expect("encoding to memory cannot fail");
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Reads one message from the front of `buf`: `Ok(None)` if more bytes are needed,
    /// else the message and the bytes it took. The length is checked before anything is
    /// buffered, so a hostile peer cannot make us hold more than [`MAX_MESSAGE`].
    pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, TransferWireError> {
        let Some(head) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len == 0 || len > MAX_MESSAGE {
            return Err(TransferWireError::TooLong(len));
        }
        let Some(body) = buf.get(4..4 + len) else {
            return Ok(None);
        };
        let msg = postcard::from_bytes(body).map_err(|_| TransferWireError::Malformed)?;
        Ok(Some((msg, 4 + len)))
    }

    /// How many bytes the message at the front of `buf` needs in all, once its length is
    /// known (for reading exactly that much from a stream).
    pub fn needed(buf: &[u8]) -> Option<usize> {
        let head = buf.get(..4)?;
        Some(4 + u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_arrive_in_pieces() {
        let msgs = [
            Message::Offer {
                version: TRANSFER_VERSION,
                files: vec![OfferedFile {
                    path: "a/b.txt".into(),
                    size: 5,
                    root: [7; 32],
                }],
            },
            Message::Accept {
                resume: vec![Resume {
                    index: 0,
                    chunks: 3,
                }],
            },
            Message::Decline,
            Message::File {
                index: 0,
                start_chunk: 1,
                chunks: vec![[1; 32], [2; 32]],
            },
            Message::Received,
        ];
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend_from_slice(&m.encode());
        }
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for b in stream {
            buf.push(b);
            if let Some((m, used)) = Message::decode(&buf).unwrap() {
                buf.drain(..used);
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn oversized_and_malformed_messages_are_refused() {
        let mut huge = ((MAX_MESSAGE + 1) as u32).to_be_bytes().to_vec();
        huge.push(0);
        assert_eq!(
            Message::decode(&huge),
            Err(TransferWireError::TooLong(MAX_MESSAGE + 1))
        );
        assert_eq!(
            Message::decode(&[0, 0, 0, 0]),
            Err(TransferWireError::TooLong(0))
        );
        assert_eq!(
            Message::decode(&[0, 0, 0, 2, 0xFF, 0xFF]),
            Err(TransferWireError::Malformed)
        );
    }
}
