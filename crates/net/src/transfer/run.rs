//! The tasks that move a transfer's bytes: the sender's, the receiver's, and the intake that
//! reads an arriving offer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use extrasafe_core::transfer::offer::ValidOffer;
use extrasafe_core::transfer::receive::{FileSink, ReceiveError, ReceiveEvent, Receiver};
use extrasafe_core::transfer::send::{SendEvent, Sender};
use extrasafe_core::transfer::wire::{BAD_DATA_CODE, CANCEL_CODE};
use quinn::{ReadError, RecvStream, SendStream, VarInt, WriteError};
use tokio::sync::{mpsc, watch};

use super::disk::{DiskSink, NamedSink};
use super::{LocalFile, PendingOffer, Progress, TransferBook, TransferOutcome};
use crate::call::CallEvent;

/// An offer must arrive this soon after its stream opens.
const OFFER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from a file or the stream at a time.
const BLOCK: usize = 1 << 20;

/// A sink that takes nothing: before the person answers, only the offer may arrive.
struct NoData;

impl FileSink for NoData {
    fn begin(
        &mut self,
        _: usize,
        _: &extrasafe_core::transfer::offer::ValidFile,
        _: u64,
        _: &[extrasafe_core::transfer::hash::Hash],
    ) -> Result<(), String> {
        Err("file data before the offer was accepted".into())
    }
    fn write(&mut self, _: usize, _: &[u8]) -> Result<(), String> {
        Err("file data before the offer was accepted".into())
    }
    fn end(&mut self, _: usize) -> Result<(), String> {
        Err("file data before the offer was accepted".into())
    }
}

/// Reads the offer on a stream the peer opened and hands it to the application.
pub(crate) async fn intake(
    book: Arc<TransferBook>,
    events: mpsc::Sender<CallEvent>,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let _ = send.set_priority(-1);
    // The rules in force when the offer arrives: its names are checked against them here,
    // before anyone sees it, and its files are written under the same ones.
    let rules = book.rules();
    let mut rx = Receiver::with_rules(rules);
    let read = async {
        loop {
            // Exactly the offer, never more: file data must wait for the answer.
            match recv.read_chunk(BLOCK, true).await {
                Ok(Some(c)) => match rx.feed(&c.bytes, &mut NoData) {
                    Ok(Some(ReceiveEvent::Offer(offer))) => return Ok(offer),
                    Ok(_) => continue,
                    Err(e) => return Err(Some(e)),
                },
                _ => return Err(None),
            }
        }
    };
    match tokio::time::timeout(OFFER_TIMEOUT, read).await {
        Ok(Ok(offer)) => {
            let id = book.next_id();
            book.pending.lock().expect("transfer book").insert(
                id,
                PendingOffer {
                    send,
                    recv,
                    rx,
                    offer: offer.clone(),
                    rules,
                },
            );
            let _ = events.send(CallEvent::FilesOffered { id, offer }).await;
        }
        Ok(Err(Some(ReceiveError::Offer(why)))) => {
            // A well-formed offer of files we do not take (a hidden or reserved name, a
            // clash…): declined on the spot, nothing shown, nothing created.
            tracing::warn!(%why, "transfer offer declined");
            let bytes = rx.decline();
            let _ = send.write_all(&bytes).await;
            let _ = send.finish();
            let _ = recv.stop(VarInt::from_u32(CANCEL_CODE));
        }
        refused => {
            tracing::debug!(?refused, "transfer offer refused (bad, or not in time)");
            stop_both(&mut send, &mut recv, BAD_DATA_CODE);
        }
    }
}

/// How the other side stopped a stream, for a person.
fn peer_stop(code: VarInt) -> TransferOutcome {
    if code == VarInt::from_u32(CANCEL_CODE) {
        TransferOutcome::Cancelled { by_peer: true }
    } else if code == VarInt::from_u32(BAD_DATA_CODE) {
        TransferOutcome::Failed(
            "the other side refused the data (it did not match what was offered)".into(),
        )
    } else {
        TransferOutcome::Failed("the other side stopped the transfer".into())
    }
}

fn write_failed(e: WriteError) -> TransferOutcome {
    match e {
        WriteError::Stopped(code) => peer_stop(code),
        _ => TransferOutcome::Failed("the connection was lost".into()),
    }
}

fn read_failed(e: ReadError) -> TransferOutcome {
    match e {
        ReadError::Reset(code) => peer_stop(code),
        _ => TransferOutcome::Failed("the connection was lost".into()),
    }
}

fn stop_both(send: &mut SendStream, recv: &mut RecvStream, code: u32) {
    let _ = send.reset(VarInt::from_u32(code));
    let _ = recv.stop(VarInt::from_u32(code));
}

