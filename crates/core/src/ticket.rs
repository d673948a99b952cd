//! Tickets: what a person shares so others can call them.
//!
//! A ticket is a peer ID, the secret that makes that peer answer, and the addresses where it
//! listens, in bech32m with the prefix `est`. Binary layout before encoding (all integers
//! big-endian):
//!
//! ```text
//! version:u8 = 2 | public key: 32 bytes | secret: 16 bytes | count:u8 (≤ 16) | count × address
//! address = 4 | IPv4: 4 bytes | port:u16   or   6 | IPv6: 16 bytes | port:u16
//! ```
//!
//! The caller pins the key: whoever answers at those addresses must prove that key in the
//! TLS handshake, so a forged or stale address cannot put a stranger on the line. The secret
//! ([`crate::access`]) is what the listener asks for before it sends a single byte: without
//! it (or the pair key of a contact) a listener stays silent. Version 1 tickets, which had no
//! secret, are still read (as a peer ID with addresses) but cannot reach a listener that
//! does not already have the caller as a contact.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};

use crate::access::{TicketSecret, TICKET_SECRET_LEN};
use crate::identity::{PeerId, PeerIdError};

/// Human-readable prefix of a ticket.
pub const TICKET_HRP: &str = "est";
/// Ticket format version written by this build.
const TICKET_VERSION: u8 = 2;
/// At most this many addresses are carried; more is refused as hostile.
pub const MAX_TICKET_ADDRS: usize = 16;
/// Longest ticket text accepted (the bech32m limit).
const MAX_TICKET_LEN: usize = 1023;

/// A peer ID and the addresses to reach it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Ticket {
    /// Who must answer.
    pub peer: PeerId,
    /// What makes them answer; `None` in old (version 1) tickets.
    pub secret: Option<TicketSecret>,
    /// Where to try, in order.
    pub addrs: Vec<SocketAddr>,
}

