//! Two desktop apps, each on a private X screen (Xvfb), make their identities, add each other
//! and call with video over loopback; they chat, verify, share a screen, send a file and close.
//! Each step waits for the state the window reports (`--automation`), and screenshots of the
//! main moments are kept in `target/desktop-screenshots/` (CI keeps that folder).
//!
//! One step is done with the keyboard: Enter answers the ringing call, because the Accept
//! button holds the focus. The key goes into egui's input as the window system's keys do (keys
//! faked through the X server with XTEST did not reach winit's window under Xvfb, which has no
//! window manager to give it the focus).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A private X screen, picked by Xvfb itself (a fixed number could collide).
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Self {
        Self::sized("1280x800")
    }

    fn sized(size: &str) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec Xvfb -displayfd 1 -screen 0 {size}x24 -nolisten tcp"
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("Xvfb names its display");
        Self {
            child,
            display: format!(":{}", line.trim()),
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct App {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    states: mpsc::Receiver<Value>,
    /// The accessibility trees asked for with `{"inspect": n}`.
    layouts: mpsc::Receiver<Value>,
    last: Value,
    display: String,
}

impl App {
    fn start(name: &'static str, x: &Xvfb, dir: &Path) -> Self {
        Self::start_with(name, x, dir, &[])
    }

    fn start_with(name: &'static str, x: &Xvfb, dir: &Path, extra: &[&str]) -> Self {
        Self::start_on_bus(name, x, dir, extra, None)
    }

    /// `bus`: the D-Bus session bus the app sees (none otherwise: a developer's own desktop
    /// is never touched by the tests).
    fn start_on_bus(
        name: &'static str,
        x: &Xvfb,
        dir: &Path,
        extra: &[&str],
        bus: Option<&str>,
    ) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_extrasafe-desktop"));
        match bus {
            Some(b) => cmd.env("DBUS_SESSION_BUS_ADDRESS", b),
            None => cmd.env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/extrasafe-test",
            ),
        };
        let mut child = cmd
            .args(extra)
            .args(["--automation", "--bind", "127.0.0.1", "--port", "0"])
            .args(["--ring-timeout", "5"])
            .args(["--no-dht", "--no-lan", "--no-sound", "--video", "test"])
            .arg("--data-dir")
            .arg(dir.join("identity"))
            .arg("--files-dir")
            .arg(dir.join("received"))
            .env("DISPLAY", &x.display)
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start extrasafe-desktop");
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let (ltx, lrx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let sent = if v.get("layout").is_some() {
                        ltx.send(v).is_ok()
                    } else {
                        tx.send(v).is_ok()
                    };
                    if !sent {
                        return;
                    }
                }
            }
        });
        Self {
            name,
            stdin: child.stdin.take(),
            child,
            states: rx,
            layouts: lrx,
            last: Value::Null,
            display: x.display.clone(),
        }
    }

    fn send(&mut self, v: Value) {
        let stdin = self.stdin.as_mut().expect("open");
        writeln!(stdin, "{v}").expect("the app reads its actions");
        stdin.flush().unwrap();
    }

    /// Waits until the shown state satisfies `ok`; fails with the last state seen.
    fn wait(&mut self, what: &str, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if ok(&self.last) {
                return self.last.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.states.recv_timeout(left) {
                Ok(v) => self.last = v,
                Err(_) => panic!(
                    "{}: no `{what}` within {secs} s; last state shown:\n{:#}",
                    self.name, self.last
                ),
            }
        }
    }

    /// The accessibility tree of the window's next frame, with its size and zoom.
    fn layout(&mut self, n: u64) -> Value {
        self.send(json!({ "inspect": n }));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .layouts
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{}: no layout {n} within 10 s", self.name));
            if v["layout"]["id"] == n {
                return v["layout"].clone();
            }
        }
    }

    /// Resizes and zooms the window, waits until it has taken both, and gives the tree of a
    /// frame drawn after that.
    fn layout_at(&mut self, n: &mut u64, (w, h): (u32, u32), zoom: f64) -> Value {
        self.send(json!({ "zoom": zoom }));
        self.send(json!({ "window_size": [w, h] }));
        let want = [f64::from(w) / zoom, f64::from(h) / zoom];
        for _ in 0..100 {
            *n += 1;
            let l = self.layout(*n);
            let got = [
                l["screen"][0].as_f64().unwrap(),
                l["screen"][1].as_f64().unwrap(),
            ];
            if l["zoom"].as_f64() == Some(zoom)
                && (got[0] - want[0]).abs() < 1.0
                && (got[1] - want[1]).abs() < 1.0
            {
                // One more frame: a change of size can take egui a frame to settle.
                *n += 1;
                return self.layout(*n);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{}: the window did not become {w}x{h} at zoom {zoom}",
            self.name
        );
    }

    /// Saves the whole X screen; checks the picture is not blank.
    fn screenshot(&self, file: &str) -> PathBuf {
        self.screenshot_of(file, None)
    }

    /// Saves the X screen, or its top left `w`x`h` (where the window is); checks the picture
    /// is not blank.
    fn screenshot_of(&self, file: &str, crop: Option<(u32, u32)>) -> PathBuf {
        let dir = shots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file);
        // Let the window draw the state just reported.
        std::thread::sleep(Duration::from_millis(700));
        let crop = crop.map(|(w, h)| format!("{w}x{h}+0+0"));
        let ok = Command::new("import")
            .args(["-window", "root"])
            .args(crop.iter().flat_map(|c| ["-crop", c.as_str()]))
            .arg(&path)
            .env("DISPLAY", &self.display)
            .status()
            .expect("run import (imagemagick)");
        assert!(ok.success(), "screenshot {file} failed");
        let spread = Command::new("identify")
            .args(["-format", "%[fx:standard_deviation]"])
            .arg(&path)
            .output()
            .expect("run identify");
        let spread: f64 = String::from_utf8_lossy(&spread.stdout)
            .trim()
            .parse()
            .unwrap_or(0.0);
        assert!(spread > 0.02, "{file} looks blank (deviation {spread})");
        path
    }

    /// Waits for the process to end by itself; its exit status.
    fn exited(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {secs} s of closing its window",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shots_dir() -> PathBuf {
    std::env::var_os("EXTRASAFE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/desktop-screenshots")
        })
}

