//! Finding contacts on the local network with no internet: blinded mDNS (DNS-SD)
//! announcements (the tags are `core::lan`). A listening node announces
//! `_extrasafe._udp.local.` under a random instance and host name, with its call port and a
//! TXT record only its contacts can recognise; a caller browses for a moment and calls the
//! first announcement that carries its tag. The address then still has to prove the
//! contact's key in the TLS handshake, so a replayed announcement only costs a failed try.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use extrasafe_core::lan::{self, LanKey};
use extrasafe_core::rendezvous::PairSecret;
use extrasafe_core::PeerId;
use mdns_sd::{DaemonEvent, ServiceDaemon, ServiceEvent, ServiceInfo};
use tracing::debug;

const SERVICE: &str = "_extrasafe._udp.local.";
/// A fresh nonce, instance and host name this often.
const ROTATE: Duration = Duration::from_secs(10 * 60);
/// How often a running announcement looks at the contact list for removed contacts.
pub const CONTACTS_CHECK: Duration = Duration::from_secs(2);

/// Why the LAN could not be used.
#[derive(Debug, thiserror::Error)]
#[error("LAN discovery (mDNS) failed: {0}")]
pub struct LanError(String);

impl From<mdns_sd::Error> for LanError {
    fn from(e: mdns_sd::Error) -> Self {
        Self(e.to_string())
    }
}

/// Our side of the LAN: an mDNS responder and the tag keys of our contacts.
pub struct Lan {
    daemon: ServiceDaemon,
    keys: Mutex<HashMap<PeerId, LanKey>>,
}

