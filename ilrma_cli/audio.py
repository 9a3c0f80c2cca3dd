"""Audio files: reading and validating them, grouping them into mixtures, writing them atomically.

Signals are ``(n_channels, n_samples)``, float64 unless asked otherwise (the separation
reads float32 where that is exact); soundfile's ``(n_samples, n_channels)`` layout is
transposed here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ilrma_cli.atomic import AtomicWriter
from ilrma_cli.errors import IlrmaError, InputError, OutputError

SUBTYPES = {"float": "FLOAT", "pcm16": "PCM_16", "pcm24": "PCM_24"}
PCM_PEAK = 1.0 - 2.0**-15  # largest value every PCM subtype stores without wrapping
FLOAT_MAX = float(np.finfo(np.float32).max)  # largest magnitude a float file stores (float32)
# Subtypes whose samples float32 holds exactly (up to 24-bit integers, 32-bit float).
EXACT_IN_FLOAT32 = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "FLOAT"})
READ_BLOCK = 2**16  # frames per read


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


@dataclass(frozen=True)
class MixtureInput:
    """One mixture to separate: a multichannel file, or mono microphone files in channel order."""

    track: str
    paths: tuple[Path, ...]
    n_channels: int
    rate: int = 0
    n_samples: int = 0  # from the headers (the longest file for mono mics)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")


def audio_info(path: str | os.PathLike[str]) -> sf._SoundFileInfo:
    """Header of an audio file (channels, rate, frames) or an :class:`InputError`."""
    path = Path(path)
    _check_path(path)
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise InputError(path, f"not a readable audio file ({_reason(err)})") from None


def read_audio(path: str | os.PathLike[str], narrow: bool = False) -> Audio:
    """Read any file soundfile understands; refuse what cannot be used, naming the file.

    Raises :class:`InputError` for a missing path, a directory, unreadable, empty or
    truncated audio, and NaN or infinite samples. The samples are float64, or with
    ``narrow`` float32 when that holds them exactly (see :func:`sample_dtype`). The
    file is read block by block straight into the channels-first result.
    """
    path = Path(path)
    info = audio_info(path)
    dtype = sample_dtype(info, narrow)
    try:
        with sf.SoundFile(str(path)) as handle:
            data = np.empty((handle.channels, handle.frames), dtype)
            n_read, finite = 0, True
            while n_read < data.shape[1]:
                block = handle.read(min(READ_BLOCK, data.shape[1] - n_read), dtype, always_2d=True)
                if not len(block):
                    break
                finite = finite and bool(np.isfinite(block).all())
                data[:, n_read : n_read + len(block)] = block.T
                n_read += len(block)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise InputError(path, f"audio data is corrupt or truncated ({_reason(err)})") from None
    if n_read == 0:
        raise InputError(path, "contains no audio samples")
    promised = max(info.frames, _wav_declared_frames(path) or 0)
    if n_read < promised:
        raise InputError(
            path, f"truncated: header promises {promised} samples, file holds {n_read}"
        )
    if not finite:
        raise InputError(path, "contains NaN or infinite samples")
    return Audio(data, int(info.samplerate), path)


def sample_dtype(info: sf._SoundFileInfo, narrow: bool) -> type[np.floating]:
    """float32 if ``narrow`` and the file's samples convert to it exactly (PCM up to 24 bits,
    32-bit float), else float64: either way the values read are the same numbers."""
    return np.float32 if narrow and info.subtype in EXACT_IN_FLOAT32 else np.float64


def _wav_declared_frames(path: Path) -> int | None:
    """Frames a RIFF/RF64 WAV header declares (libsndfile silently reads fewer when cut short).

    None when the file is not WAV or the size is a streaming placeholder.
    """
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return None
        block_align, data_bytes, ds64_bytes = 0, None, None
        while data_bytes is None:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            size = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                data_bytes = ds64_bytes if size == 0xFFFFFFFF and ds64_bytes else size
                break
            body = handle.read(min(size, 64))
            if chunk[:4] == b"fmt " and len(body) >= 14:
                block_align = int.from_bytes(body[12:14], "little")
            elif chunk[:4] == b"ds64" and len(body) >= 16:
                ds64_bytes = int.from_bytes(body[8:16], "little")
            handle.seek(size + (size & 1) - len(body), os.SEEK_CUR)
    if not block_align or data_bytes in (0, 0xFFFFFFFF):
        return None
    return data_bytes // block_align


def _reason(err: Exception) -> str:
    text = str(err).strip()
    if not text:
        return type(err).__name__
    return text.splitlines()[-1].rsplit(": ", 1)[-1]


@dataclass(frozen=True)
class InputFailure:
    """Input files that cannot make a mixture, and why."""

    paths: tuple[Path, ...]
    error: IlrmaError


def plan_mixtures(paths: Sequence[str | os.PathLike[str]]) -> list[MixtureInput]:
    """The mixtures of :func:`group_mixtures`; the first failure, in input order, is raised."""
    mixtures, failures = group_mixtures(paths)
    if failures:
        raise failures[0].error
    return mixtures


def group_mixtures(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[list[MixtureInput], list[InputFailure]]:
    """Group input files into mixtures from their headers alone (nothing is decoded).

    One or more multichannel files: one mixture each. Two or more mono files: the
    microphones of one mixture, in argument order, sharing one sample rate. What cannot
    make a mixture is returned as failures: first each missing or unreadable file (in input
    order), then a mono file among multichannel ones, a lone mono file, mono microphones of differing
    rates or with a microphone file that cannot be read.
    """
    failures: list[InputFailure] = []
    readable = []
    for path in map(Path, paths):
        try:
            readable.append((path, audio_info(path)))
        except InputError as err:
            failures.append(InputFailure((path,), err))
    mono = [path for path, info in readable if info.channels == 1]
    multi = [path for path, info in readable if info.channels > 1]
    mixtures = [
        MixtureInput(path.stem, (path,), info.channels, info.samplerate, info.frames)
        for path, info in readable
        if info.channels > 1
    ]
    if mono and multi:
        problem = (
            f"mono file given with multichannel {multi[0]}: give several mono microphone "
            "files of one mixture, or multichannel files"
        )
        failures += [InputFailure((path,), InputError(path, problem)) for path in mono]
    elif mono:
        mics = [(path, info) for path, info in readable if info.channels == 1]
        outcome = _mono_mixture(mics, [f.paths[0] for f in failures])
        if isinstance(outcome, MixtureInput):
            mixtures.append(outcome)
        else:
            failures.append(outcome)
    return mixtures, failures


def _mono_mixture(
    mics: list[tuple[Path, sf._SoundFileInfo]], unreadable: list[Path]
) -> MixtureInput | InputFailure:
    """The mixture of mono microphone files, or why they make none."""
    paths = tuple(path for path, _ in mics)
    first, first_info = mics[0]
    if unreadable:
        problem = f"a microphone file of this mixture cannot be read ({unreadable[0]})"
        return InputFailure(paths, InputError(first, problem))
    if len(mics) == 1:
        problem = "is mono: ILRMA needs at least 2 channels (a multichannel file or 2+ mono mics)"
        return InputFailure(paths, InputError(first, problem))
    for path, info in mics[1:]:
        if info.samplerate != first_info.samplerate:
            problem = f"sample rate {info.samplerate} Hz differs from {first} ({first_info.samplerate} Hz)"
            return InputFailure(paths, InputError(path, problem))
    longest = max(info.frames for _, info in mics)
    return MixtureInput(first.stem, paths, len(paths), first_info.samplerate, longest)


def read_mixture(mixture: MixtureInput, pad: bool = False, narrow: bool = False) -> Audio:
    """Read a mixture as ``(n_channels, n_samples)``; mono mics are stacked in order.

    Mono files of different lengths are an error unless ``pad`` (zero-pads to the longest).
    ``narrow``: see :func:`read_audio`. Each mic goes straight into its row of the result.
    """
    if len(mixture.paths) == 1:
        return read_audio(mixture.paths[0], narrow)
    infos = [audio_info(p) for p in mixture.paths]
    wide = any(sample_dtype(info, narrow) == np.float64 for info in infos)
    data = np.zeros(
        (len(infos), max(info.frames for info in infos)), np.float64 if wide else np.float32
    )
    lengths = []
    for channel, path in enumerate(mixture.paths):
        mic = read_audio(path, narrow).data[0]
        data[channel, : len(mic)] = mic
        lengths.append(len(mic))
    longest = max(lengths)
    if not pad and min(lengths) != longest:
        short, long = lengths.index(min(lengths)), lengths.index(longest)
        raise InputError(
            mixture.paths[short],
            f"has {lengths[short]} samples but {mixture.paths[long]} has "
            f"{longest}: mono microphones must have equal lengths (or use --pad)",
        )
    return Audio(data[:, :longest], infos[0].samplerate, mixture.paths[0])


class MixtureReader:
    """A mixture read piece by piece (:meth:`read`), for inputs too long to hold whole.

    Opening checks every header up front (readable, one sample rate, equal lengths of
    mono mics unless ``pad``, and a WAV whose data is shorter than its header promises
    is refused as truncated); reading refuses, naming the file, data that turns out
    corrupt or shorter than promised, and NaN or infinite samples. Use it in ``with``.
    """

    def __init__(self, mixture: MixtureInput, pad: bool = False) -> None:
        self.path = mixture.paths[0]
        infos = [audio_info(path) for path in mixture.paths]
        lengths = [info.frames for info in infos]
        for path, info in zip(mixture.paths, infos, strict=True):
            declared = _wav_declared_frames(path)
            if declared is not None and declared > info.frames:
                raise InputError(
                    path, f"truncated: header promises {declared} samples, file holds {info.frames}"
                )
            if info.samplerate != infos[0].samplerate:
                raise InputError(path, f"sample rate {info.samplerate} Hz differs from {self.path}")
        if not pad and min(lengths) != max(lengths):
            short, long = lengths.index(min(lengths)), lengths.index(max(lengths))
            raise InputError(
                mixture.paths[short],
                f"has {lengths[short]} samples but {mixture.paths[long]} has "
                f"{lengths[long]}: mono microphones must have equal lengths (or use --pad)",
            )
        if max(lengths) == 0:
            raise InputError(self.path, "contains no audio samples")
        self.rate, self.n_samples = int(infos[0].samplerate), max(lengths)
        self.n_channels = sum(info.channels for info in infos)
        self._files = [(path, info.frames) for path, info in zip(mixture.paths, infos, strict=True)]
        self._handles: list[sf.SoundFile] = []
        try:
            for path in mixture.paths:
                self._handles.append(sf.SoundFile(str(path)))
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            self.close()
            raise InputError(path, f"not a readable audio file ({_reason(err)})") from None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` ``(n_channels, stop - start)`` float64 (zeros past a mic's end)."""
        out = np.zeros((self.n_channels, stop - start))
        row = 0
        for handle, (path, frames) in zip(self._handles, self._files, strict=True):
            want = max(min(stop, frames) - start, 0)
            if want:
                try:
                    handle.seek(start)
                    block = handle.read(want, "float64", always_2d=True)
                except (sf.LibsndfileError, RuntimeError, TypeError) as err:
                    raise InputError(
                        path, f"audio data is corrupt or truncated ({_reason(err)})"
                    ) from None
                if len(block) < want:
                    raise InputError(
                        path,
                        f"truncated: header promises {frames} samples, "
                        f"file holds {start + len(block)}",
                    )
                if not np.isfinite(block).all():
                    raise InputError(path, "contains NaN or infinite samples")
                out[row : row + handle.channels, :want] = block.T
            row += handle.channels
        return out

    def close(self) -> None:
        for handle in self._handles:
            handle.close()

    def __enter__(self) -> MixtureReader:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()