/// Why a ticket could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketError {
    /// Not bech32m or the checksum fails: usually a copy/paste accident.
    #[error("the ticket is damaged (checksum mismatch); copy it again in full")]
    Checksum,
    /// Longer than any ticket can be.
    #[error("the ticket is too long")]
    TooLong,
    /// A peer ID was given where a ticket (with addresses) was needed.
    #[error("this is a peer ID, not a ticket: ask for their ticket (`extrasafe id` prints it)")]
    IsPeerId,
    /// Another bech32m string.
    #[error("not an EXTRA SAFE ticket (it should start with `est1`)")]
    WrongPrefix,
    /// Made by a newer version of EXTRA SAFE.
    #[error("the ticket was made by a newer EXTRA SAFE (format {0}); update to use it")]
    NewerVersion(u8),
    /// The bytes inside do not follow the layout.
    #[error("the ticket is malformed: {0}")]
    Malformed(&'static str),
    /// The key inside is invalid.
    #[error(transparent)]
    Key(#[from] PeerIdError),
}

impl Ticket {
    /// Encodes the binary layout.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(50 + self.addrs.len() * 19);
        match &self.secret {
            Some(secret) => {
                out.push(TICKET_VERSION);
                out.extend_from_slice(self.peer.as_bytes());
                out.extend_from_slice(secret.as_bytes());
            }
            None => {
                out.push(1);
                out.extend_from_slice(self.peer.as_bytes());
            }
        }
        let addrs = &self.addrs[..self.addrs.len().min(MAX_TICKET_ADDRS)];
        out.push(addrs.len() as u8);
        for a in addrs {
            match a.ip() {
                IpAddr::V4(ip) => {
                    out.push(4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        out
    }

    fn from_bytes(b: &[u8]) -> Result<Self, TicketError> {
        let mut r = Reader(b);
        let version = r.u8()?;
        if version > TICKET_VERSION {
            return Err(TicketError::NewerVersion(version));
        }
        if version != TICKET_VERSION && version != 1 {
            return Err(TicketError::Malformed("unknown format version"));
        }
        let key: [u8; 32] = r.take(32)?.try_into().expect("take(32) returns 32 bytes");
        let peer = PeerId::from_bytes(key)?;
        let secret = if version == 1 {
            None
        } else {
            let s: [u8; TICKET_SECRET_LEN] = r
                .take(TICKET_SECRET_LEN)?
                .try_into()
                .expect("take returns the length asked for");
            Some(TicketSecret::from_bytes(s))
        };
        let count = r.u8()? as usize;
        if count > MAX_TICKET_ADDRS {
            return Err(TicketError::Malformed("too many addresses"));
        }
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let ip = match r.u8()? {
                4 => {
                    let o: [u8; 4] = r.take(4)?.try_into().expect("4 bytes");
                    IpAddr::V4(Ipv4Addr::from(o))
                }
                6 => {
                    let o: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
                    IpAddr::V6(Ipv6Addr::from(o))
                }
                _ => return Err(TicketError::Malformed("unknown address family")),
            };
            let port = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes"));
            if port == 0 {
                return Err(TicketError::Malformed("port 0"));
            }
            addrs.push(SocketAddr::new(ip, port));
        }
        if !r.0.is_empty() {
            return Err(TicketError::Malformed("trailing bytes"));
        }
        Ok(Self {
            peer,
            secret,
            addrs,
        })
    }

    /// The ticket in upper case, which QR codes store more compactly (alphanumeric mode).
    pub fn to_uppercase_string(&self) -> String {
        self.to_string().to_ascii_uppercase()
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TicketError> {
        if self.0.len() < n {
            return Err(TicketError::Malformed("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, TicketError> {
        Ok(self.take(1)?[0])
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse_unchecked(TICKET_HRP);
        bech32::encode_lower_to_fmt::<Bech32m, _>(f, hrp, &self.to_bytes()).map_err(|_| fmt::Error)
    }
}

impl std::str::FromStr for Ticket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLong);
        }
        let checked = CheckedHrpstring::new::<Bech32m>(s).map_err(|_| TicketError::Checksum)?;
        let hrp = checked.hrp();
        if hrp
            .as_str()
            .eq_ignore_ascii_case(crate::identity::PEER_ID_HRP)
        {
            return Err(TicketError::IsPeerId);
        }
        if !hrp.as_str().eq_ignore_ascii_case(TICKET_HRP) {
            return Err(TicketError::WrongPrefix);
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn sample() -> Ticket {
        Ticket {
            peer: Identity::from_seed(&[1; 32]).peer_id(),
            secret: Some(TicketSecret::from_bytes([7; 16])),
            addrs: vec![
                "127.0.0.1:4433".parse().unwrap(),
                "[2001:db8::1]:9000".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn round_trip_both_cases() {
        let t = sample();
        let s = t.to_string();
        assert!(s.starts_with("est1"));
        assert_eq!(s.parse::<Ticket>().unwrap(), t);
        assert_eq!(t.to_uppercase_string().parse::<Ticket>().unwrap(), t);
    }

    #[test]
    fn damaged_ticket_is_refused() {
        let s = sample().to_string();
        let mut t = s.clone().into_bytes();
        t[20] = if t[20] == b'q' { b'p' } else { b'q' };
        let t = String::from_utf8(t).unwrap();
        assert_eq!(t.parse::<Ticket>(), Err(TicketError::Checksum));
        assert_eq!(
            s[..s.len() - 1].parse::<Ticket>(),
            Err(TicketError::Checksum)
        );
    }

    #[test]
    fn version_1_tickets_are_read_without_a_secret() {
        let mut t = sample();
        t.secret = None;
        let s = t.to_string();
        assert_eq!(s.parse::<Ticket>().unwrap(), t);
        // and version 2 carries it
        assert_ne!(sample().to_string(), s);
        assert!(sample()
            .to_string()
            .parse::<Ticket>()
            .unwrap()
            .secret
            .is_some());
    }

    #[test]
    fn peer_id_is_not_a_ticket() {
        let id = sample().peer.to_string();
        assert_eq!(id.parse::<Ticket>(), Err(TicketError::IsPeerId));
    }

    #[test]
    fn hostile_layouts_are_refused() {
        let good = sample().to_bytes();
        let enc =
            |b: &[u8]| bech32::encode::<Bech32m>(Hrp::parse_unchecked(TICKET_HRP), b).unwrap();
        // truncated at every length
        for n in 0..good.len() {
            assert!(
                enc(&good[..n]).parse::<Ticket>().is_err(),
                "prefix {n} accepted"
            );
        }
        let mut many = good[..49].to_vec();
        many.push(200);
        assert_eq!(
            enc(&many).parse::<Ticket>(),
            Err(TicketError::Malformed("too many addresses"))
        );
        let mut newer = good.clone();
        newer[0] = 9;
        assert_eq!(
            enc(&newer).parse::<Ticket>(),
            Err(TicketError::NewerVersion(9))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(enc(&trailing).parse::<Ticket>().is_err());
    }
}
