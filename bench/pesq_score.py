#!/usr/bin/env python3
"""Scores pairs of WAV files with wideband PESQ (ITU-T P.862.2) via PyPI `pesq`.

Reads lines "REF DEG" on stdin, prints "MOS" per line (or "nan" if PESQ refuses the pair).
Both files are 48 kHz mono 16-bit; they are resampled to 16 kHz here.
"""
import sys
import wave

import numpy as np
from pesq import pesq
from scipy.signal import resample_poly


def load16k(path):
    with wave.open(path, "rb") as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    return resample_poly(data, 16000, rate) / 32768.0


for line in sys.stdin:
    ref, deg = line.split()
    r, d = load16k(ref), load16k(deg)
    n = min(len(r), len(d))
    try:
        print(f"{pesq(16000, r[:n], d[:n], 'wb'):.3f}", flush=True)
    except Exception as e:  # noqa: BLE001 - PESQ raises on silent or too-short input
        print("nan", flush=True)
        print(f"pesq failed on {deg}: {e}", file=sys.stderr)
