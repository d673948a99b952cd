//! Learning our public address from DHT nodes (sans-IO): a Mainline DHT node answers a KRPC
//! `ping` with the address it saw the query come from (BEP 42's `ip` key). Sent from the call
//! socket, that is the address our NAT gave the call socket, which a contact's probes must
//! reach; asked of two nodes, it also tells whether the NAT keeps one mapping for all
//! destinations (then punching works against most NATs) or makes a new one for each (a
//! "symmetric" NAT, which only a lenient NAT on the other side can meet).
//!
//! Queries are marked read-only (BEP 43), so DHT nodes never add the call socket to their
//! routing tables or send it queries of their own.
//!
//! They are written the way the `mainline` crate (which runs our own DHT client) writes its
//! queries: the same keys in the same order, its version string `v`, and four-byte
//! transaction IDs that count up per socket ([`TxIds`]), so that our queries cannot be told
//! from that library's by their form.

use std::net::{IpAddr, SocketAddr};

/// The version the `mainline` crate puts in every message (`v`): "RS", version 0.5.
pub const VERSION: [u8; 4] = *b"RS\x00\x05";

/// Transaction IDs of one socket: a counter, as the `mainline` crate keeps, but starting at a
/// random value (a long-running node's counter is anywhere; a fresh one starting at zero would
/// also let an off-path forger guess the next answer's ID).
#[derive(Clone, Debug)]
pub struct TxIds(u32);

impl TxIds {
    /// A counter starting at `start` (random bytes).
    pub fn new(start: [u8; 4]) -> Self {
        Self(u32::from_be_bytes(start))
    }

    /// The next transaction ID.
    pub fn next_id(&mut self) -> [u8; 4] {
        let id = self.0.to_be_bytes();
        self.0 = self.0.wrapping_add(1);
        id
    }
}

/// The end of every query: read-only, transaction ID, version, type.
fn tail(out: &mut Vec<u8>, txid: [u8; 4]) {
    out.extend_from_slice(b"2:roi1e1:t4:");
    out.extend_from_slice(&txid);
    out.extend_from_slice(b"1:v4:");
    out.extend_from_slice(&VERSION);
    out.extend_from_slice(b"1:y1:qe");
}

/// A `ping` query with transaction ID `txid` and a node ID of our choosing (random, never our
/// identity). Four-byte transaction IDs: some implementations accept no other length.
pub fn ping_query(txid: [u8; 4], node_id: [u8; 20]) -> Vec<u8> {
    let mut out = Vec::with_capacity(72);
    out.extend_from_slice(b"d1:ad2:id20:");
    out.extend_from_slice(&node_id);
    out.extend_from_slice(b"e1:q4:ping");
    tail(&mut out, txid);
    out
}

/// True if a datagram may be a KRPC message (a bencoded dictionary).
pub fn looks_like_krpc(datagram: &[u8]) -> bool {
    datagram.first() == Some(&b'd') && datagram.last() == Some(&b'e')
}

/// A BEP 44 `get` for the mutable item at `target` (SHA-1 of its public key), asking nodes to
/// leave the value out unless its sequence number is above `seq`.
pub fn get_query(txid: [u8; 4], node_id: [u8; 20], target: [u8; 20], seq: Option<i64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"d1:ad2:id20:");
    out.extend_from_slice(&node_id);
    if let Some(seq) = seq {
        out.extend_from_slice(format!("3:seqi{seq}e").as_bytes());
    }
    out.extend_from_slice(b"6:target20:");
    out.extend_from_slice(&target);
    out.extend_from_slice(b"e1:q3:get");
    tail(&mut out, txid);
    out
}

/// A BEP 44 `put` of a mutable item (no salt), written as the `mainline` crate writes it: its
/// arguments in key order, with the `target` that library adds.
pub struct Put<'a> {
    /// Node ID of the socket that sends it.
    pub node_id: [u8; 20],
    /// SHA-1 of `key`: where the item lives.
    pub target: [u8; 20],
    /// The write token the node gave us in its answer to our `get`.
    pub token: &'a [u8],
    /// The item's Ed25519 public key.
    pub key: [u8; 32],
    /// Sequence number (higher replaces lower).
    pub seq: i64,
    /// Signature over [`signable`]`(seq, value)`.
    pub sig: [u8; 64],
    /// The value (at most 1000 bytes).
    pub value: &'a [u8],
}