impl std::fmt::Debug for Lan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lan")
            .field("contacts", &self.keys.lock().map(|k| k.len()).unwrap_or(0))
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Lan {
    /// Starts the mDNS responder with the keys of `pairs` (our contacts).
    pub fn start(pairs: &[PairSecret]) -> Result<Self, LanError> {
        Self::with_keys(pairs.iter().map(|p| (p.peer(), p.lan_key())).collect())
    }

    /// Starts the mDNS responder to look for one contact, `peer`, whose tag key is `key`
    /// (a call looking for its peer again).
    pub fn for_peer(peer: PeerId, key: LanKey) -> Result<Self, LanError> {
        Self::with_keys([(peer, key)].into_iter().collect())
    }

    fn with_keys(keys: HashMap<PeerId, LanKey>) -> Result<Self, LanError> {
        let daemon = ServiceDaemon::new()?;
        // The responder learns our interfaces by polling them: every second instead of
        // every five, so a node is announced (and re-announced after a change) promptly.
        daemon.set_ip_check_interval(1)?;
        Ok(Self {
            daemon,
            keys: Mutex::new(keys),
        })
    }

    /// Announces a listening node's call `port` (returning once the first announcement went
    /// out, or after 5 s), then keeps announcing until the returned [`Announcement`] is
    /// stopped, with a new nonce, instance and host name every ten minutes (a rotating subset
    /// of contacts when there are more than fit in one announcement). With `roots` (our
    /// contact list on disk), a contact removed from the list loses its tag within
    /// [`CONTACTS_CHECK`]: the announcement is replaced at once by one without it.
    pub async fn announce(
        self: Arc<Self>,
        port: u16,
        roots: Option<Arc<crate::roots::Roots>>,
    ) -> Announcement {
        let lan = self.clone();
        let task = self.announce_task(port, roots).await;
        Announcement {
            task,
            lan: Some(lan),
        }
    }

    async fn announce_task(
        self: Arc<Self>,
        port: u16,
        roots: Option<Arc<crate::roots::Roots>>,
    ) -> tokio::task::JoinHandle<()> {
        let monitor = self.daemon.monitor().ok();
        let mut current = self.register_fresh(port, None);
        if let Some(events) = monitor {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while let Ok(e) = events.recv_async().await {
                    if matches!(e, DaemonEvent::Announce(..)) {
                        break;
                    }
                }
            })
            .await;
        }
        tokio::spawn(async move {
            let mut rotate_at = tokio::time::Instant::now() + ROTATE;
            loop {
                let wake = match &roots {
                    Some(_) => rotate_at.min(tokio::time::Instant::now() + CONTACTS_CHECK),
                    None => rotate_at,
                };
                tokio::time::sleep_until(wake).await;
                let mut removed = false;
                if let Some(r) = &roots {
                    let r = r.clone();
                    if let Ok(now) = tokio::task::spawn_blocking(move || r.contacts()).await {
                        removed = self.keep_only(&now) > 0;
                    }
                }
                if removed || tokio::time::Instant::now() >= rotate_at {
                    current = self.register_fresh(port, current.take());
                    rotate_at = tokio::time::Instant::now() + ROTATE;
                }
            }
        })
    }

    /// Drops the tag keys of everyone not in `contacts`; how many were dropped. An empty
    /// set (a list that could not be read yet) drops nothing.
    pub fn keep_only(&self, contacts: &HashSet<PeerId>) -> usize {
        if contacts.is_empty() {
            return 0;
        }
        let mut keys = self.keys.lock().expect("lan keys lock poisoned");
        let before = keys.len();
        keys.retain(|p, _| contacts.contains(p));
        before - keys.len()
    }

    /// The contacts whose tags the next announcement can carry.
    pub fn tagged(&self) -> HashSet<PeerId> {
        self.keys
            .lock()
            .expect("lan keys lock poisoned")
            .keys()
            .copied()
            .collect()
    }

    /// Registers a new announcement (replacing `old`); its full name.
    fn register_fresh(&self, port: u16, old: Option<String>) -> Option<String> {
        let r = random::<32>();
        let held = self.keys.lock().expect("lan keys lock poisoned");
        let mut keys: Vec<&LanKey> = held.values().collect();
        // Rotate which contacts get a tag when they do not all fit.
        let shift = usize::from(r[31]) % keys.len().max(1);
        keys.rotate_left(shift);
        let (n, t) = lan::announcement(&keys, &r, lan::slot_of(unix_secs()));
        drop(keys);
        drop(held);
        let name = hex(&random::<8>());
        let host = format!("{}.local.", hex(&random::<8>()));
        let props = [("n", n.as_str()), ("t", t.as_str())];
        if let Some(old) = old {
            let _ = self.daemon.unregister(&old);
        }
        let info = match ServiceInfo::new(SERVICE, &name, &host, "", port, &props[..]) {
            Ok(info) => info.enable_addr_auto(),
            Err(e) => {
                debug!(error = %e, "mDNS announcement refused");
                return None;
            }
        };
        let fullname = info.get_fullname().to_string();
        match self.daemon.register(info) {
            Ok(()) => Some(fullname),
            Err(e) => {
                debug!(error = %e, "mDNS announcement failed");
                None
            }
        }
    }

    /// Browses the LAN for up to `limit` for an announcement of `peer`; its addresses with
    /// the announced port.
    pub async fn find(&self, peer: &PeerId, limit: Duration) -> Option<Vec<SocketAddr>> {
        let key = self
            .keys
            .lock()
            .expect("lan keys lock poisoned")
            .get(peer)?
            .clone();
        let events = self.daemon.browse(SERVICE).ok()?;
        let found = tokio::time::timeout(limit, async {
            while let Ok(event) = events.recv_async().await {
                let ServiceEvent::ServiceResolved(info) = event else {
                    continue;
                };
                let (Some(n), Some(t)) = (
                    info.get_property_val_str("n"),
                    info.get_property_val_str("t"),
                ) else {
                    continue;
                };
                if !lan::matches(n, t, &key, lan::slot_of(unix_secs())) {
                    continue;
                }
                let mut addrs: Vec<SocketAddr> = info
                    .get_addresses()
                    .iter()
                    .map(|ip| ip.to_ip_addr())
                    .filter(|ip| !ip.is_loopback() && !is_link_local_v6(ip))
                    .map(|ip| SocketAddr::new(ip, info.get_port()))
                    .collect();
                addrs.sort_by_key(|a| a.is_ipv6());
                addrs.truncate(extrasafe_core::ticket::MAX_TICKET_ADDRS);
                if !addrs.is_empty() {
                    return Some(addrs);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let _ = self.daemon.stop_browse(SERVICE);
        found
    }
}

/// A running announcement. Stopping it (or dropping it) withdraws it from the network with
/// mDNS goodbye records, so neighbours' caches do not keep a stale entry for us.
pub struct Announcement {
    task: tokio::task::JoinHandle<()>,
    lan: Option<std::sync::Arc<Lan>>,
}

impl Announcement {
    /// Stops announcing and waits (at most 2 s) until the goodbye records went out.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        if let Some(lan) = self.lan.take() {
            if let Ok(done) = lan.daemon.shutdown() {
                let _ = tokio::time::timeout(Duration::from_secs(2), done.recv_async()).await;
            }
        }
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(lan) = &self.lan {
            let _ = lan.daemon.shutdown();
        }
    }
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}
