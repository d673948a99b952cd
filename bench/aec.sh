#!/usr/bin/env bash
# Echo cancellation, side by side on the same signals in the same run: the pure-Rust
# cancellers (`sonora`, `aec3`), the canceller as the product runs it (`extrasafe`: sonora,
# with the microphone passed untouched while no echo has been found), the anchor (PulseAudio's
# `module-echo-cancel aec_method=webrtc`, WebRTC's AEC3 as Signal, Jami and Chrome ship it) and
# no canceller at all (`none`). Seven scenarios of 20 s at 48 kHz (bench/src/aec.rs): echo
# paths of 40, 120 and 250 ms, a clipping speaker, a path that changes mid-call, a headset (no
# echo) and an echo 30 dB weaker; double talk from 12 s to 16 s. Scored by bench/aec_score.py:
# ERLE, reconvergence after the change, PESQ-WB of the near end alone and during double talk;
# CPU printed by aec-bench.
# Installs what it needs (espeak-ng, sox, PulseAudio, a venv with PyPI pesq).
# Usage: bash bench/aec.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v pulseaudio >/dev/null || need+=(pulseaudio)
command -v parecord >/dev/null || need+=(pulseaudio-utils)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
pesq_venv
work=${AEC_WORK:-$(mktemp -d)}
mkdir -p "$work"
trap 'pulseaudio --kill 2>/dev/null || true; [ -n "${AEC_WORK:-}" ] || rm -rf "$work"' EXIT
# Two voices: the far end (played by the speaker) and the near end (talking into the mic).
espeak-ng -v en-us -s 150 -w "$work/far-raw.wav" "The quick brown fox jumps over the lazy dog. Please call me back when you have read the report, and bring the numbers from last week. We should meet at the station at half past seven."
espeak-ng -v en-gb+f3 -s 160 -p 65 -w "$work/near-raw.wav" "Nothing about this call is stored anywhere. The keys were made on this device, and they never leave it. If the train is late, I will wait in the small cafe across the street."
sox "$work/far-raw.wav" -r 48000 -c 1 -b 16 "$work/far-voice.wav"
sox "$work/near-raw.wav" -r 48000 -c 1 -b 16 "$work/near-voice.wav"
cargo build --release -q -p extrasafe-bench --bin aec-bench
./target/release/aec-bench gen "$work/sc" "$work/far-voice.wav" "$work/near-voice.wav"
echo "uptime: $(uptime)"
./target/release/aec-bench run "$work/sc"

# The anchor: a private, headless PulseAudio with the WebRTC canceller between a null sink
# (the speaker) and a null sink's monitor (the microphone). The far end is played into the
# canceller's sink, the microphone's signal into the mic sink, and the canceller's source is
# recorded; the recording is aligned when scored.
export XDG_RUNTIME_DIR=$work/xdg HOME=$work/home
mkdir -p "$XDG_RUNTIME_DIR" "$HOME"
pulseaudio -n --daemonize=yes --exit-idle-time=-1 -L module-native-protocol-unix \
  -L "module-null-sink sink_name=spk rate=48000 channels=1" \
  -L "module-null-sink sink_name=micsink rate=48000 channels=1" 2>/dev/null
for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
pactl load-module module-echo-cancel aec_method=webrtc source_master=micsink.monitor \
  sink_master=spk source_name=ec_src sink_name=ec_sink >/dev/null
for d in "$work"/sc/*/; do
  parecord -d ec_src --rate=48000 --channels=1 --format=s16le --latency-msec=10 \
    --file-format=wav "$d/out-webrtc.wav" &
  rec=$!
  sleep 1
  paplay -d ec_sink --latency-msec=10 "$d/far.wav" &
  p1=$!
  paplay -d micsink --latency-msec=10 "$d/mic.wav" &
  p2=$!
  wait $p1 $p2
  sleep 1
  kill -INT $rec; wait $rec 2>/dev/null || true
done
echo "uptime: $(uptime)"
"$venv/bin/python" bench/aec_score.py "$work/sc" none webrtc sonora aec3 extrasafe
