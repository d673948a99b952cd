//! The app's engine: identity, contacts, the listening node, the call and its media, on a
//! tokio runtime of its own. The window sends [`Action`]s and reads [`Update`]s; nothing
//! here draws.

mod call;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use extrasafe_app::dial::Outgoing;
use extrasafe_app::media::CallMedia;
use extrasafe_app::transfers::Transfers;
use extrasafe_app::{FilesPolicy, Presence, ReachConfig, ReachEvent};
use extrasafe_core::contacts::ContactBook;
use extrasafe_core::{Identity, PeerId, Ticket};
use extrasafe_devices::{DeviceList, SoundServer};
use extrasafe_net::dial::{DialError, DialStep};
use extrasafe_net::video_media::LatestFrame;
use extrasafe_net::{AcceptPolicy, Call, CallEvent, IdentityStore, Node, NodeConfig};
use tokio::sync::mpsc;

use crate::model::{
    Action, ContactRow, Devices, Me, NoticeKind, Online, Passphrase, Settings, Update,
};
use crate::words;

/// How the backend is set up (from the command line).
#[derive(Clone, Debug)]
pub struct Options {
    pub data_dir: Option<PathBuf>,
    /// Where the node listens.
    pub bind: std::net::IpAddr,
    /// On which port [default: the one derived from the identity's key].
    pub port: Option<u16>,
    /// How long our calls ring before we give up.
    pub ring_timeout: Duration,
    /// LAN, DHT, STUN and port mapping: how contacts find us and we them.
    pub reach: ReachConfig,
    /// Which offered files are saved without asking.
    pub accept_files: FilesPolicy,
    /// Connect to the sound server (off in tests that run without one).
    pub sound: bool,
}

/// Where the pictures of a call appear: the window reads them each frame.
#[derive(Clone, Default)]
pub struct Pictures {
    pub remote: LatestFrame,
    pub preview: LatestFrame,
}

