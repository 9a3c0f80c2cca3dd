"""Short-time Fourier transform in the channels-first layout used everywhere.

Time signals are ``(n_channels, n_samples)``; spectrograms are
``(n_channels, n_freq, n_frames)`` with ``n_freq = n_fft // 2 + 1``.
Built on :class:`scipy.signal.ShortTimeFFT`; the inverse uses the canonical dual
window, so any window/hop pair whose shifted windows overlap gives perfect
reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import ShortTimeFFT, get_window

WINDOWS = ("hann", "hamming", "blackman", "sqrt-hann")


@dataclass(frozen=True)
class StftConfig:
    """STFT settings: frame length ``n_fft`` (any size), ``hop`` and window name."""

    n_fft: int = 4096
    hop: int = 2048
    window: str = "hann"

    def __post_init__(self) -> None:
        if not isinstance(self.n_fft, int | np.integer) or self.n_fft < 2:
            raise ValueError(f"n_fft must be an integer >= 2, got {self.n_fft!r}")
        if not isinstance(self.hop, int | np.integer) or not 1 <= self.hop <= self.n_fft:
            raise ValueError(f"hop must be an integer in [1, n_fft={self.n_fft}], got {self.hop!r}")
        if self.window not in WINDOWS:
            raise ValueError(f"unknown window {self.window!r}; choose one of {', '.join(WINDOWS)}")
        if not _invertible(make_window(self.window, self.n_fft), self.hop):
            raise ValueError(
                f"the {self.window} window with hop {self.hop} and n_fft {self.n_fft} cannot be "
                "inverted: its frames leave samples uncovered; use a smaller hop"
            )

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1


def make_window(name: str, n_fft: int) -> np.ndarray:
    """Periodic analysis window of length ``n_fft`` (``sqrt-hann`` is the root of Hann)."""
    if name == "sqrt-hann":
        return np.sqrt(get_window("hann", n_fft, fftbins=True))
    if name in WINDOWS:
        return get_window(name, n_fft, fftbins=True)
    raise ValueError(f"unknown window {name!r}; choose one of {', '.join(WINDOWS)}")


def _invertible(window: np.ndarray, hop: int) -> bool:
    """Whether every sample is covered by some frame: ``sum_j w(n - j hop)^2 > 0``."""
    covered = np.zeros(hop)
    power = window**2
    for start in range(0, len(window), hop):
        segment = power[start : start + hop]
        covered[: len(segment)] += segment
    return bool(covered.min() > 1e-10 * covered.max())


@lru_cache(maxsize=8)
def _transform(config: StftConfig) -> ShortTimeFFT:
    window = make_window(config.window, config.n_fft)
    return ShortTimeFFT(window, hop=config.hop, fs=1.0, fft_mode="onesided")


def n_frames(n_samples: int, config: StftConfig) -> int:
    """Number of frames :func:`stft` returns for a signal of ``n_samples``."""
    return _transform(config).p_num(n_samples)


def stft(x: np.ndarray, config: StftConfig = StftConfig()) -> np.ndarray:
    """Spectrogram ``(n_channels, n_freq, n_frames)`` (complex128) of ``x`` ``(n_channels, n_samples)``.

    Frames cover the whole signal, including the partial ones at both borders.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n_channels, n_samples), got {x.shape}")
    return _transform(config).stft(x, axis=-1)


def istft(spec: np.ndarray, n_samples: int, config: StftConfig = StftConfig()) -> np.ndarray:
    """Inverse of :func:`stft`: ``(..., n_freq, n_frames)`` -> ``(..., n_samples)``, real.

    The output is trimmed (or zero-padded) to exactly ``n_samples``.
    """
    spec = np.asarray(spec)
    if spec.ndim < 2 or spec.shape[-2] != config.n_freq:
        raise ValueError(
            f"spectrogram must have shape (..., {config.n_freq}, n_frames), got {spec.shape}"
        )
    return _transform(config).istft(spec, k1=n_samples, f_axis=-2, t_axis=-1)
