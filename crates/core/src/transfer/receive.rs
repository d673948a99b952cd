//! The receiving end of a transfer stream (sans-IO): bytes in, checked offer and verified file
//! data out through a [`FileSink`]. Nothing unverified ever reaches the sink.

use super::hash::{chunk_count, Hash, Verifier, VerifyError, CHUNK};
use super::names::NameRules;
use super::offer::{OfferError, ValidFile, ValidOffer};
use super::wire::{Message, Resume, TransferWireError, TRANSFER_VERSION};

/// Where verified data goes (the I/O shell: a temporary file per file, renamed at the end).
pub trait FileSink {
    /// File `index` starts; `resumed` bytes of it are already on disk (whole chunks, to be
    /// checked against `chunks` before trusting them).
    fn begin(
        &mut self,
        index: usize,
        file: &ValidFile,
        resumed: u64,
        chunks: &[Hash],
    ) -> Result<(), SinkError>;
    /// Verified bytes of file `index`, in order.
    fn write(&mut self, index: usize, data: &[u8]) -> Result<(), SinkError>;
    /// File `index` is complete and verified.
    fn end(&mut self, index: usize) -> Result<(), SinkError>;
}

/// What went wrong with local storage, sorted by what the person can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageProblem {
    /// The disk (or the quota) is full: make room.
    Full,
    /// Not allowed to write there (permissions, a read-only file system): pick another folder.
    Denied,
    /// Something that is not a folder stands where a folder must be made.
    InTheWay,
    /// Files we were writing were changed or replaced by something else meanwhile, or the data
    /// kept from an earlier attempt no longer verifies: nothing of it was saved.
    Changed,
    /// Anything else (the message says what).
    Other,
}

/// Why the sink could not take verified data. The detail names the file and the system's
/// reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct SinkError {
    /// The kind of trouble.
    pub problem: StorageProblem,
    /// What happened, for logs and people.
    pub detail: String,
}

impl SinkError {
    /// A problem of this kind.
    pub fn new(problem: StorageProblem, detail: impl Into<String>) -> Self {
        Self {
            problem,
            detail: detail.into(),
        }
    }

    /// A system error while doing `what`, sorted by its kind.
    pub fn io(what: impl std::fmt::Display, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let problem = match e.kind() {
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => StorageProblem::Full,
            K::PermissionDenied | K::ReadOnlyFilesystem => StorageProblem::Denied,
            K::NotADirectory | K::IsADirectory | K::AlreadyExists => StorageProblem::InTheWay,
            _ => StorageProblem::Other,
        };
        Self::new(problem, format!("{what}: {e}"))
    }
}

