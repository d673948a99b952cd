#!/usr/bin/env bash
# Quality against loss: a 1280x720 test picture sent one way at a fixed bitrate for SECS
# seconds through an in-process relay losing 0, 5 and 20 % of all packets (both ways), at 1
# and 2.5 Mb/s. What was on screen at each source frame is compared with the source by
# ffmpeg (PSNR and SSIM, frames matched by number). Also: frames shown of those encoded (the
# rest froze the picture), and the recovery time after an outage.
# Usage: bash bench/video_quality.sh [SECS]   (installs ffmpeg if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v ffmpeg >/dev/null || { apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null; }
cargo build --release -q -p extrasafe-bench --bin video-net-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-6s %-8s %9s %9s %8s %8s %10s %10s\n' loss kb/s "PSNR dB" SSIM shown encoded "frozen %" repaired
for kbps in 1000 2500; do
  for loss in 0 0.05 0.20; do
    d="$work/q"
    rm -rf "$d"
    ./target/release/video-net-bench quality "$d" "$loss" "$kbps" "$secs" >/dev/null
    first=$(sed -n 's/^first=//p' "$d/meta")
    shown=$(sed -n 's/^shown=//p' "$d/meta")
    encoded=$(sed -n 's/^encoded=//p' "$d/meta")
    repaired=$(sed -n 's/^repaired=//p' "$d/meta")
    out=$(ffmpeg -v info -nostats -i "$d/recv.y4m" -i "$d/sent.y4m" -lavfi \
      "[0:v]split[a][b];[1:v]trim=start_frame=$first,setpts=PTS-STARTPTS,split[r1][r2];[a][r1]psnr=shortest=1;[b][r2]ssim=shortest=1" \
      -f null - 2>&1 || true)
    psnr=$(grep -o 'PSNR y:[0-9.]*' <<<"$out" | head -1 | cut -d: -f2 || true)
    ssim=$(grep -o 'SSIM Y:[0-9.]*' <<<"$out" | head -1 | cut -d: -f2 || true)
    frozen=$(awk -v s="$shown" -v e="$encoded" 'BEGIN { printf "%.1f", (e > 0 ? 100 * (e - s) / e : 0) }')
    printf '%-6s %-8s %9s %9s %8s %8s %10s %10s\n' "$loss" "$kbps" "$psnr" "$ssim" "$shown" "$encoded" "$frozen" "$repaired"
  done
done
./target/release/video-net-bench recovery 1500
./target/release/video-net-bench latency 10
