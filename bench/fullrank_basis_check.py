"""Number of NMF bases and weight floor of the refinement at long frames (one seed).

    nice -n 10 python bench/fullrank_basis_check.py arctic_2src_rt250,arctic_2src_rt500

ILRMA (``ilrma separate``'s defaults but STFT 8192/2048, seed 0) then 100 full-rank
iterations with: ILRMA's 4 bases (``k4``) or the NMF refitted with 16 (``k16``), weight
floor 1e-2 or 5e-2; and our iterations from a random start with 16 bases (as
pyroomacoustics starts). SDRi at mic 0 as in :mod:`fullrank_quality`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fullrank_quality as quality  # noqa: E402

from ilrma_cli.engine.fullrank_compiled import iterate_compiled  # noqa: E402
from ilrma_cli.engine.fullrank_refine import (  # noqa: E402
    fullrank_images,
    random_model,
    refine_fullrank,
)
from ilrma_cli.engine.observation import unit_power_features  # noqa: E402
from ilrma_cli.pipeline import separate  # noqa: E402
from ilrma_cli.settings import SeparationSettings  # noqa: E402
from ilrma_cli.stft import istft, stft  # noqa: E402

VARIANTS: dict[str, dict[str, float | None]] = {
    "k4 floor 0.01": {"n_basis": None, "weight_floor": 0.01},
    "k16 floor 0.01": {"n_basis": 16, "weight_floor": 0.01},
    "k16 floor 0.05": {"n_basis": 16, "weight_floor": 0.05},
    "k4 floor 0.05": {"n_basis": None, "weight_floor": 0.05},
}


def main(cases: list[str]) -> None:
    config = quality.FRAMES["@8192"]
    print("| case | ilrma | " + " | ".join(VARIANTS) + " | random k16 |")
    print("|---" * (len(VARIANTS) + 3) + "|")
    with threadpool_limits(limits=1):
        for case in cases:
            mix, refs = quality.load(case)
            settings = SeparationSettings(stft=config, seed=0, n_sources=len(refs), restarts=1)
            separation = separate(mix, settings, rate=quality.RATE)
            result = separation.result
            cells = [quality.sdri(refs, separation.sources, mix)]
            obs = stft(mix, config)
            for options in VARIANTS.values():
                model = refine_fullrank(
                    obs,
                    result.demix,
                    result.basis,
                    result.activation,
                    100,
                    record_loss=False,
                    **options,  # type: ignore[arg-type]
                )
                estimates = istft(fullrank_images(obs, model, 0), mix.shape[1], config)
                cells.append(quality.sdri(refs, estimates, mix))
            n_mics, n_freq, n_frames = obs.shape
            model = random_model(n_freq, n_frames, n_mics, len(refs), 16, np.random.default_rng(0))
            iterate_compiled(unit_power_features(obs)[0], model, 100, record_loss=False)
            estimates = istft(fullrank_images(obs, model, 0), mix.shape[1], config)
            cells.append(quality.sdri(refs, estimates, mix))
            print(f"| {case} | " + " | ".join(f"{v:.2f}" for v in cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1].split(",") if len(sys.argv) > 1 else quality.CASES)
