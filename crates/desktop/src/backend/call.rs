//! Calls and their media: placing and answering, audio and video, chat, files, figures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use extrasafe_app::dial::{place, search_secrets, Outgoing};
use extrasafe_app::media::CallMedia;
use extrasafe_app::policy::FilesDecision;
use extrasafe_app::transfers::{AnswerError, TransferEvent, Transfers};
use extrasafe_core::PeerId;
use extrasafe_net::audio::AudioCall;
use extrasafe_net::dial::{DialError, DialStep};
use extrasafe_net::media::io::{AudioSink, AudioSource, Discard, Silence};
use extrasafe_net::media::AudioConfig;
use extrasafe_net::transfer::{self, TransferOutcome};
use extrasafe_net::video::{VideoCall, VideoConfig};
use extrasafe_net::video_media::{Screen, TestPattern, VideoSource};
use extrasafe_net::{Call, CallEvent, Node};

use super::{AbortOnDrop, Backend, Dialling, Live, Outbox};
use crate::model::{Offer, PathStats, TransferState, Update, VideoChoice};
use crate::preview::{Preview, Waking};

/// Our own picture may wait this long for a repaint (theirs is shown at once).
const PREVIEW_WAKE: Duration = Duration::from_millis(100);
use crate::words;

/// Calls and their media.
impl Backend {
    pub(super) fn name_of(&self, peer: &PeerId) -> (Option<String>, bool) {
        match self.book.by_peer(peer) {
            Some(c) => (Some(c.name.clone()), c.verified),
            None => (None, false),
        }
    }

    pub(super) fn who(&self, peer: &PeerId) -> String {
        self.name_of(peer)
            .0
            .unwrap_or_else(|| words::short_peer(&peer.to_string()))
    }

    pub(super) fn call(&mut self, peer_id: &str, video: bool) {
        let Some(node) = self.node.clone() else {
            return;
        };
        if self.live.is_some() || self.dialling.is_some() {
            self.out
                .error("You are already in a call. Hang up first.".into());
            return;
        }
        let Some(contact) = self.book.find(peer_id).cloned() else {
            return;
        };
        let peer = contact.peer;
        let secrets = self
            .identity
            .as_ref()
            .and_then(|identity| search_secrets(identity, peer).ok());
        let ticket = contact.ticket();
        let steps = self.steps_tx.clone();
        let reach = self.opts.reach.clone();
        let events = self.reach_tx.clone();
        // The node's socket is the one our presence keeps mapped, if it does.
        let mapping = self.presence.as_ref().and_then(|p| p.port_mapping());
        // Aborting the task (hanging up while it dials) drops its port mapping.
        let task = tokio::spawn(async move {
            place(
                &node,
                peer,
                ticket.as_ref(),
                secrets,
                &reach,
                &events,
                mapping,
                |s| {
                    let _ = steps.send((peer, s));
                },
            )
            .await
        });
        self.dialling = Some(Dialling {
            task,
            peer,
            who: contact.name.clone(),
            video,
        });
        self.out.send(Update::Dialling {
            peer_id: peer.to_string(),
            contact: Some(contact.name),
            verified: contact.verified,
            video,
            step: "Connecting …".into(),
        });
    }

    pub(super) fn step(&mut self, peer: PeerId, step: DialStep) {
        let Some(Dialling {
            peer: dialling,
            video,
            ..
        }) = &self.dialling
        else {
            return;
        };
        if *dialling != peer {
            return;
        }
        let text = match step {
            DialStep::Ticket => "Trying their last known addresses …".to_string(),
            DialStep::TicketSilent => {
                "Their last known addresses did not answer; looking for them …".into()
            }
            DialStep::Lan => "Looking for them on this network …".into(),
            DialStep::LanUnavailable(e) => format!("This network cannot be searched ({e}) …"),
            DialStep::Dht => "Looking them up over the internet …".into(),
            _ => return,
        };
        let (contact, verified) = self.name_of(&peer);
        self.out.send(Update::Dialling {
            peer_id: peer.to_string(),
            contact,
            verified,
            video: *video,
            step: text,
        });
    }

    pub(super) fn dialled(&mut self, r: Result<(Call, Outgoing), DialError>) {
        let Some(Dialling {
            peer, who, video, ..
        }) = self.dialling.take()
        else {
            return;
        };
        match r {
            Ok((call, outgoing)) => {
                let mut live = Live::new(call, peer, who, video, self.opts.accept_files.clone());
                live.outgoing = Some(outgoing);
                self.live = Some(live);
            }
            Err(e) => self
                .out
                .send(Update::CallFailed(words::dial_failed(&who, &e))),
        }
    }

