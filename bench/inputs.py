"""Benchmark inputs built from ``../shared/data``: the dev mixtures, tiled, and a 3-mic room.

Long inputs are the 10-s cases tiled in time, so their references tile too.
The 3-channel case is simulated with pyroomacoustics (3 talkers, 3 microphones,
RT60 250 ms) from the dry utterances; its references are the source images at mic 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RATE = 16000


def read(path: Path) -> np.ndarray:
    """``(n_channels, n_samples)`` float64."""
    data, rate = sf.read(path, dtype="float64", always_2d=True)
    if rate != RATE:
        raise ValueError(f"{path}: expected {RATE} Hz, got {rate}")
    return data.T


def dev_case(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Mixture ``(2, n)`` and references at mic 0 ``(2, n)`` of a development case."""
    folder = DATA / "dev" / name
    refs = np.stack([read(folder / f"src{i}.wav")[0] for i in (1, 2)])
    return read(folder / "mix.wav"), refs


def room_3ch(seconds: float = 10.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A simulated 3-talker, 3-mic mixture ``(3, n)`` and its images at mic 0 ``(3, n)``."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    files = sorted((DATA / "sources").glob("*.wav"))
    dry = []
    for k in range(3):
        # Two utterances per talker, end to end, cut or tiled to the length.
        speech = np.concatenate([read(files[2 * k])[0], read(files[2 * k + 1])[0]])
        dry.append(np.resize(speech, n))
    room_dim = [6.0, 5.0, 3.0]
    absorption, max_order = pra.inverse_sabine(0.25, room_dim)
    images = []
    mics = np.array([[2.9, 3.0, 3.1], [2.5, 2.5, 2.5], [1.5, 1.5, 1.5]])
    for k, signal in enumerate(dry):
        room = pra.ShoeBox(
            room_dim, fs=RATE, materials=pra.Material(absorption), max_order=max_order
        )
        angle = np.pi * (0.2 + 0.3 * k) + rng.uniform(-0.05, 0.05)
        room.add_source([3.0 + 1.5 * np.cos(angle), 2.5 + 1.5 * np.sin(angle), 1.6], signal=signal)
        room.add_microphone_array(mics)
        room.simulate()
        images.append(room.mic_array.signals[:, :n])
    images = np.stack(images)  # (source, mic, n)
    mix = images.sum(axis=0)
    peak = np.abs(mix).max()
    return mix / peak * 0.5, images[:, 0] / peak * 0.5


def tile(signal: np.ndarray, seconds: float) -> np.ndarray:
    """``signal`` ``(n_channels, n)`` repeated along time, channel by channel, to ``seconds``."""
    n_out = int(seconds * RATE)
    repeats = -(-n_out // signal.shape[-1])
    return np.tile(signal, (1, repeats))[:, :n_out]
