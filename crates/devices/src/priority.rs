//! Scheduling priority for the threads that carry a call's audio.
//!
//! A call's audio must be handled every 20 ms. On a busy machine a thread at the default
//! priority can wait longer than the sound server's small buffers last; the speaker then
//! plays a gap and the microphone's queue throws audio away. Measured with the device test
//! (debug build) while ten busy loops ran on two cores: at the default priority, time slips
//! of 10 to 20 ms and PESQ 2.8-3.5 in five runs out of eight; with the call raised to nice
//! -10 (and the tools that stand in for the sound card too), six runs out of six passed with
//! PESQ 3.5-4.2, the remaining slips being single 20 ms frames in the first seconds.
//!
//! The raise is asked for the calling thread only (on Linux a nice value belongs to a thread);
//! threads it starts afterwards inherit it. So the caller raises the thread that will start
//! the call's runtime and the sound client, before it starts them, and leaves the rest of the
//! program (a window's drawing, say) alone.
//!
//! First what the process may do on its own: the `CAP_SYS_NICE` capability or a
//! `RLIMIT_NICE` limit that allows it (set by `/etc/security/limits.conf` or a service
//! manager). On a desktop neither is usual; there the system's RealtimeKit daemon (rtkit,
//! which PulseAudio and PipeWire use for the same purpose) is asked over D-Bus to raise the
//! thread, as far as it allows. Without any of them the priority stays as it was, and that
//! is not an error.

/// The nice value asked for: PulseAudio runs its own main thread at -11.
pub const AUDIO_NICE: i32 = -10;

/// What [`raise_for_audio`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boost {
    /// The thread's nice value was lowered (raised in priority) to this.
    Raised {
        /// The new nice value.
        nice: i32,
    },
    /// The thread already ran at this nice value or better.
    AlreadyHigh {
        /// The nice value it has.
        nice: i32,
    },
    /// The system did not allow a higher priority; the thread keeps this nice value.
    NotAllowed {
        /// The nice value it keeps.
        nice: i32,
    },
    /// RealtimeKit raised the thread's priority (the process could not itself) to this.
    RaisedByRtkit {
        /// The new nice value.
        nice: i32,
    },
    /// This system has no notion of it (not a Unix).
    Unsupported,
}

/// Raises the calling thread's scheduling priority as far towards [`AUDIO_NICE`] as the
/// process is allowed to, and says what happened. Never fails: audio at the default
/// priority still works on a machine that is not overloaded.
pub fn raise_for_audio() -> Boost {
    match imp::raise(AUDIO_NICE) {
        Boost::NotAllowed { nice } => match raise_via_rtkit() {
            Ok(asked) => match current_nice() {
                Some(now) if now < nice => Boost::RaisedByRtkit {
                    nice: now.max(asked),
                },
                _ => Boost::NotAllowed { nice },
            },
            Err(_) => Boost::NotAllowed { nice },
        },
        other => other,
    }
}

/// Why RealtimeKit did not raise the thread.
#[derive(Debug, thiserror::Error)]
pub enum RtkitError {
    /// No system bus, no rtkit on it, or rtkit said no (its words).
    #[error("RealtimeKit: {0}")]
    Refused(String),
    /// The bus did not answer in time.
    #[error("RealtimeKit did not answer within a second")]
    Timeout,
    /// Not a Linux system.
    #[error("RealtimeKit exists on Linux only")]
    Unsupported,
}

/// How long a caller waits for the bus and rtkit: a call must not wait on a bus that hangs.
const RTKIT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks RealtimeKit (`org.freedesktop.RealtimeKit1` on the system bus) to raise the calling
/// thread to [`AUDIO_NICE`], or to the lowest nice value it allows if that is higher; returns
/// the value asked for. The exchange runs on a helper thread (the calling thread is named by
/// its ID), so nothing here blocks for more than a second.
pub fn raise_via_rtkit() -> Result<i32, RtkitError> {
    rtkit_on(None)
}

/// [`raise_via_rtkit`] with rtkit on the bus at `address` (tests run a bus of their own).
#[doc(hidden)]
pub fn raise_via_rtkit_at(address: &str) -> Result<i32, RtkitError> {
    rtkit_on(Some(address.to_string()))
}

