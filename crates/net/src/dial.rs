//! Reaching a contact wherever it is: the addresses of its ticket first, then this network
//! (mDNS) and the DHT at once. Shared by the terminal and desktop front ends.

use std::time::Duration;

use extrasafe_core::{PeerId, Ticket};
use tokio::sync::watch;

use crate::dht::{self, DhtConfig};
use crate::portmap::MapState;
use crate::{lan, Call, CallError, Node};
use extrasafe_core::rendezvous::PairSecret;

/// How long a caller browses the LAN for a contact before giving up on it.
pub const LAN_LOOK: Duration = Duration::from_secs(2);

/// Where to look for the peer besides its ticket.
pub struct Search<F> {
    /// Pair secrets for the LAN lookup, the DHT lookup, a second DHT try and the DHT search
    /// of a call that must reconnect (each use takes its own copy: the secrets are not
    /// `Clone`, so they can be wiped when dropped).
    pub secrets: [Vec<PairSecret>; 4],
    /// Browse this network (mDNS).
    pub lan: bool,
    /// Look the peer up on the DHT with the settings this gives; awaited only once the
    /// ticket's addresses failed (making them may look up STUN servers' names).
    pub dht: Option<F>,
    /// The router's port mapping, given to the peer with our call intent.
    pub port_map: Option<watch::Receiver<MapState>>,
}

/// What the dialler is doing, for the person waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialStep {
    /// Trying the ticket's addresses.
    Ticket,
    /// The ticket's addresses did not answer; looking elsewhere.
    TicketSilent,
    /// Browsing this network.
    Lan,
    /// The LAN could not be browsed (the reason, for the person).
    LanUnavailable(String),
    /// Looking the peer up on the DHT.
    Dht,
}

/// Why no call was placed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The call failed (the most telling failure of all the ways tried).
    #[error(transparent)]
    Call(#[from] CallError),
    /// Not on this network, and the DHT is off.
    #[error("not found on this network, and the DHT is off")]
    NotFound,
    /// No ticket and nowhere to look.
    #[error("no address is known and there is nowhere to look")]
    NowhereToLook,
}

/// Calls `peer`: its ticket's addresses (if any) first; if they are silent, this network and
/// the DHT at once, whichever connects first.
///
/// A call to a contact placed with the search on looks for them the same ways if it has to
/// reconnect (on this network, and through the DHT: they, or we, may have moved to another
/// address meanwhile).
pub async fn dial<F: std::future::Future<Output = DhtConfig>>(
    node: &Node,
    peer: PeerId,
    ticket: Option<&Ticket>,
    search: Option<Search<F>>,
    step: impl Fn(DialStep),
) -> Result<Call, DialError> {
    let Some(Search {
        secrets: [lan_pairs, dht_pairs, dht_pairs_again, redial_pairs],
        lan,
        dht,
        port_map,
    }) = search
    else {
        return dial_once::<F>(node, peer, ticket, None, step).await;
    };
    let lan_key = lan
        .then(|| {
            lan_pairs
                .iter()
                .find(|p| p.peer() == peer)
                .map(|p| p.lan_key())
        })
        .flatten();
    let mut settings = match dht {
        Some(f) => Settings::Unmade(f),
        None => Settings::Off,
    };
    let call = dial_once(
        node,
        peer,
        ticket,
        Some(Within {
            secrets: [lan_pairs, dht_pairs, dht_pairs_again],
            lan,
            dht: &mut settings,
            port_map: port_map.clone(),
        }),
        step,
    )
    .await?;
    if let Some(key) = lan_key {
        call.look_on_lan(key);
    }
    if let Some(config) = settings.get().await {
        match dht::Rendezvous::start(redial_pairs, &config) {
            Ok(rendezvous) => {
                if let Some(m) = port_map {
                    rendezvous.use_port_mapping(m);
                }
                if let Some(r) = node.roots() {
                    rendezvous.use_roots(r);
                }
                call.look_on_dht(node.handle(), std::sync::Arc::new(rendezvous));
            }
            Err(e) => tracing::debug!(error = %e, "no DHT search if the call must reconnect"),
        }
    }
    Ok(call)
}

