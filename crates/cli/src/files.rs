//! File transfers in the terminal: offering (`/send`), answering offers (by the person or by
//! the `--accept-files` policy), progress bars (or JSON progress events), and the outcome.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use extrasafe_core::text::for_display;
use extrasafe_core::transfer::offer::ValidOffer;
use extrasafe_net::transfer::{self, TransferFailure, TransferHandle, TransferId, TransferOutcome};
use extrasafe_net::{Blame, Call};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::exit::{Failure, USAGE};
use crate::output::Output;

pub use extrasafe_app::policy::{FilesDecision, FilesPolicy};

/// `--accept-files`: `ask`, `none`, or entries `anyone[:SIZE]` / `PEER-ID[:SIZE]`.
pub fn parse_policy(words: &[String]) -> Result<FilesPolicy, Failure> {
    FilesPolicy::parse(words).map_err(|e| {
        Failure::new(
            USAGE,
            format!(
                "--accept-files takes `ask`, `none`, `anyone[:SIZE]` or `PEER-ID[:SIZE]`; {e}."
            ),
        )
    })
}

/// The download folder when `--dir` is not given: `~/Downloads/EXTRA SAFE`, created (0700)
/// when missing (see [`extrasafe_net::transfer::default_download_dir`]). Files never land in
/// the current folder: without a home folder this fails, saying to use `--dir`.
pub fn try_default_dir() -> Result<PathBuf, Failure> {
    extrasafe_net::transfer::default_download_dir().map_err(|e| {
        Failure::new(
            USAGE,
            format!("Cannot pick a folder for received files: {e}. Choose one with --dir."),
        )
    })
}

pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

struct Running {
    handle: TransferHandle,
    sending: bool,
    bar: Option<ProgressBar>,
    started: Instant,
    label: String,
}

/// The transfers of the call in progress.
pub struct Files {
    out: Output,
    policy: FilesPolicy,
    /// `--dir`; `None`: the default folder, made when first needed.
    dir: Option<PathBuf>,
    /// `--allow-hidden-files`: take offered names with hidden parts.
    pub allow_hidden: bool,
    /// The contact name of the peer on the other end, if they are a contact.
    pub peer_name: Option<String>,
    pending: Vec<(TransferId, ValidOffer)>,
    running: Vec<Running>,
    bars: MultiProgress,
    /// The call's status lines (the stats), kept in place below the transfers' bars.
    status: Vec<ProgressBar>,
    last_json: Instant,
    /// Outcomes so far (for `send`/`receive` to exit with).
    pub outcomes: Vec<TransferOutcome>,
}

impl Files {
    /// Where accepted files go: `--dir`, else the default folder (made now if missing).
    /// Where received files go, as a full path (so a prompt never says "save into .").
    fn folder(&self) -> Result<PathBuf, Failure> {
        let d = match &self.dir {
            Some(d) => d.clone(),
            None => try_default_dir()?,
        };
        Ok(std::path::absolute(&d).unwrap_or(d))
    }

