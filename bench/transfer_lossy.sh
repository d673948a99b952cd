#!/usr/bin/env bash
# File transfer over a rate-limited link that loses 1 % of packets each way: two network
# namespaces joined by a veth pair, `tbf` on both ends (RATE, default 200mbit), random loss
# with iptables' statistic match on arrival, and a round-trip delay (RTT_MS, default 40): this
# kernel has no netem, so each namespace sends its packets through an NFQUEUE that our
# `netdelay` holds for half the round trip. Nothing leaves the machine (10.99.0.0/24 exists
# only inside the two namespaces). Compares QUIC congestion controllers (cubic, newreno,
# bbr) against scp (TCP CUBIC, the named baseline) on the same link, same run, MIB (100) MiB,
# median of RUNS (default 3).
# Usage: sudo bash bench/transfer_lossy.sh   (RATE=100mbit RTT_MS=0 RUNS=5 MIB=1024 CCS=bbr ...)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${RATE:-200mbit}; runs=${RUNS:-3}; rtt=${RTT_MS:-40}; loss=${LOSS:-0.01}; mib=${MIB:-100}
need=()
command -v tc >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
[ -x /usr/sbin/sshd ] || need+=(openssh-server openssh-client)
command -v bc >/dev/null || need+=(bc)
command -v ethtool >/dev/null || need+=(ethtool)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p extrasafe
cargo build --release -q -p extrasafe-bench --bin netdelay
bin=$PWD/target/release/extrasafe
w=$(mktemp -d /tmp/extrasafe-lossy-XXXX)
A=es-bench-a; B=es-bench-b
source bench/lib.sh
cleanup() {
  [ -f "$w/sshd.pid" ] && kill "$(cat "$w/sshd.pid")" 2>/dev/null
  lossy_link_down $A $B
  rm -rf "$w"
}
trap cleanup EXIT
cleanup 2>/dev/null || true; mkdir -p "$w"
lossy_link "$A" "$B" "$rate" "$loss" "$rtt"

f="$w/file.bin"; head -c $((mib * 1024 * 1024)) /dev/urandom > "$f"; bytes=$((mib * 1024 * 1024))
link_mbs=$(echo "${rate%mbit} * 1000000 / 8 / 1000000" | bc -l)

# scp over the same link: sshd in B.
mkdir -p "$w/scp-dst"
start_sshd "$w" 10.99.0.2 2222 ip netns exec $B

export PULSE_SERVER=unix:/nonexistent

echo "Transfer of $mib MiB over a $rate link, ${rtt} ms round trip, 1 % random loss each way, median of $runs"
echo "(whole command: start-up and handshake included; 'moving' = the data phase alone, from"
echo " the sender's transfer_done event; the link rate counts packet headers too)"
printf "%-22s %9s %9s %14s %16s\n" tool seconds MB/s "of link rate" "moving, of link"
report() { # name moving-rate times...
  local name=$1; shift; local moving=$1; shift
  local t; t=$(printf "%s\n" "$@" | median)
  local mbs; mbs=$(echo "$bytes / $t / 1000000" | bc -l)
  local mv="-"
  [ "$moving" != "-" ] && mv=$(printf "%.0f%%" "$(echo "$moving / 1000000 / $link_mbs * 100" | bc -l)")
  printf "%-22s %9.2f %9.1f %13.0f%% %16s   runs: %s\n" "$name" "$t" "$mbs" "$(echo "$mbs / $link_mbs * 100" | bc -l)" "$mv" "$*"
}
# TCP over a lossy long path crawls (about MSS/RTT x 1.2/sqrt(loss)): scp gets SCP_LIMIT
# seconds (default 60) and is scored by what arrived in that time.
rates=()
for r in $(seq "$runs"); do
  [ "${SKIP_SCP:-0}" = 1 ] && break
  rm -f "$w/scp-dst/"*
  t0=$(now)
  timeout "${SCP_LIMIT:-60}" ip netns exec $A scp "${scp_opts[@]}" "$f" root@10.99.0.2:"$w/scp-dst/" || true
  t1=$(now)
  got=$(stat -c %s "$w/scp-dst/file.bin" 2>/dev/null || echo 0)
  rates+=("$(echo "$got / ($t1 - $t0) / 1000000" | bc -l)")
done
if [ ${#rates[@]} -gt 0 ]; then
  smb=$(printf "%s\n" "${rates[@]}" | median)
  printf "%-22s %9s %9.1f %13.0f%% %16s   MB/s: %s\n" "scp (TCP cubic)" "-" "$smb" \
    "$(echo "$smb / $link_mbs * 100" | bc -l)" - "${rates[*]}"
fi
for cc in ${CCS-cubic newreno bbr}; do
  times=(); rates=()
  for r in $(seq "$runs"); do
    rm -rf "$w/dst"; mkdir -p "$w/dst"
    ip netns exec $B "$bin" --ephemeral --json --congestion $cc receive --bind 10.99.0.2:0 --once \
      --dir "$w/dst" --accept-files anyone </dev/null >"$w/recv.out" 2>/dev/null &
    rpid=$!
    ticket=""
    for _ in $(seq 100); do ticket=$(grep -o 'est1[a-z0-9]*' "$w/recv.out" 2>/dev/null | head -1 || true); [ -n "$ticket" ] && break; sleep 0.05; done
    t0=$(now)
    ip netns exec $A "$bin" --ephemeral --json --congestion $cc send --to "$ticket" "$f" </dev/null >"$w/send.out" 2>"$w/send.err" || { echo "extrasafe ($cc) failed:"; tail -n 3 "$w/send.out" "$w/send.err"; exit 1; }
    t1=$(now)
    wait "$rpid" || true
    cmp -s "$f" "$w/dst/file.bin" || { echo "extrasafe ($cc): copy differs"; exit 1; }
    times+=("$(echo "$t1 - $t0" | bc -l)")
    rates+=("$(grep -o '"bytes_per_sec":[0-9.]*,"detail"' "$w/send.out" | grep -o '[0-9.]*' | head -1)")
  done
  report "extrasafe ($cc)" "$(printf "%s\n" "${rates[@]}" | median)" "${times[@]}"
done
