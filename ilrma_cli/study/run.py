"""One run of a study: separate the mixture with the run's settings, score it, keep the loss.

A top-level function of plain data, so that a process pool or Dask can run it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ilrma_cli.audio import AudioWriter
from ilrma_cli.metrics import score
from ilrma_cli.pipeline import separate
from ilrma_cli.study.grid import FAILED, OK, Run
from ilrma_cli.study.log import result_columns

# What a run may raise on valid input: a numerical failure (singular matrix, NaN or silent
# estimate refused by the scoring) or a lack of memory. Anything else stops the sweep.
RUN_FAILURES = (ValueError, ArithmeticError, MemoryError)


@dataclass(frozen=True)
class StudyData:
    """What every run needs: the mixture ``(n_channels, n_samples)``, references at the
    reference microphone ``(n_sources, n_samples)`` (and the early images there, if given),
    names, and where to save audio (if at all)."""

    mixture: np.ndarray
    references: np.ndarray
    rate: int
    input_name: str
    data_id: str
    audio_dir: Path | None = None
    early: np.ndarray | None = None


def execute_run(run: Run, data: StudyData) -> tuple[dict[str, str], list[float]]:
    """Separate, score against the references and any early images (the mixture at the
    reference mic as baseline for SDRi), optionally save the sources; returns the CSV row
    and the losses.

    A run that fails (:data:`RUN_FAILURES`) returns a row with status ``failed``, the
    error, empty scores, and no losses; the sweep goes on with the other runs.
    """
    start = time.perf_counter()
    row = {"key": run.key, "input": data.input_name, "data_id": data.data_id, **run.setting,
           "seed": str(run.settings.seed)}  # fmt: skip
    try:
        separation = separate(data.mixture, run.settings, rate=data.rate)
        baseline = data.mixture[run.settings.ref_mic]
        scored = {"": score(data.references, separation.sources, mixture=baseline)}
        if data.early is not None:
            scored["_early"] = score(data.early, separation.sources, mixture=baseline)
    except RUN_FAILURES as err:
        columns = result_columns(len(data.references), data.early is not None)
        scoreless = dict.fromkeys(columns, "")
        message = " ".join(str(err).split()) or type(err).__name__
        row.update(scoreless, seconds=f"{time.perf_counter() - start:.3f}", status=FAILED,
                   error=message)  # fmt: skip
        return row, []
    if data.audio_dir is not None:
        with AudioWriter() as writer:
            for index, source in enumerate(separation.sources, start=1):
                writer.write(data.audio_dir / run.key / f"source{index}.wav", source, data.rate)
            writer.commit()
    loss = [float(v) for v in separation.result.loss]
    for kind, scores in scored.items():
        for j in range(len(data.references)):
            for metric in ("sdr", "sir", "sar"):
                row[f"{metric}{kind}_{j + 1}"] = str(float(getattr(scores, metric)[j]))
        assert scores.sdri is not None  # scored with the mixture
        row[f"sdri{kind}"] = str(float(np.mean(scores.sdri)))
    row["final_loss"] = str(loss[-1]) if loss else "nan"
    row["iterations"] = str(separation.result.n_iter)
    row["seconds"] = f"{time.perf_counter() - start:.3f}"
    row.update(status=OK, error="")
    return row, loss
