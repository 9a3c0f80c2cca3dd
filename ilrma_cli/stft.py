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
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import DTypeLike

if TYPE_CHECKING:
    from scipy.signal import ShortTimeFFT

WINDOWS = ("hann", "hamming", "blackman", "sqrt-hann")
FRAMES_PER_BLOCK = (
    32  # frames per block of the forward transform: small temporaries, cache-friendly
)
SPAN_SAMPLES = 2**18  # samples per block of the inverse, when made block by block (see spans)


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
    from scipy.signal import get_window  # scipy.signal takes ~1 s to import: only runs pay it

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
    from scipy.signal import ShortTimeFFT

    window = make_window(config.window, config.n_fft)
    return ShortTimeFFT(window, hop=config.hop, fs=1.0, fft_mode="onesided")


def n_frames(n_samples: int, config: StftConfig) -> int:
    """Number of frames :func:`stft` returns for a signal of ``n_samples``."""
    return _transform(config).p_num(n_samples)


def stft(
    x: np.ndarray, config: StftConfig | None = None, dtype: DTypeLike = np.complex128
) -> np.ndarray:
    """Spectrogram ``(n_channels, n_freq, n_frames)`` of ``x`` ``(n_channels, n_samples)``, in ``dtype``.

    Frames cover the whole signal, including the partial ones at both borders. They
    are computed ``FRAMES_PER_BLOCK`` at a time, straight into the result: the
    temporaries stay small whatever the length (each frame is its own transform, so
    the numbers are those of one whole-signal call). ``config`` defaults to ``StftConfig()``.
    """
    config = config or StftConfig()
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n_channels, n_samples), got {x.shape}")
    transform = _transform(config)
    shortest = transform.m_num - transform.m_num_mid
    if x.shape[1] < shortest:
        raise ValueError(f"x has {x.shape[1]} samples; the STFT needs at least {shortest}")
    first, end = transform.p_min, transform.p_max(x.shape[1])
    spec = np.empty((x.shape[0], config.n_freq, end - first), dtype)
    for lo in range(first, end, FRAMES_PER_BLOCK):
        hi = min(lo + FRAMES_PER_BLOCK, end)
        spec[:, :, lo - first : hi - first] = transform.stft(x, lo, hi, axis=-1)
    return spec


def istft(spec: np.ndarray, n_samples: int, config: StftConfig | None = None) -> np.ndarray:
    """Inverse of :func:`stft`: ``(..., n_freq, n_frames)`` -> ``(..., n_samples)``, real.

    The output is trimmed to exactly ``n_samples``; ``config`` defaults to ``StftConfig()``.
    """
    config = config or StftConfig()
    spec = np.asarray(spec)
    _check_spectrogram(spec, config)
    return _transform(config).istft(spec, k1=n_samples, f_axis=-2, t_axis=-1)


@dataclass(frozen=True)
class Span:
    """Samples ``[start, stop)`` of a signal and the frames ``[first, end)`` that overlap them."""

    start: int
    stop: int
    first: int
    end: int


def spans(n_samples: int, n_frames: int, config: StftConfig, length: int) -> list[Span]:
    """Consecutive spans of about ``length`` samples (at least ``n_fft``) covering ``n_samples``.

    ``n_frames`` is the spectrogram's frame count; a short remainder joins the last span.
    Every span starts on a multiple of the hop, where the first frame it reads still
    overlaps it (scipy's inverse mishandles a frame that ends before its first sample).
    """
    transform = _transform(config)
    length = -(-max(length, config.n_fft) // config.hop) * config.hop
    bounds = list(range(0, n_samples, length)) + [n_samples]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < config.n_fft:
        del bounds[-2]
    return [
        Span(
            start, stop, start // config.hop, min(transform.p_max(stop) - transform.p_min, n_frames)
        )
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def istft_span(frames: np.ndarray, span: Span, config: StftConfig) -> np.ndarray:
    """Samples ``span.start:span.stop`` of :func:`istft` from the frames ``span.first:span.end`` alone.

    ``frames`` ``(..., n_freq, span.end - span.first)`` -> ``(..., span.stop - span.start)``;
    the numbers are exactly those of the whole-signal inverse (the same frames are added
    in the same order), so a signal can be made block by block.
    """
    _check_spectrogram(frames, config)
    shift = span.first * config.hop  # time origin moved by whole frames
    return _transform(config).istft(
        frames, k0=span.start - shift, k1=span.stop - shift, f_axis=-2, t_axis=-1
    )


def _check_spectrogram(spec: np.ndarray, config: StftConfig) -> None:
    if spec.ndim < 2 or spec.shape[-2] != config.n_freq:
        raise ValueError(
            f"spectrogram must have shape (..., {config.n_freq}, n_frames), got {spec.shape}"
        )
