"""More sources than microphones: 3-4 sources from 2 mics with the full-rank model.

    nice -n 10 python bench/fullrank_more_sources.py --seeds 0,1,2          # JSONL rows
    python bench/fullrank_more_sources.py --report                          # markdown

Simulated rooms (pyroomacoustics image method, 16 kHz, 10 s) built from the dry dev
sources (speech, and the music stems read from ``../shared`` at run time, never stored):
a two-mic linear array in a 6 x 5 x 3 m room, sources at the given angles and distance.
The cases vary the sources (talkers, speech with an instrument, instruments), their
number (3, 4), the spacing (5, 10, 18 cm), RT60 (250-500 ms) and the distance.

Methods (SDRi at mic 0, BSS Eval v3 with the best permutation; mean and worst source):

- ``ilrma``: ``ilrma separate --n-sources N`` through :func:`ilrma_cli.pipeline.separate`
  (the CLI's defaults: the full-rank model, the automatic STFT, which is 4096/1024 at 16 kHz
  for more sources than channels);
- ``ilrma-freq``: ``ilrma`` with ``--fullrank-weights frequency`` (one run);
- ``ilrma@11000``: the same at ``--n-fft 11000 --hop 2750`` (what the automatic STFT picks
  for a determined 10-s recording);
- ``pra``: pyroomacoustics' ``fastmnmf2`` with ``n_src = N`` (K = 16, 100 iterations, its
  own start from ``np.random.seed(seed)``) at 8192/2048, its best frame on the dev cases.

One BLAS thread; ``seconds`` is the method's time in this process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import DATA, RATE  # noqa: E402

from ilrma_cli.metrics import score  # noqa: E402
from ilrma_cli.pipeline import separate  # noqa: E402
from ilrma_cli.settings import SeparationSettings  # noqa: E402
from ilrma_cli.stft import StftConfig, istft, stft  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "more_sources.jsonl"
SECONDS = 10.0


@dataclass(frozen=True)
class Scene:
    name: str
    sources: tuple[str, ...]  # parts of the file names in ../shared/data/sources
    angles: tuple[float, ...]  # degrees from broadside
    spacing: float  # m between the two mics
    rt60: float
    distance: float  # m from the array centre


SCENES = (
    Scene("speech+guitar", ("aew_a0001", "axb_a0004", "acoustic_guit"), (-50, 0, 50), 0.10, 0.3, 1.5),
    Scene("instruments", ("acoustic_guit", "bass", "synth"), (-50, 0, 50), 0.10, 0.3, 1.5),
    Scene("3 talkers", ("aew_a0001", "axb_a0004", "aew_a0002"), (-60, 0, 45), 0.05, 0.25, 1.2),
    Scene("instruments wide", ("acoustic_guit", "bass", "synth"), (-40, 10, 55), 0.18, 0.45, 2.0),
    Scene("3 talkers far", ("axb_a0005", "aew_a0003", "axb_a0006"), (-45, 15, 60), 0.18, 0.5, 2.5),
    Scene("4 instruments", ("acoustic_guit", "bass", "synth", "pad"), (-60, -20, 20, 60), 0.10, 0.3, 1.5),
)  # fmt: skip


def dry_source(part: str) -> np.ndarray:
    """First channel of the dry source whose file name contains ``part``, at 16 kHz."""
    import soundfile as sf
    from scipy.signal import resample_poly

    path = next(p for p in sorted((DATA / "sources").glob("*.wav")) if part in p.name)
    data, rate = sf.read(path, dtype="float64", always_2d=True)
    return data[:, 0] if rate == RATE else resample_poly(data[:, 0], RATE, rate)


def room(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Mixture ``(2, n)`` and the source images at mic 0 ``(N, n)``."""
    import pyroomacoustics as pra

    n = int(SECONDS * RATE)
    room_dim = [6.0, 5.0, 3.0]
    absorption, max_order = pra.inverse_sabine(scene.rt60, room_dim)
    half = scene.spacing / 2
    mics = np.array([[3.0 - half, 3.0 + half], [2.5, 2.5], [1.5, 1.5]])
    images = []
    for part, degrees in zip(scene.sources, scene.angles, strict=True):
        signal = np.resize(dry_source(part), n)
        angle = np.deg2rad(90 + degrees)
        shoebox = pra.ShoeBox(
            room_dim, fs=RATE, materials=pra.Material(absorption), max_order=max_order
        )
        position = [3.0 + scene.distance * np.cos(angle), 2.5 + scene.distance * np.sin(angle), 1.6]
        shoebox.add_source(position, signal=signal / np.std(signal))
        shoebox.add_microphone_array(mics)
        shoebox.simulate()
        images.append(shoebox.mic_array.signals[:, :n])
    stacked = np.stack(images)
    mix = stacked.sum(axis=0)
    peak = np.abs(mix).max()
    return mix / peak * 0.5, stacked[:, 0] / peak * 0.5


