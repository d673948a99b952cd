//! What the window shows, as plain data. The backend's updates go in ([`Model::apply`]), the
//! drawing code reads it, and the tests check it without a screen. The person's clicks come
//! out as [`Action`]s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::words;

/// Where the app is before it can call anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Loading the identity.
    Starting,
    /// No identity yet: make one (optionally with a passphrase).
    FirstRun,
    /// The identity is sealed: ask for the passphrase.
    Locked,
    /// Identity loaded and node listening.
    Ready,
}

/// Who we are, for the "your ticket" panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Me {
    pub peer_id: String,
    pub ticket: String,
    pub sealed: bool,
}

/// One line of the contact list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactRow {
    pub peer_id: String,
    pub name: String,
    pub verified: bool,
    /// A ticket address is stored (otherwise only the LAN or the DHT can find them).
    pub has_address: bool,
}

/// The call's phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Looking for the peer and connecting; the step says how far.
    Dialling { step: String },
    /// Their device rings.
    Ringing,
    /// They call us: answer or decline.
    Incoming,
    /// Talking.
    Connected,
    /// Over; why, in a sentence.
    Ended { why: String, failed: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatLine {
    pub mine: bool,
    pub text: String,
    /// Local time, HH:MM.
    pub at: String,
}

/// An incoming file offer waiting for an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub id: u64,
    /// Names (already defused for display) and sizes.
    pub files: Vec<(String, u64)>,
    pub total: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferState {
    Running,
    /// Finished; for a download, the folder it is in.
    Done {
        folder: Option<PathBuf>,
    },
    /// Declined, cancelled or failed: the sentence says which.
    Stopped {
        why: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: u64,
    pub outgoing: bool,
    pub label: String,
    pub bytes: u64,
    pub total: u64,
    pub bytes_per_sec: u64,
    pub eta_secs: Option<u64>,
    pub state: TransferState,
}

/// The path and media figures, refreshed each second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathStats {
    pub remote: String,
    pub rtt_ms: f64,
    pub loss_percent: f64,
    pub send_kbps: f64,
    pub recv_kbps: f64,
    pub video_in: Option<(u32, u32)>,
    pub video_out: Option<(u32, u32)>,
    pub frames_shown: u64,
    pub frozen: bool,
    /// Echo cancellation: off (`None`), or on with what it found.
    pub echo: Option<extrasafe_net::audio::EchoStats>,
    /// The voice's bitrate now (kb/s) and the copies each datagram carries (0: no audio).
    pub voice_kbps: u32,
    pub copies: usize,
}

/// A call, from the first ring (or dial) until the person closes its summary.
#[derive(Clone, Debug, PartialEq)]
pub struct CallView {
    pub peer_id: String,
    /// The contact's name, if they are one.
    pub contact: Option<String>,
    pub verified: bool,
    pub outgoing: bool,
    pub video: bool,
    pub phase: Phase,
    pub sas: Option<String>,
    pub safety_number: Option<String>,
    pub muted: bool,
    pub camera_on: bool,
    pub sharing: bool,
    pub chat: Vec<ChatLine>,
    pub offers: Vec<Offer>,
    pub transfers: Vec<Transfer>,
    pub stats: Option<PathStats>,
    /// Connected, but the path is lost for now: the call is kept while it reconnects.
    pub reconnecting: bool,
    /// When the call was answered: the call timer counts from here.
    pub connected_at: Option<Instant>,
    /// Files chosen to send are being read and hashed; the offer goes out when done.
    pub preparing: bool,
    /// We declined this ring (so its end is not a missed call).
    pub declined: bool,
    /// We answered it (a call that then fails to connect was not missed).
    pub answered: bool,
}

impl CallView {
    /// How to name the other side: the contact's name, or the start of the peer ID.
    pub fn who(&self) -> String {
        match &self.contact {
            Some(n) => n.clone(),
            None => words::short_peer(&self.peer_id),
        }
    }

    /// The headline for this phase.
    pub fn title(&self) -> String {
        let who = self.who();
        match &self.phase {
            Phase::Dialling { .. } => format!("Calling {who} …"),
            Phase::Ringing => format!("Ringing {who} …"),
            Phase::Incoming if self.contact.is_some() => format!("{who} is calling"),
            Phase::Incoming => "Someone who is not in your contacts is calling".into(),
            Phase::Connected if self.reconnecting => format!("Reconnecting to {who} …"),
            Phase::Connected => format!("In a call with {who}"),
            Phase::Ended { .. } => format!("Call with {who} ended"),
        }
    }

    /// Which controls are shown.
    pub fn controls(&self) -> Controls {
        let live = self.phase == Phase::Connected;
        let reaching = matches!(self.phase, Phase::Dialling { .. } | Phase::Ringing);
        Controls {
            answer: self.phase == Phase::Incoming,
            cancel: reaching,
            hang_up: live,
            media: live,
            // Nothing can be sent while the path is lost.
            chat: live && !self.reconnecting,
            send_files: live && !self.reconnecting,
            verify: live && self.sas.is_some() && !self.verified,
            close: matches!(self.phase, Phase::Ended { .. }),
        }
    }

    fn transfer(&mut self, id: u64, outgoing: bool) -> Option<&mut Transfer> {
        self.transfers
            .iter_mut()
            .find(|t| t.id == id && t.outgoing == outgoing)
    }
}

/// What the call panel offers in its current phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    /// Accept / Decline.
    pub answer: bool,
    /// Stop calling.
    pub cancel: bool,
    pub hang_up: bool,
    /// Mute, camera, screen sharing.
    pub media: bool,
    pub chat: bool,
    pub send_files: bool,
    /// "We compared them".
    pub verify: bool,
    /// Back to the contact list.
    pub close: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    Info,
    Error,
}

