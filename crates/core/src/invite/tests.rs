//! The invitation handshake between two ends and attackers, message by message, on a
//! virtual clock.

use super::*;

fn person(n: u8) -> Identity {
    Identity::from_seed(&[n; 32])
}

const NOW: u64 = 1_000;
const UNTIL: u64 = NOW + DEFAULT_LIFETIME_MS;

fn sent(events: &[Event]) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// Delivers everything each side sends to the other until both are quiet; what each ended
/// with.
fn run(
    a: &mut Handshake,
    a0: Vec<Event>,
    b: &mut Handshake,
    b0: Vec<Event>,
) -> (Vec<Event>, Vec<Event>) {
    let (mut to_b, mut to_a) = (sent(&a0), sent(&b0));
    let (mut end_a, mut end_b) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let mut next_a = Vec::new();
        for m in to_b.drain(..) {
            let ev = b.handle(&m, NOW + 10);
            next_a.extend(sent(&ev));
            end_b.extend(ev.into_iter().filter(|e| !matches!(e, Event::Send(_))));
        }
        let mut next_b = Vec::new();
        for m in to_a.drain(..) {
            let ev = a.handle(&m, NOW + 10);
            next_b.extend(sent(&ev));
            end_a.extend(ev.into_iter().filter(|e| !matches!(e, Event::Send(_))));
        }
        to_a = next_a;
        to_b = next_b;
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
    }
    (end_a, end_b)
}

#[test]
fn codes_read_as_people_type_them_and_carry_sixteen_secret_bits() {
    let mut sorted = WORDS.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 256, "256 distinct words, one byte each");
    assert_eq!(sorted, WORDS.to_vec(), "sorted, for the binary search");
    assert!(WORDS
        .iter()
        .all(|w| w.bytes().all(|b| b.is_ascii_lowercase())));
    let code = InviteCode::from_random([7, 0, 3, 200]);
    let spoken = code.spoken();
    assert_eq!(InviteCode::parse(&spoken).unwrap(), code);
    let upper = spoken.to_uppercase().replace('-', " ");
    assert_eq!(InviteCode::parse(&upper).unwrap(), code);
    assert!(
        !format!("{code:?}").contains(WORDS[3]),
        "the words stay out of Debug"
    );
    assert_eq!(InviteCode::parse("7-lantern"), Err(CodeError::Shape));
    assert_eq!(InviteCode::parse("0-lantern-otter"), Err(CodeError::Slot));
    assert_eq!(
        InviteCode::parse("1000-lantern-otter"),
        Err(CodeError::Slot)
    );
    let typo = InviteCode::parse("7-lantren-otter").unwrap_err();
    assert_eq!(
        typo,
        CodeError::UnknownWord {
            word: "lantren".into(),
            closest: Some("lantern")
        }
    );
    assert!(
        typo.to_string().contains("did you mean \"lantern\""),
        "{typo}"
    );
    // Every slot is reachable and none outside 1–999.
    for r in [[0, 0, 0, 0], [255, 255, 255, 255], [230, 3, 1, 1]] {
        let c = InviteCode::from_random(r);
        assert!((1..=999).contains(&c.slot), "{}", c.slot);
    }
}

#[test]
fn the_right_code_makes_each_the_others_contact_with_the_name_they_chose() {
    let code = InviteCode::parse("7-lantern-otter").unwrap();
    let (alice, bob) = (person(1), person(2));
    let (mut a, a0) = Handshake::start(
        Role::Inviter,
        &code,
        &alice,
        "Alice",
        b"reach-a",
        [1; 32],
        UNTIL,
    );
    let (mut b, b0) = Handshake::start(
        Role::Accepter,
        &code,
        &bob,
        "Bob",
        b"reach-b",
        [2; 32],
        UNTIL,
    );
    let (end_a, end_b) = run(&mut a, a0, &mut b, b0);
    assert_eq!(
        end_a,
        vec![Event::Done(Card {
            peer_id: bob.peer_id(),
            name: "Bob".into(),
            reach: b"reach-b".to_vec()
        })]
    );
    assert_eq!(
        end_b,
        vec![Event::Done(Card {
            peer_id: alice.peer_id(),
            name: "Alice".into(),
            reach: b"reach-a".to_vec()
        })]
    );
}

