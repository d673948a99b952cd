//! Walks through a simulated DHT on virtual time.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::*;

/// A deterministic random source (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn id(&mut self) -> [u8; 20] {
        let mut id = [0u8; 20];
        for chunk in id.chunks_mut(8) {
            let r = self.next().to_be_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        id
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Honest,
    Silent,
    /// Names nodes that do not exist, with IDs right next to the target.
    Sybil,
}

struct SimNode {
    id: [u8; 20],
    addr: SocketAddr,
    latency: u64,
    kind: Kind,
    known: Vec<usize>,
    store: HashMap<[u8; 20], (i64, Vec<u8>)>,
}

struct Sim {
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    rng: Rng,
}

fn bucket(a: &[u8; 20], b: &[u8; 20]) -> u32 {
    let d = distance(a, b);
    let mut zeros = 0;
    for byte in d {
        if byte == 0 {
            zeros += 8;
        } else {
            zeros += byte.leading_zeros();
            break;
        }
    }
    zeros
}

/// Finds `after` in `q` and reads the bytes that follow: `n` of them.
fn field<'a>(q: &'a [u8], after: &[u8], n: usize) -> Option<&'a [u8]> {
    let at = q.windows(after.len()).position(|w| w == after)? + after.len();
    q.get(at..at + n)
}

/// Reads `<len>:` after `after`, then that many bytes.
fn string_field<'a>(q: &'a [u8], after: &[u8]) -> Option<&'a [u8]> {
    let at = q.windows(after.len()).position(|w| w == after)? + after.len();
    let colon = at + q[at..].iter().position(|b| *b == b':')?;
    let len: usize = std::str::from_utf8(&q[at..colon]).ok()?.parse().ok()?;
    q.get(colon + 1..colon + 1 + len)
}

fn int_field(q: &[u8], after: &[u8]) -> Option<i64> {
    let at = q.windows(after.len()).position(|w| w == after)? + after.len();
    let end = at + q[at..].iter().position(|b| *b == b'e')?;
    std::str::from_utf8(&q[at..end]).ok()?.parse().ok()
}

impl Sim {
    /// `n` nodes, each knowing up to 8 others per bucket (a Kademlia routing table).
    fn new(n: usize, seed: u64, silent: f64, sybils: usize) -> Self {
        let mut rng = Rng(seed);
        let mut nodes: Vec<SimNode> = (0..n)
            .map(|i| {
                let addr = SocketAddr::from(([10, (i >> 8) as u8, i as u8, 1], 6881));
                let latency = 10 + rng.next() % 60;
                let kind = if i < sybils {
                    Kind::Sybil
                } else if (rng.next() % 1000) as f64 / 1000.0 < silent {
                    Kind::Silent
                } else {
                    Kind::Honest
                };
                SimNode {
                    id: rng.id(),
                    addr,
                    latency,
                    kind,
                    known: Vec::new(),
                    store: HashMap::new(),
                }
            })
            .collect();
        Self::with_tables(&mut nodes, &mut rng);
        let by_addr = nodes.iter().enumerate().map(|(i, n)| (n.addr, i)).collect();
        Self {
            nodes,
            by_addr,
            rng,
        }
    }

    /// `n` honest nodes at public addresses, each with an ID that fits its address by
    /// BEP 42, and `close` more right next to `target` whose IDs do not fit theirs (chosen,
    /// not derived; every other one at a private address, which BEP 42 exempts): they answer
    /// and store like the others.
    fn public(n: usize, seed: u64, target: [u8; 20], close: usize) -> Self {
        let mut rng = Rng(seed);
        let mut nodes: Vec<SimNode> = (0..n + close)
            .map(|i| {
                let ip = if i >= n && (i - n) % 2 == 1 {
                    std::net::Ipv4Addr::new(10, 77, (i >> 8) as u8, i as u8)
                } else {
                    std::net::Ipv4Addr::new(45 + (i % 7) as u8, (i >> 8) as u8, i as u8, 9)
                };
                let rest = rng.id();
                let id = if i < n {
                    crate::bep42::id_for_v4(ip, rest[19], rest)
                } else {
                    let mut id = target;
                    id[19] ^= 1 + i as u8;
                    id
                };
                SimNode {
                    id,
                    addr: SocketAddr::from((ip, 6881)),
                    latency: 10 + rng.next() % 60,
                    kind: Kind::Honest,
                    known: Vec::new(),
                    store: HashMap::new(),
                }
            })
            .collect();
        Self::with_tables(&mut nodes, &mut rng);
        let by_addr = nodes.iter().enumerate().map(|(i, n)| (n.addr, i)).collect();
        Self {
            nodes,
            by_addr,
            rng,
        }
    }