    /// A call came in: it rings (the node already told anyone else that we are busy).
    pub(super) fn ringing(&mut self, call: Call) {
        let peer = call.info().peer;
        if self.live.is_some() || self.dialling.is_some() {
            call.decline();
            return;
        }
        let who = self.who(&peer);
        self.live = Some(Live::new(
            call,
            peer,
            who,
            false,
            self.opts.accept_files.clone(),
        ));
    }

    pub(super) async fn on_event(&mut self, e: Option<CallEvent>) {
        let Some(live) = &mut self.live else {
            return;
        };
        let peer = live.peer;
        match e {
            Some(CallEvent::Incoming) => {
                let (contact, verified) = self.name_of(&peer);
                self.out.send(Update::Incoming {
                    peer_id: peer.to_string(),
                    contact,
                    verified,
                });
                let ringer = self.ring().await;
                if let Some(l) = &mut self.live {
                    l.ringer = ringer;
                }
            }
            Some(CallEvent::Ringing) => self.out.send(Update::Ringing),
            Some(CallEvent::VerificationCode(code)) => {
                self.out.send(Update::VerificationCode(code))
            }
            Some(CallEvent::Connected { .. }) => {
                live.ringer = None;
                let info = live.call.info().clone();
                live.connected = true;
                self.out.send(Update::Connected {
                    sas: info.sas().unwrap_or_default(),
                    safety_number: info.safety_number.clone(),
                });
                self.start_media().await;
                self.local_media();
            }
            Some(CallEvent::Reconnecting) => self.out.send(Update::Reconnecting(true)),
            Some(CallEvent::Reconnected) => self.out.send(Update::Reconnecting(false)),
            Some(CallEvent::Chat { text, .. }) => self.out.send(Update::Chat {
                mine: false,
                text: extrasafe_core::text::for_display(&text),
                at: clock(),
            }),
            Some(CallEvent::FilesOffered { id, offer }) => {
                let label = match offer.files.as_slice() {
                    [one] => extrasafe_core::text::for_display(one.path.as_str()),
                    many => format!("{} files", many.len()),
                };
                live.offers.insert(id, label.clone());
                let shown = Offer {
                    id,
                    files: offer
                        .files
                        .iter()
                        .map(|f| (extrasafe_core::text::for_display(f.path.as_str()), f.size))
                        .collect(),
                    total: offer.total,
                };
                // The file policy (--accept-files) answers before anyone is asked.
                match live.transfers.offered(&peer, id, offer) {
                    FilesDecision::Accept => {
                        self.out.info(words::files_auto(&label, true));
                        self.accept_offer(id);
                    }
                    FilesDecision::Decline => {
                        let _ = live.transfers.decline(&live.call, Some(id)).await;
                        live.offers.remove(&id);
                        self.out.info(words::files_auto(&label, false));
                    }
                    FilesDecision::Ask => self.out.send(Update::Offer(shown)),
                }
            }
            Some(CallEvent::Ended(reason)) => {
                let who = live.who.clone();
                self.end_media().await;
                let (why, failed) = words::ended(&who, &reason);
                self.out.send(if failed {
                    Update::CallFailed(why)
                } else {
                    Update::Ended(why)
                });
            }
            Some(_) => {}
            None => {
                let who = live.who.clone();
                self.end_media().await;
                let (why, _) = words::ended(&who, &extrasafe_core::EndReason::PeerVanished);
                self.out.send(Update::CallFailed(why));
            }
        }
    }

    /// Rings on the chosen speaker, if there is one.
    async fn ring(&self) -> Option<AbortOnDrop> {
        let (server, list) = (self.sound.as_ref()?, self.devices.as_ref()?);
        let name = list
            .speaker(self.settings.speaker.as_deref())
            .ok()?
            .name
            .clone();
        let speaker = within(server.open_speaker_exact(&name)).await.ok()?;
        Some(AbortOnDrop(tokio::spawn(crate::ring::play(Box::new(
            speaker,
        )))))
    }

    pub(super) fn local_media(&self) {
        if let Some(l) = &self.live {
            self.out.send(Update::LocalMedia {
                muted: l.muted,
                camera_on: l.media.as_ref().map_or(l.video_wanted, |m| {
                    m.state().camera_on && m.video().is_some()
                }),
                sharing: l.media.as_ref().is_some_and(|m| m.state().sharing),
            });
        }
    }