/// Sends `files` on a stream we opened.
pub(crate) async fn send(
    mut send: SendStream,
    mut recv: RecvStream,
    files: Vec<LocalFile>,
    progress: watch::Sender<Progress>,
    mut cancel: watch::Receiver<bool>,
) -> TransferOutcome {
    let total: u64 = files.iter().map(|f| f.prepared.size).sum();
    let (mut tx, offer) = Sender::offer(files.iter().map(|f| f.prepared.clone()).collect());
    progress.send_modify(|p| {
        p.total = total;
        p.files = files.len();
    });
    let work = async {
        send.write_all(&offer).await.map_err(write_failed)?;
        let starts = match answer(&mut recv, &mut tx).await? {
            SendEvent::Accepted { starts } => starts,
            SendEvent::Declined => return Ok(TransferOutcome::Declined),
            SendEvent::Received => return Err(TransferOutcome::Failed("out of order".into())),
        };
        let resumed: u64 = starts.iter().sum();
        progress.send_modify(|p| {
            p.resumed = resumed;
            p.bytes = resumed;
        });
        for (i, f) in files.iter().enumerate() {
            send.write_all(&tx.header(i)).await.map_err(write_failed)?;
            let mut blocks = read_blocks(f.source.clone(), starts[i], f.prepared.size);
            let mut sent = starts[i];
            while let Some(block) = blocks.recv().await {
                let block = block
                    .map_err(|e| TransferOutcome::Failed(format!("{}: {e}", f.source.display())))?;
                let n = block.len();
                send.write_chunk(block).await.map_err(write_failed)?;
                sent += n as u64;
                progress.send_modify(|p| {
                    p.bytes += n as u64;
                    p.current = Some((f.prepared.path.clone(), sent, f.prepared.size));
                });
            }
            progress.send_modify(|p| p.files_done = i + 1);
        }
        let _ = send.finish();
        match answer(&mut recv, &mut tx).await? {
            SendEvent::Received => Ok(TransferOutcome::Done { saved: Vec::new() }),
            _ => Err(TransferOutcome::Failed("out of order".into())),
        }
    };
    tokio::select! {
        r = work => r.unwrap_or_else(|e| e),
        _ = cancel.wait_for(|c| *c) => {
            stop_both(&mut send, &mut recv, CANCEL_CODE);
            TransferOutcome::Cancelled { by_peer: false }
        }
    }
}

/// Reads `path` from `start` up to `size` (never more than offered: a file that grew since it
/// was hashed is cut at its offered size, one that shrank shows as short to the receiver) on
/// a blocking thread of its own, into fresh buffers handed to QUIC as they are: no copy
/// through an async file's own buffer, no thread hand-off per block. A few blocks ahead at
/// most; it stops when the receiver of the blocks goes away (a cancelled transfer). It seeks
/// only to resume, so a file that cannot seek (a pipe, as the tests use) is read from its start.
fn read_blocks(
    path: PathBuf,
    start: u64,
    size: u64,
) -> mpsc::Receiver<std::io::Result<bytes::Bytes>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let read = || -> std::io::Result<()> {
            use std::io::{Read, Seek};
            let mut file = std::fs::File::open(&path)?;
            if start > 0 {
                file.seek(std::io::SeekFrom::Start(start))?;
            }
            let mut left = size.saturating_sub(start);
            while left > 0 {
                let mut buf = bytes::BytesMut::zeroed(left.min(BLOCK as u64) as usize);
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if filled == 0 {
                    return Ok(());
                }
                buf.truncate(filled);
                left -= filled as u64;
                if tx.blocking_send(Ok(buf.freeze())).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        };
        if let Err(e) = read() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// Reads the receiver's next answer.
async fn answer(recv: &mut RecvStream, tx: &mut Sender) -> Result<SendEvent, TransferOutcome> {
    loop {
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(c)) => match tx.feed(&c.bytes) {
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => continue,
                Err(e) => return Err(TransferOutcome::Failed(e.to_string())),
            },
            Ok(None) => {
                return Err(TransferOutcome::Failed(
                    "the other side closed the transfer without an answer".into(),
                ))
            }
            Err(e) => return Err(read_failed(e)),
        }
    }
}

