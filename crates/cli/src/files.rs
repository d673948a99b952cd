//! File transfers in the terminal: offering (`/send`), answering offers (by the person or by
//! the `--accept-files` policy), progress bars (or JSON progress events), and the outcome.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use extrasafe_app::transfers::{AnswerError, TransferEvent, Transfers};
use extrasafe_core::text::for_display;
use extrasafe_core::transfer::offer::ValidOffer;
use extrasafe_net::transfer::{self, TransferFailure, TransferId, TransferOutcome};
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

/// How a transfer is drawn: its bar (none with `--json`) and its name.
struct Shown {
    bar: Option<ProgressBar>,
    label: String,
}

/// The transfers of the call in progress, as this terminal shows them. The transfers
/// themselves (offers, answers, progress, ends) are `extrasafe_app::transfers`'s.
pub struct Files {
    out: Output,
    /// `--dir`; `None`: the default folder, made when first needed.
    dir: Option<PathBuf>,
    /// `--allow-hidden-files`: take offered names with hidden parts.
    pub allow_hidden: bool,
    /// The contact name of the peer on the other end, if they are a contact.
    pub peer_name: Option<String>,
    transfers: Transfers,
    /// Keyed by id and direction (we send it).
    shown: HashMap<(TransferId, bool), Shown>,
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
            dir,
            allow_hidden: false,
            peer_name: None,
            transfers: Transfers::new(policy),
            shown: HashMap::new(),
            bars,
            status: Vec::new(),
            last_json: Instant::now(),
            outcomes: Vec::new(),
        }
    }

    pub fn busy(&self) -> bool {
        self.transfers.busy()
    }

    /// Returns when one of the running transfers ends (never, when none runs), so its end is
    /// reported at once rather than at the next progress tick.
    pub async fn next_end(&self) {
        self.transfers.next_end().await;
    }

    pub fn running(&self) -> bool {
        self.transfers.running()
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
        // Nothing is read for a send that could not go now.
        if let Err(e) = self.transfers.room() {
            return self.out.warn(&format!(
                "Cannot send {shown}: {e}; send it when one has finished."
            ));
        }
        self.out
            .hint(format!("Preparing {shown} (reading and hashing) …"));
        let prepared = match transfer::prepare(paths.to_vec()).await {
            Ok(f) => f,
            Err(e) => {
                return self
                    .out
                    .warn(&format!("Cannot send {shown}: {}.", cannot_prepare(&e)))
            }
        };
        for s in &prepared.missing {
            self.out.warn(&format!(
                "Left out {}: there is no such file or folder.",
                s.display()
            ));
        }
        for s in &prepared.skipped {
            self.out.warn(&format!(
                "Left out {} (a hidden name, a link or a special file).",
                s.display()
            ));
        }
        match self.transfers.offer(call, prepared.files).await {
            Ok(started) => {
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
                let (count, total) = (started.files, started.bytes);
                self.out.emit(
                    format!("Offered {count} file(s), {}; waiting for them to accept.", human_bytes(total)),
                    json!({"event": "files_offered_by_me", "id": started.id, "files": count, "bytes": total}),
                );
                let bar = self.bar(total, &label);
                self.shown.insert((started.id, true), Shown { bar, label });
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
        match self.transfers.offered(&peer, id, offer) {
            decided @ (FilesDecision::Accept | FilesDecision::Decline) => {
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
                None
            }
        }
    }

    /// Accepts offer `id` (the oldest pending if `None`) into `dir` (the default if `None`).
    pub fn accept(&mut self, call: &Call, id: Option<TransferId>, dir: Option<PathBuf>) {
        let waiting = self
            .transfers
            .pending()
            .any(|(i, _)| id.is_none_or(|id| id == i));
        if !waiting {
            return self.out.hint("No file offer is waiting.");
        }
        let dir = match dir.map_or_else(|| self.folder(), Ok) {
            Ok(d) => d,
            Err(f) => return self.out.warn(&f.message),
        };
        match self.transfers.accept(call, id, &dir) {
            Ok(started) => {
                let label = format!("← {} file(s)", started.files);
                let dir = started.folder.unwrap_or(dir);
                self.out.emit(
                    format!("Receiving into {} …", dir.display()),
                    json!({"event": "files_accepted", "id": started.id, "dir": dir.display().to_string()}),
                );
                let bar = self.bar(started.bytes, &label);
                self.shown.insert((started.id, false), Shown { bar, label });
            }
            Err(AnswerError::NoOffer) => self.out.hint("No file offer is waiting."),
            Err(e) => self.out.warn(&format!(
                "Cannot receive: {e}. The offer is still open: /decline, or free space and /accept again."
            )),
        }
    }

    pub async fn decline(&mut self, call: &Call, id: Option<TransferId>) {
        match self.transfers.decline(call, id).await {
            Ok(id) => self.out.emit(
                "Declined; nothing was written.",
                json!({"event": "files_declined", "id": id}),
            ),
            Err(AnswerError::NoOffer) => self.out.hint("No file offer is waiting."),
            Err(e) => self.out.warn(&format!("Cannot decline: {e}.")),
        }
    }

    pub fn cancel_all(&mut self) {
        if self.transfers.cancel_all() == 0 {
            self.out.hint("No transfer is running.");
        }
    }

    /// Updates bars (or emits JSON progress twice a second) and reports what finished.
    pub async fn tick(&mut self) {
        let json_due = self.out.json && self.last_json.elapsed() >= Duration::from_millis(500);
        if json_due {
            self.last_json = Instant::now();
        }
        for event in self.transfers.poll().await {
            self.show(event, json_due);
        }
    }

    /// The call is over: each transfer gets 2 s to end by itself, and what still runs then
    /// is stopped; every end is reported.
    pub async fn wind_up(&mut self) {
        for event in self.transfers.wind_up(Duration::from_secs(2)).await {
            self.show(event, false);
        }
    }

    fn show(&mut self, event: TransferEvent, json_due: bool) {
        match event {
            TransferEvent::Progress(st) => {
                let p = &st.progress;
                if let Some(bar) = self
                    .shown
                    .get(&(st.id, st.outgoing))
                    .and_then(|s| s.bar.as_ref())
                {
                    bar.set_length(p.total.max(1));
                    bar.set_position(p.bytes);
                    bar.set_message(format!("{}/{} files", p.files_done, p.files));
                }
                if json_due {
                    self.out.emit(
                        "",
                        json!({"event": "transfer_progress", "id": st.id,
                               "direction": if st.outgoing { "send" } else { "receive" },
                               "bytes": p.bytes, "total": p.total, "files_done": p.files_done,
                               "files": p.files, "resumed": p.resumed, "bytes_per_sec": st.bytes_per_sec,
                               "eta_s": st.eta.map(|e| e.as_secs_f64().round())}),
                    );
                }
            }
            TransferEvent::Ended {
                status, outcome, ..
            } => self.ended(&status, outcome),
            // The call ended first: stopped here.
            TransferEvent::CutShort(st) => {
                let shown = self.shown.remove(&(st.id, st.outgoing));
                if let Some(bar) = shown.as_ref().and_then(|s| s.bar.as_ref()) {
                    bar.finish_and_clear();
                }
                let label = shown.map_or_else(|| format!("transfer {}", st.id), |s| s.label);
                self.out.emit(
                    format!(
                        "{label}: stopped, the call ended before it finished; sending the same files again resumes."
                    ),
                    json!({"event": "transfer_done", "id": st.id,
                           "direction": if st.outgoing { "send" } else { "receive" },
                           "outcome": "cut_short", "detail": null, "bytes": st.progress.total,
                           "resumed": st.progress.resumed, "seconds": st.elapsed.as_secs_f64(),
                           "bytes_per_sec": st.bytes_per_sec}),
                );
                self.outcomes
                    .push(TransferOutcome::Cancelled { by_peer: false });
            }
        }
    }

    fn ended(&mut self, st: &extrasafe_app::transfers::TransferStatus, outcome: TransferOutcome) {
        let shown = self.shown.remove(&(st.id, st.outgoing));
        if let Some(bar) = shown.as_ref().and_then(|s| s.bar.as_ref()) {
            bar.finish_and_clear();
        }
        let label = shown
            .map(|s| s.label)
            .unwrap_or_else(|| format!("transfer {}", st.id));
        let (id, p, secs) = (st.id, &st.progress, st.elapsed.as_secs_f64());
        let rate = st.bytes_per_sec as f64;
        let human = match &outcome {
            TransferOutcome::Done { .. } if st.outgoing => format!(
                "{label}: delivered and verified, {} in {secs:.1} s ({}/s).",
                human_bytes(p.total),
                human_bytes(rate as u64)
            ),
            TransferOutcome::Done { saved } => format!(
                "{label}: saved and verified, {} in {secs:.1} s ({}/s){}: {}",
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
            TransferOutcome::Declined => format!("{label}: they declined."),
            TransferOutcome::Cancelled { by_peer: true } => format!("{label}: they cancelled."),
            TransferOutcome::Cancelled { by_peer: false } => format!("{label}: cancelled."),
            TransferOutcome::Failed(why) => format!(
                "{label}: failed: {}. Nothing incomplete was saved under a real name; {}",
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
            TransferOutcome::Cancelled { by_peer } => ("cancelled", json!({"by_peer": by_peer})),
            TransferOutcome::Failed(why) => (
                "failed",
                json!({"why": for_display(&why.to_string()), "blame": format!("{:?}", why.blame()).to_lowercase()}),
            ),
        };
        self.out.emit(
            human,
            json!({"event": "transfer_done", "id": id, "direction": if st.outgoing { "send" } else { "receive" },
                   "outcome": kind, "detail": detail, "bytes": p.total, "resumed": p.resumed,
                   "seconds": secs, "bytes_per_sec": st.bytes_per_sec}),
        );
        self.outcomes.push(outcome);
    }
}

/// Why the files to send could not be prepared, for the person.
fn cannot_prepare(e: &transfer::PrepareError) -> String {
    use std::io::ErrorKind;
    match e {
        transfer::PrepareError::Io { path, source } => match source.kind() {
            ErrorKind::NotFound => format!("{} does not exist", path.display()),
            ErrorKind::PermissionDenied => format!("you may not read {}", path.display()),
            _ => format!("{} cannot be read ({source})", path.display()),
        },
        other => other.to_string(),
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
