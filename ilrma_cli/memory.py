"""Up-front estimate of the peak memory of one separation, so that a run can be refused early.

The model counts the arrays alive at the peak of read -> STFT -> ILRMA ->
projection back -> ISTFT -> write, in bytes per time-frequency bin ``B = n_freq
n_frames`` with ``c`` the complex item size (8 single, 16 double) and ``r`` the
real one (4, 8), for ``m`` channels (= sources):

- mixture spectrogram ``m B c``;
- during the iterations: outer-product features ``m^2 B 8`` (always float64) and
  three per-bin arrays (powers, variances, scratch) ``3 m B r``;
- afterwards, instead: the separated and projected spectrograms ``2 m B c`` (the
  ISTFT runs source by source once the mixture spectrogram is released);

plus the interpreter with numpy and scipy loaded (``BASELINE``) and a 10 % margin
for allocator slack and small temporaries. The waveform is not counted: the
caller must release it (or read it block by block) before the iterations; if it
is kept, add ``m n_samples`` times its item size.

Calibration (``bench/peak_memory.py``, VmHWM, 2 channels, 16 kHz, 600 s, ip):
without the margin the model gives 1146 / 2174 MiB in double and 780 / 1440 MiB
in single at 4096/2048 / 2048/512, for 1152 / 2169 and 784 / 1471 MiB measured.
"""

from __future__ import annotations

import os
import re

from ilrma_cli.stft import StftConfig, n_frames

BASELINE = 120 * 2**20
MARGIN = 1.10
ITEMSIZE = {"single": (4, 8), "double": (8, 16)}  # (real, complex)


def estimate_peak_bytes(
    n_channels: int, n_samples: int, n_fft: int, hop: int, n_basis: int, precision: str
) -> int:
    """Estimated peak resident bytes of a whole separation run (see the module docstring).

    ``n_basis`` only adds the NMF factors ``m n_basis (n_freq + n_frames) r``,
    negligible next to the per-bin arrays but counted.
    """
    if precision not in ITEMSIZE:
        raise ValueError(f"unknown precision {precision!r}; choose one of single, double")
    real, cplx = ITEMSIZE[precision]
    config = StftConfig(n_fft, hop, "hamming")  # the frame count does not depend on the window
    n_freq = config.n_freq
    bins = n_freq * n_frames(n_samples, config)
    m = n_channels
    spectrogram = m * bins * cplx
    iterations = m * m * bins * 8 + 3 * m * bins * real
    iterations += m * n_basis * (n_freq + bins // n_freq) * real
    output = 2 * m * bins * cplx
    return int(BASELINE + MARGIN * (spectrogram + max(iterations, output)))


def available_bytes() -> int | None:
    """Memory the system can give without swapping (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5G"``, ``"123456"`` (bytes) -> bytes; ``ValueError`` otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a size such as 8G, 512M or 1.5G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"