/// A sentence at the top of the window: errors until dismissed, news for a few seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub text: String,
    pub since: Instant,
}

/// How long news (not errors) stays up.
pub const NEWS_FOR: Duration = Duration::from_secs(10);

/// Video source choices for calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoChoice {
    /// A V4L2 camera (builds with the `camera` feature).
    Camera(String),
    /// The moving test picture.
    TestPicture,
    /// Send no video.
    Nothing,
}

/// Devices as the sound server and the system list them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    /// (name, description)
    pub mics: Vec<(String, String)>,
    pub speakers: Vec<(String, String)>,
    pub cameras: Vec<String>,
    /// Why there are no sound devices, if there are none.
    pub sound_problem: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `None` means the system's default.
    pub mic: Option<String>,
    pub speaker: Option<String>,
    pub video: VideoChoice,
    /// Where accepted files go.
    pub files_dir: PathBuf,
    /// Take the speaker's echo out of the microphone (on unless the person turned it off).
    pub echo_cancel: bool,
    /// Closing the window keeps the app running in the tray, reachable for calls.
    pub stay_reachable: bool,
}

/// A call that rang here and ended before anyone answered. Kept in memory only, while the
/// app runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missed {
    pub peer_id: String,
    /// The contact's name; `None` for someone not in the contacts (never named outside the
    /// window).
    pub contact: Option<String>,
    /// The contact's name, or the start of the peer ID.
    pub who: String,
    /// Local time of day it rang.
    pub at: String,
}

/// What the desktop should be told, for a person who is not looking at the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alert {
    /// A call rings: `who` is a contact's name, or `None` for someone not in the contacts.
    Incoming {
        who: Option<String>,
    },
    /// The ring was answered or declined here: the alert about it can go.
    Handled,
    Missed(Missed),
}

/// Everything the window shows.
#[derive(Clone, Debug)]
pub struct Model {
    pub stage: Stage,
    /// An identity operation (creating, unlocking) is running.
    pub busy: bool,
    pub me: Option<Me>,
    pub contacts: Vec<ContactRow>,
    pub call: Option<CallView>,
    pub notices: Vec<Notice>,
    pub devices: Devices,
    pub settings: Settings,
    /// What the LAN and DHT presence is doing, in a sentence.
    pub reach: Option<String>,
    /// What the reachability services have achieved so far.
    pub online: Online,
    /// Calls missed since the app started (never stored).
    pub missed: Vec<Missed>,
    /// For the desktop's notifications; the window takes them each frame.
    pub alerts: Vec<Alert>,
}

/// Our records as last stored on the DHT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Records {
    /// Stored for this many contacts.
    pub contacts: usize,
    /// How our NAT maps ports (`stable`, `varies`, `unknown`).
    pub nat: String,
    /// They name the port the router forwards to us.
    pub forwarded: bool,
}

/// Our records on the DHT and the router's port forwarding, as reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Online {
    /// Our records as last stored.
    pub records: Option<Records>,
    /// The router forwards a port to us, by this protocol.
    pub port_mapped: Option<String>,
}

/// What the backend tells the window.
#[derive(Clone, Debug)]
pub enum Update {
    NeedIdentity {
        sealed: bool,
    },
    IdentityFailed(String),
    Ready(Me),
    Contacts(Vec<ContactRow>),
    Devices(Devices),
    Reach(String),
    /// The services started anew (nothing achieved yet).
    Online(Online),
    Reachable(Records),
    PortMapped(String),
    Dialling {
        peer_id: String,
        contact: Option<String>,
        verified: bool,
        video: bool,
        step: String,
    },
    Ringing,
    Incoming {
        peer_id: String,
        contact: Option<String>,
        verified: bool,
    },
    Connected {
        sas: String,
        safety_number: String,
    },
    /// The verification code is settled (the callee's comes a moment after the ring).
    VerificationCode(String),
    /// The call could not be placed.
    CallFailed(String),
    Ended(String),
    Chat {
        mine: bool,
        text: String,
        at: String,
    },
    Offer(Offer),
    OfferAnswered(u64),
    Progress {
        id: u64,
        outgoing: bool,
        label: String,
        bytes: u64,
        total: u64,
        /// The rate since the transfer began, and the time left at it (`None` until
        /// something moved).
        bytes_per_sec: u64,
        eta_secs: Option<u64>,
    },
    TransferEnded {
        id: u64,
        outgoing: bool,
        state: TransferState,
    },
    Stats(PathStats),
    LocalMedia {
        muted: bool,
        camera_on: bool,
        sharing: bool,
    },
    Verified,
    /// The call's path is lost (`true`) or back (`false`).
    Reconnecting(bool),
    /// Files are being prepared for an offer (`true`), or that is over (`false`).
    PreparingFiles(bool),
    Notice(NoticeKind, String),
}

