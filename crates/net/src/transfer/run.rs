//! The tasks that move a transfer's bytes: the sender's, the receiver's, and the intake that
//! reads an arriving offer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use extrasafe_core::transfer::offer::ValidOffer;
use extrasafe_core::transfer::receive::{
    FileSink, ReceiveError, ReceiveEvent, Receiver, SinkError, StorageProblem,
};
use extrasafe_core::transfer::send::{SendEvent, Sender};
use extrasafe_core::transfer::wire::{BAD_DATA_CODE, CANCEL_CODE, SAVE_FAILED_CODE};
use quinn::{ReadError, RecvStream, SendStream, VarInt, WriteError};
use tokio::sync::{mpsc, watch};

use super::disk::{DiskSink, NamedSink};
use super::{
    LocalFile, PendingOffer, Progress, TransferBook, TransferFailure as F, TransferOutcome,
};
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
    ) -> Result<(), SinkError> {
        Err(early_data())
    }
    fn write(&mut self, _: usize, _: &[u8]) -> Result<(), SinkError> {
        Err(early_data())
    }
    fn end(&mut self, _: usize) -> Result<(), SinkError> {
        Err(early_data())
    }
}

fn early_data() -> SinkError {
    SinkError::new(
        StorageProblem::Other,
        "file data before the offer was accepted",
    )
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
        TransferOutcome::Failed(F::DataRefused)
    } else if code == VarInt::from_u32(SAVE_FAILED_CODE) {
        TransferOutcome::Failed(F::PeerCannotSave)
    } else {
        TransferOutcome::Failed(F::StoppedByPeer)
    }
}

fn write_failed(e: WriteError) -> TransferOutcome {
    match e {
        WriteError::Stopped(code) => peer_stop(code),
        _ => TransferOutcome::Failed(F::ConnectionLost),
    }
}

fn read_failed(e: ReadError) -> TransferOutcome {
    match e {
        ReadError::Reset(code) => peer_stop(code),
        _ => TransferOutcome::Failed(F::ConnectionLost),
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
            SendEvent::Received => {
                return Err(TransferOutcome::Failed(F::Protocol(
                    "\"received\" before any data".into(),
                )))
            }
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
                let block = block.map_err(|e| {
                    TransferOutcome::Failed(F::Source {
                        path: f.source.clone(),
                        why: e.to_string(),
                    })
                })?;
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
            _ => Err(TransferOutcome::Failed(F::Protocol(
                "an answer after the data that is not \"received\"".into(),
            ))),
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
                Err(e) => return Err(TransferOutcome::Failed(F::Protocol(e.to_string()))),
            },
            Ok(None) => {
                return Err(TransferOutcome::Failed(F::Protocol(
                    "the stream closed without an answer".into(),
                )))
            }
            Err(e) => return Err(read_failed(e)),
        }
    }
}

