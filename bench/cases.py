"""Reproducible development cases for the quality benchmark.

Every case is a convolutive mixture simulated with pyroomacoustics' image-source
shoebox rooms: dry sources (CMU ARCTIC speech from ``../shared/data/sources``,
plus synthetic harmonic "music") are convolved with room impulse responses to
each microphone of a small linear array. The source images at every microphone
are kept, so scores are exact; the mixture adds white sensor noise at 30 dB SNR
(``mix == images.sum(0) + noise``): without it the purely harmonic synthetic music
leaves time-frequency bins empty, which no real recording does. Everything
follows from the case's seed; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve, resample_poly

RATE = 16000
SNR_DB = 30.0
EARLY_SECONDS = 0.05  # the early image: direct path + 50 ms, as in the dev cases
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = SHARED / "sources"
DEV = SHARED / "dev"


@dataclass(frozen=True)
class CaseSpec:
    """One benchmark case: source kinds (``speech`` or ``music`` each), mics, RT60, length."""

    name: str
    kinds: tuple[str, ...]
    n_mic: int
    rt60: float
    seconds: float
    seed: int


# Few but varied: speech and music, 2 and 3 sources, 2-4 mics, RT60 150-700 ms, 5-30 s.
CASES: tuple[CaseSpec, ...] = (
    CaseSpec("speech2_m2_rt150_8s", ("speech", "speech"), 2, 0.15, 8.0, 1),
    CaseSpec("speech2_m2_rt350_10s", ("speech", "speech"), 2, 0.35, 10.0, 2),
    CaseSpec("speech2_m2_rt550_6s", ("speech", "speech"), 2, 0.55, 6.0, 3),
    CaseSpec("speech2_m2_rt700_12s", ("speech", "speech"), 2, 0.70, 12.0, 4),
    CaseSpec("speech2_m2_rt300_30s", ("speech", "speech"), 2, 0.30, 30.0, 5),
    CaseSpec("speech3_m3_rt300_10s", ("speech", "speech", "speech"), 3, 0.30, 10.0, 6),
    CaseSpec("music2_m2_rt250_10s", ("music", "music"), 2, 0.25, 10.0, 7),
    CaseSpec("music2_m2_rt600_8s", ("music", "music"), 2, 0.60, 8.0, 8),
    CaseSpec("music3_m3_rt400_8s", ("music", "music", "music"), 3, 0.40, 8.0, 9),
    CaseSpec("mixed2_m2_rt450_5s", ("speech", "music"), 2, 0.45, 5.0, 10),
    CaseSpec("speech2_m3_rt400_8s", ("speech", "speech"), 3, 0.40, 8.0, 11),
    CaseSpec("mixed2_m4_rt650_10s", ("music", "speech"), 4, 0.65, 10.0, 12),
)


@dataclass(frozen=True)
class RoomSpec:
    """A varied case (see :func:`varied_specs`): a random shoebox, a linear array of
    ``n_mic`` mics ``spacing`` m apart, sources ``distances`` m away; ``kinds`` are
    ``speech``, ``music`` (synthetic) or ``stem`` (a real music stem read from
    ``../shared`` at run time, never stored); ``directional`` gives each source a
    cardioid pattern aimed near the array."""

    name: str
    kinds: tuple[str, ...]
    n_mic: int
    rt60: float
    seconds: float
    spacing: float
    distances: tuple[float, ...]
    directional: bool
    seed: int


@dataclass(frozen=True)
class DevSpec:
    """A dev case of ``../shared/data/dev/<name>`` (its ``case.json`` in ``info``)."""

    name: str
    info: dict
    seed: int = 0


@dataclass
class Case:
    """A case: ``mix`` ``(n_mic, n_samples)``, ``images`` ``(n_src, n_mic, n_samples)``.

    ``mix`` is the sum of the images plus sensor noise (simulated cases). ``early``
    ``(n_src, n_samples)``, when known, is each source's early image at mic 0 (direct
    path + 50 ms), the target a dereverberating method would aim at.
    """

    spec: CaseSpec | RoomSpec | DevSpec
    mix: np.ndarray
    images: np.ndarray
    early: np.ndarray | None = None

    @property
    def n_sources(self) -> int:
        return self.images.shape[0]


def _speakers() -> list[list[np.ndarray]]:
    """Utterances per speaker: the two ARCTIC speakers and two resampled variants of them."""
    by_speaker: dict[str, list[np.ndarray]] = {}
    for path in sorted(SOURCES.glob("cmu_arctic_*.wav")):
        data, rate = sf.read(path, dtype="float64")
        assert rate == RATE, path
        by_speaker.setdefault(path.stem.split("_")[3], []).append(data)
    speakers = list(by_speaker.values())
    # A pitch/formant shift by resampling makes two more distinct voices.
    speakers.append([resample_poly(u, 9, 8) for u in speakers[0]])  # lower
    speakers.append([resample_poly(u, 7, 8) for u in speakers[1]])  # higher
    return speakers


def speech(rng: np.random.Generator, speaker: list[np.ndarray], n_samples: int) -> np.ndarray:
    """Utterances of one speaker in random order with short pauses, cut to ``n_samples``."""
    parts: list[np.ndarray] = [np.zeros(int(rng.integers(0, RATE // 2)))]
    total = parts[0].size
    while total < n_samples:
        utterance = speaker[int(rng.integers(len(speaker)))]
        pause = np.zeros(int(rng.uniform(0.1, 0.6) * RATE))
        parts += [utterance, pause]
        total += utterance.size + pause.size
    return np.concatenate(parts)[:n_samples]


def music(rng: np.random.Generator, n_samples: int, register: int) -> np.ndarray:
    """A synthetic instrument playing a repeated riff: harmonic notes with one timbre.

    Like real music it is low-rank: a few pitches (3-6) from a scale, a rhythmic
    pattern that repeats with small variations, a fixed spectral tilt and
    envelope shape, inharmonic-free partials and a short noisy attack per note.
    ``register`` (0, 1, 2...) moves the pitch range up by an octave each.
    """
    tilt = rng.uniform(0.7, 1.6)
    odd_only = rng.random() < 0.3
    decay = rng.uniform(1.0, 6.0)  # 1/s: sustained (organ) to plucked (piano-like)
    root = rng.uniform(70.0, 140.0) * 2**register
    scale = np.array([0, 2, 3, 5, 7, 8, 10, 12, 14, 15])
    pitches = root * 2 ** (rng.choice(scale, size=int(rng.integers(3, 7)), replace=False) / 12)
    beat = rng.uniform(0.2, 0.4)
    pattern = [
        (float(rng.choice(pitches)), int(rng.choice([1, 1, 2, 4])))
        for _ in range(int(rng.integers(4, 9)))
    ]
    out = np.zeros(n_samples + 4 * int(beat * RATE))
    start = int(rng.integers(0, RATE // 4))
    while start < n_samples:
        for f0, beats in pattern:
            if rng.random() < 0.1:  # an occasional rest or changed note
                f0 = float(rng.choice(pitches))
            length = int(beats * beat * RATE)
            t = np.arange(length) / RATE
            k = np.arange(1, int(min(20, 7000 / f0)) + 1)
            k = k[k % 2 == 1] if odd_only else k
            amps = k.astype(float) ** -tilt
            phases = rng.uniform(0, 2 * np.pi, k.size)
            note = (amps[:, None] * np.sin(2 * np.pi * f0 * k[:, None] * t + phases[:, None])).sum(
                0
            )
            attack = rng.standard_normal(length) * np.exp(-t / 0.015) * 0.3 * amps.sum()
            env = (
                np.minimum(t / 0.01, 1.0)
                * np.exp(-decay * t)
                * np.minimum((length - 1 - np.arange(length)) / 400, 1.0)
            )
            if start + length > out.size:
                break
            out[start : start + length] += env * note + attack
            start += length
    return out[:n_samples]


def make(spec: CaseSpec) -> Case:
    """Simulate ``spec`` (needs pyroomacoustics); same spec, same arrays."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(spec.seed)
    n_samples = int(spec.seconds * RATE)
    speakers = _speakers()
    order = rng.permutation(len(speakers))
    registers = rng.permutation(3)
    dry, n_speech, n_music = [], 0, 0
    for kind in spec.kinds:
        if kind == "speech":
            dry.append(speech(rng, speakers[order[n_speech]], n_samples))
            n_speech += 1
        else:
            dry.append(music(rng, n_samples, int(registers[n_music])))
            n_music += 1

    room_dim = rng.uniform([5.0, 4.0, 2.6], [9.0, 7.0, 3.5])
    absorption, max_order = pra.inverse_sabine(spec.rt60, room_dim)
    room = pra.ShoeBox(
        room_dim, fs=RATE, materials=pra.Material(absorption), max_order=min(max_order, 40)
    )
    center = room_dim / 2 + rng.uniform(-0.5, 0.5, 3) * [1, 1, 0]
    spacing = rng.uniform(0.03, 0.08)
    mic_x = (np.arange(spec.n_mic) - (spec.n_mic - 1) / 2) * spacing
    room.add_microphone_array(
        np.stack(
            [center[0] + mic_x, np.full(spec.n_mic, center[1]), np.full(spec.n_mic, center[2])]
        )
    )
    angles = _angles(rng, len(dry))
    for angle in angles:
        distance = rng.uniform(1.0, 2.0)
        position = center + distance * np.array([np.sin(angle), np.cos(angle), 0.0])
        position[2] = rng.uniform(1.4, 1.8)
        room.add_source(position)
    room.compute_rir()
    return _mix(rng, dry, room.rir, n_samples, spec)


