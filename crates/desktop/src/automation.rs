//! Test automation (`--automation`): actions come in as JSON lines on stdin, and the model
//! goes out as JSON lines on stdout whenever it changes. The actions take the same path as
//! clicks; only the drawing is skipped. The end-to-end test drives two windows this way and
//! checks what each shows.

use std::path::PathBuf;
use std::sync::mpsc;

use eframe::egui;
use serde_json::Value;

use crate::model::{Action, Passphrase, VideoChoice};
use crate::words;

pub struct Automation {
    rx: mpsc::Receiver<Value>,
    /// Characters of the fixed labels that the bundled fonts cannot draw.
    pub missing_glyphs: Option<String>,
    /// Key presses and mouse clicks the window received (from the X server, not from here).
    pub input_events: usize,
    /// Keys to press in the next frame.
    keys: Vec<egui::Key>,
    /// The chat column shown (`true`) or put away, for the window to apply.
    pub side_open: Option<bool>,
}

impl Automation {
    /// Reads stdin on a thread of its own; wakes the window for each line. The accessibility
    /// tree is built from now on, screen reader or not, so the test can read it.
    pub fn start(ctx: egui::Context) -> Self {
        ctx.enable_accesskit();
        ctx.add_plugin(Inspector::default());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                    ctx.request_repaint();
                }
                line.clear();
            }
        });
        Self {
            rx,
            missing_glyphs: None,
            input_events: 0,
            keys: Vec::new(),
            side_open: None,
        }
    }

    /// The actions that arrived; commands for the window itself (zoom) are applied here.
    pub fn take(&mut self, ctx: &egui::Context) -> Vec<Action> {
        let mut out = Vec::new();
        while let Ok(v) = self.rx.try_recv() {
            if let Some(z) = v.get("zoom").and_then(Value::as_f64) {
                ctx.set_zoom_factor(z as f32);
                continue;
            }
            if let Some(k) = v.get("key").and_then(Value::as_str) {
                match egui::Key::from_name(k) {
                    Some(key) => self.keys.push(key),
                    None => eprintln!("automation: no key named {k}"),
                }
                ctx.request_repaint();
                continue;
            }
            // The window's inner size in pixels, as if the person dragged its border.
            if let Some([w, h]) = v.get("window_size").and_then(|s| {
                let a = s.as_array()?;
                Some([a.first()?.as_f64()?, a.get(1)?.as_f64()?])
            }) {
                let zoom = ctx.zoom_factor() * ctx.native_pixels_per_point().unwrap_or(1.0);
                ctx.send_viewport_cmd(egui::ViewportCommand::InnerSize(egui::vec2(
                    w as f32 / zoom,
                    h as f32 / zoom,
                )));
                continue;
            }
            // The window shown or hidden, as the tray does.
            if let Some(on) = v.get("visible").and_then(Value::as_bool) {
                ctx.send_viewport_cmd(egui::ViewportCommand::Visible(on));
                continue;
            }
            // The chat and files column shown or put away, as its button does.
            if let Some(open) = v.get("side_open").and_then(Value::as_bool) {
                self.side_open = Some(open);
                ctx.request_repaint();
                continue;
            }
            // The accessibility tree of the next frame, printed as one `{"layout": …}` line.
            if let Some(id) = v.get("inspect").and_then(Value::as_u64) {
                ctx.plugin::<Inspector>().lock().want = Some(id);
                ctx.request_repaint();
                continue;
            }
            // As if the person closed the window (with "stay reachable" on, it hides).
            if v.get("action").and_then(Value::as_str) == Some("close_window") {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                continue;
            }
            match parse(&v) {
                Some(a) => out.push(a),
                None => eprintln!("automation: not understood: {v}"),
            }
        }
        out
    }

    /// Presses the queued keys: they enter egui exactly as the window system's would, so
    /// focus and keyboard handling are what a person gets.
    pub fn press_keys(&mut self, raw: &mut egui::RawInput) {
        if self.keys.is_empty() {
            return;
        }
        raw.focused = true;
        for key in self.keys.drain(..) {
            for pressed in [true, false] {
                raw.events.push(egui::Event::Key {
                    key,
                    physical_key: None,
                    pressed,
                    repeat: false,
                    modifiers: egui::Modifiers::NONE,
                });
            }
        }
    }

    /// Checks once, with the fonts loaded, that every label can be drawn.
    pub fn check_fonts(&mut self, ctx: &egui::Context) {
        if self.missing_glyphs.is_some() {
            return;
        }
        let missing: String = ctx.fonts_mut(|f| {
            let id = egui::FontId::proportional(14.0);
            let mut m: Vec<char> = words::ALL
                .iter()
                .flat_map(|s| s.chars())
                .filter(|c| !f.has_glyph(&id, *c))
                .collect();
            m.sort_unstable();
            m.dedup();
            m.into_iter().collect()
        });
        self.missing_glyphs = Some(missing);
    }
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// One action from its JSON form: `{"action": "call", "peer_id": "...", "video": true}`.
pub fn parse(v: &Value) -> Option<Action> {
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let id = || v.get("id").and_then(Value::as_u64);
    Some(match v.get("action")?.as_str()? {
        "create_identity" => Action::CreateIdentity {
            passphrase: s(v, "passphrase").map(Passphrase::new),
        },
        "unlock" => Action::Unlock {
            passphrase: Passphrase::new(s(v, "passphrase")?),
        },
        "add_contact" => Action::AddContact {
            ticket: s(v, "ticket")?,
            name: s(v, "name")?,
        },
        "remove_contact" => Action::RemoveContact {
            peer_id: s(v, "peer_id")?,
        },
        "rename_contact" => Action::RenameContact {
            peer_id: s(v, "peer_id")?,
            name: s(v, "name")?,
        },
        "call" => Action::Call {
            peer_id: s(v, "peer_id")?,
            video: flag("video"),
        },
        "accept" => Action::Accept {
            video: flag("video"),
        },
        "decline" => Action::Decline,
        "dismiss_missed" => Action::DismissMissed,
        "pick_files" => Action::PickFiles {
            folder: flag("folder"),
        },
        "hang_up" => Action::HangUp,
        "mute" => Action::Mute(flag("on")),
        "camera" => Action::Camera(flag("on")),
        "share" => Action::Share(flag("on")),
        "chat" => Action::Chat(s(v, "text")?),
        "send_files" => Action::SendFiles(
            v.get("paths")?
                .as_array()?
                .iter()
                .filter_map(|p| p.as_str().map(PathBuf::from))
                .collect(),
        ),
        "accept_offer" => Action::AcceptOffer(id()?),
        "decline_offer" => Action::DeclineOffer(id()?),
        "cancel_transfer" => Action::CancelTransfer {
            id: id()?,
            outgoing: flag("outgoing"),
        },
        "mark_verified" => Action::MarkVerified,
        "save_caller" => Action::SaveCaller {
            name: s(v, "name")?,
        },
        "set_video" => Action::SetVideo(match s(v, "source")?.as_str() {
            "test" => VideoChoice::TestPicture,
            "none" => VideoChoice::Nothing,
            dev => VideoChoice::Camera(dev.to_string()),
        }),
        "set_files_dir" => Action::SetFilesDir(PathBuf::from(s(v, "path")?)),
        // A device by name; `null` (or no name) for the system's default.
        "set_mic" => Action::SetMic(v.get("name").and_then(Value::as_str).map(String::from)),
        "set_speaker" => {
            Action::SetSpeaker(v.get("name").and_then(Value::as_str).map(String::from))
        }
        "set_echo_cancel" => Action::SetEchoCancel(v.get("on")?.as_bool()?),
        "set_stay_reachable" => Action::SetStayReachable(v.get("on")?.as_bool()?),
        // Quits for real, as the tray's Quit does (closing the window may only hide it).
        "quit" => Action::QuitApp,
        "close_call" => Action::CloseCall,
        "dismiss" => Action::DismissNotice(id()? as usize),
        _ => return None,
    })
}

