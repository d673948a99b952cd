//! The sending end of a transfer stream (sans-IO): makes the offer, reads the answer, and
//! tells the shell which bytes of which file to send next.

use super::hash::{chunk_count, Hash, CHUNK};
use super::wire::{Message, OfferedFile, TransferWireError, TRANSFER_VERSION};

/// A file ready to offer: its name, size and hashes (computed by the shell from the disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedFile {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Length in bytes.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// Chunk hashes.
    pub chunks: Vec<Hash>,
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendEvent {
    /// Accepted: send each file from its start offset (bytes; whole chunks).
    Accepted {
        /// Byte offset per file where sending starts.
        starts: Vec<u64>,
    },
    /// Declined: nothing is sent.
    Declined,
    /// Every file arrived, verified and saved.
    Received,
}

/// Why sending failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A message could not be read.
    #[error(transparent)]
    Wire(#[from] TransferWireError),
    /// The receiver did something out of order.
    #[error("the receiver broke the transfer protocol: {0}")]
    Protocol(&'static str),
}

#[derive(PartialEq, Eq)]
enum State {
    AwaitAnswer,
    Sending,
    Over,
}

/// The sending state machine.
pub struct Sender {
    files: Vec<PreparedFile>,
    starts: Vec<u64>,
    state: State,
    buf: Vec<u8>,
}

impl Sender {
    /// Offers `files`; returns the machine and the offer's bytes.
    pub fn offer(files: Vec<PreparedFile>) -> (Self, Vec<u8>) {
        let msg = Message::Offer {
            version: TRANSFER_VERSION,
            files: files
                .iter()
                .map(|f| OfferedFile {
                    path: f.path.clone(),
                    size: f.size,
                    root: f.root,
                })
                .collect(),
        };
        let me = Self {
            starts: vec![0; files.len()],
            files,
            state: State::AwaitAnswer,
            buf: Vec::new(),
        };
        (me, msg.encode())
    }

    /// Bytes from the receiver.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<SendEvent>, SendError> {
        // Answers are tiny; anything that does not fit a message is refused by `decode`.
        self.buf.extend_from_slice(data);
        let Some((msg, used)) = Message::decode(&self.buf)? else {
            return Ok(None);
        };
        self.buf.drain(..used);
        if !self.buf.is_empty() {
            return Err(SendError::Protocol("more than one answer"));
        }
        match (&self.state, msg) {
            (State::AwaitAnswer, Message::Accept { resume }) => {
                for r in resume {
                    let Some(f) = self.files.get(r.index as usize) else {
                        return Err(SendError::Protocol("resume of a file not offered"));
                    };
                    if r.chunks > chunk_count(f.size) {
                        return Err(SendError::Protocol("resume past the end of a file"));
                    }
                    self.starts[r.index as usize] = (r.chunks * CHUNK as u64).min(f.size);
                }
                self.state = State::Sending;
                Ok(Some(SendEvent::Accepted {
                    starts: self.starts.clone(),
                }))
            }
            (State::AwaitAnswer, Message::Decline) => {
                self.state = State::Over;
                Ok(Some(SendEvent::Declined))
            }
            (State::Sending, Message::Received) => {
                self.state = State::Over;
                Ok(Some(SendEvent::Received))
            }
            _ => Err(SendError::Protocol("unexpected message")),
        }
    }

    /// The header that goes before file `index`'s bytes (from its start offset to its end).
    pub fn header(&self, index: usize) -> Vec<u8> {
        let f = &self.files[index];
        Message::File {
            index: index as u32,
            start_chunk: self.starts[index] / CHUNK as u64,
            chunks: f.chunks.clone(),
        }
        .encode()
    }

    /// The files.
    pub fn files(&self) -> &[PreparedFile] {
        &self.files
    }
}

#[cfg(test)]
mod tests {
    use super::super::hash::FileHasher;
    use super::super::offer::ValidFile;
    use super::super::receive::{
        FileSink, ReceiveError, ReceiveEvent, Receiver, SinkError, StorageProblem,
    };
    use super::*;

