#!/usr/bin/env bash
# A call while the machine's cores are taken by other processes: audio time lost and PESQ-WB
# of what the callee played, quiet and loaded, for
#   extrasafe         this tree (a missed 20 ms tick is skipped),
#   extrasafe-other   another tree (OTHER, default 8884a5c: the audio clock that caught up
#                     after a stall, measured on 2026-12-06 and then reverted),
#   baresip           Debian's baresip 1.0, Opus 32 kb/s over SRTP, the named peer.
# Each call: two processes on 127.0.0.1, the caller sending a voice from a WAV file, the
# callee recording what its player took (extrasafe: --audio-out; baresip: its aubridge player
# looped into its own source, dumped by sndfile). "loaded" runs LOAD busy processes (default
# 10: a load average of about 10 on two cores) beside the call. Everything runs without
# CAP_SYS_NICE, as an ordinary user does: extrasafe cannot raise its audio thread's priority.
# Rounds are interleaved; medians. Scored by bench/drift_score.py (time lost = how much
# earlier the voice's end came than its start said it should; negative: later, the voice was
# stretched by concealment).
# Usage: bash bench/starved_call.sh [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${1:-3}
load=${LOAD:-10}
other=${OTHER:-8884a5c}
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v baresip >/dev/null || need+=(baresip)
command -v capsh >/dev/null || need+=(libcap2-bin)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
pesq_venv
cargo build --release -q -p extrasafe
now_bin=$PWD/target/release/extrasafe
work=$(mktemp -d)
# The other tree, built once into its own target folder (kept between runs).
git worktree add -q --detach "$work/other" "$other"
cargo build --release -q -p extrasafe --manifest-path "$work/other/Cargo.toml" \
  --target-dir "$PWD/target/starved-other"