def _mix(
    rng: np.random.Generator,
    dry: list[np.ndarray],
    rirs: list[list[np.ndarray]],
    n_samples: int,
    spec: CaseSpec | RoomSpec,
) -> Case:
    """Convolve ``dry`` with ``rirs[mic][source]``: images with equal power at mic 0 up to
    +-3 dB, mixture peak at -6 dBFS, sensor noise; the early images (direct path + 50 ms) too."""
    n_mic = len(rirs)
    images = np.zeros((len(dry), n_mic, n_samples))
    early = np.zeros((len(dry), n_samples))
    for n, signal in enumerate(dry):
        for m in range(n_mic):
            images[n, m] = fftconvolve(signal, rirs[m][n])[:n_samples]
        rir = rirs[0][n]
        end = int(np.argmax(np.abs(rir))) + int(EARLY_SECONDS * RATE)
        early[n] = fftconvolve(signal, rir[:end])[:n_samples]
    gains = 10 ** (rng.uniform(-3, 3, len(dry)) / 20) / np.sqrt(np.mean(images[:, 0] ** 2, axis=-1))
    images *= gains[:, None, None]
    scale = 0.5 / np.abs(images.sum(0)).max()
    images *= scale
    early *= gains[:, None]
    early *= scale
    clean = images.sum(0)
    noise = rng.standard_normal(clean.shape) * np.sqrt(np.mean(clean**2)) * 10 ** (-SNR_DB / 20)
    return Case(spec, clean + noise, images, early)


