//! The desktop around the window, over the session bus (D-Bus, pure Rust): the light or dark
//! appearance the person chose for their system, through the XDG desktop portal's Settings
//! interface, which GNOME, KDE and the other portal backends serve.
//!
//! Nothing here is needed: without a session bus or a portal, egui's own guess stays.

use std::sync::mpsc;

use eframe::egui;

const PORTAL: &str = "org.freedesktop.portal.Desktop";
const PORTAL_PATH: &str = "/org/freedesktop/portal/desktop";
const SETTINGS: &str = "org.freedesktop.portal.Settings";
const APPEARANCE: &str = "org.freedesktop.appearance";
const COLOR_SCHEME: &str = "color-scheme";

/// The system's appearance, as the portal states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// The person chose no preference; applications use their light look.
    Default,
    Dark,
    Light,
}

impl Scheme {
    /// The portal's number: 0 no preference, 1 dark, 2 light (anything else: no preference).
    pub fn from_portal(n: u32) -> Self {
        match n {
            1 => Self::Dark,
            2 => Self::Light,
            _ => Self::Default,
        }
    }

    pub fn theme(self) -> egui::Theme {
        match self {
            Self::Dark => egui::Theme::Dark,
            Self::Light | Self::Default => egui::Theme::Light,
        }
    }
}

/// Follows the system's appearance for as long as the window lives: reads it now and on
/// every change, and wakes the window. Where no portal answers, nothing ever arrives (and
/// egui's own guess stands).
pub fn follow_scheme(ctx: egui::Context) -> mpsc::Receiver<Scheme> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("system-theme".into())
        .spawn(move || {
            if let Err(e) = watch(&ctx, &tx) {
                tracing::debug!("system appearance not followed: {e}");
            }
        });
    if let Err(e) = spawned {
        tracing::debug!("no thread to follow the system appearance: {e}");
    }
    rx
}

fn watch(ctx: &egui::Context, tx: &mpsc::Sender<Scheme>) -> zbus::Result<()> {
    let conn = zbus::blocking::Connection::session()?;
    let proxy = zbus::blocking::Proxy::new(&conn, PORTAL, PORTAL_PATH, SETTINGS)?;
    // Subscribed before reading, so a change between the two is not lost.
    let changes = proxy.receive_signal("SettingChanged")?;
    let now = read(&proxy)?;
    if tx.send(now).is_err() {
        return Ok(());
    }
    ctx.request_repaint();
    for msg in changes {
        let Ok((ns, key, value)) = msg
            .body()
            .deserialize::<(String, String, zbus::zvariant::OwnedValue)>()
        else {
            continue;
        };
        if ns != APPEARANCE || key != COLOR_SCHEME {
            continue;
        }
        let Some(n) = number(&value) else {
            continue;
        };
        if tx.send(Scheme::from_portal(n)).is_err() {
            return Ok(());
        }
        ctx.request_repaint();
    }
    Ok(())
}

/// `ReadOne` (portal version 2), or the older `Read`, whose answer is wrapped once more.
fn read(proxy: &zbus::blocking::Proxy<'_>) -> zbus::Result<Scheme> {
    let value: zbus::zvariant::OwnedValue = match proxy.call("ReadOne", &(APPEARANCE, COLOR_SCHEME))
    {
        Ok(v) => v,
        Err(_) => proxy.call("Read", &(APPEARANCE, COLOR_SCHEME))?,
    };
    Ok(Scheme::from_portal(number(&value).unwrap_or(0)))
}