    /// The call is up: audio from the chosen devices; video both ways (what the peer sends is
    /// shown even if we send none).
    pub(super) async fn start_media(&mut self) {
        let source: Box<dyn AudioSource> = match (&self.sound, &self.devices) {
            (Some(server), Some(list)) => match list.mic(self.settings.mic.as_deref()) {
                Ok(d) => match within(server.open_mic_exact(&d.name)).await {
                    Ok(m) => Box::new(m),
                    Err(e) => {
                        self.out.error(format!(
                            "The microphone could not be opened ({e}); they hear silence. \
                             Pick another one in Settings."
                        ));
                        Box::new(Silence)
                    }
                },
                Err(_) => Box::new(Silence),
            },
            _ => Box::new(Silence),
        };
        let sink: Box<dyn AudioSink> = match (&self.sound, &self.devices) {
            (Some(server), Some(list)) => match list.speaker(self.settings.speaker.as_deref()) {
                Ok(d) => match within(server.open_speaker_exact(&d.name)).await {
                    Ok(s) => Box::new(s),
                    Err(e) => {
                        self.out.error(format!(
                            "The speaker could not be opened ({e}); you will not hear them. \
                             Pick another one in Settings."
                        ));
                        Box::new(Discard)
                    }
                },
                Err(_) => Box::new(Discard),
            },
            _ => Box::new(Discard),
        };
        let Some(live) = &mut self.live else {
            return;
        };
        let config = AudioConfig {
            echo_cancellation: self.settings.echo_cancel,
            gain_control: true,
            ..AudioConfig::default()
        };
        let audio = match AudioCall::start(live.call.media(), config, source, sink) {
            Ok(a) => Some(a),
            Err(e) => {
                self.out.error(format!(
                    "Sound could not start ({e}); chat and video still work."
                ));
                None
            }
        };
        self.pictures.remote.clear();
        self.pictures.preview.clear();
        let source = if live.video_wanted {
            match video_source(&self.settings.video) {
                Ok(s) => s.map(|s| {
                    Box::new(Preview::new(
                        s,
                        Waking::new(
                            self.pictures.preview.clone(),
                            self.out.wake.clone(),
                            PREVIEW_WAKE,
                        ),
                    )) as Box<dyn VideoSource>
                }),
                Err(e) => {
                    self.out.error(e);
                    None
                }
            }
        } else {
            None
        };
        // No source opened (none chosen, or it failed): "Camera on" opens one later.
        let has_source = source.is_some();
        live.video_wanted = has_source;
        let video = VideoCall::start(
            live.call.media(),
            VideoConfig::default(),
            source,
            Box::new(Waking::new(
                self.pictures.remote.clone(),
                self.out.wake.clone(),
                Duration::ZERO,
            )),
        );
        let mut media = CallMedia::new(audio, Some(video), has_source);
        let _ = media.set_muted(live.muted);
        live.media = Some(media);
    }

