"""Short-time Fourier transform in the channels-first layout used everywhere.

Time signals are ``(n_channels, n_samples)``; spectrograms are
``(n_channels, n_freq, n_frames)`` with ``n_freq = n_fft // 2 + 1``.
The frames and the inverse follow :class:`scipy.signal.ShortTimeFFT` (onesided,
``phase_shift=0``): frame ``p`` is centred on sample ``p * hop``, the frames cover the
whole signal including the partial ones at both borders, and the inverse is the
overlap-add of the canonical dual window, so any window/hop pair whose shifted windows
overlap gives perfect reconstruction (tests check the numbers against scipy). It is
written on :mod:`numpy.fft` because importing ``scipy.signal`` takes about a second,
more than a whole separation of a short file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from numpy.typing import DTypeLike

WINDOWS = ("hann", "hamming", "blackman", "sqrt-hann")
# Periodic generalised cosine windows: w(n) = sum_k a_k cos(k (2 pi n / N - pi)).
_COSINE_COEFFICIENTS = {
    "hann": (0.5, 1.0 - 0.5),
    "hamming": (0.54, 1.0 - 0.54),
    "blackman": (0.42, 0.50, 0.08),
}
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
    """Periodic analysis window of length ``n_fft`` (``sqrt-hann`` is the root of Hann).

    The same numbers as ``scipy.signal.get_window(name, n_fft, fftbins=True)``.
    """
    if name == "sqrt-hann":
        return np.sqrt(make_window("hann", n_fft))
    if name not in _COSINE_COEFFICIENTS:
        raise ValueError(f"unknown window {name!r}; choose one of {', '.join(WINDOWS)}")
    phase = np.linspace(-np.pi, np.pi, n_fft + 1)  # one more point, dropped: periodic
    window = np.zeros(n_fft + 1)
    for k, coefficient in enumerate(_COSINE_COEFFICIENTS[name]):
        window += coefficient * np.cos(k * phase)
    return window[:-1]


def _invertible(window: np.ndarray, hop: int) -> bool:
    """Whether every sample is covered by some frame: ``sum_j w(n - j hop)^2 > 0``."""
    covered = np.zeros(hop)
    power = window**2
    for start in range(0, len(window), hop):
        segment = power[start : start + hop]
        covered[: len(segment)] += segment
    return bool(covered.min() > 1e-10 * covered.max())


class _Frames:
    """Where the frames of ``config`` lie and how they are transformed.

    Frame ``p`` covers samples ``[p * hop - mid, p * hop - mid + n_fft)`` with
    ``mid = n_fft // 2``; it is windowed, rotated so that its centre sample comes
    first (scipy's ``phase_shift=0``) and transformed with a real FFT.
    """

    def __init__(self, config: StftConfig) -> None:
        self.n_fft, self.hop = config.n_fft, config.hop
        self.mid = config.n_fft // 2
        self.window = make_window(config.window, config.n_fft)

    @cached_property
    def dual(self) -> np.ndarray:
        """Canonical dual window ``w(n) / sum_j w(n - j hop)^2`` (over the frame's span)."""
        power = self.window**2
        denominator = power.copy()
        for shift in range(self.hop, self.n_fft, self.hop):
            denominator[shift:] += power[:-shift]
            denominator[:-shift] += power[shift:]
        return self.window / denominator

    @cached_property
    def p_min(self) -> int:
        """Index of the first frame that still overlaps sample 0 (never positive)."""
        power = self.window**2
        first = -self.mid
        for p, start in enumerate(range(first, first - self.n_fft - 1, -self.hop)):
            earlier = start - self.hop
            if earlier + self.n_fft <= 0 or not power[earlier:].any():
                return -p
        raise AssertionError("unreachable: the frames move left by hop >= 1")

    def p_max(self, n_samples: int) -> int:
        """One past the index of the last frame that overlaps sample ``n_samples - 1``."""
        power = self.window**2
        last = n_samples // self.hop
        for p, start in enumerate(
            range(last * self.hop - self.mid, n_samples + self.n_fft, self.hop), start=last
        ):
            later = start + self.hop
            if later >= n_samples or not power[: n_samples - later].any():
                return p + 1
        raise AssertionError("unreachable: the frames move right by hop >= 1")

    def forward(self, x: np.ndarray, first: int, end: int, origin: int = 0) -> np.ndarray:
        """Frames ``first:end`` of ``x`` ``(..., n_samples)`` -> ``(..., n_freq, end - first)``.

        ``x[..., 0]`` is sample ``origin`` of the signal; samples outside ``x`` count as zeros.
        """
        n_samples = x.shape[-1]
        start = first * self.hop - self.mid - origin
        stop = start + (end - first - 1) * self.hop + self.n_fft
        padded = np.zeros(x.shape[:-1] + (stop - start,), dtype=np.float64)
        lo, hi = max(start, 0), min(stop, n_samples)
        padded[..., lo - start : hi - start] = x[..., lo:hi]
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft, axis=-1)
        windowed = frames[..., :: self.hop, :] * self.window
        spectra = np.fft.rfft(np.roll(windowed, -self.mid, axis=-1), axis=-1)
        return np.swapaxes(spectra, -1, -2)

    def inverse(self, spec: np.ndarray, start: int, stop: int, p_first: int) -> np.ndarray:
        """Samples ``start:stop`` from the frames of ``spec``, whose first column is frame ``p_first``.

        The frames overlapping ``[start, stop)`` are added in increasing order, each as
        the inverse FFT of its column times the dual window.
        """
        out = np.zeros(spec.shape[:-2] + (stop - start,))
        q_lo = max(p_first, (start + self.mid - self.n_fft) // self.hop + 1)  # ends after start
        q_hi = min(
            p_first + spec.shape[-1], -(-(stop + self.mid) // self.hop)
        )  # starts before stop
        for q0 in range(q_lo, q_hi, FRAMES_PER_BLOCK):
            q1 = min(q0 + FRAMES_PER_BLOCK, q_hi)
            block = spec[..., :, q0 - p_first : q1 - p_first]
            frames = np.roll(np.fft.irfft(np.swapaxes(block, -1, -2), n=self.n_fft, axis=-1),
                             self.mid, axis=-1) * self.dual  # fmt: skip
            for q in range(q0, q1):
                lo = q * self.hop - self.mid
                a, b = max(lo, start), min(lo + self.n_fft, stop)
                if a < b:
                    out[..., a - start : b - start] += frames[..., q - q0, a - lo : b - lo]
        return out


@lru_cache(maxsize=8)
def _frames(config: StftConfig) -> _Frames:
    return _Frames(config)


def n_frames(n_samples: int, config: StftConfig) -> int:
    """Number of frames :func:`stft` returns for a signal of ``n_samples``."""
    frames = _frames(config)
    return frames.p_max(n_samples) - frames.p_min


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
    frames = _frames(config)
    shortest = config.n_fft - frames.mid
    if x.shape[1] < shortest:
        raise ValueError(f"x has {x.shape[1]} samples; the STFT needs at least {shortest}")
    first, end = frames.p_min, frames.p_max(x.shape[1])
    spec = np.empty((x.shape[0], config.n_freq, end - first), dtype)
    for lo in range(first, end, FRAMES_PER_BLOCK):
        hi = min(lo + FRAMES_PER_BLOCK, end)
        spec[:, :, lo - first : hi - first] = frames.forward(x, lo, hi)
    return spec


def istft(spec: np.ndarray, n_samples: int, config: StftConfig | None = None) -> np.ndarray:
    """Inverse of :func:`stft`: ``(..., n_freq, n_frames)`` -> ``(..., n_samples)``, real.

    The output is trimmed to exactly ``n_samples``; ``config`` defaults to ``StftConfig()``.
    """
    config = config or StftConfig()
    spec = np.asarray(spec)
    _check_spectrogram(spec, config)
    frames = _frames(config)
    covered = (spec.shape[-1] + frames.p_min - 1) * config.hop + config.n_fft - frames.mid
    if not config.n_fft - frames.mid <= n_samples <= covered:
        raise ValueError(
            f"{spec.shape[-1]} frames give between {config.n_fft - frames.mid} and {covered} "
            f"samples, not {n_samples}"
        )
    return frames.inverse(spec, 0, n_samples, frames.p_min)


def frame_samples(first: int, end: int, n_samples: int, config: StftConfig) -> tuple[int, int]:
    """Samples ``[start, stop)`` of a signal of ``n_samples`` that columns ``first:end`` of its
    :func:`stft` read (the rest of their frames lies beyond the signal: zeros)."""
    frames = _frames(config)
    start = (first + frames.p_min) * config.hop - frames.mid
    stop = (end - 1 + frames.p_min) * config.hop - frames.mid + config.n_fft
    return max(start, 0), min(stop, n_samples)


def stft_frames(
    chunk: np.ndarray,
    first: int,
    end: int,
    n_samples: int,
    config: StftConfig,
    dtype: DTypeLike = np.complex128,
) -> np.ndarray:
    """Columns ``first:end`` of :func:`stft` of a signal of ``n_samples``, from a chunk of it alone.

    ``chunk`` ``(n_channels, stop - start)`` holds the samples :func:`frame_samples` names;
    returns ``(n_channels, n_freq, end - first)``, the numbers of the whole-signal call
    (each frame is its own transform), so a long signal can be transformed piece by piece.
    """
    frames = _frames(config)
    origin, stop = frame_samples(first, end, n_samples, config)
    if chunk.ndim != 2 or chunk.shape[1] != stop - origin:
        raise ValueError(f"chunk must have shape (n_channels, {stop - origin}), got {chunk.shape}")
    spec = np.empty((chunk.shape[0], config.n_freq, end - first), dtype)
    for lo in range(first, end, FRAMES_PER_BLOCK):
        hi = min(lo + FRAMES_PER_BLOCK, end)
        spec[:, :, lo - first : hi - first] = frames.forward(
            chunk, lo + frames.p_min, hi + frames.p_min, origin
        )
    return spec


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
    Every span starts on a multiple of the hop, so ``first`` (a column of the
    spectrogram) is the first frame that overlaps it.
    """
    frames = _frames(config)
    length = -(-max(length, config.n_fft) // config.hop) * config.hop
    bounds = list(range(0, n_samples, length)) + [n_samples]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < config.n_fft:
        del bounds[-2]
    return [
        Span(start, stop, start // config.hop, min(frames.p_max(stop) - frames.p_min, n_frames))
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def istft_span(frames: np.ndarray, span: Span, config: StftConfig) -> np.ndarray:
    """Samples ``span.start:span.stop`` of :func:`istft` from the frames ``span.first:span.end`` alone.

    ``frames`` ``(..., n_freq, span.end - span.first)`` -> ``(..., span.stop - span.start)``;
    the numbers are exactly those of the whole-signal inverse (the same frames are added
    in the same order), so a signal can be made block by block.
    """
    _check_spectrogram(frames, config)
    geometry = _frames(config)
    return geometry.inverse(frames, span.start, span.stop, span.first + geometry.p_min)


def _check_spectrogram(spec: np.ndarray, config: StftConfig) -> None:
    if spec.ndim < 2 or spec.shape[-2] != config.n_freq:
        raise ValueError(
            f"spectrogram must have shape (..., {config.n_freq}, n_frames), got {spec.shape}"
        )