/// A `u32` inside as many variants as the portal wrapped it in.
fn number(value: &zbus::zvariant::Value<'_>) -> Option<u32> {
    match value {
        zbus::zvariant::Value::U32(n) => Some(*n),
        zbus::zvariant::Value::Value(inner) => number(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portal_numbers_map_to_themes() {
        assert_eq!(Scheme::from_portal(1).theme(), egui::Theme::Dark);
        assert_eq!(Scheme::from_portal(2).theme(), egui::Theme::Light);
        assert_eq!(Scheme::from_portal(0), Scheme::Default);
        assert_eq!(Scheme::from_portal(7), Scheme::Default);
        let wrapped = zbus::zvariant::Value::Value(Box::new(zbus::zvariant::Value::U32(1)));
        assert_eq!(number(&wrapped), Some(1));
        assert_eq!(number(&zbus::zvariant::Value::Str("dark".into())), None);
    }
}

/// Desktop notifications (`org.freedesktop.Notifications`, served by every desktop's
/// notification daemon): a call ringing, a call missed. Sent from a thread of their own; with
/// no daemon they are simply not shown. They name a contact by the name the person gave it
/// (or say "someone" for a stranger) and never carry a peer ID or an address.
pub struct Notifier {
    tx: mpsc::Sender<Notification>,
}

/// What to show, in words already made by the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// A ring: stays up (critical urgency) until [`Notification::Withdraw`].
    Ringing { summary: String, body: String },
    /// Takes the ring's notification down (answered or declined here).
    Withdraw,
    /// Replaces the ring's notification, if one is up.
    Missed { summary: String, body: String },
}

impl Notifier {
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel::<Notification>();
        let spawned = std::thread::Builder::new()
            .name("notifications".into())
            .spawn(move || {
                let mut bus: Option<zbus::blocking::Connection> = None;
                let mut ringing: Option<u32> = None;
                for n in rx {
                    if bus.is_none() {
                        bus = zbus::blocking::Connection::session()
                            .inspect_err(|e| tracing::debug!("no notifications: {e}"))
                            .ok();
                    }
                    let Some(conn) = &bus else {
                        continue;
                    };
                    if let Err(e) = show(conn, n, &mut ringing) {
                        tracing::debug!("notification not shown: {e}");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::debug!("no thread for notifications: {e}");
        }
        Self { tx }
    }

    pub fn send(&self, n: Notification) {
        let _ = self.tx.send(n);
    }
}

fn show(
    conn: &zbus::blocking::Connection,
    n: Notification,
    ringing: &mut Option<u32>,
) -> zbus::Result<()> {
    use std::collections::HashMap;
    use zbus::zvariant::Value;
    let proxy = zbus::blocking::Proxy::new(
        conn,
        "org.freedesktop.Notifications",
        "/org/freedesktop/Notifications",
        "org.freedesktop.Notifications",
    )?;
    let (summary, body, urgency, replaces) = match n {
        Notification::Withdraw => {
            if let Some(id) = ringing.take() {
                proxy.call::<_, _, ()>("CloseNotification", &(id,))?;
            }
            return Ok(());
        }
        Notification::Ringing { summary, body } => (summary, body, 2u8, ringing.take()),
        Notification::Missed { summary, body } => (summary, body, 1u8, ringing.take()),
    };
    let mut hints: HashMap<&str, Value<'_>> = HashMap::new();
    hints.insert("urgency", Value::U8(urgency));
    hints.insert("desktop-entry", Value::from("extrasafe"));
    let actions: Vec<&str> = Vec::new();
    let id: u32 = proxy.call(
        "Notify",
        &(
            "EXTRA SAFE",
            replaces.unwrap_or(0),
            "extrasafe",
            summary.as_str(),
            body.as_str(),
            actions,
            hints,
            // A ring stays until it is taken down; the daemon times other news out.
            if urgency == 2 { 0i32 } else { -1i32 },
        ),
    )?;
    if urgency == 2 {
        *ringing = Some(id);
    }
    Ok(())
}

/// What the file chooser gives, when it closes.
pub type Chosen = mpsc::Receiver<Result<Vec<std::path::PathBuf>, PickError>>;

/// Why no files came back from the file chooser.
#[derive(Debug, thiserror::Error)]
pub enum PickError {
    /// No desktop portal answers (no session bus, or no portal service): the person types a
    /// path or drops files instead.
    #[error("no file chooser is available: {0}")]
    NoChooser(String),
    /// The person closed the chooser without choosing.
    #[error("cancelled")]
    Cancelled,
}

/// Opens the desktop's own file chooser (the XDG desktop portal's `FileChooser`: GNOME's,
/// KDE's, or any portal backend's dialog, which also works inside a sandbox) on a thread of its
/// own; the chosen paths arrive on the receiver. Several files can be chosen at once, or one
/// folder with `folder`.
///
/// Written on zbus directly (already here for the appearance and notifications): `ashpd`
/// would bring its own async runtime choice into the build for two calls and a signal.
pub fn pick_files(ctx: egui::Context, title: String, folder: bool) -> Chosen {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("file-chooser".into())
        .spawn(move || {
            let got = choose(&title, folder);
            let _ = tx.send(got);
            ctx.request_repaint();
        });
    if let Err(e) = spawned {
        tracing::debug!("no thread for the file chooser: {e}");
    }
    rx
}

fn choose(title: &str, folder: bool) -> Result<Vec<std::path::PathBuf>, PickError> {
    use std::collections::HashMap;
    use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
    let no = |e: zbus::Error| PickError::NoChooser(e.to_string());
    let conn = zbus::blocking::Connection::session().map_err(no)?;
    // The request's path is known before the call (from our bus name and a token of ours), so
    // its answer is listened for before it can come.
    let token = format!("extrasafe{}", std::process::id());
    let sender = conn
        .unique_name()
        .map(|n| n.trim_start_matches(':').replace('.', "_"))
        .unwrap_or_default();
    let expected = format!("{PORTAL_PATH}/request/{sender}/{token}");
    let listen = |path: &str| -> zbus::Result<zbus::blocking::proxy::SignalIterator<'static>> {
        zbus::blocking::Proxy::new(
            &conn,
            PORTAL,
            path.to_string(),
            "org.freedesktop.portal.Request",
        )?
        .receive_signal("Response")
    };
    let mut answers = listen(&expected).map_err(no)?;
    let chooser = zbus::blocking::Proxy::new(
        &conn,
        PORTAL,
        PORTAL_PATH,
        "org.freedesktop.portal.FileChooser",
    )
    .map_err(no)?;
    let mut options: HashMap<&str, Value<'_>> = HashMap::new();
    options.insert("handle_token", Value::from(token.as_str()));
    options.insert("multiple", Value::from(!folder));
    options.insert("directory", Value::from(folder));
    options.insert("modal", Value::from(true));
    let handle: OwnedObjectPath = chooser
        .call("OpenFile", &("", title, options))
        .map_err(no)?;
    // An older portal makes up its own path.
    if handle.as_str() != expected {
        answers = listen(handle.as_str()).map_err(no)?;
    }
    for msg in answers {
        let Ok((response, results)) = msg
            .body()
            .deserialize::<(u32, HashMap<String, OwnedValue>)>()
        else {
            continue;
        };
        match response {
            0 => {}
            1 => return Err(PickError::Cancelled),
            // 2: ended some other way (the portal's own error).
            _ => {
                return Err(PickError::NoChooser(
                    "the chooser ended without an answer".into(),
                ))
            }
        }
        let uris: Vec<String> = results
            .get("uris")
            .and_then(|v| Vec::<String>::try_from(v.try_clone().ok()?).ok())
            .unwrap_or_default();
        return Ok(uris.iter().filter_map(|u| file_path(u)).collect());
    }
    Err(PickError::NoChooser(
        "the portal closed without an answer".into(),
    ))
}

/// The local path of a `file://` URI, percent-decoded; `None` for anything else (a chooser
/// may offer network locations, which are not sent).
pub fn file_path(uri: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let rest = uri.strip_prefix("file://")?;
    // `file://host/path`: only the local host is ours.
    let path = match rest.strip_prefix("localhost") {
        Some(p) => p,
        None => rest,
    };
    if !path.starts_with('/') {
        return None;
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(std::path::PathBuf::from(std::ffi::OsString::from_vec(out)))
}

#[cfg(test)]
mod uri_tests {
    use super::file_path;
    use std::path::PathBuf;

    #[test]
    fn chosen_uris_become_local_paths() {
        assert_eq!(
            file_path("file:///home/a/My%20Notes/r%C3%A9sum%C3%A9.txt"),
            Some(PathBuf::from("/home/a/My Notes/résumé.txt"))
        );
        assert_eq!(
            file_path("file://localhost/tmp/x"),
            Some(PathBuf::from("/tmp/x"))
        );
        // Not local, not a file, or a broken escape: nothing.
        assert_eq!(file_path("file://server/share/x"), None);
        assert_eq!(file_path("sftp://host/x"), None);
        assert_eq!(file_path("file:///tmp/%zz"), None);
        assert_eq!(file_path("file:///tmp/%4"), None);
        assert_eq!(file_path("file:///tmp/%+1"), None);
        // Bytes that are not UTF-8 are kept as they are.
        use std::os::unix::ffi::OsStrExt;
        let odd = file_path("file:///tmp/%FF").unwrap();
        assert_eq!(odd.as_os_str().as_bytes(), b"/tmp/\xff");
    }
}

/// What the tray icon tells the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrayEvent {
    /// Show the window (a click on the icon, or "Open EXTRA SAFE").
    Show,
    /// End the app ("Quit").
    Quit,
    /// The desktop shows the icon (`true`), or no longer does (its tray went away).
    Shown(bool),
    /// No icon could be put up (no tray on this desktop, no session bus).
    Failed(String),
}

/// The icon in the desktop's tray (StatusNotifierItem, which KDE shows and GNOME shows with
/// its AppIndicator extension), while "stay reachable" is on. It names the app only: no
/// contact, no peer ID, nothing of a call.
struct TrayIcon {
    events: mpsc::Sender<TrayEvent>,
    ctx: egui::Context,
}

impl TrayIcon {
    fn tell(&self, e: TrayEvent) {
        let _ = self.events.send(e);
        self.ctx.request_repaint();
    }
}

impl ksni::Tray for TrayIcon {
    fn id(&self) -> String {
        "extrasafe".into()
    }
    fn title(&self) -> String {
        "EXTRA SAFE".into()
    }
    fn icon_name(&self) -> String {
        "extrasafe".into()
    }
    fn category(&self) -> ksni::Category {
        ksni::Category::Communications
    }
    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            title: "EXTRA SAFE".into(),
            description: "Reachable for calls. Click to open the window.".into(),
            ..Default::default()
        }
    }
    fn activate(&mut self, _x: i32, _y: i32) {
        self.tell(TrayEvent::Show);
    }
    fn menu(&self) -> Vec<ksni::MenuItem<Self>> {
        use ksni::menu::StandardItem;
        vec![
            StandardItem {
                label: crate::words::OPEN_WINDOW.into(),
                activate: Box::new(|t: &mut Self| t.tell(TrayEvent::Show)),
                ..Default::default()
            }
            .into(),
            StandardItem {
                label: crate::words::QUIT.into(),
                activate: Box::new(|t: &mut Self| t.tell(TrayEvent::Quit)),
                ..Default::default()
            }
            .into(),
        ]
    }
    fn watcher_online(&self) {
        self.tell(TrayEvent::Shown(true));
    }
    fn watcher_offline(&self, _reason: ksni::OfflineReason) -> bool {
        // Kept running: the tray may come back (a restarted shell).
        self.tell(TrayEvent::Shown(false));
        true
    }
}