/// A passphrase on its way to the key file: wiped when dropped, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(pub zeroize::Zeroizing<String>);

impl Passphrase {
    pub fn new(s: String) -> Self {
        Self(zeroize::Zeroizing::new(s))
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// What the person asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    CreateIdentity {
        passphrase: Option<Passphrase>,
    },
    Unlock {
        passphrase: Passphrase,
    },
    AddContact {
        ticket: String,
        name: String,
    },
    RemoveContact {
        peer_id: String,
    },
    RenameContact {
        peer_id: String,
        name: String,
    },
    Call {
        peer_id: String,
        video: bool,
    },
    Accept {
        video: bool,
    },
    Decline,
    /// The missed calls were seen.
    DismissMissed,
    /// Open the desktop's file chooser; what is chosen is sent (the window handles it).
    PickFiles {
        folder: bool,
    },
    HangUp,
    Mute(bool),
    Camera(bool),
    Share(bool),
    Chat(String),
    SendFiles(Vec<PathBuf>),
    AcceptOffer(u64),
    DeclineOffer(u64),
    CancelTransfer {
        id: u64,
        outgoing: bool,
    },
    ShowFolder(PathBuf),
    MarkVerified,
    /// Make a new ticket (old ones stop working).
    NewTicket,
    /// Save an unknown caller as a (verified, since they compared) contact.
    SaveCaller {
        name: String,
    },
    SetMic(Option<String>),
    SetSpeaker(Option<String>),
    SetVideo(VideoChoice),
    SetFilesDir(PathBuf),
    SetEchoCancel(bool),
    /// Stay running in the tray when the window is closed.
    SetStayReachable(bool),
    /// Quit the app, even if it stays reachable when its window closes (the window handles it).
    QuitApp,
    DismissNotice(usize),
    CloseCall,
    Quit,
}

impl Model {
    pub fn new(settings: Settings) -> Self {
        Self {
            stage: Stage::Starting,
            busy: false,
            me: None,
            contacts: Vec::new(),
            call: None,
            notices: Vec::new(),
            devices: Devices::default(),
            settings,
            reach: None,
            online: Online::default(),
            missed: Vec::new(),
            alerts: Vec::new(),
        }
    }

    fn call_failed(&mut self, why: String) {
        match &mut self.call {
            Some(c) => {
                c.phase = Phase::Ended { why, failed: true };
            }
            None => self.notice(NoticeKind::Error, why),
        }
    }

    /// A ring that ends while it still rings, not declined here, was missed.
    fn ring_ended(&mut self, at: String) {
        let Some(c) = &self.call else {
            return;
        };
        if c.phase != Phase::Incoming {
            return;
        }
        if c.declined || c.answered {
            self.alerts.push(Alert::Handled);
            return;
        }
        let m = Missed {
            peer_id: c.peer_id.clone(),
            contact: c.contact.clone(),
            who: c.who(),
            at,
        };
        self.missed.push(m.clone());
        // Kept short: the last ten.
        if self.missed.len() > 10 {
            self.missed.remove(0);
        }
        self.alerts.push(Alert::Missed(m));
    }

    fn notice(&mut self, kind: NoticeKind, text: String) {
        // The same sentence twice in a row says nothing new.
        if self.notices.last().is_some_and(|n| n.text == text) {
            return;
        }
        self.notices.push(Notice {
            kind,
            text,
            since: Instant::now(),
        });
        if self.notices.len() > 4 {
            self.notices.remove(0);
        }
    }

