#!/usr/bin/env bash
# Ring time of a call to a contact with no known address, on a private DHT testnet; run in a
# network namespace of its own (root) so its UDP counters hold only this benchmark's traffic.
#   bash bench/ring.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p extrasafe-bench --bin ring-bench
unshare -n sh -c 'ip link set lo up && exec target/release/ring-bench'
