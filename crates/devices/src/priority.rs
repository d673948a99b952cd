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
//! Only what the process may do on its own is used: the `CAP_SYS_NICE` capability or a
//! `RLIMIT_NICE` limit that allows it (set by `/etc/security/limits.conf` or a service
//! manager). Without either the priority stays as it was, and that is not an error.

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
    /// This system has no notion of it (not a Unix).
    Unsupported,
}

/// Raises the calling thread's scheduling priority as far towards [`AUDIO_NICE`] as the
/// process is allowed to, and says what happened. Never fails: audio at the default
/// priority still works on a machine that is not overloaded.
pub fn raise_for_audio() -> Boost {
    imp::raise(AUDIO_NICE)
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
