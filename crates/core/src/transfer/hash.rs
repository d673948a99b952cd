//! Content hashing for transfers: each file is cut into chunks, each chunk hashed with
//! BLAKE3 (bound to its index), and the file's root hash covers its length and the ordered
//! chunk hashes. The offer names each file's root; before a file's data the sender sends its
//! chunk hashes, which must match the root; then every chunk is checked as it arrives, so a
//! flipped byte is caught within one chunk, and a resumed transfer can trust every chunk that
//! checks out.

/// Bytes per chunk: large enough that the hash list is 1/8192 of the data, small enough that
/// a tampered chunk is caught after at most this much.
pub const CHUNK: usize = 256 * 1024;

/// A BLAKE3 hash.
pub type Hash = [u8; 32];

const CHUNK_CONTEXT: &str = "EXTRA SAFE 2026 file chunk v1";
const ROOT_CONTEXT: &str = "EXTRA SAFE 2026 file root v1";

/// Chunks in a file of `len` bytes (an empty file has none).
pub fn chunk_count(len: u64) -> u64 {
    len.div_ceil(CHUNK as u64)
}

/// Length of chunk `index` of a file of `len` bytes.
pub fn chunk_len(len: u64, index: u64) -> usize {
    let start = index * CHUNK as u64;
    (len.saturating_sub(start)).min(CHUNK as u64) as usize
}

/// The hash of chunk `index`.
pub fn chunk_hash(index: u64, data: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(CHUNK_CONTEXT);
    h.update(&index.to_le_bytes());
    h.update(data);
    *h.finalize().as_bytes()
}

/// A file's root hash: its length and its chunk hashes, in order.
pub fn root(len: u64, chunks: &[Hash]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(ROOT_CONTEXT);
    h.update(&len.to_le_bytes());
    for c in chunks {
        h.update(c);
    }
    *h.finalize().as_bytes()
}

/// Hashes a file as its bytes stream past.
#[derive(Default)]
pub struct FileHasher {
    buf: Vec<u8>,
    len: u64,
    chunks: Vec<Hash>,
}

impl FileHasher {
    /// Starts an empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// More of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            if self.buf.is_empty() && data.len() >= CHUNK {
                let index = self.chunks.len() as u64;
                self.chunks.push(chunk_hash(index, &data[..CHUNK]));
                data = &data[CHUNK..];
                continue;
            }
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK {
                let index = self.chunks.len() as u64;
                self.chunks.push(chunk_hash(index, &self.buf));
                self.buf.clear();
            }
        }
    }

    /// The file's length, root and chunk hashes.
    pub fn finish(mut self) -> (u64, Hash, Vec<Hash>) {
        if !self.buf.is_empty() {
            let index = self.chunks.len() as u64;
            self.chunks.push(chunk_hash(index, &self.buf));
        }
        (self.len, root(self.len, &self.chunks), self.chunks)
    }
}

/// Why received data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The chunk hashes sent do not add up to the root in the offer.
    #[error("the file's chunk list does not match what was offered")]
    WrongChunkList,
    /// A chunk's content does not match its hash: tampered with or corrupted.
    #[error("chunk {chunk} does not match its hash (the data was altered on the way)")]
    BadChunk {
        /// Its index.
        chunk: u64,
    },
    /// More bytes than the file's offered length.
    #[error("more data than the offered length")]
    TooLong,
}

/// Checks one file's bytes as they arrive. Hands out data only in whole verified chunks.
pub struct Verifier {
    len: u64,
    chunks: Vec<Hash>,
    next: u64,
    buf: Vec<u8>,
}

impl Verifier {
    /// A file of `len` bytes whose root is `root` (from the offer), with the chunk hashes the
    /// sender sent; verification starts at chunk `from` (resuming after chunks already
    /// verified on disk).
    pub fn new(
        len: u64,
        root_hash: &Hash,
        chunks: Vec<Hash>,
        from: u64,
    ) -> Result<Self, VerifyError> {
        if chunks.len() as u64 != chunk_count(len) || root(len, &chunks) != *root_hash {
            return Err(VerifyError::WrongChunkList);
        }
        Ok(Self {
            len,
            next: from.min(chunks.len() as u64),
            chunks,
            buf: Vec::new(),
        })
    }

    /// The chunk hashes (to check chunks already on disk when resuming).
    pub fn chunk_hashes(&self) -> &[Hash] {
        &self.chunks
    }

    /// Bytes verified so far (including the resumed prefix).
    pub fn verified(&self) -> u64 {
        (self.next * CHUNK as u64).min(self.len)
    }

    /// Whether every byte has been verified.
    pub fn is_complete(&self) -> bool {
        self.next == self.chunks.len() as u64
    }