/// A `put` query for `put` with transaction ID `txid`.
pub fn put_query(txid: [u8; 4], put: &Put<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + put.token.len() + put.value.len());
    out.extend_from_slice(b"d1:ad2:id20:");
    out.extend_from_slice(&put.node_id);
    out.extend_from_slice(b"1:k32:");
    out.extend_from_slice(&put.key);
    out.extend_from_slice(format!("3:seqi{}e3:sig64:", put.seq).as_bytes());
    out.extend_from_slice(&put.sig);
    out.extend_from_slice(b"6:target20:");
    out.extend_from_slice(&put.target);
    out.extend_from_slice(format!("5:token{}:", put.token.len()).as_bytes());
    out.extend_from_slice(put.token);
    out.extend_from_slice(format!("1:v{}:", put.value.len()).as_bytes());
    out.extend_from_slice(put.value);
    out.extend_from_slice(b"e1:q3:put");
    tail(&mut out, txid);
    out
}

/// What a mutable item's signature covers (BEP 44, no salt): `3:seqi<seq>e1:v<len>:<value>`.
pub fn signable(seq: i64, value: &[u8]) -> Vec<u8> {
    let mut out = format!("3:seqi{seq}e1:v{}:", value.len()).into_bytes();
    out.extend_from_slice(value);
    out
}

/// Most bytes of a value a node may store (BEP 44).
pub const MAX_VALUE_LEN: usize = 1000;

/// The nodes of a compact node list (BEP 5: 20-byte ID, IPv4 address, port; 26 bytes each),
/// leaving out addresses nobody can be sent to. A list of the wrong length gives nothing.
pub fn compact_nodes(list: &[u8]) -> impl Iterator<Item = ([u8; 20], SocketAddr)> + '_ {
    let whole = list.len().is_multiple_of(26);
    list.chunks_exact(26)
        .filter(move |_| whole)
        .filter_map(|c| {
            let id: [u8; 20] = c[..20].try_into().expect("26-byte chunk");
            let ip = std::net::Ipv4Addr::new(c[20], c[21], c[22], c[23]);
            let port = u16::from_be_bytes([c[24], c[25]]);
            let routable =
                port != 0 && !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast();
            routable.then_some((id, SocketAddr::from((ip, port))))
        })
}

/// What a response to one of our queries says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Response<'a> {
    /// The answering node's ID.
    pub id: Option<[u8; 20]>,
    /// Nodes it knows closer to the target (compact list, see [`compact_nodes`]).
    pub nodes: Option<&'a [u8]>,
    /// The token that lets us `put` at this node.
    pub token: Option<&'a [u8]>,
    /// Where the node saw our query come from.
    pub observed: Option<SocketAddr>,
    /// For a `get`: the stored item's sequence number, if it sent the item.
    pub seq: Option<i64>,
    /// For a `get`: the stored value, if any (its signature is not checked here: our values
    /// are sealed, and opening them is the check that matters).
    pub value: Option<&'a [u8]>,
}

/// The response to our query `txid`, if `datagram` is one. Anything else (other messages, an
/// error reply, malformed input) gives `None`.
pub fn response(datagram: &[u8], txid: [u8; 4]) -> Option<Response<'_>> {
    reply(datagram, txid)?.ok()
}

/// The reply to our query `txid`: a response, or an error reply with its code (for example 302
/// when a `put` carries a sequence number lower than the one stored). Anything else gives
/// `None`.
pub fn reply(datagram: &[u8], txid: [u8; 4]) -> Option<Result<Response<'_>, i64>> {
    if datagram.len() > 1500 {
        return None;
    }
    let mut p = Parser { b: datagram, i: 0 };
    if p.next()? != b'd' {
        return None;
    }
    let (mut t, mut y, mut ip, mut code) = (None, None, None, None);
    let mut out = Response::default();
    while p.peek()? != b'e' {
        let key = p.bytes()?;
        match key {
            b"t" => t = Some(p.bytes()?),
            b"y" => y = Some(p.bytes()?),
            b"ip" => ip = Some(p.bytes()?),
            b"r" if p.peek()? == b'd' => {
                p.i += 1;
                while p.peek()? != b'e' {
                    match p.bytes()? {
                        b"seq" => out.seq = Some(p.int()?),
                        b"v" => out.value = Some(p.bytes()?),
                        b"id" => out.id = Some(p.bytes()?.try_into().ok()?),
                        b"nodes" => out.nodes = Some(p.bytes()?),
                        b"token" => out.token = Some(p.bytes()?),
                        _ => p.skip(1)?,
                    }
                }
                p.i += 1;
            }
            // An error: `l<code><message>e`.
            b"e" if p.peek()? == b'l' => {
                p.i += 1;
                code = Some(p.int()?);
                while p.peek()? != b'e' {
                    p.skip(1)?;
                }
                p.i += 1;
            }
            _ => p.skip(0)?,
        }
    }
    p.next()?;
    if p.i != datagram.len() || t? != txid {
        return None;
    }
    match y? {
        b"r" => {
            out.observed = ip.and_then(compact_addr);
            Some(Ok(out))
        }
        b"e" => Some(Err(code?)),
        _ => None,
    }
}

