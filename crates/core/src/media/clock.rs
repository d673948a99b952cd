//! The clock a call's audio runs on, free of I/O: how many 20 ms frames are due at a given
//! instant, so that a driver woken late (the machine was busy, the thread was not scheduled)
//! does the frames it owes instead of losing them.
//!
//! A frame not done is time lost twice: the microphone's queue overflows and throws audio
//! away, and the speaker (or the file a call is recorded to) gets fewer frames than the call
//! lasted. So after a stall the driver is told to do every frame it missed, at once, up to
//! [`MediaClock::MAX_BEHIND`]; a longer gap (a suspended laptop, a debugger) is not worth
//! replaying, and the clock moves on, counting what it dropped.

use std::time::{Duration, Instant};

/// Frames due, as told by [`MediaClock::due`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// Frames to do now, oldest first (0 when woken early).
    pub frames: u32,
    /// Frames given up because the driver was too far behind.
    pub dropped: u64,
}

/// Frame deadlines from a start instant: frame `n` is due at `start + n × frame`.
#[derive(Clone, Debug)]
pub struct MediaClock {
    start: Instant,
    frame: Duration,
    /// Frames done (or dropped) so far: the next one due is frame `next`.
    next: u64,
    /// Frames dropped so far.
    dropped: u64,
    /// Frames done later than their deadline plus one frame (after a stall).
    caught_up: u64,
}

impl MediaClock {
    /// At most this many frames are done in one go after a stall (400 ms of audio at 20 ms):
    /// more than a busy machine holds a thread back, less than a suspend.
    pub const MAX_BEHIND: u32 = 20;

    /// A clock whose first frame is due at `start`.
    pub fn new(start: Instant, frame: Duration) -> Self {
        assert!(!frame.is_zero(), "a frame lasts some time");
        Self {
            start,
            frame,
            next: 0,
            dropped: 0,
            caught_up: 0,
        }
    }

    /// When the next frame is due: when to wake the driver.
    pub fn next_deadline(&self) -> Instant {
        self.deadline(self.next)
    }

    fn deadline(&self, n: u64) -> Instant {
        // Saturating: 2^64 frames of 20 ms is far beyond any call.
        let nanos = self.frame.as_nanos().saturating_mul(u128::from(n));
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The frames due at `now`, which the caller does before waking again at
    /// [`Self::next_deadline`]: usually one; several after a stall; none if woken early.
    pub fn due(&mut self, now: Instant) -> Due {
        if now < self.next_deadline() {
            return Due {
                frames: 0,
                dropped: 0,
            };
        }
        let elapsed = now.duration_since(self.start).as_nanos();
        // Frames 0..=last are due by now.
        let last = u64::try_from(elapsed / self.frame.as_nanos()).unwrap_or(u64::MAX);
        let owed = last.saturating_sub(self.next).saturating_add(1);
        let frames = owed.min(u64::from(Self::MAX_BEHIND));
        let dropped = owed - frames;
        self.dropped += dropped;
        if owed > 1 {
            self.caught_up += frames - 1;
        }
        self.next = last.saturating_add(1);
        Due {
            frames: u32::try_from(frames).expect("at most MAX_BEHIND"),
            dropped,
        }
    }

    /// Frames that have been due so far (done or dropped).
    pub fn frames(&self) -> u64 {
        self.next
    }

    /// Frames given up so far (a gap longer than [`Self::MAX_BEHIND`] frames).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Frames done late, after a stall, so far (none were lost).
    pub fn caught_up(&self) -> u64 {
        self.caught_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    #[test]
    fn on_time_wakes_do_one_frame_each_and_early_wakes_none() {
        let t0 = Instant::now();
        let mut c = MediaClock::new(t0, FRAME);
        let mut done = 0;
        for n in 0..500u32 {
            let at = c.next_deadline();
            assert_eq!(at, t0 + FRAME * n);
            // Woken a little late, as a timer does.
            let d = c.due(at + Duration::from_micros(300));
            assert_eq!(
                d,
                Due {
                    frames: 1,
                    dropped: 0
                }
            );
            done += d.frames;
            // Woken again before the next deadline (a datagram arrived): nothing due.
            assert_eq!(c.due(at + Duration::from_millis(19)).frames, 0);
        }
        assert_eq!(done, 500);
        assert_eq!((c.dropped(), c.caught_up()), (0, 0));
    }

    #[test]
    fn a_stall_is_caught_up_so_no_time_is_lost() {
        let t0 = Instant::now();
        let mut c = MediaClock::new(t0, FRAME);
        let mut done = 0u64;
        let mut now = t0;
        let mut last_wake = t0;
        // Ten seconds with a stall of 90 to 390 ms every second, the rest on time.
        while now < t0 + Duration::from_secs(10) {
            let d = c.due(now);
            assert_eq!(d.dropped, 0);
            done += u64::from(d.frames);
            last_wake = now;
            let since = now.duration_since(t0);
            now = if since.as_millis() % 1000 < 20 {
                let stall = 90 + 60 * (since.as_secs() % 6);
                now + Duration::from_millis(stall)
            } else {
                c.next_deadline()
            };
        }
        // Every frame due by the last wake was done: as many as the time says.
        let due_by_then = last_wake.duration_since(t0).as_millis() / 20 + 1;
        assert_eq!(done, due_by_then as u64);
        assert!(c.caught_up() > 40, "{}", c.caught_up());
        assert_eq!(c.dropped(), 0);
    }

    #[test]
    fn a_gap_longer_than_max_behind_is_dropped_not_replayed() {
        let t0 = Instant::now();
        let mut c = MediaClock::new(t0, FRAME);
        assert_eq!(c.due(t0).frames, 1);
        // Suspended for 5 s: 250 frames owed, 20 done, 230 dropped; then back on time.
        let d = c.due(t0 + Duration::from_secs(5));
        assert_eq!(d.frames, MediaClock::MAX_BEHIND);
        assert_eq!(d.dropped, 250 - u64::from(MediaClock::MAX_BEHIND));
        assert_eq!(c.next_deadline(), t0 + Duration::from_millis(5020));
        assert_eq!(c.due(c.next_deadline()).frames, 1);
        assert_eq!(c.dropped(), 230);
        assert_eq!(c.frames(), 252);
    }

    #[test]
    fn frame_n_is_due_exactly_at_its_deadline() {
        let t0 = Instant::now();
        let mut c = MediaClock::new(t0, FRAME);
        assert_eq!(c.due(t0 + FRAME * 3 - Duration::from_nanos(1)).frames, 3);
        assert_eq!(c.due(t0 + FRAME * 3).frames, 1);
        assert_eq!(c.due(t0 + FRAME * 4 - Duration::from_nanos(1)).frames, 0);
    }
}