def _angles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Directions (rad, broadside 0) in [-70, 70] deg, at least 30 deg apart."""
    while True:
        angles = np.sort(rng.uniform(-70, 70, n))
        if n == 1 or np.diff(angles).min() >= 30:
            return np.deg2rad(angles)


def load(spec: CaseSpec | RoomSpec | DevSpec, cache: Path | None = None) -> Case:
    """The case of ``spec``; simulated ones cached as ``<cache>/<name>-<seed>.npz``."""
    if isinstance(spec, DevSpec):
        return load_dev(spec)
    build = make if isinstance(spec, CaseSpec) else make_varied
    if cache is None:
        return build(spec)  # type: ignore[arg-type]
    path = cache / f"{spec.name}-{spec.seed}.npz"
    if path.exists():
        data = np.load(path)
        return Case(spec, data["mix"], data["images"], data.get("early"))
    case = build(spec)  # type: ignore[arg-type]
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {"mix": case.mix, "images": case.images}
    if case.early is not None:
        arrays["early"] = case.early
    # Written whole, then renamed: a parallel job may be reading this path meanwhile.
    part = path.with_name(f"{path.stem}.{os.getpid()}.part.npz")
    np.savez(part, **arrays)
    os.replace(part, path)
    return case


def dev_specs(root: Path = DEV) -> list[DevSpec]:
    """The dev cases in ``root`` (one folder each), sorted by name."""
    return [
        DevSpec(d.name, json.loads((d / "case.json").read_text()))
        for d in sorted(root.iterdir())
        if (d / "mix.wav").exists()
    ]


def load_dev(spec: DevSpec, root: Path = DEV) -> Case:
    """``mix.wav``, the images ``srcK.wav`` and the early images ``earlyK.wav`` (mic 0) if any."""
    folder = root / spec.name
    mix = sf.read(folder / "mix.wav", dtype="float64", always_2d=True)[0].T
    n_src = int(spec.info.get("n_src", 2))
    images = np.stack(
        [
            sf.read(folder / f"src{k}.wav", dtype="float64", always_2d=True)[0].T
            for k in range(1, n_src + 1)
        ]
    )
    early_files = [folder / f"early{k}.wav" for k in range(1, n_src + 1)]
    early = None
    if all(f.exists() for f in early_files):
        early = np.stack(
            [sf.read(f, dtype="float64", always_2d=True)[0][:, 0] for f in early_files]
        )
    return Case(spec, mix, images, early)


def varied_specs(n_cases: int = 10, seed: int = 2026) -> list[RoomSpec]:
    """``n_cases`` varied cases drawn from ``seed``: RT60 150-800 ms, 2-3 mics 2-20 cm apart,
    sources 1-3 m away, 2-3 sources (one fewer than the mics in some), speech mostly, some
    synthetic music and real stems (looped past their end), some directional, 5-30 s."""
    rng = np.random.default_rng(seed)
    lengths = rng.permutation(np.resize([5.0, 30.0, 8.0, 20.0, 6.0, 12.0, 10.0, 15.0], n_cases))
    rt60s = rng.permutation(np.linspace(0.15, 0.8, n_cases)) + rng.uniform(-0.03, 0.03, n_cases)
    specs = []
    for index in range(n_cases):
        n_mic = int(rng.choice([2, 2, 3]))
        n_src = n_mic if n_mic == 2 or rng.random() < 0.6 else 2
        draw = rng.random()
        if draw < 0.55:
            kinds = ("speech",) * n_src
        elif draw < 0.75:
            kinds = ("stem",) * n_src if n_src == 2 else ("stem", "stem", "speech")
        else:
            kinds = ("speech", "music", "music")[:n_src] if n_src == 3 else ("speech", "music")
        rt60 = float(np.round(np.clip(rt60s[index], 0.15, 0.8), 2))
        seconds = float(lengths[index])
        spacing = float(np.round(np.exp(rng.uniform(np.log(0.02), np.log(0.2))), 3))
        distances = tuple(float(np.round(d, 2)) for d in rng.uniform(1.0, 3.0, n_src))
        directional = bool(rng.random() < 0.4) or index % 3 == 1
        label = "-".join(sorted(set(kinds)))
        name = (
            f"v{index:02d}_{label}{n_src}_m{n_mic}_rt{int(rt60 * 1000)}_{int(seconds)}s"
            f"_sp{int(round(spacing * 100))}cm_d{max(distances):.1f}m{'_dir' if directional else ''}"
        )
        specs.append(
            RoomSpec(
                name, kinds, n_mic, rt60, seconds, spacing, distances, directional, 1000 + index
            )
        )
    return specs


def multi_specs(n_cases: int = 12, seed: int = 3031, first: int = 0) -> list[RoomSpec]:
    """``n_cases`` random rooms with 3-4 mics (for frame studies where the full-rank model's
    M x M spatial covariances matter), drawn from ``seed``: 2 to 4 sources (never more than
    the mics), RT60 200-800 ms, 6-30 s, mics 3-20 cm apart, sources 1-3 m away, speech and
    synthetic music only (no stems), some directional. Names start with ``w`` and the
    number ``first + index``, the room's seed is 3000 + that number (apart from
    :func:`varied_specs`' 1000 + index): draws with other ``seed`` and ``first`` add rooms."""
    lengths = (6.0, 8.0, 9.5, 11.0, 13.0, 15.0, 17.0, 20.0, 25.0, 30.0)
    return _draw_rooms(n_cases, seed, first, lengths, (3, 4), "w", 3000)