#[test]
fn messages_that_cross_or_arrive_early_change_nothing() {
    let code = InviteCode::from_random([9, 9, 9, 9]);
    let (alice, bob) = (person(1), person(2));
    let (mut a, a0) = Handshake::start(Role::Inviter, &code, &alice, "Alice", b"", [3; 32], UNTIL);
    let (mut b, b0) = Handshake::start(Role::Accepter, &code, &bob, "Bob", b"", [4; 32], UNTIL);
    // Bob hears Alice's PAKE message and answers with his PAKE message and his proof; Alice
    // gets the proof before the PAKE message.
    let from_b1 = sent(&b.handle(&sent(&a0)[0], NOW));
    let b_pake = sent(&b0)[0].clone();
    let a_early = a.handle(&from_b1[0], NOW);
    assert!(a_early.is_empty(), "kept for later: {a_early:?}");
    let a_next = a.handle(&b_pake, NOW);
    // Alice proves the key and, with Bob's early proof now read, sends her card.
    let to_b = sent(&a_next);
    assert_eq!(to_b.len(), 2);
    let mut done_b = Vec::new();
    for m in &to_b {
        done_b.extend(b.handle(m, NOW));
    }
    let card_b = sent(&done_b);
    assert!(done_b
        .iter()
        .any(|e| matches!(e, Event::Done(c) if c.peer_id == alice.peer_id())));
    let end_a = a.handle(&card_b[0], NOW);
    assert!(matches!(&end_a[..], [Event::Done(c)] if c.peer_id == bob.peer_id()));
}

#[test]
fn one_changed_word_fails_on_both_sides_and_ends_the_invitation() {
    let code = InviteCode::parse("7-lantern-otter").unwrap();
    let wrong = InviteCode::parse("7-lantern-walrus").unwrap();
    let (mut a, a0) = Handshake::start(Role::Inviter, &code, &person(1), "A", b"", [5; 32], UNTIL);
    let (mut b, b0) =
        Handshake::start(Role::Accepter, &wrong, &person(2), "B", b"", [6; 32], UNTIL);
    let (end_a, end_b) = run(&mut a, a0, &mut b, b0);
    assert_eq!(end_a, vec![Event::Failed(InviteFailure::WrongCode)]);
    assert_eq!(end_b, vec![Event::Failed(InviteFailure::WrongCode)]);
    assert!(a.is_over() && b.is_over());
    // Single use: the inviter's end takes nothing more, even the right code's messages.
    let (_, again) = Handshake::start(Role::Accepter, &code, &person(2), "B", b"", [7; 32], UNTIL);
    assert!(a.handle(&sent(&again)[0], NOW).is_empty());
}

#[test]
fn a_man_in_the_middle_with_a_guess_is_refused_by_both() {
    // Mallory sits between Alice and Bob and runs the exchange with each, with a guess.
    let code = InviteCode::parse("12-comet-harbor").unwrap();
    let guess = InviteCode::parse("12-comet-hazel").unwrap();
    let (alice, bob, mallory) = (person(1), person(2), person(3));
    let (mut a, a0) = Handshake::start(Role::Inviter, &code, &alice, "A", b"", [8; 32], UNTIL);
    let (mut m_b, m_b0) =
        Handshake::start(Role::Accepter, &guess, &mallory, "A", b"", [9; 32], UNTIL);
    let (end_a, _) = run(&mut a, a0, &mut m_b, m_b0);
    assert_eq!(
        end_a,
        vec![Event::Failed(InviteFailure::WrongCode)],
        "Alice is told"
    );
    let (mut m_a, m_a0) =
        Handshake::start(Role::Inviter, &guess, &mallory, "B", b"", [10; 32], UNTIL);
    let (mut b, b0) = Handshake::start(Role::Accepter, &code, &bob, "Bob", b"", [11; 32], UNTIL);
    let (_, end_b) = run(&mut m_a, m_a0, &mut b, b0);
    assert_eq!(end_b, vec![Event::Failed(InviteFailure::WrongCode)]);
    // With the right code she would be a party, not in the middle: the cards name who holds
    // each key, and a card naming someone else is refused (below).
}