    /// Takes in what the backend said.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::NeedIdentity { sealed } => {
                self.busy = false;
                self.stage = if sealed {
                    Stage::Locked
                } else {
                    Stage::FirstRun
                };
            }
            Update::IdentityFailed(why) => {
                self.busy = false;
                self.notice(NoticeKind::Error, why);
            }
            Update::Ready(me) => {
                self.busy = false;
                // What went wrong on the way in (a mistyped passphrase) is over now.
                self.notices.clear();
                self.stage = Stage::Ready;
                self.me = Some(me);
            }
            Update::Contacts(list) => {
                if let Some(call) = &mut self.call {
                    if let Some(c) = list.iter().find(|c| c.peer_id == call.peer_id) {
                        call.contact = Some(c.name.clone());
                        call.verified = c.verified;
                    }
                }
                self.contacts = list;
            }
            Update::Devices(d) => self.devices = d,
            Update::Reach(s) => self.reach = Some(s),
            Update::Online(o) => self.online = o,
            Update::Reachable(r) => self.online.records = Some(r),
            Update::PortMapped(p) => self.online.port_mapped = Some(p),
            Update::Dialling {
                peer_id,
                contact,
                verified,
                video,
                step,
            } => match &mut self.call {
                Some(c) if c.peer_id == peer_id && matches!(c.phase, Phase::Dialling { .. }) => {
                    c.phase = Phase::Dialling { step }
                }
                _ => {
                    self.call = Some(CallView::new(peer_id, contact, verified, true, video));
                    if let Some(c) = &mut self.call {
                        c.phase = Phase::Dialling { step };
                    }
                }
            },
            Update::Ringing => self.set_phase(Phase::Ringing),
            Update::Incoming {
                peer_id,
                contact,
                verified,
            } => {
                self.alerts.push(Alert::Incoming {
                    who: contact.clone(),
                });
                let mut c = CallView::new(peer_id, contact, verified, false, false);
                c.phase = Phase::Incoming;
                self.call = Some(c);
            }
            Update::Connected { sas, safety_number } => {
                if self
                    .call
                    .as_ref()
                    .is_some_and(|c| c.phase == Phase::Incoming)
                {
                    self.alerts.push(Alert::Handled);
                }
                if let Some(c) = &mut self.call {
                    c.phase = Phase::Connected;
                    c.connected_at.get_or_insert_with(Instant::now);
                    if !sas.is_empty() {
                        c.sas = Some(sas);
                    }
                    c.safety_number = Some(safety_number);
                }
            }
            Update::VerificationCode(code) => {
                if let Some(c) = &mut self.call {
                    c.sas = Some(code);
                }
            }
            Update::CallFailed(why) => {
                self.ring_ended(clock());
                self.call_failed(why);
            }
            Update::Ended(why) => {
                self.ring_ended(clock());
                self.set_phase(Phase::Ended { why, failed: false });
            }
            Update::Chat { mine, text, at } => {
                if let Some(c) = &mut self.call {
                    c.chat.push(ChatLine { mine, text, at });
                    // The call's chat lives in memory only; a long call keeps the last lines.
                    if c.chat.len() > 500 {
                        c.chat.remove(0);
                    }
                }
            }
            Update::Offer(o) => {
                if let Some(c) = &mut self.call {
                    c.offers.push(o);
                }
            }
            Update::OfferAnswered(id) => {
                if let Some(c) = &mut self.call {
                    c.offers.retain(|o| o.id != id);
                }
            }
            Update::Progress {
                id,
                outgoing,
                label,
                bytes,
                total,
                bytes_per_sec,
                eta_secs,
            } => {
                if let Some(c) = &mut self.call {
                    match c.transfer(id, outgoing) {
                        Some(t) => {
                            t.bytes = bytes;
                            t.total = total;
                            t.label = label;
                            t.bytes_per_sec = bytes_per_sec;
                            t.eta_secs = eta_secs;
                        }
                        None => c.transfers.push(Transfer {
                            id,
                            outgoing,
                            label,
                            bytes,
                            total,
                            bytes_per_sec,
                            eta_secs,
                            state: TransferState::Running,
                        }),
                    }
                }
            }
            Update::TransferEnded {
                id,
                outgoing,
                state,
            } => {
                if let Some(t) = self.call.as_mut().and_then(|c| c.transfer(id, outgoing)) {
                    if matches!(state, TransferState::Done { .. }) {
                        t.bytes = t.total;
                    }
                    t.state = state;
                }
            }
            Update::Stats(s) => {
                if let Some(c) = &mut self.call {
                    c.stats = Some(s);
                }
            }
            Update::LocalMedia {
                muted,
                camera_on,
                sharing,
            } => {
                if let Some(c) = &mut self.call {
                    c.muted = muted;
                    c.camera_on = camera_on;
                    c.sharing = sharing;
                }
            }
            Update::Reconnecting(on) => {
                if let Some(c) = &mut self.call {
                    c.reconnecting = on && c.phase == Phase::Connected;
                }
            }
            Update::Verified => {
                if let Some(c) = &mut self.call {
                    c.verified = true;
                }
            }
            Update::PreparingFiles(on) => {
                if let Some(c) = &mut self.call {
                    c.preparing = on;
                }
            }
            Update::Notice(kind, text) => self.notice(kind, text),
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        if let Some(c) = &mut self.call {
            c.phase = phase;
        }
    }

    /// Takes down news older than [`NEWS_FOR`]; true while some is still up.
    pub fn expire(&mut self, now: Instant) -> bool {
        self.notices
            .retain(|n| n.kind == NoticeKind::Error || now.duration_since(n.since) < NEWS_FOR);
        self.notices.iter().any(|n| n.kind == NoticeKind::Info)
    }

    /// Applies what the window itself handles; true if the backend must hear of it too.
    pub fn act(&mut self, action: &Action) -> bool {
        match action {
            Action::DismissNotice(i) => {
                if *i < self.notices.len() {
                    self.notices.remove(*i);
                }
                false
            }
            Action::Decline => {
                if let Some(c) = &mut self.call {
                    c.declined = true;
                }
                true
            }
            Action::Accept { .. } => {
                if let Some(c) = &mut self.call {
                    c.answered = true;
                }
                true
            }
            Action::DismissMissed => {
                self.missed.clear();
                false
            }
            Action::PickFiles { .. } | Action::QuitApp => false,
            Action::CloseCall => {
                if self
                    .call
                    .as_ref()
                    .is_some_and(|c| matches!(c.phase, Phase::Ended { .. }))
                {
                    self.call = None;
                }
                false
            }
            Action::CreateIdentity { .. } | Action::Unlock { .. } => {
                self.busy = true;
                true
            }
            Action::SetMic(m) => {
                self.settings.mic = m.clone();
                true
            }
            Action::SetSpeaker(s) => {
                self.settings.speaker = s.clone();
                true
            }
            Action::SetVideo(v) => {
                self.settings.video = v.clone();
                true
            }
            Action::SetEchoCancel(on) => {
                self.settings.echo_cancel = *on;
                true
            }
            Action::SetStayReachable(on) => {
                self.settings.stay_reachable = *on;
                true
            }
            Action::SetFilesDir(d) => {
                self.settings.files_dir = d.clone();
                true
            }
            _ => true,
        }
    }

    /// The state as JSON: what the end-to-end test checks (and never anything secret: the
    /// passphrase is not in the model).
    pub fn snapshot(&self) -> Value {
        let call = self.call.as_ref().map(|c| {
            let phase = match &c.phase {
                Phase::Dialling { step } => json!({"name": "dialling", "step": step}),
                Phase::Ringing => json!({"name": "ringing"}),
                Phase::Incoming => json!({"name": "incoming"}),
                Phase::Connected => json!({"name": "connected"}),
                Phase::Ended { why, failed } => {
                    json!({"name": "ended", "why": why, "failed": failed})
                }
            };
            let controls = c.controls();
            json!({
                "title": c.title(),
                "peer_id": c.peer_id,
                "contact": c.contact,
                "verified": c.verified,
                "outgoing": c.outgoing,
                "phase": phase,
                "reconnecting": c.reconnecting,
                "preparing": c.preparing,
                "call_secs": c.connected_at.map(|t| t.elapsed().as_secs()),
                "sas": c.sas,
                "muted": c.muted,
                "camera_on": c.camera_on,
                "sharing": c.sharing,
                "chat": c.chat.iter().map(|l| json!({"mine": l.mine, "text": l.text})).collect::<Vec<_>>(),
                "offers": c.offers.iter().map(|o| json!({"id": o.id, "files": o.files, "total": o.total})).collect::<Vec<_>>(),
                "transfers": c.transfers.iter().map(|t| json!({
                    "id": t.id, "outgoing": t.outgoing, "label": t.label, "bytes": t.bytes,
                    "total": t.total, "bytes_per_sec": t.bytes_per_sec, "eta_secs": t.eta_secs,
                    "state": match &t.state {
                        TransferState::Running => "running".to_string(),
                        TransferState::Done { .. } => "done".to_string(),
                        TransferState::Stopped { why } => why.clone(),
                    }})).collect::<Vec<_>>(),
                "stats": c.stats.as_ref().map(|s| json!({
                    "remote": s.remote, "rtt_ms": s.rtt_ms, "loss_percent": s.loss_percent,
                    "video_in": s.video_in, "video_out": s.video_out,
                    "frames_shown": s.frames_shown,
                    "echo_cancel": s.echo.is_some(),
                    "echo_delay_ms": s.echo.and_then(|e| e.delay_ms),
                    "echo_erle_db": s.echo.and_then(|e| e.erle_db),
                    "echo_none_heard": s.echo.is_some_and(|e| e.no_echo),
                    "voice_kbps": s.voice_kbps, "copies": s.copies})),
                "controls": {
                    "answer": controls.answer, "cancel": controls.cancel,
                    "hang_up": controls.hang_up, "media": controls.media, "chat": controls.chat,
                    "send_files": controls.send_files, "verify": controls.verify,
                    "close": controls.close,
                },
            })
        });
        json!({
            "stage": format!("{:?}", self.stage).to_lowercase(),
            "settings": {
                "mic": self.settings.mic, "speaker": self.settings.speaker,
                "video": format!("{:?}", self.settings.video),
                "files_dir": self.settings.files_dir.to_string_lossy(),
                "echo_cancel": self.settings.echo_cancel,
                "stay_reachable": self.settings.stay_reachable,
            },
            "busy": self.busy,
            "me": self.me.as_ref().map(|m| json!({"peer_id": m.peer_id, "ticket": m.ticket, "sealed": m.sealed})),
            "contacts": self.contacts.iter().map(|c| json!({
                "peer_id": c.peer_id, "name": c.name, "verified": c.verified})).collect::<Vec<_>>(),
            "call": call,
            "missed": self.missed.iter().map(|m| json!({"peer_id": m.peer_id, "who": m.who, "at": m.at})).collect::<Vec<_>>(),
            "notices": self.notices.iter().map(|n| n.text.clone()).collect::<Vec<_>>(),
            "reach": self.reach,
            "online": {
                "records": self.online.records.as_ref().map(|r| json!({
                    "contacts": r.contacts, "nat": r.nat, "forwarded": r.forwarded})),
                "port_mapped": self.online.port_mapped,
            },
        })
    }
}

