//! The node's UDP socket, shared by QUIC and hole-punching probes: probes are taken out of
//! what QUIC receives (they can never be QUIC packets, see `core::punch::is_probe`) and
//! handed to the punches running, if any; with none running they are dropped unread.
//!
//! What is left for QUIC passes the gate (`core::access`) first: a datagram that proves
//! neither a ticket, nor a contact's key, nor one of our own connection IDs is dropped here,
//! so QUIC never answers it in any way.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use extrasafe_core::access::{Gate, Verdict};
use extrasafe_core::punch::{is_probe, PROBE_LEN};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::mpsc;

/// A probe as received: where from, and its bytes.
pub(crate) type Probe = (SocketAddr, [u8; PROBE_LEN]);

/// Punches that want probes. A few at most (one call at a time, plus answers).
const MAX_LISTENERS: usize = 4;

pub(crate) struct ProbeSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    listeners: Mutex<Vec<(u64, mpsc::Sender<Probe>)>>,
    /// DHT nodes and STUN servers we asked for our address: their answers come here, not
    /// to QUIC.
    answers: Mutex<Vec<(SocketAddr, mpsc::Sender<Vec<u8>>)>>,
    /// Who QUIC may hear.
    pub(crate) gate: Mutex<Gate>,
    /// This socket's KRPC transaction IDs and DHT node ID, as one `mainline` node keeps them.
    krpc: Mutex<(extrasafe_core::krpc::TxIds, [u8; 20])>,
    ipv6: bool,
}

/// An IPv4-mapped IPv6 address (how a dual-stack socket names IPv4 peers) as plain IPv4.
pub(crate) fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

impl fmt::Debug for ProbeSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeSocket").finish_non_exhaustive()
    }
}

/// Receives probes until dropped.
pub(crate) struct ProbeListener {
    socket: Arc<ProbeSocket>,
    id: u64,
    pub(crate) rx: mpsc::Receiver<Probe>,
}

impl Drop for ProbeListener {
    fn drop(&mut self) {
        self.socket
            .listeners
            .lock()
            .expect("probe listener lock poisoned")
            .retain(|(id, _)| *id != self.id);
    }
}