/// What is wrong with a window's layout, read from its accessibility tree (points):
/// - a control (anything one can click or focus) that a screen reader cannot name (scroll
///   bars aside);
/// - a control outside the window, unless `scrolling` allows it to sit in a scroll area (whose
///   visible part is inside the window) below its fold;
/// - text broken letter by letter: four or more letters in a column narrower than 30 points
///   and more than twice as tall as wide.
fn layout_faults(l: &Value, scrolling: bool) -> Vec<String> {
    let (w, h) = (
        l["screen"][0].as_f64().unwrap(),
        l["screen"][1].as_f64().unwrap(),
    );
    let inside = |r: &[f64]| r[0] >= -0.5 && r[1] >= -0.5 && r[2] <= w + 0.5 && r[3] <= h + 0.5;
    let regions: Vec<Vec<f64>> = l["scroll_regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .filter(|r: &Vec<f64>| inside(r))
        .collect();
    let mut faults = Vec::new();
    for n in l["nodes"].as_array().unwrap() {
        let Some(r) = n["rect"].as_array() else {
            continue;
        };
        let r: Vec<f64> = r.iter().map(|v| v.as_f64().unwrap()).collect();
        let (role, name) = (n["role"].as_str().unwrap(), n["name"].as_str().unwrap());
        let control = n["click"] == true || n["focus"] == true;
        // A scroll bar is named by its role ("scroll bar, vertical"), as in every toolkit.
        if control && name.trim().is_empty() && role != "ScrollBar" {
            faults.push(format!("a {role} at {r:?} has no name"));
        }
        if control && !inside(&r) {
            // Below the fold of a scroll area: across, it is on the window (scroll bars float
            // over the content's edge); down, it starts below the area's top.
            let scrolled = scrolling
                && r[0] >= -0.5
                && r[2] <= w + 0.5
                && regions
                    .iter()
                    .any(|g| r[0] >= g[0] - 0.5 && r[1] >= g[1] - 0.5 && r[3] > g[3]);
            if !scrolled {
                faults.push(format!(
                    "{role} \"{name}\" at {r:?} is outside the {w}x{h} window"
                ));
            }
        }
        let letters = name.chars().filter(|c| c.is_alphanumeric()).count();
        let (rw, rh) = (r[2] - r[0], r[3] - r[1]);
        if letters >= 4 && rw < 30.0 && rh > 2.0 * rw {
            faults.push(format!(
                "\"{name}\" is broken letter by letter ({rw:.0} x {rh:.0})"
            ));
        }
    }
    faults
}

/// The node a screen reader calls `name`.
fn node<'a>(l: &'a Value, name: &str) -> Option<&'a Value> {
    l["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
}

fn rect_of(n: &Value) -> [f64; 4] {
    let r = n["rect"].as_array().unwrap();
    [0, 1, 2, 3].map(|i| r[i].as_f64().unwrap())
}

fn area(r: [f64; 4]) -> f64 {
    (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0)
}

fn phase(s: &Value) -> &str {
    s["call"]["phase"]["name"].as_str().unwrap_or("")
}

/// Ticket of an app that listens on 127.0.0.1 only: its one address is loopback.
fn ticket(s: &Value) -> String {
    s["me"]["ticket"].as_str().expect("a ticket").to_string()
}

