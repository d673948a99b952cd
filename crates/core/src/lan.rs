//! Blinded LAN announcements (sans-IO): what an mDNS announcement of a listening node carries
//! so that its contacts, and only they, recognise it. The TXT record holds a fresh random
//! nonce and one tag per contact, `tag = keyed_hash(lan key of the pair, nonce)[..8]`, padded
//! with random tags to a fixed count and shuffled: a stranger on the LAN sees random values
//! that change with every nonce, and cannot tell who announces, whom they know, or how many
//! contacts they have. A contact recomputes its own tag and looks for it. Tags also bind a
//! ten-minute time slot, so an announcement recorded and replayed later (elsewhere) no longer
//! tells anyone that a contact of its owner is calling.

/// Length of a time slot, in seconds: tags are valid in their slot and the next.
pub const SLOT_SECS: u64 = 600;

/// The slot a Unix time (seconds) falls in.
pub fn slot_of(unix_secs: u64) -> u64 {
    unix_secs / SLOT_SECS
}

use zeroize::Zeroizing;

/// Tags in every announcement (fits one 255-byte TXT string in hex, with room to spare).
pub const TAGS: usize = 15;
/// Bytes of one tag.
pub const TAG_LEN: usize = 8;
/// Bytes of the nonce.
pub const NONCE_LEN: usize = 16;

/// The key two contacts share for LAN tags. Wiped on drop; never printed.
#[derive(Clone)]
pub struct LanKey(pub(crate) Zeroizing<[u8; 32]>);

impl std::fmt::Debug for LanKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LanKey(..)")
    }
}

/// One tag, for time slot `slot`.
pub fn tag(key: &LanKey, nonce: &[u8; NONCE_LEN], slot: u64) -> [u8; TAG_LEN] {
    let mut input = [0u8; NONCE_LEN + 8];
    input[..NONCE_LEN].copy_from_slice(nonce);
    input[NONCE_LEN..].copy_from_slice(&slot.to_be_bytes());
    let h = blake3::keyed_hash(&key.0, &input);
    h.as_bytes()[..TAG_LEN].try_into().expect("8 of 32 bytes")
}

/// The TXT values (`n`, `t`, both lowercase hex) of an announcement for `keys` (at most
/// [`TAGS`] are used: pass a different subset each time if there are more). `random` must
/// be fresh random bytes: the nonce, the padding and the order come from it; `slot` is the
/// current time slot ([`slot_of`]).
pub fn announcement(keys: &[&LanKey], random: &[u8; 32], slot: u64) -> (String, String) {
    let nonce: [u8; NONCE_LEN] = random[..NONCE_LEN].try_into().expect("16 of 32 bytes");
    let stream = blake3::Hasher::new_keyed(random).finalize_xof();
    let mut more = stream;
    let mut next = |n: usize| {
        let mut b = vec![0u8; n];
        more.fill(&mut b);
        b
    };
    let mut tags: Vec<[u8; TAG_LEN]> = keys
        .iter()
        .take(TAGS)
        .map(|k| tag(k, &nonce, slot))
        .collect();
    while tags.len() < TAGS {
        tags.push(next(TAG_LEN).try_into().expect("8 bytes"));
    }
    // Fisher-Yates, so a contact's position says nothing either.
    for i in (1..tags.len()).rev() {
        let r = u64::from_le_bytes(next(8).try_into().expect("8 bytes"));
        tags.swap(i, (r % (i as u64 + 1)) as usize);
    }
    (hex(&nonce), tags.iter().map(|t| hex(t)).collect())
}

/// True if the announcement's TXT values carry the tag of `key` for time slot `slot` or the
/// one before. Malformed values (wrong lengths, not hex) never match.
pub fn matches(n: &str, t: &str, key: &LanKey, slot: u64) -> bool {
    let Some(nonce) = unhex(n).and_then(|b| <[u8; NONCE_LEN]>::try_from(b).ok()) else {
        return false;
    };
    if t.len() != TAGS * TAG_LEN * 2 {
        return false;
    }
    let Some(tags) = unhex(t) else {
        return false;
    };
    let now = tag(key, &nonce, slot);
    let before = tag(key, &nonce, slot.saturating_sub(1));
    tags.chunks(TAG_LEN).any(|c| c == now || c == before)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 1024 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rendezvous::PairSecret;
    use crate::Identity;

    const S: u64 = 2_991_000;

    #[test]
    fn only_contacts_recognise_an_announcement() {
        let (bob, alice, carol, eve) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let bob_alice = PairSecret::new(&bob, &alice.peer_id()).unwrap().lan_key();
        let bob_carol = PairSecret::new(&bob, &carol.peer_id()).unwrap().lan_key();
        let (n, t) = announcement(&[&bob_alice, &bob_carol], &[7; 32], S);
        assert_eq!(t.len(), TAGS * TAG_LEN * 2);
        // Alice and Carol each find Bob with the key they derive on their side.
        let alice_bob = PairSecret::new(&alice, &bob.peer_id()).unwrap().lan_key();
        let carol_bob = PairSecret::new(&carol, &bob.peer_id()).unwrap().lan_key();
        assert!(matches(&n, &t, &alice_bob, S));
        assert!(matches(&n, &t, &carol_bob, S));
        // Eve, who knows Bob's peer ID, does not; nor does a pair Bob did not announce.
        let eve_bob = PairSecret::new(&eve, &bob.peer_id()).unwrap().lan_key();
        assert!(!matches(&n, &t, &eve_bob, S));
        let alice_carol = PairSecret::new(&alice, &carol.peer_id()).unwrap().lan_key();
        assert!(!matches(&n, &t, &alice_carol, S));
        // The next announcement shares nothing with this one.
        let (n2, t2) = announcement(&[&bob_alice, &bob_carol], &[8; 32], S);
        assert_ne!(n, n2);
        let old: Vec<&str> = (0..TAGS).map(|i| &t[i * 16..i * 16 + 16]).collect();
        assert!((0..TAGS).all(|i| !old.contains(&&t2[i * 16..i * 16 + 16])));
        assert!(matches(&n2, &t2, &alice_bob, S));
        // Valid in its slot and the next, not later: a recording replayed later says nothing.
        assert!(matches(&n, &t, &alice_bob, S + 1));
        assert!(!matches(&n, &t, &alice_bob, S + 2));
        assert!(!matches(&n, &t, &alice_bob, S - 1));
        // An announcement for nobody looks the same.
        let (n3, t3) = announcement(&[], &[9; 32], S);
        assert_eq!((n3.len(), t3.len()), (n.len(), t.len()));
    }

    #[test]
    fn malformed_txt_values_never_match() {
        let a = Identity::generate();
        let key = PairSecret::new(&a, &Identity::generate().peer_id())
            .unwrap()
            .lan_key();
        let (n, t) = announcement(&[&key], &[1; 32], S);
        assert!(matches(&n, &t, &key, S));
        for (bad_n, bad_t) in [
            ("", t.as_str()),
            (&n[..30], t.as_str()),
            ("zz", t.as_str()),
            (n.as_str(), &t[..t.len() - 2]),
            (n.as_str(), ""),
        ] {
            assert!(!matches(bad_n, bad_t, &key, S));
        }
        let mut garbled = t.clone().into_bytes();
        garbled[5] = b'g';
        assert!(!matches(
            &n,
            std::str::from_utf8(&garbled).unwrap(),
            &key,
            S
        ));
        // Multi-byte characters where hex digits belong.
        assert!(!matches(&"é".repeat(16), &t, &key, S));
    }
}