/// The address a response to our query `txid` says it saw us at.
pub fn observed_address(datagram: &[u8], txid: [u8; 4]) -> Option<SocketAddr> {
    response(datagram, txid)?.observed
}

fn compact_addr(ip: &[u8]) -> Option<SocketAddr> {
    let addr = match ip.len() {
        6 => SocketAddr::new(
            IpAddr::from([ip[0], ip[1], ip[2], ip[3]]),
            u16::from_be_bytes([ip[4], ip[5]]),
        ),
        18 => SocketAddr::new(
            IpAddr::from(<[u8; 16]>::try_from(&ip[..16]).ok()?),
            u16::from_be_bytes([ip[16], ip[17]]),
        ),
        _ => return None,
    };
    (addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()).then_some(addr)
}

/// A bencode reader over one datagram: bounded depth, no allocation.
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

const MAX_DEPTH: usize = 8;

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    /// A decimal number up to `end`.
    fn number(&mut self, end: u8) -> Option<u64> {
        let mut n: u64 = 0;
        let mut digits = 0;
        loop {
            let c = self.next()?;
            if c == end && digits > 0 {
                return Some(n);
            }
            if !c.is_ascii_digit() || digits >= 18 {
                return None;
            }
            n = n * 10 + u64::from(c - b'0');
            digits += 1;
        }
    }

    /// An integer `i<n>e`.
    fn int(&mut self) -> Option<i64> {
        if self.next()? != b'i' {
            return None;
        }
        let negative = self.peek()? == b'-';
        if negative {
            self.i += 1;
        }
        let n = i64::try_from(self.number(b'e')?).ok()?;
        Some(if negative { -n } else { n })
    }

    /// A byte string `len:bytes`.
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.number(b':')?).ok()?;
        let end = self.i.checked_add(len)?;
        let s = self.b.get(self.i..end)?;
        self.i = end;
        Some(s)
    }

    /// Skips one value of any kind.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'i' => {
                self.i += 1;
                if self.peek()? == b'-' {
                    self.i += 1;
                }
                self.number(b'e').map(|_| ())
            }
            b'l' | b'd' => {
                self.i += 1;
                while self.peek()? != b'e' {
                    self.skip(depth + 1)?;
                }
                self.i += 1;
                Some(())
            }
            _ => self.bytes().map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_valid_bencode_with_sorted_keys() {
        let q = ping_query(*b"abcd", [7; 20]);
        assert!(looks_like_krpc(&q));
        let mut p = Parser { b: &q, i: 0 };
        p.skip(0).unwrap();
        assert_eq!(p.i, q.len());
        assert!(q.windows(4).any(|w| w == b"ping"));
        assert!(q.windows(7).any(|w| w == b"2:roi1e"));
        assert!(q.windows(9).any(|w| w == b"1:v4:RS\x00\x05"));
        let mut ids = TxIds::new([0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(ids.next_id(), [0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(ids.next_id(), [0xff, 0xff, 0xff, 0xff]);
        assert_eq!(ids.next_id(), [0, 0, 0, 0]);
    }

    #[test]
    fn the_observed_address_is_read_from_a_response() {
        let mut r = b"d2:ip6:".to_vec();
        r.extend_from_slice(&[198, 51, 100, 2, 0x4e, 0x20]);
        r.extend_from_slice(b"1:rd2:id20:");
        r.extend_from_slice(&[1; 20]);
        r.extend_from_slice(b"e1:t4:abcd1:v4:LT\x01\x021:y1:re");
        assert_eq!(
            observed_address(&r, *b"abcd"),
            Some("198.51.100.2:20000".parse().unwrap())
        );
        // Another transaction, a query, or trailing bytes: not ours.
        assert_eq!(observed_address(&r, *b"zzzz"), None);
        let q = ping_query(*b"abcd", [7; 20]);
        assert_eq!(observed_address(&q, *b"abcd"), None);
        let mut long = r.clone();
        long.push(b'e');
        assert_eq!(observed_address(&long, *b"abcd"), None);
    }

    #[test]
    fn a_get_answer_carries_the_value_and_its_sequence() {
        let q = get_query(*b"abcd", [7; 20], [9; 20], Some(42));
        let mut p = Parser { b: &q, i: 0 };
        p.skip(0).unwrap();
        assert_eq!(p.i, q.len());
        assert!(q.windows(9).any(|w| w == b"3:seqi42e"));
        let mut r = b"d1:rd2:id20:".to_vec();
        r.extend_from_slice(&[1; 20]);
        r.extend_from_slice(b"1:k32:");
        r.extend_from_slice(&[2; 32]);
        r.extend_from_slice(b"5:nodes0:3:seqi1795000000000e3:sig64:");
        r.extend_from_slice(&[3; 64]);
        r.extend_from_slice(b"5:token4:tttt1:v5:hello");
        r.extend_from_slice(b"e1:t4:abcd1:y1:re");
        let got = response(&r, *b"abcd").unwrap();
        assert_eq!(got.seq, Some(1_795_000_000_000));
        assert_eq!(got.value, Some(&b"hello"[..]));
        assert_eq!(got.observed, None);
    }

    #[test]
    fn a_put_is_valid_bencode_with_sorted_keys_and_errors_are_read() {
        let put = Put {
            node_id: [1; 20],
            target: [2; 20],
            token: b"tok",
            key: [3; 32],
            seq: 7,
            sig: [4; 64],
            value: b"value",
        };
        let q = put_query(*b"abcd", &put);
        let mut p = Parser { b: &q, i: 0 };
        p.skip(0).unwrap();
        assert_eq!(p.i, q.len());
        // The arguments' keys in bencode order.
        let order: Vec<usize> = [
            &b"2:id20:"[..],
            b"1:k32:",
            b"3:seqi7e",
            b"3:sig64:",
            b"6:target20:",
            b"5:token3:tok",
            b"1:v5:value",
        ]
        .iter()
        .map(|k| q.windows(k.len()).position(|w| w == *k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert_eq!(signable(7, b"value"), b"3:seqi7e1:v5:value");
        // An error reply: its code, and no response.
        let e = b"d1:eli302e14:sequence lowere1:t4:abcd1:y1:ee";
        assert_eq!(reply(e, *b"abcd"), Some(Err(302)));
        assert_eq!(response(e, *b"abcd"), None);
        assert_eq!(reply(e, *b"zzzz"), None);
    }

    #[test]
    fn compact_node_lists_are_read_and_bad_entries_left_out() {
        let mut list = Vec::new();
        list.extend_from_slice(&[1; 20]);
        list.extend_from_slice(&[192, 0, 2, 1, 0x1a, 0xe1]);
        list.extend_from_slice(&[2; 20]);
        list.extend_from_slice(&[0, 0, 0, 0, 0x1a, 0xe1]); // unspecified
        list.extend_from_slice(&[3; 20]);
        list.extend_from_slice(&[192, 0, 2, 3, 0, 0]); // no port
        list.extend_from_slice(&[4; 20]);
        list.extend_from_slice(&[224, 0, 0, 1, 0x1a, 0xe1]); // multicast
        let nodes: Vec<_> = compact_nodes(&list).collect();
        assert_eq!(nodes, vec![([1; 20], "192.0.2.1:6881".parse().unwrap())]);
        // A list whose length is not a whole number of entries is not trusted at all.
        list.push(0);
        assert_eq!(compact_nodes(&list).count(), 0);
    }

    #[test]
    fn hostile_bencode_is_refused_without_panic() {
        for bad in [
            &b""[..],
            b"d",
            b"de",
            b"d1:t",
            b"d99999999999999999999:xe",
            b"d1:tlllllllllllllllllllllllllllllleeeeeeeeeeeeeeeeeeeeeeeeeee",
            b"d1:ti-e1:y1:re",
            b"d1:rd3:seqi-e1:vi1ee1:t4:abcd1:y1:re",
            b"d1:rd3:seq1:xe1:t4:abcd1:y1:re",
        ] {
            assert_eq!(observed_address(bad, *b"abcd"), None);
            assert_eq!(response(bad, *b"abcd"), None);
        }
        // A well-formed answer with a broken address: the answer stands, the address not.
        let odd = b"d2:ip3:abc1:t4:abcd1:y1:re";
        assert_eq!(observed_address(odd, *b"abcd"), None);
        assert_eq!(response(odd, *b"abcd"), Some(Response::default()));
    }
}
