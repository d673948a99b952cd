pub mod call;
pub mod contact;
pub mod demo;
pub mod devices;
pub mod id;
pub mod listen;
pub mod send;

use std::net::SocketAddr;

use extrasafe_core::Identity;
use extrasafe_net::{Node, NodeConfig, NodeError};

/// Binds `explicit` if given; otherwise both IP families on `port` (one dual-stack IPv6
/// socket), falling back to IPv4 alone where IPv6 is unavailable.
pub async fn bind_node(
    identity: &Identity,
    mut config: NodeConfig,
    explicit: Option<SocketAddr>,
    port: u16,
) -> Result<Node, NodeError> {
    // Listening, we answer holders of our ticket and our contacts; calling, only our contacts'
    // keys matter (to be let into their nodes).
    if let Some(addr) = explicit {
        config.bind = addr;
        return Node::bind(identity, config).await;
    }
    config.bind = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    match Node::bind(identity, config.clone()).await {
        Err(NodeError::Bind { source, .. }) if source.kind() != std::io::ErrorKind::AddrInUse => {
            config.bind = SocketAddr::from(([0, 0, 0, 0], port));
            Node::bind(identity, config).await
        }
        other => other,
    }
}