def edge_specs(n_cases: int = 12, seed: int = 4041) -> list[RoomSpec]:
    """Random rooms as :func:`multi_specs` draws them, but 2-4 mics and lengths at the
    edges of ``auto_stft``'s choices: 6.5-7.5 s (50-59 frames at 8192/2048) and 9-10 s
    (52-58 frames at 11000/2750), where the minimum frame count decides. Names start with
    ``e`` and the index (lengths to 0.01 s), seeds 4000 + index."""
    lengths = (6.5, 9.0, 6.75, 9.25, 7.0, 9.5, 7.25, 9.75, 7.5, 10.0, 6.9, 9.4)
    return _draw_rooms(n_cases, seed, 0, lengths, (2, 3, 4), "e", 4000, exact_length=True)


def _draw_rooms(
    n_cases: int,
    seed: int,
    first: int,
    lengths_s: tuple[float, ...],
    mic_counts: tuple[int, ...],
    prefix: str,
    base: int,
    exact_length: bool = False,
) -> list[RoomSpec]:
    """The rooms of :func:`multi_specs` and :func:`edge_specs` (see there)."""
    rng = np.random.default_rng(seed)
    lengths = rng.permutation(np.resize(list(lengths_s), n_cases))
    rt60s = rng.permutation(np.linspace(0.2, 0.8, n_cases)) + rng.uniform(-0.03, 0.03, n_cases)
    mics = rng.permutation(np.resize(list(mic_counts), n_cases))
    specs = []
    for index in range(n_cases):
        n_mic = int(mics[index])
        n_src = int(rng.integers(2, n_mic + 1))
        draw = rng.random()
        if draw < 0.55:
            kinds: tuple[str, ...] = ("speech",) * n_src
        elif draw < 0.8:
            kinds = ("speech", "music", "speech", "music")[:n_src]
        else:
            kinds = ("music", "music", "music", "speech")[:n_src]
        rt60 = float(np.round(np.clip(rt60s[index], 0.2, 0.8), 2))
        seconds = float(lengths[index])
        spacing = float(np.round(np.exp(rng.uniform(np.log(0.03), np.log(0.2))), 3))
        distances = tuple(float(np.round(d, 2)) for d in rng.uniform(1.0, 3.0, n_src))
        directional = bool(rng.random() < 0.3)
        label = "-".join(sorted(set(kinds)))
        length = f"{seconds:g}" if exact_length else f"{int(seconds)}"
        name = (
            f"{prefix}{first + index:02d}_{label}{n_src}_m{n_mic}_rt{int(rt60 * 1000)}_{length}s"
            f"_sp{int(round(spacing * 100))}cm_d{max(distances):.1f}m{'_dir' if directional else ''}"
        )
        seed_of = base + first + index
        specs.append(
            RoomSpec(name, kinds, n_mic, rt60, seconds, spacing, distances, directional, seed_of)
        )
    return specs


