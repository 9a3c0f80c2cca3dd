"""Reading and validating audio, and writing it atomically.

Signals are ``(n_channels, n_samples)`` float64 everywhere in the package;
soundfile's ``(n_samples, n_channels)`` layout is transposed here and nowhere else.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ilrma_cli.errors import InputError, OutputError

SUBTYPES = {"float": "FLOAT", "pcm16": "PCM_16", "pcm24": "PCM_24"}


@dataclass(frozen=True)
class Audio:
    """A signal ``(n_channels, n_samples)`` with its sample rate and source path."""

    data: np.ndarray
    rate: int
    path: Path

    @property
    def n_channels(self) -> int:
        return self.data.shape[0]

    @property
    def n_samples(self) -> int:
        return self.data.shape[1]


def read_audio(path: str | os.PathLike[str]) -> Audio:
    """Read any file soundfile understands; refuse what cannot be used, naming the file.

    Raises :class:`InputError` for a missing path, a directory, unreadable, empty or
    truncated audio, and NaN or infinite samples.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    try:
        info = sf.info(str(path))
        data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise InputError(path, f"not a readable audio file ({_reason(err)})") from None
    if data.shape[0] == 0:
        raise InputError(path, "contains no audio samples")
    if info.frames > 0 and data.shape[0] < info.frames:
        raise InputError(
            path, f"truncated: header promises {info.frames} samples, file holds {data.shape[0]}"
        )
    if not np.all(np.isfinite(data)):
        raise InputError(path, "contains NaN or infinite samples")
    return Audio(np.ascontiguousarray(data.T), int(rate), path)


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text


def write_audio_atomic(
    path: Path, data: np.ndarray, rate: int, subtype: str = "float", fmt: str | None = None
) -> None:
    """Write ``data`` ``(n_channels, n_samples)`` to a temporary file beside ``path``, then rename.

    Nothing is left at ``path`` (or beside it) if writing fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        sf.write(
            tmp,
            np.ascontiguousarray(data.T),
            rate,
            subtype=SUBTYPES[subtype],
            format=fmt or _format_of(path),
        )
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, (OSError, sf.LibsndfileError)):
            raise OutputError(path, f"cannot write ({err})") from None
        raise


def _format_of(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}.get(ext, "WAV")
