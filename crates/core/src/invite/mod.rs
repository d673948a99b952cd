//! First contact from a short spoken code (issue 21, first slice: the code and the handshake,
//! sans-IO; the rendezvous on the DHT and the LAN, and the transport, come next).
//!
//! An invitation code is a number and two words, `7-lantern-otter`:
//! - the number (1–999) only says where the two meet (it names a rendezvous slot);
//! - the two words are one byte each of a 256-word list: 16 secret bits.
//!
//! The whole code is the password of a SPAKE2 exchange (`spake2`, RustCrypto; the inviter is
//! side A, the one who accepts side B). An active attacker who runs the exchange with a guess
//! learns only whether that one guess was right: a chance of 2⁻¹⁶ per invitation, and the
//! invitation ends at the first wrong try (the inviter is told). A passive one learns nothing
//! of the code or the key.
//!
//! After SPAKE2, each side proves it holds the same key (a BLAKE3 MAC over the transcript,
//! one key per side), and only then sends its contact card (peer ID, the name it wants to be
//! known by, and what a call needs to find it), sealed under a key of its direction and
//! signed with its identity over the transcript: the card cannot be replayed into another
//! invitation, and a card naming someone else's peer ID is refused.
//!
//! ```text
//!  inviter (A)                                   accepter (B)
//!     PAKE(A) ──────────────────────────────────────►
//!     ◄─────────────────────────────────────── PAKE(B)
//!     CONFIRM(A) ───────────────────────────────────►
//!     ◄──────────────────────────────────── CONFIRM(B)
//!     CARD(A) ──────────────────────────────────────►
//!     ◄──────────────────────────────────────── CARD(B)
//! ```
//! Messages may cross: each side sends its PAKE message at once and the rest when it can.

mod words;

use rand_core::SeedableRng;
use spake2::{Ed25519Group, Identity as SpakeId, Password, Spake2};
use zeroize::Zeroizing;

use crate::identity::{Identity, PeerId};

pub use words::WORDS;

/// Codes are valid this long unless said otherwise: 10 minutes.
pub const DEFAULT_LIFETIME_MS: u64 = 10 * 60 * 1000;

/// The largest card accepted: a name and what a call needs, not a file.
pub const MAX_CARD: usize = 2048;
/// The longest name on a card, in bytes.
pub const MAX_NAME: usize = 64;

const CONTEXT: &[u8] = b"extrasafe invite v1";
const TAG_PAKE: u8 = 1;
const TAG_CONFIRM: u8 = 2;
const TAG_CARD: u8 = 3;
const PAKE_LEN: usize = 33;

/// A short code: where to meet, and 16 secret bits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InviteCode {
    /// 1–999: which rendezvous slot.
    pub slot: u16,
    /// Two indexes into [`WORDS`].
    words: [u8; 2],
}

impl std::fmt::Debug for InviteCode {
    // The words are the secret: never in Debug output (logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InviteCode({}-…)", self.slot)
    }
}

/// Why a typed code is not a code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Not a number and two words.
    #[error("a code is a number and two words, like 7-lantern-otter")]
    Shape,
    /// The number is outside 1–999.
    #[error("the number of a code is from 1 to 999")]
    Slot,
    /// A word that is not in the list (with the nearest one, if any is close).
    #[error("\"{word}\" is not one of the code words{}", .closest.as_ref().map(|c| format!(" (did you mean \"{c}\"?)")).unwrap_or_default())]
    UnknownWord {
        /// The word as typed (at most 32 characters of it).
        word: String,
        /// A list word one or two letters away.
        closest: Option<&'static str>,
    },
}

impl InviteCode {
    /// A new code from four random bytes.
    pub fn from_random(r: [u8; 4]) -> Self {
        Self {
            slot: 1 + u16::from_le_bytes([r[0], r[1]]) % 999,
            words: [r[2], r[3]],
        }
    }