    pub(super) async fn end_media(&mut self) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        if let Some(o) = live.outgoing.take() {
            o.stop().await;
        }
        if let Some(m) = live.media.take() {
            let _ = m.stop().await;
        }
        // Transfers end with the connection: report how each ended (one that does not
        // finish by itself within 2 s is stopped).
        for e in live.transfers.wind_up(Duration::from_secs(2)).await {
            transfer_event(&self.out, &mut live.labels, e);
        }
        self.pictures.remote.clear();
        self.pictures.preview.clear();
    }

    pub(super) fn camera(&mut self, on: bool) {
        let Some(media) = self.live.as_mut().and_then(|l| l.media.as_mut()) else {
            return;
        };
        if media.video().is_none() {
            return;
        }
        // Video was off from the start: open the source now.
        let source = if on && !media.has_source() {
            match video_source(&self.settings.video) {
                Ok(Some(s)) => Some(Box::new(Preview::new(
                    s,
                    Waking::new(
                        self.pictures.preview.clone(),
                        self.out.wake.clone(),
                        PREVIEW_WAKE,
                    ),
                )) as Box<dyn VideoSource>),
                Ok(None) => {
                    self.out.error(
                        "Settings say to send no video: pick a camera or the test picture there."
                            .into(),
                    );
                    return;
                }
                Err(e) => {
                    self.out.error(e);
                    return;
                }
            }
        } else {
            None
        };
        let Ok(state) = media.set_camera(on, source) else {
            return;
        };
        // While sharing, the screen goes on (and stays in the preview).
        if state.video_paused() {
            self.pictures.preview.clear();
        }
        self.local_media();
    }

    pub(super) fn share(&mut self, on: bool) {
        let Some(media) = self.live.as_mut().and_then(|l| l.media.as_mut()) else {
            return;
        };
        if media.video().is_none() {
            return;
        }
        let screen = if on {
            match Screen::open(None, 15) {
                Ok(s) => Some(Box::new(Preview::new(
                    Box::new(s),
                    Waking::new(
                        self.pictures.preview.clone(),
                        self.out.wake.clone(),
                        PREVIEW_WAKE,
                    ),
                )) as Box<dyn VideoSource>),
                Err(e) => {
                    self.out.error(format!(
                        "Your screen cannot be shared: {e}. Sharing needs an X11 session (on \
                         Wayland, start the app under XWayland)."
                    ));
                    return;
                }
            }
        } else {
            None
        };
        if let Ok(state) = media.share(screen) {
            if state.video_paused() {
                self.pictures.preview.clear();
            }
        }
        self.local_media();
    }

    /// Hashes the files off the loop (a large folder takes a while); [`Self::offer`] sends
    /// them when done.
    pub(super) fn send_files(&mut self, paths: Vec<PathBuf>) {
        let Some(live) = &self.live else {
            return;
        };
        if !live.connected {
            return;
        }
        if let Err(e) = live.transfers.room() {
            self.out
                .error(format!("{e}; send more when one has finished."));
            return;
        }
        self.out.send(Update::PreparingFiles(true));
        let done = self.prepared_tx.clone();
        tokio::spawn(async move {
            let _ = done.send(transfer::prepare(paths).await);
        });
    }

    /// Offers files that [`Self::send_files`] prepared.
    pub(super) async fn offer(
        &mut self,
        prepared: Result<transfer::Prepared, transfer::PrepareError>,
    ) {
        self.out.send(Update::PreparingFiles(false));
        let transfer::Prepared {
            files,
            skipped,
            missing,
        } = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.out.error(words::cannot_prepare(&e));
                return;
            }
        };
        let Some(live) = &mut self.live else {
            return;
        };
        if !missing.is_empty() {
            self.out.info(words::left_out_missing(&missing));
        }
        if !skipped.is_empty() {
            self.out.info(format!(
                "{} item(s) were left out (hidden names such as .git, links, special files).",
                skipped.len()
            ));
        }
        let label = match files.as_slice() {
            [one] => one.prepared.path.clone(),
            many => format!("{} files", many.len()),
        };
        // The peer grants a stream per transfer; one that never comes does not hold the app.
        match live.transfers.offer(&live.call, files).await {
            Ok(started) => {
                live.labels.insert((started.id, true), label.clone());
                self.out.send(Update::Progress {
                    id: started.id,
                    outgoing: true,
                    label,
                    bytes: 0,
                    total: started.bytes,
                    bytes_per_sec: 0,
                    eta_secs: None,
                });
            }
            Err(e) => self
                .out
                .error(format!("The files could not be offered: {e}.")),
        }
    }

    pub(super) fn accept_offer(&mut self, id: u64) {
        let Some(live) = &mut self.live else {
            return;
        };
        let dir = self.settings.files_dir.clone();
        match live.transfers.accept(&live.call, Some(id), &dir) {
            Ok(started) => {
                let label = live.offers.remove(&id).unwrap_or_else(|| "files".into());
                live.labels.insert((id, false), label.clone());
                self.out.send(Update::OfferAnswered(id));
                self.out.send(Update::Progress {
                    id,
                    outgoing: false,
                    label,
                    bytes: 0,
                    total: started.bytes,
                    bytes_per_sec: 0,
                    eta_secs: None,
                });
            }
            Err(AnswerError::Folder { path, why }) => self.out.error(format!(
                "Cannot save files in {}: {why}. Pick another folder in Settings, then accept again.",
                path.display()
            )),
            Err(e) => self.out.error(format!("Not accepted: {e}.")),
        }
    }

    /// Reports progress, and the end of finished transfers.
    pub(super) async fn transfers(&mut self) {
        let Some(live) = &mut self.live else {
            return;
        };
        for e in live.transfers.poll().await {
            transfer_event(&self.out, &mut live.labels, e);
        }
    }
}

