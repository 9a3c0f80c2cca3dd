"""A result's sources at the microphones, whichever spatial model made it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ilrma_cli.engine.fullrank_refine import fullrank_images
from ilrma_cli.engine.observation import demix_apply
from ilrma_cli.engine.projection_back import project_back
from ilrma_cli.engine.types import Result


def source_images(
    obs: np.ndarray, result: Result, ref_mic: int | None, frames: slice = slice(None)
) -> np.ndarray:
    """The sources of ``result`` over ``frames`` of the mixture ``obs`` ``(n_channels, n_freq,
    n_frames)``: ``(n_src, n_freq, n)`` at ``ref_mic``, ``(n_src, n_channels, n_freq, n)``
    at every mic when it is None; the full-rank model's Wiener images, or the rank-1
    outputs (:func:`separated_spectrogram`) projected back."""
    if result.fullrank is not None:
        model = result.fullrank
        part = replace(model, activation=model.activation[:, :, frames])
        return fullrank_images(obs[:, :, frames], part, ref_mic)
    separated = separated_spectrogram(obs, result, frames)
    return project_back(separated, result.demix, ref_mic)


def separated_spectrogram(
    obs: np.ndarray, result: Result, frames: slice = slice(None)
) -> np.ndarray:
    """``result.separated`` over ``frames``, formed again as ``demix @ obs`` where it has no
    frames (a restart held without them, :func:`ilrma_cli.pipeline._held_run`)."""
    separated = result.separated
    if separated.shape[-1] == obs.shape[-1]:
        return separated[:, :, frames]
    return demix_apply(result.demix, obs[:, :, frames], separated.dtype.type)