    /// Reads a code as a person types or says it: case, spaces, hyphens and dots between
    /// the parts do not matter (`7 Lantern otter`, `7-lantern-otter`).
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let parts: Vec<String> = s
            .split(|c: char| c == '-' || c == '.' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(str::to_lowercase)
            .collect();
        let [slot, w1, w2] = parts.as_slice() else {
            return Err(CodeError::Shape);
        };
        let slot: u16 = slot.parse().map_err(|_| CodeError::Shape)?;
        if !(1..=999).contains(&slot) {
            return Err(CodeError::Slot);
        }
        let index = |w: &str| {
            WORDS
                .binary_search(&w)
                .map(|i| i as u8)
                .map_err(|_| CodeError::UnknownWord {
                    word: w.chars().take(32).collect(),
                    closest: closest_word(w),
                })
        };
        Ok(Self {
            slot,
            words: [index(w1)?, index(w2)?],
        })
    }

    /// The code as it is read aloud: `7-lantern-otter`.
    pub fn spoken(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}-{}-{}",
            self.slot, WORDS[self.words[0] as usize], WORDS[self.words[1] as usize]
        ))
    }

    fn password(&self) -> Password {
        let mut p = Zeroizing::new(CONTEXT.to_vec());
        p.extend_from_slice(self.spoken().as_bytes());
        Password::new(&p[..])
    }
}

/// The code word nearest to a mistyped one (one or two letters off), to suggest.
fn closest_word(w: &str) -> Option<&'static str> {
    WORDS
        .iter()
        .map(|c| (edit_distance(w, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().take(32).collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Who runs this end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Made the code and waits (SPAKE2 side A).
    Inviter,
    /// Typed the code (side B).
    Accepter,
}

/// What each side tells the other once the code is proven: who it is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    /// Who they are.
    pub peer_id: PeerId,
    /// The name it would like to be saved under (the other side may change it).
    pub name: String,
    /// What a call needs to find it (the ticket's reach material); opaque here.
    pub reach: Vec<u8>,
}

/// How an invitation ended without a contact.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InviteFailure {
    /// The other side used another code: a typo, or someone guessing. The invitation ends.
    #[error("the other side's code is not this one")]
    WrongCode,
    /// Past its lifetime.
    #[error("the invitation has expired")]
    Expired,
    /// A message that is not part of this exchange (malformed, out of order, or a card not
    /// signed by the peer it names).
    #[error("the other side broke the invitation exchange ({0})")]
    Broken(&'static str),
}

/// What the handshake asks of its driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Send these bytes to the other side (one message).
    Send(Vec<u8>),
    /// Both proved the code; here is the other side's card. The handshake is over.
    Done(Card),
    /// The handshake is over without a contact.
    Failed(InviteFailure),
}

enum State {
    /// Our PAKE message is out; waiting for theirs.
    Pake(Box<Spake2<Ed25519Group>>),
    /// The key is agreed; waiting for their proof of it.
    Confirm,
    /// They proved it; waiting for their card.
    Card,
    Over,
}

/// One end of an invitation exchange. Takes messages and the time in, gives [`Event`]s out;
/// randomness comes in at the start. Single use: it ends at the first failure.
pub struct Handshake {
    role: Role,
    state: State,
    my_pake: Vec<u8>,
    their_pake: Vec<u8>,
    key: Zeroizing<[u8; 32]>,
    card: Zeroizing<Vec<u8>>,
    /// Our identity's key, to sign our card.
    seed: Zeroizing<[u8; 32]>,
    expires_ms: u64,
    /// Their proof came before their PAKE message was used (messages cross).
    early: Vec<Vec<u8>>,
}

