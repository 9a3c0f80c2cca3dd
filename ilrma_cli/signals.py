"""Signals to score: one per file, at the reference microphone, trimmed to a common length.

Used by ``evaluate`` (references, estimates, mixture), by ``separate --refs`` and by
``sweep`` (references). Warnings go to the ``ilrma`` logger, so ``-q`` silences them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ilrma_cli.audio import read_audio
from ilrma_cli.errors import InputError

log = logging.getLogger("ilrma")


def load_signals(paths: Sequence[Path], ref_mic: int = 0) -> tuple[np.ndarray, int]:
    """One signal per file, ``(n_files, n_samples)`` float64, and their common sample rate.

    Mono files are taken whole, multichannel files (source images, mixtures) at channel
    ``ref_mic``. Lengths that differ are trimmed to the shortest, with a warning logged.
    Raises :class:`InputError` naming the file: unreadable (see ``read_audio``), missing
    channel, sample rate differing from the first file's, silent (all zeros) after trimming.
    """
    signals = []
    first = None
    for path in paths:
        audio = read_audio(path)
        if audio.n_channels > 1 and ref_mic >= audio.n_channels:
            raise InputError(
                path, f"has {audio.n_channels} channels: --ref-mic {ref_mic} does not exist"
            )
        if first is None:
            first = audio
        elif audio.rate != first.rate:
            raise InputError(
                path, f"sample rate {audio.rate} Hz differs from {first.path} ({first.rate} Hz)"
            )
        signals.append(audio.data[ref_mic if audio.n_channels > 1 else 0])
    lengths = [len(signal) for signal in signals]
    shortest, longest = int(np.argmin(lengths)), int(np.argmax(lengths))
    if lengths[shortest] != lengths[longest]:
        log.warning(
            "lengths differ: %s has %d samples, %s has %d; every signal is trimmed to %d samples",
            paths[shortest], lengths[shortest], paths[longest], lengths[longest],
            lengths[shortest],
        )  # fmt: skip
    stacked = np.stack([signal[: lengths[shortest]] for signal in signals])
    for path, signal in zip(paths, stacked, strict=True):
        if not np.any(signal):
            raise InputError(path, "is silent (all samples zero): BSS Eval is undefined for it")
    assert first is not None  # paths is not empty
    return stacked, first.rate
