//! A call's file transfers, as both front ends run them: offering prepared files (at most
//! [`MAX_TRANSFERS`] at once, and an offer the peer never takes up does not hang), offers
//! from the peer (the files policy answers, or they wait for the person), accepting into a
//! folder (made if missing), declining, cancelling, and what happens to each transfer as
//! typed [`TransferEvent`]s: progress with its rate and time left, and the end with its
//! outcome. Front ends draw and word these; they hold no transfer of their own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use extrasafe_core::transfer::offer::ValidOffer;
use extrasafe_core::PeerId;
use extrasafe_net::transfer::{
    LocalFile, Progress, TransferError, TransferHandle, TransferId, TransferOutcome, MAX_TRANSFERS,
};
use extrasafe_net::Call;
use tokio::time::Instant;

use crate::policy::{FilesDecision, FilesPolicy};

/// How long an offer may wait for the peer to open a stream for it: a peer that never does
/// must not hold the front end.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// A transfer that started: one we offered, or one we accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// Its id within the call.
    pub id: TransferId,
    /// Files in it.
    pub files: usize,
    /// Bytes in all.
    pub bytes: u64,
    /// Receiving: the folder it is saved into (absolute).
    pub folder: Option<PathBuf>,
}

/// Where a running transfer stands.
#[derive(Clone, Debug, PartialEq)]
pub struct TransferStatus {
    /// Its id within the call.
    pub id: TransferId,
    /// We send it.
    pub outgoing: bool,
    /// The counts.
    pub progress: Progress,
    /// Since it started.
    pub elapsed: Duration,
    /// Bytes moved per second since it started (a resumed prefix not counted).
    pub bytes_per_sec: u64,
    /// Time left at that rate (`None` before anything moved).
    pub eta: Option<Duration>,
}

/// What happened to a transfer.
#[derive(Clone, Debug, PartialEq)]
pub enum TransferEvent {
    /// It moved on.
    Progress(TransferStatus),
    /// It ended: the final counts and how.
    Ended {
        /// The final counts.
        status: TransferStatus,
        /// How it ended.
        outcome: TransferOutcome,
        /// Receiving: the folder it was saved into.
        folder: Option<PathBuf>,
    },
    /// The call ended before it finished: it was stopped (see [`Transfers::wind_up`]).
    CutShort(TransferStatus),
}

/// Why files could not be offered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// As many sends as a call carries are running or waiting for an answer.
    #[error("{0} sends are already running or waiting for an answer")]
    TooMany(u32),
    /// Nothing to send (every path was left out).
    #[error("nothing to send")]
    Nothing,
    /// The peer did not open a stream for the offer in time.
    #[error("they did not take the offer within {} s", OFFER_TIMEOUT.as_secs())]
    NotTaken,
    /// The call could not carry it.
    #[error(transparent)]
    Transfer(#[from] TransferError),
}

/// Why an offer could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// No offer waits (or not the one named).
    #[error("no file offer is waiting")]
    NoOffer,
    /// The folder could not be made.
    #[error("cannot save files in {path}: {why}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The transfer could not start (no space, the offer withdrawn, the call over).
    #[error(transparent)]
    Transfer(#[from] TransferError),
}

struct Running {
    handle: TransferHandle,
    outgoing: bool,
    started: Instant,
    folder: Option<PathBuf>,
    /// Files and bytes offered: the counts until the transfer itself reports them.
    files: usize,
    total: u64,
}

impl Running {
    fn status(&self, now: Instant) -> TransferStatus {
        let mut progress = self.handle.progress();
        if progress.files == 0 {
            (progress.files, progress.total) = (self.files, self.total);
        }
        let elapsed = now.saturating_duration_since(self.started);
        let moved = progress.bytes.saturating_sub(progress.resumed);
        let rate = moved as f64 / elapsed.as_secs_f64().max(0.001);
        let eta = (rate > 0.0).then(|| {
            Duration::from_secs_f64(progress.total.saturating_sub(progress.bytes) as f64 / rate)
        });
        TransferStatus {
            id: self.handle.id,
            outgoing: self.outgoing,
            progress,
            elapsed,
            bytes_per_sec: rate as u64,
            eta,
        }
    }
}

