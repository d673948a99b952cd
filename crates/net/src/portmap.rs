//! Asks the home router to forward a public UDP port to the call socket: PCP, then NAT-PMP
//! (`crab_nat`), then UPnP IGD (`igd-next`). A forwarded port lets a contact behind any NAT,
//! a symmetric one included, reach us directly with no relay.
//!
//! What this tells whom: the router learns that this device wants a UDP port forwarded (it
//! sees all our traffic anyway). Other devices on the LAN can list a router's UPnP mappings,
//! so the mapping's description names neither the app nor the person. The mapping lasts
//! [`LIFETIME`] and is renewed while the node runs, so a crash leaves it open for minutes, not
//! forever; it is deleted when the mapper stops.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::time::Duration;

use extrasafe_core::punch::is_public;
use tokio::sync::watch;
use tracing::debug;

/// How long the router is asked to keep the mapping (renewed at half of it).
pub const LIFETIME: Duration = Duration::from_secs(600);

/// When no router offered a mapping, how long until we ask again (networks change).
const RETRY: Duration = Duration::from_secs(300);

/// Neutral on purpose: LAN devices can read it.
const DESCRIPTION: &str = "udp";

/// Which protocol the router answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Port Control Protocol (RFC 6887).
    Pcp,
    /// NAT Port Mapping Protocol (RFC 6886).
    NatPmp,
    /// UPnP Internet Gateway Device.
    Upnp,
}

impl Protocol {
    /// Its usual name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pcp => "PCP",
            Protocol::NatPmp => "NAT-PMP",
            Protocol::Upnp => "UPnP",
        }
    }
}

/// A port the router forwards to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The public address that reaches the call socket.
    pub external: SocketAddr,
    /// How it was obtained.
    pub protocol: Protocol,
}

/// What the mapper knows now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapState {
    /// Still asking.
    Asking,
    /// The router forwards a port.
    Mapped(Mapping),
    /// No router answered, or its public address is not public (a NAT behind another NAT).
    Unavailable,
}

/// Where to ask.
#[derive(Clone, Debug, Default)]
pub struct PortMapConfig {
    /// The router for PCP and NAT-PMP (default: the IPv4 default route's gateway).
    pub gateway: Option<Ipv4Addr>,
    /// Skip UPnP (its search is a LAN multicast).
    pub no_upnp: bool,
}

/// Keeps a port on the router forwarded to the call socket while it lives.
#[derive(Debug)]
pub struct PortMapper {
    state: watch::Receiver<MapState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl PortMapper {
    /// Starts asking for a mapping of UDP `port` (the call socket's).
    pub fn start(port: u16, config: PortMapConfig) -> Self {
        let (tx, rx) = watch::channel(MapState::Asking);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(keep(port, config, tx, stop_rx));
        Self {
            state: rx,
            stop: Some(stop_tx),
            task,
        }
    }

    /// Follows the state.
    pub fn watch(&self) -> watch::Receiver<MapState> {
        self.state.clone()
    }

    /// Deletes the mapping on the router (waits up to a second for it to answer).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.task).await;
    }
}

impl Drop for PortMapper {
    fn drop(&mut self) {
        // Not stopped politely: the router forgets the mapping within LIFETIME.
        self.task.abort();
    }
}

enum Held {
    Crab(crab_nat::PortMapping),
    Upnp {
        gateway: igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>,
        external_port: u16,
    },
}

async fn keep(
    port: u16,
    config: PortMapConfig,
    tx: watch::Sender<MapState>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let acquiring = acquire(port, &config);
        tokio::pin!(acquiring);
        let got = tokio::select! {
            got = &mut acquiring => got,
            _ = &mut stop => {
                // The router may be granting a port right now: let it answer (briefly), and
                // delete what it granted rather than leave it open until it expires.
                if let Ok(Some((held, _))) =
                    tokio::time::timeout(Duration::from_secs(1), acquiring).await
                {
                    release(held, false).await;
                }
                return;
            }
        };
        let Some((mut held, mapping)) = got else {
            tx.send_replace(MapState::Unavailable);
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => continue,
                _ = &mut stop => return,
            }
        };
        debug!(
            protocol = mapping.protocol.name(),
            "the router forwards a port to us"
        );
        tx.send_replace(MapState::Mapped(mapping));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(held.granted().min(LIFETIME) / 2) => {}
                _ = &mut stop => {
                    release(held, false).await;
                    tx.send_replace(MapState::Unavailable);
                    return;
                }
            }
            match renew(&mut held, port).await {
                Some(external) if external == mapping.external => {}
                other => {
                    // Lost or moved (router restarted, network changed): start over.
                    debug!(moved = other.is_some(), "port mapping renewal changed it");
                    release(held, other.is_none()).await;
                    tx.send_replace(MapState::Asking);
                    break;
                }
            }
        }
    }
}

