"""``--dereverb`` against the defaults and the WPE cascade on every case with early images.

    python bench/dereverb_study.py run --cases dev,varied,sim --settings default,dereverb4,wpe10 --seeds 0-2
    python bench/dereverb_study.py report --settings default,dereverb4,wpe10 --seeds 0-2

Settings are :func:`quality.parse` names or specs (``dereverb=3+dereverb_delay=1``);
cases as :func:`grid.case_specs`. Each run is :func:`quality.run_setting` (PCA to the
number of sources when there are more mics, WPE front end where asked), scored at mic 0
against the images (``sdri``) and the early images (``sdri_early``). Rows are appended to
``out/dereverb_study.jsonl``; a rerun skips the (case, setting, seed) already there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as case_lib  # noqa: E402
from grid import CACHE, case_specs, seed_list  # noqa: E402
from quality import parse, run_setting  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "out" / "dereverb_study.jsonl"


def load_rows() -> list[dict]:
    if not OUT.exists():
        return []
    return [json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]


def run(cases: str, settings: list[str], seeds: list[int]) -> None:
    done = {(r["case"], r["setting"], r["seed"]) for r in load_rows()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    for spec in case_specs(cases):
        case = None
        for name in settings:
            todo = [s for s in seeds if (spec.name, name, s) not in done]
            if not todo:
                continue
            case = case or case_lib.load(spec, CACHE)
            if case.early is None:
                break
            setting = replace(parse(name), seeds=tuple(todo))
            for row in run_setting(setting, [case]):
                with OUT.open("a") as out:
                    out.write(json.dumps({**row, "setting": name}) + "\n")


def report(settings: list[str], seeds: list[int]) -> None:
    """Per case: mean early / full SDRi of each setting over ``seeds``, then the means."""
    rows = [r for r in load_rows() if r["seed"] in seeds and r["setting"] in settings]
    names = list(dict.fromkeys(r["case"] for r in rows))
    print("| case | " + " | ".join(f"{s} early / full" for s in settings) + " |")
    print("|---|" + "---|" * len(settings))
    means: dict[str, list[tuple[float, float]]] = {s: [] for s in settings}
    for case in names:
        cells = []
        for s in settings:
            got = [r for r in rows if r["case"] == case and r["setting"] == s]
            if len(got) < len(seeds):
                cells.append("-")
                continue
            early = float(np.mean([r["sdri_early"] for r in got]))
            full = float(np.mean([r["sdri"] for r in got]))
            means[s].append((early, full))
            cells.append(f"{early:.2f} / {full:.2f}")
        print(f"| {case} | " + " | ".join(cells) + " |")
    cells = []
    for s in settings:
        pairs = np.array(means[s]) if means[s] else np.full((1, 2), np.nan)
        cells.append(f"**{pairs[:, 0].mean():.2f} / {pairs[:, 1].mean():.2f}** ({len(means[s])})")
    print("| **mean (cases)** | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--cases", default="dev,varied,sim")
    parser.add_argument("--settings", default="default,dereverb4,wpe10")
    parser.add_argument("--seeds", default="0-2")
    args = parser.parse_args()
    settings, seeds = args.settings.split(","), seed_list(args.seeds)
    if args.command == "run":
        run(args.cases, settings, seeds)
    else:
        report(settings, seeds)


if __name__ == "__main__":
    main()
