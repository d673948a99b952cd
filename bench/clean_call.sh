#!/usr/bin/env bash
# A voice call on a clean line, one way, three peers in the same run, rounds interleaved:
#   extrasafe        this tree (its audio moves to 56 kb/s with one copy once the far end
#                    has reported nothing to rebuild for 5 s),
#   extrasafe-base   an earlier revision (BASE, default a631338: 40 kb/s with two copies,
#                    always),
#   baresip          Debian's baresip 1.0, Opus 32 kb/s over SRTP, the named peer.
# Each call: two processes on 127.0.0.1; the caller sends a WAV file (8 s of one sentence, so
# that extrasafe has settled, then the scored voice), the callee records what its player took
# (extrasafe: --audio-out; baresip: its aubridge player looped into its own source and dumped
# by sndfile). Per call: PESQ-WB of the scored voice as found in the recording
# (bench/drift_score.py), and the CPU of each process (all threads, from
# /proc/PID/task/*/schedstat) over a steady 10 s window from 6 s into the call, in % of one
# core (start-up, key generation and the handshake left out). Medians per peer; ratios
# against baresip.
# Usage: bash bench/clean_call.sh [ROUNDS, default 3]    (BASE=<rev> for another revision)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${1:-3}
base=${BASE:-a631338}
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v baresip >/dev/null || need+=(baresip)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
pesq_venv
work=$(mktemp -d)
cleanup() {
  pkill -f "$work" 2>/dev/null || true
  git worktree remove --force "$work/base" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
build_with_base "$base" "$work" "$work/extrasafe-base" "$work/extrasafe"
export PULSE_SERVER=unix:/nonexistent

# The lead-in and the scored voice, 48 kHz mono (baresip's aufile wants the call's rate).
espeak-ng -v en-gb+m4 -s 135 -p 35 -w "$work/lead.wav" "Nothing about this call is stored anywhere. The keys were made on this device, and they never leave it."
espeak-ng -v en-us -s 150 -w "$work/v22.wav" "The quick brown fox jumps over the lazy dog. \
Please call me back when you have read the report, and bring the numbers from last week. \
We should meet at the station at half past seven."
"$venv/bin/python" - "$work/lead.wav" "$work/v22.wav" "$work/voice.wav" "$work/send.wav" <<'PY'
import sys, wave
import numpy as np
from scipy.signal import resample_poly
def load(p):
    with wave.open(p) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(float)
        return np.clip(resample_poly(x, 48000, w.getframerate()), -32768, 32767).astype(np.int16)
def save(p, y):
    with wave.open(p, "wb") as o:
        o.setnchannels(1); o.setsampwidth(2); o.setframerate(48000); o.writeframes(y.tobytes())
lead, voice = load(sys.argv[1]), load(sys.argv[2])
lead = np.concatenate([lead, np.zeros(max(0, 8 * 48000 - len(lead)), np.int16)])[: 8 * 48000]
save(sys.argv[3], voice)
save(sys.argv[4], np.concatenate([lead, voice]))
PY
secs=$("$venv/bin/python" -c "import wave; w=wave.open('$work/send.wav'); print(int(w.getnframes()/48000)+3)")

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {printf "%.0f", s}'; }
# CPU of two processes over 10 s from 6 s after now, % of one core: "a% b%".
steady_cpu() { # $1, $2 = pgrep patterns
  sleep 6
  local p q a1 b1 a2 b2
  p=$(pgrep -f -- "$1" | head -1 || true); q=$(pgrep -f -- "$2" | head -1 || true)
  a1=$(cpu_ns "$p"); b1=$(cpu_ns "$q"); sleep 10; a2=$(cpu_ns "$p"); b2=$(cpu_ns "$q")
  awk -v a=$((a2 - a1)) -v b=$((b2 - b1)) 'BEGIN {printf "%.2f %.2f\n", a / 1e8, b / 1e8}'
}

extrasafe_call() { # $1 = binary, $2 = recording; prints "caller% callee%"
  local bin=$1 rec=$2 t=""
  (sleep $((secs + 8)) | "$bin" --ephemeral --json listen --bind 127.0.0.1:0 \
     --accept anyone --once --audio-out "$rec" >"$work/l.out" 2>/dev/null &)
  for _ in $(seq 100); do
    t=$(grep -o 'est1[a-z0-9]*' "$work/l.out" 2>/dev/null | head -1 || true); [ -n "$t" ] && break; sleep 0.1
  done
  ( (sleep "$secs"; echo /hangup) | "$bin" --ephemeral --json call "$t" \
     --audio-in "$work/send.wav" >"$work/c.out" 2>/dev/null &)
  steady_cpu "--json call $t" "--audio-out $rec"
  # The listener writes its recording as the call ends.
  for _ in $(seq 200); do pgrep -f -- "--audio-out $rec" >/dev/null || break; sleep 0.1; done
}

baresip_call() { # $1 = recording; prints "caller% callee%"
  local d="$work/bs"
  rm -rf "$d"
  baresip_conf "$d/bob" bob 5060 aubridge,bob
  baresip_conf "$d/alice" alice 5070 "aufile,$work/send.wav"
  echo "<sip:bob@127.0.0.1:5060>;regint=0;audio_codecs=opus/48000/2;mediaenc=srtp-mand;answermode=auto" >"$d/bob/accounts"
  echo "<sip:alice@127.0.0.1:5070>;regint=0;audio_codecs=opus/48000/2;mediaenc=srtp-mand" >"$d/alice/accounts"
  (baresip -4 -f "$d/bob" -t $((secs + 4)) >"$d/bob.log" 2>&1 &)
  sleep 1
  (baresip -4 -f "$d/alice" -e "/dial sip:bob@127.0.0.1:5060" -t "$secs" >"$d/alice.log" 2>&1 &)
  steady_cpu "-f $d/alice" "-f $d/bob"
  # Bob hangs up at his -t and writes his dump; the next round's Bob needs his port.
  for _ in $(seq 400); do pgrep -f -- "-f $d/bob" >/dev/null || break; sleep 0.1; done
  pkill -f -- "-f $d/" 2>/dev/null || true
  sleep 1
  # What Bob's player took, looped back into his encoder.
  cp "$(ls "$d"/bob/*-enc.wav | head -1)" "$1"
}

echo "sent: 8 s lead-in + $((secs - 11)) s scored voice; $rounds rounds; $(uptime)"
: >"$work/rows"
for r in $(seq "$rounds"); do
  for impl in extrasafe extrasafe-base baresip; do
    rec="$work/$impl-$r.wav"
    # In the foreground: the next call starts only once this one has ended and its
    # recording is written.
    case $impl in
      baresip) baresip_call "$rec" >"$work/cpu" ;;
      *) extrasafe_call "$work/$impl" "$rec" >"$work/cpu" ;;
    esac
    read -r a b <"$work/cpu"
    echo "$impl $r $a $b $work/voice.wav $rec" >>"$work/rows"
    echo "round $r $impl done" >&2
    sleep 2
  done