impl CallView {
    fn new(
        peer_id: String,
        contact: Option<String>,
        verified: bool,
        outgoing: bool,
        video: bool,
    ) -> Self {
        Self {
            peer_id,
            contact,
            verified,
            outgoing,
            video,
            phase: Phase::Ringing,
            sas: None,
            safety_number: None,
            muted: false,
            camera_on: video,
            sharing: false,
            chat: Vec::new(),
            offers: Vec::new(),
            transfers: Vec::new(),
            stats: None,
            reconnecting: false,
            connected_at: None,
            preparing: false,
            declined: false,
            answered: false,
        }
    }
}

/// Local time of day as HH:MM.
fn clock() -> String {
    jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%H:%M")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "es1example0000000000000000000000000000000000000000000000000000";

    fn model() -> Model {
        let mut m = Model::new(Settings {
            mic: None,
            speaker: None,
            video: VideoChoice::TestPicture,
            files_dir: "/tmp".into(),
            echo_cancel: true,
            stay_reachable: false,
        });
        m.apply(Update::Ready(Me {
            peer_id: "es1me".into(),
            ticket: "est1me".into(),
            sealed: false,
        }));
        m
    }

    fn call(m: &Model) -> &CallView {
        m.call.as_ref().expect("a call is shown")
    }

    #[test]
    fn first_run_then_locked_then_ready() {
        let mut m = Model::new(model().settings);
        assert_eq!(m.stage, Stage::Starting);
        m.apply(Update::NeedIdentity { sealed: false });
        assert_eq!(m.stage, Stage::FirstRun);
        assert!(m.act(&Action::CreateIdentity { passphrase: None }));
        assert!(m.busy, "the button waits while the key is made");
        m.apply(Update::IdentityFailed("disk full".into()));
        assert!(!m.busy);
        assert_eq!(m.notices[0].kind, NoticeKind::Error);
        m.apply(Update::NeedIdentity { sealed: true });
        assert_eq!(m.stage, Stage::Locked);
        m.apply(Update::Ready(Me {
            peer_id: "es1x".into(),
            ticket: "est1x".into(),
            sealed: true,
        }));
        assert_eq!(m.stage, Stage::Ready);
        let snap = m.snapshot();
        assert_eq!(snap["stage"], "ready");
        assert_eq!(snap["me"]["sealed"], true);
    }

    #[test]
    fn outgoing_call_shows_progress_then_the_call_then_its_end() {
        let mut m = model();
        m.apply(Update::Dialling {
            peer_id: PEER.into(),
            contact: Some("Alice".into()),
            verified: false,
            video: true,
            step: "Connecting …".into(),
        });
        let c = call(&m);
        assert_eq!(c.title(), "Calling Alice …");
        assert_eq!(
            c.controls(),
            Controls {
                cancel: true,
                ..Controls::default()
            }
        );
        // A step updates the call in place: what it had stays (here a chat line, which a new
        // call would not have).
        m.apply(Update::Chat {
            mine: true,
            text: "typed early".into(),
            at: "12:00".into(),
        });
        m.apply(Update::Dialling {
            peer_id: PEER.into(),
            contact: Some("Alice".into()),
            verified: false,
            video: true,
            step: "Looking for them on this network …".into(),
        });
        assert_eq!(call(&m).chat.len(), 1, "updated in place, not replaced");
        assert_eq!(
            call(&m).phase,
            Phase::Dialling {
                step: "Looking for them on this network …".into()
            }
        );
        m.apply(Update::Ringing);
        assert_eq!(call(&m).title(), "Ringing Alice …");
        assert!(call(&m).controls().cancel);
        m.apply(Update::Connected {
            sas: "123 456".into(),
            safety_number: "1".repeat(60),
        });
        let c = call(&m);
        assert_eq!(c.title(), "In a call with Alice");
        let k = c.controls();
        assert!(k.hang_up && k.media && k.chat && k.send_files && k.verify);
        assert!(!k.answer && !k.cancel && !k.close);
        // The path is lost: the call is kept, can be hung up, takes nothing to send.
        m.apply(Update::Reconnecting(true));
        let c = call(&m);
        assert_eq!(c.title(), "Reconnecting to Alice …");
        assert_eq!(m.snapshot()["call"]["reconnecting"], true);
        let k = c.controls();
        assert!(k.hang_up && k.media && !k.chat && !k.send_files);
        m.apply(Update::Reconnecting(false));
        assert_eq!(call(&m).title(), "In a call with Alice");
        assert!(call(&m).controls().chat);
        m.apply(Update::Ended("Alice hung up.".into()));
        let c = call(&m);
        assert_eq!(c.title(), "Call with Alice ended");
        assert_eq!(
            c.controls(),
            Controls {
                close: true,
                ..Controls::default()
            }
        );
        assert!(!m.act(&Action::CloseCall), "the window handles it alone");
        assert!(m.call.is_none());
    }

    #[test]
    fn a_stranger_rings_and_can_be_saved_once_codes_match() {
        let mut m = model();
        m.apply(Update::Incoming {
            peer_id: PEER.into(),
            contact: None,
            verified: false,
        });
        let c = call(&m);
        assert_eq!(c.title(), "Someone who is not in your contacts is calling");
        assert_eq!(
            c.controls(),
            Controls {
                answer: true,
                ..Controls::default()
            }
        );
        assert!(c.who().starts_with("es1example") && c.who().ends_with('…'));
        m.apply(Update::Connected {
            sas: "654 321".into(),
            safety_number: String::new(),
        });
        assert!(call(&m).controls().verify);
        // "Verified" alone marks the call, and the button goes.
        m.apply(Update::Verified);
        assert!(call(&m).verified && !call(&m).controls().verify);
        assert_eq!(call(&m).contact, None);
        // The new contact list names the caller in the call too.
        m.apply(Update::Contacts(vec![ContactRow {
            peer_id: PEER.into(),
            name: "Carol".into(),
            verified: true,
            has_address: false,
        }]));
        let c = call(&m);
        assert_eq!(c.contact.as_deref(), Some("Carol"));
        assert!(c.verified && !c.controls().verify);
    }

    #[test]
    fn a_failed_call_says_why_and_a_failure_without_a_call_is_a_notice() {
        let mut m = model();
        m.apply(Update::CallFailed("no call shown yet".into()));
        assert!(m.call.is_none());
        assert_eq!(m.notices.len(), 1);
        m.apply(Update::Dialling {
            peer_id: PEER.into(),
            contact: Some("Alice".into()),
            verified: true,
            video: false,
            step: String::new(),
        });
        m.apply(Update::CallFailed("Alice did not answer.".into()));
        assert_eq!(
            call(&m).phase,
            Phase::Ended {
                why: "Alice did not answer.".into(),
                failed: true
            }
        );
        assert_eq!(m.snapshot()["call"]["phase"]["failed"], true);
    }

    #[test]
    fn offers_and_transfers_move_through_their_states() {
        let mut m = model();
        m.apply(Update::Incoming {
            peer_id: PEER.into(),
            contact: Some("Alice".into()),
            verified: true,
        });
        m.apply(Update::Connected {
            sas: "000 000".into(),
            safety_number: String::new(),
        });
        m.apply(Update::Offer(Offer {
            id: 7,
            files: vec![("a.pdf".into(), 1000), ("b.txt".into(), 20)],
            total: 1020,
        }));
        assert_eq!(call(&m).offers.len(), 1);
        assert_eq!(m.snapshot()["call"]["offers"][0]["total"], 1020);
        m.apply(Update::OfferAnswered(7));
        assert!(call(&m).offers.is_empty());
        // Our upload and their download may share an id: they are told apart by direction.
        for outgoing in [false, true] {
            m.apply(Update::Progress {
                id: 7,
                outgoing,
                label: "a.pdf".into(),
                bytes: 500,
                total: 1020,
                bytes_per_sec: 100,
                eta_secs: Some(5),
            });
        }
        assert_eq!(call(&m).transfers.len(), 2);
        m.apply(Update::TransferEnded {
            id: 7,
            outgoing: false,
            state: TransferState::Done {
                folder: Some("/tmp".into()),
            },
        });
        m.apply(Update::TransferEnded {
            id: 7,
            outgoing: true,
            state: TransferState::Stopped {
                why: "They stopped it.".into(),
            },
        });
        let t = &call(&m).transfers;
        assert_eq!(t[0].bytes, 1020, "a finished download shows full");
        assert!(matches!(t[0].state, TransferState::Done { .. }));
        assert_eq!(t[1].bytes, 500);
        let snap = m.snapshot();
        assert_eq!(snap["call"]["transfers"][0]["state"], "done");
        assert_eq!(snap["call"]["transfers"][1]["state"], "They stopped it.");
    }

    #[test]
    fn news_goes_away_errors_stay_and_repeats_are_not_stacked() {
        let mut m = model();
        m.apply(Update::Notice(NoticeKind::Info, "Added.".into()));
        m.apply(Update::Notice(NoticeKind::Error, "Not saved.".into()));
        m.apply(Update::Notice(NoticeKind::Error, "Not saved.".into()));
        assert_eq!(m.notices.len(), 2);
        let now = Instant::now();
        assert!(m.expire(now), "news is still up");
        assert!(!m.expire(now + NEWS_FOR + Duration::from_secs(1)));
        assert_eq!(m.notices.len(), 1);
        assert_eq!(m.notices[0].text, "Not saved.");
        assert!(!m.act(&Action::DismissNotice(0)));
        assert!(m.notices.is_empty());
        // Never more than four at once.
        for i in 0..9 {
            m.apply(Update::Notice(NoticeKind::Error, format!("e{i}")));
        }
        assert_eq!(m.notices.len(), 4);
        assert_eq!(m.notices[3].text, "e8");
    }

    #[test]
    fn chat_is_kept_in_memory_only_up_to_a_bound() {
        let mut m = model();
        m.apply(Update::Incoming {
            peer_id: PEER.into(),
            contact: None,
            verified: false,
        });
        for i in 0..600 {
            m.apply(Update::Chat {
                mine: i % 2 == 0,
                text: format!("line {i}"),
                at: "12:00".into(),
            });
        }
        let chat = &call(&m).chat;
        assert_eq!(chat.len(), 500);
        assert_eq!(chat[499].text, "line 599");
    }

    #[test]
    fn media_state_and_figures_follow_the_backend() {
        let mut m = model();
        m.apply(Update::Incoming {
            peer_id: PEER.into(),
            contact: Some("Alice".into()),
            verified: false,
        });
        let c = call(&m);
        assert!(!c.camera_on && !c.muted && !c.sharing && c.stats.is_none());
        m.apply(Update::Connected {
            sas: "111 222".into(),
            safety_number: String::new(),
        });
        m.apply(Update::LocalMedia {
            muted: true,
            camera_on: true,
            sharing: true,
        });
        m.apply(Update::Stats(PathStats {
            remote: "127.0.0.1:5".into(),
            rtt_ms: 2.5,
            video_in: Some((640, 360)),
            frames_shown: 90,
            ..PathStats::default()
        }));
        let c = call(&m);
        assert!(c.muted && c.camera_on && c.sharing);
        let snap = m.snapshot();
        assert_eq!(snap["call"]["muted"], true);
        assert_eq!(snap["call"]["stats"]["video_in"][0], 640);
        assert_eq!(snap["call"]["stats"]["frames_shown"], 90);
        assert_eq!(snap["call"]["stats"]["rtt_ms"], 2.5);
    }

    #[test]
    fn a_ring_that_ends_unanswered_is_missed_and_a_declined_one_is_not() {
        let mut m = model();
        let ring = |m: &mut Model| {
            m.apply(Update::Incoming {
                peer_id: PEER.into(),
                contact: Some("Alice".into()),
                verified: false,
            })
        };
        ring(&mut m);
        assert_eq!(
            m.alerts,
            vec![Alert::Incoming {
                who: Some("Alice".into())
            }]
        );
        m.alerts.clear();
        m.apply(Update::Ended("Alice hung up.".into()));
        assert_eq!(m.missed.len(), 1);
        assert_eq!(m.missed[0].who, "Alice");
        assert!(matches!(&m.alerts[..], [Alert::Missed(x)] if x.peer_id == PEER));
        m.alerts.clear();
        // Declined here: not missed, and the alert is taken down.
        ring(&mut m);
        m.alerts.clear();
        assert!(m.act(&Action::Decline));
        m.apply(Update::Ended("You declined.".into()));
        assert_eq!(m.missed.len(), 1);
        assert_eq!(m.alerts, vec![Alert::Handled]);
        m.alerts.clear();
        // Answered: not missed either, and the hang-up later is not a ring ending.
        ring(&mut m);
        m.alerts.clear();
        m.apply(Update::Connected {
            sas: "123 456".into(),
            safety_number: "1".into(),
        });
        m.apply(Update::Ended("Alice hung up.".into()));
        assert_eq!(m.missed.len(), 1);
        assert_eq!(m.alerts, vec![Alert::Handled]);
        // Accepted, but the connection failed before it was made: not missed either.
        ring(&mut m);
        m.alerts.clear();
        assert!(m.act(&Action::Accept { video: false }));
        m.apply(Update::CallFailed("The connection broke.".into()));
        assert_eq!(m.missed.len(), 1);
        assert!(!m.act(&Action::DismissMissed));
        assert!(m.missed.is_empty());
        // A stranger's missed ring is not named outside the window.
        m.apply(Update::Incoming {
            peer_id: PEER.into(),
            contact: None,
            verified: false,
        });
        m.apply(Update::Ended("They hung up.".into()));
        assert_eq!(m.missed[0].contact, None);
        let (summary, body) = crate::words::missed_alert(m.missed[0].contact.as_deref(), "10:00");
        assert!(
            !summary.contains("es1") && !body.contains("es1"),
            "{summary} {body}"
        );
    }

    #[test]
    fn a_new_ring_replaces_the_summary_of_the_last_call() {
        let mut m = model();
        m.apply(Update::Incoming {
            peer_id: PEER.into(),
            contact: Some("Alice".into()),
            verified: false,
        });
        m.apply(Update::Ended("Alice hung up.".into()));
        m.apply(Update::Incoming {
            peer_id: "es1other".into(),
            contact: Some("Bob".into()),
            verified: true,
        });
        let c = call(&m);
        assert_eq!(c.title(), "Bob is calling");
        assert_eq!(c.phase, Phase::Incoming);
        assert!(c.chat.is_empty() && c.verified);
    }

    #[test]
    fn reachability_shows_what_was_achieved_and_starts_over_with_the_services() {
        let mut m = model();
        assert_eq!(crate::words::online(&m.online), None);
        m.apply(Update::PortMapped("PCP".into()));
        m.apply(Update::Reachable(Records {
            contacts: 3,
            nat: "varies".into(),
            forwarded: true,
        }));
        let snap = m.snapshot();
        assert_eq!(snap["online"]["port_mapped"], "PCP");
        assert_eq!(snap["online"]["records"]["contacts"], 3);
        assert_eq!(snap["online"]["records"]["forwarded"], true);
        let line = crate::words::online(&m.online).unwrap();
        assert!(
            line.contains("for 3 contact(s)") && line.contains("(PCP)"),
            "{line}"
        );
        // Forwarded: the warning about strict routers does not apply.
        assert!(!line.contains("may not get through"), "{line}");
        m.apply(Update::Online(Online::default()));
        assert_eq!(crate::words::online(&m.online), None);
        assert!(m.snapshot()["online"]["records"].is_null());
    }

    #[test]
    fn the_passphrase_is_never_shown_or_printed() {
        let mut m = Model::new(model().settings);
        m.apply(Update::NeedIdentity { sealed: false });
        let a = Action::CreateIdentity {
            passphrase: Some(Passphrase::new("correct horse battery".into())),
        };
        assert!(m.act(&a));
        assert!(!format!("{a:?}").contains("horse"), "{a:?}");
        assert!(!m.snapshot().to_string().contains("horse"));
    }
}
