//! The window: each frame takes in the backend's updates, draws the model, and passes the
//! person's actions on.

use std::io::Write;

use eframe::egui;

use crate::automation::Automation;
use crate::backend::Handle;
use crate::model::{Action, Model};
use crate::view;

/// What the person is typing, and other state that only the drawing needs.
#[derive(Default)]
pub struct Fields {
    /// Passphrase fields: wiped when replaced or dropped (egui's own copies of the text
    /// while it lays it out are not).
    pub pass1: zeroize::Zeroizing<String>,
    pub pass2: zeroize::Zeroizing<String>,
    pub unlock: zeroize::Zeroizing<String>,
    pub ticket: String,
    pub name: String,
    pub chat: String,
    pub file: String,
    pub caller_name: String,
    pub settings_open: bool,
    pub copied: Option<std::time::Instant>,
    /// The call (peer and phase) whose first frame has been drawn: focus goes to its main
    /// button once.
    pub focused_for: Option<String>,
    /// The contact being renamed (peer ID, the name as typed so far).
    pub renaming: Option<(String, String)>,
    /// The contact whose removal waits for confirmation.
    pub removing: Option<String>,
    /// "New ticket" was pressed once: the second press confirms.
    pub renewing: bool,
    /// The window title last set.
    pub title: String,
    /// Chat and files shown beside (or, when narrow, instead of) the picture; `None` until
    /// the person chooses: then open when the window is wide enough.
    pub side_open: Option<bool>,
    /// The call fills the screen.
    pub fullscreen: bool,
}

/// Pictures uploaded to the GPU, with the frame index they show.
#[derive(Default)]
pub struct Textures {
    pub qr: Option<(String, egui::TextureHandle)>,
    pub remote: Option<(u64, egui::TextureHandle)>,
    pub preview: Option<(u64, egui::TextureHandle)>,
}

pub struct App {
    pub model: Model,
    backend: Handle,
    pub fields: Fields,
    pub textures: Textures,
    automation: Option<Automation>,
    last_snapshot: String,
    /// The system's light or dark appearance as it changes (Linux: the desktop portal).
    #[cfg(target_os = "linux")]
    pub scheme: Option<std::sync::mpsc::Receiver<crate::system::Scheme>>,
    /// Desktop notifications for rings and missed calls.
    #[cfg(target_os = "linux")]
    pub notifier: Option<crate::system::Notifier>,
    /// The file chooser is open for the call with this peer; what it gives goes to them.
    #[cfg(target_os = "linux")]
    pub choosing: Option<(String, crate::system::Chosen, std::time::Instant)>,
    /// The tray icon, while "stay reachable" is on and the desktop shows one.
    #[cfg(target_os = "linux")]
    tray: Option<crate::system::Tray>,
    /// The tray could not be put up; not tried again this run.
    tray_failed: bool,
    /// The desktop shows the tray icon now.
    tray_shown: bool,
    /// The window is hidden (closed with "stay reachable" on).
    hidden: bool,
    /// Quit was chosen: the next close is for real.
    quitting: bool,
}

impl App {
    pub fn new(model: Model, backend: Handle, automation: Option<Automation>) -> Self {
        Self {
            model,
            backend,
            fields: Fields::default(),
            textures: Textures::default(),
            automation,
            last_snapshot: String::new(),
            #[cfg(target_os = "linux")]
            scheme: None,
            #[cfg(target_os = "linux")]
            notifier: None,
            #[cfg(target_os = "linux")]
            choosing: None,
            #[cfg(target_os = "linux")]
            tray: None,
            tray_failed: false,
            tray_shown: false,
            hidden: false,
            quitting: false,
        }
    }

