"""A blind reverberation-time estimate from the mixture alone, checked against the known RT60.

Free decays: after a sound stops, the energy in a band cannot fall faster than the room lets
it, so the steepest sustained decays seen in the band envelopes tell the room's decay rate
(the idea of Ratnam et al., JASA 114(5), 2003, and of Löllmann et al., IWAENC 2010, in a
simple form). Per band (1/3 octaves, 250 Hz-4 kHz) the envelope in dB (32-ms frames, 8-ms
hop) is cut into runs where it keeps falling; each run of at least ``MIN_RUN`` seconds and
``MIN_DROP_DB`` of drop gives a slope by least squares; the estimate is the median over
bands of the ``PERCENTILE`` percentile of the per-run RT60s ``-60 / slope``.

    python bench/reverb.py        # estimate vs truth on the dev and varied cases
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.signal import stft as scipy_stft

FRAME_SECONDS = 0.032
HOP_SECONDS = 0.008
MIN_RUN = 0.08
MIN_DROP_DB = 10.0
PERCENTILE = 10


def blind_rt60(mixture: np.ndarray, rate: int) -> float:
    """RT60 estimate (s) of ``mixture`` ``(n_channels, n_samples)`` (NaN if no decay is found)."""
    n_fft = int(round(FRAME_SECONDS * rate))
    hop = int(round(HOP_SECONDS * rate))
    _, _, spec = scipy_stft(mixture, rate, nperseg=n_fft, noverlap=n_fft - hop)
    power = np.mean(np.abs(spec) ** 2, axis=0)  # (n_freq, n_frames)
    freqs = np.arange(power.shape[0]) * rate / n_fft
    centres = 250.0 * 2 ** (np.arange(13) / 3)  # 250 Hz to 4 kHz
    per_band = []
    for centre in centres:
        band = (freqs >= centre * 2 ** (-1 / 6)) & (freqs < centre * 2 ** (1 / 6))
        if not band.any():
            continue
        level = 10 * np.log10(power[band].sum(axis=0) + 1e-20)
        rt = _decays(level, HOP_SECONDS)
        if rt.size >= 3:
            per_band.append(np.percentile(rt, PERCENTILE))
    return float(np.median(per_band)) if per_band else float("nan")


def _decays(level: np.ndarray, hop: float) -> np.ndarray:
    """RT60s of the falling runs of a dB envelope ``(n_frames,)``."""
    falling = np.diff(level) < 0
    out = []
    start = None
    for t, down in enumerate(np.append(falling, False)):
        if down and start is None:
            start = t
        elif not down and start is not None:
            run = level[start : t + 1]
            if (t - start) * hop >= MIN_RUN and run[0] - run[-1] >= MIN_DROP_DB:
                slope = np.polyfit(np.arange(run.size) * hop, run, 1)[0]  # dB/s
                out.append(-60.0 / slope)
            start = None
    return np.asarray(out)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import cases as case_lib

    root = Path(__file__).resolve().parents[1]
    for spec in case_lib.dev_specs() + case_lib.varied_specs():
        case = case_lib.load(spec, root / "out" / "study-cases")
        truth = spec.info["rt60"] if isinstance(spec, case_lib.DevSpec) else spec.rt60
        print(f"{spec.name:48s} true {truth:.2f}  blind {blind_rt60(case.mix, case_lib.RATE):.2f}")


if __name__ == "__main__":
    main()