def mixture_warnings(audio: Audio) -> list[str]:
    """Degenerate but valid properties of a mixture worth telling the user.

    (Silent channels are judged by :func:`ilrma_cli.pipeline.check_signal`, which knows
    how many sources are asked for.)
    """
    messages = []
    silent = [c for c in range(audio.n_channels) if not np.any(audio.data[c])]
    for a in range(audio.n_channels):
        for b in range(a + 1, audio.n_channels):
            if a not in silent and np.array_equal(audio.data[a], audio.data[b]):
                messages.append(
                    f"channels {a} and {b} are identical: they carry no spatial information"
                )
    return messages


def holds_only_zeros(path: Path) -> bool:
    """Whether every sample of the audio file at ``path`` is zero, read back block by block.

    This judges what was actually stored: a quiet signal can round to zero in PCM.
    """
    with sf.SoundFile(str(path)) as handle:
        return not any(np.any(block) for block in handle.blocks(READ_BLOCK, dtype="float64"))


class AudioSink:
    """An audio temporary written block by block (:meth:`write`), closed by its ``with`` block."""

    def __init__(self, handle: sf.SoundFile, temporary: Path, target: Path) -> None:
        self._handle, self.temporary, self.target = handle, temporary, target

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` ``(n_channels, n_samples)`` (or ``(n_samples,)``)."""
        try:
            self._handle.write(np.ascontiguousarray(np.atleast_2d(block).T))
        except (OSError, sf.LibsndfileError, RuntimeError, ValueError) as err:
            raise OutputError(self.target, f"cannot write ({_reason(err)})") from None

    def __enter__(self) -> AudioSink:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._handle.close()
        except (OSError, sf.LibsndfileError, RuntimeError) as err:
            if exc_type is None:
                raise OutputError(self.target, f"cannot write ({_reason(err)})") from None
        if exc_type is None:
            _clear_peak_timestamp(self.temporary)


class AudioWriter(AtomicWriter):
    """An :class:`~ilrma_cli.atomic.AtomicWriter` that also stages audio files."""

    def write(self, path: Path, data: np.ndarray, rate: int, subtype: str = "float") -> None:
        """Write ``data`` ``(n_channels, n_samples)`` (or ``(n_samples,)``) to a temporary beside ``path``."""
        with self.stream(path, rate, np.atleast_2d(data).shape[0], subtype) as sink:
            sink.write(data)

    def stream(self, path: Path, rate: int, n_channels: int, subtype: str = "float") -> AudioSink:
        """Open a temporary beside ``path`` to write block by block (the same bytes as :meth:`write`)."""
        fd, tmp = self.stage(path)
        os.close(fd)
        try:
            handle = sf.SoundFile(
                str(tmp), "w", rate, n_channels, SUBTYPES[subtype], format=_format_of(path)
            )
        except (OSError, sf.LibsndfileError, RuntimeError, ValueError) as err:
            raise OutputError(path, f"cannot write ({_reason(err)})") from None
        return AudioSink(handle, tmp, path)


def _clear_peak_timestamp(path: Path) -> None:
    """Zero the time stamp libsndfile puts in a float WAV's PEAK chunk.

    Without this, the same separation written twice differs in four header bytes,
    and byte-for-byte reproducibility (same input and seed, same file) is lost.
    """
    with open(path, "r+b") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8 or chunk[:4] == b"data":
                return
            size = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"PEAK" and size >= 8:
                handle.seek(4, os.SEEK_CUR)  # version, then the time stamp
                handle.write(bytes(4))
                return
            handle.seek(size + (size & 1), os.SEEK_CUR)


def check_audio_format(path: Path, subtype: str) -> None:
    """Refuse, before any work, an output name whose format cannot hold ``subtype`` samples."""
    fmt = _format_of(path)
    if not sf.check_format(fmt, SUBTYPES[subtype]):
        choices = "--subtype pcm16 or pcm24" if fmt == "FLAC" else "a .wav or .flac name"
        raise OutputError(path, f"{fmt} files cannot hold {subtype} samples: use {choices}")


def _format_of(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"flac": "FLAC", "ogg": "OGG"}.get(ext, "WAV")
