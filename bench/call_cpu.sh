#!/usr/bin/env bash
# CPU of a real call, per side: two `extrasafe` processes on loopback, the caller sending a
# voice (looped WAV), the callee silence, both receiving and playing into a file sink (no
# sound server, so no device threads). Measures each process's CPU over a steady 10 s window
# (all threads, from /proc/PID/task/*/schedstat, nanoseconds), five rounds, medians.
# Compares the pure-Rust Opus with the system libopus (the named baseline) in the same run.
# Usage: bash bench/call_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! pkg-config --exists opus 2>/dev/null || ! command -v espeak-ng >/dev/null; then
  apt-get update -qq && apt-get install -y -qq libopus-dev pkg-config espeak-ng >/dev/null
fi
cargo build --release -q -p extrasafe --features libopus
bin=$PWD/target/release/extrasafe
work=$(mktemp -d)
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
espeak-ng -v en-us -s 150 -w "$work/voice.wav" "The quick brown fox jumps over the lazy dog. Please call me back when you have read the report, and bring the numbers from last week."
export PULSE_SERVER=unix:/nonexistent
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
round() { # $1 = opus implementation; prints "caller_pct callee_pct"
  local opus=$1
  (sleep 25 | "$bin" --ephemeral --json listen --bind 127.0.0.1:0 --accept anyone --once \
     --opus "$opus" --audio-out "$work/heard.wav" >"$work/l.out" 2>/dev/null &)
  local t=""
  for _ in $(seq 50); do t=$(grep -o 'est1[a-z0-9]*' "$work/l.out" 2>/dev/null | head -1 || true); [ -n "$t" ] && break; sleep 0.1; done
  ( (sleep 17; echo /hangup) | "$bin" --ephemeral --json call "$t" --opus "$opus" \
     --audio-in "$work/voice.wav" --loop >"$work/c.out" 2>/dev/null &)
  sleep 4
  local cp lp; cp=$(pgrep -f -- "--json call $t" | head -1); lp=$(pgrep -f -- "--audio-out $work/heard.wav" | head -1)
  local a1 b1 a2 b2; a1=$(cpu_ns "$cp"); b1=$(cpu_ns "$lp"); sleep 10; a2=$(cpu_ns "$cp"); b2=$(cpu_ns "$lp")
  awk -v a=$((a2-a1)) -v b=$((b2-b1)) 'BEGIN {printf "%.2f %.2f\n", a/1e8, b/1e8}'
  sleep 5
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
declare -A caller callee
for r in 1 2 3 4 5; do
  for opus in pure libopus; do
    read -r a b < <(round "$opus")
    caller[$opus]+="$a "; callee[$opus]+="$b "
  done
done
echo "Real call on loopback, CPU per side (% of one core; median of 5 rounds of 10 s):"
printf "%-10s %22s %22s\n" "opus" "caller (talking)" "callee (silent)"
for opus in pure libopus; do
  ca=$(echo ${caller[$opus]} | tr ' ' '\n' | median); cb=$(echo ${callee[$opus]} | tr ' ' '\n' | median)
  printf "%-10s %20s %% %20s %%   rounds: %s| %s\n" "$opus" "$ca" "$cb" "${caller[$opus]}" "${callee[$opus]}"
done
pa=$(echo ${caller[pure]} | tr ' ' '\n' | median); la=$(echo ${caller[libopus]} | tr ' ' '\n' | median)
awk -v p="$pa" -v l="$la" 'BEGIN {printf "ratio pure / libopus (baseline), talking side: %.2f×\n", p/l}'