other_bin=$PWD/target/starved-other/release/extrasafe
loaders=()
cleanup() {
  for p in "${loaders[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -f "$work" 2>/dev/null || true
  git worktree remove --force "$work/other" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export PULSE_SERVER=unix:/nonexistent

# About 20 s of speech, 48 kHz mono (baresip's aufile wants the call's rate).
espeak-ng -v en-us -s 150 -w "$work/v22.wav" "The quick brown fox jumps over the lazy dog. \
Please call me back when you have read the report, and bring the numbers from last week. \
We should meet at the station at half past seven. If the train is late, I will wait in the \
small cafe across the street. Nothing about this call is stored anywhere."
"$venv/bin/python" - "$work/v22.wav" "$work/voice.wav" <<'PY'
import sys, wave
import numpy as np
from scipy.signal import resample_poly
with wave.open(sys.argv[1]) as w:
    rate = w.getframerate()
    x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(float)
y = np.clip(resample_poly(x, 48000, rate), -32768, 32767).astype(np.int16)
with wave.open(sys.argv[2], "wb") as o:
    o.setnchannels(1); o.setsampwidth(2); o.setframerate(48000); o.writeframes(y.tobytes())
PY
secs=$("$venv/bin/python" -c "import wave; w=wave.open('$work/voice.wav'); print(int(w.getnframes()/48000)+3)")

# Without CAP_SYS_NICE (an ordinary user: no priority raise).
plain() { capsh --drop=cap_sys_nice -- -c 'exec "$@"' x "$@"; }

extrasafe_call() { # $1 = binary, $2 = recording
  local bin=$1 rec=$2 t=""
  (sleep $((secs + 8)) | plain "$bin" --ephemeral --json listen --bind 127.0.0.1:0 \
     --accept anyone --once --audio-out "$rec" >"$work/l.out" 2>/dev/null &)
  for _ in $(seq 100); do
    t=$(grep -o 'est1[a-z0-9]*' "$work/l.out" 2>/dev/null | head -1 || true); [ -n "$t" ] && break; sleep 0.1
  done
  (sleep "$secs"; echo /hangup) | plain "$bin" --ephemeral --json call "$t" \
     --audio-in "$work/voice.wav" >"$work/c.out" 2>/dev/null || true
  # The listener writes its recording as the call ends.
  for _ in $(seq 100); do pgrep -f -- "--audio-out $rec" >/dev/null || break; sleep 0.1; done
  # Where time went, from each side's last stats line (to stderr, beside the table).
  for side in c l; do
    grep '"event":"stats"' "$work/$side.out" 2>/dev/null | tail -1 | "$venv/bin/python" -c '
import json, sys
for line in sys.stdin:
    s = json.loads(line)
    keys = ["frames_due", "frames_caught_up", "frames_dropped", "frames_unsent", "played",
            "lost", "late", "concealed", "jitter_dropped", "jitter_inserted"]
    print("  '"$side"':", " ".join(f"{k}={s[k]}" for k in keys if k in s), file=sys.stderr)
' || true
  done
}

baresip_call() { # $1 = recording
  local d="$work/bs"
  rm -rf "$d"
  baresip_conf "$d/bob" bob 5060 aubridge,bob
  baresip_conf "$d/alice" alice 5070 "aufile,$work/voice.wav"
  echo "<sip:bob@127.0.0.1:5060>;regint=0;audio_codecs=opus/48000/2;mediaenc=srtp-mand;answermode=auto" >"$d/bob/accounts"
  echo "<sip:alice@127.0.0.1:5070>;regint=0;audio_codecs=opus/48000/2;mediaenc=srtp-mand" >"$d/alice/accounts"
  (plain baresip -4 -f "$d/bob" -t $((secs + 4)) >"$d/bob.log" 2>&1 &)
  sleep 1
  plain baresip -4 -f "$d/alice" -e "/dial sip:bob@127.0.0.1:5060" -t "$secs" >"$d/alice.log" 2>&1 || true
  for _ in $(seq 100); do pgrep -f -- "-f $d/bob" >/dev/null || break; sleep 0.1; done
  # What Bob's player took, looped back into his encoder.
  cp "$(ls "$d"/bob/*-enc.wav | head -1)" "$1"
}

start_load() {
  loaders=()
  for _ in $(seq "$load"); do
    sh -c 'while :; do :; done' &
    loaders+=($!)
  done
  sleep 1
}
stop_load() {
  for p in "${loaders[@]}"; do kill "$p" 2>/dev/null || true; done
  loaders=()
}

echo "voice: $((secs - 3)) s; load: $load busy processes; $rounds rounds; $(uptime)"
: >"$work/pairs"
for r in $(seq "$rounds"); do
  for cond in quiet loaded; do
    for impl in extrasafe extrasafe-other baresip; do
      rec="$work/$impl-$cond-$r.wav"
      [ "$cond" = loaded ] && start_load
      la=$(cut -d' ' -f1 /proc/loadavg)
      case $impl in
        extrasafe) extrasafe_call "$now_bin" "$rec" ;;
        extrasafe-other) extrasafe_call "$other_bin" "$rec" ;;
        baresip) baresip_call "$rec" ;;
      esac
      [ "$cond" = loaded ] && stop_load
      echo "$impl $cond $r $la $work/voice.wav $rec" >>"$work/pairs"
      echo "round $r $cond $impl done (load average at start $la)" >&2
      sleep 2
    done
  done
done
cut -d' ' -f5,6 "$work/pairs" | "$venv/bin/python" bench/drift_score.py >"$work/scores"
paste -d' ' "$work/pairs" "$work/scores" >"$work/all"
echo
echo "| peer | condition | time lost (+) or stretched (−) over the voice, ms (median; rounds) | PESQ-WB (median; rounds) |"
echo "|---|---|---|---|"
for impl in extrasafe extrasafe-other baresip; do
  for cond in quiet loaded; do
    lost=$(awk -v i="$impl" -v c="$cond" '$1==i && $2==c {print $7}' "$work/all")
    mos=$(awk -v i="$impl" -v c="$cond" '$1==i && $2==c {print $8}' "$work/all")
    ml=$(echo "$lost" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
    mm=$(echo "$mos" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
    echo "| $impl | $cond | $ml ($(echo $lost)) | $mm ($(echo $mos)) |"
  done
done
for cond in quiet loaded; do
  a=$(awk -v c="$cond" '$1=="extrasafe" && $2==c {print $8}' "$work/all" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
  b=$(awk -v c="$cond" '$1=="baresip" && $2==c {print $8}' "$work/all" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
  awk -v a="$a" -v b="$b" -v c="$cond" 'BEGIN {printf "PESQ ratio extrasafe / baresip, %s: %.2f\n", c, a/b}'
done
echo "load averages at the start of each call: $(awk '{print $4}' "$work/all" | tr '\n' ' ')"