    /// Gives each node a Kademlia routing table: up to 8 others per bucket, those whose IDs
    /// fit their addresses (BEP 42) first, as Mainline's own tables keep them.
    fn with_tables(nodes: &mut [SimNode], rng: &mut Rng) {
        let n = nodes.len();
        for i in 0..n {
            let mut per_bucket: HashMap<u32, usize> = HashMap::new();
            let start = (rng.next() % n as u64) as usize;
            let mut order: Vec<usize> = (0..n).map(|j| (j + start) % n).collect();
            order.sort_by_key(|j| !crate::bep42::fits(nodes[*j].addr.ip(), &nodes[*j].id));
            for j in order {
                if j == i {
                    continue;
                }
                let b = bucket(&nodes[i].id, &nodes[j].id);
                let count = per_bucket.entry(b).or_default();
                if *count < 8 {
                    *count += 1;
                    nodes[i].known.push(j);
                }
            }
        }
    }

    fn seed_addrs(&self, n: usize) -> Vec<(SocketAddr, Option<[u8; 20]>)> {
        self.nodes
            .iter()
            .filter(|n| n.kind == Kind::Honest)
            .take(n)
            .map(|n| (n.addr, None))
            .collect()
    }

    /// The `k` honest nodes closest to `target`, as the walk should find them.
    fn truly_closest(&self, target: &[u8; 20], k: usize) -> Vec<SocketAddr> {
        let mut honest: Vec<&SimNode> = self
            .nodes
            .iter()
            .filter(|n| n.kind == Kind::Honest)
            .collect();
        honest.sort_by_key(|n| distance(&n.id, target));
        honest.iter().take(k).map(|n| n.addr).collect()
    }

    /// The answer node `to` sends to `query`, and how long it takes to arrive.
    fn answer(&mut self, to: SocketAddr, query: &[u8]) -> Option<(u64, Vec<u8>)> {
        let i = *self.by_addr.get(&to)?;
        let txid = field(query, b"1:t4:", 4)?.to_vec();
        let node = &self.nodes[i];
        if node.kind == Kind::Silent {
            return None;
        }
        let latency = node.latency;
        let mut r = b"d1:rd2:id20:".to_vec();
        r.extend_from_slice(&node.id);
        if query.windows(8).any(|w| w == b"1:q3:put") {
            let target: [u8; 20] = field(query, b"6:target20:", 20)?.try_into().ok()?;
            let token = string_field(query, b"5:token")?;
            if token != b"tk" {
                return Some((latency, error_reply(&txid, 203)));
            }
            let seq = int_field(query, b"3:seqi")?;
            let value = string_field(query, b"1:v")?.to_vec();
            let node = &mut self.nodes[i];
            if node.store.get(&target).is_some_and(|(s, _)| *s > seq) {
                return Some((latency, error_reply(&txid, 302)));
            }
            node.store.insert(target, (seq, value));
            r.extend_from_slice(b"e1:t4:");
            r.extend_from_slice(&txid);
            r.extend_from_slice(b"1:y1:re");
            return Some((latency, r));
        }
        let target: [u8; 20] = field(query, b"6:target20:", 20)?.try_into().ok()?;
        let mut list = Vec::new();
        if node.kind == Kind::Sybil {
            // Fifty made-up nodes a hair from the target, at addresses where nobody answers.
            for j in 0..50u8 {
                let mut id = target;
                id[19] ^= j + 1;
                list.extend_from_slice(&id);
                list.extend_from_slice(&[192, 0, 2, j, 0x1a, 0xe1]);
            }
        } else {
            let mut known = node.known.clone();
            known.sort_by_key(|j| distance(&self.nodes[*j].id, &target));
            for j in known.into_iter().take(8) {
                let n = &self.nodes[j];
                list.extend_from_slice(&n.id);
                match n.addr {
                    SocketAddr::V4(a) => list.extend_from_slice(&a.ip().octets()),
                    SocketAddr::V6(_) => unreachable!(),
                }
                list.extend_from_slice(&n.addr.port().to_be_bytes());
            }
        }
        r.extend_from_slice(format!("5:nodes{}:", list.len()).as_bytes());
        r.extend_from_slice(&list);
        if let Some((seq, v)) = node.store.get(&target) {
            r.extend_from_slice(format!("3:seqi{seq}e").as_bytes());
            r.extend_from_slice(b"5:token2:tk");
            r.extend_from_slice(format!("1:v{}:", v.len()).as_bytes());
            r.extend_from_slice(v);
        } else {
            r.extend_from_slice(b"5:token2:tk");
        }
        r.extend_from_slice(b"e1:t4:");
        r.extend_from_slice(&txid);
        r.extend_from_slice(b"1:y1:re");
        let _ = self.rng.next();
        Some((latency, r))
    }
}

