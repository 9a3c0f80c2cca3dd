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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve, resample_poly

RATE = 16000
SNR_DB = 30.0
SOURCES = Path(__file__).resolve().parents[2] / "shared" / "data" / "sources"


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


@dataclass
class Case:
    """A simulated case: ``mix`` ``(n_mic, n_samples)``, ``images`` ``(n_src, n_mic, n_samples)``.

    ``mix`` is the sum of the images plus sensor noise.
    """

    spec: CaseSpec
    mix: np.ndarray
    images: np.ndarray

    @property
    def n_sources(self) -> int:
        return self.images.shape[0]


def _speakers() -> list[list[np.ndarray]]:
    """Utterances per speaker: the two ARCTIC speakers and two resampled variants of them."""
    by_speaker: dict[str, list[np.ndarray]] = {}
    for path in sorted(SOURCES.glob("*.wav")):
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
    images = np.zeros((len(dry), spec.n_mic, n_samples))
    for n, signal in enumerate(dry):
        for m in range(spec.n_mic):
            images[n, m] = fftconvolve(signal, room.rir[m][n])[:n_samples]
    # Equal power at mic 0 up to +-3 dB, mixture peak at -6 dBFS.
    gains = 10 ** (rng.uniform(-3, 3, len(dry)) / 20) / np.sqrt(np.mean(images[:, 0] ** 2, axis=-1))
    images *= gains[:, None, None]
    images *= 0.5 / np.abs(images.sum(0)).max()
    clean = images.sum(0)
    noise = rng.standard_normal(clean.shape) * np.sqrt(np.mean(clean**2)) * 10 ** (-SNR_DB / 20)
    return Case(spec, clean + noise, images)


def _angles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Directions (rad, broadside 0) in [-70, 70] deg, at least 30 deg apart."""
    while True:
        angles = np.sort(rng.uniform(-70, 70, n))
        if n == 1 or np.diff(angles).min() >= 30:
            return np.deg2rad(angles)


def load(spec: CaseSpec, cache: Path | None = None) -> Case:
    """:func:`make`, cached as ``<cache>/<name>-<seed>.npz`` when ``cache`` is given."""
    if cache is None:
        return make(spec)
    path = cache / f"{spec.name}-{spec.seed}.npz"
    if path.exists():
        data = np.load(path)
        return Case(spec, data["mix"], data["images"])
    case = make(spec)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, mix=case.mix, images=case.images)
    return case