    /// The window's title follows the call (the task bar shows who is calling), and an
    /// incoming call asks the desktop for attention.
    fn title(&mut self, ctx: &egui::Context) {
        let title = match &self.model.call {
            Some(c) => format!("{} - EXTRA SAFE", c.title()),
            None => "EXTRA SAFE".to_string(),
        };
        if title != self.fields.title {
            let ringing = self
                .model
                .call
                .as_ref()
                .is_some_and(|c| c.phase == crate::model::Phase::Incoming);
            if ringing {
                ctx.send_viewport_cmd(egui::ViewportCommand::RequestUserAttention(
                    egui::UserAttentionType::Critical,
                ));
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.fields.title = title;
        }
    }

    /// Tells the desktop of rings and missed calls when the window is not in front (in front,
    /// the window itself shows them).
    fn alerts(&mut self, ctx: &egui::Context) {
        let alerts = std::mem::take(&mut self.model.alerts);
        // A ring brings a hidden window back.
        let ringing = alerts
            .iter()
            .any(|a| matches!(a, crate::model::Alert::Incoming { .. }));
        if ringing && self.hidden {
            self.show_window(ctx);
        }
        #[cfg(target_os = "linux")]
        if let Some(n) = &self.notifier {
            use crate::model::Alert;
            use crate::system::Notification;
            let away = !ctx.input(|i| i.focused);
            for a in alerts {
                match a {
                    Alert::Incoming { who } if away => {
                        let (summary, body) = crate::words::ringing_alert(who.as_deref());
                        n.send(Notification::Ringing { summary, body });
                    }
                    Alert::Missed(m) => {
                        let (summary, body) =
                            crate::words::missed_alert(m.contact.as_deref(), &m.at);
                        n.send(Notification::Missed { summary, body });
                    }
                    Alert::Handled => n.send(Notification::Withdraw),
                    Alert::Incoming { .. } => {}
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (alerts, ctx);
    }

    pub fn pictures(&self) -> &crate::backend::Pictures {
        &self.backend.pictures
    }

    fn show_window(&mut self, ctx: &egui::Context) {
        if self.hidden {
            self.hidden = false;
            ctx.send_viewport_cmd(egui::ViewportCommand::Visible(true));
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::Minimized(false));
        ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
    }

    /// Ends the app, even when closing the window would only hide it.
    fn quit(&mut self, ctx: &egui::Context) {
        self.quitting = true;
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    /// "Stay reachable": the tray icon follows the setting, its clicks show the window or
    /// quit, and closing the window hides it (or, with no tray on this desktop, minimizes
    /// it) instead of ending the app.
    fn stay_reachable(&mut self, ctx: &egui::Context) {
        let wanted = self.model.settings.stay_reachable;
        #[cfg(target_os = "linux")]
        {
            use crate::system::TrayEvent;
            if wanted && self.tray.is_none() && !self.tray_failed {
                self.tray = Some(crate::system::Tray::start(ctx.clone()));
            }
            if !wanted {
                self.tray = None;
                self.tray_shown = false;
            }
            let events: Vec<_> = self
                .tray
                .as_ref()
                .map(|t| t.events.try_iter().collect())
                .unwrap_or_default();
            for e in events {
                match e {
                    TrayEvent::Show => self.show_window(ctx),
                    TrayEvent::Quit => self.quit(ctx),
                    TrayEvent::Shown(on) => {
                        self.tray_shown = on;
                        // No icon left to bring the window back: it comes back by itself.
                        if !on && self.hidden {
                            self.show_window(ctx);
                        }
                    }
                    TrayEvent::Failed(why) => {
                        tracing::debug!("no tray icon: {why}");
                        self.tray = None;
                        self.tray_shown = false;
                        self.tray_failed = true;
                    }
                }
            }
        }
        let closing = ctx.input(|i| i.viewport().close_requested());
        // Only once the identity is open: before that there is nothing to be reachable with,
        // and no Quit button.
        let ready = self.model.stage == crate::model::Stage::Ready;
        if closing && wanted && ready && !self.quitting {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            // Wayland has no hidden windows (winit ignores it there): minimized instead.
            let wayland = std::env::var_os("WAYLAND_DISPLAY").is_some_and(|v| !v.is_empty());
            if self.has_tray() && !wayland {
                self.hidden = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Visible(false));
            } else {
                ctx.send_viewport_cmd(egui::ViewportCommand::Minimized(true));
                if !self.has_tray() {
                    self.model.apply(crate::model::Update::Notice(
                        crate::model::NoticeKind::Info,
                        crate::words::NO_TRAY.into(),
                    ));
                }
            }
        }
    }

    fn has_tray(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.tray.is_some() && self.tray_shown;
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Opens the file chooser, unless it is open already.
    fn choose_files(&mut self, ctx: &egui::Context, folder: bool) {
        // One chooser at a time; one still open after a minute is taken to be lost (a
        // portal that went away without answering) and replaced.
        #[cfg(target_os = "linux")]
        if self
            .choosing
            .as_ref()
            .is_none_or(|c| c.2.elapsed() > std::time::Duration::from_secs(60))
        {
            let Some(peer) = self.sending_to() else {
                return;
            };
            self.choosing = Some((
                peer,
                crate::system::pick_files(ctx.clone(), crate::words::CHOOSER_TITLE.into(), folder),
                std::time::Instant::now(),
            ));
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (ctx, folder);
            self.model.apply(crate::model::Update::Notice(
                crate::model::NoticeKind::Info,
                crate::words::NO_CHOOSER.into(),
            ));
        }
    }

    /// The peer of the call files can be sent in now.
    fn sending_to(&self) -> Option<String> {
        self.model
            .call
            .as_ref()
            .filter(|c| c.controls().send_files)
            .map(|c| c.peer_id.clone())
    }

    /// What the file chooser gave, once it has closed: sent, or why not.
    fn chosen(&mut self) -> Option<Action> {
        #[cfg(target_os = "linux")]
        {
            use crate::model::{NoticeKind, Update};
            use crate::system::PickError;
            let got = self.choosing.as_ref()?.1.try_recv();
            let got = match got {
                Ok(g) => g,
                Err(std::sync::mpsc::TryRecvError::Empty) => return None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    Err(PickError::NoChooser("it stopped".into()))
                }
            };
            let (peer, _, _) = self.choosing.take()?;
            match got {
                // Only to the call it was opened in: never to a call that began meanwhile.
                Ok(paths) if !paths.is_empty() && self.sending_to() != Some(peer) => {
                    self.model.apply(Update::Notice(
                        NoticeKind::Info,
                        crate::words::CHOSEN_TOO_LATE.into(),
                    ));
                }
                Ok(paths) if !paths.is_empty() => return Some(Action::SendFiles(paths)),
                Ok(_) | Err(PickError::Cancelled) => {}
                Err(PickError::NoChooser(why)) => {
                    tracing::debug!("file chooser: {why}");
                    self.model.apply(Update::Notice(
                        NoticeKind::Error,
                        crate::words::NO_CHOOSER.into(),
                    ));
                }
            }
        }
        None
    }

    fn dispatch(&mut self, ctx: &egui::Context, actions: Vec<Action>) {
        for a in actions {
            if let Action::PickFiles { folder } = a {
                self.choose_files(ctx, folder);
                continue;
            }
            if a == Action::QuitApp {
                self.quit(ctx);
                continue;
            }
            if self.model.act(&a) {
                let _ = self.backend.actions.send(a);
            }
        }
    }

    /// Prints the model for the end-to-end test whenever it changed.
    fn report(&mut self, ctx: &egui::Context) {
        let Some(auto) = &self.automation else {
            return;
        };
        // Not before the first frame is drawn (its fonts checked): the test reads every line.
        if auto.missing_glyphs.is_none() {
            return;
        }
        let mut snap = self.model.snapshot();
        snap["remote_picture"] = serde_json::json!(self.textures.remote.as_ref().map(|t| t.0));
        snap["preview_picture"] = serde_json::json!(self.textures.preview.is_some());
        snap["zoom"] = serde_json::json!(ctx.zoom_factor());
        snap["fullscreen"] = serde_json::json!(self.fields.fullscreen);
        snap["window_visible"] = serde_json::json!(!self.hidden);
        snap["tray"] = serde_json::json!(self.has_tray());
        snap["theme"] = serde_json::json!(match ctx.theme() {
            egui::Theme::Dark => "dark",
            egui::Theme::Light => "light",
        });
        snap["missing_glyphs"] = serde_json::json!(auto.missing_glyphs);
        snap["window_focused"] = serde_json::json!(ctx.input(|i| i.focused));
        snap["input_events"] = serde_json::json!(auto.input_events);
        let line = snap.to_string();
        if line != self.last_snapshot {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            self.last_snapshot = line;
        }
    }
}

impl eframe::App for App {
    /// Everything but drawing: it runs even while the window is hidden or minimized (eframe
    /// then calls only this), so rings, notifications, the tray and the backend's news are
    /// never held up by a window nobody looks at.
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        while let Ok(u) = self.backend.updates.try_recv() {
            self.model.apply(u);
        }
        #[cfg(target_os = "linux")]
        if let Some(rx) = &self.scheme {
            while let Ok(s) = rx.try_recv() {
                ctx.set_theme(s.theme());
            }
        }
        if self.model.expire(std::time::Instant::now()) {
            ctx.request_repaint_after(std::time::Duration::from_secs(1));
        }
        let mut actions = Vec::new();
        if let Some(auto) = &mut self.automation {
            actions.extend(auto.take(ctx));
            if let Some(open) = auto.side_open.take() {
                self.fields.side_open = Some(open);
            }
        }
        self.title(ctx);
        self.stay_reachable(ctx);
        self.alerts(ctx);
        actions.extend(self.chosen());
        self.dispatch(ctx, actions);
        if self.model.call.is_some() {
            // Pictures and the backend's figures wake the window when they change; this is
            // only a safety net.
            ctx.request_repaint_after(std::time::Duration::from_secs(1));
        }
        self.report(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let mut actions = Vec::new();
        if let Some(auto) = &mut self.automation {
            auto.check_fonts(ui.ctx());
            auto.input_events += ui.ctx().input(|i| {
                i.raw
                    .events
                    .iter()
                    .filter(|e| {
                        matches!(
                            e,
                            egui::Event::Key { .. } | egui::Event::PointerButton { .. }
                        )
                    })
                    .count()
            });
        }
        // Files dropped on the window are offered in the call.
        let dropped: Vec<std::path::PathBuf> = ui.ctx().input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        let can_send = self
            .model
            .call
            .as_ref()
            .is_some_and(|c| c.controls().send_files);
        if !dropped.is_empty() {
            if can_send {
                actions.push(Action::SendFiles(dropped));
            } else {
                self.model.apply(crate::model::Update::Notice(
                    crate::model::NoticeKind::Info,
                    "Files are sent during a call: call someone, then drop them on the window."
                        .into(),
                ));
            }
        }
        view::draw(self, ui, &mut actions);
        self.dispatch(ui.ctx(), actions);
        self.report(ui.ctx());
    }

    fn raw_input_hook(&mut self, _ctx: &egui::Context, raw: &mut egui::RawInput) {
        if let Some(auto) = &mut self.automation {
            auto.press_keys(raw);
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Ends the call (the peer hears a hang-up) and stops the node before the window goes.
        self.backend.shut_down();
    }
}
