//! File transfers inside a call: each on its own QUIC stream, alongside the call's audio and
//! chat. The protocol decisions live in `extrasafe_core::transfer` (sans-IO); this moves the
//! bytes and owns the files.
//!
//! Sending: [`prepare`] the paths (walks folders, hashes), then [`crate::Call::send_files`].
//! Receiving: a [`crate::CallEvent::FilesOffered`] arrives; answer with
//! [`crate::Call::accept_files`] (into a folder) or [`crate::Call::decline_files`]. Both give a
//! [`TransferHandle`] for progress, cancelling and the outcome.

pub(crate) mod disk;
pub mod prepare;
mod run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use extrasafe_core::transfer::offer::ValidOffer;
use extrasafe_core::transfer::receive::Receiver;
use quinn::{RecvStream, SendStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use prepare::{LocalFile, PrepareError};

/// The folder received files go into by default: the desktop's download folder if there is
/// one, else the current folder.
pub fn default_download_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let xdg = std::env::var_os("XDG_DOWNLOAD_DIR").map(PathBuf::from);
    xdg.into_iter()
        .chain(home.map(|h| h.join("Downloads")))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("."))
}
pub(crate) use run::{intake, receive, send};

/// Names a transfer within its call.
pub type TransferId = u64;

/// Most transfers running at once in each direction of a call.
pub const MAX_TRANSFERS: u32 = 4;

/// How far a transfer has come.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes moved (sent, or received and verified), including a resumed prefix.
    pub bytes: u64,
    /// Bytes in all.
    pub total: u64,
    /// Files finished.
    pub files_done: usize,
    /// Files in all.
    pub files: usize,
    /// The file in progress, its bytes so far and its size.
    pub current: Option<(String, u64, u64)>,
    /// Bytes that were already there from an earlier attempt (not moved this time).
    pub resumed: u64,
}

/// How a transfer ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Sender: every file arrived, verified and saved. Receiver: every file is saved, here.
    Done {
        /// Receiver: where each file was saved (sender: empty).
        saved: Vec<PathBuf>,
    },
    /// The receiver declined; nothing was written.
    Declined,
    /// Someone cancelled.
    Cancelled {
        /// The other side did.
        by_peer: bool,
    },
    /// It failed; the message says why, for a person.
    Failed(String),
}

/// A running transfer.
#[derive(Debug)]
pub struct TransferHandle {
    /// Its id within the call.
    pub id: TransferId,
    progress: watch::Receiver<Progress>,
    cancel: watch::Sender<bool>,
    task: JoinHandle<TransferOutcome>,
    /// Closes when the task's work is over (see [`start`]).
    alive: watch::Receiver<()>,
}

impl TransferHandle {
    /// The latest progress.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }
    /// Progress as it changes.
    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }
    /// Stops the transfer on both sides.
    pub fn cancel(&self) {
        let _ = self.cancel.send(true);
    }
    /// Whether it has ended (then `finished` returns at once).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
    /// Returns once it has ended, without consuming the handle.
    pub async fn ended(&self) {
        // Nothing is ever sent on `alive`: this returns when the task drops its end, without
        // waking for every progress step.
        let _ = self.alive.clone().changed().await;
        // The task completes a moment after its work returned.
        while !self.task.is_finished() {
            tokio::task::yield_now().await;
        }
    }
    /// Waits for the end.
    pub async fn finished(self) -> TransferOutcome {
        self.task
            .await
            .unwrap_or_else(|_| TransferOutcome::Failed("the transfer task failed".into()))
    }
}

/// Why a transfer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The files could not be read.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// No such offer (answered already, or withdrawn).
    #[error("no pending offer {0}")]
    NoSuchOffer(TransferId),
    /// The download folder is not usable.
    #[error("cannot save into {path}: {why}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Not enough free space.
    #[error("not enough free space: {need} bytes needed, {free} free")]
    NoSpace {
        /// Bytes still to receive.
        need: u64,
        /// Bytes free.
        free: u64,
    },
    /// The call cannot carry a transfer now (over, or too many at once).
    #[error("cannot open a transfer: {0}")]
    Connection(String),
}

/// Offers waiting for the person's answer.
pub(crate) struct PendingOffer {
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    pub(crate) rx: Receiver,
    pub(crate) offer: ValidOffer,
}

/// The transfers of one call.
#[derive(Default)]
pub(crate) struct TransferBook {
    next: AtomicU64,
    pub(crate) pending: Mutex<HashMap<TransferId, PendingOffer>>,
}

impl std::fmt::Debug for TransferBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransferBook")
    }
}

impl TransferBook {
    pub(crate) fn next_id(&self) -> TransferId {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Walks and hashes `paths` (files or folders) off the async threads. Returns the files and
/// the links that were left out.
pub async fn prepare(paths: Vec<PathBuf>) -> Result<(Vec<LocalFile>, Vec<PathBuf>), PrepareError> {
    tokio::task::spawn_blocking(move || {
        let mut skipped = Vec::new();
        let list = prepare::collect(&paths, &mut skipped)?;
        let files = list
            .into_iter()
            .map(|(source, name)| prepare::hash_file(&source, name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((files, skipped))
    })
    .await
    .unwrap_or(Err(PrepareError::Nothing))
}

/// Spawns a transfer's task (`run` gets the progress to report and the cancel flag to obey)
/// and returns its handle.
pub(crate) fn start<F, Fut>(id: TransferId, run: F) -> TransferHandle
where
    F: FnOnce(watch::Sender<Progress>, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = TransferOutcome> + Send + 'static,
{
    let (progress_tx, progress) = watch::channel(Progress::default());
    let (cancel, cancel_rx) = watch::channel(false);
    let (alive_tx, alive) = watch::channel(());
    let work = run(progress_tx, cancel_rx);
    let task = tokio::spawn(async move {
        let _alive = alive_tx;
        work.await
    });
    TransferHandle {
        id,
        progress,
        cancel,
        task,
        alive,
    }
}
