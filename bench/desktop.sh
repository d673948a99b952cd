#!/usr/bin/env bash
# What the desktop window costs over the terminal front end on the same 720p30 video call
# (both ways), measured in the same run: CPU, X server CPU, pictures shown, memory, launch to
# first frame, accept to first picture. Needs Xvfb (apt xvfb); software OpenGL (Mesa).
# Usage: bash bench/desktop.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v Xvfb >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends xvfb >/dev/null; }
cargo build --release -q -p extrasafe -p extrasafe-desktop
exec python3 bench/desktop.py "${1:-3}"
