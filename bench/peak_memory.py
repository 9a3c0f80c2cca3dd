"""Child process: one whole separation of a wav file, then its peak RSS as JSON on stdout.

``python bench/peak_memory.py METHOD IN.wav OUT_DIR N_FFT HOP N_ITER``. For ilrma
methods (``"ilrma ip (double)"``...) this runs the real command line in this
process: ``ilrma separate IN.wav -o OUT_DIR --n-fft N_FFT --hop HOP --n-iter N_ITER
--update ip --precision double --n-basis 2 --spatial rank1``, everything else at its default
(read -> STFT -> IVA start and ILRMA -> projection back -> ISTFT -> write). Peers
run read -> STFT -> separate -> ISTFT -> write through their libraries. Reports
``VmHWM`` (peak resident set), the resident size after the imports (``baseline``),
the complex64 STFT size and, for ilrma, :func:`ilrma_cli.memory.estimate_peak_bytes`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from methods import N_BASIS  # noqa: E402

from ilrma_cli.stft import StftConfig, n_frames  # noqa: E402


def status_bytes(field: str) -> int:
    """A size from ``/proc/self/status`` (``VmRSS`` now, ``VmHWM`` peak since exec).

    ``ru_maxrss`` is not used: across fork + exec it keeps the parent's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_cli(method: str, path: str, out_dir: str, n_fft: int, hop: int, n_iter: int) -> int:
    """``ilrma separate`` in this process; returns the resident size after the imports."""
    from ilrma_cli.cli import cli

    baseline = status_bytes("VmRSS")
    update, precision = re.fullmatch(r"ilrma (\w+) \((\w+)\)", method).groups()
    args = ["separate", path, "-o", out_dir, "--force", "-q", "--no-progress"]
    args += ["--n-fft", str(n_fft), "--hop", str(hop), "--n-iter", str(n_iter)]
    args += ["--update", update, "--precision", precision, "--n-basis", str(N_BASIS)]
    args += ["--spatial", "rank1", "--restarts", "1"]  # one ILRMA run against the peers' ILRMA
    cli.main(args, prog_name="ilrma", standalone_mode=False)
    return baseline


def run_library(method: str, path: str, out_dir: str, n_fft: int, hop: int, n_iter: int) -> int:
    """A peer's separation through its library; returns the resident size after the imports."""
    import pyroomacoustics  # noqa: F401  (imports count in the baseline)
    import ssspy  # noqa: F401
    from methods import separate

    from ilrma_cli.stft import istft, stft

    baseline = status_bytes("VmRSS")
    config = StftConfig(n_fft, hop)
    wave, rate = sf.read(path, dtype="float64", always_2d=True)
    n_samples = wave.shape[0]
    obs = stft(wave.T, config)
    del wave
    images = separate(method, obs, n_iter)
    del obs
    for n, image in enumerate(images):
        sf.write(Path(out_dir) / f"src{n}.wav", istft(image[None], n_samples, config)[0], rate)
    return baseline


def main(method: str, path: str, out_dir: str, n_fft: int, hop: int, n_iter: int) -> None:
    ours = method.startswith("ilrma")
    baseline = (run_cli if ours else run_library)(method, path, out_dir, n_fft, hop, n_iter)
    peak = status_bytes("VmHWM")
    info = sf.info(path)
    config = StftConfig(n_fft, hop)
    stft_bytes = info.channels * config.n_freq * n_frames(info.frames, config) * 8
    estimate = None
    if ours:
        from ilrma_cli.memory import estimate_peak_bytes

        precision = "single" if "single" in method else "double"
        estimate = estimate_peak_bytes(info.channels, info.frames, n_fft, hop, N_BASIS, precision)
    row = {"peak": peak, "baseline": baseline, "stft_bytes": stft_bytes, "estimate": estimate}
    print(json.dumps(row))


if __name__ == "__main__":
    name, wav, out, fft, step, iters = sys.argv[1:7]
    main(name, wav, out, int(fft), int(step), int(iters))