#[test]
fn a_replayed_exchange_or_a_card_for_someone_else_is_refused() {
    let code = InviteCode::parse("5-piano-tiger").unwrap();
    let (alice, bob) = (person(1), person(2));
    // A recording of Bob's messages from one invitation ...
    let (mut a1, a10) = Handshake::start(Role::Inviter, &code, &alice, "A", b"", [12; 32], UNTIL);
    let (mut b1, b10) = Handshake::start(Role::Accepter, &code, &bob, "B", b"", [13; 32], UNTIL);
    let mut recorded = sent(&b10);
    let (mut to_a, mut to_b) = (sent(&b10), sent(&a10));
    for _ in 0..6 {
        let mut next_to_a = Vec::new();
        for m in to_b.drain(..) {
            let out = sent(&b1.handle(&m, NOW));
            recorded.extend(out.clone());
            next_to_a.extend(out);
        }
        let mut next_to_b = Vec::new();
        for m in to_a.drain(..) {
            next_to_b.extend(sent(&a1.handle(&m, NOW)));
        }
        (to_a, to_b) = (next_to_a, next_to_b);
    }
    assert!(recorded.len() >= 3, "PAKE, proof and card recorded");
    // ... played to a new invitation with the same code: the new inviter's randomness makes
    // another key, so the recorded proof fails.
    let (mut a2, _) = Handshake::start(Role::Inviter, &code, &alice, "A", b"", [14; 32], UNTIL);
    let mut ends = Vec::new();
    for m in &recorded {
        ends.extend(a2.handle(m, NOW));
    }
    assert!(
        ends.contains(&Event::Failed(InviteFailure::WrongCode)),
        "{ends:?}"
    );
    assert!(!ends.iter().any(|e| matches!(e, Event::Done(_))));
}

#[test]
fn an_expired_invitation_takes_nothing() {
    let code = InviteCode::from_random([1, 2, 3, 4]);
    let (mut a, _) = Handshake::start(Role::Inviter, &code, &person(1), "A", b"", [15; 32], UNTIL);
    let (_, b0) = Handshake::start(Role::Accepter, &code, &person(2), "B", b"", [16; 32], UNTIL);
    assert!(a.poll(UNTIL - 1).is_empty());
    assert_eq!(
        a.handle(&sent(&b0)[0], UNTIL),
        vec![Event::Failed(InviteFailure::Expired)]
    );
    assert!(a.is_over());
    let (mut c, _) = Handshake::start(Role::Inviter, &code, &person(1), "A", b"", [17; 32], UNTIL);
    assert_eq!(
        c.poll(UNTIL + 5),
        vec![Event::Failed(InviteFailure::Expired)]
    );
}

#[test]
fn hostile_messages_end_the_exchange_without_a_panic() {
    let code = InviteCode::from_random([5, 6, 7, 8]);
    for junk in [
        vec![],
        vec![TAG_PAKE],
        vec![TAG_PAKE; 34],
        vec![TAG_CARD; 5000],
        vec![9, 1, 2],
        vec![TAG_CONFIRM; 33],
    ] {
        let (mut a, _) =
            Handshake::start(Role::Inviter, &code, &person(1), "A", b"", [18; 32], UNTIL);
        let mut ends = a.handle(&junk, NOW);
        // An early proof or card is held (at most two), then anything else ends it.
        ends.extend(a.handle(&[TAG_PAKE, 0x41], NOW));
        assert!(
            ends.iter().any(|e| matches!(e, Event::Failed(_))),
            "{junk:?}: {ends:?}"
        );
        assert!(a.is_over());
    }
    // Names are cut to the limit, never past a character.
    let long = "é".repeat(60);
    let (mut a, a0) = Handshake::start(
        Role::Inviter,
        &code,
        &person(1),
        &long,
        b"",
        [19; 32],
        UNTIL,
    );
    let (mut b, b0) =
        Handshake::start(Role::Accepter, &code, &person(2), "B", b"", [20; 32], UNTIL);
    let (_, end_b) = run(&mut a, a0, &mut b, b0);
    assert!(
        matches!(&end_b[..], [Event::Done(c)] if c.name.len() <= MAX_NAME && c.name.chars().all(|ch| ch == 'é'))
    );
}

#[test]
fn a_card_naming_someone_else_is_refused() {
    // Bob knows the code (he is a party) but claims to be Carol: his card names her peer ID
    // and is signed with his own key.
    let code = InviteCode::parse("40-violin-toast").unwrap();
    let (alice, bob, carol) = (person(1), person(2), person(3));
    let (mut a, a0) = Handshake::start(Role::Inviter, &code, &alice, "A", b"", [21; 32], UNTIL);
    let (mut b, b0) = Handshake::start(Role::Accepter, &code, &bob, "Carol", b"", [22; 32], UNTIL);
    let b_out = sent(&b.handle(&sent(&a0)[0], NOW));
    let a_out = sent(&a.handle(&sent(&b0)[0], NOW));
    // Proofs both ways; Alice sends her card, Bob's honest card is dropped.
    let a_card = sent(&a.handle(&b_out[0], NOW));
    let _ = b.handle(&a_out[0], NOW);
    assert_eq!(a_card.len(), 1);
    b.card[..32].copy_from_slice(carol.peer_id().as_bytes());
    let forged = b.sealed_card();
    assert_eq!(
        a.handle(&forged, NOW),
        vec![Event::Failed(InviteFailure::Broken(
            "a card not signed by the peer it names"
        ))]
    );
}
