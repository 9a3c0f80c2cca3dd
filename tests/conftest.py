"""Shared fixtures: the development cases of ../shared/data and the shipped sample."""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path
from typing import Any

import leftovers
import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
DEV = REPO.parent / "shared" / "data" / "dev"
DEV_CASES = ("arctic_2src_rt250", "arctic_2src_rt500")


def invoke(*args: object) -> Any:
    """``ilrma ARGS...`` through click's test runner, every argument as a string."""
    from click.testing import CliRunner

    from ilrma_cli.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="ilrma")


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def read(path: Path) -> tuple[np.ndarray, int]:
    """``(n_channels, n_samples)`` float64 and the sample rate."""
    data, rate = sf.read(path, dtype="float64", always_2d=True)
    return data.T, rate


@pytest.fixture(scope="session")
def dev_case():
    """Load a development case: (mixture, references at mic 0, sample rate)."""

    def load(name: str) -> tuple[np.ndarray, np.ndarray, int]:
        folder = DEV / name
        if not folder.is_dir():
            pytest.fail(f"development data missing: {folder} (clone beside ../shared)")
        mix, rate = read(folder / "mix.wav")
        refs = np.stack([read(folder / f"src{i}.wav")[0][0] for i in (1, 2)])
        return mix, refs, rate

    return load


def sdr_improvement(refs: np.ndarray, estimates: np.ndarray, mix_ref: np.ndarray) -> float:
    """Mean SDR (BSS Eval v3, best permutation) minus that of the mixture channel as every estimate.

    Uses the package's fast backend, which tests/test_evaluate.py holds to mir_eval's
    ``bss_eval_sources`` within 1e-6 dB.
    """
    from ilrma_cli.metrics import score

    return float(np.mean(score(refs, estimates, mix_ref).sdri))


@pytest.fixture(autouse=True)
def no_leftover_processes(monkeypatch, request):
    """Fail a test that leaves a process behind (pool worker, tracker, Dask), and end it.

    Every process the test starts inherits a unique tag; afterwards they get
    ``leftovers.BOUND`` seconds to end.
    """
    if not leftovers.PROC.is_dir():
        yield
        return
    tag = f"{os.getpid()}-{uuid.uuid4().hex}"
    monkeypatch.setenv(leftovers.TAG, tag)
    yield
    left = leftovers.wait_until_gone(tag, seconds=leftovers.BOUND)
    leftovers.kill_all(left)
    if left:
        pytest.fail(f"{request.node.nodeid} left processes behind: {left}")