type TrayHandle = std::sync::Arc<std::sync::Mutex<Option<ksni::blocking::Handle<TrayIcon>>>>;

/// The tray icon, up while it lives. Put up on a thread of its own: registering waits for
/// the desktop's tray to answer, which a hung shell might never do.
pub struct Tray {
    handle: TrayHandle,
    alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub events: mpsc::Receiver<TrayEvent>,
}

impl Tray {
    pub fn start(ctx: egui::Context) -> Self {
        use ksni::blocking::TrayMethods;
        use std::sync::atomic::Ordering;
        let (tx, rx) = mpsc::channel();
        let handle: TrayHandle = Default::default();
        let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (slot, still) = (handle.clone(), alive.clone());
        let spawned = std::thread::Builder::new()
            .name("tray".into())
            .spawn(move || {
                let icon = TrayIcon {
                    events: tx.clone(),
                    ctx: ctx.clone(),
                };
                let event = match icon.spawn() {
                    Ok(h) if still.load(Ordering::Acquire) => {
                        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
                        TrayEvent::Shown(true)
                    }
                    // The window gave up on the tray meanwhile.
                    Ok(h) => {
                        let _ = h.shutdown();
                        return;
                    }
                    Err(e) => TrayEvent::Failed(e.to_string()),
                };
                let _ = tx.send(event);
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            tracing::debug!("no thread for the tray: {e}");
        }
        Self {
            handle,
            alive,
            events: rx,
        }
    }
}

impl Drop for Tray {
    fn drop(&mut self) {
        self.alive
            .store(false, std::sync::atomic::Ordering::Release);
        // Takes the icon away (not waited for: the window must not hang on the bus).
        if let Some(h) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.shutdown();
        }
    }
}