impl Handshake {
    /// Starts an end of the exchange for `code`, valid until `expires_ms` (the driver's
    /// clock). `seed`: 32 random bytes. The first event sends our PAKE message.
    pub fn start(
        role: Role,
        code: &InviteCode,
        me: &Identity,
        name: &str,
        reach: &[u8],
        seed: [u8; 32],
        expires_ms: u64,
    ) -> (Self, Vec<Event>) {
        let rng = rand_chacha::ChaCha20Rng::from_seed(seed);
        let (a, b) = (
            SpakeId::new(b"extrasafe inviter"),
            SpakeId::new(b"extrasafe accepter"),
        );
        let (spake, msg) = match role {
            Role::Inviter => {
                Spake2::<Ed25519Group>::start_a_with_rng(&code.password(), &a, &b, rng)
            }
            Role::Accepter => {
                Spake2::<Ed25519Group>::start_b_with_rng(&code.password(), &a, &b, rng)
            }
        };
        let mut name = name.to_string();
        while name.len() > MAX_NAME {
            name.pop();
        }
        let mut card = Zeroizing::new(Vec::new());
        card.extend_from_slice(me.peer_id().as_bytes());
        card.push(name.len() as u8);
        card.extend_from_slice(name.as_bytes());
        card.extend_from_slice(&reach[..reach.len().min(MAX_CARD - 32 - 1 - MAX_NAME - 64)]);
        let mut out = vec![TAG_PAKE];
        out.extend_from_slice(&msg);
        let hs = Self {
            role,
            state: State::Pake(Box::new(spake)),
            my_pake: msg,
            their_pake: Vec::new(),
            key: Zeroizing::new([0; 32]),
            card,
            seed: me.seed(),
            expires_ms,
            early: Vec::new(),
        };
        (hs, vec![Event::Send(out)])
    }

