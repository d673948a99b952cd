//! Asking RealtimeKit for priority, against a stand-in for the rtkit daemon on a D-Bus bus of
//! the test's own (`dbus-daemon`; required when `EXTRASAFE_DEVICE_TEST=required`, as in CI).
//! The stand-in speaks rtkit's interface: the `MinNiceLevel` property and
//! `MakeThreadHighPriority(thread, priority)`, which it carries out when it may (as root).

#![cfg(target_os = "linux")]

use std::io::BufRead;
use std::sync::{Arc, Mutex};

use extrasafe_devices::priority::{current_nice, raise_via_rtkit_at, RtkitError};

struct Bus(std::process::Child, String);

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private bus, or `None` (and the test is skipped) where dbus-daemon is missing.
fn bus() -> Option<Bus> {
    let child = std::process::Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("EXTRASAFE_DEVICE_TEST").as_deref() == Ok("required") {
                panic!("dbus-daemon is required here: {e}");
            }
            eprintln!("skipped: no dbus-daemon ({e})");
            return None;
        }
    };
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Some(Bus(child, line.trim().to_string()))
}

#[derive(Clone, Default)]
struct Rtkit {
    asked: Arc<Mutex<Vec<(u64, i32)>>>,
}

#[zbus::interface(name = "org.freedesktop.RealtimeKit1")]
impl Rtkit {
    fn make_thread_high_priority(&self, thread: u64, priority: i32) -> zbus::fdo::Result<()> {
        self.asked.lock().unwrap().push((thread, priority));
        // What rtkit does for a thread of the caller: set its nice value. Allowed to root;
        // elsewhere the request is only recorded.
        if let Some(pid) = rustix::process::Pid::from_raw(thread as i32) {
            let _ = rustix::process::setpriority_process(Some(pid), priority);
        }
        Ok(())
    }

    #[zbus(property)]
    fn min_nice_level(&self) -> i32 {
        -5
    }
}

#[test]
fn rtkit_is_asked_for_the_calling_thread_within_its_floor() {
    let Some(bus) = bus() else { return };
    let rtkit = Rtkit::default();
    let _service = zbus::blocking::connection::Builder::address(bus.1.as_str())
        .unwrap()
        .name("org.freedesktop.RealtimeKit1")
        .unwrap()
        .serve_at("/org/freedesktop/RealtimeKit1", rtkit.clone())
        .unwrap()
        .build()
        .unwrap();
    let address = bus.1.clone();
    // A thread of its own, so the harness keeps its priority.
    let (asked, tid, before, after) = std::thread::spawn(move || {
        let before = current_nice().unwrap();
        let asked = raise_via_rtkit_at(&address);
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u64;
        (asked, tid, before, current_nice().unwrap())
    })
    .join()
    .unwrap();
    // rtkit grants no lower than its MinNiceLevel (-5 here): that is what is asked, for the
    // thread that asked.
    assert_eq!(asked.unwrap(), -5);
    assert_eq!(*rtkit.asked.lock().unwrap(), vec![(tid, -5)]);
    if rustix::process::geteuid().is_root() {
        assert_eq!(after, -5, "from {before}");
    }
}

#[test]
fn without_rtkit_on_the_bus_the_answer_is_a_refusal_not_a_wait() {
    let Some(bus) = bus() else { return };
    let address = bus.1.clone();
    let asked = std::thread::spawn(move || raise_via_rtkit_at(&address))
        .join()
        .unwrap();
    assert!(matches!(asked, Err(RtkitError::Refused(_))), "{asked:?}");
    // And with no bus at all.
    let nowhere = raise_via_rtkit_at("unix:path=/nonexistent/extrasafe-test-bus");
    assert!(
        matches!(nowhere, Err(RtkitError::Refused(_))),
        "{nowhere:?}"
    );
}
