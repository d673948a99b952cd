#!/usr/bin/env bash
# A listener's DHT queries per minute with 1 and with 200 contacts (all holding its inbox
# chain), at the default settings, counted by the nodes of a DHT of our own on loopback.
# The default run is one 10-minute epoch per case (a new epoch means new targets, so new
# walks: a shorter run overweights the first walks). Set EXTRASAFE_BUDGET_NODES=1 to also
# see, per target, how many gets each node received.
# Set EXTRASAFE_BUDGET_SKIP=S to leave the first S seconds (first walks and stores) out of the
# count, and EXTRASAFE_BUDGET_CONTACTS=1,200 to choose the cases.
# Usage: bash bench/dht_budget.sh [seconds per case, default 600]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRASAFE_BUDGET_SECS=${1:-600} cargo test --release -q -p extrasafe-net --test dht_capture \
  -- --ignored --nocapture budget_per_minute 2>&1 | grep -E '^(BUDGET|target)'