/// Why a transfer failed on the receiving side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// A message could not be read.
    #[error(transparent)]
    Wire(#[from] TransferWireError),
    /// The offer was refused.
    #[error(transparent)]
    Offer(#[from] OfferError),
    /// Data failed verification.
    #[error("{file}: {why}")]
    Verify {
        /// The file's path.
        file: String,
        /// What failed.
        why: VerifyError,
    },
    /// The sender did something out of order.
    #[error("the sender broke the transfer protocol: {0}")]
    Protocol(&'static str),
    /// The stream ended before the last byte.
    #[error("the sender stopped before the end ({0})")]
    Truncated(String),
    /// Writing failed (disk full, permissions…).
    #[error("cannot save {file}: {why}")]
    Sink {
        /// The file's path.
        file: String,
        /// The error.
        why: SinkError,
    },
}

/// Something the shell must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiveEvent {
    /// The offer arrived: ask the person (or the policy), then call `accept` or `decline`.
    Offer(ValidOffer),
    /// Every file is verified and ended: send [`Receiver::received`].
    Complete,
}

enum State {
    AwaitOffer,
    AwaitDecision,
    AwaitHeader,
    Data {
        index: usize,
        verifier: Box<Verifier>,
        remaining: u64,
    },
    Done,
    Declined,
}

/// The receiving state machine.
pub struct Receiver {
    rules: NameRules,
    state: State,
    buf: Vec<u8>,
    offer: Option<ValidOffer>,
    resume: Vec<u64>,
    next_file: usize,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    /// Waiting for an offer, its names checked under the default rules (no hidden names).
    pub fn new() -> Self {
        Self::with_rules(NameRules::default())
    }

    /// Waiting for an offer, its names checked under `rules`.
    pub fn with_rules(rules: NameRules) -> Self {
        Self {
            rules,
            state: State::AwaitOffer,
            buf: Vec::new(),
            offer: None,
            resume: Vec::new(),
            next_file: 0,
        }
    }

    /// Bytes from the stream. Returns an event when the shell must act.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        sink: &mut impl FileSink,
    ) -> Result<Option<ReceiveEvent>, ReceiveError> {
        let mut event = None;
        while !data.is_empty() {
            match &mut self.state {
                State::Data {
                    index,
                    verifier,
                    remaining,
                } => {
                    let n = (*remaining).min(data.len() as u64) as usize;
                    let index = *index;
                    let file = self.offer.as_ref().map(|o| &o.files[index]);
                    let mut sink_err = None;
                    verifier
                        .push(&data[..n], |chunk| {
                            if sink_err.is_none() {
                                if let Err(e) = sink.write(index, chunk) {
                                    sink_err = Some(e);
                                }
                            }
                        })
                        .map_err(|why| ReceiveError::Verify {
                            file: file.map(|f| f.path.to_string()).unwrap_or_default(),
                            why,
                        })?;
                    if let Some(why) = sink_err {
                        return Err(ReceiveError::Sink {
                            file: file.map(|f| f.path.to_string()).unwrap_or_default(),
                            why,
                        });
                    }
                    *remaining -= n as u64;
                    data = &data[n..];
                    if *remaining == 0 {
                        self.end_file(index, sink)?;
                        if self.state_is_done() {
                            event = Some(ReceiveEvent::Complete);
                        }
                    }
                }
                State::AwaitOffer | State::AwaitHeader => {
                    // Take only up to the end of one message: what follows may be raw data.
                    let want = Message::needed(&self.buf).unwrap_or(4);
                    let take = want.saturating_sub(self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    let Some((msg, used)) = Message::decode(&self.buf)? else {
                        continue;
                    };
                    debug_assert_eq!(used, self.buf.len());
                    self.buf.clear();
                    if let Some(e) = self.handle(msg, sink)? {
                        event = Some(e);
                    }
                }
                State::AwaitDecision => {
                    return Err(ReceiveError::Protocol("data before the offer was answered"))
                }
                State::Done | State::Declined => {
                    return Err(ReceiveError::Protocol("data after the end"))
                }
            }
            if event.is_some() && !data.is_empty() {
                return Err(ReceiveError::Protocol("data after the end"));
            }
        }
        Ok(event)
    }

    fn state_is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn handle(
        &mut self,
        msg: Message,
        sink: &mut impl FileSink,
    ) -> Result<Option<ReceiveEvent>, ReceiveError> {
        match (&self.state, msg) {
            (State::AwaitOffer, Message::Offer { version, files }) => {
                if version != TRANSFER_VERSION {
                    return Err(ReceiveError::Protocol("unknown transfer version"));
                }
                let offer = ValidOffer::check_with(files, self.rules)?;
                self.offer = Some(offer.clone());
                self.state = State::AwaitDecision;
                Ok(Some(ReceiveEvent::Offer(offer)))
            }
            (
                State::AwaitHeader,
                Message::File {
                    index,
                    start_chunk,
                    chunks,
                },
            ) => {
                let index = index as usize;
                if index != self.next_file {
                    return Err(ReceiveError::Protocol("files out of order"));
                }
                let offer = self.offer.as_ref().expect("an accepted offer");
                let file = &offer.files[index];
                if start_chunk != self.resume[index] {
                    return Err(ReceiveError::Protocol("a file resumed at the wrong place"));
                }
                let verifier =
                    Verifier::new(file.size, &file.root, chunks, start_chunk).map_err(|why| {
                        ReceiveError::Verify {
                            file: file.path.to_string(),
                            why,
                        }
                    })?;
                let resumed = verifier.verified();
                sink.begin(index, file, resumed, verifier.chunk_hashes())
                    .map_err(|why| ReceiveError::Sink {
                        file: file.path.to_string(),
                        why,
                    })?;
                let remaining = file.size - resumed;
                if remaining == 0 {
                    self.end_file(index, sink)?;
                    return Ok(self.state_is_done().then_some(ReceiveEvent::Complete));
                }
                self.state = State::Data {
                    index,
                    verifier: Box::new(verifier),
                    remaining,
                };
                Ok(None)
            }
            _ => Err(ReceiveError::Protocol("unexpected message")),
        }
    }

    fn end_file(&mut self, index: usize, sink: &mut impl FileSink) -> Result<(), ReceiveError> {
        let offer = self.offer.as_ref().expect("an accepted offer");
        sink.end(index).map_err(|why| ReceiveError::Sink {
            file: offer.files[index].path.to_string(),
            why,
        })?;
        self.next_file = index + 1;
        self.state = if self.next_file == offer.files.len() {
            State::Done
        } else {
            State::AwaitHeader
        };
        Ok(())
    }

    /// Takes the offer. `verified_bytes[i]` is how much of file `i` is already on disk from an
    /// earlier attempt (rounded down to whole chunks here). Returns the bytes to send.
    pub fn accept(&mut self, verified_bytes: &[u64]) -> Vec<u8> {
        let offer = self.offer.as_ref().expect("accept after the offer");
        self.resume = offer
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let have = verified_bytes.get(i).copied().unwrap_or(0);
                (have / CHUNK as u64).min(chunk_count(f.size))
            })
            .collect();
        let resume = self
            .resume
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &chunks)| Resume {
                index: i as u32,
                chunks,
            })
            .collect();
        self.state = State::AwaitHeader;
        Message::Accept { resume }.encode()
    }

    /// Bytes of the accepted files already in place from an earlier attempt (whole chunks),
    /// as decided by `accept`.
    pub fn resumed(&self) -> u64 {
        let Some(offer) = &self.offer else { return 0 };
        self.resume
            .iter()
            .zip(&offer.files)
            .map(|(&c, f)| (c * CHUNK as u64).min(f.size))
            .sum()
    }

    /// Refuses the offer. Returns the bytes to send.
    pub fn decline(&mut self) -> Vec<u8> {
        self.state = State::Declined;
        Message::Decline.encode()
    }

    /// The confirmation to send once every file is saved.
    pub fn received(&self) -> Vec<u8> {
        Message::Received.encode()
    }

    /// The stream ended: fine only after the last file.
    pub fn finish(&self) -> Result<(), ReceiveError> {
        match &self.state {
            State::Done | State::Declined => Ok(()),
            State::Data {
                index, remaining, ..
            } => {
                let path = self
                    .offer
                    .as_ref()
                    .map(|o| o.files[*index].path.to_string())
                    .unwrap_or_default();
                Err(ReceiveError::Truncated(format!(
                    "{path} is {remaining} bytes short"
                )))
            }
            _ => Err(ReceiveError::Truncated("no data".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::names::NameError;
    use crate::transfer::wire::OfferedFile;

    /// A sink that fails the test if anything reaches it.
    struct Untouched;

    impl FileSink for Untouched {
        fn begin(&mut self, _: usize, _: &ValidFile, _: u64, _: &[Hash]) -> Result<(), SinkError> {
            panic!("nothing may be created for a refused offer")
        }
        fn write(&mut self, _: usize, _: &[u8]) -> Result<(), SinkError> {
            panic!("nothing may be written for a refused offer")
        }
        fn end(&mut self, _: usize) -> Result<(), SinkError> {
            panic!("nothing may be ended for a refused offer")
        }
    }

    fn offer(path: &str) -> Vec<u8> {
        Message::Offer {
            version: TRANSFER_VERSION,
            files: vec![OfferedFile {
                path: path.into(),
                size: 3,
                root: [7; 32],
            }],
        }
        .encode()
    }

    #[test]
    fn the_receivers_rules_decide_hidden_names_and_internal_names_never_pass() {
        let partial = format!(".extrasafe-partial-{}", "0f".repeat(16));
        for (path, allow_hidden, want) in [
            (
                ".config/autostart/x.desktop",
                false,
                Some(NameError::Hidden),
            ),
            (".ssh/authorized_keys", false, Some(NameError::Hidden)),
            (partial.as_str(), false, Some(NameError::Internal)),
            (partial.as_str(), true, Some(NameError::Internal)),
            (".ssh/authorized_keys", true, None),
        ] {
            let mut rx = Receiver::with_rules(NameRules { allow_hidden });
            let got = rx.feed(&offer(path), &mut Untouched);
            match (got, want) {
                (Err(ReceiveError::Offer(OfferError::BadName { why, .. })), Some(want)) => {
                    assert_eq!(why, want, "{path}")
                }
                (Ok(Some(ReceiveEvent::Offer(o))), None) => {
                    assert_eq!(o.files[0].path.as_str(), path)
                }
                (got, _) => panic!("{path} (allow_hidden {allow_hidden}): {got:?}"),
            }
        }
        // The default receiver is the strict one.
        assert!(matches!(
            Receiver::new().feed(&offer(".profile"), &mut Untouched),
            Err(ReceiveError::Offer(OfferError::BadName {
                why: NameError::Hidden,
                ..
            }))
        ));
    }
}
