"""``--dereverb`` against the defaults and the WPE cascade on every case with early images.

    python bench/dereverb_study.py run --cases dev,varied,sim --settings default,dereverb4,wpe10 --seeds 0-2
    python bench/dereverb_study.py report --settings default,dereverb4,wpe10 --seeds 0-2
    python bench/dereverb_study.py kinds --seeds 0      # means by kind of room (README's advice)

Settings are :func:`quality.parse` names or specs (``dereverb=3+dereverb_delay=1``);
cases as :func:`grid.case_specs`. Each run is :func:`quality.run_setting` (PCA to the
number of sources when there are more mics, WPE front end where asked), scored at mic 0
against the images (``sdri``) and, where the case has them, the early images
(``sdri_early``; the means are over the cases that have them). Rows are appended to
``out/dereverb_study.jsonl``; a rerun skips the (case, setting, seed) already there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
            full = float(np.mean([r["sdri"] for r in got]))
            if all("sdri_early" in r for r in got):
                early = float(np.mean([r["sdri_early"] for r in got]))
                means[s].append((early, full))
                cells.append(f"{early:.2f} / {full:.2f}")
            else:  # no early images: the full image only, not in the means
                cells.append(f"- / {full:.2f}")
        print(f"| {case} | " + " | ".join(cells) + " |")
    cells = []
    for s in settings:
        pairs = np.array(means[s]) if means[s] else np.full((1, 2), np.nan)
        cells.append(f"**{pairs[:, 0].mean():.2f} / {pairs[:, 1].mean():.2f}** ({len(means[s])})")
    print("| **mean (cases)** | " + " | ".join(cells) + " |")


def kind_of(case: str) -> str:
    """The kind of room a case name says: speech by RT60 band, or music (any music in it)."""
    speech = not any(word in case for word in ("music", "stem", "mixed"))
    if not speech:
        return "music or music + speech, any RT60"
    rt60 = int(re.search(r"rt(\d+)", case).group(1)) / 1000  # type: ignore[union-attr]
    if rt60 >= 0.5:
        return "speech, RT60 0.5 s and more"
    return "speech, RT60 0.3-0.5 s" if rt60 >= 0.3 else "speech, RT60 below 0.3 s"


def kinds(settings: list[str], seeds: list[int]) -> None:
    """Mean early-image SDRi by kind of room, and in how many rooms the second setting is
    ahead of the first and of the third (cases with every setting and seed only)."""
    rows = [r for r in load_rows() if r["seed"] in seeds and "sdri_early" in r]
    means: dict[str, list[float]] = {}
    for case in sorted({r["case"] for r in rows}):
        got = [[r["sdri_early"] for r in rows if r["case"] == case and r["setting"] == s]
               for s in settings]  # fmt: skip
        if all(len(g) == len(seeds) for g in got):
            means[case] = [float(np.mean(g)) for g in got]
    groups: dict[str, list[str]] = {}
    for case in means:
        groups.setdefault(kind_of(case), []).append(case)
    groups["all"] = list(means)
    for name, cases in sorted(groups.items(), key=lambda item: item[0] == "all"):
        table = np.array([means[c] for c in cases])
        cells = " | ".join(f"{v:.2f}" for v in table.mean(axis=0))
        ahead = [int(np.sum(table[:, 1] > table[:, k])) for k in (0, 2) if k < table.shape[1]]
        print(f"| {name} | {len(cases)} | {cells} | " + " / ".join(map(str, ahead)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "report", "kinds"))
    parser.add_argument("--cases", default="dev,varied,sim")
    parser.add_argument("--settings", default="default,dereverb4,wpe10")
    parser.add_argument("--seeds", default="0-2")
    args = parser.parse_args()
    settings, seeds = args.settings.split(","), seed_list(args.seeds)
    if args.command == "run":
        run(args.cases, settings, seeds)
    elif args.command == "kinds":
        kinds(settings, seeds)
    else:
        report(settings, seeds)


if __name__ == "__main__":
    main()