impl Held {
    /// How long the router said it keeps the mapping (it may grant less than asked).
    fn granted(&self) -> Duration {
        match self {
            Held::Crab(m) => Duration::from_secs(u64::from(m.lifetime()).max(10)),
            Held::Upnp { .. } => LIFETIME,
        }
    }
}

fn timeouts() -> crab_nat::TimeoutConfig {
    crab_nat::TimeoutConfig {
        initial_timeout: Duration::from_millis(250),
        max_retries: 2,
        max_retry_timeout: Some(Duration::from_secs(1)),
    }
}

async fn acquire(port: u16, config: &PortMapConfig) -> Option<(Held, Mapping)> {
    let internal = NonZeroU16::new(port)?;
    let gateway = config.gateway.or_else(default_gateway);
    if let Some(gw) = gateway {
        if let Some(r) = by_pcp_or_natpmp(gw, internal).await {
            return Some(r);
        }
    }
    if !config.no_upnp {
        if let Some(r) = by_upnp(port, gateway).await {
            return Some(r);
        }
    }
    None
}

async fn by_pcp_or_natpmp(gw: Ipv4Addr, internal: NonZeroU16) -> Option<(Held, Mapping)> {
    let client = local_ip_towards(IpAddr::V4(gw))?;
    let options = crab_nat::PortMappingOptions {
        external_port: Some(internal),
        lifetime_seconds: Some(LIFETIME.as_secs() as u32),
        timeout_config: Some(timeouts()),
    };
    let m = match crab_nat::PortMapping::new(
        gw.into(),
        client,
        crab_nat::InternetProtocol::Udp,
        internal,
        options,
    )
    .await
    {
        Ok(m) => m,
        Err(e) => {
            debug!(error = ?e, "no PCP or NAT-PMP mapping");
            return None;
        }
    };
    let (ip, protocol) = match m.mapping_type() {
        crab_nat::PortMappingType::Pcp { external_ip, .. } => (external_ip, Protocol::Pcp),
        crab_nat::PortMappingType::NatPmp => {
            match crab_nat::natpmp::external_address(gw.into(), Some(timeouts())).await {
                Ok(ip) => (IpAddr::V4(ip), Protocol::NatPmp),
                Err(e) => {
                    debug!(error = ?e, "NAT-PMP gave a port but not its address");
                    let _ = m.try_drop().await;
                    return None;
                }
            }
        }
    };
    let external = SocketAddr::new(ip.to_canonical(), m.external_port().get());
    if !is_public(external.ip()) {
        // The router is itself behind a NAT: its "public" port reaches nobody outside.
        debug!("the router's outside address is not public");
        let _ = m.try_drop().await;
        return None;
    }
    Some((Held::Crab(m), Mapping { external, protocol }))
}