    fn prepare(path: &str, data: &[u8]) -> PreparedFile {
        let mut h = FileHasher::new();
        h.update(data);
        let (size, root, chunks) = h.finish();
        PreparedFile {
            path: path.into(),
            size,
            root,
            chunks,
        }
    }

    /// Keeps what it is given in memory, like a download folder would on disk.
    #[derive(Default)]
    struct Memory {
        files: Vec<Vec<u8>>,
        ended: Vec<usize>,
        resumed: Vec<u64>,
        full_after: Option<usize>,
    }

    impl FileSink for Memory {
        fn begin(
            &mut self,
            index: usize,
            _: &ValidFile,
            resumed: u64,
            _: &[Hash],
        ) -> Result<(), SinkError> {
            if self.files.len() <= index {
                self.files.resize(index + 1, Vec::new());
            }
            self.files[index].truncate(resumed as usize);
            self.resumed.push(resumed);
            Ok(())
        }
        fn write(&mut self, index: usize, data: &[u8]) -> Result<(), SinkError> {
            let total: usize = self.files.iter().map(|f| f.len()).sum();
            if self
                .full_after
                .is_some_and(|limit| total + data.len() > limit)
            {
                return Err(SinkError::new(
                    StorageProblem::Full,
                    "a.bin: no space left on device",
                ));
            }
            self.files[index].extend_from_slice(data);
            Ok(())
        }
        fn end(&mut self, index: usize) -> Result<(), SinkError> {
            self.ended.push(index);
            Ok(())
        }
    }

