"""Threads over frequency chunks: the same bits for any thread count, and how cores are shared."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import SAMPLE

from ilrma_cli.cli import cli
from ilrma_cli.cores import cgroup_cpu_quota, threads_per_process, usable_cores
from ilrma_cli.engine import ILRMAConfig, run
from ilrma_cli.engine.threads import N_CHUNKS, chunk_bounds, get_threads, set_threads

# Enough frequencies (2049) for every chunk; few iterations.
FAST = ["--n-iter", "6", "--n-fft", "4096", "--hop", "1024"]


@pytest.fixture
def restore_threads():
    before = get_threads()
    yield
    set_threads(before)


def _observation(n_ch: int, n_freq: int = 40, n_frames: int = 30) -> np.ndarray:
    rng = np.random.default_rng(7)
    shape = (n_ch, n_freq, n_frames)
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def test_chunks_cover_the_frequencies_whatever_their_number():
    for n_freq in (1, 2, 15, 16, 17, 2049):
        bounds = chunk_bounds(n_freq)
        assert len(bounds) == min(N_CHUNKS, n_freq)
        assert bounds[0][0] == 0 and bounds[-1][1] == n_freq
        assert all(hi == lo for (_, hi), (lo, _) in zip(bounds[:-1], bounds[1:], strict=True))
        assert all(hi > lo for lo, hi in bounds)


@pytest.mark.parametrize("n_ch", [2, 3])
@pytest.mark.parametrize("update", ["ip", "iss", "ip2"])
def test_every_thread_count_gives_the_same_bits(n_ch, update, restore_threads):
    obs = _observation(n_ch)
    config = ILRMAConfig(n_basis=3, n_iter=12, update=update, iva_iter=5, record_loss=True)
    results = []
    for threads in (1, 2, 3, 16):
        set_threads(threads)
        results.append(run(obs, config, seed=3))
    assert results[0].backend == "compiled" and len(results[0].loss) == 13
    for other in results[1:]:
        assert np.array_equal(other.demix, results[0].demix)
        assert np.array_equal(other.separated, results[0].separated)
        assert np.array_equal(other.loss, results[0].loss)
        assert np.array_equal(other.activation, results[0].activation)


@pytest.mark.parametrize("update", ["ip", "iss"])
def test_the_taps_sweeps_give_the_same_bits_for_every_thread_count(update, restore_threads):
    obs = _observation(2, n_frames=40)
    config = ILRMAConfig(n_basis=2, n_iter=8, update=update, iva_iter=4, taps=2, delay=1)
    results = []
    for threads in (1, 3):
        set_threads(threads)
        results.append(run(obs, config, seed=1))
    assert results[0].backend == "compiled" and results[0].filters is not None
    assert np.array_equal(results[1].demix, results[0].demix)
    assert np.array_equal(results[1].filters, results[0].filters)
    assert np.array_equal(results[1].separated, results[0].separated)


@pytest.mark.parametrize("n_ch", [2, 3])
def test_the_fullrank_passes_give_the_same_bits_for_every_thread_count(n_ch, restore_threads):
    obs = _observation(n_ch, n_freq=70, n_frames=36)  # blocks of 32 cut by the chunk edges
    config = ILRMAConfig(n_basis=2, n_iter=6, spatial="fullrank", fullrank_iter=5,
                         fullrank_basis=3, record_loss=True)  # fmt: skip
    results = []
    for threads in (1, 2, 16):
        set_threads(threads)
        results.append(run(obs, config, seed=2))
    model = results[0].fullrank
    assert model is not None and len(results[0].loss) == 12
    for other in results[1:]:
        assert other.fullrank is not None
        assert np.array_equal(other.fullrank.diagonaliser, model.diagonaliser)
        assert np.array_equal(other.fullrank.spatial_weights, model.spatial_weights)
        assert np.array_equal(other.fullrank.activation, model.activation)
        assert np.array_equal(other.loss, results[0].loss)
        assert np.array_equal(other.separated, results[0].separated)


def test_a_thread_count_below_one_is_refused(restore_threads):
    with pytest.raises(ValueError, match="at least 1"):
        set_threads(0)


def test_processes_and_threads_share_the_cores():
    cores = usable_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    assert threads_per_process(None, 1, None) == cores
    assert threads_per_process(None, cores, None) == 1
    assert threads_per_process(None, 4 * cores, None) == 1
    assert threads_per_process(None, 1, "local:2") == 1  # Dask: one thread unless told
    assert threads_per_process(5, 2, "local:2") == 5


def test_the_cgroup_quota_is_read_in_both_versions(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 2.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5


def test_threads_and_jobs_give_the_same_files(tmp_path: Path, restore_threads):
    data, rate = sf.read(SAMPLE / "mix.wav")
    inputs = []
    for name, part in (("a", data[: 3 * rate]), ("b", data[3 * rate : 6 * rate])):
        inputs.append(tmp_path / f"{name}.wav")
        sf.write(inputs[-1], part, rate, subtype="FLOAT")
    runs = {
        "one thread": ["--threads", "1"],
        "three threads": ["--threads", "3"],
        "two processes of two threads": ["-j", "2", "--threads", "2"],
    }
    for name, extra in runs.items():
        result = CliRunner().invoke(
            cli, ["separate", *map(str, inputs), "-o", str(tmp_path / name), "-q", *FAST, *extra]
        )
        assert result.exit_code == 0, result.output
    expected = sorted((tmp_path / "one thread").rglob("*.wav"))
    assert len(expected) == 4
    for name in runs:
        for path in expected:
            other = tmp_path / name / path.relative_to(tmp_path / "one thread")
            assert other.read_bytes() == path.read_bytes(), (name, path.name)


def test_a_single_mixture_runs_its_restarts_on_the_cores_where_the_memory_allows(
    tmp_path: Path, monkeypatch
):
    from dataclasses import replace

    from ilrma_cli.audio import plan_mixtures
    from ilrma_cli.batch import plan
    from ilrma_cli.settings import SeparationSettings

    monkeypatch.setattr(plan, "usable_cores", lambda: 2)
    mixture = plan_mixtures([SAMPLE / "mix.wav"])[0]
    job = plan.Job(mixture, (tmp_path / "s1.wav", tmp_path / "s2.wav"), None)
    four = SeparationSettings.from_values({"restarts": 4})
    need = plan.whole_file_bytes(mixture, four)
    assert plan.restart_workers([job], four, 2 * need) == 2
    assert plan.restart_workers([job], four, 2 * need - 1) == 1  # two copies would not fit
    assert plan.restart_workers([job], replace(four, restarts=1), None) == 1
    assert plan.restart_workers([job, job], four, None) == 1  # mixtures share the cores
    assert plan.restart_workers([replace(job, fit_frames=64)], four, None) == 1  # streamed
    monkeypatch.setattr(plan, "usable_cores", lambda: 8)
    assert plan.restart_workers([job], four, 8 * need) == 4  # no more than the restarts
    monkeypatch.setattr(plan, "can_start_processes", lambda: False)  # no semaphores here
    assert plan.restart_workers([job], four, 8 * need) == 1
    monkeypatch.setattr(plan, "usable_cores", lambda: 1)
    assert plan.restart_workers([job], four, None) == 1


def test_the_restarts_of_one_mixture_run_in_processes_by_default(
    monkeypatch, tmp_path: Path, restore_threads
):
    from ilrma_cli.commands import separate as separate_command

    used: list[int] = []
    run_one = separate_command._run_one

    def spy(job, settings, options, show_progress, workers=1):
        used.append(workers)
        return run_one(job, settings, options, show_progress, workers)

    monkeypatch.setattr(separate_command, "restart_workers", lambda jobs, settings, limit: 2)
    monkeypatch.setattr(separate_command, "_run_one", spy)
    args = ["separate", str(SAMPLE / "mix.wav"), "-q", *FAST, "--fullrank-iter", "3",
            "--restarts", "2"]  # fmt: skip
    runs = {"auto": [], "one": ["-j", "1"]}
    for name, extra in runs.items():
        result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
    assert used == [2, 1]
    auto, one = (sorted((tmp_path / name).rglob("*.wav")) for name in runs)
    assert len(auto) == 2
    assert [p.read_bytes() for p in auto] == [p.read_bytes() for p in one]
