//! Being reachable while running: the services a node owns so that its contacts find it
//! without an address, and what they report.
//!
//! [`Presence::start`] announces us on this network (blinded mDNS), keeps our sealed records
//! on the DHT, asks the router to forward a port, and answers each contact's call intent
//! with a punch (the contact's connection then arrives at the node as an incoming call).
//! Everything it learns goes out as [`ReachEvent`]s; the front end words them.

use std::sync::Arc;

use extrasafe_core::{Identity, PeerId};
use extrasafe_net::dht::{self, DhtConfig, DhtError, Reachability};
use extrasafe_net::lan::{self, LanError};
use extrasafe_net::portmap::{MapState, Mapping, PortMapConfig, PortMapper};
use extrasafe_net::punch::PunchPlan;
use extrasafe_net::{CallError, Node};
use tokio::sync::{mpsc, watch};

use crate::AbortOnDrop;

/// Which reachability services run, and how.
#[derive(Clone, Debug)]
pub struct ReachConfig {
    /// Announce on / browse this network (mDNS).
    pub lan: bool,
    /// Records and lookups on the DHT.
    pub dht: bool,
    /// DHT nodes to join through (`host:port`); empty: Mainline's public bootstrap nodes.
    pub dht_bootstrap: Vec<String>,
    /// STUN servers (`host:port`) that tell us our public address, besides DHT nodes.
    pub stun: Vec<String>,
    /// Ask the router to forward a port (PCP, NAT-PMP, UPnP) while the DHT is used.
    pub port_mapping: bool,
    /// The DHT's other settings (socket, timeouts, cadence): the defaults are for the public
    /// DHT; `bootstrap` and `stun` here are replaced by the fields above.
    pub dht_settings: DhtConfig,
}

impl Default for ReachConfig {
    fn default() -> Self {
        Self {
            lan: true,
            dht: true,
            dht_bootstrap: Vec::new(),
            stun: Vec::new(),
            port_mapping: true,
            dht_settings: DhtConfig::default(),
        }
    }
}

/// What the reachability services report (exhaustive on purpose: a front end that does not
/// word a new event does not build).
#[derive(Debug)]
pub enum ReachEvent {
    /// A STUN server's name did not resolve; it is left out.
    StunUnresolved {
        server: String,
        error: std::io::Error,
    },
    /// Announced on this network, for this many contacts.
    LanAnnounced { contacts: usize },
    /// This network cannot be used (contacts here need the ticket).
    LanUnavailable(LanError),
    /// Joining the DHT for this many contacts (its nodes see our IP address).
    DhtJoining { contacts: usize },
    /// The DHT cannot be joined (contacts elsewhere need the ticket).
    DhtUnavailable(DhtError),
    /// Our records were stored anew: what they say, and for how many contacts.
    Reachable { us: Reachability, contacts: usize },
    /// The router forwards a port to the call socket.
    PortMapped(Mapping),
    /// A contact's key cannot make a pair secret (a corrupt contact list): nothing runs for
    /// the contacts.
    ContactsUnusable(DhtError),
    /// A contact tried to call without our address, and no direct path could be made.
    NoPath { peer: PeerId, error: CallError },
}

/// Where reachability events go.
pub type Events = mpsc::UnboundedSender<ReachEvent>;

/// The DHT settings, with STUN servers' names resolved (IPv4 only: the addresses learnt this
/// way are published for IPv4 peers). A name that does not resolve is reported and skipped.
pub async fn dht_config(config: &ReachConfig, events: &Events) -> DhtConfig {
    let mut stun = Vec::new();
    for server in &config.stun {
        match tokio::net::lookup_host(server.as_str()).await {
            Ok(addrs) => stun.extend(addrs.filter(|a| a.is_ipv4()).take(2)),
            Err(error) => {
                let _ = events.send(ReachEvent::StunUnresolved {
                    server: server.clone(),
                    error,
                });
            }
        }
    }
    DhtConfig {
        bootstrap: config.dht_bootstrap.clone(),
        stun,
        ..config.dht_settings.clone()
    }
}

/// Asks the router to forward `port`, reporting the mapping when it is made (again) until
/// the returned guard is dropped.
pub fn port_mapping(port: u16, events: &Events) -> (PortMapper, AbortOnDrop) {
    let mapper = PortMapper::start(port, PortMapConfig::default());
    let mut state = mapper.watch();
    let events = events.clone();
    let task = tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let now = *state.borrow_and_update();
            if let MapState::Mapped(m) = now {
                if events.send(ReachEvent::PortMapped(m)).is_err() {
                    return;
                }
            }
        }
    });
    (mapper, AbortOnDrop(task))
}

