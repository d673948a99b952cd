#!/usr/bin/env python3
"""Scores echo cancellers on the scenarios `aec-bench gen` made (see bench/aec.sh).

usage: aec_score.py DIR CANCELLER...   (each DIR/<scenario>/out-<canceller>.wav; `none` is the
microphone itself, no canceller)

Per scenario and canceller:
- ERLE: 10*log10(echo power at the microphone / power of what the canceller let out), per
  100 ms window, over windows where the far end alone talks and its echo is within 25 dB of
  its loudest window;
  the median of the windows from 1 s to 8 s (and, but for `change`, from 17 s to 20 s).
- change: the path changes at 16 s; reconverged once the median ERLE of the half second
  from then on reaches 30 dB (the goal's level): seconds after the change, or "never"
  within the 4 s left.
- near end alone (8-12 s) and double talk (12-16 s): wideband PESQ (P.862.2) of the output
  against what the microphone hears of the near end without echo (its voice and the noise
  floor), over the same stretch, both resampled to 16 kHz.
An output that is not aligned with the microphone (the PulseAudio anchor's recording) is
aligned first, by cross-correlation with the near end alone (8-12 s).
"""
import os
import sys
import wave

import numpy as np
from pesq import pesq
from scipy.signal import correlate, resample_poly

RATE = 48000
WIN = RATE // 10


def load(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1, path
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return data.astype(np.float64) / 32768.0


def align(out, near, n):
    """`out` shifted so that its near-end speech lines up with `near`; `n` samples long."""
    ref = np.zeros(n)
    ref[8 * RATE : 12 * RATE] = near[8 * RATE : 12 * RATE]
    a = resample_poly(out, 1, 12)
    b = resample_poly(ref, 1, 12)
    c = correlate(a, b, mode="full", method="fft")
    lag = (int(np.argmax(np.abs(c))) - (len(b) - 1)) * 12
    # Refine at the full rate, +-24 samples.
    best, best_lag = -1.0, lag
    for l in range(lag - 24, lag + 25):
        if l < 0 or l + n > len(out):
            continue
        v = float(np.dot(out[l + 8 * RATE : l + 12 * RATE], ref[8 * RATE : 12 * RATE]))
        if abs(v) > best:
            best, best_lag = abs(v), l
    print(f"  (aligned by {best_lag} samples)", file=sys.stderr)
    seg = out[max(best_lag, 0) :][:n]
    return np.pad(seg, (0, n - len(seg)))


def windows_erle(echo, out, t0, t1):
    # Windows where the echo is within 25 dB of its loudest 100 ms (and above -80 dBFS).
    loudest = max(float(np.mean(echo[i * WIN : (i + 1) * WIN] ** 2)) for i in range(len(echo) // WIN))
    bar = max(loudest * 10 ** (-25 / 10), 1e-8)
    vals = []
    for i in range(int(t0 * 10), int(t1 * 10)):
        e = echo[i * WIN : (i + 1) * WIN]
        o = out[i * WIN : (i + 1) * WIN]
        pe = float(np.mean(e * e))
        if pe < bar:
            continue
        po = max(float(np.mean(o * o)), 1e-12)
        vals.append((i / 10, 10 * np.log10(pe / po)))
    return vals


def median(vals):
    return float(np.median([v for _, v in vals])) if vals else float("nan")


def pesq_at(near, out, t0, t1):
    r = resample_poly(near[t0 * RATE : t1 * RATE], 1, 3)
    d = resample_poly(out[t0 * RATE : t1 * RATE], 1, 3)
    try:
        return pesq(16000, r, d, "wb")
    except Exception:  # noqa: BLE001 - PESQ refuses silent input
        return float("nan")


def main():
    root, names = sys.argv[1], sys.argv[2:]
    scenarios = sorted(os.listdir(root))
    print(f"{'scenario':<10} {'canceller':<8} {'ERLE 1-8 s':>10} {'ERLE 17-20 s':>12} "
          f"{'reconverge':>10} {'PESQ near alone':>15} {'PESQ double talk':>16}")
    for sc in scenarios:
        d = os.path.join(root, sc)
        echo, near, mic = (load(os.path.join(d, f)) for f in ("echo.wav", "nearmic.wav", "mic.wav"))
        n = len(mic)
        for name in names:
            path = mic if name == "none" else load(os.path.join(d, f"out-{name}.wav"))
            out = path if name != "webrtc" else align(path, near, n)
            if sc == "headset":
                e1 = e2 = "-"
                rec = "-"
            else:
                e1 = f"{median(windows_erle(echo, out, 1, 8)):.1f} dB"
                if sc == "change":
                    after = windows_erle(echo, out, 16, 20)
                    end = median([v for v in after if v[0] >= 18])
                    rec = "never"
                    for t, _ in after:
                        if median([v for v in after if t <= v[0] < t + 0.5]) >= 30:
                            rec = f"{t - 16:.1f} s"
                            break
                    e2 = f"{end:.1f} dB*"
                else:
                    e2 = f"{median(windows_erle(echo, out, 17, 20)):.1f} dB"
                    rec = "-"
            print(f"{sc:<10} {name:<8} {e1:>10} {e2:>12} {rec:>10} "
                  f"{pesq_at(near, out, 8, 12):>15.2f} {pesq_at(near, out, 12, 16):>16.2f}",
                  flush=True)
    print("* change: ERLE from 18 s to 20 s, on the new path")


if __name__ == "__main__":
    main()