    /// Whether the exchange is over (done or failed).
    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Over)
    }

    /// Takes one message from the other side at `now_ms`.
    pub fn handle(&mut self, msg: &[u8], now_ms: u64) -> Vec<Event> {
        if self.is_over() {
            return Vec::new();
        }
        if now_ms >= self.expires_ms {
            return self.fail(InviteFailure::Expired);
        }
        let mut out = Vec::new();
        self.step(msg, &mut out);
        // A proof or card that came before we could read it, now in order.
        while !self.is_over() && !matches!(self.state, State::Pake(_)) && !self.early.is_empty() {
            let m = self.early.remove(0);
            self.step(&m, &mut out);
        }
        out
    }

    /// Ends the exchange now if it has outlived its lifetime (call on the driver's timer).
    pub fn poll(&mut self, now_ms: u64) -> Vec<Event> {
        if !self.is_over() && now_ms >= self.expires_ms {
            return self.fail(InviteFailure::Expired);
        }
        Vec::new()
    }

    fn fail(&mut self, why: InviteFailure) -> Vec<Event> {
        self.state = State::Over;
        vec![Event::Failed(why)]
    }

    fn step(&mut self, msg: &[u8], out: &mut Vec<Event>) {
        let Some((&tag, body)) = msg.split_first() else {
            out.extend(self.fail(InviteFailure::Broken("an empty message")));
            return;
        };
        match (std::mem::replace(&mut self.state, State::Over), tag) {
            (State::Pake(spake), TAG_PAKE) => {
                if body.len() != PAKE_LEN {
                    out.extend(
                        self.fail(InviteFailure::Broken("a PAKE message of the wrong size")),
                    );
                    return;
                }
                let Ok(shared) = spake.finish(body) else {
                    out.extend(
                        self.fail(InviteFailure::Broken("a PAKE message from the wrong side")),
                    );
                    return;
                };
                self.their_pake = body.to_vec();
                self.key = Zeroizing::new(blake3::derive_key(
                    "extrasafe invite v1 key",
                    &Zeroizing::new(shared),
                ));
                self.state = State::Confirm;
                let mut m = vec![TAG_CONFIRM];
                m.extend_from_slice(&self.proof(self.role));
                out.push(Event::Send(m));
            }
            (State::Pake(spake), TAG_CONFIRM | TAG_CARD) if self.early.len() < 2 => {
                self.state = State::Pake(spake);
                self.early.push(msg.to_vec());
            }
            (State::Confirm, TAG_CONFIRM) => {
                let want = self.proof(other(self.role));
                if body.len() != 32 || !constant_eq(body, &want) {
                    // Wrong code (or a guess): the key differs, so the proof does.
                    out.extend(self.fail(InviteFailure::WrongCode));
                    return;
                }
                self.state = State::Card;
                out.push(Event::Send(self.sealed_card()));
            }
            (State::Card, TAG_CARD) => match self.open_card(body) {
                Ok(card) => out.push(Event::Done(card)),
                Err(why) => out.extend(self.fail(InviteFailure::Broken(why))),
            },
            _ => out.extend(self.fail(InviteFailure::Broken("a message out of order"))),
        }
    }

    /// Everything both sides said, in a fixed order (A's PAKE message first).
    fn transcript(&self) -> [u8; 32] {
        let (a, b) = match self.role {
            Role::Inviter => (&self.my_pake, &self.their_pake),
            Role::Accepter => (&self.their_pake, &self.my_pake),
        };
        let mut h = blake3::Hasher::new_derive_key("extrasafe invite v1 transcript");
        h.update(&(a.len() as u32).to_le_bytes());
        h.update(a);
        h.update(&(b.len() as u32).to_le_bytes());
        h.update(b);
        *h.finalize().as_bytes()
    }

    fn side_key(&self, purpose: &str, role: Role) -> Zeroizing<[u8; 32]> {
        let mut material = Zeroizing::new(self.key.to_vec());
        material.push(match role {
            Role::Inviter => b'A',
            Role::Accepter => b'B',
        });
        Zeroizing::new(blake3::derive_key(purpose, &material))
    }

    fn proof(&self, role: Role) -> [u8; 32] {
        let k = self.side_key("extrasafe invite v1 confirm", role);
        *blake3::keyed_hash(&k, &self.transcript()).as_bytes()
    }

    /// Our card, signed over the transcript, sealed under our direction's key.
    fn sealed_card(&self) -> Vec<u8> {
        use ed25519_dalek::Signer;
        let signer = ed25519_dalek::SigningKey::from_bytes(&self.seed);
        let mut signed = Zeroizing::new(self.transcript().to_vec());
        signed.extend_from_slice(&self.card);
        let sig = signer.sign(&signed);
        let mut plain = Zeroizing::new(self.card.to_vec());
        plain.extend_from_slice(&sig.to_bytes());
        let key = self.side_key("extrasafe invite v1 card", self.role);
        // One card per key: a fixed nonce never repeats under it.
        let sealed = crate::sealed::seal(&key, &[0; 24], &self.transcript(), &plain);
        let mut out = vec![TAG_CARD];
        out.extend_from_slice(&sealed);
        out
    }

    fn open_card(&self, body: &[u8]) -> Result<Card, &'static str> {
        if body.len() > MAX_CARD + 16 {
            return Err("a card too large");
        }
        let key = self.side_key("extrasafe invite v1 card", other(self.role));
        let plain = crate::sealed::open(&key, &[0; 24], &self.transcript(), body)
            .ok_or("a card not sealed with the agreed key")?;
        if plain.len() < 32 + 1 + 64 {
            return Err("a card too short");
        }
        let (card, sig) = plain.split_at(plain.len() - 64);
        let peer: [u8; 32] = card[..32].try_into().expect("length checked");
        let peer_id = PeerId::from_bytes(peer).map_err(|_| "a card with an invalid peer ID")?;
        let name_len = usize::from(card[32]);
        if name_len > MAX_NAME || card.len() < 33 + name_len {
            return Err("a card with a bad name length");
        }
        let name = std::str::from_utf8(&card[33..33 + name_len])
            .map_err(|_| "a card whose name is not text")?
            .to_string();
        let reach = card[33 + name_len..].to_vec();
        let key = ed25519_dalek::VerifyingKey::from_bytes(peer_id.as_bytes())
            .map_err(|_| "a card with an invalid peer ID")?;
        let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| "a card's signature")?;
        let mut signed = Zeroizing::new(self.transcript().to_vec());
        signed.extend_from_slice(card);
        key.verify_strict(&signed, &sig)
            .map_err(|_| "a card not signed by the peer it names")?;
        Ok(Card {
            peer_id,
            name,
            reach,
        })
    }
}

fn other(r: Role) -> Role {
    match r {
        Role::Inviter => Role::Accepter,
        Role::Accepter => Role::Inviter,
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
