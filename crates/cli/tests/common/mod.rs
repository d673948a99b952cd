//! Helpers shared by the CLI tests: the binary, scratch folders, JSON events with timeouts,
//! and child processes that never outlive a failed test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The binary, isolated from the machine's sound server (a test that wants devices points
/// PULSE_SERVER at its own).
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_extrasafe"));
    c.env_remove("EXTRASAFE_PASSPHRASE")
        .env("RUST_LOG", "warn")
        .env(
            "PULSE_SERVER",
            "unix:/nonexistent/extrasafe-test-no-sound-server",
        );
    c
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("es-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Reads JSON lines from a child's stdout on a thread, so tests can wait with a timeout.
pub struct Events(pub mpsc::Receiver<Value>);

impl Events {
    pub fn new(out: ChildStdout) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Self(rx)
    }

    /// The next event, whatever it is.
    pub fn until_any(&self) -> Value {
        self.0
            .recv_timeout(Duration::from_secs(10))
            .expect("no event within 10 s")
    }

    /// The next `event`, skipping others; fails after 10 s without any event, or 30 s in all
    /// (other events arriving meanwhile, such as stats lines, do not make it wait forever).
    pub fn until(&self, event: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline
                .saturating_duration_since(std::time::Instant::now())
                .min(Duration::from_secs(10));
            let v = self
                .0
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `{event}` event in time"));
            if v["event"] == event {
                return v;
            }
        }
    }
}

/// A child process that is killed if the test fails before waiting for it, so no process
/// outlives the test holding its output pipe open.
pub struct Proc(pub Option<Child>);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("process already waited for")
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("process already waited for")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn wait(mut p: Proc) -> i32 {
    let mut child = p.0.take().expect("process already waited for");
    for _ in 0..200 {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("process did not exit within 10 s");
}

/// Follows `voice` through `heard` window by window (`window` samples each), starting at
/// `lag` and letting each window be found within `slack` samples of where the previous one
/// ended: a stalled process may lose or insert a little time, which shifts what follows but
/// is not what a test of the content is about. Returns each window's correlation and start.
pub fn follow(
    voice: &[i16],
    heard: &[i16],
    lag: usize,
    window: usize,
    slack: usize,
) -> (Vec<f64>, Vec<usize>) {
    let mut corrs = Vec::new();
    let mut starts = Vec::new();
    let mut at = lag;
    for w in 0..voice.len() / window {
        let reference = &voice[w * window..(w + 1) * window];
        let from = at.saturating_sub(slack);
        let Some(got) = heard.get(from..(from + window + 2 * slack).min(heard.len())) else {
            break;
        };
        if got.len() < window {
            break;
        }
        let (l, c) = extrasafe_net::media::pipeline::align(reference, got, got.len() - window);
        // A window of near silence tells nothing about where the next one is.
        if c > 0.5 {
            at = from + l;
        }
        if at + window > heard.len() {
            break;
        }
        starts.push(at);
        corrs.push(c);
        at += window;
    }
    (corrs, starts)
}

/// The median of `values` (NaN if empty).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
