"""The long path (ilrma_cli.longform): demixing fitted on sampled frames, then streamed.

Short signals with small spans and a forced small memory cap stand in for hours of audio:
block edges must be those of the whole-file inverse, the sources keep one order from
block to block, and nothing is left behind when a long run fails halfway.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DEV, invoke

from ilrma_cli import longform, memory
from ilrma_cli.audio import MixtureInput, MixtureReader, plan_mixtures
from ilrma_cli.batch import plan
from ilrma_cli.engine import project_back
from ilrma_cli.engine.observation import demix_apply
from ilrma_cli.errors import InputError
from ilrma_cli.settings import SeparationSettings
from ilrma_cli.stft import StftConfig, frame_samples, istft, n_frames, stft, stft_frames

CASE = DEV / "arctic_2src_rt250"
QUICK = {"n_fft": 1024, "hop": 256, "n_iter": 10, "iva_iter": 5, "restarts": 1}  # one run
SPAN = 3000  # samples per streamed span: many block edges in a few seconds


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def long_mix(tmp_path: Path) -> Path:
    """The dev mixture three times over (about 34 s, two channels), float WAV."""
    data, rate = sf.read(CASE / "mix.wav", dtype="float64")
    path = tmp_path / "long.wav"
    sf.write(path, np.tile(data, (3, 1)), rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("n_fft, hop", [(512, 128), (1000, 300), (64, 48)])
def test_frames_of_a_chunk_are_the_whole_file_columns(n_fft, hop):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5003))
    config = StftConfig(n_fft, hop, "hann")
    whole = stft(x, config)
    total = n_frames(x.shape[1], config)
    for first, end in [(0, 1), (0, 7), (3, min(40, total)), (total - 5, total), (0, total)]:
        start, stop = frame_samples(first, end, x.shape[1], config)
        got = stft_frames(x[:, start:stop], first, end, x.shape[1], config)
        np.testing.assert_array_equal(got, whole[:, :, first:end])


def test_fit_runs_are_evenly_spread_contiguous_and_disjoint():
    runs = longform.fit_runs(10_000, 300, run=32)
    assert sum(end - first for first, end in runs) == 300
    assert runs[0][0] == 0 and runs[-1][1] > 9_000
    assert all(
        a_end <= b_first for (_, a_end), (b_first, _) in zip(runs[:-1], runs[1:], strict=True)
    )
    assert longform.fit_runs(50, 300) == [(0, 32), (32, 50)]  # every frame, a run at a time


def _fit(path: Path, fit_frames: int, **values) -> tuple[MixtureReader, longform.LongFit]:
    settings = SeparationSettings.from_values({**QUICK, **values})
    reader = MixtureReader(plan_mixtures([path])[0])
    return reader, longform.fit_long(reader, settings, fit_frames)


@pytest.mark.parametrize("images", [False, True])
def test_streamed_sources_are_the_fitted_filters_on_the_whole_file_stft(
    long_mix, monkeypatch, images
):
    monkeypatch.setattr(longform, "SPAN_SAMPLES", SPAN)
    reader, fit = _fit(long_mix, 256)
    assert fit.fit_frames == 256
    with reader:
        pieces = list(longform.stream_sources(reader, fit, None if images else 0))
        x = reader.read(0, reader.n_samples)
    assert len(pieces) > 100  # many block edges
    streamed = np.concatenate([np.stack(blocks) for _, blocks in pieces], axis=-1)
    config = fit.settings.stft
    separated = demix_apply(fit.result.demix, stft(x, config), np.complex128)
    projected = project_back(separated, fit.result.demix, None if images else 0)
    whole = istft(projected, x.shape[1], config)
    whole = whole if images else whole[:, None]
    assert streamed.shape == whole.shape
    assert np.max(np.abs(streamed - whole)) <= 1e-9 * np.max(np.abs(whole))


def test_streamed_restarts_are_the_mean_of_every_fitted_filter(long_mix, monkeypatch):
    monkeypatch.setattr(longform, "SPAN_SAMPLES", SPAN)
    reader, fit = _fit(long_mix, 256, restarts=3)
    assert len(fit.filters) == 3 and len(fit.final_losses) == 3
    assert any(np.array_equal(demix, fit.result.demix) for demix, _ in fit.filters)
    with reader:
        pieces = list(longform.stream_sources(reader, fit, 0))
        x = reader.read(0, reader.n_samples)
    streamed = np.concatenate([np.stack(blocks) for _, blocks in pieces], axis=-1)[:, 0]
    config = fit.settings.stft
    obs = stft(x, config)
    each = [
        istft(project_back(demix_apply(demix, obs, np.complex128), demix, 0), x.shape[1], config)
        for demix, _ in fit.filters
    ]
    whole = np.mean(each, axis=0)
    assert np.max(np.abs(streamed - whole)) <= 1e-9 * np.max(np.abs(whole))
    # the filters' sources are paired: each run's source k resembles the others' source k
    for other in each[1:]:
        corr = np.abs(np.corrcoef(np.concatenate([each[0], other]))[:2, 2:])
        assert np.all(np.diag(corr) > np.diag(corr[::-1]))


def test_sources_keep_one_order_from_block_to_block(long_mix, monkeypatch):
    """Each third of the output (one repetition of the dev mixture) matches the references
    in the same order."""
    monkeypatch.setattr(longform, "SPAN_SAMPLES", SPAN)
    reader, fit = _fit(long_mix, 512)
    with reader:
        streamed = np.concatenate(
            [np.stack(b)[:, 0] for _, b in longform.stream_sources(reader, fit, 0)], axis=-1
        )
    refs = np.stack([sf.read(CASE / f"src{i}.wav", dtype="float64")[0][:, 0] for i in (1, 2)])
    n = refs.shape[1]
    orders = []
    for k in range(3):
        part = streamed[:, k * n : (k + 1) * n]
        corr = np.abs(np.corrcoef(np.vstack([part, refs]))[:2, 2:])
        orders.append(tuple(np.argmax(corr, axis=1)))
        assert sorted(orders[-1]) == [0, 1]  # a separation, not a copy of one source
    assert len(set(orders)) == 1


def test_the_rule_whole_file_below_the_limit_else_fit_frames_within_it(long_mix, monkeypatch):
    mixture = plan_mixtures([long_mix])[0]
    # rank 1 (as the long path runs): the full-rank default needs more for the whole file
    settings = SeparationSettings.from_values(
        {"n_fft": 1024, "hop": 256, "spatial": "rank1", "restarts": 1}
    )
    need = plan.whole_file_bytes(mixture, settings)
    assert plan.long_fit(mixture, settings, need) is None
    fit = plan.long_fit(mixture, settings, need - 2**20)
    total = n_frames(mixture.n_samples, StftConfig(1024, 256))
    assert memory.MIN_FIT_FRAMES <= fit < total
    more = plan.long_fit(mixture, settings, need - 2**19)
    assert more >= fit  # more memory, more frames
    phases = memory.long_phase_bytes(2, 1024, 256, 4, "double", "compiled", fit)
    peak = memory.baseline_bytes() + memory.MARGIN * max(phases.values())
    assert peak <= memory.LONG_SAFETY * (need - 2**20)
    # without --max-memory: the smaller of 2 GiB and what is available
    monkeypatch.setattr(plan, "available_bytes", lambda: need - 2**20)
    assert plan.long_fit(mixture, settings, None) == fit
    monkeypatch.setattr(plan, "available_bytes", lambda: 64 * 2**30)
    assert plan.switch_limit(None) == memory.LONG_PATH_CAP
    # restarts form the mean of their images: the whole file needs more
    five = replace(settings, restarts=5)
    assert plan.whole_file_bytes(mixture, five) > need
    assert plan.long_fit(mixture, five, need) is not None
    # not even the long path fits: refused before any work
    problem = plan.memory_problem(mixture, settings, smallest_long_limit(mixture, settings) // 2)
    assert problem is not None and str(problem).startswith(f"{long_mix}: needs about ")


def smallest_long_limit(mixture: MixtureInput, settings: SeparationSettings) -> int:
    """The smallest memory limit (whole MiB) at which the mixture runs: on the long path,
    unless the whole file fits first (then that limit)."""
    fits = (plan.long_fit(mixture, settings, mib * 2**20) for mib in range(1, 4096))
    return (next(i for i, fit in enumerate(fits, 1) if fit is None or fit > 0)) * 2**20


def test_cli_streams_a_long_input_and_reports_the_path(long_mix, tmp_path, monkeypatch):
    monkeypatch.setattr(longform, "SPAN_SAMPLES", SPAN)
    out = tmp_path / "out"
    args = ["separate", long_mix, "-o", out, "--n-fft", "1024", "--hop", "256", "--n-iter", "5"]
    settings = SeparationSettings.from_values({"n_fft": 1024, "hop": 256, "n_iter": 5})
    mixture = plan_mixtures([long_mix])[0]
    limit = smallest_long_limit(mixture, settings) + 2**20  # a few frames more than the least
    total = n_frames(mixture.n_samples, StftConfig(1024, 256))
    result = invoke(*args, "--max-memory", str(limit), "--json", "--spatial", "fullrank")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["mixtures"][0]
    assert record["resolved"]["path"] == "long"
    assert memory.MIN_FIT_FRAMES <= record["resolved"]["fit_frames"] < total
    assert "separated with rank-1 ILRMA" in record["warnings"][0]
    for name in record["outputs"]:
        data, _ = sf.read(name)
        assert len(data) == sf.info(long_mix).frames
        assert np.all(np.isfinite(data)) and np.std(data) > 1e-4
    whole = invoke("separate", long_mix, "-o", tmp_path / "w", "--n-iter", "1", "--json")
    assert json.loads(whole.stdout)["mixtures"][0]["resolved"]["path"] == "whole"


@pytest.mark.parametrize(
    "suffix, message",
    [(".wav", "truncated: header promises "), (".flac", "audio data is corrupt or truncated")],
)
def test_a_truncated_long_file_is_refused_in_one_line_and_nothing_is_written(
    long_mix, tmp_path, suffix, message
):
    """A WAV is caught from its header before any work; a FLAC when its data runs out."""
    path = long_mix.with_suffix(suffix)
    data, rate = sf.read(long_mix)
    sf.write(path, data, rate, subtype="PCM_16")
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    settings = SeparationSettings.from_values({"n_fft": 1024})
    limit = smallest_long_limit(plan_mixtures([path])[0], settings) + 2**20
    assert plan.long_fit(plan_mixtures([path])[0], settings, limit)
    out = tmp_path / "out"
    result = invoke("separate", path, "-o", out, "--max-memory", str(limit), "--n-fft", "1024",
                    "--n-iter", "2")  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path}: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert files_in(out) == []


@pytest.mark.parametrize("failure", [InputError(Path("x.wav"), "corrupt"), KeyboardInterrupt])
def test_a_failure_mid_stream_leaves_nothing(long_mix, tmp_path, monkeypatch, failure):
    """The fit reads its runs, then the stream fails after some blocks have been written."""
    monkeypatch.setattr(longform, "SPAN_SAMPLES", SPAN)
    calls = {"n": 0}
    read = MixtureReader.read

    def failing(self, start, stop):
        calls["n"] += 1
        if calls["n"] == 60:  # the fit's 256 frames are 8 runs: this is well into the stream
            raise failure
        return read(self, start, stop)

    monkeypatch.setattr(MixtureReader, "read", failing)
    job = plan.Job(plan_mixtures([long_mix])[0], (tmp_path / "o" / "s1.wav",
                   tmp_path / "o" / "s2.wav"), None, fit_frames=256)  # fmt: skip
    settings = SeparationSettings.from_values(QUICK)
    with pytest.raises(type(failure) if isinstance(failure, Exception) else failure):
        longform.run_long_job(job, settings, plan.OutputOptions(tmp_path / "o"))
    assert calls["n"] == 60
    assert files_in(tmp_path / "o") == []


def test_mono_microphones_are_read_piece_by_piece_with_padding(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(3000), rng.standard_normal(2500)
    sf.write(tmp_path / "a.wav", a, 16000, subtype="DOUBLE")
    sf.write(tmp_path / "b.wav", b, 16000, subtype="DOUBLE")
    mixture = plan_mixtures([tmp_path / "a.wav", tmp_path / "b.wav"])[0]
    with pytest.raises(InputError, match="mono microphones must have equal lengths"):
        MixtureReader(mixture)
    with MixtureReader(mixture, pad=True) as reader:
        assert (reader.n_channels, reader.n_samples) == (2, 3000)
        block = reader.read(2400, 3000)
    np.testing.assert_array_equal(block[0], a[2400:])
    np.testing.assert_array_equal(block[1], np.r_[b[2400:], np.zeros(500)])


@pytest.mark.parametrize("subtype", ["float", "pcm16"])
def test_progress_counts_the_iterations_then_every_block(long_mix, tmp_path, monkeypatch, subtype):
    monkeypatch.setattr(longform, "SPAN_SAMPLES", SPAN)
    job = plan.Job(plan_mixtures([long_mix])[0], (tmp_path / "o" / "s1.wav",
                   tmp_path / "o" / "s2.wav"), None, fit_frames=256)  # fmt: skip
    settings = SeparationSettings.from_values(QUICK)
    steps = []
    options = plan.OutputOptions(tmp_path / "o", subtype=subtype)
    record = longform.run_long_job(job, settings, options, lambda i, loss: steps.append(i))
    assert steps == list(range(1, longform.progress_steps(job, settings, subtype) + 1))
    assert len(steps) > QUICK["n_iter"] + 100
    assert len(record.outputs) == 2


def test_a_silent_channel_in_the_sampled_frames_is_refused(long_mix, tmp_path):
    data, rate = sf.read(long_mix)
    data[:, 1] = 0.0
    path = tmp_path / "silent.wav"
    sf.write(path, data, rate, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"channel\(s\) \[1\] are digital silence in the frames"):
        _fit(path, 256)


def test_a_full_disk_mid_stream_leaves_nothing(long_mix, tmp_path, monkeypatch):
    from ilrma_cli.audio import AudioSink
    from ilrma_cli.errors import OutputError

    monkeypatch.setattr(longform, "SPAN_SAMPLES", SPAN)
    calls = {"n": 0}
    write = AudioSink.write

    def filling(self, block):
        calls["n"] += 1
        if calls["n"] == 50:
            raise OutputError(self.target, "cannot write (No space left on device)")
        write(self, block)

    monkeypatch.setattr(AudioSink, "write", filling)
    out = tmp_path / "out"
    result = invoke("separate", long_mix, "-o", out, "--max-memory", "270M", "--n-fft", "1024",
                    "--n-iter", "2")  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("cannot write (No space left on device)")
    assert calls["n"] == 50 and files_in(out) == []


def test_dereverb_on_the_long_path_is_refused_in_one_line(long_mix, tmp_path):
    out = tmp_path / "out"
    args = ["separate", long_mix, "-o", out, "--n-fft", "1024", "--hop", "256", "--n-iter", "2"]
    result = invoke(*args, "--max-memory", "270M", "--dereverb", "2")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "--dereverb needs the whole file in memory" in line and str(long_mix) in line
    assert files_in(out) == []