fn rtkit_on(address: Option<String>) -> Result<i32, RtkitError> {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u64;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("rtkit".into())
            .spawn(move || {
                let _ = tx.send(rtkit::ask(address.as_deref(), tid, AUDIO_NICE));
            })
            .map_err(|e| RtkitError::Refused(e.to_string()))?;
        rx.recv_timeout(RTKIT_WAIT)
            .map_err(|_| RtkitError::Timeout)?
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = address;
        Err(RtkitError::Unsupported)
    }
}

#[cfg(target_os = "linux")]
mod rtkit {
    use super::RtkitError;

    const NAME: &str = "org.freedesktop.RealtimeKit1";
    const PATH: &str = "/org/freedesktop/RealtimeKit1";

    /// One exchange with rtkit on the system bus (`DBUS_SYSTEM_BUS_ADDRESS` if set), or on
    /// the bus at `address`.
    pub fn ask(address: Option<&str>, tid: u64, want: i32) -> Result<i32, RtkitError> {
        let refused = |e: zbus::Error| RtkitError::Refused(e.to_string());
        let bus = match address {
            Some(a) => zbus::blocking::connection::Builder::address(a)
                .and_then(|b| b.build())
                .map_err(refused)?,
            None => zbus::blocking::Connection::system().map_err(refused)?,
        };
        let rtkit = zbus::blocking::Proxy::new(&bus, NAME, PATH, NAME).map_err(refused)?;
        // The lowest nice value rtkit grants (its default is -15); ask no lower.
        let floor: i32 = rtkit.get_property("MinNiceLevel").unwrap_or(-15);
        let nice = want.max(floor);
        rtkit
            .call_method("MakeThreadHighPriority", &(tid, nice))
            .map_err(refused)?;
        Ok(nice)
    }
}

/// The calling thread's nice value, where the system has one.
pub fn current_nice() -> Option<i32> {
    imp::current()
}

#[cfg(unix)]
mod imp {
    use super::Boost;
    use rustix::process::{getpriority_process, getrlimit, setpriority_process, Resource};

    pub fn current() -> Option<i32> {
        getpriority_process(None).ok()
    }

    pub fn raise(want: i32) -> Boost {
        let Some(now) = current() else {
            return Boost::Unsupported;
        };
        if now <= want {
            return Boost::AlreadyHigh { nice: now };
        }
        if setpriority_process(None, want).is_ok() {
            return Boost::Raised { nice: want };
        }
        // Without the capability, RLIMIT_NICE says how far one may go: nice 20 - limit.
        let allowed = getrlimit(Resource::Nice)
            .current
            .map(|l| 20 - l.min(40) as i32)
            .unwrap_or(-20);
        let best = allowed.max(want);
        if best < now && setpriority_process(None, best).is_ok() {
            return Boost::Raised { nice: best };
        }
        Boost::NotAllowed { nice: now }
    }
}

#[cfg(not(unix))]
mod imp {
    use super::Boost;

    pub fn current() -> Option<i32> {
        None
    }

    pub fn raise(_want: i32) -> Boost {
        Boost::Unsupported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raise_is_what_it_says_and_threads_started_after_it_inherit_it() {
        let harness = current_nice();
        // Run in a thread of its own so the test harness's threads keep their priority.
        std::thread::spawn(|| {
            let before = current_nice().expect("a Unix has nice values");
            let boost = raise_for_audio();
            let after = current_nice().unwrap();
            match boost {
                Boost::Raised { nice } => {
                    assert_eq!(after, nice);
                    assert!(nice < before && nice >= AUDIO_NICE, "{before} -> {nice}");
                }
                Boost::AlreadyHigh { nice } => {
                    assert_eq!(after, nice);
                    assert!(nice <= AUDIO_NICE);
                }
                Boost::RaisedByRtkit { nice } => {
                    assert_eq!(after, nice);
                    assert!(nice < before, "{before} -> {nice}");
                }
                Boost::NotAllowed { nice } => assert_eq!((before, after), (nice, nice)),
                Boost::Unsupported => panic!("a Unix supports nice values"),
            }
            // A second call changes nothing more.
            assert!(matches!(
                raise_for_audio(),
                Boost::AlreadyHigh { .. } | Boost::NotAllowed { .. }
            ));
            let child = std::thread::spawn(current_nice).join().unwrap();
            assert_eq!(
                child,
                Some(after),
                "a thread started later inherits the raise"
            );
        })
        .join()
        .unwrap();
        // The harness's own thread was left alone.
        assert_eq!(current_nice(), harness);
    }
}
