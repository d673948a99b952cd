//! Video through the `extrasafe` binary: the test picture sent and written to a Y4M file,
//! raw I420 pictures from a pipe, the X11 screen (under a private Xvfb), and turning video
//! off mid-call.

use std::io::{BufReader, Write};
use std::process::Stdio;

use extrasafe_net::video_media::{pattern, y4m};
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
            "--accept",
            "anyone",
            "--no-audio",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ev = Events::new(c.stdout.take().unwrap());
    (Proc(Some(c)), ev)
}

fn caller(ticket: &str, args: &[&str], env: &[(&str, &str)]) -> (Proc, Events) {
    let mut c = bin()
        .args(["--ephemeral", "--json", "call", ticket, "--no-audio"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ev = Events::new(c.stdout.take().unwrap());
    (Proc(Some(c)), ev)
}

fn ticket(ev: &Events) -> String {
    ev.until("listening")["ticket"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every picture of a received test-picture Y4M: (code index, PSNR against its source).
fn check_file(path: &std::path::Path, w: u32, h: u32) -> Vec<(Option<u32>, f64)> {
    let mut r = BufReader::new(std::fs::File::open(path).unwrap());
    let head = y4m::read_header(&mut r).unwrap();
    assert_eq!((head.width, head.height), (w, h));
    let mut out = Vec::new();
    while let Some(f) = y4m::read_frame(&mut r, &head).unwrap() {
        out.push(pattern::check_received(&f, w, h).map_or((None, 0.0), |(i, _, p)| (Some(i), p)));
    }
    out
}

#[test]
fn test_picture_in_a_y4m_file_out_and_video_turned_off_mid_call() {
    let dir = tmp("video");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("seen.y4m");
    let (l, lev) = listener(&["--video-out", out.to_str().unwrap()]);
    let t = ticket(&lev);
    let (mut c, cev) = caller(&t, &["--video", "test", "--video-size", "320x180"], &[]);
    cev.until("connected");
    let first = cev.until("video_stats");
    assert_eq!(first["sending"], true, "{first}");
    assert_eq!(first["send_size"], "320x180", "{first}");
    assert!(first["send_fps"].as_f64().unwrap() > 15.0, "{first}");
    let seen = lev.until("video_stats");
    assert_eq!(seen["recv_size"], "320x180", "{seen}");
    assert!(seen["recv_fps"].as_f64().unwrap() > 15.0, "{seen}");
    assert!(seen["recv_bps"].as_u64().unwrap() > 50_000, "{seen}");
    // Camera off: nothing more is sent.
    writeln!(c.stdin.as_mut().unwrap(), "/video").unwrap();
    let off = cev.until("video_stats");
    assert_eq!(off["sending"], false, "{off}");
    let shown_off = lev.until("video_stats")["shown"].as_u64().unwrap();
    let still = lev.until("video_stats")["shown"].as_u64().unwrap();
    assert_eq!(shown_off, still, "pictures kept coming with video off");
    drop(c.stdin.take());
    let last = lev.until("video_stats");
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);
    let pictures = check_file(&out, 320, 180);
    assert!(
        pictures.len() >= 100,
        "{} pictures in the file",
        pictures.len()
    );
    // Frame k of the file is what was on screen at the sender's frame k (frozen stretches
    // repeat); every picture is a clean copy of a source picture.
    let mut prev = 0;
    for (k, (index, psnr)) in pictures.iter().enumerate() {
        let i = index.unwrap_or_else(|| panic!("picture {k} unreadable"));
        assert!(
            i >= prev && i as usize <= k + 100,
            "picture {k} shows frame {i}"
        );
        assert!(*psnr > 30.0, "picture {k}: {psnr:.1} dB");
        prev = i;
    }
    assert!(last["shown"].as_u64().unwrap() >= 100, "{last}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn raw_i420_from_a_pipe_is_sent_until_the_pipe_ends() {
    let dir = tmp("video-raw");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = mkfifo(&dir.join("pictures"));
    let out = dir.join("seen.y4m");
    let (l, lev) = listener(&["--video-out", out.to_str().unwrap()]);
    let t = ticket(&lev);
    // What `ffmpeg … -f rawvideo -pix_fmt yuv420p` would write: 90 pictures, then the end.
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            for i in 0..90 {
                f.write_all(&pattern::draw(320, 240, i, 5000 + i).data)
                    .unwrap();
            }
        })
    };
    let (mut c, cev) = caller(
        &t,
        &["--video", fifo.to_str().unwrap(), "--video-size", "320x240"],
        &[],
    );
    cev.until("connected");
    writer.join().unwrap();
    // 90 pictures at 30 fps: over after 3 s; the stats at 5 s say so.
    let st = cev.until("video_stats");
    assert_eq!(st["sending"], false, "{st}");
    drop(c.stdin.take());
    let seen = lev.until("video_stats");
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);
    let pictures = check_file(&out, 320, 240);
    let indices: Vec<u32> = pictures.iter().filter_map(|p| p.0).collect();
    assert!(pictures.iter().all(|p| p.1 > 30.0), "a damaged picture");
    assert!(
        indices.len() >= 80 && *indices.last().unwrap() >= 85,
        "{indices:?} {seen}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_screen_is_shared_from_xvfb() {
    let child = std::process::Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "640x480x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("EXTRASAFE_REQUIRE_XVFB").is_none(),
                "no Xvfb: {e}"
            );
            eprintln!("skipped: no Xvfb ({e})");
            return;
        }
    };
    let mut x = Proc(Some(child));
    let mut num = String::new();
    let mut b = [0u8; 1];
    let mut so = x.stdout.take().unwrap();
    while std::io::Read::read(&mut so, &mut b).unwrap() == 1 && b[0] != b'\n' {
        num.push(b[0] as char);
    }
    let display = format!(":{}", num.trim());
    let dir = tmp("video-screen");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("seen.y4m");
    let (l, lev) = listener(&["--video-out", out.to_str().unwrap()]);
    let t = ticket(&lev);
    let (mut c, cev) = caller(&t, &["--video", "screen"], &[("DISPLAY", display.as_str())]);
    cev.until("connected");
    let seen: Value = lev.until("video_stats");
    assert_eq!(seen["recv_size"], "640x480", "{seen}");
    assert!(seen["shown"].as_u64().unwrap() > 10, "{seen}");
    drop(c.stdin.take());
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);
    // A bad display is a sentence before dialling, exit 2.
    let s = bin()
        .args(["--ephemeral", "call", &t, "--video", "screen"])
        .env("DISPLAY", ":9999")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(s.status.code(), Some(2));
    let err = String::from_utf8_lossy(&s.stderr);
    assert!(err.contains("DISPLAY"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_video_pipe_nobody_writes_is_reported_and_the_call_goes_on() {
    let dir = tmp("video-nowriter");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = mkfifo(&dir.join("pictures"));
    let (l, lev) = listener(&[]);
    let t = ticket(&lev);
    let (mut c, cev) = caller(
        &t,
        &["--video", fifo.to_str().unwrap(), "--video-size", "320x240"],
        &[],
    );
    cev.until("connected");
    let w = cev.until("warning");
    assert!(
        w["message"].as_str().unwrap().contains("Nothing writes"),
        "{w}"
    );
    writeln!(c.stdin.as_mut().unwrap(), "still here").unwrap();
    assert_eq!(lev.until("chat")["text"], "still here");
    drop(c.stdin.take());
    assert_eq!(wait(c), 0);
    assert_eq!(wait(l), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A named pipe at `path`.
fn mkfifo(path: &std::path::Path) -> std::path::PathBuf {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
    path.to_path_buf()
}