fn error_reply(txid: &[u8], code: i64) -> Vec<u8> {
    let mut r = format!("d1:eli{code}e4:nopee1:t4:").into_bytes();
    r.extend_from_slice(txid);
    r.extend_from_slice(b"1:y1:ee");
    r
}

/// Runs `walk` to its end from time `now`; gives the time it ended and every query sent.
fn run(sim: &mut Sim, walk: &mut Walk, mut now: u64) -> (u64, Vec<(SocketAddr, Vec<u8>)>) {
    let mut sent = Vec::new();
    let mut arriving: Vec<(u64, SocketAddr, Vec<u8>)> = Vec::new();
    for _ in 0..100_000 {
        while let Some((to, q)) = walk.poll_transmit(now) {
            if let Some((latency, answer)) = sim.answer(to, &q) {
                arriving.push((now + latency, to, answer));
            }
            sent.push((to, q));
        }
        if walk.is_done() {
            return (now, sent);
        }
        let next = arriving
            .iter()
            .map(|a| a.0)
            .chain(walk.poll_timeout(now))
            .min()
            .expect("a walk that is not done waits for something");
        now = now.max(next);
        let (due, later): (Vec<_>, Vec<_>) = arriving.into_iter().partition(|a| a.0 <= now);
        arriving = later;
        for (_, from, datagram) in due {
            walk.handle(now, from, &datagram);
        }
        walk.handle_timeout(now);
    }
    panic!("the walk never ended");
}

fn walk_to(target: [u8; 20], id: u8, seeds: &[(SocketAddr, Option<[u8; 20]>)]) -> Walk {
    Walk::new(
        target,
        [id; 20],
        TxIds::new([0, 0, 1, 0]),
        None,
        seeds,
        Limits::default(),
    )
}

#[test]
fn a_walk_finds_the_closest_nodes_from_two_bootstrap_nodes() {
    let mut sim = Sim::new(600, 1, 0.0, 0);
    for round in 0..20 {
        let target = sim.rng.id();
        let mut walk = walk_to(target, 7, &sim.seed_addrs(2));
        let (_, sent) = run(&mut sim, &mut walk, 1_000);
        let found: Vec<SocketAddr> = walk.closest().iter().map(|c| c.0).collect();
        assert_eq!(found, sim.truly_closest(&target, 8), "round {round}");
        assert!(sent.len() <= Limits::default().max_queries);
    }
}

#[test]
fn every_query_of_a_walk_carries_its_node_id_and_counting_transaction_ids() {
    let mut sim = Sim::new(300, 2, 0.0, 0);
    let target = sim.rng.id();
    let mut walk = walk_to(target, 9, &sim.seed_addrs(2));
    let (_, sent) = run(&mut sim, &mut walk, 0);
    assert!(sent.len() > 3);
    for (n, (_, q)) in sent.iter().enumerate() {
        assert_eq!(field(q, b"2:id20:", 20), Some(&[9u8; 20][..]));
        let txid = field(q, b"1:t4:", 4).unwrap();
        assert_eq!(u32::from_be_bytes(txid.try_into().unwrap()), 256 + n as u32);
        assert!(q.windows(9).any(|w| w == b"1:v4:RS\x00\x05"));
    }
    // The counter goes on where the walk left it.
    assert_eq!(
        u32::from_be_bytes(walk.txids().next_id()),
        256 + sent.len() as u32
    );
}

