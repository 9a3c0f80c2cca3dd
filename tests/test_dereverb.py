"""``--dereverb``: the stage before separation (ilrma_cli.dereverb), its composition with the
separation, refusals, and the memory estimate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import SAMPLE, invoke, read_csv
from threadpoolctl import threadpool_limits

from ilrma_cli.audio import plan_mixtures
from ilrma_cli.batch import plan
from ilrma_cli.batch.job import run_job
from ilrma_cli.dereverb import dereverberate
from ilrma_cli.engine import ILRMAConfig
from ilrma_cli.longform import progress_steps
from ilrma_cli.memory import dereverb_bytes, engine_bytes, phase_bytes
from ilrma_cli.pipeline import SeparationSettings, separate
from ilrma_cli.settings import auto_stft
from ilrma_cli.stft import StftConfig

RATE = 8000  # the stage's frame is then 2048/512
EARLY = int(0.05 * RATE)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def reverberant_room(seconds: float = 8.0, rt60: float = 0.6, seed: int = 0):
    """Two bursty noise sources through random 2-mic responses with an exponential tail.

    Returns ``(mixture (2, N), early mixture (2, N))``: the early mixture keeps each
    response's first 50 ms (direct path included), the rest is late reverberation.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    envelope = rng.random((2, n // 800 + 1)) ** 3
    dry = rng.standard_normal((2, n)) * np.repeat(envelope, 800, axis=1)[:, :n]
    length = int(rt60 * RATE)
    decay = np.exp(-6.9 * np.arange(length) / length)  # -60 dB at rt60
    responses = rng.standard_normal((2, 2, length)) * decay
    responses[:, :, :20] *= 4.0  # a stronger direct part
    mix, early = np.zeros((2, n)), np.zeros((2, n))
    for mic in range(2):
        for src in range(2):
            mix[mic] += np.convolve(dry[src], responses[mic, src])[:n]
            early[mic] += np.convolve(dry[src], responses[mic, src, :EARLY])[:n]
    return mix, early


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """``10 log10 |ref|^2 / |ref - est|^2`` after the least-squares gain of ``estimate``."""
    gain = np.vdot(estimate, reference).real / np.vdot(estimate, estimate).real
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - gain * estimate) ** 2)))


STAGE = SeparationSettings(ilrma=ILRMAConfig(n_iter=30, iva_iter=10), dereverb=4)


def test_the_stage_removes_late_reverberation():
    """Against the early mixture (direct path + 50 ms), the stage's output is well closer
    than the reverberant mixture, at every mic."""
    mix, early = reverberant_room()
    out = dereverberate(mix, STAGE, RATE)
    assert out.shape == mix.shape and np.isfinite(out).all()
    for mic in range(2):
        before, after = snr_db(early[mic], mix[mic]), snr_db(early[mic], out[mic])
        assert after > before + 2.0, (mic, before, after)  # seeds 0-3: +2.6 to +3.0 dB


def test_separate_with_dereverb_separates_the_dereverberated_mixture():
    """The composition is exact: the same bits as separating the stage's output, and the
    same again on a second run (one seed, one result)."""
    mix, _ = reverberant_room(seconds=4.0, seed=1)
    settings = replace(STAGE, ilrma=replace(STAGE.ilrma, fullrank_iter=5))
    separation = separate(mix, settings, rate=RATE)
    plain = separate(dereverberate(mix, settings, RATE), replace(settings, dereverb=0), rate=RATE)
    np.testing.assert_array_equal(separation.sources, plain.sources)
    np.testing.assert_array_equal(separate(mix, settings, rate=RATE).sources, separation.sources)
    assert "dereverb" in separation.seconds
    assert separation.settings is not None and separation.settings.to_dict()["dereverb"] == 4


def test_the_stage_uses_its_own_frame_and_delay():
    mix, _ = reverberant_room(seconds=4.0, seed=2)
    base = dereverberate(mix, STAGE, RATE)
    later = dereverberate(mix, replace(STAGE, dereverb_delay=3), RATE)
    assert not np.allclose(base, later)
    assert STAGE.dereverb_stft(RATE) == auto_stft(RATE)  # the 0.2-s frame
    assert STAGE.dereverb_stft(RATE).n_fft == 2048
    shorter = replace(STAGE, dereverb_n_fft=1024)
    assert shorter.dereverb_stft(RATE) == StftConfig(1024, 256, "hann")
    assert not np.allclose(dereverberate(mix, shorter, RATE), base)


