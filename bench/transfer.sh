#!/usr/bin/env bash
# File-transfer benchmark on loopback: `extrasafe send` → `extrasafe receive` (two processes,
# release build) against scp to a private sshd on 127.0.0.1 (the named baseline, AES-128-GCM,
# the fastest scp cipher here), same files, same run. Sizes 100 MiB and 1 GiB of random data,
# three runs each, medians; ours with each congestion controller in CCS (default "bbr cubic"). Wall time of the whole command (start-up, handshake and, for us,
# hashing included) and CPU seconds per GiB for both of our processes. Also the transport's
# own ceiling in the same run: `quinn-ceiling` (quinn, our TLS and windows, memory to memory).
# Usage: bash bench/transfer.sh            (RUNS=5 bash bench/transfer.sh for more rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
if ! command -v sshd >/dev/null && [ ! -x /usr/sbin/sshd ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
fi
cargo build --release -q -p extrasafe
cargo build --release -q -p extrasafe-bench --bin quinn-ceiling
bin=$PWD/target/release/extrasafe
ceiling=$PWD/target/release/quinn-ceiling
w=$(mktemp -d /tmp/extrasafe-xfer-XXXX)
cleanup() { [ -f "$w/sshd.pid" ] && kill "$(cat "$w/sshd.pid")" 2>/dev/null; pkill -f "$w" 2>/dev/null || true; rm -rf "$w"; }
trap cleanup EXIT
export PULSE_SERVER=unix:/nonexistent

# A private sshd on loopback, key login only.
source bench/lib.sh
mkdir -p "$w/scp-dst"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_sshd "$w" 127.0.0.1 "$port"

cpu_of() { awk '/User time/ {u=$4} /System time/ {s=$4} END {print u+s}' "$1"; }

echo "File transfer on loopback, median of $runs runs (MB = 10^6 bytes)"
printf "%-8s %-18s %10s %10s %8s %22s\n" size tool seconds MB/s ratio "CPU s/GiB send+recv"
for size_mib in 100 1024; do
  f="$w/file-$size_mib.bin"
  head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$f"
  bytes=$((size_mib * 1024 * 1024))
  scp_t=()
  for r in $(seq "$runs"); do
    rm -f "$w/scp-dst/"*
    sync
    t0=$(now); scp "${scp_opts[@]}" "$f" "root@127.0.0.1:$w/scp-dst/"; t1=$(now)
    scp_t+=("$(echo "$t1 - $t0" | bc -l)")
    cmp -s "$f" "$w/scp-dst/$(basename "$f")" || { echo "scp copy differs"; exit 1; }
  done
  st=$(printf "%s\n" "${scp_t[@]}" | median)
  smb=$(echo "$bytes / $st / 1000000" | bc -l)
  printf "%-8s %-18s %10.2f %10.1f %8s %22s\n" "${size_mib}MiB" scp "$st" "$smb" "1.00×" "-"
  echo "         runs: ${scp_t[*]}"
  # The transport's own ceiling: quinn with our TLS and windows, memory to memory (no file,
  # no hashing), same run.
  for cc in ${CCS-bbr cubic}; do
    q_t=(); q_cpu=()
    for r in $(seq "$runs"); do
      /usr/bin/time -v -o "$w/qrecv.time" "$ceiling" serve >"$w/q.out" 2>/dev/null &
      qpid=$!
      for _ in $(seq 100); do [ -s "$w/q.out" ] && break; sleep 0.05; done
      read -r qpeer qport <"$w/q.out"
      qt=$(/usr/bin/time -v -o "$w/qsend.time" "$ceiling" send "$qport" "$qpeer" "$size_mib" "$cc")
      wait "$qpid"
      q_t+=("$qt")
      q_cpu+=("$(echo "($(cpu_of "$w/qsend.time") + $(cpu_of "$w/qrecv.time")) * 1024 / $size_mib" | bc -l)")
    done
    qt=$(printf "%s\n" "${q_t[@]}" | median)
    qc=$(printf "%s\n" "${q_cpu[@]}" | median)
    qmb=$(echo "$bytes / $qt / 1000000" | bc -l)
    printf "%-8s %-18s %10.2f %10.1f %7.2f× %22.2f\n" "${size_mib}MiB" "quinn alone ($cc)" "$qt" "$qmb" "$(echo "$qmb / $smb" | bc -l)" "$qc"
    echo "         runs: ${q_t[*]} (memory to memory, data phase only)"
  done
  for cc in ${CCS-bbr cubic}; do
    es_t=(); es_cpu=()
    for r in $(seq "$runs"); do
      rm -rf "$w/es-dst"; mkdir -p "$w/es-dst"
      sync
      /usr/bin/time -v -o "$w/recv.time" "$bin" --ephemeral --json --congestion "$cc" receive --bind 127.0.0.1:0 --once \
        --dir "$w/es-dst" --accept-files anyone </dev/null >"$w/recv.out" 2>/dev/null &
      rpid=$!
      ticket=""
      for _ in $(seq 100); do ticket=$(grep -o 'est1[a-z0-9]*' "$w/recv.out" 2>/dev/null | head -1 || true); [ -n "$ticket" ] && break; sleep 0.05; done
      t0=$(now)
      /usr/bin/time -v -o "$w/send.time" "$bin" --ephemeral --json --congestion "$cc" send --to "$ticket" "$f" </dev/null >"$w/send.out" 2>/dev/null
      t1=$(now)
      wait "$rpid"
      es_t+=("$(echo "$t1 - $t0" | bc -l)")
      cmp -s "$f" "$w/es-dst/$(basename "$f")" || { echo "extrasafe copy differs"; exit 1; }
      c=$(echo "($(cpu_of "$w/send.time") + $(cpu_of "$w/recv.time")) * 1024 / $size_mib" | bc -l)
      es_cpu+=("$c")
    done
    et=$(printf "%s\n" "${es_t[@]}" | median)
    ec=$(printf "%s\n" "${es_cpu[@]}" | median)
    emb=$(echo "$bytes / $et / 1000000" | bc -l)
    printf "%-8s %-18s %10.2f %10.1f %7.2f× %22.2f\n" "${size_mib}MiB" "extrasafe ($cc)" "$et" "$emb" "$(echo "$emb / $smb" | bc -l)" "$ec"
    echo "         runs: ${es_t[*]}"
  done
  rm -f "$f"
done
for peer in sendme wormhole; do
  command -v "$peer" >/dev/null || echo "($peer is not installed: not measured)"
done