def _stems() -> list[np.ndarray]:
    """The real music stems of ``../shared`` (mono, 16 kHz), for run-time mixtures only."""
    stems = []
    for path in sorted(SOURCES.glob("dev*.wav")):
        data, rate = sf.read(path, dtype="float64", always_2d=True)
        stems.append(resample_poly(data.mean(axis=1), RATE, rate))
    return stems


def make_varied(spec: RoomSpec) -> Case:
    """Simulate a :class:`RoomSpec` (needs pyroomacoustics); same spec, same arrays."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(spec.seed)
    n_samples = int(spec.seconds * RATE)
    speakers, stems = _speakers(), _stems()
    speaker_order, stem_order = rng.permutation(len(speakers)), rng.permutation(len(stems))
    registers = rng.permutation(3)
    dry, counts = [], {"speech": 0, "music": 0, "stem": 0}
    for kind in spec.kinds:
        k = counts[kind]
        if kind == "speech":
            dry.append(speech(rng, speakers[speaker_order[k]], n_samples))
        elif kind == "music":
            dry.append(music(rng, n_samples, int(registers[k])))
        else:
            stem = stems[stem_order[k]]
            stem = np.tile(stem, -(-n_samples // stem.size) + 1)  # looped if too short
            offset = int(rng.integers(0, stem.size - n_samples + 1))
            dry.append(stem[offset : offset + n_samples])
        counts[kind] += 1
    reach = max(spec.distances) + 0.6
    room_dim = np.array(
        [rng.uniform(2 * reach, 2 * reach + 4), rng.uniform(2 * reach, 2 * reach + 3), 0.0]
    )
    room_dim[2] = rng.uniform(2.5, 3.8)
    absorption, max_order = pra.inverse_sabine(spec.rt60, room_dim)
    room = pra.ShoeBox(
        room_dim, fs=RATE, materials=pra.Material(absorption), max_order=min(max_order, 40)
    )
    center = room_dim / 2 + rng.uniform(-0.3, 0.3, 3) * [1, 1, 0]
    center[2] = rng.uniform(1.0, 1.6)
    axis = rng.uniform(0, np.pi)  # orientation of the array in the horizontal plane
    along = np.array([np.cos(axis), np.sin(axis), 0.0])
    front = np.array([-np.sin(axis), np.cos(axis), 0.0])
    offsets = (np.arange(spec.n_mic) - (spec.n_mic - 1) / 2) * spec.spacing
    room.add_microphone_array(center[:, None] + along[:, None] * offsets[None])
    for angle, distance in zip(_angles(rng, len(dry)), spec.distances, strict=True):
        position = center + distance * (np.sin(angle) * along + np.cos(angle) * front)
        position[2] = rng.uniform(1.2, 1.9)
        directivity = None
        if spec.directional:
            aim = center - position + rng.uniform(-0.8, 0.8, 3) * [1, 1, 0]  # roughly at the array
            directivity = _cardioid(aim)
        room.add_source(position, directivity=directivity)
    room.compute_rir()
    return _mix(rng, dry, room.rir, n_samples, spec)


def _cardioid(aim: np.ndarray) -> object:
    """A cardioid source pattern pointing along ``aim`` (pyroomacoustics directivities)."""
    from pyroomacoustics.directivities import Cardioid, DirectionVector

    azimuth = float(np.degrees(np.arctan2(aim[1], aim[0])))
    colatitude = float(np.degrees(np.arccos(aim[2] / np.linalg.norm(aim))))
    return Cardioid(DirectionVector(azimuth=azimuth, colatitude=colatitude, degrees=True))