def ours(
    mix: np.ndarray, n_src: int, seed: int, stft: StftConfig | None = None, weights: str = "shared"
) -> np.ndarray:
    settings = SeparationSettings(stft=stft, seed=seed, n_sources=n_src, restarts=1)
    ilrma = replace(settings.ilrma, spatial="fullrank", fullrank_weights=weights)
    return separate(mix, replace(settings, ilrma=ilrma), rate=RATE).sources


def ours_per_frequency(mix: np.ndarray, n_src: int, seed: int) -> np.ndarray:
    return ours(mix, n_src, seed, weights="frequency")


def ours_11000(mix: np.ndarray, n_src: int, seed: int) -> np.ndarray:
    return ours(mix, n_src, seed, StftConfig(11000, 2750, "hann"))


def pyroomacoustics_fastmnmf2(mix: np.ndarray, n_src: int, seed: int) -> np.ndarray:
    import pyroomacoustics as pra

    config = StftConfig(8192, 2048, "hann")
    obs = stft(mix, config)
    np.random.seed(seed)  # noqa: NPY002  (pra draws its start from the global generator)
    out = pra.bss.fastmnmf2(obs.transpose(2, 1, 0), n_src=n_src, n_iter=100, n_components=16)
    return istft(out.transpose(2, 1, 0), mix.shape[1], config)


def ours_restarts(restarts: int, fullrank_iter: int) -> Callable[..., np.ndarray]:
    """The CLI's pipeline with ``restarts`` runs of ``fullrank_iter`` full-rank iterations."""

    def method(mix: np.ndarray, n_src: int, seed: int) -> np.ndarray:
        settings = SeparationSettings(seed=seed, n_sources=n_src, restarts=restarts)
        settings = replace(settings, ilrma=replace(settings.ilrma, fullrank_iter=fullrank_iter))
        return separate(mix, settings, rate=RATE).sources

    return method


METHODS = {
    "ilrma": ours,
    "ilrma@11000": ours_11000,
    "ilrma-freq": ours_per_frequency,  # --fullrank-weights frequency (session 14)
    "pra": pyroomacoustics_fastmnmf2,
    "restarts5x30": ours_restarts(5, 30),  # the defaults of session 9
    "restarts4x60": ours_restarts(4, 60),  # the defaults of session 10
}


def run(seeds: list[int], methods: list[str], out: Path) -> None:
    done = set()
    if out.exists():
        done = {(r["case"], r["seed"], r["method"]) for r in map(json.loads, out.open())}
    out.parent.mkdir(parents=True, exist_ok=True)
    for scene in SCENES:
        mix, refs = room(scene)
        for seed in seeds:
            for method in methods:
                if (scene.name, seed, method) in done:
                    continue
                start = time.perf_counter()
                values = score(refs, METHODS[method](mix, len(refs), seed), mix[0]).sdri
                seconds = time.perf_counter() - start
                assert values is not None
                row = {"case": scene.name, "seed": seed, "method": method,
                       "sdri": [float(v) for v in values], "seconds": seconds}  # fmt: skip
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{scene.name:18s} {seed} {method:6s} mean {np.mean(values):6.2f} "
                      f"worst {np.min(values):6.2f} dB {seconds:5.1f} s", flush=True)  # fmt: skip


def report(out: Path) -> None:
    """Per case and method: mean SDRi over sources and seeds, the worst source of any seed,
    the seeds' spread of the mean, the median time."""
    rows = [json.loads(line) for line in out.open()]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print("Mean SDRi over sources and seeds / worst source over seeds (dB), median seconds\n")
    print("| case | N | mics | RT60 | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 4) + "|")
    for scene in SCENES:
        cells = []
        for method in methods:
            got = [r for r in rows if r["case"] == scene.name and r["method"] == method]
            if not got:
                cells.append("")
                continue
            means = [np.mean(r["sdri"]) for r in got]
            worst = min(min(r["sdri"]) for r in got)
            secs = np.median([r["seconds"] for r in got])
            cells.append(f"{np.mean(means):.2f} / {worst:.2f} ({secs:.0f} s, n={len(got)})")
        mics = f"{scene.spacing * 100:.0f} cm"
        print(f"| {scene.name} | {len(scene.sources)} | {mics} | {scene.rt60:.2f} | "
              + " | ".join(cells) + " |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="ilrma,ilrma@11000,pra")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report(args.out)
        return
    with threadpool_limits(limits=1):
        run([int(s) for s in args.seeds.split(",")], args.methods.split(","), args.out)


if __name__ == "__main__":
    main()