/// Receives an accepted offer into `dir`.
///
/// The stream is read here, on the runtime; everything that touches the disk (creating and
/// writing files, re-reading a partial file to resume, syncing and naming what is complete)
/// and the hashing that checks the data run on a thread of their own, the file writer, so
/// that a slow disk or a resume that re-reads gigabytes never holds up the runtime that also
/// carries the call's audio. Received pieces reach the writer through a short queue: when
/// the disk is slower than the network, the queue fills, the stream is no longer read, and
/// QUIC's flow control slows the sender.
pub(crate) async fn receive(
    mut pending: PendingOffer,
    dir: PathBuf,
    resume: Vec<u64>,
    progress: watch::Sender<Progress>,
    mut cancel: watch::Receiver<bool>,
) -> TransferOutcome {
    let offer: ValidOffer = pending.offer.clone();
    // Every file is created through this handle of the folder, never by path again.
    let disk = match DiskSink::open(&dir, pending.rules) {
        Ok(d) => d,
        Err(e) => {
            stop_both(&mut pending.send, &mut pending.recv, CANCEL_CODE);
            return TransferOutcome::Failed(F::Storage(SinkError::io(
                format_args!("cannot save into {}", dir.display()),
                &e,
            )));
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
        rx,
        ..
    } = pending;
    let progress = Arc::new(progress);
    let (pieces_tx, pieces_rx) = mpsc::channel::<Vec<bytes::Bytes>>(WRITER_QUEUE);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<Written>();
    {
        let (offer, progress) = (offer.clone(), progress.clone());
        let spawned = std::thread::Builder::new()
            .name("extrasafe-file-writer".into())
            .spawn(move || {
                let written = write_files(rx, disk, &offer, pieces_rx, &progress, resumed);
                let _ = done_tx.send(written);
            });
        if let Err(e) = spawned {
            stop_both(&mut send, &mut recv, CANCEL_CODE);
            tracing::warn!(error = %e, "the file writer thread could not start");
            return TransferOutcome::Failed(F::Internal("the file writer could not start"));
        }
    }
    // A cancel stops the waiting on the stream, never the writer (a commit under way would
    // leave its batch half named): the writer finishes what it holds, then stops.
    let mut early: Option<Written> = None;
    let read = async {
        tokio::select! {
            r = send.write_all(&accept) => r.map_err(|e| ReadEnd::Outcome(write_failed(e)))?,
            _ = cancel.wait_for(|c| *c) => return Err(ReadEnd::Cancelled),
        }
        // Many received pieces per call, without copying them out of QUIC's buffers.
        let mut pieces: Vec<bytes::Bytes> = vec![bytes::Bytes::new(); 64];
        loop {
            let read = tokio::select! {
                r = recv.read_chunks(&mut pieces) => r,
                _ = cancel.wait_for(|c| *c) => return Err(ReadEnd::Cancelled),
                // The writer stopped (all received, or the data did not verify, or the disk
                // failed): nothing more to read.
                w = &mut done_rx => {
                    early = w.ok();
                    return Ok(());
                }
            };
            match read {
                Ok(Some(n)) => {
                    let batch = pieces[..n].to_vec();
                    tokio::select! {
                        r = pieces_tx.send(batch) => if r.is_err() {
                            // The writer is done: its result says how.
                            return Ok(());
                        },
                        _ = cancel.wait_for(|c| *c) => return Err(ReadEnd::Cancelled),
                    }
                }
                // The sender finished its side: the writer tells whether that was after the
                // last byte.
                Ok(None) => return Ok(()),
                Err(e) => return Err(ReadEnd::Outcome(read_failed(e))),
            }
        }
    };
    let read: Result<(), ReadEnd> = read.await;
    // No more pieces: the writer finishes the queue and stops.
    drop(pieces_tx);
    let written = match early {
        Some(w) => Some(w),
        None => done_rx.await.ok(),
    };
    let Some(Written { mut disk, result }) = written else {
        stop_both(&mut send, &mut recv, CANCEL_CODE);
        return TransferOutcome::Failed(F::Internal("saving the files stopped unexpectedly"));
    };
    // Only verified data was ever written: what is complete is saved, the partial file keeps
    // its verified chunks for a later resume (unless cancelled), nothing else appears.
    let (outcome, discard) = match (read, result) {
        (Err(ReadEnd::Cancelled), _) => {
            stop_both(&mut send, &mut recv, CANCEL_CODE);
            (TransferOutcome::Cancelled { by_peer: false }, true)
        }
        // All of it arrived and is saved: the answer that says so.
        (_, Ok(answer)) => {
            let told = send.write_all(&answer).await.map_err(write_failed);
            let _ = send.finish();
            progress.send_modify(|p| {
                p.bytes = p.total;
                p.files_done = p.files;
                p.current = None;
            });
            let saved = std::mem::take(&mut disk.saved);
            return match told {
                Ok(()) => TransferOutcome::Done { saved },
                Err(o) => o,
            };
        }
        (Err(ReadEnd::Outcome(o)), _) => {
            let discard = matches!(o, TransferOutcome::Cancelled { by_peer: true });
            (o, discard)
        }
        // Our own disk failed: the sender hears that, not that its data was bad.
        (Ok(()), Err(ReceiveFailure::Bad(e @ ReceiveError::Sink { .. }))) => {
            stop_both(&mut send, &mut recv, SAVE_FAILED_CODE);
            (TransferOutcome::Failed(e.into()), false)
        }
        (Ok(()), Err(ReceiveFailure::Bad(e))) => {
            stop_both(&mut send, &mut recv, BAD_DATA_CODE);
            (TransferOutcome::Failed(e.into()), false)
        }
        (Ok(()), Err(ReceiveFailure::Outcome(o))) => {
            let code = match o {
                TransferOutcome::Failed(F::Storage(_)) => SAVE_FAILED_CODE,
                _ => CANCEL_CODE,
            };
            stop_both(&mut send, &mut recv, code);
            (o, false)
        }
    };
    let _ = tokio::task::spawn_blocking(move || disk.stop(discard)).await;
    outcome
}

/// Batches of received pieces waiting for the file writer (each up to 64 QUIC chunks).
const WRITER_QUEUE: usize = 16;

/// How the reading of a transfer's stream ended, when not with the stream's end.
enum ReadEnd {
    Cancelled,
    Outcome(TransferOutcome),
}

/// What the file writer hands back: the disk (to stop it: commit, leave or remove the
/// partial file) and, once everything arrived and is saved, the answer that says so.
struct Written {
    disk: DiskSink,
    result: Result<Vec<u8>, ReceiveFailure>,
}

/// The file writer: checks and writes the pieces as they come, commits what is complete,
/// and keeps `progress` up to date. Runs on its own thread (it blocks on the disk).
fn write_files(
    mut rx: Receiver,
    mut disk: DiskSink,
    offer: &ValidOffer,
    mut pieces: mpsc::Receiver<Vec<bytes::Bytes>>,
    progress: &watch::Sender<Progress>,
    resumed: u64,
) -> Written {
    let mut run = || -> Result<Vec<u8>, ReceiveFailure> {
        while let Some(batch) = pieces.blocking_recv() {
            let mut sink = NamedSink {
                disk: &mut disk,
                offer,
            };
            let mut complete = false;
            for piece in &batch {
                if let Some(ReceiveEvent::Complete) = rx.feed(piece, &mut sink)? {
                    complete = true;
                }
            }
            if complete || disk.should_commit() {
                let (saved, result) = disk.take_batch().commit();
                disk.saved.extend(saved);
                result.map_err(|e| TransferOutcome::Failed(F::Storage(e)))?;
            }
            if complete {
                return Ok(rx.received());
            }
            let (done, verified) = (disk.completed, disk.verified);
            progress.send_modify(|p| {
                // Verified file bytes: what a resume would keep, never the protocol's own.
                p.bytes = (resumed + verified).min(p.total);
                p.files_done = done;
            });
        }
        // The stream ended (or was given up) before the last byte.
        rx.finish()?;
        Err(ReceiveFailure::Outcome(TransferOutcome::Failed(
            F::Protocol("the stream ended before the last byte".into()),
        )))
    };
    let result = run();
    Written { disk, result }
}

enum ReceiveFailure {
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
