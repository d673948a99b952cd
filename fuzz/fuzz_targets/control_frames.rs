//! Hostile bytes on the control stream: the frame decoder and both roles of the session must
//! never panic (also across a lost connection and a resume), never buffer more than one
//! frame, and re-encode what they accept identically.
#![no_main]

use std::time::{Duration, Instant};

use extrasafe_core::session::{Role, Session, SessionConfig};
use extrasafe_core::wire::{Decoded, FrameDecoder, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(1).max(1) as usize;
    let mut dec = FrameDecoder::default();
    let mut frames = Vec::new();
    for chunk in data.chunks(split) {
        if dec.push(chunk, &mut frames).is_err() {
            break;
        }
        assert!(dec.wanted() <= MAX_FRAME + 2);
    }
    for f in frames {
        if let Decoded::Message(m) = f {
            let mut again = Vec::new();
            if m.encode(&mut again).is_ok() {
                let mut out = Vec::new();
                FrameDecoder::default()
                    .push(&again, &mut out)
                    .expect("own encoding decodes");
                assert_eq!(out, vec![Decoded::Message(m)]);
            }
        }
    }
    let t0 = Instant::now();
    for role in [Role::Caller, Role::Callee] {
        let mut s = Session::new(role, SessionConfig::default(), t0);
        let mut now = t0;
        for chunk in data.chunks(split) {
            now += Duration::from_millis(chunk.len() as u64);
            s.handle_stream_data(now, chunk);
            if let Some(t) = s.poll_timeout() {
                if t <= now {
                    s.handle_timeout(now);
                }
            }
            let _ = s.accept(now);
            let _ = s.send_chat(now, "x");
            // Losing the connection and resuming on a new one, at points the input picks.
            match chunk.len() % 11 {
                3 => s.handle_connection_lost(now),
                5 => {
                    let _ = s.resume_as_caller(now, [7; 32]);
                    let _ = s.resume_as_callee(now);
                }
                7 => s.refuse_resume(now),
                _ => s.note_heard(now),
            }
            let mut out = Vec::new();
            s.poll_transmit(&mut out);
            while s.poll_event().is_some() {}
        }
    }
});
