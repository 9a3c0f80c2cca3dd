"""Long inputs: peak memory and time against length, and the quality of the long path.

``python bench/long_memory.py [--quick] [--part memory|quality|all]`` (``make bench``).

memory: 10-minute, 1-hour and 3-hour recordings at 16 kHz, 2 and 4 channels, each
separated by ``ilrma separate`` with its defaults in a child process; its peak resident
set (``ru_maxrss`` of a small wrapper's waited child), wall time and time per audio
second, the path it took and its fit frames (``--json``). The recordings are a
10-minute static scene (bench/cases.py: pyroomacoustics shoebox, ARCTIC voices, one
source per mic) written again and again with each source image shifted by its own
random offset (a static scene, never periodic), as 16-bit PCM in a temporary folder
that is deleted afterwards (a 3-hour 4-channel file is 1.4 GB, its outputs 2.8 GB).

quality: four 10-minute two-speaker scenes (two mics, RT60 250-700 ms) separated
whole (the default for them) and by the long path (forced with ``--max-memory``):
SDR improvement (BSS Eval v3 at mic 0, against the source images) of each, and the
difference. Results go to ``bench/long_results.jsonl`` as they come, then into
BENCHMARKS.md ("Long inputs", a marked section: bench/run.py keeps it when it rewrites the rest).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from cases import RATE, CaseSpec, load  # noqa: E402
from sections import replace_section  # noqa: E402

RESULTS = HERE / "long_results.jsonl"
LENGTHS = (600, 3600, 10800)  # seconds
CHANNELS = (4, 2)
QUALITY_CASES = (
    CaseSpec("long10min_rt250", ("speech", "speech"), 2, 0.25, 600.0, 71),
    CaseSpec("long10min_rt400", ("speech", "speech"), 2, 0.40, 600.0, 72),
    CaseSpec("long10min_rt550", ("speech", "speech"), 2, 0.55, 600.0, 73),
    CaseSpec("long10min_rt700", ("speech", "speech"), 2, 0.70, 600.0, 74),
)
# ILRMA seeds besides 0 for the scenes whose seed-0 difference was largest: how much of it
# is the run-to-run spread of ILRMA itself (whole-file runs differ as much between seeds).
SEED_CHECK = {"long10min_rt400": (1, 2), "long10min_rt550": (1, 2)}
FORCED_LIMIT = "900M"  # makes the 10-minute quality scenes take the long path
BLOCK = 2**20  # samples written at a time


def run_child(args: list[str]) -> dict:
    """``ilrma separate ARGS --json`` in a fresh process: its peak RSS, wall time and document."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\n"
        "seconds = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "sys.stderr.write(f'{peak} {seconds} {done.returncode}\\n')\n"
        "sys.stdout.buffer.write(done.stdout)\n"
    )
    command = [sys.executable, "-c", wrapper, sys.executable, "-m", "ilrma_cli", "separate"]
    done = subprocess.run(command + args + ["--json", "-q", "--no-progress"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    peak, seconds, code = done.stderr.strip().splitlines()[-1].split()
    if int(code) != 0:
        raise RuntimeError(f"ilrma separate failed: {done.stderr.strip()}")
    return {"peak": int(peak), "seconds": float(seconds), "doc": json.loads(done.stdout)}


def scene(n_mic: int, seed: int) -> np.ndarray:
    """The 10-minute source images ``(n_mic, n_mic, n)`` (one speaker per mic), float32."""
    spec = CaseSpec(f"longscene_m{n_mic}", ("speech",) * n_mic, n_mic, 0.4, 600.0, seed)
    return load(spec).images.astype(np.float32)


def write_long(path: Path, images: np.ndarray, seconds: int, rng: np.random.Generator) -> None:
    """Repeat the scene to ``seconds``, each source shifted by its own offset per repetition."""
    n_src, n_mic, n = images.shape
    total = seconds * RATE
    with sf.SoundFile(path, "w", RATE, n_mic, "PCM_16") as out:
        for start in range(0, total, n):
            offsets = rng.integers(0, n, n_src)
            piece = sum(np.roll(images[k], int(offsets[k]), axis=-1) for k in range(n_src))
            piece = piece[:, : min(n, total - start)]
            for lo in range(0, piece.shape[1], BLOCK):
                out.write(piece[:, lo : lo + BLOCK].T)


def forget(parts: tuple[str, ...]) -> None:
    """Drop the recorded entries of ``parts`` (those about to be measured again), keep the rest."""
    if not RESULTS.exists():
        return
    entries = [json.loads(line) for line in RESULTS.read_text().splitlines()]
    kept = [entry for entry in entries if entry["part"] not in parts]
    RESULTS.write_text("".join(json.dumps(entry) + "\n" for entry in kept))


def record(entry: dict) -> None:
    with open(RESULTS, "a") as handle:
        handle.write(json.dumps(entry) + "\n")
    print(json.dumps(entry), flush=True)


def memory_part(work: Path, lengths: tuple[int, ...]) -> None:
    for n_mic in CHANNELS:
        images = scene(n_mic, seed=n_mic)
        for seconds in lengths:
            path = work / f"long_{n_mic}ch_{seconds}s.wav"
            write_long(path, images, seconds, np.random.default_rng(seconds))
            out = work / "out"
            result = run_child([str(path), "-o", str(out), "--force"])
            mixture = result["doc"]["mixtures"][0]
            record({
                "part": "memory", "channels": n_mic, "seconds": seconds,
                "peak_gib": result["peak"] / 2**30, "wall_s": result["seconds"],
                "per_audio_second_ms": 1000 * result["seconds"] / seconds,
                "path": mixture["resolved"].get("path"),
                "fit_frames": mixture["resolved"].get("fit_frames"),
                "stft": f"{mixture['resolved']['n_fft']}/{mixture['resolved']['hop']}",
                "stages_s": mixture["seconds"],
            })  # fmt: skip
            shutil.rmtree(out)
            path.unlink()


def quality_part(work: Path, cases: tuple[CaseSpec, ...]) -> None:
    from ilrma_cli.metrics import score

    for spec in cases:
        case = load(spec)
        path = work / f"{spec.name}.wav"
        sf.write(path, case.mix.T, RATE, subtype="FLOAT")
        refs = case.images[:, 0]
        for seed in (0, *SEED_CHECK.get(spec.name, ())):
            row: dict = {"part": "quality", "case": spec.name, "seed": spec.seed, "run_seed": seed}
            for name, extra in (("whole", []), ("long", ["--max-memory", FORCED_LIMIT])):
                out = work / name
                args = [str(path), "-o", str(out), "--force", "--seed", str(seed), *extra]
                args += ["--spatial", "rank1"]  # the long path's model, on both paths
                result = run_child(args)
                mixture = result["doc"]["mixtures"][0]
                estimates = np.stack([sf.read(p, dtype="float64")[0] for p in mixture["outputs"]])
                start = time.perf_counter()
                sdri = float(np.mean(score(refs, estimates, case.mix[0]).sdri))
                row[name] = {
                    "sdri": sdri, "path": mixture["resolved"].get("path"),
                    "fit_frames": mixture["resolved"].get("fit_frames"),
                    "wall_s": result["seconds"], "peak_gib": result["peak"] / 2**30,
                    "score_s": time.perf_counter() - start,
                }  # fmt: skip
                shutil.rmtree(out)
            row["difference_db"] = row["long"]["sdri"] - row["whole"]["sdri"]
            record(row)
        path.unlink()


def estimate(entry: dict) -> int:
    """The up-front estimate (:mod:`ilrma_cli.memory`) of a memory entry's peak with the
    default settings, as ``ilrma separate`` plans it (:mod:`ilrma_cli.batch.plan`)."""
    from ilrma_cli import memory
    from ilrma_cli.audio import MixtureInput
    from ilrma_cli.batch.plan import whole_file_bytes
    from ilrma_cli.settings import SeparationSettings

    settings = SeparationSettings()
    m, n_samples = entry["channels"], entry["seconds"] * RATE
    if entry["path"] != "long":
        return whole_file_bytes(MixtureInput("long", (), m, RATE, n_samples), settings)
    n_fft, hop = (int(v) for v in entry["stft"].split("/"))
    engine = settings.ilrma
    phases = memory.long_phase_bytes(m, n_fft, hop, engine.n_basis, engine.precision, "compiled",
                                     entry["fit_frames"], settings.restarts)  # fmt: skip
    return int(memory.baseline_bytes() + memory.MARGIN * max(phases.values()))


def memory_table(entries: list[dict]) -> str:
    """Peak RSS and time against length (markdown), from the memory entries."""
    lines = ["| channels | length | path | fit frames | peak RSS (GiB) | estimate (GiB) | wall (s) | ms per audio s |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in sorted((e for e in entries if e["part"] == "memory"),
                    key=lambda e: (e["channels"], e["seconds"])):  # fmt: skip
        hours, minutes = divmod(e["seconds"] // 60, 60)
        length = f"{hours} h" if hours else f"{minutes} min"
        lines.append(f"| {e['channels']} | {length} | {e['path']} | {e['fit_frames'] or '-'} | "
                     f"{e['peak_gib']:.2f} | {estimate(e) / 2**30:.2f} | {e['wall_s']:.0f} | "
                     f"{e['per_audio_second_ms']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def quality_table(entries: list[dict]) -> str:
    """SDRi whole-file against the long path (markdown), from the quality entries."""
    lines = ["| scene (room seed) | ILRMA seed | whole SDRi (dB) | long SDRi (dB) | fit frames | long - whole (dB) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    rows = sorted((e for e in entries if e["part"] == "quality"),
                  key=lambda e: (e["case"], e.get("run_seed", 0)))  # fmt: skip
    for e in rows:
        lines.append(f"| {e['case']} ({e['seed']}) | {e.get('run_seed', 0)} | "
                     f"{e['whole']['sdri']:.2f} | {e['long']['sdri']:.2f} | "
                     f"{e['long']['fit_frames']} | {e['difference_db']:+.2f} |")  # fmt: skip
    differences = [e["difference_db"] for e in rows]
    if differences:
        lines += ["", f"long - whole over these {len(differences)} runs: mean "
                  f"{np.mean(differences):+.2f} dB, median {np.median(differences):+.2f} dB, "
                  f"from {min(differences):+.2f} to {max(differences):+.2f} dB. Per scene, "
                  "mean over its ILRMA seeds: " + ", ".join(
                      f"{case} {np.mean([e['difference_db'] for e in rows if e['case'] == case]):+.2f} dB"
                      for case in sorted({e["case"] for e in rows})) + "."]  # fmt: skip
    return "\n".join(lines)


def section() -> str:
    """The "Long inputs" section of BENCHMARKS.md from ``RESULTS`` ("" when not measured)."""
    if not RESULTS.exists():
        return ""
    entries = [json.loads(line) for line in RESULTS.read_text().splitlines()]
    return (
        "\n## Long inputs (bench/long_memory.py)\n\n"
        "`ilrma separate` with its default settings (README) in a fresh child process per row; peak RSS is the child's `ru_maxrss`. Inputs: a "
        "10-minute static scene at 16 kHz (one ARCTIC voice per mic, shoebox RT60 400 ms, seed = "
        "channels), repeated with each source image shifted by its own random offset, 16-bit "
        "PCM; outputs float WAV. Above the limit (without `--max-memory`: the smaller of 2 GiB "
        "and the memory available) a mixture takes the long path: demixing fitted on the fit "
        "frames (evenly spaced runs of 32), then the file streamed block by block. The estimate "
        "is `ilrma_cli.memory`'s, made before any work.\n\n"
        + memory_table(entries)
        + "\n\nQuality of the long path: 10-minute two-speaker scenes (2 mics, bench/cases.py "
        f"shoebox rooms, seeds 71-74), whole-file (the default for them) against the long path "
        f"forced with `--max-memory {FORCED_LIMIT}`; SDR improvement (BSS Eval v3 at mic 0 against "
        "the source images, mean of the two sources). ILRMA seed 0 for every scene, and seeds 1 "
        "and 2 for the two scenes whose seed-0 difference was largest: whole-file runs of "
        "different seeds differ by as much.\n\n" + quality_table(entries) + "\n"
    )


def write_section() -> None:
    """Put :func:`section` into its marked section of BENCHMARKS.md (or at its end)."""
    replace_section("long_memory", section())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("memory", "quality", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="10 minutes and one scene only")
    parser.add_argument(
        "--table", action="store_true", help="only write the recorded tables into BENCHMARKS.md"
    )
    args = parser.parse_args()
    if args.table:
        write_section()
        print(section())
        return
    parts = ("memory", "quality") if args.part == "all" else (args.part,)
    forget(parts)
    work = Path(tempfile.mkdtemp(prefix="ilrma-long-"))
    try:
        if "memory" in parts:
            memory_part(work, LENGTHS[:1] if args.quick else LENGTHS)
        if "quality" in parts:
            quality_part(work, QUALITY_CASES[:1] if args.quick else QUALITY_CASES)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_section()
    print(section())


if __name__ == "__main__":
    main()