async fn by_upnp(port: u16, gateway: Option<Ipv4Addr>) -> Option<(Held, Mapping)> {
    let mut options = igd_next::SearchOptions::default();
    options.timeout = Some(Duration::from_secs(2));
    options.single_search_timeout = Some(Duration::from_secs(2));
    options.gateway_ip_version = igd_next::GatewayIpVersion::V4;
    let gw = match igd_next::aio::tokio::search_gateway(options).await {
        Ok(g) => g,
        Err(e) => {
            debug!(error = %e, "no UPnP gateway answered");
            return None;
        }
    };
    // Any device on the LAN can answer the search: only the router we route through counts.
    if let Some(g) = gateway {
        if gw.addr.ip().to_canonical() != IpAddr::V4(g) {
            debug!("a UPnP answer came from a device that is not our gateway");
            return None;
        }
    }
    let client = local_ip_towards(gw.addr.ip()).or(gateway.map(IpAddr::V4))?;
    let local = SocketAddr::new(client, port);
    let ip = gw.get_external_ip().await.ok()?.to_canonical();
    if !is_public(ip) {
        debug!("the UPnP router's outside address is not public");
        return None;
    }
    let lease = LIFETIME.as_secs() as u32;
    let proto = igd_next::PortMappingProtocol::UDP;
    let external_port = match gw.add_port(proto, port, local, lease, DESCRIPTION).await {
        Ok(()) => port,
        Err(e) => {
            debug!(error = %e, "UPnP refused our own port number; asking for any");
            match gw.add_any_port(proto, local, lease, DESCRIPTION).await {
                Ok(p) => p,
                Err(e) => {
                    // Some routers only take permanent mappings: we never leave one behind.
                    debug!(error = %e, "UPnP gave no mapping");
                    return None;
                }
            }
        }
    };
    Some((
        Held::Upnp {
            gateway: gw,
            external_port,
        },
        Mapping {
            external: SocketAddr::new(ip, external_port),
            protocol: Protocol::Upnp,
        },
    ))
}

async fn renew(held: &mut Held, port: u16) -> Option<SocketAddr> {
    match held {
        Held::Crab(m) => {
            m.renew().await.ok()?;
            let ip = match m.mapping_type() {
                crab_nat::PortMappingType::Pcp { external_ip, .. } => external_ip,
                crab_nat::PortMappingType::NatPmp => IpAddr::V4(
                    crab_nat::natpmp::external_address(m.gateway(), Some(timeouts()))
                        .await
                        .ok()?,
                ),
            };
            Some(SocketAddr::new(ip.to_canonical(), m.external_port().get()))
        }
        Held::Upnp {
            gateway,
            external_port,
        } => {
            let client = local_ip_towards(gateway.addr.ip())?;
            gateway
                .add_port(
                    igd_next::PortMappingProtocol::UDP,
                    *external_port,
                    SocketAddr::new(client, port),
                    LIFETIME.as_secs() as u32,
                    DESCRIPTION,
                )
                .await
                .ok()?;
            let ip = gateway.get_external_ip().await.ok()?;
            Some(SocketAddr::new(ip.to_canonical(), *external_port))
        }
    }
}

/// Deletes the mapping. After a failed UPnP renewal the port may belong to another device by
/// now (a router without secure mode would let us delete its mapping): left to expire.
async fn release(held: Held, renewal_failed: bool) {
    let r = match held {
        Held::Crab(m) => m.try_drop().await.map_err(|(e, _)| format!("{e:?}")),
        Held::Upnp { .. } if renewal_failed => return,
        Held::Upnp {
            gateway,
            external_port,
        } => gateway
            .remove_port(igd_next::PortMappingProtocol::UDP, external_port)
            .await
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = r {
        debug!(error = %e, "the router did not confirm deleting our mapping");
    }
}

/// Our address on the link towards `to` (a connected UDP socket sends nothing).
fn local_ip_towards(to: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = match to {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect((to, 5351)).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// The IPv4 default route's gateway (Linux: /proc/net/route).
fn default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    parse_default_gateway(&table)
}

fn parse_default_gateway(table: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags ...: destination 0 is the default route; the
        // gateway is hex in host (little-endian) order.
        if f.len() < 4 || f[1] != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(f[2], 16).ok()?;
        let flags = u32::from_str_radix(f[3], 16).ok()?;
        (gw != 0 && flags & 0x2 != 0).then(|| Ipv4Addr::from(gw.to_le_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_gateway_is_read_from_the_route_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                     eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(
            parse_default_gateway(table),
            Some(Ipv4Addr::new(10, 0, 2, 1))
        );
        let no_default = "Iface\tDestination\tGateway \tFlags\n\
                          eth0\t0002000A\t00000000\t0001\n";
        assert_eq!(parse_default_gateway(no_default), None);
        assert_eq!(parse_default_gateway("garbage"), None);
    }
}
