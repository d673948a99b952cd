//! Reaching contacts without a known address: the DHT settings from the command line.

use extrasafe_net::dht::DhtConfig;

use crate::args::Global;

pub fn dht_config(global: &Global) -> DhtConfig {
    DhtConfig {
        bootstrap: global.dht_bootstrap.clone(),
        ..DhtConfig::default()
    }
}
