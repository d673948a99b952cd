#!/usr/bin/env bash
# One command for the audio benchmark: installs what it needs (espeak-ng for voices, a venv
# with PyPI pesq for scoring), then runs `audio-bench`. Usage: bash bench/audio.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
# espeak-ng for voices; libopus-dev (through pkg-config) to compare the system libopus.
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev pkg-config)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
pesq_venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Several voices, speeds and pitches, eight seconds or so each.
espeak-ng -v en-us -s 150 -w "$work/v1.wav" "The quick brown fox jumps over the lazy dog. Please call me back when you have read the report, and bring the numbers from last week."
espeak-ng -v en+f3 -s 165 -p 70 -w "$work/v2.wav" "We should meet at the station at half past seven. If the train is late, I will wait in the small cafe across the street."
espeak-ng -v en-gb+m4 -s 135 -p 35 -w "$work/v3.wav" "Nothing about this call is stored anywhere. The keys were made on this device, and they never leave it."
cargo build --release -q -p extrasafe-bench --features libopus --bin audio-bench
PESQ_PYTHON="$venv/bin/python" ./target/release/audio-bench "$work/v1.wav" "$work/v2.wav" "$work/v3.wav"
