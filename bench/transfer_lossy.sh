#!/usr/bin/env bash
# File transfer over a rate-limited link that loses 1 % of packets each way: two network
# namespaces joined by a veth pair, `tbf` on both ends (RATE, default 200mbit), random loss
# with iptables' statistic match on arrival. Nothing leaves the machine (10.99.0.0/24 exists
# only inside the two namespaces). Compares QUIC congestion controllers (cubic, newreno,
# bbr) against scp (TCP CUBIC, the named baseline) on the same link, same run, 100 MiB,
# median of RUNS (default 3). This kernel has no netem, so the link adds no delay of its own.
# Usage: sudo bash bench/transfer_lossy.sh     (RATE=100mbit RUNS=5 bash bench/transfer_lossy.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${RATE:-200mbit}; runs=${RUNS:-3}; loss=0.01; mib=100
need=()
command -v tc >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
[ -x /usr/sbin/sshd ] || need+=(openssh-server openssh-client)
command -v bc >/dev/null || need+=(bc)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p extrasafe
bin=$PWD/target/release/extrasafe
w=$(mktemp -d /tmp/extrasafe-lossy-XXXX)
A=es-bench-a; B=es-bench-b
cleanup() {
  [ -f "$w/sshd.pid" ] && kill "$(cat "$w/sshd.pid")" 2>/dev/null
  ip netns pids $A 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids $B 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true
  rm -rf "$w"
}
trap cleanup EXIT
cleanup 2>/dev/null || true; mkdir -p "$w"
ip netns add $A; ip netns add $B
ip link add es-va type veth peer name es-vb
ip link set es-va netns $A; ip link set es-vb netns $B
ip -n $A addr add 10.99.0.1/24 dev es-va; ip -n $B addr add 10.99.0.2/24 dev es-vb
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set es-va up; ip -n $B link set es-vb up
tc -n $A qdisc add dev es-va root tbf rate "$rate" burst 64kb limit 1mb
tc -n $B qdisc add dev es-vb root tbf rate "$rate" burst 64kb limit 1mb
for ns in $A $B; do
  ip netns exec $ns iptables -A INPUT -i es-v+ -m statistic --mode random --probability $loss -j DROP
done

f="$w/file.bin"; head -c $((mib * 1024 * 1024)) /dev/urandom > "$f"; bytes=$((mib * 1024 * 1024))
link_mbs=$(echo "${rate%mbit} * 1000000 / 8 / 1000000" | bc -l)

# scp over the same link: sshd in B.
source bench/lib.sh
mkdir -p "$w/scp-dst"
start_sshd "$w" 10.99.0.2 2222 ip netns exec $B

export PULSE_SERVER=unix:/nonexistent

echo "Transfer of $mib MiB over a $rate link with 1 % random loss each way (no added delay), median of $runs"
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
times=()
for r in $(seq "$runs"); do
  rm -f "$w/scp-dst/"*
  t0=$(now)
  ip netns exec $A scp "${scp_opts[@]}" "$f" root@10.99.0.2:"$w/scp-dst/"
  t1=$(now); times+=("$(echo "$t1 - $t0" | bc -l)")
done
report "scp (TCP cubic)" - "${times[@]}"
for cc in cubic newreno bbr; do
  times=(); rates=()
  for r in $(seq "$runs"); do
    rm -rf "$w/dst"; mkdir -p "$w/dst"
    ip netns exec $B "$bin" --ephemeral --json --congestion $cc receive --bind 10.99.0.2:0 --once \
      --dir "$w/dst" --accept-files anyone </dev/null >"$w/recv.out" 2>/dev/null &
    rpid=$!
    ticket=""
    for _ in $(seq 100); do ticket=$(grep -o 'est1[a-z0-9]*' "$w/recv.out" 2>/dev/null | head -1 || true); [ -n "$ticket" ] && break; sleep 0.05; done
    t0=$(now)
    ip netns exec $A "$bin" --ephemeral --json --congestion $cc send --to "$ticket" "$f" </dev/null >"$w/send.out" 2>/dev/null
    t1=$(now)
    wait "$rpid" || true
    cmp -s "$f" "$w/dst/file.bin" || { echo "extrasafe ($cc): copy differs"; exit 1; }
    times+=("$(echo "$t1 - $t0" | bc -l)")
    rates+=("$(grep -o '"bytes_per_sec":[0-9.]*,"detail"' "$w/send.out" | grep -o '[0-9.]*' | head -1)")
  done
  report "extrasafe ($cc)" "$(printf "%s\n" "${rates[@]}" | median)" "${times[@]}"
done