/// Shows what happened to a transfer.
fn transfer_event(out: &Outbox, labels: &mut HashMap<(u64, bool), String>, e: TransferEvent) {
    let (status, end) = match e {
        TransferEvent::Progress(s) => (s, None),
        TransferEvent::Ended {
            status,
            outcome,
            folder,
        } => {
            let state = match outcome {
                TransferOutcome::Done { .. } => TransferState::Done { folder },
                TransferOutcome::Declined => TransferState::Stopped {
                    why: "They declined.".into(),
                },
                TransferOutcome::Cancelled { by_peer: true } => TransferState::Stopped {
                    why: "They stopped it.".into(),
                },
                TransferOutcome::Cancelled { by_peer: false } => TransferState::Stopped {
                    why: "Stopped.".into(),
                },
                // The sentence may quote the sender's file names.
                TransferOutcome::Failed(why) => TransferState::Stopped {
                    why: words::transfer_failed(&why),
                },
            };
            (status, Some(state))
        }
        TransferEvent::CutShort(status) => (
            status,
            Some(TransferState::Stopped {
                why: "The call ended before it finished.".into(),
            }),
        ),
    };
    let key = (status.id, status.outgoing);
    let p = &status.progress;
    let label = labels.entry(key).or_insert_with(|| "files".into());
    if let Some((name, _, _)) = &p.current {
        if !status.outgoing || p.files > 1 {
            *label = if p.files > 1 {
                file_label(name, p.files_done, p.files)
            } else {
                name.clone()
            };
        }
    }
    // The final count comes with the end too: a transfer may end before any progress
    // tick saw its size (a small file, a fast link), and "done" then showed 0 bytes.
    out.send(Update::Progress {
        id: status.id,
        outgoing: status.outgoing,
        label: label.clone(),
        bytes: p.bytes,
        total: p.total,
        bytes_per_sec: status.bytes_per_sec,
        eta_secs: status.eta.map(|d| d.as_secs()),
    });
    if let Some(state) = end {
        labels.remove(&key);
        out.send(Update::TransferEnded {
            id: status.id,
            outgoing: status.outgoing,
            state,
        });
    }
}

impl Backend {
    pub(super) fn stats(&mut self) {
        let Some(live) = &mut self.live else {
            return;
        };
        if !live.connected {
            return;
        }
        let media = live.call.media();
        let mut faults = Vec::new();
        let mut s = PathStats {
            remote: media.remote().to_string(),
            rtt_ms: media.rtt().as_secs_f64() * 1e3,
            ..PathStats::default()
        };
        if let Some(a) = live.media.as_ref().and_then(|m| m.audio()) {
            let st = a.stats();
            let slots = (st.jitter.played + st.jitter.lost).max(1);
            s.loss_percent = st.jitter.lost as f64 * 100.0 / slots as f64;
            let secs = st.elapsed.as_secs_f64().max(1.0);
            s.send_kbps = st.sent_bytes as f64 * 8.0 / secs / 1e3;
            s.recv_kbps = st.received.bytes as f64 * 8.0 / secs / 1e3;
            s.echo = st.echo;
            s.voice_kbps = st.voice_bitrate / 1000;
            s.copies = st.copies;
            if let Some(f) = st.device_fault {
                faults.push(words::device_fault(f));
            }
        }
        if let Some(v) = live.media.as_ref().and_then(|m| m.video()) {
            let st = v.stats();
            s.send_kbps += st.send_bps as f64 / 1e3;
            s.recv_kbps += st.recv_bps as f64 / 1e3;
            s.video_in = st.recv_size;
            s.video_out = if st.sending { st.send_size } else { None };
            s.frames_shown = st.shown;
            s.frozen = st.frozen;
            if let Some(f) = &st.fault {
                faults.push(words::video_fault(f));
            }
        }
        // Each problem once: the figures come every second.
        for f in faults {
            if !live.faults_told.contains(&f) {
                live.faults_told.push(f.clone());
                self.out.error(f);
            }
        }
        self.out.send(Update::Stats(s));
    }