/// The transfers of one call; see the module documentation.
pub struct Transfers {
    policy: FilesPolicy,
    pending: Vec<(TransferId, ValidOffer)>,
    running: Vec<Running>,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers")
            .field("pending", &self.pending.len())
            .field("running", &self.running.len())
            .finish()
    }
}

impl Transfers {
    /// No transfers yet; offers from the peer are answered by `policy`.
    pub fn new(policy: FilesPolicy) -> Self {
        Self {
            policy,
            pending: Vec::new(),
            running: Vec::new(),
        }
    }

    /// Sends running or waiting for an answer (a front end may check this before it reads
    /// and hashes files for another: [`Transfers::offer`] refuses more than
    /// [`MAX_TRANSFERS`]).
    pub fn sending(&self) -> usize {
        self.running
            .iter()
            .filter(|r| r.outgoing && !r.handle.is_finished())
            .count()
    }

    /// Whether another send fits now: front ends ask before reading and hashing files that
    /// [`Transfers::offer`] would refuse ([`OfferError::TooMany`]).
    pub fn room(&self) -> Result<(), OfferError> {
        if self.sending() >= MAX_TRANSFERS as usize {
            return Err(OfferError::TooMany(MAX_TRANSFERS));
        }
        Ok(())
    }

    /// Offers `files` (prepared with [`extrasafe_net::transfer::prepare`]) as one transfer.
    pub async fn offer(
        &mut self,
        call: &Call,
        files: Vec<LocalFile>,
    ) -> Result<Started, OfferError> {
        if files.is_empty() {
            return Err(OfferError::Nothing);
        }
        self.room()?;
        let started = Started {
            id: 0,
            files: files.len(),
            bytes: files.iter().map(|f| f.prepared.size).sum(),
            folder: None,
        };
        let handle = tokio::time::timeout(OFFER_TIMEOUT, call.send_files(files))
            .await
            .map_err(|_| OfferError::NotTaken)??;
        let id = handle.id;
        self.running.push(Running {
            handle,
            outgoing: true,
            started: Instant::now(),
            folder: None,
            files: started.files,
            total: started.bytes,
        });
        Ok(Started { id, ..started })
    }

    /// The peer `from` offers files: the policy's answer (`Accept` and `Decline` are for the
    /// front end to carry out with [`Transfers::accept`] or [`Transfers::decline`], so that
    /// it can say so; `Ask` is for the person). The offer waits until answered.
    pub fn offered(&mut self, from: &PeerId, id: TransferId, offer: ValidOffer) -> FilesDecision {
        let decision = self.policy.decide(from, offer.total);
        self.pending.push((id, offer));
        decision
    }