#[test]
fn a_stored_item_is_read_by_a_later_walk_from_elsewhere() {
    let mut sim = Sim::new(400, 3, 0.0, 0);
    let target = sim.rng.id();
    let item = Item {
        key: [1; 32],
        seq: 42,
        sig: [2; 64],
        value: b"sealed record".to_vec(),
    };
    let mut put = walk_to(target, 1, &sim.seed_addrs(2))
        .store(item.clone())
        .unwrap();
    let (_, sent) = run(&mut sim, &mut put, 0);
    assert_eq!(put.stored(), 8);
    let puts: Vec<_> = sent
        .iter()
        .filter(|(_, q)| q.windows(8).any(|w| w == b"1:q3:put"))
        .collect();
    assert_eq!(puts.len(), 8);
    for (to, q) in &puts {
        assert!(sim.truly_closest(&target, 8).contains(to));
        assert_eq!(field(q, b"1:k32:", 32), Some(&[1u8; 32][..]));
        assert_eq!(field(q, b"3:sig64:", 64), Some(&[2u8; 64][..]));
    }
    // Another reader, starting from other nodes.
    let seeds: Vec<_> = sim.seed_addrs(10).into_iter().skip(8).collect();
    let mut get = walk_to(target, 2, &seeds);
    run(&mut sim, &mut get, 5_000);
    let found = get.take_found();
    assert!(!found.is_empty());
    assert!(found.iter().all(|f| f.seq == 42 && f.value == item.value));
    // A node with a newer value refuses an older one: not counted as stored.
    let older = Item { seq: 41, ..item };
    let mut stale = walk_to(target, 3, &sim.seed_addrs(2)).store(older).unwrap();
    run(&mut sim, &mut stale, 9_000);
    assert_eq!(stale.stored(), 0);
    assert!(stale.is_done());
}

#[test]
fn silent_nodes_do_not_hold_a_walk_up() {
    let mut sim = Sim::new(600, 4, 0.3, 0);
    let limits = Limits::default();
    for round in 0..10 {
        let target = sim.rng.id();
        let mut walk = walk_to(target, 5, &sim.seed_addrs(2));
        let (ended, _) = run(&mut sim, &mut walk, 0);
        // A walk that waited for each silent node would take a timeout per round of queries.
        assert!(
            ended < limits.timeout_ms,
            "round {round} took {ended} ms of virtual time"
        );
        let truly = sim.truly_closest(&target, 8);
        let found: Vec<SocketAddr> = walk.closest().iter().map(|c| c.0).collect();
        let hits = found.iter().filter(|a| truly.contains(a)).count();
        assert!(hits >= 7, "round {round}: {hits} of the 8 closest");
    }
}

#[test]
fn nodes_that_name_made_up_neighbours_cost_a_bounded_walk() {
    let mut sim = Sim::new(300, 5, 0.0, 6);
    let target = sim.rng.id();
    // Start at the liars themselves.
    let seeds: Vec<_> = sim.nodes[..6].iter().map(|n| (n.addr, None)).collect();
    let limits = Limits::default();
    let mut walk = walk_to(target, 6, &seeds);
    let (_, sent) = run(&mut sim, &mut walk, 0);
    assert!(walk.is_done());
    assert!(sent.len() <= limits.max_queries);
    assert!(walk.candidates.len() <= limits.max_candidates);
    // Only nodes that answered are given back as closest: none of the made-up ones.
    assert!(walk
        .closest()
        .iter()
        .all(|(a, _)| sim.by_addr.contains_key(a)));
}

#[test]
fn answers_from_elsewhere_or_to_other_queries_are_ignored() {
    let mut sim = Sim::new(50, 6, 0.0, 0);
    let target = sim.rng.id();
    let seeds = sim.seed_addrs(1);
    let mut walk = walk_to(target, 8, &seeds);
    let (to, q) = walk.poll_transmit(0).unwrap();
    let (_, answer) = sim.answer(to, &q).unwrap();
    // From another address, the same bytes: nothing changes.
    walk.handle(10, "10.99.0.1:6881".parse().unwrap(), &answer);
    assert!(walk.answered().is_empty());
    // Garbage and a reply to another transaction.
    walk.handle(10, to, b"d1:rd2:id20:xxxxxxxxxxxxxxxxxxxxe1:t4:zzzz1:y1:re");
    walk.handle(10, to, b"\xff\x00garbage");
    assert!(walk.answered().is_empty());
    walk.handle(10, to, &answer);
    assert_eq!(walk.answered().len(), 1);
    // The same answer again changes nothing.
    let before = walk.candidates.len();
    walk.handle(11, to, &answer);
    assert_eq!(walk.candidates.len(), before);
}

