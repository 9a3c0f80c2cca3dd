"""End to end, whole processes: ``ilrma separate`` against a plain pyroomacoustics script.

The same 10-s, 2-channel, 16-kHz mixture (the first 10 s of a development case)
goes through each command as a user would run it. The script does the same work as
``ilrma separate --spatial rank1 --n-fft 4096 --hop 1024 --restarts 1`` (read, STFT 4096/1024, 120
iterations with 4 NMF bases per source: 20 IVA then 100 ILRMA, inverse STFT, write):
read, ``scipy.signal.stft``, ``pra.bss.ilrma(n_components=4, n_iter=120)``,
``scipy.signal.istft``, write. ``ilrma separate`` with its defaults (the automatic
STFT, 11000/2750 here, the full-rank refinement and the mean of the default ``--restarts``
runs: far more work than the script) is timed too, and the same work with
numba's JIT kernels (``ILRMA_JIT=1``) when the kernels were compiled ahead of time
(``make install``; :mod:`ilrma_cli.engine.kernels`). Median wall time of ``--repeats``
interleaved runs, one BLAS thread each. Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from ilrma_cli.engine import kernels
from ilrma_cli.settings import SeparationSettings

CASE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev" / "arctic_2src_rt250"
SECONDS = 10.0

PEER_SCRIPT = """
import sys
import numpy as np
import pyroomacoustics as pra
import soundfile as sf
from scipy.signal import istft, stft

mix, rate = sf.read(sys.argv[1])  # (n_samples, n_channels)
_, _, spec = stft(mix.T, fs=rate, window="hann", nperseg=4096, noverlap=4096 - 1024)
# pra wants (n_frames, n_freq, n_channels)
separated = pra.bss.ilrma(spec.transpose(2, 1, 0), n_iter=120, n_components=4, proj_back=True)
_, sources = istft(separated.transpose(2, 1, 0), fs=rate, window="hann", nperseg=4096,
                   noverlap=4096 - 1024)
for index, source in enumerate(sources):
    sf.write(f"{sys.argv[2]}/source{index + 1}.wav", source[: len(mix)], rate, subtype="FLOAT")
"""


def wall_seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}  # fmt: skip
    ilrma = str(Path(sys.executable).parent / "ilrma")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data, rate = sf.read(CASE / "mix.wav")
        mix = folder / "mix.wav"
        sf.write(mix, data[: int(SECONDS * rate)], rate, subtype="FLOAT")
        script = folder / "pra_separate.py"
        script.write_text(PEER_SCRIPT)
        (folder / "pra_out").mkdir()
        ours = [ilrma, "separate", str(mix), "-o", str(folder / "out"), "-f", "-q", "--no-progress"]
        same_work = [*ours, "--spatial", "rank1", "--n-fft", "4096", "--hop", "1024",
                     "--restarts", "1"]  # fmt: skip
        commands = {
            "ilrma separate": (ours, env),
            "same work": (same_work, env),
            "pyroomacoustics script": ([sys.executable, str(script), str(mix),
                                        str(folder / "pra_out")], env),
        }  # fmt: skip
        if kernels.AHEAD_OF_TIME is not None:
            commands["same work, JIT"] = (same_work, {**env, "ILRMA_JIT": "1"})
        for command, command_env in commands.values():  # warm the caches (files, kernels)
            wall_seconds(command, command_env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, (command, command_env) in commands.items():
                times[name].append(wall_seconds(command, command_env))
    median = {name: statistics.median(values) for name, values in times.items()}
    ours, same, peer = (
        median[k] for k in ("ilrma separate", "same work", "pyroomacoustics script")
    )
    print(
        f"end to end, 10-s 2-ch 16-kHz file, median of {args.repeats} whole processes: "
        f"pyroomacoustics script {peer:.2f} s; ilrma separate --spatial rank1 --n-fft 4096 "
        f"--hop 1024 --restarts 1 (the same work) {same:.2f} s, {peer / same:.1f}x faster; "
        f"ilrma separate (defaults: the mean of {SeparationSettings().restarts} full-rank runs) {ours:.2f} s, "
        f"{ours / peer:.2f}x the script's time; kernels "
        + (
            f"ahead of time (the same work with the JIT kernels: {median['same work, JIT']:.2f} s, "
            f"{peer / median['same work, JIT']:.1f}x)"
            if "same work, JIT" in median
            else "JIT (no ahead-of-time build: `python -m ilrma_cli.engine.aot`)"
        )
    )


if __name__ == "__main__":
    main()