    /// Offers waiting for an answer, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = (TransferId, &ValidOffer)> {
        self.pending.iter().map(|(id, o)| (*id, o))
    }

    /// Offer `id` (the oldest if `None`), taken out of the waiting ones, and where it was.
    fn take_pending(
        &mut self,
        id: Option<TransferId>,
    ) -> Result<(usize, TransferId, ValidOffer), AnswerError> {
        let pos = match id {
            Some(id) => self.pending.iter().position(|(i, _)| *i == id),
            None => (!self.pending.is_empty()).then_some(0),
        };
        let pos = pos.ok_or(AnswerError::NoOffer)?;
        let (id, offer) = self.pending.remove(pos);
        Ok((pos, id, offer))
    }

    /// Accepts offer `id` (the oldest waiting if `None`) into `folder`, made if missing. If
    /// it cannot start (no space), the offer keeps waiting.
    pub fn accept(
        &mut self,
        call: &Call,
        id: Option<TransferId>,
        folder: &Path,
    ) -> Result<Started, AnswerError> {
        let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
        let (pos, id, offer) = self.take_pending(id)?;
        let back = |this: &mut Self, offer| this.pending.insert(pos, (id, offer));
        if let Err(e) = make_folder(&folder) {
            back(self, offer);
            return Err(AnswerError::Folder {
                path: folder,
                why: e.to_string(),
            });
        }
        match call.accept_files(id, folder.clone()) {
            Ok(handle) => {
                self.running.push(Running {
                    handle,
                    outgoing: false,
                    started: Instant::now(),
                    folder: Some(folder.clone()),
                    files: offer.files.len(),
                    total: offer.total,
                });
                Ok(Started {
                    id,
                    files: offer.files.len(),
                    bytes: offer.total,
                    folder: Some(folder),
                })
            }
            Err(e) => {
                back(self, offer);
                Err(e.into())
            }
        }
    }

    /// Declines offer `id` (the oldest waiting if `None`): nothing is written, the sender
    /// learns "declined". Returns the offer's id.
    pub async fn decline(
        &mut self,
        call: &Call,
        id: Option<TransferId>,
    ) -> Result<TransferId, AnswerError> {
        let (_, id, _) = self.take_pending(id)?;
        call.decline_files(id).await?;
        Ok(id)
    }

    /// Stops every running transfer; returns how many were running.
    pub fn cancel_all(&self) -> usize {
        let running = self.running.iter().filter(|r| !r.handle.is_finished());
        running.map(|r| r.handle.cancel()).count()
    }

    /// Stops transfer `id` in that direction; `false` if no such transfer runs.
    pub fn cancel(&self, id: TransferId, outgoing: bool) -> bool {
        let found = self
            .running
            .iter()
            .find(|r| r.handle.id == id && r.outgoing == outgoing && !r.handle.is_finished());
        found.map(|r| r.handle.cancel()).is_some()
    }

    /// The call is over: transfers end with its connection. Each is given `grace` to end by
    /// itself (and report how); those still running then are stopped and reported as
    /// [`TransferEvent::CutShort`]. Offers still waiting are dropped.
    pub async fn wind_up(&mut self, grace: Duration) -> Vec<TransferEvent> {
        let give_up = Instant::now() + grace;
        for r in &self.running {
            let _ = tokio::time::timeout_at(give_up, r.handle.ended()).await;
        }
        let now = Instant::now();
        let mut cut = Vec::new();
        self.running.retain(|r| {
            if r.handle.is_finished() {
                return true;
            }
            r.handle.cancel();
            cut.push(TransferEvent::CutShort(r.status(now)));
            false
        });
        self.pending.clear();
        let mut events = self.poll().await;
        events.retain(|e| matches!(e, TransferEvent::Ended { .. }));
        events.extend(cut);
        events
    }

    /// A transfer is running or an offer waits.
    pub fn busy(&self) -> bool {
        !self.running.is_empty() || !self.pending.is_empty()
    }

    /// A transfer is running.
    pub fn running(&self) -> bool {
        self.running.iter().any(|r| !r.handle.is_finished())
    }

    /// Where each running transfer stands, then the end of each that ended since (in that
    /// order, so a transfer's last progress comes before its end).
    pub async fn poll(&mut self) -> Vec<TransferEvent> {
        let now = Instant::now();
        let mut events: Vec<TransferEvent> = self
            .running
            .iter()
            .filter(|r| !r.handle.is_finished())
            .map(|r| TransferEvent::Progress(r.status(now)))
            .collect();
        let mut i = 0;
        while i < self.running.len() {
            if !self.running[i].handle.is_finished() {
                i += 1;
                continue;
            }
            let r = self.running.remove(i);
            // The final counts: a transfer may end before any poll saw its size.
            let status = r.status(now);
            let outcome = r.handle.finished().await;
            events.push(TransferEvent::Ended {
                status,
                outcome,
                folder: r.folder,
            });
        }
        events
    }

    /// Returns when one of the running transfers ends (never, when none runs), so that its
    /// end can be reported at once rather than at the next poll.
    pub async fn next_end(&self) {
        let mut waits: Vec<_> = self
            .running
            .iter()
            .filter(|r| !r.handle.is_finished())
            .map(|r| Box::pin(r.handle.ended()))
            .collect();
        if waits.is_empty() {
            if self.running.is_empty() {
                return std::future::pending().await;
            }
            return; // one has ended and waits to be polled
        }
        std::future::poll_fn(|cx| {
            if waits
                .iter_mut()
                .any(|w| std::future::Future::poll(w.as_mut(), cx).is_ready())
            {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }
}

/// Makes `folder` and its missing parents, readable by this user alone (the names of what
/// arrives are nobody else's business).
fn make_folder(folder: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(folder)
}