    /// "We compared them": the contact is marked verified (an unknown caller is saved first).
    pub(super) async fn mark_verified(&mut self, save_as: Option<String>) {
        let Some(live) = &self.live else {
            return;
        };
        let peer = live.peer;
        let added = save_as.is_some();
        if let Some(name) = save_as {
            if let Err(e) = self.book.add(&name, peer, Vec::new()) {
                self.out.error(format!("Not saved: {e}."));
                return;
            }
        }
        if self.book.set_verified(&peer.to_string(), true).is_err() {
            return;
        }
        if self.save_contacts() {
            self.out.send(Update::Verified);
        }
        if let Some(l) = &mut self.live {
            l.who = self
                .book
                .by_peer(&peer)
                .map_or(l.who.clone(), |c| c.name.clone());
        }
        if added {
            // A new contact: announce ourselves to it on the LAN and the DHT too.
            self.contacts_changed().await;
        } else {
            self.out.send(Update::Contacts(self.contact_rows()));
        }
    }

    /// Closing the window: the peer hears that we closed the app, then everything stops.
    pub(super) async fn quit(&mut self) {
        if let Some(Dialling { task, .. }) = self.dialling.take() {
            task.abort();
        }
        if let Some(m) = self.live.as_mut().and_then(|l| l.media.take()) {
            let _ = m.stop().await;
        }
        if let Some(p) = self.presence.take() {
            p.stop().await;
        }
        // The node tells every call's peer "closed" and waits for that to be sent.
        if let Some(node) = self.node.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), node.shutdown()).await;
        }
        self.end_media().await;
        self.flush_settings().await;
    }
}

impl Live {
    pub(super) fn new(
        call: Call,
        peer: PeerId,
        who: String,
        video: bool,
        files: extrasafe_app::FilesPolicy,
    ) -> Self {
        Self {
            call,
            peer,
            who,
            video_wanted: video,
            media: None,
            transfers: Transfers::new(files),
            labels: Default::default(),
            muted: false,
            connected: false,
            ringer: None,
            offers: Default::default(),
            outgoing: None,
            faults_told: Vec::new(),
        }
    }
}

/// The chosen video source, opened; `None` for no video.
fn video_source(choice: &VideoChoice) -> Result<Option<Box<dyn VideoSource>>, String> {
    match choice {
        VideoChoice::Nothing => Ok(None),
        VideoChoice::TestPicture => Ok(Some(Box::new(TestPattern::new(1280, 720, 30)))),
        VideoChoice::Camera(dev) => {
            extrasafe_net::video_media::camera::Camera::open(dev, 1280, 720, 30)
                .map(|c| Some(Box::new(c) as Box<dyn VideoSource>))
                .map_err(|e| {
                    format!("The camera {dev} could not be opened ({e}). Pick another in Settings.")
                })
        }
    }
}

/// The cameras present (video capture devices; a camera's metadata node is left out).
pub(super) fn cameras() -> Vec<String> {
    extrasafe_net::video_media::camera::list()
        .into_iter()
        .map(|c| c.path)
        .collect()
}

/// Local time of day as HH:MM.
pub(super) fn clock() -> String {
    jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%H:%M")
        .to_string()
}

async fn within<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(3), f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("the sound server did not answer within 3 s".into()),
    }
}

pub(super) async fn next_event(live: &mut Option<Live>) -> Option<CallEvent> {
    match live {
        Some(l) => l.call.next_event().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn incoming(node: &Option<Arc<Node>>) -> Option<Call> {
    match node {
        Some(n) => n.incoming().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn dialled(d: &mut Option<Dialling>) -> Result<(Call, Outgoing), DialError> {
    match d {
        Some(d) => match (&mut d.task).await {
            Ok(r) => r,
            Err(_) => Err(DialError::Call(extrasafe_net::CallError::Closed)),
        },
        None => std::future::pending().await,
    }
}

/// The label of a transfer of `files` files while `name` is under way, `done` of them
/// finished: "name (k of n files)". The last file stays under way until its end is counted,
/// so the count never passes the number of files.
fn file_label(name: &str, done: usize, files: usize) -> String {
    format!("{name} ({} of {files} files)", (done + 1).min(files))
}

#[cfg(test)]
mod tests {
    use super::file_label;

    #[test]
    fn the_file_count_never_passes_the_number_of_files() {
        assert_eq!(file_label("a.jpg", 0, 13), "a.jpg (1 of 13 files)");
        assert_eq!(
            file_label("IMG_1011.jpg", 12, 13),
            "IMG_1011.jpg (13 of 13 files)"
        );
        // The last file's end counted before its name left the progress.
        assert_eq!(
            file_label("IMG_1011.jpg", 13, 13),
            "IMG_1011.jpg (13 of 13 files)"
        );
    }
}