    pub fn new(out: Output, policy: FilesPolicy, dir: Option<PathBuf>) -> Self {
        let bars = MultiProgress::with_draw_target(if out.json {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        crate::output::print_above(&bars);
        Self {
            out,
            policy,
            dir,
            allow_hidden: false,
            peer_name: None,
            pending: Vec::new(),
            running: Vec::new(),
            bars,
            status: Vec::new(),
            last_json: Instant::now(),
            outcomes: Vec::new(),
        }
    }

    pub fn busy(&self) -> bool {
        !self.running.is_empty() || !self.pending.is_empty()
    }

    /// Returns when one of the running transfers ends (never, when none runs), so its end is
    /// reported at once rather than at the next progress tick.
    pub async fn next_end(&self) {
        let mut waits: Vec<_> = self
            .running
            .iter()
            .filter(|r| !r.handle.is_finished())
            .map(|r| Box::pin(r.handle.ended()))
            .collect();
        if waits.is_empty() {
            return std::future::pending().await;
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
        .await
    }

    pub fn running(&self) -> bool {
        self.running.iter().any(|r| !r.handle.is_finished())
    }

    fn bar(&self, total: u64, label: &str) -> Option<ProgressBar> {
        if self.out.json {
            return None;
        }
        let bar = match self.status.first() {
            Some(s) => self.bars.insert_before(s, ProgressBar::new(total)),
            None => self.bars.add(ProgressBar::new(total)),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Some(bar)
    }

    /// Shows the call's stats `lines` in place at the bottom of the terminal (updated, not
    /// repeated); false when nothing is drawn there (JSON, or not a terminal): print them.
    pub fn show_status(&mut self, lines: &[String]) -> bool {
        if self.out.json || self.bars.is_hidden() {
            return false;
        }
        while self.status.len() < lines.len() {
            let bar = self.bars.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            self.status.push(bar);
        }
        for (bar, line) in self.status.iter().zip(lines) {
            bar.set_message(line.clone());
            bar.tick();
        }
        true
    }

    /// The call is over: its status lines leave the screen.
    pub fn clear_status(&mut self) {
        for bar in self.status.drain(..) {
            bar.finish_and_clear();
        }
    }

    /// `/send PATH`: hashes, offers (all `paths` as one offer), and tracks the transfer.
    pub async fn send(&mut self, call: &Call, paths: &[PathBuf]) {
        let shown = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        self.out
            .hint(format!("Preparing {shown} (reading and hashing) …"));
        let (files, skipped) = match transfer::prepare(paths.to_vec()).await {
            Ok(f) => f,
            Err(e) => return self.out.warn(&format!("Cannot send {shown}: {e}.")),
        };
        for s in &skipped {
            self.out.warn(&format!(
                "Left out {} (a hidden name, a link or a special file).",
                s.display()
            ));
        }
        let total: u64 = files.iter().map(|f| f.prepared.size).sum();
        let count = files.len();
        match call.send_files(files).await {
            Ok(handle) => {
                let first = paths
                    .first()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let label = if paths.len() > 1 {
                    format!("→ {first} and {} more", paths.len() - 1)
                } else {
                    format!("→ {first}")
                };
                self.out.emit(
                    format!("Offered {count} file(s), {}; waiting for them to accept.", human_bytes(total)),
                    json!({"event": "files_offered_by_me", "id": handle.id, "files": count, "bytes": total}),
                );
                let bar = self.bar(total, &label);
                self.running.push(Running {
                    handle,
                    sending: true,
                    bar,
                    started: Instant::now(),
                    label,
                });
            }
            Err(e) => self.out.warn(&format!("Cannot send: {e}.")),
        }
    }

    /// An offer arrived: decided by the policy, or put to the person.
    pub fn offered(
        &mut self,
        call: &Call,
        id: TransferId,
        offer: ValidOffer,
    ) -> Option<(TransferId, bool)> {
        let peer = call.info().peer;
        let tops: Vec<String> = offer
            .top_level()
            .iter()
            .map(|(name, n, size)| {
                let name = for_display(name);
                if *n > 1 {
                    format!("{name} ({n} files, {})", human_bytes(*size))
                } else {
                    format!("{name} ({})", human_bytes(*size))
                }
            })
            .collect();
        let verified = "verify the code read aloud to be sure who this is";
        // A contact by the name you gave it; anyone else by the whole peer ID (a short form
        // is easy to forge).
        let who = match &self.peer_name {
            Some(name) => for_display(name),
            None => peer.to_string(),
        };
        // The folder given (made absolute); the default one is not looked up (or made) for an
        // offer the policy may decline.
        let folder = self
            .dir
            .as_ref()
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()));
        self.out.emit(
            format!(
                "{who} offers {} file(s), {} in all: {}\n  from {peer} ({verified})",
                offer.files.len(),
                human_bytes(offer.total),
                tops.join(", ")
            ),
            json!({"event": "files_offered", "id": id, "peer_id": peer.to_string(),
                   "contact": self.peer_name, "folder": folder.as_ref().map(|f| f.display().to_string()),
                   "files": offer.files.len(), "bytes": offer.total,
                   "names": offer.files.iter().take(100).map(|f| f.path.to_string()).collect::<Vec<_>>()}),
        );
        match self.policy.decide(&peer, offer.total) {
            decided @ (FilesDecision::Accept | FilesDecision::Decline) => {
                self.pending.push((id, offer));
                Some((id, decided == FilesDecision::Accept))
            }
            FilesDecision::Ask => {
                self.out.hint(match self.folder() {
                    Ok(d) => format!(
                        "Type /accept to save into {} (or /accept FOLDER), /decline to refuse.",
                        d.display()
                    ),
                    Err(f) => format!("{} Type /accept FOLDER, or /decline to refuse.", f.message),
                });
                self.pending.push((id, offer));
                None
            }
        }
    }

    /// Accepts offer `id` (the oldest pending if `None`) into `dir` (the default if `None`).
    pub fn accept(&mut self, call: &Call, id: Option<TransferId>, dir: Option<PathBuf>) {
        let Some(pos) = self.pick(id) else {
            return self.out.hint("No file offer is waiting.");
        };
        let dir = match dir.map_or_else(|| self.folder(), Ok) {
            Ok(d) => std::path::absolute(&d).unwrap_or(d),
            Err(f) => return self.out.warn(&f.message),
        };
        let (id, offer) = self.pending.remove(pos);
        match call.accept_files(id, dir.clone()) {
            Ok(handle) => {
                let label = format!("← {} file(s)", offer.files.len());
                self.out.emit(
                    format!("Receiving into {} …", dir.display()),
                    json!({"event": "files_accepted", "id": id, "dir": dir.display().to_string()}),
                );
                let bar = self.bar(offer.total, &label);
                self.running.push(Running {
                    handle,
                    sending: false,
                    bar,
                    started: Instant::now(),
                    label,
                });
            }
            Err(e) => {
                self.out.warn(&format!(
                    "Cannot receive: {e}. The offer is still open: /decline, or free space and /accept again."
                ));
                self.pending.insert(pos, (id, offer));
            }
        }
    }

    pub async fn decline(&mut self, call: &Call, id: Option<TransferId>) {
        let Some(pos) = self.pick(id) else {
            return self.out.hint("No file offer is waiting.");
        };
        let (id, _) = self.pending.remove(pos);
        let _ = call.decline_files(id).await;
        self.out.emit(
            "Declined; nothing was written.",
            json!({"event": "files_declined", "id": id}),
        );
    }

    fn pick(&self, id: Option<TransferId>) -> Option<usize> {
        match id {
            Some(id) => self.pending.iter().position(|p| p.0 == id),
            None => (!self.pending.is_empty()).then_some(0),
        }
    }

    pub fn cancel_all(&mut self) {
        for r in &self.running {
            r.handle.cancel();
        }
        if self.running.is_empty() {
            self.out.hint("No transfer is running.");
        }
    }

    /// Updates bars (or emits JSON progress twice a second) and reports what finished.
    pub async fn tick(&mut self) {
        let json_due = self.out.json && self.last_json.elapsed() >= Duration::from_millis(500);
        if json_due {
            self.last_json = Instant::now();
        }
        for r in &self.running {
            let p = r.handle.progress();
            if let Some(bar) = &r.bar {
                bar.set_length(p.total.max(1));
                bar.set_position(p.bytes);
                bar.set_message(format!("{}/{} files", p.files_done, p.files));
            }
            if json_due {
                let secs = r.started.elapsed().as_secs_f64().max(0.001);
                let rate = (p.bytes - p.resumed) as f64 / secs;
                let eta = if rate > 0.0 {
                    p.total.saturating_sub(p.bytes) as f64 / rate
                } else {
                    f64::NAN
                };
                self.out.emit(
                    "",
                    json!({"event": "transfer_progress", "id": r.handle.id,
                           "direction": if r.sending { "send" } else { "receive" },
                           "bytes": p.bytes, "total": p.total, "files_done": p.files_done,
                           "files": p.files, "resumed": p.resumed, "bytes_per_sec": rate.round(),
                           "eta_s": if eta.is_finite() { json!(eta.round()) } else { json!(null) }}),
                );
            }
        }
        let mut i = 0;
        while i < self.running.len() {
            if !self.running[i].handle.is_finished() {
                i += 1;
                continue;
            }
            let r = self.running.remove(i);
            let secs = r.started.elapsed().as_secs_f64();
            let p = r.handle.progress();
            if let Some(bar) = &r.bar {
                bar.finish_and_clear();
            }
            let id = r.handle.id;
            let outcome = r.handle.finished().await;
            let moved = p.bytes.saturating_sub(p.resumed);
            let rate = moved as f64 / secs.max(0.001);
            let human = match &outcome {
                TransferOutcome::Done { .. } if r.sending => format!(
                    "{}: delivered and verified, {} in {secs:.1} s ({}/s).",
                    r.label,
                    human_bytes(p.total),
                    human_bytes(rate as u64)
                ),
                TransferOutcome::Done { saved } => format!(
                    "{}: saved and verified, {} in {secs:.1} s ({}/s){}: {}",
                    r.label,
                    human_bytes(p.total),
                    human_bytes(rate as u64),
                    if p.resumed > 0 {
                        format!(", {} resumed from an earlier attempt", human_bytes(p.resumed))
                    } else {
                        String::new()
                    },
                    saved
                        .iter()
                        .take(5)
                        .map(|s| s.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                        + if saved.len() > 5 { ", …" } else { "" }
                ),
                TransferOutcome::Declined => format!("{}: they declined.", r.label),
                TransferOutcome::Cancelled { by_peer: true } => {
                    format!("{}: they cancelled.", r.label)
                }
                TransferOutcome::Cancelled { by_peer: false } => format!("{}: cancelled.", r.label),
                TransferOutcome::Failed(why) => format!(
                    "{}: failed: {}. Nothing incomplete was saved under a real name; {}",
                    r.label,
                    for_display(&why.to_string()),
                    match (why, why.blame()) {
                        (TransferFailure::Storage(_), _) => "free some space or choose another folder with --dir; sending the same files again resumes.",
                        (TransferFailure::PeerCannotSave, _) => "they can free some space and ask you to send again; it resumes.",
                        (TransferFailure::Source { .. }, _) => "check that the file is still there and readable, then send again.",
                        (_, Blame::Network) => "sending the same files again resumes.",
                        (_, Blame::Peer | Blame::Incompatible) => "nothing unverified was kept.",
                        (_, Blame::Local | Blame::Policy) => "this is a fault in this program; sending again may work.",
                    }
                ),
            };
            let (kind, detail) = match &outcome {
                TransferOutcome::Done { saved } => (
                    "done",
                    json!(saved
                        .iter()
                        .map(|s| s.display().to_string())
                        .collect::<Vec<_>>()),
                ),
                TransferOutcome::Declined => ("declined", json!(null)),
                TransferOutcome::Cancelled { by_peer } => {
                    ("cancelled", json!({"by_peer": by_peer}))
                }
                TransferOutcome::Failed(why) => (
                    "failed",
                    json!({"why": for_display(&why.to_string()), "blame": format!("{:?}", why.blame()).to_lowercase()}),
                ),
            };
            self.out.emit(
                human,
                json!({"event": "transfer_done", "id": id, "direction": if r.sending { "send" } else { "receive" },
                       "outcome": kind, "detail": detail, "bytes": p.total, "resumed": p.resumed,
                       "seconds": secs, "bytes_per_sec": rate.round()}),
            );
            self.outcomes.push(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_policy_is_a_usage_error_naming_the_entry() {
        let f = parse_policy(&["anyone:lots".into()]).unwrap_err();
        assert_eq!(f.code, USAGE);
        assert!(f.message.contains("`anyone:lots`"), "{}", f.message);
        assert!(parse_policy(&["es1nonsense".into()]).is_err());
    }
}