done
cut -d' ' -f5,6 "$work/rows" | "$venv/bin/python" bench/drift_score.py >"$work/scores"
paste -d' ' "$work/rows" "$work/scores" >"$work/all"
# Columns of "all": impl round caller% callee% ref rec lost_ms pesq.
echo
echo "| peer | PESQ-WB, median (rounds) | caller CPU, % of a core (rounds) | callee CPU, % of a core (rounds) |"
echo "|---|---|---|---|"
declare -A med
for impl in extrasafe extrasafe-base baresip; do
  row="| $impl |"
  for c in 8 3 4; do
    v=$(awk -v i="$impl" -v c="$c" '$1==i {print $c}' "$work/all")
    med[$impl/$c]=$(echo "$v" | median)
    row+=" ${med[$impl/$c]} ($(echo $v)) |"
  done
  echo "$row"
done
for impl in extrasafe extrasafe-base; do
  awk -v i="$impl" -v p="${med[$impl/8]}" -v a="${med[$impl/3]}" -v b="${med[$impl/4]}" \
      -v bp="${med[baresip/8]}" -v ba="${med[baresip/3]}" -v bb="${med[baresip/4]}" \
      'BEGIN {printf "%s / baresip: PESQ %.2f, caller CPU %.2f, callee CPU %.2f\n", i, p / bp, a / ba, b / bb}'
done
echo "uptime after: $(uptime)"
