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
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec Xvfb -displayfd 1 -screen 0 1280x800x24 -nolisten tcp")
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
    last: Value,
    display: String,
}

impl App {
    fn start(name: &'static str, x: &Xvfb, dir: &Path) -> Self {
        Self::start_with(name, x, dir, &[])
    }

    fn start_with(name: &'static str, x: &Xvfb, dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_extrasafe-desktop"))
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
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
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

    /// Saves the whole X screen; checks the picture is not blank.
    fn screenshot(&self, file: &str) -> PathBuf {
        let dir = shots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file);
        // Let the window draw the state just reported.
        std::thread::sleep(Duration::from_millis(700));
        let ok = Command::new("import")
            .args(["-window", "root"])
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

fn phase(s: &Value) -> &str {
    s["call"]["phase"]["name"].as_str().unwrap_or("")
}

/// Ticket of an app that listens on 127.0.0.1 only: its one address is loopback.
fn ticket(s: &Value) -> String {
    s["me"]["ticket"].as_str().expect("a ticket").to_string()
}

#[test]
fn two_windows_call_each_other_with_video_chat_and_a_file() {
    let tools = ["Xvfb", "import", "identify"];
    if let Some(missing) = tools.iter().find(|t| !have(t)) {
        if std::env::var_os("EXTRASAFE_REQUIRE_XVFB").is_some() {
            panic!("{missing} is missing (apt install xvfb imagemagick)");
        }
        eprintln!("skipped: {missing} is not installed");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("es-desktop-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (da, db) = (tmp.join("alice"), tmp.join("bob"));
    for d in [&da, &db] {
        std::fs::create_dir_all(d.join("received")).unwrap();
    }
    let (xa, xb) = (Xvfb::start(), Xvfb::start());
    // Alice's file settings take small files from anyone without asking, and refuse others.
    let mut alice = App::start_with("alice", &xa, &da, &["--accept-files", "anyone:64K"]);
    let mut bob = App::start("bob", &xb, &db);

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
    // Her download folder holds the one file her settings accepted, and nothing else (no
    // partial file of the one refused).
    let received: Vec<String> = std::fs::read_dir(da.join("received"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(received, ["note.txt"]);

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