/// Prints the accessibility tree egui made for a frame (what a screen reader gets): every
/// node's role, name and place, and the window's size, all in points.
#[derive(Default)]
struct Inspector {
    want: Option<u64>,
}

impl egui::Plugin for Inspector {
    fn debug_name(&self) -> &'static str {
        "extrasafe-inspector"
    }

    fn output_hook(&mut self, ctx: &egui::Context, output: &mut egui::FullOutput) {
        let Some(id) = self.want else {
            return;
        };
        let Some(update) = &output.platform_output.accesskit_update else {
            return;
        };
        self.want = None;
        use egui::accesskit::Action as A;
        let nodes: Vec<Value> = update
            .nodes
            .iter()
            .map(|(_, n)| {
                let r = n.bounds();
                serde_json::json!({
                    "role": format!("{:?}", n.role()),
                    "name": n.label().or(n.value()).unwrap_or(""),
                    "rect": r.map(|r| [r.x0, r.y0, r.x1, r.y1]),
                    "click": n.supports_action(A::Click),
                    "focus": n.supports_action(A::Focus),
                    "disabled": n.is_disabled(),
                })
            })
            .collect();
        let screen = ctx.content_rect();
        let scrolls: Vec<[f32; 4]> = ctx
            .data(|d| d.get_temp::<Vec<egui::Rect>>(egui::Id::unique(crate::view::SCROLL_REGIONS)))
            .unwrap_or_default()
            .iter()
            .map(|r| [r.min.x, r.min.y, r.max.x, r.max.y])
            .collect();
        let line = serde_json::json!({"layout": {
            "id": id,
            "screen": [screen.width(), screen.height()],
            "zoom": ctx.zoom_factor(),
            "fullscreen": ctx.input(|i| i.viewport().fullscreen.unwrap_or(false)),
            "scroll_regions": scrolls,
            "nodes": nodes,
        }});
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