    /// Feeds arriving bytes; `write` gets each chunk once it is verified, in order.
    pub fn push(
        &mut self,
        mut data: &[u8],
        mut write: impl FnMut(&[u8]),
    ) -> Result<(), VerifyError> {
        while !data.is_empty() {
            if self.is_complete() {
                return Err(VerifyError::TooLong);
            }
            let want = chunk_len(self.len, self.next);
            if self.buf.is_empty() && data.len() >= want {
                // A whole chunk in the input: checked and handed out in place, no copy.
                let (chunk, rest) = data.split_at(want);
                if chunk_hash(self.next, chunk) != self.chunks[self.next as usize] {
                    return Err(VerifyError::BadChunk { chunk: self.next });
                }
                write(chunk);
                self.next += 1;
                data = rest;
                continue;
            }
            let take = (want - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == want {
                if chunk_hash(self.next, &self.buf) != self.chunks[self.next as usize] {
                    return Err(VerifyError::BadChunk { chunk: self.next });
                }
                write(&self.buf);
                self.buf.clear();
                self.next += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn streaming_hash_matches_however_the_bytes_are_cut() {
        let data = content(3 * CHUNK + 1234);
        let mut whole = FileHasher::new();
        whole.update(&data);
        let whole = whole.finish();
        let mut pieces = FileHasher::new();
        for piece in data.chunks(10_007) {
            pieces.update(piece);
        }
        assert_eq!(pieces.finish(), whole);
        assert_eq!(whole.2.len(), 4);
        assert_eq!(whole.1, root(data.len() as u64, &whole.2));
        // An empty file has no chunks but still a root, distinct from any other length's.
        let (len, r, chunks) = FileHasher::new().finish();
        assert_eq!((len, chunks.len()), (0, 0));
        assert_ne!(r, root(1, &[]));
    }

    #[test]
    fn verified_bytes_come_out_whole_and_in_order() {
        let data = content(2 * CHUNK + 99);
        let mut h = FileHasher::new();
        h.update(&data);
        let (len, r, chunks) = h.finish();
        let mut v = Verifier::new(len, &r, chunks, 0).unwrap();
        let mut out = Vec::new();
        for piece in data.chunks(65_536) {
            v.push(piece, |c| out.extend_from_slice(c)).unwrap();
        }
        assert!(v.is_complete());
        assert_eq!(out, data);
        assert_eq!(v.push(&[0], |_| {}), Err(VerifyError::TooLong));
    }

    #[test]
    fn a_flipped_byte_is_caught_in_its_chunk_and_nothing_of_it_is_written() {
        let data = content(3 * CHUNK);
        let mut h = FileHasher::new();
        h.update(&data);
        let (len, r, chunks) = h.finish();
        let mut bad = data.clone();
        bad[CHUNK + 17] ^= 1;
        let mut v = Verifier::new(len, &r, chunks, 0).unwrap();
        let mut written = 0;
        let result = v.push(&bad, |c| written += c.len());
        assert_eq!(result, Err(VerifyError::BadChunk { chunk: 1 }));
        assert_eq!(written, CHUNK, "only the good first chunk was handed out");
    }

    #[test]
    fn a_forged_chunk_list_or_length_is_refused() {
        let data = content(CHUNK + 5);
        let mut h = FileHasher::new();
        h.update(&data);
        let (len, r, chunks) = h.finish();
        let mut forged = chunks.clone();
        forged[0][0] ^= 1;
        assert!(Verifier::new(len, &r, forged, 0).is_err());
        assert!(Verifier::new(len + 1, &r, chunks.clone(), 0).is_err());
        assert!(Verifier::new(len, &r, chunks[..1].to_vec(), 0).is_err());
        // Swapping two chunks' data is caught: a chunk's hash binds its index.
        let two = content(2 * CHUNK);
        let (l2, r2, c2) = {
            let mut h = FileHasher::new();
            h.update(&two);
            h.finish()
        };
        let mut swapped = two[CHUNK..].to_vec();
        swapped.extend_from_slice(&two[..CHUNK]);
        let mut v = Verifier::new(l2, &r2, c2, 0).unwrap();
        assert_eq!(
            v.push(&swapped, |_| {}),
            Err(VerifyError::BadChunk { chunk: 0 })
        );
    }

    #[test]
    fn resuming_skips_verified_chunks() {
        let data = content(3 * CHUNK + 10);
        let mut h = FileHasher::new();
        h.update(&data);
        let (len, r, chunks) = h.finish();
        let mut v = Verifier::new(len, &r, chunks, 2).unwrap();
        assert_eq!(v.verified(), 2 * CHUNK as u64);
        let mut out = Vec::new();
        v.push(&data[2 * CHUNK..], |c| out.extend_from_slice(c))
            .unwrap();
        assert!(v.is_complete());
        assert_eq!(out, &data[2 * CHUNK..]);
    }
}
