//! The `extrasafe` binary driven as a user or a script would, over loopback UDP.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

fn listener(extra: &[&str]) -> (Proc, Events) {
    let mut c = bin()
        .args([
            "--ephemeral",
            "--json",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--once",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ev = Events::new(c.stdout.take().unwrap());
    (Proc(Some(c)), ev)
}

fn caller(ticket: &str, global: &[&str], call_args: &[&str]) -> (Proc, Events) {
    let mut c = bin()
        .args(global)
        .args(["--json", "call", ticket])
        .args(call_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ev = Events::new(c.stdout.take().unwrap());
    (Proc(Some(c)), ev)
}

#[test]
fn a_call_with_chat_between_two_processes() {
    let (mut l, lev) = listener(&["--accept", "anyone"]);
    let ticket = lev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut c, cev) = caller(&ticket, &["--ephemeral"], &[]);
    let secured = cev.until("secured");
    assert_eq!(secured["key_exchange"], "X25519MLKEM768");
    let c_conn = cev.until("connected");
    let l_conn = lev.until("connected");
    // The listener answered at once; its code arrives a round trip after the ring.
    let l_code = lev.until("verification")["sas"].clone();
    assert_eq!(c_conn["sas"], l_code);
    assert_eq!(c_conn["safety_number"], l_conn["safety_number"]);
    assert_eq!(c_conn["sas"].as_str().unwrap().len(), 7);

    let mut cin = c.stdin.take().unwrap();
    writeln!(cin, "hello from the caller").unwrap();
    writeln!(cin, "\x1b[31mline two").unwrap();
    let got = lev.until("chat");
    assert_eq!(got["text"], "hello from the caller");
    assert!(got["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(lev.until("chat")["text"], "\x1b[31mline two");
    writeln!(l.stdin.as_mut().unwrap(), "and back").unwrap();
    assert_eq!(cev.until("chat")["text"], "and back");

    drop(cin); // Ctrl-D: hang up
    assert_eq!(cev.until("ended")["reason"], "LocalHangup");
    assert_eq!(lev.until("ended")["reason"], "RemoteHangup");
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);
}

/// A mistyped command never reaches the other person as chat: it is refused with a hint,
/// and `//` sends a message that starts with `/`.
#[test]
fn an_unknown_command_is_refused_and_never_sent() {
    let (l, lev) = listener(&["--accept", "anyone"]);
    let ticket = lev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut c, cev) = caller(&ticket, &["--ephemeral"], &[]);
    cev.until("connected");
    lev.until("connected");
    let mut cin = c.stdin.take().unwrap();
    writeln!(cin, "/sned /home/me/private-report.pdf").unwrap();
    let warned = cev.until("warning");
    let message = warned["message"].as_str().unwrap();
    assert!(
        message.contains("/sned") && message.contains("nothing was sent"),
        "{warned}"
    );
    writeln!(cin, "//shrug").unwrap();
    writeln!(cin, "after").unwrap();
    // Everything the listener prints, kept to search afterwards.
    let mut seen = Vec::new();
    let mut chats = Vec::new();
    while chats.len() < 2 {
        let e = lev.until_any();
        if e["event"] == "chat" {
            chats.push(e["text"].as_str().unwrap().to_string());
        }
        seen.push(e);
    }
    // The first chat the listener gets is the // message, with one slash taken off.
    assert_eq!(chats, ["/shrug", "after"]);
    drop(cin);
    cev.until("ended");
    loop {
        let e = lev.until_any();
        let ended = e["event"] == "ended";
        seen.push(e);
        if ended {
            break;
        }
    }
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);
    seen.extend(lev.0.try_iter());
    // Nothing of the mistyped line appears anywhere in what the listener printed.
    assert!(
        !seen
            .iter()
            .any(|e| e.to_string().contains("private-report") || e.to_string().contains("sned")),
        "the listener saw the mistyped command: {seen:?}"
    );
}

/// Calls `ticket` with a throw-away identity; returns the exit code and everything printed.
fn call_once(ticket: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = bin()
        .args(["--ephemeral", "--json", "call", ticket])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_forged_or_stale_ticket_gets_no_answer_and_learns_nothing() {
    let (real, rev) = listener(&["--accept", "anyone"]);
    let listening = rev.until("listening");
    let t: extrasafe_core::Ticket = listening["ticket"].as_str().unwrap().parse().unwrap();
    // A throw-away key and the listener's address (nothing secret): the attack of issue 16.
    let throwaway = extrasafe_core::Ticket {
        peer: extrasafe_net::new_identity().peer_id(),
        secret: Some(extrasafe_net::gate::random_ticket_secret()),
        addrs: t.addrs.clone(),
    };
    // The listener's real key and address, but no secret (an old, version 1 ticket) or
    // a wrong one.
    let no_secret = extrasafe_core::Ticket {
        secret: None,
        ..t.clone()
    };
    let wrong_secret = extrasafe_core::Ticket {
        secret: Some(extrasafe_net::gate::random_ticket_secret()),
        ..t.clone()
    };
    let attempts: Vec<_> = [(throwaway, true), (no_secret, false), (wrong_secret, false)]
        .into_iter()
        .map(|(forged, stranger)| {
            std::thread::spawn(move || (stranger, call_once(&forged.to_string(), &["--no-audio"])))
        })
        .collect();
    for a in attempts {
        let (stranger, (code, text)) = a.join().unwrap();
        // "Nobody answered at the ticket's addresses", never "someone else answered".
        assert_eq!(code, Some(3), "{text}");
        assert!(!text.contains("NOT"), "{text}");
        // The stranger with a throw-away key never learns whose address it is.
        if stranger {
            assert!(
                !text.contains(&t.peer.to_string()),
                "the key leaked: {text}"
            );
        }
    }
    // The listener (one call, then exit) saw nothing of them: the real ticket's call is the
    // first and only one it takes.
    let (code, text) = call_once(&t.to_string(), &["--no-audio"]);
    assert_eq!(code, Some(0), "{text}");
    let first = rev.until_any();
    assert_eq!(
        first["event"], "connected",
        "the forged calls reached it: {first}"
    );
    assert_eq!(wait(real), 0);
}

#[test]
fn a_declined_caller_learns_only_no_answer() {
    let other = extrasafe_net::new_identity().peer_id().to_string();
    let (mut l, lev) = listener(&["--accept", &other]);
    let ticket = lev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, text) = call_once(&ticket, &["--ring-timeout", "3", "--no-audio"]);
    assert_eq!(code, Some(5), "{text}");
    assert!(text.contains("\"reason\":\"NoAnswer\""), "{text}");
    assert!(!text.contains("Declined"), "{text}");
    l.kill().unwrap();
}

#[test]
fn ask_policy_prompts_and_takes_the_answer_from_the_terminal_input() {
    let (mut l, lev) = listener(&["--accept", "ask"]);
    let ticket = lev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let (c, cev) = caller(&ticket, &["--ephemeral"], &[]);
    lev.until("incoming");
    cev.until("ringing");
    // The code is settled a round trip after the ring starts: the same on both sides.
    let code = lev.until("verification")["sas"].clone();
    assert_eq!(code.as_str().unwrap().len(), 7);
    writeln!(l.stdin.as_mut().unwrap(), "y").unwrap();
    assert_eq!(cev.until("connected")["sas"], code);
    drop(l.stdin.take()); // the callee hangs up with Ctrl-D
    assert_eq!(cev.until("ended")["reason"], "RemoteHangup");
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);
}

/// Ctrl-C while the call rings ends it and exits 130, as the README says (it exited 0).
#[test]
fn ctrl_c_while_ringing_exits_130() {
    let (l, lev) = listener(&["--accept", "ask"]);
    let ticket = lev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let (c, cev) = caller(&ticket, &["--ephemeral"], &[]);
    lev.until("incoming");
    cev.until("ringing");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &c.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(cev.until("ended")["reason"], "LocalHangup");
    assert_eq!(wait(c), 130);
    // The callee, still asking, hears the caller gave up.
    assert_eq!(lev.until("ended")["reason"], "RemoteHangup");
    drop(l);
}

#[test]
fn identity_is_created_private_and_can_be_sealed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp("id");
    let data = dir.join("data");
    let id = |extra: &[&str], env: Option<&str>| {
        let mut c = bin();
        c.args(["--json", "--data-dir", data.to_str().unwrap(), "id"])
            .args(extra)
            .stdin(Stdio::null());
        if let Some(p) = env {
            c.env("EXTRASAFE_PASSPHRASE", p);
        }
        c.output().unwrap()
    };
    let first = id(&[], None);
    assert!(first.status.success());
    let v: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(v["created"], true);
    let peer = v["peer_id"].as_str().unwrap().to_string();
    assert!(peer.starts_with("es1"));
    let mode = |p: &PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("identity.key")), 0o600);

    let again: Value = serde_json::from_slice(&id(&[], None).stdout).unwrap();
    assert_eq!(again["peer_id"], peer.as_str());
    assert_eq!(again["created"], false);

    assert!(id(&["--set-passphrase"], Some("long enough phrase"))
        .status
        .success());
    let locked = id(&[], None);
    assert_eq!(locked.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&locked.stdout).contains("EXTRASAFE_PASSPHRASE"));
    let wrong = id(&[], Some("not the phrase"));
    assert_eq!(wrong.status.code(), Some(6));
    let opened: Value =
        serde_json::from_slice(&id(&[], Some("long enough phrase")).stdout).unwrap();
    assert_eq!(opened["peer_id"], peer.as_str());
    assert_eq!(opened["passphrase"], true);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `extrasafe ARGS` on a terminal of its own (util-linux `script` gives it a pseudo-terminal),