/// The window's side of the backend.
pub struct Handle {
    pub actions: mpsc::UnboundedSender<Action>,
    pub updates: std::sync::mpsc::Receiver<Update>,
    pub pictures: Pictures,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// Asks the backend to end any call and stop, and waits for it (a few seconds at most).
    pub fn shut_down(&mut self) {
        let _ = self.actions.send(Action::Quit);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the backend on its own thread; `wake(d)` asks the window to repaint within `d`
/// (after each update at once; for our own preview picture a little later, so it rides
/// along with the next picture of theirs instead of costing a frame of its own).
pub fn start(
    opts: Options,
    settings: Settings,
    wake: impl Fn(Duration) + Send + Sync + 'static,
) -> Handle {
    let (atx, arx) = mpsc::unbounded_channel();
    let (utx, urx) = std::sync::mpsc::channel();
    let pictures = Pictures::default();
    let p = pictures.clone();
    let thread = std::thread::Builder::new()
        .name("backend".into())
        .spawn(move || {
            // Calls' audio, the network and the sound client run on threads this one starts:
            // they inherit a raised priority where the system allows it (the window's own
            // drawing keeps the default).
            let boost = extrasafe_devices::priority::raise_for_audio();
            tracing::debug!(?boost, "backend priority");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let out = Outbox {
                tx: utx,
                wake: Arc::new(wake),
            };
            rt.block_on(Backend::new(opts, settings, out, p, arx).run());
            // Whatever is still running (a DHT lookup) is not waited for.
            rt.shutdown_timeout(Duration::from_millis(500));
        })
        .expect("spawn the backend thread");
    Handle {
        actions: atx,
        updates: urx,
        pictures,
        thread: Some(thread),
    }
}

#[derive(Clone)]
struct Outbox {
    tx: std::sync::mpsc::Sender<Update>,
    wake: Arc<dyn Fn(Duration) + Send + Sync>,
}

impl Outbox {
    fn send(&self, u: Update) {
        let _ = self.tx.send(u);
        (self.wake)(Duration::ZERO);
    }
    fn error(&self, text: String) {
        self.send(Update::Notice(NoticeKind::Error, text));
    }
    fn info(&self, text: String) {
        self.send(Update::Notice(NoticeKind::Info, text));
    }
}

/// The call in progress and its media.
struct Live {
    call: Call,
    peer: PeerId,
    who: String,
    /// The person wants to send video (before the call's media starts: the choice made
    /// when calling or answering).
    video_wanted: bool,
    /// The call's audio and video and their switches (the application layer's), once the
    /// call is up.
    media: Option<CallMedia>,
    /// The call's transfers (the application layer's), and the name each is shown under,
    /// by id and direction (we send it).
    transfers: Transfers,
    labels: std::collections::HashMap<(u64, bool), String>,
    /// Muted (applies to the media when it starts, too).
    muted: bool,
    connected: bool,
    /// What each open offer holds, to label its download.
    offers: std::collections::HashMap<u64, String>,
    /// The ring of an incoming call, until it is answered or over.
    ringer: Option<AbortOnDrop>,
    /// A call we placed: the router's port mapping, kept for the call.
    outgoing: Option<Outgoing>,
    /// Device and video problems already told (each once a call).
    faults_told: Vec<String>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A call being placed.
struct Dialling {
    task: tokio::task::JoinHandle<Result<(Call, Outgoing), DialError>>,
    peer: PeerId,
    who: String,
    video: bool,
}

/// Settings waiting to be written (the newest only), and the lock the one writer holds.
type Unsaved = (std::sync::Mutex<Option<Vec<u8>>>, std::sync::Mutex<()>);

/// Writes the newest settings waiting, if any, one writer at a time (blocking: a file sync).
fn write_settings(store: &IdentityStore, unsaved: &Unsaved, out: &Outbox) {
    let _writer = unsaved.1.lock().expect("settings writer lock poisoned");
    let newest = unsaved.0.lock().expect("settings lock poisoned").take();
    if let Some(bytes) = newest {
        if let Err(e) = store.save_settings(&bytes) {
            out.error(format!(
                "Your settings could not be kept for next time ({e}); they hold until the app \
                 closes."
            ));
        }
    }
}

struct Backend {
    opts: Options,
    settings: Settings,
    out: Outbox,
    pictures: Pictures,
    actions: mpsc::UnboundedReceiver<Action>,
    store: Option<IdentityStore>,
    /// The settings waiting to be written (the newest), and the lock of the one writer.
    unsaved: Arc<Unsaved>,
    identity: Option<Identity>,
    book: ContactBook,
    /// The contacts file exists but could not be opened: never overwritten.
    contacts_unreadable: bool,
    node: Option<Arc<Node>>,
    presence: Option<Presence>,
    /// Contacts added to the list on disk by another process (the command line's
    /// `contact add`) while the app runs.
    added: Option<(mpsc::Receiver<Vec<PeerId>>, extrasafe_app::AbortOnDrop)>,
    sound: Option<SoundServer>,
    devices: Option<DeviceList>,
    live: Option<Live>,
    /// A call being placed: its task, whom, and whether with video.
    dialling: Option<Dialling>,
    steps: mpsc::UnboundedReceiver<(PeerId, DialStep)>,
    steps_tx: mpsc::UnboundedSender<(PeerId, DialStep)>,
    /// What the reachability services report.
    reach: mpsc::UnboundedReceiver<ReachEvent>,
    reach_tx: mpsc::UnboundedSender<ReachEvent>,
    /// Files hashed for sending, back from their task.
    prepared: mpsc::UnboundedReceiver<Prepared>,
    prepared_tx: mpsc::UnboundedSender<Prepared>,
}

/// The next report of contacts added on disk; never, without a follower.
async fn added(
    follower: &mut Option<(mpsc::Receiver<Vec<PeerId>>, extrasafe_app::AbortOnDrop)>,
) -> Option<Vec<PeerId>> {
    match follower {
        Some((rx, _)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

type Prepared = Result<extrasafe_net::transfer::Prepared, extrasafe_net::transfer::PrepareError>;

enum Input {
    Action(Option<Action>),
    Event(Option<CallEvent>),
    Incoming(Option<Call>),
    Dialled(Result<(Call, Outgoing), DialError>),
    Prepared(Prepared),
    Step(PeerId, DialStep),
    Reach(ReachEvent),
    ContactsOnDisk,
    Tick,
}

impl Backend {
    fn new(
        opts: Options,
        settings: Settings,
        out: Outbox,
        pictures: Pictures,
        actions: mpsc::UnboundedReceiver<Action>,
    ) -> Self {
        let (steps_tx, steps) = mpsc::unbounded_channel();
        let (prepared_tx, prepared) = mpsc::unbounded_channel();
        let (reach_tx, reach) = mpsc::unbounded_channel();
        Self {
            opts,
            settings,
            out,
            pictures,
            actions,
            store: None,
            unsaved: Default::default(),
            identity: None,
            book: ContactBook::default(),
            contacts_unreadable: false,
            node: None,
            presence: None,
            added: None,
            sound: None,
            devices: None,
            live: None,
            dialling: None,
            steps,
            steps_tx,
            prepared,
            prepared_tx,
            reach,
            reach_tx,
        }
    }

    async fn run(mut self) {
        self.open_store();
        if self.identity.is_some() {
            self.start_node().await;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut ticks = 0u64;
        loop {
            let node = self.node.clone();
            let input = tokio::select! {
                a = self.actions.recv() => Input::Action(a),
                e = call::next_event(&mut self.live) => Input::Event(e),
                c = call::incoming(&node) => Input::Incoming(c),
                r = call::dialled(&mut self.dialling) => Input::Dialled(r),
                Some((p, s)) = self.steps.recv() => Input::Step(p, s),
                Some(p) = self.prepared.recv() => Input::Prepared(p),
                Some(e) = self.reach.recv() => Input::Reach(e),
                Some(_) = added(&mut self.added) => Input::ContactsOnDisk,
                _ = tick.tick() => Input::Tick,
            };
            match input {
                Input::Action(None) | Input::Action(Some(Action::Quit)) => break,
                Input::Action(Some(a)) => self.act(a).await,
                Input::Event(e) => self.on_event(e).await,
                Input::Incoming(Some(call)) => self.ringing(call),
                Input::Incoming(None) => {}
                Input::Dialled(r) => self.dialled(r),
                Input::Prepared(p) => self.offer(p).await,
                Input::Step(peer, step) => self.step(peer, step),
                Input::Reach(e) => self.reach_event(e),
                Input::ContactsOnDisk => self.contacts_on_disk().await,
                Input::Tick => {
                    ticks += 1;
                    self.transfers().await;
                    if ticks.is_multiple_of(4) {
                        self.stats();
                    }
                }
            }
        }
        self.quit().await;
    }

    /// Keeps the settings for the next run, off the runtime that carries the call (a sync of
    /// a small file can still take a while on a slow disk); the newest always wins.
    /// Changes a setting and keeps it for the next run.
    fn set(&mut self, change: impl FnOnce(&mut Settings)) {
        change(&mut self.settings);
        self.save_settings();
    }

    fn save_settings(&self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        *self.unsaved.0.lock().expect("settings lock poisoned") =
            Some(crate::saved::encode(&self.settings));
        let (unsaved, out) = (self.unsaved.clone(), self.out.clone());
        tokio::task::spawn_blocking(move || write_settings(&store, &unsaved, &out));
    }

    /// Waits until the settings changed last are written (the app is closing: a write still
    /// queued would be lost with the process).
    pub(super) async fn flush_settings(&self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let (unsaved, out) = (self.unsaved.clone(), self.out.clone());
        let _ = tokio::task::spawn_blocking(move || write_settings(&store, &unsaved, &out)).await;
    }

    fn open_store(&mut self) {
        let store = match &self.opts.data_dir {
            Some(d) => IdentityStore::at(d),
            None => match IdentityStore::default_location() {
                Ok(s) => s,
                Err(e) => {
                    self.out.send(Update::IdentityFailed(format!(
                        "Cannot find where to keep your identity ({e}). Start the app with \
                         --data-dir FOLDER."
                    )));
                    return;
                }
            },
        };
        let sealed = store.exists() && store.is_sealed().unwrap_or(false);
        let exists = store.exists();
        self.store = Some(store);
        if exists && !sealed {
            let r = self.store.as_ref().expect("set above").load(None);
            match r {
                Ok(id) => {
                    self.identity = Some(id);
                    return;
                }
                Err(e) => self.out.send(Update::IdentityFailed(format!(
                    "Your identity file could not be read: {e}."
                ))),
            }
        }
        self.out.send(Update::NeedIdentity { sealed });
    }

    async fn act(&mut self, a: Action) {
        match a {
            Action::CreateIdentity { passphrase } => self.create(passphrase).await,
            Action::Unlock { passphrase } => self.unlock(passphrase).await,
            Action::AddContact { ticket, name } => self.add_contact(&ticket, &name).await,
            Action::RemoveContact { peer_id } => self.remove_contact(&peer_id).await,
            Action::RenameContact { peer_id, name } => self.rename_contact(&peer_id, &name),
            Action::Call { peer_id, video } => self.call(&peer_id, video),
            Action::Accept { video } => {
                if let Some(l) = &mut self.live {
                    l.video_wanted = video;
                    l.call.accept();
                }
            }
            Action::Decline => {
                if let Some(l) = &self.live {
                    l.call.decline();
                }
            }
            Action::HangUp => {
                if let Some(Dialling { task, who, .. }) = self.dialling.take() {
                    task.abort();
                    self.out
                        .send(Update::Ended(format!("You stopped calling {who}.")));
                }
                if let Some(l) = &self.live {
                    l.call.hangup();
                }
            }
            Action::Mute(m) => {
                if let Some(l) = &mut self.live {
                    l.muted = m;
                    if let Some(media) = &mut l.media {
                        // A call whose sound could not start has nothing to mute.
                        let _ = media.set_muted(m);
                    }
                    self.local_media();
                }
            }
            Action::Camera(on) => self.camera(on),
            Action::Share(on) => self.share(on),
            Action::Chat(text) => {
                if let Some(l) = &self.live {
                    match l.call.send_chat(text.clone()).await {
                        Ok(()) => self.out.send(Update::Chat {
                            mine: true,
                            text,
                            at: call::clock(),
                        }),
                        Err(e) => self.out.error(format!("Not sent: {e}.")),
                    }
                }
            }
            Action::SendFiles(paths) => self.send_files(paths),
            Action::AcceptOffer(id) => self.accept_offer(id),
            Action::DeclineOffer(id) => {
                if let Some(l) = &mut self.live {
                    let _ = l.transfers.decline(&l.call, Some(id)).await;
                    l.offers.remove(&id);
                    self.out.send(Update::OfferAnswered(id));
                }
            }
            Action::CancelTransfer { id, outgoing } => {
                if let Some(l) = &self.live {
                    l.transfers.cancel(id, outgoing);
                }
            }
            Action::ShowFolder(dir) => {
                if let Err(e) = std::process::Command::new("xdg-open").arg(&dir).spawn() {
                    self.out.error(format!(
                        "Could not open the folder ({e}). The files are in {}.",
                        dir.display()
                    ));
                }
            }
            Action::MarkVerified => self.mark_verified(None).await,
            Action::NewTicket => self.new_ticket().await,
            Action::SaveCaller { name } => self.mark_verified(Some(name)).await,
            Action::SetMic(m) => self.set(|s| s.mic = m),
            Action::SetSpeaker(sp) => self.set(|s| s.speaker = sp),
            Action::SetVideo(v) => self.set(|s| s.video = v),
            Action::SetFilesDir(d) => self.set(|s| s.files_dir = d),
            Action::SetEchoCancel(on) => self.set(|s| s.echo_cancel = on),
            Action::SetStayReachable(on) => self.set(|s| s.stay_reachable = on),
            Action::DismissNotice(_)
            | Action::DismissMissed
            | Action::PickFiles { .. }
            | Action::QuitApp
            | Action::CloseCall
            | Action::Quit => {}
        }
    }

    async fn create(&mut self, passphrase: Option<Passphrase>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        // Made earlier, but the node did not start (a port in use): try that again.
        if self.identity.is_some() {
            self.start_node().await;
            return;
        }
        // A key file that exists but could not be read is never replaced from here: it may
        // be the only copy of the person's identity.
        if store.exists() {
            self.out.send(Update::IdentityFailed(format!(
                "An identity already exists in {} but could not be opened. Nothing was changed. \
                 To start over with a new identity, move that file away and restart the app.",
                store.key_path().display()
            )));
            return;
        }
        let pass = passphrase.map(|p| p.0);
        if let Some(p) = &pass {
            if p.chars().count() < 8 {
                self.out.send(Update::IdentityFailed(
                    "Use a passphrase of at least 8 characters (several words are best), or none."
                        .into(),
                ));
                return;
            }
        }
        let made = tokio::task::spawn_blocking(move || {
            let id = extrasafe_net::new_identity();
            store
                .save(&id, pass.as_ref().map(|p| p.as_bytes()))
                .map(|()| id)
        })
        .await;
        match made {
            Ok(Ok(id)) => {
                self.identity = Some(id);
                self.start_node().await;
            }
            Ok(Err(e)) => self.out.send(Update::IdentityFailed(format!(
                "Your identity could not be saved: {e}."
            ))),
            Err(_) => {}
        }
    }

    async fn unlock(&mut self, passphrase: Passphrase) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let pass = passphrase.0;
        let opened = tokio::task::spawn_blocking(move || store.load(Some(pass.as_bytes()))).await;
        match opened {
            Ok(Ok(id)) => {
                self.identity = Some(id);
                self.start_node().await;
            }
            Ok(Err(extrasafe_net::StoreError::KeyFile(
                extrasafe_core::keyfile::KeyFileError::WrongPassphrase,
            ))) => self.out.send(Update::IdentityFailed(
                "That passphrase does not open your identity. Try again.".into(),
            )),
            Ok(Err(e)) => self.out.send(Update::IdentityFailed(format!(
                "Your identity could not be opened: {e}."
            ))),
            Err(_) => {}
        }
    }

    /// Loads the contacts, binds the node and becomes reachable.
    async fn start_node(&mut self) {
        let (Some(store), Some(identity)) = (&self.store, &self.identity) else {
            return;
        };
        let mut contacts_problem = None;
        match store.load_contacts(identity) {
            Ok(book) => self.book = book,
            Err(e) => {
                self.contacts_unreadable = true;
                contacts_problem = Some(format!(
                    "Your contact list could not be opened ({e}); starting with none. The \
                     file is left as it is: changes to contacts are not saved until the app \
                     starts with it readable."
                ))
            }
        }
        let sealed = store.is_sealed().unwrap_or(false);
        let ticket_secret = match store.ticket_secret(identity) {
            Ok(s) => s,
            Err(e) => {
                self.out.send(Update::IdentityFailed(format!(
                    "Your ticket could not be read or made: {e}."
                )));
                return;
            }
        };
        let port = self
            .opts
            .port
            .unwrap_or_else(|| extrasafe_core::access::listening_port(identity));
        let peers: Vec<PeerId> = self.book.list().iter().map(|c| c.peer).collect();
        let config = NodeConfig {
            bind: SocketAddr::new(self.opts.bind, port),
            policy: AcceptPolicy::Ask,
            ticket_secret: Some(ticket_secret),
            contacts: extrasafe_net::gate::contact_keys(identity, &peers),
            // Calls with these contacts replace the roots of their rendezvous records (a
            // contact added while the app runs is given its first root when added).
            roots: extrasafe_net::roots::Roots::stored(store, identity).ok(),
            inbox: store
                .own_inbox(
                    identity,
                    extrasafe_core::inbox::inbox_epoch_of(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64),
                    ),
                )
                .ok()
                .map(|o| o.chain),
            session: extrasafe_core::SessionConfig {
                ring_timeout: self.opts.ring_timeout,
                ..Default::default()
            },
            ..NodeConfig::default()
        };
        let node = match Node::bind(identity, config).await {
            Ok(n) => Arc::new(n),
            Err(extrasafe_net::NodeError::Bind { addr, source })
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                self.out.send(Update::IdentityFailed(format!(
                    "Port {} is already in use: is EXTRA SAFE already open? Close it, or start \
                     this one with --port 0.",
                    addr.port()
                )));
                return;
            }
            Err(e) => {
                self.out.send(Update::IdentityFailed(format!(
                    "EXTRA SAFE could not start: {e}."
                )));
                return;
            }
        };
        let ticket = node.ticket();
        self.out.send(Update::Ready(Me {
            peer_id: ticket.peer.to_string(),
            ticket: ticket.to_string(),
            sealed,
        }));
        if let Some(problem) = contacts_problem {
            self.out.error(problem);
        }
        self.added = node
            .roots()
            .map(|r| extrasafe_app::contacts::additions(r, &peers));
        self.node = Some(node);
        self.contacts_changed().await;
        if self.opts.sound {
            self.connect_sound().await;
        } else {
            self.devices_update(None);
        }
    }

    async fn connect_sound(&mut self) {
        let connect = tokio::task::spawn_blocking(SoundServer::connect);
        let found = match tokio::time::timeout(Duration::from_secs(3), connect).await {
            Ok(Ok(Ok(server))) => {
                match tokio::time::timeout(Duration::from_secs(3), server.devices()).await {
                    Ok(Ok(list)) => Ok((server, list)),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the sound server did not answer".into()),
                }
            }
            Ok(Ok(Err(e))) => Err(e.to_string()),
            _ => Err("the sound server did not answer".into()),
        };
        match found {
            Ok((server, list)) => {
                self.sound = Some(server);
                self.devices = Some(list);
                self.devices_update(None);
            }
            Err(e) => self.devices_update(Some(format!(
                "No sound devices ({e}): calls send silence and play nothing. Start PulseAudio \
                 or PipeWire, then restart the app."
            ))),
        }
    }

    fn devices_update(&self, problem: Option<String>) {
        let mut d = Devices {
            sound_problem: problem,
            cameras: call::cameras(),
            ..Devices::default()
        };
        if let Some(list) = &self.devices {
            d.mics = list
                .mics
                .iter()
                .map(|m| (m.name.clone(), m.description.clone()))
                .collect();
            d.speakers = list
                .speakers
                .iter()
                .map(|m| (m.name.clone(), m.description.clone()))
                .collect();
        }
        self.out.send(Update::Devices(d));
    }

    fn contact_rows(&self) -> Vec<ContactRow> {
        self.book
            .list()
            .iter()
            .map(|c| ContactRow {
                peer_id: c.peer.to_string(),
                name: c.name.clone(),
                verified: c.verified,
                has_address: !c.addrs.is_empty(),
            })
            .collect()
    }

    /// A new inbox chain, so that a removed contact cannot follow our presence any longer
    /// (the others get the new one in their next call with us).
    fn renew_inbox(&self) {
        let (Some(store), Some(identity)) = (&self.store, &self.identity) else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Err(e) = store.renew_inbox(identity, extrasafe_core::inbox::inbox_epoch_of(now)) {
            self.out.error(format!(
                "Your inbox could not be renewed ({e}): the contact you removed can still \
                 see on the DHT when you are online and where."
            ));
        }
    }

    fn save_contacts(&self) -> bool {
        let (Some(store), Some(identity)) = (&self.store, &self.identity) else {
            return false;
        };
        // Saving would replace a file we could not read with one that lacks its contacts.
        if self.contacts_unreadable {
            self.out.error(
                "Not saved: your contact list on disk could not be opened, and saving now \
                 would replace it. The change lasts until the app closes."
                    .into(),
            );
            return false;
        }
        match store.save_contacts(identity, &self.book) {
            Ok(()) => true,
            Err(e) => {
                self.out
                    .error(format!("Your contacts could not be saved: {e}."));
                false
            }
        }
    }

    /// Someone added contacts to the list on disk (the command line, beside the window): the
    /// list is read again and they can reach us at once.
    async fn contacts_on_disk(&mut self) {
        if self.contacts_unreadable {
            return;
        }
        let (Some(store), Some(identity)) = (&self.store, &self.identity) else {
            return;
        };
        match store.load_contacts(identity) {
            // Our own additions were announced when made.
            Ok(book)
                if book
                    .list()
                    .iter()
                    .all(|c| self.book.by_peer(&c.peer).is_some()) => {}
            Ok(book) => {
                self.book = book;
                self.contacts_changed().await;
            }
            Err(e) => tracing::debug!(error = %e, "the contact list could not be read again"),
        }
    }

    /// Shows the list and announces us anew to the contacts we now have.
    async fn contacts_changed(&mut self) {
        self.out.send(Update::Contacts(self.contact_rows()));
        // Withdrawn politely (mDNS goodbye, the port mapping deleted) before starting anew.
        if let Some(p) = self.presence.take() {
            p.stop().await;
        }
        self.out.send(Update::Online(Online::default()));
        let (Some(node), Some(identity)) = (self.node.clone(), &self.identity) else {
            return;
        };
        let peers: Vec<PeerId> = self.book.list().iter().map(|c| c.peer).collect();
        // Contacts are let in by the key we share with each; a removed one no longer is.
        node.set_contacts(extrasafe_net::gate::contact_keys(identity, &peers));
        // A new contact's first root, so that calls with it replace the root of its records.
        if let Some(roots) = node.roots() {
            roots.add_contacts(identity, &peers);
        }
        let presence = Presence::start(
            node,
            identity,
            &peers,
            &self.opts.reach,
            self.reach_tx.clone(),
        )
        .await;
        self.out.send(Update::Reach(words::reach(
            peers.len(),
            &self.opts.reach,
            &presence,
        )));
        self.presence = Some(presence);
    }

    /// What the reachability services report: shown as the state it is, or as a notice.
    fn reach_event(&mut self, e: ReachEvent) {
        match e {
            ReachEvent::Reachable { us, contacts } => {
                self.out.send(Update::Reachable(crate::model::Records {
                    contacts,
                    nat: format!("{:?}", us.nat).to_lowercase(),
                    forwarded: us.mapped.is_some(),
                }))
            }
            ReachEvent::PortMapped(m) => self
                .out
                .send(Update::PortMapped(m.protocol.name().to_string())),
            ReachEvent::NoPath { peer, error } => {
                let who = self.who(&peer);
                self.out
                    .info(words::no_path_back(&who, &DialError::Call(error)));
            }
            other => {
                if let Some(text) = words::reach_trouble(&other) {
                    self.out.info(text);
                }
            }
        }
    }

    async fn add_contact(&mut self, ticket: &str, name: &str) {
        let ticket: Ticket = match ticket.trim().parse() {
            Ok(t) => t,
            Err(e) => {
                self.out.error(format!("That is not a ticket: {e}."));
                return;
            }
        };
        if self
            .node
            .as_ref()
            .is_some_and(|n| n.peer_id() == ticket.peer)
        {
            self.out.error("That ticket is your own.".into());
            return;
        }
        // A ticket of someone already in the list under another name renames nobody (a
        // ticket pasted under the wrong name would turn Alice into Bob): renaming is its
        // own action in the list.
        if let Some(known) = self.book.known_under_another_name(&ticket.peer, name) {
            self.out.error(format!(
                "Not added: that ticket is of someone already in your contacts as {}. To \
                 change the name, rename them in the list.",
                known.name
            ));
            return;
        }
        match self.book.add_ticket(name, &ticket) {
            Ok(_) => {
                if self.save_contacts() {
                    self.out.info(format!(
                        "{} is in your contacts. Compare the security code on your first call \
                         to make sure it is really them.",
                        name.trim()
                    ));
                }
                self.contacts_changed().await;
            }
            Err(e) => self.out.error(format!("Not added: {e}.")),
        }
    }

    /// A new ticket secret: tickets given out before get no answer from now on (a call in
    /// progress goes on); contacts still reach us, on the same port.
    async fn new_ticket(&mut self) {
        let (Some(store), Some(identity), Some(node)) =
            (self.store.clone(), &self.identity, self.node.clone())
        else {
            return;
        };
        let secret = match store.new_ticket(identity) {
            Ok(s) => s,
            Err(e) => {
                self.out.error(format!("No new ticket was made: {e}."));
                return;
            }
        };
        node.set_ticket_secret(Some(secret));
        let ticket = node.ticket();
        self.out.send(Update::Ready(Me {
            peer_id: ticket.peer.to_string(),
            ticket: ticket.to_string(),
            sealed: store.is_sealed().unwrap_or(false),
        }));
        self.out.info(
            "New ticket made. Tickets you gave out before no longer reach you; your contacts \
             still do. Share this one with people who should be able to call you."
                .into(),
        );
    }

    /// A new name; addresses and verification stay.
    fn rename_contact(&mut self, peer_id: &str, name: &str) {
        let Ok(peer) = peer_id.parse::<PeerId>() else {
            return;
        };
        match self.book.add(name, peer, Vec::new()) {
            Ok(_) => {
                self.save_contacts();
                self.out.send(Update::Contacts(self.contact_rows()));
            }
            Err(e) => self.out.error(format!("Not renamed: {e}.")),
        }
    }

    async fn remove_contact(&mut self, peer_id: &str) {
        if let Ok(c) = self.book.remove(peer_id) {
            self.renew_inbox();
            if self.save_contacts() {
                self.out
                    .info(format!("Removed {} from your contacts.", c.name));
            }
            self.contacts_changed().await;
        }
    }
}
