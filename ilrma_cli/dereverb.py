"""Dereverberation before separation, at a frame of its own (``--dereverb TAPS``).

Joint dereverberation and separation wants a short hop (the prediction reaches back
``delay`` hops and covers ``taps`` more), separation a long frame (QUALITY.md, "Frame
length"). So the mixture is dereverberated first by the joint model at the ~0.2-s frame
(:meth:`SeparationSettings.dereverb_stft`: 4096/1024 at 16 kHz), with one
source per channel:

    ``y_t = W x_t - sum_l G_l x_{t-D-l}``  (ILRMA-T / T-ISS, :mod:`ilrma_cli.engine.taps`),
    ``d_t = W^{-1} y_t = x_t - W^{-1} sum_l G_l x_{t-D-l}``,

``d`` being the sum of the dereverberated source images at every mic (projection back of
every output). Its waveform is then separated like any mixture, at the frame chosen for
separation. The stage has the same source model, rule, iterations and seed as the
separation; its spatial model is rank 1 (the taps' model).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ilrma_cli.engine import Callback, ILRMAConfig, mixing_matrices, run
from ilrma_cli.settings import SeparationSettings
from ilrma_cli.stft import istft, stft


def stage_config(settings: SeparationSettings) -> ILRMAConfig:
    """The engine settings of the stage: the separation's, with the stage's taps and rank 1."""
    return replace(
        settings.ilrma, taps=settings.dereverb, delay=settings.dereverb_delay, spatial="rank1"
    )


def dereverberate(
    mixture: np.ndarray,
    settings: SeparationSettings,
    rate: int,
    callback: Callback | None = None,
) -> np.ndarray:
    """``mixture`` ``(n_channels, n_samples)`` without its late reverberation (module docstring).

    Uses ``settings.dereverb`` taps after ``settings.dereverb_delay`` frames; returns
    float64 of the same shape. ``callback`` sees the stage's iterations.
    """
    config = settings.dereverb_stft(rate)
    if mixture.shape[1] < config.n_fft:
        raise ValueError(
            f"signal of {mixture.shape[1]} samples is shorter than one frame of the "
            f"dereverberation stage (n_fft = {config.n_fft})"
        )
    obs = stft(mixture, config, np.complex128)
    result = run(obs, stage_config(settings), settings.seed, callback)
    del obs
    mixing = mixing_matrices(result.demix)  # (n_freq, n_channels, n_channels)
    dereverberated = np.einsum("fmn,nft->mft", mixing, result.separated)
    return istft(dereverberated, mixture.shape[1], config)