    fn content(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Runs a whole transfer in memory, the sender's bytes cut into `piece`-sized reads,
    /// `mangle` applied to the data stream; returns the receiver's result.
    fn run(
        files: &[(&str, Vec<u8>)],
        sink: &mut Memory,
        have: &[u64],
        piece: usize,
        mangle: impl Fn(&mut Vec<u8>),
    ) -> Result<(), ReceiveError> {
        let prepared: Vec<PreparedFile> = files.iter().map(|(p, d)| prepare(p, d)).collect();
        let (mut tx, offer) = Sender::offer(prepared);
        let mut rx = Receiver::new();
        let ev = rx.feed(&offer, sink)?;
        assert!(matches!(ev, Some(ReceiveEvent::Offer(ref o)) if o.files.len() == files.len()));
        let answer = rx.accept(have);
        let Some(SendEvent::Accepted { starts }) = tx.feed(&answer).unwrap() else {
            panic!("not accepted")
        };
        let mut stream = Vec::new();
        for (i, (_, data)) in files.iter().enumerate() {
            stream.extend_from_slice(&tx.header(i));
            stream.extend_from_slice(&data[starts[i] as usize..]);
        }
        mangle(&mut stream);
        let mut complete = false;
        for p in stream.chunks(piece) {
            if let Some(ReceiveEvent::Complete) = rx.feed(p, sink)? {
                complete = true;
            }
        }
        rx.finish()?;
        assert!(complete);
        assert_eq!(tx.feed(&rx.received()).unwrap(), Some(SendEvent::Received));
        Ok(())
    }

    #[test]
    fn many_files_cross_in_one_stream_without_a_round_trip_each() {
        let files: Vec<(String, Vec<u8>)> = (0..2000)
            .map(|i| (format!("dir/f{i}.bin"), content(1024, i as u8)))
            .collect();
        let refs: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
        let mut sink = Memory::default();
        run(&refs, &mut sink, &[], 65_536, |_| {}).unwrap();
        assert_eq!(sink.ended.len(), 2000);
        for (i, (_, d)) in files.iter().enumerate() {
            assert_eq!(&sink.files[i], d);
        }
    }

    #[test]
    fn big_and_empty_files_and_any_read_size() {
        let files = [
            ("big.bin", content(3 * CHUNK + 777, 1)),
            ("empty", Vec::new()),
            ("small", content(10, 2)),
        ];
        for piece in [1, 4093, 1 << 20] {
            let mut sink = Memory::default();
            run(&files, &mut sink, &[], piece, |_| {}).unwrap();
            assert_eq!(sink.files[0], files[0].1);
            assert!(sink.files[1].is_empty());
            assert_eq!(sink.files[2], files[2].1);
        }
    }

    #[test]
    fn a_flipped_byte_stops_the_transfer_at_its_chunk() {
        let files = [("a.bin", content(2 * CHUNK, 3))];
        let mut sink = Memory::default();
        let err = run(&files, &mut sink, &[], 10_000, |s| {
            let at = s.len() - 5;
            s[at] ^= 0x40;
        })
        .unwrap_err();
        assert!(
            matches!(err, ReceiveError::Verify { ref file, .. } if file == "a.bin"),
            "{err}"
        );
        assert_eq!(
            sink.files[0].len(),
            CHUNK,
            "only the verified chunk was written"
        );
        assert!(sink.ended.is_empty());
    }

    #[test]
    fn short_and_long_data_are_caught() {
        let files = [("a.bin", content(CHUNK + 100, 4))];
        let mut sink = Memory::default();
        let err = run(&files, &mut sink, &[], 10_000, |s| s.truncate(s.len() - 1)).unwrap_err();
        assert!(matches!(err, ReceiveError::Truncated(_)), "{err}");
        let mut sink = Memory::default();
        let err = run(&files, &mut sink, &[], 10_000, |s| s.push(0)).unwrap_err();
        assert!(matches!(err, ReceiveError::Protocol(_)), "{err}");
    }

    #[test]
    fn a_transfer_resumes_from_its_verified_chunks() {
        let data = content(4 * CHUNK + 5, 5);
        let files = [("a.bin", data.clone()), ("b.bin", content(100, 6))];
        let mut sink = Memory {
            files: vec![data[..2 * CHUNK + 1000].to_vec()],
            ..Memory::default()
        };
        // 2 chunks and a bit are on disk: the torn tail is dropped, two chunks are kept.
        run(
            &files,
            &mut sink,
            &[2 * CHUNK as u64 + 1000],
            50_000,
            |_| {},
        )
        .unwrap();
        assert_eq!(sink.resumed, vec![2 * CHUNK as u64, 0]);
        assert_eq!(sink.files[0], data);
    }

    #[test]
    fn a_full_disk_is_a_clean_error() {
        let files = [("a.bin", content(3 * CHUNK, 7))];
        let mut sink = Memory {
            full_after: Some(CHUNK + 1),
            ..Memory::default()
        };
        let err = run(&files, &mut sink, &[], 100_000, |_| {}).unwrap_err();
        assert!(
            matches!(err, ReceiveError::Sink { ref why, .. } if why.problem == StorageProblem::Full),
            "{err}"
        );
        assert!(sink.ended.is_empty());
    }

    #[test]
    fn declining_sends_nothing_and_the_sender_stops() {
        let (mut tx, offer) = Sender::offer(vec![prepare("a", b"x")]);
        let mut rx = Receiver::new();
        let mut sink = Memory::default();
        rx.feed(&offer, &mut sink).unwrap();
        assert_eq!(tx.feed(&rx.decline()).unwrap(), Some(SendEvent::Declined));
        assert!(sink.files.is_empty());
        assert!(rx.feed(&tx.header(0), &mut sink).is_err());
    }

    #[test]
    fn hostile_answers_are_refused() {
        let (mut tx, _) = Sender::offer(vec![prepare("a", &content(CHUNK, 1))]);
        let bogus = Message::Accept {
            resume: vec![super::super::wire::Resume {
                index: 9,
                chunks: 1,
            }],
        };
        assert!(tx.feed(&bogus.encode()).is_err());
        let (mut tx, _) = Sender::offer(vec![prepare("a", &content(CHUNK, 1))]);
        let past = Message::Accept {
            resume: vec![super::super::wire::Resume {
                index: 0,
                chunks: 2,
            }],
        };
        assert!(tx.feed(&past.encode()).is_err());
    }
}