/// typing `typed`; its exit code and everything the terminal showed.
fn on_a_terminal(args: &[&str], typed: &str) -> (i32, String) {
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_extrasafe"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let mut c = std::process::Command::new("script")
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .env_remove("EXTRASAFE_PASSPHRASE")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(typed.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    drop(stdin);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A call placed on a terminal of its own: the person at the keyboard waits for the call to
/// connect, asks `/stats`, says hello, waits 6 s (longer than the stats period) and hangs
/// up. On a terminal the figures come when asked, and no stats line lands amid the chat.
#[test]
fn on_a_terminal_the_figures_come_when_asked_not_amid_the_chat() {
    let dir = tmp("stats-tty");
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("tone.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for i in 0..48_000 {
        w.write_sample(((i as f32 * 0.0576).sin() * 8000.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    let (l, lev) = listener(&["--accept", "anyone", "--no-audio"]);
    let ticket = lev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let cmd = format!(
        "'{}' --ephemeral call {ticket} --audio-in '{}' --loop --audio-out /dev/null",
        env!("CARGO_BIN_EXE_extrasafe"),
        wav.display()
    );
    let mut c = std::process::Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("RUST_LOG", "warn")
        .env(
            "PULSE_SERVER",
            "unix:/nonexistent/extrasafe-test-no-sound-server",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    let mut keys = c.stdin.take().unwrap();
    let screen = c.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(screen).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let until = |what: &str, seen: &mut Vec<String>| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {what:?} on the terminal: {seen:#?}"));
        seen.push(line.clone());
        if line.contains(what) {
            return;
        }
    };
    until("Connected with", &mut seen);
    keys.write_all(b"/stats\n").unwrap();
    until("[stats] RTT", &mut seen);
    keys.write_all(b"hello there\n").unwrap();
    std::thread::sleep(Duration::from_secs(6));
    keys.write_all(b"/hangup\n").unwrap();
    until("Call ended", &mut seen);
    drop(keys);
    assert_eq!(c.wait().unwrap().code(), Some(0));
    // One [stats] line for /stats, and the summary at the end: none in between.
    let during: Vec<&String> = seen
        .iter()
        .skip_while(|l| !l.contains("hello there"))
        .take_while(|l| !l.contains("/hangup"))
        .filter(|l| l.contains("[stats]"))
        .collect();
    assert!(during.is_empty(), "{seen:#?}");
    drop(l);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_mistyped_passphrase_on_a_terminal_gets_two_more_tries() {
    let dir = tmp("tries");
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let sealed = bin()
        .args(["--json", "--data-dir", data, "id", "--set-passphrase"])
        .env("EXTRASAFE_PASSPHRASE", "the right phrase")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(sealed.status.success(), "{sealed:?}");
    let args = ["--json", "--data-dir", data, "id"];
    // Wrong twice, then right: opened, each miss said with the tries left.
    let (code, shown) = on_a_terminal(&args, "wrong one\nwrong two\nthe right phrase\n");
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("Try again (2 tries left)"), "{shown}");
    assert!(shown.contains("Try again (1 try left)"), "{shown}");
    assert!(shown.contains("\"peer_id\":\"es1"), "{shown}");
    // Wrong three times: the identity error, and no fourth prompt.
    let (code, shown) = on_a_terminal(&args, "a\nb\nc\nthe right phrase\n");
    assert_eq!(code, 6, "{shown}");
    assert_eq!(
        shown
            .matches("Passphrase for your EXTRA SAFE identity")
            .count(),
        3,
        "{shown}"
    );
    assert!(!shown.contains("\"peer_id\""), "{shown}");
    // A script's passphrase is right or wrong at once: one try.
    let once = bin()
        .args(args)
        .env("EXTRASAFE_PASSPHRASE", "wrong")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(once.status.code(), Some(6));
    assert!(!String::from_utf8_lossy(&once.stderr).contains("Try again"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_ticket_ends_the_old_one_but_not_contacts() {
    let dir = tmp("newticket");
    let (alice, bob) = (dir.join("alice"), dir.join("bob"));
    let id = |data: &PathBuf, extra: &[&str]| -> Value {
        let out = bin()
            .args(["--json", "--data-dir", data.to_str().unwrap(), "id"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let alice_id = id(&alice, &[])["peer_id"].as_str().unwrap().to_string();
    let first = id(&bob, &[]);
    // The ticket carries the secret, and a port of Bob's own (no well-known default).
    let t1: extrasafe_core::Ticket = first["ticket"].as_str().unwrap().parse().unwrap();
    assert!(t1.secret.is_some(), "a ticket carries its secret");
    let port = t1.addrs.first().map(|a| a.port());
    assert!(
        port.is_some_and(|p| (20_000..32_768).contains(&p)),
        "{port:?}"
    );
    assert!(
        t1.addrs.iter().all(|a| !a.ip().is_loopback()),
        "{:?}",
        t1.addrs
    );
    assert_eq!(
        id(&bob, &[])["ticket"],
        first["ticket"],
        "the same ticket until a new one is made"
    );
    let renewed = id(&bob, &["--new-ticket"]);
    let t2: extrasafe_core::Ticket = renewed["ticket"].as_str().unwrap().parse().unwrap();
    assert_ne!(t2.secret, t1.secret);
    // Same port: contacts' stored addresses stay good.
    assert_eq!(t2.addrs.first().map(|a| a.port()), port);
    assert_eq!(t2.peer, t1.peer);
    let status = bin()
        .args([
            "--data-dir",
            bob.to_str().unwrap(),
            "contact",
            "add",
            &alice_id,
        ])
        .args(["--name", "alice"])
        .output()
        .unwrap()
        .status;
    assert!(status.success());

    let mut l = bin()
        .args(["--json", "--data-dir", bob.to_str().unwrap(), "listen"])
        .args(["--bind", "127.0.0.1:0", "--accept", "anyone", "--no-audio"])
        .args(["--no-dht", "--no-lan"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lev = Events::new(l.stdout.take().unwrap());
    let mut l = Proc(Some(l));
    let now: extrasafe_core::Ticket = lev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(now.secret, t2.secret);
    // Someone holding the old ticket (at the address Bob listens on now): no answer.
    let stale = extrasafe_core::Ticket {
        secret: t1.secret.clone(),
        ..now.clone()
    };
    let (code, text) = call_once(&stale.to_string(), &["--no-audio"]);
    assert_eq!(code, Some(3), "{text}");
    // Alice, a contact of Bob's, with the same old ticket: let in by the key they share.
    let out = bin()
        .args(["--json", "--data-dir", alice.to_str().unwrap(), "call"])
        .arg(stale.to_string())
        .args(["--no-audio", "--no-dht", "--no-lan"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // The new ticket works for anyone who holds it.
    let (code, text) = call_once(&now.to_string(), &["--no-audio"]);
    assert_eq!(code, Some(0), "{text}");
    l.kill().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ephemeral_writes_nothing() {
    let home = tmp("eph");
    std::fs::create_dir_all(&home).unwrap();
    let out = bin()
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .args(["--ephemeral", "id", "--qr"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Peer ID:  es1") && text.contains("Ticket:   est1"));
    assert!(text.contains('█') || text.contains('▀'), "QR code drawn");
    assert_eq!(
        std::fs::read_dir(&home).unwrap().count(),
        0,
        "nothing written under HOME"
    );
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn demo_runs_and_reports() {
    let wav = tmp("demo").with_extension("wav");
    let out = bin()
        .args([
            "--json",
            "demo",
            "--seconds",
            "2",
            "--audio-out",
            wav.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let connected = lines.iter().find(|v| v["event"] == "connected").unwrap();
    assert_eq!(connected["sas_equal"], true);
    assert_eq!(lines.iter().filter(|v| v["event"] == "chat").count(), 3);
    let done = lines.iter().find(|v| v["event"] == "demo_done").unwrap();
    assert!(done["connect_ms"].as_f64().unwrap() > 0.0);
    let audio = lines.iter().find(|v| v["event"] == "audio_done").unwrap();
    assert!(audio["correlation"].as_f64().unwrap() > 0.6, "{audio}");
    assert!(audio["latency_ms"].as_f64().unwrap() < 150.0, "{audio}");
    assert_eq!(audio["lost"], 0);
    let heard = extrasafe_net::media::wav::read(&wav).unwrap();
    assert!(heard.len() >= 2 * 48_000, "{} samples", heard.len());
    std::fs::remove_file(&wav).unwrap();
}

#[test]
fn bad_input_gets_a_sentence_and_exit_2() {
    let out = bin()
        .args(["--ephemeral", "call", "est1notaticket"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));
    let out = bin()
        .args(["--ephemeral", "listen", "--accept", "es1bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--accept takes"));
}

#[test]
fn peer_text_cannot_drive_the_terminal() {
    // A human-mode listener: read its plain stdout.
    let l = bin()
        .args([
            "--ephemeral",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--once",
            "--accept",
            "anyone",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut l = Proc(Some(l));
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = l.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next_line = |want: &str| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listener output");
        if line.contains(want) {
            return line;
        }
    };
    let ticket = next_line("Ticket:")
        .trim_start_matches("Ticket:")
        .trim()
        .to_string();
    let (mut c, cev) = caller(&ticket, &["--ephemeral"], &[]);
    cev.until("connected");
    let mut cin = c.stdin.take().unwrap();
    writeln!(cin, "\x1b]0;owned\x07\x1b[2Jhi\u{202e}there").unwrap();
    let shown = next_line("them:");
    assert!(
        !shown.contains('\x1b') && !shown.contains('\x07') && !shown.contains('\u{202e}'),
        "{shown:?}"
    );
    assert!(
        shown.ends_with("\u{fffd}]0;owned\u{fffd}\u{fffd}[2Jhi\u{fffd}there"),
        "{shown:?}"
    );
    drop(cin);
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);
}

#[test]
fn a_busy_port_gets_advice() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port().to_string();
    let out = bin()
        .args([
            "--ephemeral",
            "listen",
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Port {port} is already in use")) && err.contains("--port"),
        "{err}"
    );
}

#[test]
fn audio_files_in_and_out_of_a_call() {
    let dir = tmp("audio");
    std::fs::create_dir_all(&dir).unwrap();
    // The voice goes in at 16 kHz to exercise the resampler.
    let voice48 = extrasafe_net::media::speech::sample(3.0);
    let voice16 = extrasafe_net::media::resample::resample(&voice48, 48_000, 16_000);
    let spec = |rate| hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let input = dir.join("in.wav");
    let mut w = hound::WavWriter::create(&input, spec(16_000)).unwrap();
    voice16.iter().for_each(|&s| w.write_sample(s).unwrap());
    w.finalize().unwrap();
    let output = dir.join("heard.wav");

    let (l, lev) = listener(&[
        "--accept",
        "anyone",
        "--audio-out",
        output.to_str().unwrap(),
    ]);
    let ticket = lev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut c, cev) = caller(
        &ticket,
        &["--ephemeral"],
        &["--audio-in", input.to_str().unwrap()],
    );
    cev.until("connected");
    // The first stats line comes after 5 s of call: the 3 s voice has been sent by then.
    let stats = cev.until("stats");
    assert!(stats["sent"].as_u64().unwrap() >= 200, "{stats}");
    drop(c.stdin.take()); // hang up
    let heard_stats = lev.until("stats");
    assert!(
        heard_stats["received"].as_u64().unwrap() >= 200,
        "{heard_stats}"
    );
    assert_eq!(heard_stats["malformed"], 0);
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);
    let heard = extrasafe_net::media::wav::read(&output).unwrap();
    let (lag, whole) = extrasafe_net::media::pipeline::align(&voice48, &heard, 48_000 / 2);
    assert!(lag < 48 * 150, "lag {lag}");
    // Half a second at a time, each found within 100 ms of where the last one ended: on a
    // loaded machine a stalled process may slip time, which a single alignment counts
    // against the content.
    let (windows, _) = follow(&voice48, &heard, lag, 24_000, 4_800);
    let corr = median(&windows);
    assert!(
        corr > 0.6,
        "correlation {corr} (windows {windows:.2?}; {whole:.2} with one alignment)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn receiver(dir: &std::path::Path, extra: &[&str]) -> (Proc, Events) {
    let mut c = bin()
        .args([
            "--ephemeral",
            "--json",
            "receive",
            "--bind",
            "127.0.0.1:0",
            "--once",
        ])
        .args(["--dir", dir.to_str().unwrap()])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ev = Events::new(c.stdout.take().unwrap());
    (Proc(Some(c)), ev)
}

#[test]
fn hidden_names_are_taken_only_with_allow_hidden_files() {
    let dir = tmp("hidden");
    let (src, dest) = (dir.join("src"), dir.join("dest"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(src.join(".profile"), b"export EVIL=1").unwrap();
    let send = |ticket: &str| {
        bin()
            .args(["--ephemeral", "--json", "send", "--to", ticket])
            .arg(src.join(".profile"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // By default the offer is declined as it arrives, and nothing is written.
    let (r, rev) = receiver(&dest, &["--accept-files", "anyone:1G"]);
    let ticket = rev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let out = send(&ticket);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("declined"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    drop(r);
    // With the flag, it arrives (and only readable by its owner).
    let (r, rev) = receiver(
        &dest,
        &["--accept-files", "anyone:1G", "--allow-hidden-files"],
    );
    let ticket = rev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let out = send(&ticket);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(wait(r), 0);
    let got = dest.join(".profile");
    assert_eq!(std::fs::read(&got).unwrap(), b"export EVIL=1");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&got).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn send_and_receive_a_folder() {
    let dir = tmp("send");
    let (src, dest) = (dir.join("src"), dir.join("dest"));
    std::fs::create_dir_all(src.join("photos/2026")).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.join("photos/2026/big.bin"), &big).unwrap();
    std::fs::write(src.join("photos/a.txt"), b"a").unwrap();
    std::fs::write(src.join("notes.txt"), b"notes").unwrap();
    let (r, rev) = receiver(&dest, &["--accept-files", "anyone:1G"]);
    let ticket = rev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let mut s = bin()
        .args(["--ephemeral", "--json", "send", "--to", &ticket])
        .arg(src.join("photos"))
        .arg(src.join("notes.txt"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let sev = Events::new(s.stdout.take().unwrap());
    let s = Proc(Some(s));
    let offered = rev.until("files_offered");
    assert_eq!(offered["files"], 3);
    let got = rev.until("transfer_done");
    assert_eq!(got["outcome"], "done", "{got}");
    let sent = sev.until("transfer_done");
    assert_eq!(sent["outcome"], "done", "{sent}");
    assert_eq!(wait(s), 0);
    assert_eq!(wait(r), 0);
    assert_eq!(
        std::fs::read(dest.join("photos/2026/big.bin")).unwrap(),
        big
    );
    assert_eq!(std::fs::read(dest.join("photos/a.txt")).unwrap(), b"a");
    assert_eq!(std::fs::read(dest.join("notes.txt")).unwrap(), b"notes");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_offer_is_asked_and_declining_writes_nothing() {
    let dir = tmp("decline");
    let dest = dir.join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dir.join("secret.txt"), b"x").unwrap();
    // Started in the folder with `--dir .`: the offer names the real folder, not ".".
    let mut r = bin()
        .current_dir(&dest)
        .args([
            "--ephemeral",
            "--json",
            "receive",
            "--bind",
            "127.0.0.1:0",
            "--once",
        ])
        .args(["--dir", "."])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rev = Events::new(r.stdout.take().unwrap());
    let mut r = Proc(Some(r));
    let ticket = rev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let s = bin()
        .args(["--ephemeral", "--json", "send", "--to", &ticket])
        .arg(dir.join("secret.txt"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let s = Proc(Some(s));
    let offered = rev.until("files_offered");
    assert_eq!(offered["names"][0], "secret.txt");
    assert_eq!(offered["folder"], dest.to_str().unwrap(), "{offered}");
    // Not a contact: named by the whole peer ID, not a short form.
    assert_eq!(offered["contact"], Value::Null);
    r.stdin.as_mut().unwrap().write_all(b"/decline\n").unwrap();
    rev.until("files_declined");
    assert_eq!(wait(s), 5, "a declined send exits 5");
    assert_eq!(wait(r), 0);
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// During a call, `/send PATH` in the chat input offers a file; the other side's policy takes
/// it; the call goes on (chat after the transfer) until hung up.
#[test]
fn send_a_file_during_a_call() {
    let dir = tmp("insend");
    let dest = dir.join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dir.join("minutes.txt"), b"what we agreed").unwrap();
    let (l, lev) = listener(&[
        "--accept",
        "anyone",
        "--no-audio",
        "--accept-files",
        "anyone:1M",
        "--dir",
        dest.to_str().unwrap(),
    ]);
    let ticket = lev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut c, cev) = caller(&ticket, &["--ephemeral"], &["--no-audio"]);
    cev.until("connected");
    let stdin = c.stdin.as_mut().unwrap();
    writeln!(stdin, "/send {}", dir.join("minutes.txt").display()).unwrap();
    let done = cev.until("transfer_done");
    assert_eq!(done["outcome"], "done", "{done}");
    assert_eq!(lev.until("transfer_done")["outcome"], "done");
    assert_eq!(
        std::fs::read(dest.join("minutes.txt")).unwrap(),
        b"what we agreed"
    );
    writeln!(stdin, "thanks").unwrap();
    assert_eq!(lev.until("chat")["text"], "thanks");
    drop(c.stdin.take());
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn contacts_are_kept_sealed_and_called_by_name() {
    let dir = tmp("contacts");
    let data = dir.to_str().unwrap().to_string();
    let contact = |args: &[&str]| {
        bin()
            .args(["--data-dir", &data, "--json", "contact"])
            .args(args)
            .output()
            .unwrap()
    };
    let (l, lev) = listener(&["--accept", "anyone"]);
    let listening = lev.until("listening");
    let ticket = listening["ticket"].as_str().unwrap().to_string();
    let peer = listening["peer_id"].as_str().unwrap().to_string();

    let out = contact(&["add", &ticket, "--name", "Alice"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let saved: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(saved["new"], true);
    assert_eq!(saved["peer_id"], peer.as_str());
    // A second contact by peer ID alone, and a clash of names.
    let other = bin()
        .args(["--ephemeral", "--json", "id"])
        .output()
        .unwrap();
    let other: Value = serde_json::from_slice(&other.stdout).unwrap();
    let other_id = other["peer_id"].as_str().unwrap().to_string();
    assert_eq!(
        contact(&["add", &other_id, "--name", "bob"]).status.code(),
        Some(0)
    );
    let clash = contact(&["add", &other_id, "--name", "alice"]);
    assert_eq!(clash.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&clash.stdout).contains("Another contact is already called Alice.")
    );

    // On disk: no name, no peer ID, no address in the clear.
    let file = std::fs::read(dir.join("contacts.bin")).unwrap();
    let peer_bytes = peer.parse::<extrasafe_core::PeerId>().unwrap();
    assert!(!file.windows(5).any(|w| w == b"Alice"));
    assert!(!file.windows(32).any(|w| w == peer_bytes.as_bytes()));
    assert!(!file.windows(9).any(|w| w == b"127.0.0.1"));

    // Called by name (any case), through the addresses of the ticket that was added.
    // Never the DHT or the LAN from a test on the host: the ticket's address must do.
    let (mut c, cev) = caller(
        "alice",
        &["--data-dir", &data, "--no-dht", "--no-lan"],
        &["--no-audio"],
    );
    let calling = cev.until("calling");
    assert_eq!(calling["contact"], "Alice");
    assert_eq!(calling["peer_id"], peer.as_str());
    cev.until("connected");
    lev.until("connected");
    drop(c.stdin.take());
    cev.until("ended");
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);

    let out = contact(&["verify", "ALICE"]);
    assert_eq!(out.status.code(), Some(0));
    let list: Value = serde_json::from_slice(&contact(&["list"]).stdout).unwrap();
    let list = list["contacts"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "Alice");
    assert_eq!(list[0]["verified"], true);
    assert_eq!(list[1]["verified"], false);
    assert!(list[1]["addresses"].as_array().unwrap().is_empty());

    // A contact without an address while staying off the DHT, an unknown name: a sentence
    // and exit 2.
    let out = bin()
        .args(["--data-dir", &data, "--no-dht", "--no-lan", "call", "bob"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No address is known for bob"));
    // Removing a contact renews our inbox chain (the removed one holds the old).
    let store = extrasafe_net::IdentityStore::at(&dir);
    let me = store.load(None).unwrap();
    let key = extrasafe_core::inbox::ChainFileKey::of(&me);
    let before = store
        .read_own_inbox(&key)
        .unwrap()
        .expect("made by listen and call");
    let out = contact(&["remove", "alice"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("contact_removed"));
    let after = store.read_own_inbox(&key).unwrap().unwrap();
    assert!(after.since_ms > before.since_ms);
    assert_ne!(
        after
            .chain
            .at(before.chain.epoch().max(after.chain.epoch())),
        before
            .chain
            .at(before.chain.epoch().max(after.chain.epoch()))
    );
    let out = bin()
        .args(["--data-dir", &data, "call", "alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not one of your contacts"));

    // Another identity cannot open the list.
    std::fs::remove_file(dir.join("identity.key")).unwrap();
    let out = contact(&["list"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not written with this identity"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `call bobb` with a contact named bob: the answer names the contact it probably meant,
/// and says nothing of a damaged ticket (it never was one).
#[test]
fn a_mistyped_contact_name_suggests_the_closest_one() {
    let (a, b) = (tmp("typo-a"), tmp("typo-b"));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    add_contact(a, &peer_id_in(b), "bob");
    let out = bin()
        .args(["--data-dir", a, "call", "bobb"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("Did you mean \"bob\"?"), "{err}");
    assert!(!err.contains("ticket"), "{err}");
    // Far from every name: no guess.
    let out = bin()
        .args(["--data-dir", a, "call", "zoe"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("Did you mean"), "{err}");
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}

/// Adding a peer who is already a contact under another name changes nothing unless asked
/// to (it renamed them quietly); --rename renames.
#[test]
fn re_adding_a_known_peer_under_another_name_asks_first() {
    let (a, b) = (tmp("readd-a"), tmp("readd-b"));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let bob = peer_id_in(b);
    add_contact(a, &bob, "bob");
    let again = |extra: &[&str]| {
        bin()
            .args([
                "--data-dir",
                a,
                "--json",
                "contact",
                "add",
                &bob,
                "--name",
                "alice",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = again(&[]);
    // With --json the sentence comes as an error event on stdout.
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err["event"], "error");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("already your contact \"bob\"") && message.contains("--rename"),
        "{err}"
    );
    let names = |data: &str| -> Vec<String> {
        let out = bin()
            .args(["--data-dir", data, "--json", "contact", "list"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(a), ["bob"]);
    let out = again(&["--rename"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(names(a), ["alice"]);
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}

/// Each subcommand's help shows its own options first; the ten options every command shares
/// (identity, output, network) come after, under headings of their own.
#[test]
fn each_subcommands_help_shows_its_own_options_first() {
    for (sub, own) in [
        ("call", "--ring-timeout"),
        ("listen", "--accept"),
        ("send", "--to"),
        ("contact", "add"),
    ] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        let at = |needle: &str| {
            help.find(needle)
                .unwrap_or_else(|| panic!("{sub} --help lacks {needle}:\n{help}"))
        };
        let (own, identity, network) = (
            at(own),
            at("Identity and output (any command):"),
            at("Network (any command):"),
        );
        assert!(own < identity && identity < network, "{sub}:\n{help}");
        assert!(
            at("--dht-bootstrap") > network && at("--data-dir") > identity,
            "{sub}"
        );
    }
}

/// The peer ID of the identity in `data` (made if there is none).
fn peer_id_in(data: &str) -> String {
    let out = bin()
        .args(["--data-dir", data, "--json", "id"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["peer_id"].as_str().unwrap().to_string()
}

/// Adds `other` (a peer ID) to the contact list in `data` as `name`.
fn add_contact(data: &str, other: &str, name: &str) {
    let out = bin()
        .args(["--data-dir", data, "contact", "add", other, "--name", name])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// `listen --once --accept anyone` for `data` on 127.0.0.1, found through the DHT at
/// `bootstrap` only (`--no-lan`: mDNS would multicast on the host's own network).
fn dht_listener(data: &str, bootstrap: &str) -> (Proc, Events) {
    let mut l = bin()
        .args(["--data-dir", data, "--json", "--no-lan"])
        .args(["--dht-bootstrap", bootstrap])
        .args([
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--once",
            "--accept",
            "anyone",
        ])
        .args(["--no-audio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ev = Events::new(l.stdout.take().unwrap());
    (Proc(Some(l)), ev)
}

/// Calls the contact `name` from `data` through the DHT at `bootstrap` until the call is
/// secured. Not every DHT node may hold the listener's record yet: a caller who finds none
/// is told so (exit 3) and tries again, for up to 30 s.
fn call_by_name(data: &str, bootstrap: &str, name: &str) -> (Proc, Events) {
    let started = std::time::Instant::now();
    loop {
        let (c, cev) = caller(
            name,
            &["--data-dir", data, "--no-lan", "--dht-bootstrap", bootstrap],
            &["--no-audio", "--bind", "127.0.0.1:0"],
        );
        assert_eq!(cev.until("calling")["contact"], name);
        cev.until("dht_lookup");
        match cev.0.recv_timeout(Duration::from_secs(20)) {
            Ok(v) if v["event"] == "secured" => return (c, cev),
            other => {
                assert_eq!(wait(c), 3, "{other:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "never reached {name}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// A contact added in another terminal while `listen` runs can call by name at once: the
/// listener notices the list changed, lets the new contact in and publishes records for it.
#[test]
fn a_contact_added_while_listening_can_call_by_name_at_once() {
    let testnet = mainline::Testnet::builder(8).build().unwrap();
    let bootstrap = testnet.bootstrap.join(",");
    let (alice_dir, bob_dir) = (tmp("added-alice"), tmp("added-bob"));
    let (alice_data, bob_data) = (
        alice_dir.to_str().unwrap().to_string(),
        bob_dir.to_str().unwrap().to_string(),
    );
    let (alice_id, bob_id) = (peer_id_in(&alice_data), peer_id_in(&bob_data));
    add_contact(&alice_data, &bob_id, "bob");
    // Bob listens with no contacts at all: nothing is announced or published yet.
    let (mut l, lev) = dht_listener(&bob_data, &bootstrap);
    lev.until("listening");
    // Then he adds Alice from another terminal.
    add_contact(&bob_data, &alice_id, "alice");
    assert_eq!(lev.until("contacts_changed")["contacts"], 1);
    assert_eq!(lev.until("reachable")["contacts"], 1);
    let (mut c, cev) = call_by_name(&alice_data, &bootstrap, "bob");
    cev.until("connected");
    assert_eq!(lev.until("connected")["peer_id"], alice_id.as_str());
    // A call with the new contact replaces the pair's root on both sides, as with any
    // contact (the listener learned its first root when it was added).
    let root_of = |data: &str| {
        let store = extrasafe_net::IdentityStore::at(data);
        let me = store.load(None).unwrap();
        store.load_contacts(&me).unwrap().list()[0].roots.clone()
    };
    let mut waited = 0;
    while root_of(&bob_data).is_none() || root_of(&alice_data).is_none() {
        assert!(waited < 200, "the roots were never replaced");
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    assert_eq!(
        root_of(&bob_data).unwrap().current(),
        root_of(&alice_data).unwrap().current()
    );
    writeln!(l.stdin.as_mut().unwrap(), "/hangup").unwrap();
    assert_eq!(wait(l), 0);
    drop(c.stdin.take());
    assert_eq!(wait(c), 0);
    let _ = std::fs::remove_dir_all(&alice_dir);
    let _ = std::fs::remove_dir_all(&bob_dir);
}

#[test]
fn a_contact_with_no_address_is_called_by_name_through_a_local_dht() {
    // A Mainline testnet on 127.0.0.1: nothing goes to the public DHT.
    let testnet = mainline::Testnet::builder(8).build().unwrap();
    let bootstrap = testnet.bootstrap.join(",");
    let (alice_dir, bob_dir) = (tmp("dht-alice"), tmp("dht-bob"));
    let (alice_data, bob_data) = (
        alice_dir.to_str().unwrap().to_string(),
        bob_dir.to_str().unwrap().to_string(),
    );
    let (alice_id, bob_id) = (peer_id_in(&alice_data), peer_id_in(&bob_data));
    // Each knows only the other's peer ID: no ticket, no address.
    add_contact(&alice_data, &bob_id, "bob");
    add_contact(&bob_data, &alice_id, "alice");
    let (mut l, lev) = dht_listener(&bob_data, &bootstrap);
    lev.until("listening");
    let reachable = lev.until("reachable");
    assert_eq!(reachable["contacts"], 1);
    // Every testnet node is on 127.0.0.1, one network: one vote, which does not decide our
    // address or mapping (`core::observe`; tests/observe.rs in the net crate has observers
    // in several networks).
    assert_eq!(reachable["nat"], "unknown");
    let (mut c, cev) = call_by_name(&alice_data, &bootstrap, "bob");
    cev.until("connected");
    let connected = lev.until("connected");
    assert_eq!(connected["peer_id"], alice_id.as_str());
    writeln!(c.stdin.as_mut().unwrap(), "found you").unwrap();
    assert_eq!(lev.until("chat")["text"], "found you");
    // A file offered by a contact names the contact.
    let note = alice_dir.join("note.txt");
    std::fs::write(&note, b"hello").unwrap();
    writeln!(c.stdin.as_mut().unwrap(), "/send {}", note.display()).unwrap();
    let offered = lev.until("files_offered");
    assert_eq!(offered["contact"], "alice", "{offered}");
    // During the call both replace the root of their records (forward secrecy): each
    // contact file holds the same new root, which is not the pair's key-exchange secret.
    let open = |data: &str| {
        let store = extrasafe_net::IdentityStore::at(data);
        let me = store.load(None).unwrap();
        let book = store.load_contacts(&me).unwrap();
        (me, book)
    };
    let root_of = |data: &str| {
        let (me, book) = open(data);
        let c = book.list()[0].clone();
        (me, c.peer, c.roots)
    };
    let mut waited = 0;
    while root_of(&bob_data).2.is_none() || root_of(&alice_data).2.is_none() {
        assert!(waited < 200, "the roots were never replaced");
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    writeln!(l.stdin.as_mut().unwrap(), "/hangup").unwrap();
    assert_eq!(wait(l), 0);
    drop(c.stdin.take());
    assert_eq!(wait(c), 0);
    let (alice_me, bob_peer, alice_roots) = root_of(&alice_data);
    let (_, _, bob_roots) = root_of(&bob_data);
    let (alice_roots, bob_roots) = (alice_roots.unwrap(), bob_roots.unwrap());
    assert_eq!(alice_roots.current(), bob_roots.current());
    let first = extrasafe_net::core::rendezvous::PairSecret::new(&alice_me, &bob_peer).unwrap();
    assert_ne!(alice_roots.current(), first.initial_root());
    let _ = std::fs::remove_dir_all(&alice_dir);
    let _ = std::fs::remove_dir_all(&bob_dir);
}