#[test]
fn two_windows_call_each_other_with_video_chat_and_a_file() {
    let tools = ["Xvfb", "import", "identify", "dbus-daemon"];
    if !lab_ready(&tools) {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("es-desktop-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (da, db) = (tmp.join("alice"), tmp.join("bob"));
    for d in [&da, &db] {
        std::fs::create_dir_all(d.join("received")).unwrap();
    }
    // Bob's screen is large enough for the window sizes of the layout check.
    let (xa, xb) = (Xvfb::start(), Xvfb::sized("2560x1440"));
    // Alice's file settings take small files from anyone without asking, and refuse others.
    let mut alice = App::start_with("alice", &xa, &da, &["--accept-files", "anyone:64K"]);
    // Bob's desktop has a notification daemon (a stand-in on a bus of the test's own).
    let bus = Bus::start();
    let daemon = Notifications::default();
    let _daemon = bus.serve(
        "org.freedesktop.Notifications",
        "/org/freedesktop/Notifications",
        daemon.clone(),
    );
    // … and a file chooser (a stand-in for the XDG desktop portal's).
    let chooser = Chooser::default();
    let _portal = bus.serve(
        "org.freedesktop.portal.Desktop",
        "/org/freedesktop/portal/desktop",
        chooser.clone(),
    );
    let mut bob = App::start_on_bus("bob", &xb, &db, &[], Some(&bus.1));

    // First run: no identity yet; every label's characters are in the bundled fonts.
    let s = alice.wait("first run", 60, |s| s["stage"] == "firstrun");
    assert_eq!(s["missing_glyphs"], "", "characters the fonts lack");
    alice.screenshot("1-first-run.png");
    alice.send(json!({"zoom": 2.0}));
    alice.wait("zoom 2", 10, |s| s["zoom"] == 2.0);
    alice.screenshot("1-first-run-2x.png");
    alice.send(json!({"zoom": 1.0}));
    alice.send(json!({"action": "create_identity", "passphrase": "correct horse battery"}));
    bob.wait("first run", 60, |s| s["stage"] == "firstrun");
    bob.send(json!({"action": "create_identity"}));
    let a = alice.wait("identity", 60, |s| {
        s["stage"] == "ready" && s["zoom"] == 1.0
    });
    let b = bob.wait("identity", 60, |s| s["stage"] == "ready");
    assert_eq!(a["me"]["sealed"], true);
    assert_eq!(b["me"]["sealed"], false);
    let (alice_id, bob_id) = (a["me"]["peer_id"].clone(), b["me"]["peer_id"].clone());

    // Contacts, each by the other's ticket.
    alice.send(json!({"action": "add_contact", "ticket": ticket(&b), "name": "Bob"}));
    bob.send(json!({"action": "add_contact", "ticket": ticket(&a), "name": "Alice"}));
    alice.send(json!({"action": "add_contact", "ticket": "est1nonsense", "name": "Eve"}));
    let s = alice.wait("contact Bob and the bad ticket refused", 20, |s| {
        s["contacts"].as_array().is_some_and(|c| c.len() == 1)
            && s["notices"].to_string().contains("not a ticket")
    });
    assert_eq!(s["contacts"][0]["name"], "Bob");
    assert_eq!(s["contacts"][0]["verified"], false);
    bob.wait("contact Alice", 20, |s| s["contacts"][0]["name"] == "Alice");
    // Bob's ticket again, under another name: nobody is renamed.
    alice.send(json!({"action": "add_contact", "ticket": ticket(&b), "name": "Robert"}));
    let s = alice.wait("a known ticket under another name refused", 20, |s| {
        s["notices"]
            .to_string()
            .contains("already in your contacts as Bob")
    });
    assert_eq!(s["contacts"].as_array().map(Vec::len), Some(1));
    assert_eq!(s["contacts"][0]["name"], "Bob");
    alice.screenshot("2-contacts.png");
    alice.send(json!({"zoom": 2.0}));
    alice.wait("zoom 2", 10, |s| s["zoom"] == 2.0);
    alice.screenshot("2-contacts-2x.png");
    alice.send(json!({"zoom": 1.0}));
    alice.wait("zoom 1", 10, |s| s["zoom"] == 1.0);

    // A first call, declined: Bob's window says so at once; Alice is not told (a decline
    // tells the caller nothing): her ring runs out and she reads "did not answer".
    alice.send(json!({"action": "call", "peer_id": bob_id}));
    bob.wait("incoming call", 30, |s| phase(s) == "incoming");
    bob.send(json!({"action": "decline"}));
    bob.wait("declined", 15, |s| phase(s) == "ended");
    let s = alice.wait("not answered", 20, |s| phase(s) == "ended");
    assert_eq!(s["call"]["phase"]["why"], "Bob did not answer.");
    assert_eq!(s["call"]["phase"]["failed"], false);
    bob.send(json!({"action": "close_call"}));
    alice.send(json!({"action": "close_call"}));
    alice.wait("back to contacts", 10, |s| s["call"].is_null());
    bob.wait("back to contacts", 10, |s| s["call"].is_null());
    // Bob's window is not in front (nothing gives it the focus here): the ring was a
    // notification naming Alice, taken down when he declined; a decline is not missed.
    let shown = daemon.wait_for(1);
    assert_eq!(shown[0].summary, "Alice is calling");
    assert_eq!(shown[0].urgency, 2);
    assert!(
        !shown[0].body.contains("es1"),
        "a peer ID in a notification"
    );
    daemon.wait_closed(shown[0].id);
    assert_eq!(bob.last["missed"], json!([]));

    // A call Bob misses: Alice gives up while it rings. The ring's notification becomes a
    // missed call, and the window lists it (in memory) until he has seen it.
    alice.send(json!({"action": "call", "peer_id": bob_id}));
    bob.wait("incoming call", 30, |s| phase(s) == "incoming");
    alice.wait("ringing", 10, |s| phase(s) == "ringing");
    alice.send(json!({"action": "hang_up"}));
    let s = bob.wait("missed", 20, |s| {
        s["missed"].as_array().is_some_and(|m| m.len() == 1)
    });
    assert_eq!(s["missed"][0]["who"], "Alice");
    let shown = daemon.wait_for(3);
    assert_eq!(shown[1].summary, "Alice is calling");
    assert_eq!(shown[2].summary, "Missed call from Alice");
    assert_eq!(
        shown[2].replaces, shown[1].id,
        "the ring is replaced, not left up"
    );
    bob.send(json!({"action": "close_call"}));
    alice.wait("ended", 10, |s| phase(s) == "ended");
    alice.send(json!({"action": "close_call"}));
    alice.wait("back to contacts", 10, |s| s["call"].is_null());
    bob.wait("back to contacts", 10, |s| s["call"].is_null());
    bob.screenshot("3-missed-call.png");
    bob.send(json!({"action": "dismiss_missed"}));
    bob.wait("missed seen", 10, |s| s["missed"] == json!([]));

    // Alice calls with video; Bob's window rings with her name.
    alice.send(json!({"action": "call", "peer_id": bob_id, "video": true}));
    let s = bob.wait("incoming call", 30, |s| phase(s) == "incoming");
    assert_eq!(s["call"]["title"], "Alice is calling");
    assert_eq!(s["call"]["controls"]["answer"], true);
    assert_eq!(s["call"]["controls"]["hang_up"], false);
    alice.wait("ringing", 10, |s| phase(s) == "ringing");
    bob.screenshot("3-incoming-call.png");

    // Bob answers with Enter: the Accept button has the keyboard focus.
    bob.send(json!({"key": "Enter"}));
    // Connected, and the code shown (the callee's settles a round trip after the ring).
    let shown = |s: &Value| phase(s) == "connected" && s["call"]["sas"].is_string();
    let b = bob.wait("connected", 20, shown);
    let a = alice.wait("connected", 20, shown);
    let sas = a["call"]["sas"].as_str().expect("a security code");
    assert_eq!(sas.chars().filter(char::is_ascii_digit).count(), 6, "{sas}");
    assert_eq!(b["call"]["sas"], sas, "both windows show the same code");
    assert_eq!(a["call"]["controls"]["verify"], true);

    // Video: Bob answered without video (Enter is "Accept"), so only Alice's arrives; he
    // turns his camera on, then both see each other.
    bob.send(json!({"action": "camera", "on": true}));
    for app in [&mut alice, &mut bob] {
        let s = app.wait("the other's video", 60, |s| {
            s["call"]["stats"]["frames_shown"].as_u64().unwrap_or(0) > 30
                && s["remote_picture"].is_u64()
                && s["preview_picture"] == true
        });
        assert_eq!(s["call"]["camera_on"], true);
        let (w, h) = (
            s["call"]["stats"]["video_in"][0].as_f64().unwrap(),
            s["call"]["stats"]["video_in"][1].as_f64().unwrap(),
        );
        assert!(
            (w / h - 16.0 / 9.0).abs() < 0.05,
            "test picture is 16:9, got {w}x{h}"
        );
        assert!(s["call"]["stats"]["rtt_ms"].as_f64().unwrap() < 200.0);
        // The window shows the voice's bitrate and its copies (one of the two modes).
        let voice = (
            &s["call"]["stats"]["voice_kbps"],
            &s["call"]["stats"]["copies"],
        );
        assert!(
            voice == (&json!(40), &json!(2)) || voice == (&json!(56), &json!(1)),
            "{voice:?}"
        );
    }

    // Chat both ways.
    alice.send(json!({"action": "chat", "text": "Hello Bob, can you see me?"}));
    bob.wait("chat", 10, |s| {
        s["call"]["chat"].as_array().is_some_and(|c| {
            c.iter()
                .any(|l| l["text"] == "Hello Bob, can you see me?" && l["mine"] == false)
        })
    });
    bob.send(json!({"action": "chat", "text": "Yes, clearly."}));
    alice.wait("chat answer", 10, |s| {
        s["call"]["chat"].to_string().contains("Yes, clearly.")
    });

    // They read the code aloud; Alice records that they compared it.
    alice.send(json!({"action": "mark_verified"}));
    let s = alice.wait("verified", 10, |s| s["call"]["verified"] == true);
    assert_eq!(s["contacts"][0]["verified"], true);
    assert_eq!(s["call"]["controls"]["verify"], false);
    alice.screenshot("4-call-with-video.png");

    call_screen_layouts(&mut bob);

    // Alice shares her screen (1280x800: not 16:9): Bob's picture changes shape.
    alice.send(json!({"action": "share", "on": true}));
    alice.wait("sharing", 10, |s| s["call"]["sharing"] == true);
    bob.wait("the shared screen", 30, |s| {
        let w = s["call"]["stats"]["video_in"][0].as_f64().unwrap_or(0.0);
        let h = s["call"]["stats"]["video_in"][1].as_f64().unwrap_or(1.0);
        (w / h - 1.6).abs() < 0.05
    });
    alice.send(json!({"action": "share", "on": false}));
    alice.wait("not sharing", 10, |s| s["call"]["sharing"] == false);

    // A file: offered, shown with name and size, accepted, verified on arrival.
    let file = tmp.join("report.bin");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    alice.send(json!({"action": "send_files", "paths": [file]}));
    let s = bob.wait("file offer", 30, |s| {
        s["call"]["offers"]
            .as_array()
            .is_some_and(|o| !o.is_empty())
    });
    let offer = &s["call"]["offers"][0];
    assert_eq!(offer["files"][0][0], "report.bin");
    assert_eq!(offer["total"], 3_000_000);
    bob.screenshot("5-file-offer.png");
    bob.send(json!({"action": "accept_offer", "id": offer["id"]}));
    let s = bob.wait("file received", 60, |s| {
        s["call"]["transfers"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["outgoing"] == false && t["state"] == "done")
        })
    });
    assert_eq!(s["call"]["transfers"][0]["label"], "report.bin");
    assert_eq!(s["call"]["transfers"][0]["bytes"], 3_000_000);
    alice.wait("file sent", 30, |s| {
        s["call"]["transfers"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["outgoing"] == true && t["state"] == "done")
        })
    });
    assert_eq!(std::fs::read(db.join("received/report.bin")).unwrap(), data);
    bob.screenshot("6-file-received.png");

    // Bob sends Alice a note (and a mistyped name, left out: the note goes anyway): her
    // file settings take it, nobody is asked.
    let note = tmp.join("note.txt");
    std::fs::write(&note, b"the small one").unwrap();
    bob.send(json!({"action": "send_files", "paths": [note, tmp.join("ntoe.txt")]}));
    bob.wait("the missing name told", 30, |s| {
        s["notices"].as_array().is_some_and(|n| {
            n.iter().any(|n| {
                n.as_str().is_some_and(|t| {
                    t.starts_with("Left out (they do not exist):") && t.contains("ntoe.txt")
                })
            })
        })
    });
    let s = alice.wait("the note taken by the file settings", 30, |s| {
        s["call"]["transfers"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["outgoing"] == false && t["state"] == "done")
        })
    });
    assert!(
        s["call"]["offers"].as_array().is_some_and(|o| o.is_empty()),
        "nobody was asked: {s:#}"
    );
    assert_eq!(
        std::fs::read(da.join("received/note.txt")).unwrap(),
        b"the small one"
    );
    // A larger file is refused by the same settings, and Bob hears no.
    bob.send(json!({"action": "send_files", "paths": [file]}));
    let s = alice.wait("the large file refused", 30, |s| {
        s["notices"].as_array().is_some_and(|n| {
            n.iter().any(|n| {
                n.as_str()
                    .is_some_and(|t| t.starts_with("Declined report.bin"))
            })
        })
    });
    assert!(s["call"]["offers"].as_array().is_some_and(|o| o.is_empty()));
    assert!(!da.join("received/report.bin").exists());

    // Bob chooses two files in his desktop's file chooser: one goes, the other no longer
    // exists and is named.
    let picked = tmp.join("pick me.txt");
    std::fs::write(&picked, b"chosen in the dialog").unwrap();
    let uri = |p: &Path| format!("file://{}", p.display()).replace(' ', "%20");
    *chooser.uris.lock().unwrap() = vec![uri(&picked), uri(&tmp.join("gone.txt"))];
    bob.send(json!({"action": "pick_files"}));
    alice.wait("the chosen file taken", 30, |s| {
        s["call"]["transfers"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["label"] == "pick me.txt" && t["state"] == "done")
        })
    });
    bob.wait("the vanished one named", 30, |s| {
        s["notices"].to_string().contains("gone.txt")
    });
    assert_eq!(
        std::fs::read(da.join("received/pick me.txt")).unwrap(),
        b"chosen in the dialog"
    );
    assert_eq!(
        *chooser.asked.lock().unwrap(),
        vec![("Send to the person in the call".to_string(), true)],
        "one chooser, several files allowed"
    );

    // Alice closes her window: the call ends cleanly on both sides.
    alice.send(json!({"action": "close_window"}));
    let status = alice.exited(10);
    assert!(status.success(), "alice exited with {status}");
    let s = bob.wait("call ended", 15, |s| phase(s) == "ended");
    assert_eq!(s["call"]["phase"]["failed"], false, "{s:#}");
    assert_eq!(s["call"]["phase"]["why"], "Alice closed EXTRA SAFE.");
    assert_eq!(s["call"]["controls"]["close"], true);

    // Nothing of the call was written: Alice's folder holds her key, her contacts (with the
    // rendezvous roots and inbox chains, PROTOCOL.md §12), her own inbox chain and the
    // ticket's salt; the contacts' lock file stays empty.
    let mut kept: Vec<String> = std::fs::read_dir(da.join("identity"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            ".contacts.lock",
            "contacts.bin",
            "identity.key",
            "inbox.bin",
            "ticket.salt"
        ],
        "only the key, the contacts, the inbox chain and the ticket's salt"
    );
    let lock = std::fs::metadata(da.join("identity").join(".contacts.lock")).unwrap();
    assert_eq!(lock.len(), 0, "the lock file holds nothing");
    // Her download folder holds the two files her settings accepted, and nothing else (no
    // partial file of the one refused).
    let mut received: Vec<String> = std::fs::read_dir(da.join("received"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    received.sort();
    assert_eq!(received, ["note.txt", "pick me.txt"]);

    // Alice starts again: her sealed identity asks for the passphrase, a wrong one is
    // refused with a sentence, and her verified contact is still there.
    let mut alice = App::start("alice again", &xa, &da);
    alice.wait("locked", 60, |s| s["stage"] == "locked");
    alice.send(json!({"action": "unlock", "passphrase": "wrong horse battery"}));
    alice.wait("refused", 60, |s| {
        s["notices"]
            .to_string()
            .contains("does not open your identity")
            && s["busy"] == false
    });
    alice.send(json!({"action": "unlock", "passphrase": "correct horse battery"}));
    let s = alice.wait("unlocked", 60, |s| s["stage"] == "ready");
    assert_eq!(s["me"]["peer_id"], alice_id);
    assert_eq!(s["contacts"][0]["name"], "Bob");
    assert_eq!(s["contacts"][0]["verified"], true);
    // Renamed: the name changes, the verification stays.
    alice.send(json!({"action": "rename_contact", "peer_id": bob_id, "name": "Robert"}));
    let s = alice.wait("renamed", 10, |s| s["contacts"][0]["name"] == "Robert");
    assert_eq!(s["contacts"][0]["verified"], true);

    // Bob closes too; calling him now fails with a sentence that names him and says what
    // to do (his address no longer answers, and the LAN and DHT are off here).
    bob.send(json!({"action": "close_call"}));
    bob.wait("back to contacts", 10, |s| s["call"].is_null());
    bob.send(json!({"action": "close_window"}));
    assert!(bob.exited(10).success());
    alice.send(json!({"action": "call", "peer_id": bob_id}));
    let s = alice.wait("unreachable", 30, |s| phase(s) == "ended");
    let why = s["call"]["phase"]["why"].as_str().unwrap();
    assert!(why.starts_with("Robert did not answer."), "{why}");
    assert!(why.contains("never relays"), "{why}");
    assert_eq!(s["call"]["phase"]["failed"], true);
    alice.screenshot("7-unreachable.png");
    alice.send(json!({"action": "close_window"}));
    assert!(alice.exited(10).success());
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The same binary opens its window on Wayland (a headless Weston; no X server at all):
/// first run, identity, ready, closed by the compositor's close request.
/// A contact added to the list on disk by another process (the command line's `contact add`
/// beside the open window) shows in the window without a restart.
#[test]
fn a_contact_added_beside_the_window_shows_without_a_restart() {
    if !have("Xvfb") {
        if std::env::var_os("EXTRASAFE_REQUIRE_XVFB").is_some() {
            panic!("Xvfb is missing (apt install xvfb)");
        }
        eprintln!("skipped: Xvfb is not installed");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("es-desktop-added-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("received")).unwrap();
    let x = Xvfb::start();
    let mut bob = App::start("bob", &x, &tmp);
    bob.wait("first run", 60, |s| s["stage"] == "firstrun");
    bob.send(json!({"action": "create_identity"}));
    bob.wait("identity", 60, |s| s["stage"] == "ready");
    // Another process adds Alice to Bob's list, as `extrasafe contact add` would.
    let store = extrasafe_net::IdentityStore::at(tmp.join("identity"));
    let me = store.load(None).unwrap();
    let alice = extrasafe_net::new_identity().peer_id();
    let key = extrasafe_core::contacts::ContactsKey::of(&me);
    store
        .update_contacts(&key, |book| {
            book.add("alicewren", alice, vec![]).unwrap();
            (true, ())
        })
        .unwrap();
    let s = bob.wait("the contact added beside the window", 30, |s| {
        s["contacts"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "alicewren"))
    });
    assert_eq!(s["contacts"][0]["peer_id"], alice.to_string());
    // Settings chosen in the window are there at the next start; a flag given then wins.
    bob.send(json!({"action": "set_mic", "name": "alsa_input.usb-Headset"}));
    bob.send(json!({"action": "set_files_dir", "path": tmp.join("elsewhere")}));
    bob.wait("the microphone chosen", 10, |s| {
        s["settings"]["mic"] == "alsa_input.usb-Headset"
    });
    bob.send(json!({"action": "close_window"}));
    assert!(bob.exited(10).success());
    let saved = tmp.join("identity/settings.json");
    let text = std::fs::read_to_string(&saved).expect("the settings were kept");
    assert!(!text.contains(&alice.to_string()) && !text.contains("alicewren"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut again = App::start("bob again", &x, &tmp);
    let s = again.wait("ready again", 60, |s| s["stage"] == "ready");
    assert_eq!(s["settings"]["mic"], "alsa_input.usb-Headset");
    assert_eq!(
        s["settings"]["files_dir"],
        tmp.join("received").to_string_lossy().as_ref()
    );
    again.send(json!({"action": "close_window"}));
    assert!(again.exited(10).success());
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn the_window_opens_on_wayland_too() {
    if !have("weston") {
        if std::env::var_os("EXTRASAFE_REQUIRE_XVFB").is_some() {
            panic!("weston is missing (apt install weston)");
        }
        eprintln!("skipped: weston is not installed");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("es-desktop-wl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let runtime = tmp.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut weston = Command::new("weston")
        .args([
            "--backend=headless-backend.so",
            "--socket=es-test",
            "--idle-time=0",
        ])
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weston");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !runtime.join("es-test").exists() {
        assert!(Instant::now() < deadline, "weston did not open its socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_extrasafe-desktop"))
        .args(["--automation", "--bind", "127.0.0.1", "--port", "0"])
        .args(["--no-dht", "--no-lan", "--no-sound"])
        .arg("--data-dir")
        .arg(tmp.join("identity"))
        .env_remove("DISPLAY")
        .env("WAYLAND_DISPLAY", "es-test")
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start extrasafe-desktop");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut wait_for = |what: &str| {
        for line in lines.by_ref() {
            let line = line.expect("the app reports its state");
            if line.contains(what) {
                return serde_json::from_str::<Value>(&line).unwrap();
            }
        }
        panic!("the app ended before showing {what}");
    };
    wait_for("\"stage\":\"firstrun\"");
    writeln!(stdin, "{}", json!({"action": "create_identity"})).unwrap();
    let s = wait_for("\"stage\":\"ready\"");
    assert!(s["me"]["ticket"].as_str().unwrap().starts_with("est1"));
    writeln!(stdin, "{}", json!({"action": "close_window"})).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not exit after closing"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let _ = weston.kill();
    let _ = weston.wait();
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Bob's call screen (video both ways, the code not yet compared on his side) at every zoom
/// from 1 to 2.5 and window sizes from 800x600 to 2560x1440, read through the accessibility
/// tree: every control named and on the window, no text broken letter by letter, their
/// picture filling the space left; then with the chat column in the picture's place, in full
/// screen, and with a notice up. Each one is screenshotted.
fn call_screen_layouts(bob: &mut App) {
    let mut n = 0;
    for (w, h) in [(800, 600), (1280, 800), (1920, 1080), (2560, 1440)] {
        for zoom in [1.0, 1.5, 2.0, 2.5] {
            let l = bob.layout_at(&mut n, (w, h), zoom);
            let shot = bob.screenshot_of(&format!("layout-{w}x{h}-zoom{zoom}.png"), Some((w, h)));
            // At the sizes people use most, nothing needs scrolling to be reached.
            let common = zoom <= 1.5 && w >= 1280;
            let faults = layout_faults(&l, !common);
            assert!(
                faults.is_empty(),
                "{w}x{h} at zoom {zoom} ({}): {faults:#?}",
                shot.display()
            );
            let screen = [
                0.0,
                0.0,
                l["screen"][0].as_f64().unwrap(),
                l["screen"][1].as_f64().unwrap(),
            ];
            let picture = rect_of(
                node(&l, "Their picture (double-click: full screen)")
                    .unwrap_or_else(|| panic!("{w}x{h} at zoom {zoom}: no picture")),
            );
            let share = area(picture) / area(screen);
            assert!(
                share >= if common { 0.3 } else { 0.2 },
                "{w}x{h} at zoom {zoom}: the picture takes {share:.2} of the window"
            );
            for control in ["Hang up", "Mute", "Full screen", "We compared them"] {
                assert!(
                    node(&l, control).is_some(),
                    "{w}x{h} at zoom {zoom}: no {control}"
                );
            }
            // Settings are closed and out of reach during a call; the timer runs.
            assert!(node(&l, "Settings").is_none(), "Settings shown in a call");
            let timer = l["nodes"].as_array().unwrap().iter().any(|n| {
                let t = n["name"].as_str().unwrap();
                t.len() >= 4
                    && t.split(':').count() >= 2
                    && t.split(':')
                        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            });
            assert!(timer, "{w}x{h} at zoom {zoom}: no call timer");
        }
    }
    // Narrow: chat and files take the picture's place and come back to it.
    for (size, zoom) in [((800, 600), 2.5), ((1280, 800), 2.0)] {
        bob.send(json!({"side_open": true}));
        let l = bob.layout_at(&mut n, size, zoom);
        bob.screenshot_of(
            &format!("layout-{}x{}-zoom{zoom}-chat.png", size.0, size.1),
            Some(size),
        );
        let faults = layout_faults(&l, true);
        assert!(
            faults.is_empty(),
            "chat at {size:?} zoom {zoom}: {faults:#?}"
        );
        for control in ["Back to the picture", "Send"] {
            assert!(
                node(&l, control).is_some(),
                "chat at {size:?} zoom {zoom}: no {control}"
            );
        }
        bob.send(json!({"side_open": false}));
    }
    // Full screen with F11: the picture takes the window, the controls float over it;
    // Escape leaves.
    let l = bob.layout_at(&mut n, (1280, 800), 1.0);
    let before = rect_of(node(&l, "Their picture (double-click: full screen)").unwrap());
    bob.send(json!({"key": "F11"}));
    bob.wait("full screen", 10, |s| s["fullscreen"] == true);
    n += 1;
    let l = bob.layout(n);
    bob.screenshot_of("layout-fullscreen.png", Some((1280, 800)));
    let faults = layout_faults(&l, false);
    assert!(faults.is_empty(), "full screen: {faults:#?}");
    let full = rect_of(node(&l, "Their picture (double-click: full screen)").unwrap());
    assert!(
        area(full) >= 0.95 * 1280.0 * 800.0,
        "full screen picture {full:?}"
    );
    assert!(node(&l, "Leave full screen").is_some() && node(&l, "Hang up").is_some());
    bob.send(json!({"key": "Escape"}));
    bob.wait("full screen left", 10, |s| s["fullscreen"] == false);
    // A notice floats over the window: the picture does not move.
    bob.send(json!({"action": "send_files", "paths": ["/nonexistent/extrasafe-layout-test"]}));
    bob.wait("a notice", 10, |s| {
        s["notices"].as_array().is_some_and(|a| !a.is_empty())
    });
    n += 1;
    let l = bob.layout(n);
    bob.screenshot_of("layout-notice.png", Some((1280, 800)));
    let with_notice = rect_of(node(&l, "Their picture (double-click: full screen)").unwrap());
    assert_eq!(with_notice, before, "a notice moved the picture");
    assert!(node(&l, "Dismiss").is_some());
    bob.send(json!({"action": "dismiss", "id": 0}));
    bob.wait("notice dismissed", 10, |s| {
        s["notices"].as_array().is_some_and(|a| a.is_empty())
    });
    bob.layout_at(&mut n, (1100, 720), 1.0);
    bob.send(json!({"side_open": true}));
}

/// Whether `tools` are here; where they are not, the test is skipped, unless CI requires it
/// (`EXTRASAFE_REQUIRE_XVFB`).
fn lab_ready(tools: &[&str]) -> bool {
    match tools.iter().find(|t| !have(t)) {
        None => true,
        Some(missing) if std::env::var_os("EXTRASAFE_REQUIRE_XVFB").is_some() => {
            panic!("{missing} is missing (apt install xvfb imagemagick dbus-daemon)")
        }
        Some(missing) => {
            eprintln!("skipped: {missing} is not installed");
            false
        }
    }
}

/// A private D-Bus session bus (`dbus-daemon`), stopped when dropped.
struct Bus(Child, String);

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Bus {
    /// Serves `iface` at `path` under the well-known `name` on this bus (a stand-in for a
    /// desktop service), for as long as the connection is kept.
    fn serve<I: zbus::object_server::Interface>(
        &self,
        name: &str,
        path: &str,
        iface: I,
    ) -> zbus::blocking::Connection {
        zbus::blocking::connection::Builder::address(self.1.as_str())
            .unwrap()
            .name(name)
            .unwrap()
            .serve_at(path, iface)
            .unwrap()
            .build()
            .unwrap()
    }

    fn start() -> Self {
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start dbus-daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self(child, line.trim().to_string())
    }
}

/// A stand-in for the XDG desktop portal's Settings interface, as GNOME's and KDE's serve it.
struct Portal {
    scheme: u32,
}

#[zbus::interface(name = "org.freedesktop.portal.Settings")]
impl Portal {
    fn read_one(
        &self,
        namespace: &str,
        key: &str,
    ) -> zbus::fdo::Result<zbus::zvariant::OwnedValue> {
        if (namespace, key) == ("org.freedesktop.appearance", "color-scheme") {
            Ok(zbus::zvariant::OwnedValue::from(self.scheme))
        } else {
            Err(zbus::fdo::Error::Failed(format!(
                "no setting {namespace} {key}"
            )))
        }
    }

    #[zbus(signal)]
    async fn setting_changed(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        namespace: &str,
        key: &str,
        value: zbus::zvariant::Value<'_>,
    ) -> zbus::Result<()>;
}

/// The mean brightness (0 black, 1 white) of a screenshot.
fn brightness(shot: &Path) -> f64 {
    let out = Command::new("identify")
        .args(["-format", "%[fx:mean]"])
        .arg(shot)
        .output()
        .expect("run identify");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn the_window_follows_the_systems_light_or_dark_appearance() {
    let tools = ["Xvfb", "import", "identify", "dbus-daemon"];
    if !lab_ready(&tools) {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("es-desktop-theme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("received")).unwrap();
    let bus = Bus::start();
    // The system is set to light.
    let portal = bus.serve(
        "org.freedesktop.portal.Desktop",
        "/org/freedesktop/portal/desktop",
        Portal { scheme: 2 },
    );
    let x = Xvfb::start();
    let mut app = App::start_on_bus("theme", &x, &tmp, &[], Some(&bus.1));
    app.wait("light first screen", 60, |s| {
        s["stage"] == "firstrun" && s["theme"] == "light"
    });
    let light = brightness(&app.screenshot_of("appearance-light.png", Some((1100, 720))));
    assert!(
        light > 0.6,
        "the light window has a mean brightness of {light:.2}"
    );

    // The person switches their system to dark: the window follows while it runs.
    let iface = portal
        .object_server()
        .interface::<_, Portal>("/org/freedesktop/portal/desktop")
        .unwrap();
    zbus::block_on(Portal::setting_changed(
        iface.signal_emitter(),
        "org.freedesktop.appearance",
        "color-scheme",
        zbus::zvariant::Value::U32(1),
    ))
    .unwrap();
    app.wait("dark", 20, |s| s["theme"] == "dark");
    let dark = brightness(&app.screenshot_of("appearance-dark.png", Some((1100, 720))));
    assert!(
        dark < 0.3,
        "the dark window has a mean brightness of {dark:.2}"
    );
    drop(app);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// One notification as the daemon got it.
#[derive(Clone, Debug)]
struct Shown {
    id: u32,
    replaces: u32,
    summary: String,
    body: String,
    urgency: u8,
}

/// A stand-in desktop notification daemon (`org.freedesktop.Notifications`) that records
/// what it is asked to show and take down.
#[derive(Clone, Default)]
struct Notifications {
    shown: std::sync::Arc<std::sync::Mutex<Vec<Shown>>>,
    closed: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
}

impl Notifications {
    fn wait_for(&self, n: usize) -> Vec<Shown> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let shown = self.shown.lock().unwrap().clone();
            if shown.len() >= n {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "{n} notifications expected, got {shown:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_closed(&self, id: u32) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.closed.lock().unwrap().contains(&id) {
            assert!(
                Instant::now() < deadline,
                "notification {id} never taken down"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: &str,
        replaces_id: u32,
        _app_icon: &str,
        summary: &str,
        body: &str,
        _actions: Vec<String>,
        hints: std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut shown = self.shown.lock().unwrap();
        let id = if replaces_id != 0 {
            replaces_id
        } else {
            shown.len() as u32 + 1
        };
        let urgency = hints
            .get("urgency")
            .and_then(|v| u8::try_from(v).ok())
            .unwrap_or(1);
        shown.push(Shown {
            id,
            replaces: replaces_id,
            summary: summary.into(),
            body: body.into(),
            urgency,
        });
        id
    }

    fn close_notification(&self, id: u32) {
        self.closed.lock().unwrap().push(id);
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "stand-in".into(),
            "extrasafe-tests".into(),
            "1".into(),
            "1.2".into(),
        )
    }
}

/// The layout check itself: it finds text broken letter by letter, a control off the window
/// or without a name, and lets a control below a scroll area's fold pass only where asked.
#[test]
fn the_layout_check_finds_what_it_looks_for() {
    let layout = |nodes: Value| {
        json!({"screen": [320.0, 240.0], "zoom": 2.5,
               "scroll_regions": [[0.0, 100.0, 320.0, 240.0]], "nodes": nodes})
    };
    let ok = layout(json!([
        {"role": "Button", "name": "Hang up", "rect": [10.0, 10.0, 90.0, 40.0], "click": true, "focus": true},
        {"role": "Label", "name": "Security code: read it aloud.", "rect": [10.0, 50.0, 300.0, 90.0], "click": false, "focus": false},
    ]));
    assert!(layout_faults(&ok, false).is_empty());
    // What the old call screen did at zoom 2: the words beside the code, one letter a line.
    let broken = layout(json!([
        {"role": "Label", "name": "Security code", "rect": [300.0, 10.0, 312.0, 400.0], "click": false, "focus": false},
    ]));
    assert_eq!(layout_faults(&broken, true).len(), 1);
    let off = layout(json!([
        {"role": "Button", "name": "Hang up", "rect": [330.0, 10.0, 400.0, 40.0], "click": true, "focus": true},
        {"role": "TextInput", "name": "", "rect": [10.0, 10.0, 100.0, 40.0], "click": true, "focus": true},
    ]));
    assert_eq!(
        layout_faults(&off, true).len(),
        2,
        "{:?}",
        layout_faults(&off, true)
    );
    let below_fold = layout(json!([
        {"role": "Button", "name": "Send", "rect": [200.0, 250.0, 300.0, 280.0], "click": true, "focus": true},
    ]));
    assert!(layout_faults(&below_fold, true).is_empty());
    assert_eq!(layout_faults(&below_fold, false).len(), 1);
}

/// A stand-in for the XDG desktop portal's file chooser: answers every `OpenFile` at once
/// with the URIs it holds, on the request path the caller's `handle_token` names.
#[derive(Clone, Default)]
struct Chooser {
    uris: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// (title, several files allowed) of each request.
    asked: std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>,
}

#[zbus::interface(name = "org.freedesktop.portal.FileChooser")]
impl Chooser {
    async fn open_file(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        _parent_window: &str,
        title: &str,
        options: std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
    ) -> zbus::fdo::Result<zbus::zvariant::OwnedObjectPath> {
        let multiple = options
            .get("multiple")
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false);
        self.asked.lock().unwrap().push((title.into(), multiple));
        let token = options
            .get("handle_token")
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
            .unwrap_or_else(|| "t".into());
        let sender = hdr
            .sender()
            .map(|s| s.as_str().trim_start_matches(':').replace('.', "_"))
            .unwrap_or_default();
        let path = format!("/org/freedesktop/portal/desktop/request/{sender}/{token}");
        let uris = self.uris.lock().unwrap().clone();
        let mut results: std::collections::HashMap<&str, zbus::zvariant::Value<'_>> =
            std::collections::HashMap::new();
        results.insert("uris", zbus::zvariant::Value::from(uris));
        conn.emit_signal(
            None::<zbus::names::BusName<'_>>,
            path.as_str(),
            "org.freedesktop.portal.Request",
            "Response",
            &(0u32, results),
        )
        .await
        .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        zbus::zvariant::OwnedObjectPath::try_from(path)
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }
}

/// A stand-in for the desktop's StatusNotifierWatcher (what KDE's tray, or GNOME's
/// AppIndicator extension, runs): records the items that register.
#[derive(Clone, Default)]
struct Watcher {
    items: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    fn register_status_notifier_item(&self, service: &str) {
        self.items.lock().unwrap().push(service.to_string());
    }

    fn register_status_notifier_host(&self, _service: &str) {}

    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        self.items.lock().unwrap().clone()
    }
}

/// A StatusNotifierItem's tool tip: icon name, icon pixmaps, title, description.
type ToolTip = (String, Vec<(i32, i32, Vec<u8>)>, String, String);

/// Starts an app on `bus`, makes an open identity and turns "stay reachable" on.
fn reachable_app(name: &'static str, x: &Xvfb, dir: &Path, bus: &str) -> App {
    let mut app = App::start_on_bus(name, x, dir, &[], Some(bus));
    app.wait("first run", 60, |s| s["stage"] == "firstrun");
    app.send(json!({"action": "create_identity"}));
    app.wait("ready", 60, |s| s["stage"] == "ready");
    app.send(json!({"action": "set_stay_reachable", "on": true}));
    app.wait("stay reachable", 10, |s| {
        s["settings"]["stay_reachable"] == true
    });
    app
}

#[test]
fn with_stay_reachable_the_window_closes_to_the_tray_and_comes_back() {
    let tools = ["Xvfb", "import", "identify", "dbus-daemon"];
    if !lab_ready(&tools) {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("es-desktop-tray-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for d in ["a", "b", "caller"] {
        std::fs::create_dir_all(tmp.join(d).join("received")).unwrap();
    }
    let bus = Bus::start();
    let watcher = Watcher::default();
    let _watcher = bus.serve(
        "org.kde.StatusNotifierWatcher",
        "/StatusNotifierWatcher",
        watcher.clone(),
    );
    let x = Xvfb::start();
    let mut app = reachable_app("tray", &x, &tmp.join("a"), &bus.1);
    app.wait("the tray icon", 20, |s| s["tray"] == true);
    let service = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = watcher.items.lock().unwrap().first().cloned() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "no item registered with the tray"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The icon says which app it is, and nothing about whom it talks to.
    let conn = zbus::blocking::connection::Builder::address(bus.1.as_str())
        .unwrap()
        .build()
        .unwrap();
    let item = zbus::blocking::Proxy::new(
        &conn,
        service.as_str(),
        "/StatusNotifierItem",
        "org.kde.StatusNotifierItem",
    )
    .unwrap();
    assert_eq!(item.get_property::<String>("Title").unwrap(), "EXTRA SAFE");
    assert_eq!(
        item.get_property::<String>("IconName").unwrap(),
        "extrasafe"
    );
    let me = app.last["me"]["peer_id"].as_str().unwrap().to_string();
    let tip: ToolTip = item.get_property("ToolTip").unwrap();
    assert!(!format!("{tip:?}").contains(&me[..12]), "{tip:?}");

    // Closing the window hides it: the app runs on, reachable.
    app.send(json!({"action": "close_window"}));
    app.wait("hidden", 10, |s| s["window_visible"] == false);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        app.child.try_wait().unwrap().is_none(),
        "closing the window ended the app"
    );
    // A click on the icon brings it back.
    item.call::<_, _, ()>("Activate", &(0i32, 0i32)).unwrap();
    app.wait("shown again", 10, |s| s["window_visible"] == true);
    // Hidden again, it is still reachable: a call rings and brings the window back.
    app.send(json!({"action": "close_window"}));
    app.wait("hidden again", 10, |s| s["window_visible"] == false);
    let mut caller = App::start("caller", &x, &tmp.join("caller"));
    caller.wait("first run", 60, |s| s["stage"] == "firstrun");
    caller.send(json!({"action": "create_identity"}));
    caller.wait("ready", 60, |s| s["stage"] == "ready");
    let ticket = app.last["me"]["ticket"].as_str().unwrap().to_string();
    caller.send(json!({"action": "add_contact", "ticket": ticket, "name": "Tray"}));
    let s = caller.wait("contact added", 20, |s| {
        s["contacts"].as_array().is_some_and(|c| c.len() == 1)
    });
    let peer = s["contacts"][0]["peer_id"].as_str().unwrap().to_string();
    caller.send(json!({"action": "call", "peer_id": peer}));
    app.wait("the ring shows the window", 30, |s| {
        phase(s) == "incoming" && s["window_visible"] == true
    });
    app.send(json!({"action": "decline"}));
    app.wait("declined", 15, |s| phase(s) == "ended");
    app.send(json!({"action": "close_call"}));
    drop(caller);
    // The choice is kept for the next run.
    let saved = std::fs::read_to_string(tmp.join("a/identity/settings.json")).unwrap();
    assert!(saved.contains("\"stay_reachable\": true"), "{saved}");
    // Quit ends it for real.
    app.send(json!({"action": "quit"}));
    assert!(app.exited(15).success());

    // A desktop that shows no tray icons: closing minimizes instead, and says so.
    let bare = Bus::start();
    let mut app = reachable_app("no-tray", &x, &tmp.join("b"), &bare.1);
    app.send(json!({"action": "close_window"}));
    app.wait("told why it stays", 10, |s| {
        s["notices"]
            .to_string()
            .contains("minimized instead of closed")
    });
    assert_eq!(app.last["tray"], false);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        app.child.try_wait().unwrap().is_none(),
        "closing the window ended the app"
    );
    app.send(json!({"action": "quit"}));
    assert!(app.exited(15).success());
    let _ = std::fs::remove_dir_all(&tmp);
}
