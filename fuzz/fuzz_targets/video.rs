//! Hostile video datagrams: the parsers never panic, and a receiver fed any sequence of
//! fragments and feedback keeps its holdings bounded and hands out only whole frames.
#![no_main]

use std::time::{Duration, Instant};

use extrasafe_core::video::{
    Feedback, Fragment, VideoReceiver, VideoReceiverConfig, VideoSender, VideoSenderConfig,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Fragment::parse(data);
    let fb = Feedback::parse(data);
    let t0 = Instant::now();
    let config = VideoReceiverConfig::default();
    let limit = 4 * config.max_pending_frames + 1;
    let mut rx = VideoReceiver::new(config, t0);
    let mut tx = VideoSender::new(VideoSenderConfig::default(), t0);
    let mut out = Vec::new();
    let mut now = t0;
    // Records: (step ms, length, bytes...) — each a datagram for the receiver.
    let mut rest = data;
    while rest.len() >= 2 {
        now += Duration::from_millis(rest[0] as u64);
        let len = (rest[1] as usize).min(rest.len() - 2);
        let d = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let _ = rx.handle_datagram(now, d);
        rx.handle_timeout(now);
        while let Some(f) = rx.poll_frame() {
            assert!(!f.data.is_empty());
        }
        while rx.poll_feedback(now, &mut out) {
            if let Ok(fb) = Feedback::parse(&out) {
                tx.handle_feedback(now, &fb);
            }
        }
        assert!(rx.frames_pending() <= limit);
        let _ = tx.push_frame(now, now, d.to_vec(), d.first() == Some(&0));
        while tx.poll_transmit(now, &mut out) {}
    }
    if let Ok(fb) = fb {
        tx.handle_feedback(now, &fb);
        while tx.poll_transmit(now, &mut out) {}
    }
});
