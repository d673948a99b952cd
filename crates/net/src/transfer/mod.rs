//! File transfers inside a call: each on its own QUIC stream, alongside the call's audio and
//! chat. The protocol decisions live in `extrasafe_core::transfer` (sans-IO); this moves the
//! bytes and owns the files.
//!
//! Sending: [`prepare`] the paths (walks folders, hashes), then [`crate::Call::send_files`].
//! Receiving: a [`crate::CallEvent::FilesOffered`] arrives; answer with
//! [`crate::Call::accept_files`] (into a folder) or [`crate::Call::decline_files`]. Both give a
//! [`TransferHandle`] for progress, cancelling and the outcome. Offers naming hidden files
//! are declined on arrival unless [`crate::Call::allow_hidden_files`] says otherwise; files
//! land (0600, new folders 0700) only inside the folder given, through an opened handle of
//! it (see `disk`).

pub(crate) mod disk;
pub mod prepare;
mod run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use extrasafe_core::transfer::names::NameRules;
use extrasafe_core::transfer::offer::ValidOffer;
use extrasafe_core::transfer::receive::{Receiver, SinkError};
use quinn::{RecvStream, SendStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use prepare::{LocalFile, PrepareError, Prepared};

/// Name of our folder under `~/Downloads`.
pub const DOWNLOAD_FOLDER: &str = "EXTRA SAFE";

/// Why there is no default download folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadDirError {
    /// `HOME` is unset, empty or not an absolute path: there is no home folder to save in
    /// (and the current folder is never used instead).
    #[error("there is no home folder (HOME is not set to an absolute path) to save files in")]
    NoHome,
    /// A folder could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Something that is not a folder has the name.
    #[error("{0} exists and is not a folder")]
    NotAFolder(PathBuf),
}

/// The folder received files go into by default: `$HOME/Downloads/EXTRA SAFE`, a folder of
/// their own (so a received name never lands among the person's other downloads), created
/// when missing (and `~/Downloads` with it), readable by us only (0700). Never the current
/// folder: without a home folder this is an error.
pub fn default_download_dir() -> Result<PathBuf, DownloadDirError> {
    download_dir_in(std::env::var_os("HOME"))
}

fn download_dir_in(home: Option<std::ffi::OsString>) -> Result<PathBuf, DownloadDirError> {
    let home = home
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
        .ok_or(DownloadDirError::NoHome)?;
    let downloads = home.join("Downloads");
    make_private_dir(&downloads)?;
    let ours = downloads.join(DOWNLOAD_FOLDER);
    make_private_dir(&ours)?;
    Ok(ours)
}

/// Creates `path` with mode 0700 unless a folder is there already (left as it is: a
/// `~/Downloads` that is a link to another disk is the person's choice).
fn make_private_dir(path: &std::path::Path) -> Result<(), DownloadDirError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(disk::DIR_MODE).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
                Ok(())
            } else {
                Err(DownloadDirError::NotAFolder(path.to_path_buf()))
            }
        }
        Err(source) => Err(DownloadDirError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub(crate) use run::{intake, receive, send};

/// Names a transfer within its call.
pub type TransferId = u64;

/// Most transfers running at once in each direction of a call (the session admits as many
/// streams: `extrasafe_core::session::Session::peer_stream_limit`).
pub use extrasafe_core::transfer::MAX_TRANSFERS;

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
    /// It failed: why, typed (see [`TransferFailure::blame`]).
    Failed(TransferFailure),
}

/// Why a transfer failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferFailure {
    /// The receiver refused our data: it did not match what was offered.
    #[error("the other side refused the data (it did not match what was offered)")]
    DataRefused,
    /// The receiver could not save the files (its disk, its folder): nothing was wrong with
    /// the data.
    #[error("the other side could not save the files (its disk is full or its folder cannot be written)")]
    PeerCannotSave,
    /// The other side stopped the transfer's stream for a reason it did not give.
    #[error("the other side stopped the transfer")]
    StoppedByPeer,
    /// The connection went away.
    #[error("the connection was lost")]
    ConnectionLost,
    /// The other side broke the transfer protocol (a message out of order or malformed, no
    /// answer).
    #[error("the other side broke the transfer protocol: {0}")]
    Protocol(String),
    /// Data we received was refused: it failed verification, or its messages were bad.
    #[error(transparent)]
    Received(extrasafe_core::transfer::receive::ReceiveError),
    /// Saving what we received failed.
    #[error(transparent)]
    Storage(SinkError),
    /// A file we send could not be read.
    #[error("{path}: {why}")]
    Source {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        why: String,
    },
    /// Something in this program failed (a task or thread ended unexpectedly).
    #[error("{0}")]
    Internal(&'static str),
}

