#!/usr/bin/env bash
# Does a file transfer hurt the call it runs in? A real call (audio both ways from a looped
# WAV file) over the lossy, rate-limited link of transfer_lossy.sh (RATE 200mbit, RTT_MS 40,
# LOSS 1 % each way, two namespaces that exist only here); after 10 s of audio alone, the
# caller sends MIB (default 300) MiB with `/send`, and the call goes on 10 s after it is done.
# For each congestion controller in CCS (default "bbr cubic"): the transfer's rate, and the
# callee's audio stats (every 5 s) before and during the transfer: round trip, jitter-buffer
# delay, frames lost and concealed. The baseline is the same call without a transfer (its
# first 10 s), same run.
# Usage: sudo bash bench/call_during_transfer.sh   (MIB=100 CCS=bbr RUNS=1 ...)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${RATE:-200mbit}; rtt=${RTT_MS:-40}; loss=${LOSS:-0.01}; mib=${MIB:-300}
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)"; exit 2; }
cargo build --release -q -p extrasafe
cargo build --release -q -p extrasafe-bench --bin netdelay
bin=$PWD/target/release/extrasafe
w=$(mktemp -d /tmp/extrasafe-calltx-XXXX)
A=es-call-a; B=es-call-b
source bench/lib.sh
cleanup() {
  exec 7>&- 2>/dev/null || true
  lossy_link_down $A $B
  rm -rf "$w"
}
trap cleanup EXIT
lossy_link "$A" "$B" "$rate" "$loss" "$rtt"
export PULSE_SERVER=unix:/nonexistent

# Ten seconds of a voice-like signal: a 200 Hz tone with harmonics, syllable-rate envelope.
python3 - "$w/voice.wav" <<'PY'
import math, struct, sys, wave
rate = 48000
with wave.open(sys.argv[1], "wb") as f:
    f.setnchannels(1); f.setsampwidth(2); f.setframerate(rate)
    frames = bytearray()
    for i in range(rate * 10):
        t = i / rate
        env = 0.5 + 0.5 * math.sin(2 * math.pi * 4 * t)
        s = sum(math.sin(2 * math.pi * 200 * k * t) / k for k in range(1, 6))
        frames += struct.pack("<h", int(8000 * env * s / 2.3))
    f.writeframes(bytes(frames))
PY
f="$w/file.bin"; head -c $((mib * 1024 * 1024)) /dev/urandom > "$f"

# stats_rows LOG: "phase rtt_ms buffer_ms lost concealed" per stats event of the callee, the
# phase being before/during/after the transfer as the log's own order tells.
stats_rows() {
  python3 - "$1" <<'PY'
import json, sys
phase = "before"
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    ev = e.get("event")
    if ev == "files_accepted":
        phase = "during"
    elif ev == "transfer_done":
        phase = "after"
    elif ev == "stats":
        print(phase, e["rtt_ms"], max(e["buffer_ms"], e["target_delay_ms"]), e["lost"], e["concealed"])
PY
}

echo "A call over a $rate link, ${rtt} ms round trip, $(echo "$loss * 100" | bc -l | sed 's/0*$//; s/\.$//') % loss each way; $mib MiB sent during it"
printf "%-8s %-8s %12s %12s %14s %16s %12s\n" cc phase "RTT ms" "delay ms" "frames lost" "concealed" "transfer"
for cc in ${CCS-bbr cubic}; do
  rm -rf "$w/dst"; mkdir -p "$w/dst"
  ip netns exec $B "$bin" --ephemeral --json --congestion "$cc" listen --bind 10.99.0.2:0 --once \
    --accept anyone --accept-files anyone --dir "$w/dst" \
    --audio-in "$w/voice.wav" --loop --audio-out "$w/b.wav" </dev/null >"$w/b.out" 2>"$w/b.err" &
  bpid=$!
  ticket=""
  for _ in $(seq 100); do ticket=$(grep -o 'est1[a-z0-9]*' "$w/b.out" 2>/dev/null | head -1 || true); [ -n "$ticket" ] && break; sleep 0.05; done
  rm -f "$w/a.in"; mkfifo "$w/a.in"
  ip netns exec $A "$bin" --ephemeral --json --congestion "$cc" call "$ticket" \
    --audio-in "$w/voice.wav" --loop --audio-out "$w/a.wav" <"$w/a.in" >"$w/a.out" 2>"$w/a.err" &
  apid=$!
  exec 7>"$w/a.in"
  for _ in $(seq 100); do grep -q '"event":"connected"' "$w/a.out" && break; sleep 0.1; done
  sleep 11
  echo "/send $f" >&7
  for _ in $(seq 1200); do grep -q '"event":"transfer_done"' "$w/a.out" && break; sleep 0.1; done
  sleep 11
  echo "/hangup" >&7
  exec 7>&-
  wait "$apid" || true; wait "$bpid" || true
  cmp -s "$f" "$w/dst/file.bin" || { echo "$cc: the file did not arrive intact"; tail -n 5 "$w/a.out" "$w/b.out" "$w/b.err"; exit 1; }
  mbs=$(grep -o '"bytes_per_sec":[0-9.]*,"detail"' "$w/a.out" | grep -o '[0-9.]*' | head -1)
  stats_rows "$w/b.out" | awk -v cc="$cc" -v mbs="$mbs" '
    { n[$1]++; if ($2 > rtt[$1]) rtt[$1] = $2; if ($3 > dly[$1]) dly[$1] = $3
      # lost/concealed are running totals: what each phase added.
      lost[$1] = $4; conc[$1] = $5 }
    END {
      prev_l = 0; prev_c = 0
      split("before during after", ph, " ")
      for (i = 1; i <= 3; i++) { p = ph[i]; if (!(p in n)) continue
        printf "%-8s %-8s %12.1f %12d %14d %16d %12s\n", cc, p, rtt[p], dly[p], lost[p] - prev_l, conc[p] - prev_c, (p == "during" ? sprintf("%.1f MB/s", mbs / 1e6) : "")
        prev_l = lost[p]; prev_c = conc[p] }
    }'
done
echo "(RTT ms, delay ms: the highest of the callee's 5-second stats in that phase; delay = its"
echo " jitter buffer's; frames lost: 20 ms frames that never arrived in time, even as the copies"
echo " later packets carry; concealed: 20 ms slots played as concealment, i.e. audible glitches)"
