//! Hostile messages into an invitation handshake (`core::invite`), at both roles, as the
//! first message or after the other side's genuine PAKE message: never panic, never finish
//! (only the right code and the peer's own signature can), and stay over once over.
#![no_main]

use extrasafe_core::invite::{Event, Handshake, InviteCode, Role};
use extrasafe_core::Identity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let code = InviteCode::from_random([1, 2, 3, 4]);
    let me = Identity::from_seed(&[7; 32]);
    let role = if mode & 1 == 0 { Role::Inviter } else { Role::Accepter };
    let (mut hs, _) = Handshake::start(role, &code, &me, "fuzz", b"", [9; 32], 1_000_000);
    if mode & 2 != 0 {
        // The other side's genuine first message, so later input meets the later states.
        let other = if role == Role::Inviter { Role::Accepter } else { Role::Inviter };
        let them = Identity::from_seed(&[8; 32]);
        let (_, first) = Handshake::start(other, &code, &them, "them", b"", [10; 32], 1_000_000);
        if let Some(Event::Send(m)) = first.first() {
            let _ = hs.handle(m, 10);
        }
    }
    let mut now = 10;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (usize::from(len) * 12).min(tail.len());
        let (msg, tail) = tail.split_at(n);
        rest = tail;
        now += 1;
        let over = hs.is_over();
        let events = hs.handle(msg, now);
        assert!(!events.iter().any(|e| matches!(e, Event::Done(_))), "finished on noise");
        if over {
            assert!(events.is_empty(), "spoke after it was over");
        }
    }
});
