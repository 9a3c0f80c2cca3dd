"""One separation from time signal to time signals: STFT, ILRMA, scale fix, inverse STFT.

The library entry point behind ``ilrma separate`` (no files, no printing).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ilrma_cli.engine import ILRMAConfig, Result, project_back, run
from ilrma_cli.engine.ilrma import Callback
from ilrma_cli.stft import StftConfig, istft, stft


@dataclass(frozen=True)
class SeparationSettings:
    """Everything that decides a separation's output (besides the input)."""

    stft: StftConfig = field(default_factory=StftConfig)
    ilrma: ILRMAConfig = field(default_factory=ILRMAConfig)
    ref_mic: int = 0
    images: bool = False
    seed: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self.stft),
            **asdict(self.ilrma),
            "ref_mic": self.ref_mic,
            "images": self.images,
            "seed": self.seed,
        }


@dataclass
class Separation:
    """Separated signals: ``(n_sources, n_samples)``, or ``(n_sources, n_channels, n_samples)`` as images."""

    sources: np.ndarray
    result: Result
    seconds: dict[str, float]


def check_signal(mixture: np.ndarray, settings: SeparationSettings) -> None:
    """Refuse a mixture ``(n_channels, n_samples)`` the settings cannot separate (``ValueError``)."""
    n_channels, n_samples = mixture.shape
    if n_channels < 2:
        raise ValueError(f"ILRMA needs at least 2 channels, got {n_channels}")
    if not 0 <= settings.ref_mic < n_channels:
        raise ValueError(
            f"--ref-mic {settings.ref_mic} does not exist: the input has {n_channels} channels"
        )
    if n_samples < settings.stft.n_fft:
        raise ValueError(
            f"signal of {n_samples} samples is shorter than one STFT frame (n_fft = {settings.stft.n_fft})"
        )
    if not np.any(mixture):
        raise ValueError("the input is digital silence: there is nothing to separate")


def separate(
    mixture: np.ndarray, settings: SeparationSettings, callback: Callback | None = None
) -> Separation:
    """Separate ``mixture`` ``(n_channels, n_samples)`` into as many sources as channels."""
    check_signal(mixture, settings)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    obs = stft(mixture, settings.stft)
    seconds["stft"] = time.perf_counter() - start

    start = time.perf_counter()
    result = run(obs, settings.ilrma, seed=settings.seed, callback=callback)
    seconds["ilrma"] = time.perf_counter() - start

    start = time.perf_counter()
    ref_mic = None if settings.images else settings.ref_mic
    scaled = project_back(result.separated, result.demix, ref_mic)
    sources = istft(scaled, mixture.shape[1], settings.stft)
    seconds["istft"] = time.perf_counter() - start
    return Separation(sources=sources, result=result, seconds=seconds)
