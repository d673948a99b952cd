#!/usr/bin/env python3
"""Scores a call's recording against the voice that was sent: time lost and PESQ-WB.

Reads lines "REF DEG" on stdin (16-bit WAV files, any rate, mono or stereo), prints per line
"LOST_MS PESQ": LOST_MS is how much shorter the voice came out than it went in (the start
and the end of the voice are each found in the recording by cross-correlation at 16 kHz;
positive means audio time was lost, so the end came early); PESQ is ITU-T P.862.2 wideband
over the voice as found in the recording ("nan" where PESQ refuses).
"""
import sys
import wave

import numpy as np
from pesq import pesq
from scipy.signal import correlate, resample_poly

RATE = 16000
PIECE = 2 * RATE  # two seconds found at each end


def load16k(path):
    with wave.open(path, "rb") as w:
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    # baresip's dumps are stereo: the mean of the channels.
    data = data.reshape(-1, channels).mean(axis=1)
    return resample_poly(data, RATE, rate) / 32768.0


def find(piece, signal):
    """Offset in `signal` where `piece` fits best."""
    c = correlate(signal, piece, mode="valid", method="fft")
    return int(np.argmax(c))


def first_voiced(x):
    """Start of the first 20 ms window above -40 dBFS (a piece of silence matches anywhere)."""
    win = RATE // 50
    for i in range(0, len(x) - win, win):
        if np.sqrt(np.mean(x[i : i + win] ** 2)) > 0.01:
            return i
    return 0


def last_voiced(x):
    win = RATE // 50
    for i in range(len(x) - win, 0, -win):
        if np.sqrt(np.mean(x[i : i + win] ** 2)) > 0.01:
            return i + win
    return len(x)


for line in sys.stdin:
    ref_path, deg_path = line.split()
    ref, deg = load16k(ref_path), load16k(deg_path)
    a = first_voiced(ref)
    b = last_voiced(ref)
    head, tail = ref[a : a + PIECE], ref[max(a, b - PIECE) : b]
    if len(deg) < len(head) or len(tail) < RATE // 2:
        print("nan nan", flush=True)
        continue
    start = find(head, deg) - a
    end = find(tail, deg) - max(a, b - PIECE)
    lost_ms = (start - end) * 1000.0 / RATE
    seg = deg[max(start, 0) : max(start, 0) + len(ref)]
    n = min(len(ref), len(seg))
    try:
        score = f"{pesq(RATE, ref[:n], seg[:n], 'wb'):.3f}"
    except Exception as e:  # noqa: BLE001 - PESQ raises on silent or too-short input
        score = "nan"
        print(f"pesq failed on {deg_path}: {e}", file=sys.stderr)
    print(f"{lost_ms:.0f} {score}", flush=True)