impl ProbeSocket {
    pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>, gate: Gate) -> Self {
        let ipv6 = inner.local_addr().map(|a| a.is_ipv6()).unwrap_or(false);
        Self {
            inner,
            listeners: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
            gate: Mutex::new(gate),
            krpc: Mutex::new((extrasafe_core::krpc::TxIds::new(random()), random())),
            ipv6,
        }
    }

    /// The next KRPC transaction ID of this socket, and its node ID.
    pub(crate) fn krpc_ids(&self) -> ([u8; 4], [u8; 20]) {
        let mut k = self.krpc.lock().expect("krpc lock poisoned");
        (k.0.next_id(), k.1)
    }

    /// Routes KRPC datagrams from `from` to the returned receiver until `unexpect`.
    pub(crate) fn expect_answer(&self, from: SocketAddr) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(4);
        let from = canonical(from);
        let mut w = self.answers.lock().expect("answer waiter lock poisoned");
        w.retain(|(a, _)| *a != from);
        w.push((from, tx));
        rx
    }

    pub(crate) fn unexpect_answer(&self, from: SocketAddr) {
        let from = canonical(from);
        self.answers
            .lock()
            .expect("answer waiter lock poisoned")
            .retain(|(a, _)| *a != from);
    }

    /// True (and handed over) if the datagram answers one of our DHT or STUN queries.
    fn take_answer(&self, from: SocketAddr, bytes: &[u8]) -> bool {
        if !(extrasafe_core::krpc::looks_like_krpc(bytes)
            || extrasafe_core::stun::looks_like_stun(bytes))
        {
            return false;
        }
        let w = self.answers.lock().expect("answer waiter lock poisoned");
        match w.iter().find(|(a, _)| *a == from) {
            Some((_, tx)) => {
                let _ = tx.try_send(bytes.to_vec());
                true
            }
            None => false,
        }
    }

    /// Starts taking probes; `None` if too many punches run already.
    pub(crate) fn listen(self: &Arc<Self>) -> Option<ProbeListener> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut listeners = self.listeners.lock().expect("probe listener lock poisoned");
        if listeners.len() >= MAX_LISTENERS {
            return None;
        }
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Bounded: a flood beyond what a punch reads is dropped here.
        let (tx, rx) = mpsc::channel(256);
        listeners.push((id, tx));
        Some(ProbeListener {
            socket: self.clone(),
            id,
            rx,
        })
    }

    /// Sends one datagram of ours (not QUIC) now; a full socket buffer drops it (probes and pings are repeated anyway).
    pub(crate) fn send_to(&self, dest: SocketAddr, bytes: &[u8]) {
        let destination = match (self.ipv6, dest) {
            (true, SocketAddr::V4(v4)) => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            _ => dest,
        };
        let t = Transmit {
            destination,
            ecn: None,
            contents: bytes,
            segment_size: None,
            src_ip: None,
        };
        if let Err(e) = self.inner.try_send(&t) {
            tracing::debug!(error = %e, "probe not sent");
        }
    }

    fn deliver(&self, from: SocketAddr, bytes: &[u8]) {
        let Ok(probe) = <[u8; PROBE_LEN]>::try_from(bytes) else {
            return;
        };
        let listeners = self.listeners.lock().expect("probe listener lock poisoned");
        for (_, tx) in listeners.iter() {
            let _ = tx.try_send((from, probe));
        }
    }

    /// Takes the probes out of one received buffer (with GRO, several datagrams of `stride`
    /// bytes, the last maybe shorter); returns the bytes left for QUIC, compacted.
    fn filter(&self, buf: &mut [u8], meta: &RecvMeta, now_ms: u64) -> usize {
        let stride = meta.stride.max(1);
        let len = meta.len.min(buf.len());
        let from = canonical(meta.addr);
        let mut kept = 0;
        let mut start = 0;
        while start < len {
            let end = (start + stride).min(len);
            if is_probe(&buf[start..end]) {
                self.deliver(from, &buf[start..end]);
            } else if !self.take_answer(from, &buf[start..end])
                && self.admit(from, &buf[start..end], now_ms)
            {
                if kept != start {
                    buf.copy_within(start..end, kept);
                }
                kept += end - start;
            }
            start = end;
        }
        kept
    }
}

impl ProbeSocket {
    /// The gate's verdict on one datagram for QUIC: true to hand it over.
    fn admit(&self, from: SocketAddr, datagram: &[u8], now_ms: u64) -> bool {
        let verdict = self
            .gate
            .lock()
            .expect("gate lock poisoned")
            .check(now_ms, from, datagram);
        match verdict {
            Verdict::Pass | Verdict::Repeat => true,
            Verdict::Admit(how) => {
                tracing::debug!(?how, "first flight admitted");
                true
            }
            Verdict::Drop(why) => {
                tracing::trace!(?why, "datagram dropped unanswered");
                false
            }
        }
    }
}

impl AsyncUdpSocket for ProbeSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // A flood of probes must not keep this task from yielding.
        for _ in 0..64 {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            // Keep what is left for QUIC in the first slots.
            let now_ms = crate::gate::unix_ms();
            let mut out = 0;
            for i in 0..n {
                let kept = self.filter(&mut bufs[i], &meta[i], now_ms);
                if kept == 0 {
                    continue;
                }
                meta[i].len = kept;
                if out != i {
                    meta[out] = meta[i];
                    let (head, tail) = bufs.split_at_mut(i);
                    head[out][..kept].copy_from_slice(&tail[0][..kept]);
                }
                out += 1;
            }
            if out > 0 {
                return Poll::Ready(Ok(out));
            }
            // Only probes arrived: look again (the inner socket registers the waker when
            // nothing is left).
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}
