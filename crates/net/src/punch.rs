//! Hole punching on the node's own socket (the sans-IO logic is `core::punch`): the caller
//! punches, then opens QUIC on the first address that answered; the callee punches back and
//! keeps answering until that connection is secured.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use extrasafe_core::punch::{
    Candidate, NatMapping, PunchEvent, PunchKey, PunchReport, PunchRole, Puncher,
};
use extrasafe_core::{PeerId, Ticket};
use tracing::debug;

use crate::call::Call;
use crate::error::CallError;
use crate::node::Node;
use crate::probe_socket::ProbeListener;

/// Everything one side needs to punch towards the other.
#[derive(Debug)]
pub struct PunchPlan {
    /// The other side.
    pub peer: PeerId,
    /// The probe key of this call attempt (both sides derive the same).
    pub key: PunchKey,
    /// The other side's addresses.
    pub candidates: Vec<Candidate>,
    /// How our NAT maps, if measured (for the explanation when nothing works).
    pub our_nat: NatMapping,
    /// How theirs maps, as their record said.
    pub their_nat: NatMapping,
    /// Send no probe of our own until the peer's first one arrives or this long has passed
    /// (see [`crate::dht::CALLER_HOLD`]); answers go out at once.
    pub hold: Duration,
}

impl PunchPlan {
    /// A plan with nothing known about either NAT.
    pub fn new(peer: PeerId, key: PunchKey, candidates: Vec<Candidate>) -> Self {
        Self {
            peer,
            key,
            candidates,
            our_nat: NatMapping::Unknown,
            their_nat: NatMapping::Unknown,
            hold: Duration::ZERO,
        }
    }
}

/// A punch that found a path.
#[derive(Clone, Debug)]
pub struct Punched {
    /// The peer's address that answered.
    pub remote: SocketAddr,
    /// Round trip of the probe that proved it.
    pub rtt: Duration,
    /// Our address as the peer saw it (a reflexive candidate for next time).
    pub observed: Option<SocketAddr>,
    /// Counts of the punch.
    pub report: PunchReport,
}

impl crate::node::Handle {
    fn start_punch(&self, mut plan: PunchPlan, role: PunchRole) -> Result<Run, CallError> {
        // A socket bound to IPv4 cannot send to IPv6 (a dual-stack one reaches both).
        if self.local_addr().is_ipv4() {
            plan.candidates
                .retain(|c| c.addr.is_ipv4() || c.addr.ip().to_canonical().is_ipv4());
        }
        if plan.candidates.is_empty() {
            return Err(CallError::NoAddress);
        }
        let listener = self.socket.listen().ok_or(CallError::AlreadyInCall)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS random source works");
        let mut puncher = Puncher::new(
            plan.key,
            role,
            &plan.candidates,
            self.shared.config.punch.clone(),
            seed,
            Instant::now(),
        );
        puncher.set_nat(plan.our_nat, plan.their_nat);
        if !plan.hold.is_zero() {
            puncher.hold_pings(Instant::now() + plan.hold);
        }
        Ok(Run {
            puncher,
            listener,
            socket: self.socket.clone(),
        })
    }

    /// See [`Node::punch`].
    pub(crate) async fn punch(&self, plan: PunchPlan) -> Result<Punched, CallError> {
        self.start_punch(plan, PunchRole::Controlling)?
            .until_working()
            .await
    }
}

impl Node {
    /// Punches towards the plan's candidates and returns the first address that answered
    /// (the caller's side).
    pub async fn punch(&self, plan: PunchPlan) -> Result<Punched, CallError> {
        self.handle().punch(plan).await
    }

    /// The callee's side of a punch: probes the caller's candidates (opening our NAT towards
    /// it) and answers its probes until its connection to us is secured. Returns the counts
    /// then; fails when no connection came in time.
    pub async fn answer_punch(&self, plan: PunchPlan) -> Result<PunchReport, CallError> {
        let peer = plan.peer;
        let mut secured = self.shared.secured.subscribe();
        let mut run = self.handle().start_punch(plan, PunchRole::Controlled)?;
        let limit = tokio::time::sleep(
            self.shared.config.punch.timeout + self.shared.config.handshake_timeout,
        );
        tokio::pin!(limit);
        loop {
            tokio::select! {
                _ = &mut limit => {
                    return Err(CallError::NoDirectPath(run.puncher.report().clone()))
                }
                p = secured.recv() => match p {
                    Ok(p) if p == peer => return Ok(run.puncher.report().clone()),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return Err(CallError::Closed),
                },
                r = run.step() => {
                    r.map_err(|_| CallError::Closed)?;
                    while let Some(ev) = run.puncher.poll_event() {
                        if let PunchEvent::Failed(report) = ev {
                            return Err(CallError::NoDirectPath(report));
                        }
                    }
                }
            }
        }
    }

    /// Calls the plan's peer by punching towards its candidates first (both sides must punch
    /// at once, with the same key: the callee learns of the call through the rendezvous
    /// record).
    pub async fn call_punched(&self, plan: PunchPlan) -> Result<Call, CallError> {
        self.call_punched_with(plan, None).await
    }

    /// [`Node::call_punched`], proving `contact` (the pair key of the rendezvous) to the peer.
    pub(crate) async fn call_punched_with(
        &self,
        plan: PunchPlan,
        contact: Option<extrasafe_core::access::AccessKey>,
    ) -> Result<Call, CallError> {
        let peer = plan.peer;
        if peer == self.peer_id() {
            return Err(CallError::CallingSelf);
        }
        if self.in_call() {
            return Err(CallError::AlreadyInCall);
        }
        let punched = self.punch(plan).await?;
        debug!(remote = %punched.remote, rtt = ?punched.rtt, "punched");
        self.call_with(
            &Ticket {
                peer,
                secret: None,
                addrs: vec![punched.remote],
            },
            contact,
        )
        .await
    }
}

struct Run {
    puncher: Puncher,
    listener: ProbeListener,
    socket: std::sync::Arc<crate::probe_socket::ProbeSocket>,
}

impl Run {
    async fn until_working(&mut self) -> Result<Punched, CallError> {
        loop {
            self.step().await.map_err(|_| CallError::Closed)?;
            if let Some(ev) = self.puncher.poll_event() {
                match ev {
                    PunchEvent::Working {
                        remote,
                        rtt,
                        observed,
                    } => {
                        // Send what is queued (the pong that may have completed the peer's
                        // check too) before handing over.
                        self.flush();
                        return Ok(Punched {
                            remote,
                            rtt,
                            observed,
                            report: self.puncher.report().clone(),
                        });
                    }
                    PunchEvent::Failed(report) => return Err(CallError::NoDirectPath(report)),
                }
            }
        }
    }

    fn flush(&mut self) {
        let now = Instant::now();
        while let Some(t) = self.puncher.poll_transmit(now) {
            self.socket.send_to(t.dest, &t.bytes);
        }
    }

    /// Sends what is due, then waits for one probe or timer.
    async fn step(&mut self) -> Result<(), ()> {
        self.flush();
        let sleep = match self.puncher.poll_timeout() {
            Some(t) => tokio::time::sleep_until(t.into()),
            // Stopped: only answers are left to send, when probes come.
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            p = self.listener.rx.recv() => {
                let (from, bytes) = p.ok_or(())?;
                self.puncher.handle(Instant::now(), from, &bytes);
            }
            _ = sleep => self.puncher.handle_timeout(Instant::now()),
        }
        Ok(())
    }
}