/// The DHT settings, made when first needed (making them may look up STUN servers' names).
enum Settings<F> {
    Off,
    Unmade(F),
    Made(DhtConfig),
}

impl<F: std::future::Future<Output = DhtConfig>> Settings<F> {
    /// The settings, made now if they were not yet; `None` with the DHT off.
    async fn get(&mut self) -> Option<DhtConfig> {
        let config = match std::mem::replace(self, Settings::Off) {
            Settings::Off => return None,
            Settings::Unmade(making) => making.await,
            Settings::Made(config) => config,
        };
        *self = Settings::Made(config.clone());
        Some(config)
    }
}

/// Where one dial looks besides the ticket (see [`Search`]).
struct Within<'a, F> {
    secrets: [Vec<PairSecret>; 3],
    lan: bool,
    dht: &'a mut Settings<F>,
    port_map: Option<watch::Receiver<MapState>>,
}

async fn dial_once<F: std::future::Future<Output = DhtConfig>>(
    node: &Node,
    peer: PeerId,
    ticket: Option<&Ticket>,
    search: Option<Within<'_, F>>,
    step: impl Fn(DialStep),
) -> Result<Call, DialError> {
    if let Some(ticket) = ticket.filter(|t| !t.addrs.is_empty()) {
        step(DialStep::Ticket);
        match node.call(ticket).await {
            Err(CallError::Unreachable { .. }) if search.is_some() => step(DialStep::TicketSilent),
            other => return other.map_err(DialError::from),
        }
    }
    let Some(Within {
        secrets: [lan_pairs, dht_pairs, dht_pairs_again],
        lan,
        dht,
        port_map,
    }) = search
    else {
        return Err(DialError::NowhereToLook);
    };
    let dht = dht.get().await;
    let via_dht = |pairs: Vec<PairSecret>| {
        let config = dht.clone();
        let port_map = port_map.clone();
        async move {
            let config = config.expect("only called with the DHT on");
            let rendezvous =
                dht::Rendezvous::start(pairs, &config).map_err(CallError::Rendezvous)?;
            if let Some(m) = port_map {
                rendezvous.use_port_mapping(m);
            }
            if let Some(r) = node.roots() {
                rendezvous.use_roots(r);
            }
            node.call_contact(&rendezvous, peer).await
        }
    };
    let on_lan = async {
        if !lan {
            return None;
        }
        step(DialStep::Lan);
        let lan = match lan::Lan::start(&lan_pairs) {
            Ok(lan) => lan,
            Err(e) => {
                step(DialStep::LanUnavailable(e.to_string()));
                return None;
            }
        };
        let addrs = lan.find(&peer, LAN_LOOK).await?;
        let access = lan_pairs
            .iter()
            .find(|p| p.peer() == peer)
            .map(|p| p.access_key());
        Some(
            node.call_with(
                &Ticket {
                    peer,
                    secret: None,
                    addrs,
                },
                access,
            )
            .await,
        )
    };
    let on_dht = async {
        dht.as_ref()?;
        step(DialStep::Dht);
        Some(via_dht(dht_pairs).await)
    };
    tokio::pin!(on_lan, on_dht);
    let (mut lan_done, mut dht_done) = (false, false);
    let mut failure: Option<CallError> = None;
    // The DHT found a path while the LAN attempt held the call slot (dialling an address that
    // may not answer): it gets another go once the LAN attempt is over.
    let mut dht_again = false;
    while !(lan_done && dht_done) {
        let (r, from_dht) = tokio::select! {
            r = &mut on_lan, if !lan_done => { lan_done = true; (r, false) }
            r = &mut on_dht, if !dht_done => { dht_done = true; (r, true) }
        };
        match r {
            Some(Ok(call)) => return Ok(call),
            Some(Err(CallError::AlreadyInCall)) if from_dht => dht_again = true,
            Some(Err(CallError::AlreadyInCall)) | None => {}
            Some(Err(e)) => failure = Some(e),
        }
    }
    if dht_again {
        match via_dht(dht_pairs_again).await {
            Ok(call) => return Ok(call),
            Err(e) => failure = Some(e),
        }
    }
    Err(failure.map_or(DialError::NotFound, DialError::from))
}