#[test]
fn a_walk_with_no_seeds_ends_at_once_and_an_oversized_item_is_refused() {
    let mut walk = walk_to([0; 20], 1, &[]);
    assert_eq!(walk.poll_transmit(0), None);
    assert!(walk.is_done());
    let big = Item {
        key: [0; 32],
        seq: 1,
        sig: [0; 64],
        value: vec![0; krpc::MAX_VALUE_LEN + 1],
    };
    assert_eq!(
        walk_to([0; 20], 1, &[]).store(big).unwrap_err(),
        ItemError::TooLarge
    );
}

#[test]
fn a_seed_given_by_address_only_is_placed_by_its_id_once_another_node_names_it() {
    // A bootstrap list that holds every node (as a private testnet's does): the nodes
    // closest to the target are among the seeds, known only by address, and must still be
    // found (once an answer names them with their IDs) rather than left at the end.
    for seed in 0..10 {
        let mut sim = Sim::new(60, 40 + seed, 0.0, 0);
        let target = sim.rng.id();
        let mut all = sim.seed_addrs(60);
        // The closest last, so that the walk reaches them only by their IDs.
        let closest = sim.truly_closest(&target, 8);
        all.sort_by_key(|(a, _)| closest.contains(a));
        let mut walk = walk_to(target, 3, &all);
        run(&mut sim, &mut walk, 0);
        let found: Vec<SocketAddr> = walk.closest().iter().map(|c| c.0).collect();
        assert_eq!(found, closest, "seed {seed}");
    }
}

/// Nodes that chose IDs right next to the target (closer than any other) but whose IDs do
/// not fit their public addresses (BEP 42), or that sit at private addresses (exempt, so
/// anyone can name one with any ID), are neither stored at nor among the closest a later
/// poll asks: the item goes to the 8 closest nodes whose IDs fit. A reader finds it there.
#[test]
fn nodes_whose_ids_do_not_fit_their_addresses_are_not_where_items_go() {
    for seed in 0..10u64 {
        let target = Rng(seed ^ 0xb42).id();
        let mut sim = Sim::public(400, seed, target, 4);
        let liars: Vec<SocketAddr> = sim.nodes[400..].iter().map(|n| n.addr).collect();
        // They are the very closest by distance, and their IDs do not fit.
        let farthest_liar = sim.nodes[400..]
            .iter()
            .map(|n| distance(&n.id, &target))
            .max()
            .unwrap();
        assert!(sim.nodes[..400]
            .iter()
            .all(|n| distance(&n.id, &target) > farthest_liar));
        assert!(sim.nodes[400..].iter().all(|n| {
            crate::bep42::exempt(n.addr.ip()) || !crate::bep42::fits(n.addr.ip(), &n.id)
        }));
        let seeds: Vec<_> = sim.nodes[..2].iter().map(|n| (n.addr, None)).collect();
        let item = Item {
            key: [1; 32],
            seq: 5,
            sig: [2; 64],
            value: b"sealed".to_vec(),
        };
        let mut put = walk_to(target, 1, &seeds).store(item).unwrap();
        let (now, sent) = run(&mut sim, &mut put, 0);
        let stored_at: Vec<SocketAddr> = sent
            .iter()
            .filter(|(_, q)| q.windows(8).any(|w| w == b"1:q3:put"))
            .map(|(a, _)| *a)
            .collect();
        let mut fitting: Vec<&SimNode> = sim.nodes[..400].iter().collect();
        fitting.sort_by_key(|n| distance(&n.id, &target));
        let best: Vec<SocketAddr> = fitting.iter().take(8).map(|n| n.addr).collect();
        assert!(
            stored_at.iter().all(|a| !liars.contains(a)),
            "seed {seed}: stored at a node whose ID does not fit"
        );
        // (Liars named in answers take places honest neighbours would have had: a walk
        // may miss one or two of the 8 closest; the reader below still finds the item.)
        assert!(
            best.iter().filter(|a| stored_at.contains(a)).count() >= 6,
            "seed {seed}: {stored_at:?} against {best:?}"
        );
        assert!(put.closest().iter().all(|(a, _)| !liars.contains(a)));
        // A reader from elsewhere finds it among the nodes whose IDs fit.
        let seeds: Vec<_> = sim.nodes[200..202].iter().map(|n| (n.addr, None)).collect();
        let mut get = walk_to(target, 2, &seeds);
        run(&mut sim, &mut get, now);
        let found = get.take_found();
        assert!(
            found.iter().any(|f| f.value == b"sealed"),
            "seed {seed}: not found"
        );
        assert!(get.closest().iter().all(|(a, _)| !liars.contains(a)));
    }
}