impl TransferFailure {
    /// Who can act on it.
    pub fn blame(&self) -> crate::Blame {
        use extrasafe_core::transfer::receive::ReceiveError;
        match self {
            Self::Received(ReceiveError::Sink { .. }) => crate::Blame::Local,
            Self::DataRefused
            | Self::PeerCannotSave
            | Self::StoppedByPeer
            | Self::Protocol(_)
            | Self::Received(_) => crate::Blame::Peer,
            Self::ConnectionLost => crate::Blame::Network,
            Self::Storage(_) | Self::Source { .. } | Self::Internal(_) => crate::Blame::Local,
        }
    }
}

impl From<extrasafe_core::transfer::receive::ReceiveError> for TransferFailure {
    /// A sink error is our own storage's; anything else is the data's.
    fn from(e: extrasafe_core::transfer::receive::ReceiveError) -> Self {
        use extrasafe_core::transfer::receive::ReceiveError;
        match e {
            ReceiveError::Sink { why, .. } => Self::Storage(why),
            other => Self::Received(other),
        }
    }
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
            .unwrap_or(TransferOutcome::Failed(TransferFailure::Internal(
                "the transfer task failed",
            )))
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
    /// The name rules the offer was checked under (the files are written under them too).
    pub(crate) rules: NameRules,
}

/// The transfers of one call.
#[derive(Default)]
pub(crate) struct TransferBook {
    next: AtomicU64,
    pub(crate) pending: Mutex<HashMap<TransferId, PendingOffer>>,
    /// Offers may name hidden files (see [`crate::Call::allow_hidden_files`]).
    allow_hidden: AtomicBool,
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

    /// The rules offers arriving now are checked under.
    pub(crate) fn rules(&self) -> NameRules {
        NameRules {
            allow_hidden: self.allow_hidden.load(Ordering::Relaxed),
        }
    }
}

impl crate::Call {
    /// Whether offers from the peer may name hidden files and folders (a component starting
    /// with `.`, such as `.config/autostart/x.desktop`). Off by default: such an offer is
    /// declined when it arrives, before it is shown and before anything is created, and the
    /// sender learns "declined". Applies to offers that arrive after the call. Names the
    /// receiver keeps for itself (`.extrasafe…`, its partial files) are refused whatever
    /// this says.
    pub fn allow_hidden_files(&self, allow: bool) {
        self.transfers.allow_hidden.store(allow, Ordering::Relaxed);
    }
}

/// Walks and hashes `paths` (files or folders) off the async threads: the files, and what
/// was left out (see [`Prepared`]).
pub async fn prepare(paths: Vec<PathBuf>) -> Result<Prepared, PrepareError> {
    tokio::task::spawn_blocking(move || {
        let (mut skipped, mut missing) = (Vec::new(), Vec::new());
        let list = prepare::collect(&paths, &mut skipped, &mut missing)?;
        let files = list
            .into_iter()
            .map(|(source, name)| prepare::hash_file(&source, name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prepared {
            files,
            skipped,
            missing,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_default_folder_is_a_private_one_of_its_own_and_never_the_current_one() {
        let home = std::env::temp_dir().join(format!("es-home-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        // No ~/Downloads yet: both are created, ours only.
        let d = download_dir_in(Some(home.clone().into())).unwrap();
        assert_eq!(d, home.join("Downloads").join("EXTRA SAFE"));
        assert!(d.is_absolute() && d != std::path::Path::new("."));
        assert!(d.is_dir());
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&home.join("Downloads")), 0o700);
        // Found again as it is; an existing ~/Downloads keeps its own permissions.
        std::fs::set_permissions(
            home.join("Downloads"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::remove_dir(&d).unwrap();
        assert_eq!(download_dir_in(Some(home.clone().into())).unwrap(), d);
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&home.join("Downloads")), 0o755);
        // Without a home, an error: never "." or any other relative folder.
        for no_home in [None, Some(""), Some("."), Some("relative/home")] {
            let got = download_dir_in(no_home.map(Into::into));
            assert!(
                matches!(got, Err(DownloadDirError::NoHome)),
                "{no_home:?}: {got:?}"
            );
        }
        // A file where our folder should be.
        std::fs::remove_dir(&d).unwrap();
        std::fs::write(&d, b"not a folder").unwrap();
        let got = download_dir_in(Some(home.clone().into()));
        assert!(
            matches!(got, Err(DownloadDirError::NotAFolder(ref p)) if *p == d),
            "{got:?}"
        );
        let _ = std::fs::remove_dir_all(&home);
    }
}