/// What runs while a node is reachable; stopped by [`Presence::stop`] (politely: mDNS goodbye
/// records, the port mapping deleted) or by dropping it.
#[derive(Default)]
pub struct Presence {
    lan: Option<lan::Announcement>,
    mapper: Option<PortMapper>,
    tasks: Vec<AbortOnDrop>,
    /// What is running: announced on the LAN, records on the DHT.
    pub lan_on: bool,
    pub dht_on: bool,
}

impl Presence {
    /// Starts the services `config` asks for, for `peers` (our contacts; with none, or with
    /// the LAN and DHT off, nothing runs: contacts then need the ticket).
    pub async fn start(
        node: Arc<Node>,
        identity: &Identity,
        peers: &[PeerId],
        config: &ReachConfig,
        events: Events,
    ) -> Self {
        let mut p = Self::default();
        if peers.is_empty() || !(config.lan || config.dht) {
            return p;
        }
        if config.lan {
            match dht::pair_secrets(identity, peers) {
                Err(e) => {
                    let _ = events.send(ReachEvent::ContactsUnusable(e));
                }
                Ok(pairs) => match lan::Lan::start(&pairs) {
                    Ok(l) => {
                        p.lan = Some(
                            Arc::new(l)
                                .announce(node.local_addr().port(), node.roots())
                                .await,
                        );
                        p.lan_on = true;
                        let _ = events.send(ReachEvent::LanAnnounced {
                            contacts: peers.len(),
                        });
                    }
                    Err(e) => {
                        let _ = events.send(ReachEvent::LanUnavailable(e));
                    }
                },
            }
        }
        if config.dht {
            let dht_config = dht_config(config, &events).await;
            let started = dht::pair_secrets(identity, peers)
                .and_then(|pairs| dht::Rendezvous::start(pairs, &dht_config));
            match started {
                Ok(rendezvous) => {
                    if config.port_mapping {
                        let (mapper, watching) = port_mapping(node.local_addr().port(), &events);
                        rendezvous.use_port_mapping(mapper.watch());
                        p.mapper = Some(mapper);
                        p.tasks.push(watching);
                    }
                    let _ = events.send(ReachEvent::DhtJoining {
                        contacts: peers.len(),
                    });
                    let served = dht::serve(node.clone(), Arc::new(rendezvous), dht_config);
                    p.tasks.push(AbortOnDrop(tokio::spawn(follow(
                        node,
                        served.intents,
                        served.published,
                        events,
                    ))));
                    p.dht_on = true;
                }
                Err(e) => {
                    let _ = events.send(ReachEvent::DhtUnavailable(e));
                }
            }
        }
        p
    }

    /// The router's port mapping for the node's socket, if one is being kept.
    pub fn port_mapping(&self) -> Option<watch::Receiver<MapState>> {
        self.mapper.as_ref().map(PortMapper::watch)
    }

    /// Stops everything: withdraws the LAN announcement (goodbye records) and deletes the
    /// port mapping on the router, waiting a moment for each.
    pub async fn stop(mut self) {
        self.tasks.clear();
        if let Some(m) = self.mapper.take() {
            m.stop().await;
        }
        if let Some(a) = self.lan.take() {
            a.stop().await;
        }
    }
}

/// Punches back for each contact's call intent, and reports our stored records.
async fn follow(
    node: Arc<Node>,
    mut intents: mpsc::Receiver<PunchPlan>,
    mut published: watch::Receiver<Option<(Reachability, usize)>>,
    events: Events,
) {
    let mut publishing = true;
    loop {
        tokio::select! {
            intent = intents.recv() => {
                let Some(plan) = intent else { break };
                let node = node.clone();
                let events = events.clone();
                tokio::spawn(async move {
                    let peer = plan.peer;
                    match node.answer_punch(plan).await {
                        Ok(_) => {}
                        // Their call to us is reconnecting: it tries again by itself, and
                        // the call says whether it came back.
                        Err(_) if node.answered_call_with(&peer) => {}
                        Err(error) => {
                            let _ = events.send(ReachEvent::NoPath { peer, error });
                        }
                    }
                });
            }
            changed = published.changed(), if publishing => {
                if changed.is_err() {
                    publishing = false;
                    continue;
                }
                let now = published.borrow_and_update().clone();
                if let Some((us, contacts)) = now {
                    if events.send(ReachEvent::Reachable { us, contacts }).is_err() {
                        break;
                    }
                }
            }
        }
    }
}
