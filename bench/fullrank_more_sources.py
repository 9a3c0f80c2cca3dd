"""More sources than microphones: 3 sources from 2 mics with the full-rank model.

    nice -n 10 python bench/fullrank_more_sources.py --seeds 0,1,2

Two simulated rooms (pyroomacoustics, RT60 300 ms, 2 mics 10 cm apart, sources 1.5 m away
at -50, 0 and 50 degrees) built from the dry dev sources: ``speech+guitar`` (two talkers
and the guitar) and ``instruments`` (guitar, bass, synth). Methods, each with 3 sources
(SDRi at mic 0, BSS Eval v3 best permutation; mean / worst of the 3 sources):

- ``ilrma2+refine3``: ``ilrma separate``'s defaults with 2 sources, then 100 full-rank
  iterations with 3 sources (the third from the N > M start rule), Wiener output;
- ``random3``: our full-rank iterations (100) from a random start (pyroomacoustics' rule);
- ``pra``: pyroomacoustics' ``fastmnmf2``, n_src = 3 (K = 16, 4096/2048, 100 iterations).

The first two use the default STFT (4096/1024) and 4 bases per source.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import DATA, RATE  # noqa: E402

from ilrma_cli.engine.fullrank_compiled import iterate_compiled  # noqa: E402
from ilrma_cli.engine.fullrank_refine import (  # noqa: E402
    fullrank_images,
    random_model,
    refine_fullrank,
)
from ilrma_cli.engine.observation import unit_power_features  # noqa: E402
from ilrma_cli.metrics import score  # noqa: E402
from ilrma_cli.pipeline import separate
from ilrma_cli.settings import SeparationSettings  # noqa: E402
from ilrma_cli.stft import StftConfig, istft, stft  # noqa: E402

SOURCES = {
    "speech+guitar": ["cmu_arctic_us_aew_a0001", "cmu_arctic_us_axb_a0004", "acoustic_guit_main"],
    "instruments": ["acoustic_guit_main", "bass", "synth"],
}
DEFAULT_STFT = StftConfig(4096, 1024, "hann")


def dry_source(path: Path) -> np.ndarray:
    """First channel of a dry source at 16 kHz (the music stems are 44.1 kHz)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    data, rate = sf.read(path, dtype="float64", always_2d=True)
    return data[:, 0] if rate == RATE else resample_poly(data[:, 0], RATE, rate)


def room(names: list[str], seconds: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Mixture ``(2, n)`` and the source images at mic 0 ``(3, n)``."""
    import pyroomacoustics as pra

    n = int(seconds * RATE)
    files = sorted((DATA / "sources").glob("*.wav"))
    dry = [np.resize(dry_source(next(f for f in files if name in f.name)), n) for name in names]
    room_dim = [6.0, 5.0, 3.0]
    absorption, max_order = pra.inverse_sabine(0.3, room_dim)
    mics = np.array([[2.95, 3.05], [2.5, 2.5], [1.5, 1.5]])
    images = []
    for k, signal in enumerate(dry):
        angle = np.deg2rad(90 + (-50, 0, 50)[k])
        shoebox = pra.ShoeBox(
            room_dim, fs=RATE, materials=pra.Material(absorption), max_order=max_order
        )
        shoebox.add_source(
            [3.0 + 1.5 * np.cos(angle), 2.5 + 1.5 * np.sin(angle), 1.6],
            signal=signal / np.std(signal),
        )
        shoebox.add_microphone_array(mics)
        shoebox.simulate()
        images.append(shoebox.mic_array.signals[:, :n])
    stacked = np.stack(images)
    mix = stacked.sum(axis=0)
    peak = np.abs(mix).max()
    return mix / peak * 0.5, stacked[:, 0] / peak * 0.5


def sdri(refs: np.ndarray, estimates: np.ndarray, mix: np.ndarray) -> tuple[float, float]:
    """Mean and worst SDRi over the sources."""
    values = score(refs, estimates, mix[0]).sdri
    assert values is not None
    return float(np.mean(values)), float(np.min(values))


def refine3(mix: np.ndarray, seed: int) -> np.ndarray:
    separation = separate(mix, SeparationSettings(seed=seed), rate=RATE)
    result = separation.result
    obs = stft(mix, DEFAULT_STFT)
    model = refine_fullrank(
        obs,
        result.demix,
        result.basis,
        result.activation,
        100,
        n_src=3,
        n_basis=None,
        weight_floor=1e-2,
    )
    return istft(fullrank_images(obs, model, 0), mix.shape[1], DEFAULT_STFT)


def random3(mix: np.ndarray, seed: int) -> np.ndarray:
    obs = stft(mix, DEFAULT_STFT)
    n_mics, n_freq, n_frames = obs.shape
    model = random_model(n_freq, n_frames, n_mics, 3, 4, np.random.default_rng(seed))
    iterate_compiled(unit_power_features(obs)[0], model, 100, record_loss=False)
    return istft(fullrank_images(obs, model, 0), mix.shape[1], DEFAULT_STFT)


def pra3(mix: np.ndarray, seed: int) -> np.ndarray:
    import pyroomacoustics as pra

    config = StftConfig(4096, 2048, "hann")
    obs = stft(mix, config)
    np.random.seed(seed)  # noqa: NPY002
    out = pra.bss.fastmnmf2(obs.transpose(2, 1, 0), n_src=3, n_iter=100, n_components=16)
    return istft(out.transpose(2, 1, 0), mix.shape[1], config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    methods = {"ilrma2+refine3": refine3, "random3": random3, "pra": pra3}
    print("| mixture | seed | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 2) + "|")
    with threadpool_limits(limits=1):
        for name, sources in SOURCES.items():
            mix, refs = room(sources)
            for seed in (int(s) for s in args.seeds.split(",")):
                cells = []
                for method in methods.values():
                    start = time.perf_counter()
                    mean, worst = sdri(refs, method(mix, seed), mix)
                    seconds = time.perf_counter() - start
                    cells.append(f"{mean:.2f} / {worst:.2f} ({seconds:.0f} s)")
                print(f"| {name} | {seed} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
