#!/usr/bin/env bash
# The same calls made by two builds, side by side in one run: the named peer is an earlier
# revision of EXTRA SAFE (BASE, default the commit before the call's machine was one task),
# against the working tree. Two `extrasafe` processes on loopback per call, each sending a
# looped voice and recording what it hears (file sinks, no sound server); with video, each
# also sends the 720p test picture. Per round (20 s calls): CPU of each process over a steady
# 10 s window (all threads, /proc/PID/task/*/schedstat), audio frames lost and concealed at
# each end, pictures shown. Rounds interleave the builds; medians per build and mode.
# Usage: bash bench/call_ab.sh [ROUNDS]      (BASE=<rev> to compare with another revision)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${1:-3}
base=${BASE:-493e0b6}
command -v espeak-ng >/dev/null || { apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; }
work=$(mktemp -d)
trap 'pkill -f "$work" 2>/dev/null || true; git worktree remove --force "$work/base" 2>/dev/null || true; rm -rf "$work"' EXIT
build_with_base "$base" "$work" "$work/old" "$work/new"
espeak-ng -v en-us -s 150 -w "$work/voice.wav" "The quick brown fox jumps over the lazy dog. Please call me back when you have read the report, and bring the numbers from last week."
export PULSE_SERVER=unix:/nonexistent
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {printf "%.0f", s}'; }
last() { grep "\"event\":\"$2\"" "$1" | tail -1 || true; }
field() { grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2 || true; }
round() { # $1 = build (old|new), $2 = mode (audio|video); prints "caller% callee% lost conc shown"
  local bin=$work/$1 mode=$2 v=()
  [ "$mode" = video ] && v=(--video test --video-size 1280x720)
  (sleep 30 | "$bin" --ephemeral --json listen --bind 127.0.0.1:0 --accept anyone --once \
     --audio-in "$work/voice.wav" --loop --audio-out "$work/l-heard.wav" "${v[@]}" >"$work/l.out" 2>/dev/null &)
  local t=""
  for _ in $(seq 50); do t=$(grep -o 'est1[a-z0-9]*' "$work/l.out" 2>/dev/null | head -1 || true); [ -n "$t" ] && break; sleep 0.1; done
  ( (sleep 20; echo /hangup) | "$bin" --ephemeral --json call "$t" \
     --audio-in "$work/voice.wav" --loop --audio-out "$work/c-heard.wav" "${v[@]}" >"$work/c.out" 2>/dev/null &)
  sleep 6
  local cp lp; cp=$(pgrep -f -- "--json call $t" | head -1); lp=$(pgrep -f -- "--audio-out $work/l-heard.wav" | head -1)
  local a1 b1 a2 b2; a1=$(cpu_ns "$cp"); b1=$(cpu_ns "$lp"); sleep 10; a2=$(cpu_ns "$cp"); b2=$(cpu_ns "$lp")
  sleep 8
  local cs ls cv lv
  cs=$(last "$work/c.out" stats); ls=$(last "$work/l.out" stats)
  cv=$(last "$work/c.out" video_stats); lv=$(last "$work/l.out" video_stats)
  local lost=$(( $(field "$cs" lost || echo 0) + $(field "$ls" lost || echo 0) ))
  local conc=$(( $(field "$cs" concealed || echo 0) + $(field "$ls" concealed || echo 0) ))
  local shown=$(( ${cv:+$(field "$cv" shown)}+0 + ${lv:+$(field "$lv" shown)}+0 ))
  awk -v a=$((a2-a1)) -v b=$((b2-b1)) -v l="$lost" -v c="$conc" -v s="$shown" \
    'BEGIN {printf "%.2f %.2f %d %d %d\n", a/1e8, b/1e8, l, c, s}'
  sleep 2
}
declare -A ca cb lost conc shown
echo "uptime before: $(uptime)"
for r in $(seq "$rounds"); do
  for mode in audio video; do
    for b in old new; do
      read -r x y l c s < <(round "$b" "$mode")
      k="$b/$mode"; ca[$k]+="$x "; cb[$k]+="$y "; lost[$k]+="$l "; conc[$k]+="$c "; shown[$k]+="$s "
      echo "round $r $k: caller $x %  callee $y %  lost $l  concealed $c  shown $s"
    done
  done
done
echo "uptime after: $(uptime)"
echo "Medians over $rounds rounds (CPU: % of one core over 10 s; lost/concealed: audio frames, both ends; shown: pictures, both ends):"
printf "%-12s %10s %10s %6s %10s %7s\n" build/mode caller callee lost concealed shown
for mode in audio video; do
  for b in old new; do
    k="$b/$mode"
    printf "%-12s %8s %% %8s %% %6s %10s %7s\n" "$k" "$(echo ${ca[$k]} | tr ' ' '\n' | median)" \
      "$(echo ${cb[$k]} | tr ' ' '\n' | median)" "$(echo ${lost[$k]} | tr ' ' '\n' | median)" \
      "$(echo ${conc[$k]} | tr ' ' '\n' | median)" "$(echo ${shown[$k]} | tr ' ' '\n' | median)"
  done
  o=$(echo ${ca[old/$mode]} | tr ' ' '\n' | median); n=$(echo ${ca[new/$mode]} | tr ' ' '\n' | median)
  awk -v o="$o" -v n="$n" -v m="$mode" 'BEGIN {printf "ratio new / old (BASE), caller CPU, %s: %.2f×\n", m, n/o}'
done
