//! Placing a call: the dial strategy both front ends use.
//!
//! The ticket's addresses are tried first; if they are silent, this network and the DHT are
//! searched at once (see [`extrasafe_net::dial`]). A caller that may be found on the DHT asks
//! its router to forward a port at once, so that a contact behind a strict NAT can be given
//! the forwarded port with the call intent; the mapping is kept for the whole call and
//! deleted when the call's [`Outgoing`] is stopped.

use extrasafe_core::rendezvous::PairSecret;
use extrasafe_core::{Identity, PeerId, Ticket};
use extrasafe_net::dht::{self, DhtError};
use extrasafe_net::dial::{self as net_dial, DialError, DialStep, Search};
use extrasafe_net::portmap::{MapState, PortMapper};
use extrasafe_net::{Call, Node};
use tokio::sync::watch;

use crate::reach::{self, Events, ReachConfig};
use crate::AbortOnDrop;

/// The pair secrets a search for `peer` uses (for the LAN lookup, the DHT lookup, a second
/// DHT try, and the DHT search should the call have to reconnect); made before the identity
/// key is dropped.
pub fn search_secrets(identity: &Identity, peer: PeerId) -> Result<[Vec<PairSecret>; 4], DhtError> {
    let one = || dht::pair_secrets(identity, &[peer]);
    Ok([one()?, one()?, one()?, one()?])
}

/// What a placed call keeps besides the call: the router's port mapping.
#[derive(Debug, Default)]
pub struct Outgoing {
    mapper: Option<PortMapper>,
    _reporting: Option<AbortOnDrop>,
}

impl Outgoing {
    /// Whether a port mapping was asked for.
    pub fn mapping(&self) -> bool {
        self.mapper.is_some()
    }

    /// Deletes the port mapping on the router (waits a moment for it to answer).
    pub async fn stop(self) {
        if let Some(m) = self.mapper {
            m.stop().await;
        }
    }
}

/// Calls `peer`: `ticket`'s addresses, then (with `secrets`, for a contact) this network and
/// the DHT as `config` allows. `step` hears what is being tried; port mappings are reported
/// on `events`. `mapping` is the node's own port mapping where one runs already (a node
/// that also listens, see [`crate::Presence::port_mapping`]): the router is not asked twice
/// for the same socket.
#[allow(clippy::too_many_arguments)]
pub async fn place(
    node: &Node,
    peer: PeerId,
    ticket: Option<&Ticket>,
    secrets: Option<[Vec<PairSecret>; 4]>,
    config: &ReachConfig,
    events: &Events,
    mapping: Option<watch::Receiver<MapState>>,
    step: impl Fn(DialStep),
) -> Result<(Call, Outgoing), DialError> {
    let secrets = secrets.filter(|_| config.lan || config.dht);
    let mut outgoing = Outgoing::default();
    if mapping.is_none() && secrets.is_some() && config.dht && config.port_mapping {
        let (mapper, reporting) = reach::port_mapping(node.local_addr().port(), events);
        outgoing.mapper = Some(mapper);
        outgoing._reporting = Some(reporting);
    }
    let search = secrets.map(|secrets| Search {
        secrets,
        lan: config.lan,
        dht: config.dht.then(|| reach::dht_config(config, events)),
        port_map: mapping.or_else(|| outgoing.mapper.as_ref().map(PortMapper::watch)),
    });
    match net_dial::dial(node, peer, ticket, search, step).await {
        Ok(call) => Ok((call, outgoing)),
        Err(e) => {
            // The router forgets a mapping we do not renew, but sooner is better.
            outgoing.stop().await;
            Err(e)
        }
    }
}
