#!/usr/bin/env bash
# A 720p30 video call both ways, with audio both ways, between two `extrasafe` processes on
# this 2-core machine: does audio stay glitch-free while both ends encode and decode 720p?
# Each side sends the test picture (1280x720, 30 fps) and a looped voice, and records what it
# hears (file sinks, no sound server). The baseline, in the same run, is the same call without
# video. Measured per round (20 s call): audio frames lost and concealed at each end (from the
# final stats), video frames per second shown at each end, and CPU of each process over a
# steady 10 s window. Three rounds each. Usage: bash bench/video_call.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v espeak-ng >/dev/null || { apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; }
cargo build --release -q -p extrasafe
bin=$PWD/target/release/extrasafe
work=$(mktemp -d)
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
espeak-ng -v en-us -s 150 -w "$work/voice.wav" "The quick brown fox jumps over the lazy dog. Please call me back when you have read the report, and bring the numbers from last week."
export PULSE_SERVER=unix:/nonexistent
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {printf "%.0f", s}'; }
last() { grep "\"event\":\"$2\"" "$1" | tail -1 || true; }
field() { grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2 || true; }
round() { # $1 = "video" or "audio"; prints one result line
  local mode=$1 v=()
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
  printf "%-6s caller CPU %5.1f %%  callee CPU %5.1f %% | audio lost/concealed at caller %s/%s, at callee %s/%s | video shown: caller %s frames, callee %s frames\n" \
    "$mode" "$(awk -v x=$((a2-a1)) 'BEGIN{print x/1e8}')" "$(awk -v x=$((b2-b1)) 'BEGIN{print x/1e8}')" \
    "$(field "$cs" lost)" "$(field "$cs" concealed)" "$(field "$ls" lost)" "$(field "$ls" concealed)" \
    "$(field "$cv" shown)" "$(field "$lv" shown)"
  sleep 2
}
echo "720p30 both ways + audio both ways (video) vs audio only (baseline), 20 s calls, CPU over 10 s (% of one core):"
for r in 1 2 3; do
  round video
  round audio
done