def test_bad_combinations_are_refused():
    with pytest.raises(ValueError, match="--dereverb and --taps"):
        SeparationSettings(ilrma=ILRMAConfig(taps=2), dereverb=4)
    with pytest.raises(ValueError, match="dereverb"):
        SeparationSettings(dereverb=-1)
    mix, _ = reverberant_room(seconds=0.2)
    with pytest.raises(ValueError, match="shorter than one frame of the dereverberation"):
        dereverberate(mix, STAGE, RATE)
    with pytest.raises(ValueError, match="sample rate"):
        separate(np.ones((2, 4000)), replace(STAGE, stft=auto_stft(RATE)))


def test_the_memory_estimate_counts_the_stage():
    """A phase of its own (the taps engine at the stage's frame and the waveform), and the
    STFT then holds two waveforms."""
    n = 600 * 16000
    plain = phase_bytes(2, n, 11000, 2750, 4, "double")
    staged = phase_bytes(2, n, 11000, 2750, 4, "double", dereverb=(4, 4096, 1024))
    assert "dereverb" not in plain
    assert staged["stft"] == plain["stft"] + 2 * n * 8
    frames = n // 1024 + 4
    stage = staged["dereverb"]
    assert stage == dereverb_bytes(2, n, 4, "double", 4, 4096, 1024)
    low = 2 * n * 8 + engine_bytes(2, 2049, frames - 8, 4, "double", taps=4)
    assert low <= stage <= 1.05 * low
    assert max(staged.values()) >= max(plain.values())


def test_the_cli_refuses_dereverb_with_taps_in_one_line(tmp_path):
    out = tmp_path / "out"
    result = invoke("separate", SAMPLE / "mix.wav", "-o", out, "--dereverb", "4", "--taps", "2")
    assert result.exit_code == 2
    assert "Error: --dereverb and --taps both dereverberate: choose one" in result.output
    assert not out.exists()


def test_sweep_grids_over_the_stage(tmp_path):
    refs = [SAMPLE / "src1.wav", SAMPLE / "src2.wav"]
    out = tmp_path / "study"
    args = ["sweep", SAMPLE / "mix.wav", "--refs", *refs, "-o", out, "--dereverb", "0,2"]
    result = invoke(*args, "--dereverb-delay", "1,2", "--n-iter", "3", "--fullrank-iter", "2")
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "runs.csv")
    assert sorted((r["dereverb"], r["dereverb_delay"]) for r in rows) == [
        ("0", "1"), ("0", "2"), ("2", "1"), ("2", "2")
    ]  # fmt: skip
    scores = {(r["dereverb"], r["dereverb_delay"]): r["sdri"] for r in rows}
    assert scores[("0", "1")] == scores[("0", "2")]  # the delay of no stage changes nothing
    assert scores[("2", "1")] != scores[("2", "2")]


def test_progress_counts_the_stage_then_the_separation(tmp_path):
    mixture = plan_mixtures([SAMPLE / "mix.wav"])[0]
    job = plan.Job(mixture, (tmp_path / "o" / "s1.wav", tmp_path / "o" / "s2.wav"), None)
    settings = SeparationSettings.from_values(
        {"n_iter": 4, "fullrank_iter": 3, "dereverb": 2, "restarts": 1}
    )
    calls = []
    run_job(job, settings, plan.OutputOptions(tmp_path / "o"), lambda i, loss: calls.append(i))
    assert len(calls) == progress_steps(job, settings, "float") == 4 + (4 + 3)
    assert calls == [1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7]


def test_the_stage_estimate_is_above_a_calibration_run_by_under_ten_percent():
    # VmHWM of `ilrma separate --dereverb 4 --n-iter 2 --restarts 1 --max-memory 4G` on 10
    # minutes of 2-channel 16-kHz float audio: 1885 MiB with --spatial rank1 and with the
    # full-rank default alike (the stage is the peak). The estimate counts the waveform as
    # float64.
    from ilrma_cli.memory import estimate_peak_bytes

    args = (2, 600 * 16000, 11000, 2750, 4, "double")
    for spatial in ("rank1", "fullrank"):
        estimate = estimate_peak_bytes(
            *args, spatial=spatial, images=False, dereverb=(4, 4096, 1024)
        )
        assert 1885 <= estimate / 2**20 <= 1.1 * 1885