/// Receives an accepted offer into `dir`.
pub(crate) async fn receive(
    mut pending: PendingOffer,
    dir: PathBuf,
    resume: Vec<u64>,
    progress: watch::Sender<Progress>,
    mut cancel: watch::Receiver<bool>,
) -> TransferOutcome {
    let offer: ValidOffer = pending.offer.clone();
    // Every file is created through this handle of the folder, never by path again.
    let mut disk = match DiskSink::open(&dir, pending.rules) {
        Ok(d) => d,
        Err(e) => {
            stop_both(&mut pending.send, &mut pending.recv, CANCEL_CODE);
            return TransferOutcome::Failed(format!("cannot save into {}: {e}", dir.display()));
        }
    };
    let accept = pending.rx.accept(&resume);
    let resumed = pending.rx.resumed();
    progress.send_modify(|p| {
        p.total = offer.total;
        p.files = offer.files.len();
        p.resumed = resumed;
        p.bytes = resumed;
    });
    let PendingOffer {
        mut send,
        mut recv,
        mut rx,
        ..
    } = pending;
    // A cancel stops the waiting on the stream, never a commit under way (that would leave
    // its batch half named, and race the clean-up below).
    let work = async {
        tokio::select! {
            r = send.write_all(&accept) => r.map_err(write_failed)?,
            _ = cancel.wait_for(|c| *c) => return Err(ReceiveFailure::Cancelled),
        }
        // Many received pieces per call, without copying them out of QUIC's buffers.
        let mut pieces: Vec<bytes::Bytes> = vec![bytes::Bytes::new(); 64];
        loop {
            let read = tokio::select! {
                r = recv.read_chunks(&mut pieces) => r,
                _ = cancel.wait_for(|c| *c) => return Err(ReceiveFailure::Cancelled),
            };
            let got = match read {
                Ok(Some(n)) => &pieces[..n],
                Ok(None) => {
                    // The sender finished its side: fine only after the last byte.
                    rx.finish()?;
                    return Err(ReceiveFailure::Outcome(TransferOutcome::Failed(
                        "the transfer ended early".into(),
                    )));
                }
                Err(e) => return Err(read_failed(e).into()),
            };
            let mut sink = NamedSink {
                disk: &mut disk,
                offer: &offer,
            };
            let mut complete = false;
            for piece in got {
                if let Some(ReceiveEvent::Complete) = rx.feed(piece, &mut sink)? {
                    complete = true;
                }
            }
            if complete || disk.should_commit() {
                // Syncing may take seconds: not on the runtime that also carries the call.
                commit_off_runtime(&mut disk).await?;
            }
            if complete {
                send.write_all(&rx.received()).await.map_err(write_failed)?;
                let _ = send.finish();
                progress.send_modify(|p| {
                    p.bytes = p.total;
                    p.files_done = p.files;
                    p.current = None;
                });
                return Ok(TransferOutcome::Done {
                    saved: std::mem::take(&mut disk.saved),
                });
            }
            let (done, verified) = (disk.completed, disk.verified);
            progress.send_modify(|p| {
                // Verified file bytes: what a resume would keep, never the protocol's own.
                p.bytes = (resumed + verified).min(p.total);
                p.files_done = done;
            });
        }
    };
    let outcome: Result<TransferOutcome, ReceiveFailure> = work.await;
    // Only verified data was ever written: what is complete is saved, the partial file keeps
    // its verified chunks for a later resume (unless cancelled), nothing else appears.
    let (outcome, discard) = match outcome {
        Ok(done) => return done,
        Err(ReceiveFailure::Cancelled) => {
            stop_both(&mut send, &mut recv, CANCEL_CODE);
            (TransferOutcome::Cancelled { by_peer: false }, true)
        }
        Err(ReceiveFailure::Bad(e)) => {
            stop_both(&mut send, &mut recv, BAD_DATA_CODE);
            (TransferOutcome::Failed(e.to_string()), false)
        }
        Err(ReceiveFailure::Outcome(o)) => {
            let discard = matches!(o, TransferOutcome::Cancelled { by_peer: true });
            (o, discard)
        }
    };
    let _ = tokio::task::spawn_blocking(move || disk.stop(discard)).await;
    outcome
}

/// Commits what is complete on a blocking thread.
async fn commit_off_runtime(disk: &mut DiskSink) -> Result<(), TransferOutcome> {
    let batch = disk.take_batch();
    let (saved, result) = tokio::task::spawn_blocking(move || batch.commit())
        .await
        .map_err(|_| TransferOutcome::Failed("saving the files stopped unexpectedly".into()))?;
    disk.saved.extend(saved);
    result.map_err(TransferOutcome::Failed)
}

enum ReceiveFailure {
    Cancelled,
    Bad(ReceiveError),
    Outcome(TransferOutcome),
}

impl From<TransferOutcome> for ReceiveFailure {
    fn from(o: TransferOutcome) -> Self {
        ReceiveFailure::Outcome(o)
    }
}

impl From<ReceiveError> for ReceiveFailure {
    fn from(e: ReceiveError) -> Self {
        ReceiveFailure::Bad(e)
    }
}
