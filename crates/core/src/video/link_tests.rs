//! [`VideoLink`] on its own: what it hands the transport, and a new path. The call-level
//! simulation (video and audio over a narrowing path) is `crate::call`'s.

use std::time::{Duration, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);
/// The source: 640×360 at 30 pictures a second.
const SOURCE: (u32, u32, u32) = (640, 360, 30);
const PROPAGATION: Duration = Duration::from_millis(10);

/// Audio first in the transport's queue: while more than a packet or two waits there, no
/// fragment is handed out (feedback still is), and they go once it drains.
#[test]
fn fragments_wait_while_the_transport_queue_is_full_and_feedback_does_not() {
    let t0 = Instant::now();
    let mut tx = VideoLink::new(VideoLinkConfig::default(), t0, t0);
    let mut rx = VideoLink::new(VideoLinkConfig::default(), t0, t0);
    let mut buf = Vec::new();
    let clear = PathState {
        rtt: PROPAGATION * 2,
        cwnd: 1_000_000,
        queued: 0,
        max_datagram: Some(1200),
    };
    // The receiver has something to report once a fragment arrived.
    tx.handle_path(clear);
    tx.handle_encoded(t0, t0, vec![7; 20_000], true, SOURCE);
    assert!(tx.poll_transmit(t0, &mut buf));
    rx.handle_datagram(t0, &buf);
    // The transport holds 5 KB (audio's, say): nothing more from video...
    tx.handle_path(PathState {
        queued: 5_000,
        ..clear
    });
    assert!(!tx.poll_transmit(t0, &mut buf));
    // ...and it looks again shortly rather than at its next tick.
    assert!(tx.poll_timeout(t0) <= t0 + Duration::from_millis(2));
    // Feedback is not held back by a full queue.
    rx.handle_path(PathState {
        queued: 50_000,
        ..clear
    });
    let later = t0 + Duration::from_millis(150);
    rx.handle_timeout(later);
    assert!(rx.poll_transmit(later, &mut buf));
    assert_eq!(datagram_kind(&buf), Some(wire::KIND_FEEDBACK));
    // Drained: fragments flow again, but only until what was handed out fills the room.
    tx.handle_path(clear);
    let mut handed = 0;
    while tx.poll_transmit(t0, &mut buf) {
        handed += buf.len();
    }
    assert!(
        (link::TRANSPORT_ROOM..link::TRANSPORT_ROOM + 1300).contains(&handed),
        "{handed}"
    );
    assert!(tx.stats(t0).sender.datagrams > 1);
}

/// A call that resumed on a new connection: the silence of the outage drove the target to
/// its floor, and what was sent into the dark looks lost. Both are the old path's: the
/// rate starts again as a new call's, and the receiver's first report does not count the
/// dark's losses (which cut it to the floor again at once before).
#[test]
fn a_new_path_starts_the_rate_afresh_and_forgets_what_was_lost_in_the_dark() {
    let t0 = Instant::now();
    let config = VideoLinkConfig::default();
    let start = config.rate.start_bps;
    let (mut a, mut b) = (
        VideoLink::new(config.clone(), t0, t0),
        VideoLink::new(config, t0, t0),
    );
    let path = PathState {
        rtt: PROPAGATION * 2,
        cwnd: 1_000_000,
        queued: 0,
        max_datagram: Some(1200),
    };
    let mut buf = Vec::new();
    let mut now = t0;
    let mut picture = 0u64;
    // 2 s clear, 10 s dark, then 3 s on the new path; everything else arrives at once.
    let mut step = |a: &mut VideoLink, b: &mut VideoLink, now: Instant, dark: bool| {
        if (now - t0).as_millis().is_multiple_of(66) {
            let data = vec![picture as u8; 3000];
            a.handle_encoded(now, now, data, picture == 0, SOURCE);
            picture += 1;
        }
        for turn in 0..2 {
            let (from, to) = if turn == 0 {
                (&mut *a, &mut *b)
            } else {
                (&mut *b, &mut *a)
            };
            from.handle_timeout(now);
            from.handle_path(path);
            while from.poll_transmit(now, &mut buf) {
                if !dark {
                    to.handle_datagram(now, &buf);
                }
            }
        }
    };
    while now < t0 + Duration::from_secs(12) {
        step(&mut a, &mut b, now, now >= t0 + Duration::from_secs(2));
        now += MS;
    }
    assert_eq!(
        a.stats(now).target_bps,
        60_000,
        "the outage's silence cuts to the floor"
    );
    a.handle_new_path(now);
    b.handle_new_path(now);
    assert_eq!(a.stats(now).target_bps, start);
    let resumed = now;
    let mut lowest = start;
    while now < resumed + Duration::from_secs(3) {
        step(&mut a, &mut b, now, false);
        lowest = lowest.min(a.stats(now).target_bps);
        now += MS;
    }
    // Not cut for the dark's losses; on a clear path it only grows.
    assert!(lowest >= start, "cut to {lowest}");
    assert!(a.stats(now).target_bps > start);
}
