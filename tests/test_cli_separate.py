"""`ilrma separate` end to end through click's runner (stdout and stderr apart)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import SAMPLE, invoke, sdr_improvement

from ilrma_cli.cli import cli
from ilrma_cli.settings import SeparationSettings

FAST = ["--n-iter", "5", "--n-fft", "1024", "--hop", "512"]


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def short_mix(tmp_path: Path) -> Path:
    """The first 3 s of the sample mixture, 2 channels."""
    data, rate = sf.read(SAMPLE / "mix.wav")
    path = tmp_path / "in" / "short.wav"
    path.parent.mkdir()
    sf.write(path, data[: 3 * rate], rate, subtype="FLOAT")
    return path


def test_sample_separates_well_and_keeps_rate_length_and_channels(tmp_path, dev_case):
    result = invoke("separate", SAMPLE / "mix.wav", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert files_in(tmp_path) == ["mix/source1.wav", "mix/source2.wav"]
    mix, refs, rate = dev_case("arctic_2src_rt250")
    estimates = []
    for index in (1, 2):
        data, out_rate = sf.read(tmp_path / "mix" / f"source{index}.wav", always_2d=True)
        info = sf.info(tmp_path / "mix" / f"source{index}.wav")
        assert (out_rate, info.subtype, data.shape) == (rate, "FLOAT", (mix.shape[1], 1))
        estimates.append(data[:, 0])
    assert sdr_improvement(refs, np.array(estimates), mix[0]) > 9.0


def test_mono_microphone_files_give_the_same_result_as_the_multichannel_file(tmp_path):
    a = invoke("separate", SAMPLE / "mix.wav", "-o", tmp_path / "a", *FAST)
    b = invoke("separate", SAMPLE / "mic1.wav", SAMPLE / "mic2.wav", "-o", tmp_path / "b", *FAST)
    assert a.exit_code == b.exit_code == 0
    for index in (1, 2):
        x, _ = sf.read(tmp_path / "a" / "mix" / f"source{index}.wav")
        y, _ = sf.read(tmp_path / "b" / "mic1" / f"source{index}.wav")
        np.testing.assert_array_equal(x, y)


def test_outputs_get_the_usual_permissions(tmp_path, short_mix):
    old = os.umask(0o022)
    try:
        assert (
            invoke("separate", short_mix, "-o", tmp_path / "o", "--loss-plot", *FAST).exit_code == 0
        )
    finally:
        os.umask(old)
    for path in (tmp_path / "o" / "short").iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_same_seed_same_bytes_other_seed_other_output(tmp_path, short_mix):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert (
            invoke("separate", short_mix, "-o", tmp_path / name, "--seed", seed, *FAST).exit_code
            == 0
        )
    read = lambda name: (tmp_path / name / "short" / "source1.wav").read_bytes()  # noqa: E731
    assert read("a") == read("b")
    assert read("a") != read("c")


def test_images_write_one_multichannel_file_per_source_summing_to_the_mixture(tmp_path, short_mix):
    result = invoke("separate", short_mix, "-o", tmp_path, "--images", *FAST)
    assert result.exit_code == 0, result.output
    images = [sf.read(tmp_path / "short" / f"source{i}.wav")[0] for i in (1, 2)]
    assert images[0].shape[1] == 2
    mix, _ = sf.read(short_mix)
    np.testing.assert_allclose(images[0] + images[1], mix, atol=1e-5)


def test_ref_mic_scales_sources_to_that_microphone(tmp_path, short_mix):
    invoke("separate", short_mix, "-o", tmp_path / "img", "--images", *FAST)
    invoke("separate", short_mix, "-o", tmp_path / "m1", "--ref-mic", 1, *FAST)
    image, _ = sf.read(tmp_path / "img" / "short" / "source2.wav")
    at_mic1, _ = sf.read(tmp_path / "m1" / "short" / "source2.wav")
    np.testing.assert_allclose(at_mic1, image[:, 1], atol=1e-6)


def test_json_is_the_only_stdout_and_holds_what_it_promises(tmp_path, short_mix):
    result = invoke("separate", short_mix, "-o", tmp_path, "--json", *FAST)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    (mixture,) = doc["mixtures"]
    assert mixture["status"] == "ok"
    assert mixture["outputs"] == [str(tmp_path / "short" / f"source{i}.wav") for i in (1, 2)]
    assert mixture["inputs"] == [str(short_mix)]
    assert (mixture["sample_rate"], mixture["n_channels"], mixture["n_samples"]) == (
        16000,
        2,
        48000,
    )
    # 5 ILRMA iterations, then the 60 of the full-rank refinement (the default model)
    assert mixture["n_iter"] == 65 and np.isfinite(mixture["final_loss"])
    assert doc["settings"]["n_fft"] == 1024 and doc["settings"]["update"] == "ip"
    assert doc["settings"]["spatial"] == "fullrank"
    assert {"ilrma", "numpy", "scipy"} <= set(doc["versions"])
    assert set(mixture["seconds"]) >= {"read", "stft", "ilrma", "istft", "write", "total"}


def test_json_reports_the_automatic_stft_and_the_kept_restart(tmp_path, short_mix):
    result = invoke("separate", short_mix, "-o", tmp_path, "--json", "--n-iter", "3",
                    "--restarts", "2", "--seed", "7")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["settings"]["n_fft"], doc["settings"]["hop"]) == ("auto", "auto")
    assert doc["settings"]["restarts"] == 2
    resolved = doc["mixtures"][0]["resolved"]
    assert (resolved["n_fft"], resolved["hop"]) == (4096, 1024)
    assert len(resolved["final_losses"]) == 2
    kept = int(np.argmin(resolved["final_losses"]))
    assert resolved["seed"] == 7 + kept
    # the weights alternate by default (shared first): the kept run's are its turn's
    assert resolved["kept_weights"] == ("frequency" if kept else "shared")


def test_json_names_the_kept_run_so_that_one_run_reproduces_it(tmp_path, short_mix):
    common = ("--n-iter", "3", "--fullrank-iter", "4", "--seed", "3")
    first = invoke("separate", short_mix, "-o", tmp_path / "a", "--json", "--restarts", "2",
                   *common)  # fmt: skip
    assert first.exit_code == 0, first.output
    resolved = json.loads(first.stdout)["mixtures"][0]["resolved"]
    kept_index = resolved["seed"] - 3
    # of two runs the lower loss is kept: the per-frequency run (the freer model) here
    assert (kept_index, resolved["kept_weights"]) == (1, "frequency")
    again = invoke("separate", short_mix, "-o", tmp_path / "b", "--json", "--restarts", "1",
                   "--fullrank-weights", resolved["kept_weights"], *common[:-1],
                   str(resolved["seed"]))  # fmt: skip
    assert again.exit_code == 0, again.output
    rerun = json.loads(again.stdout)["mixtures"][0]
    assert rerun["final_loss"] == pytest.approx(resolved["final_losses"][kept_index], rel=1e-9)
    rank1 = invoke("separate", short_mix, "-o", tmp_path / "c", "--json", "--spatial", "rank1",
                   "--n-iter", "3")  # fmt: skip
    assert json.loads(rank1.stdout)["mixtures"][0]["resolved"]["kept_weights"] is None


def test_n_sources_below_the_channels_writes_that_many_files(tmp_path, short_mix):
    data, rate = sf.read(short_mix)
    three = tmp_path / "three.wav"
    sf.write(three, np.column_stack([data, data[:, 0] - 0.5 * data[:, 1]]), rate, subtype="FLOAT")
    result = invoke("separate", three, "-o", tmp_path / "o", "--n-sources", "2", *FAST)
    assert result.exit_code == 0, result.output
    assert files_in(tmp_path / "o") == ["three/source1.wav", "three/source2.wav"]


def test_more_sources_than_channels_need_the_full_rank_model(tmp_path, short_mix):
    more = ["--n-sources", "3", "--fullrank-iter", "5", *FAST]
    refused = invoke("separate", short_mix, "-o", tmp_path / "r", "--spatial", "rank1", *more)
    assert refused.exit_code == 1
    assert "--n-sources 3 needs at least as many channels (the input has 2), or --spatial " \
        "fullrank" in refused.stderr  # fmt: skip
    assert "Traceback" not in refused.output and not (tmp_path / "r" / "short").exists()
    result = invoke("separate", short_mix, "-o", tmp_path / "o", "--spatial", "fullrank", *more)
    assert result.exit_code == 0, result.output
    names = ["short/source1.wav", "short/source2.wav", "short/source3.wav"]
    assert files_in(tmp_path / "o") == names
    for name in names:
        data, _ = sf.read(tmp_path / "o" / name)
        assert np.isfinite(data).all() and np.abs(data).max() > 0


def test_existing_outputs_are_refused_before_any_work_and_kept(tmp_path, short_mix):
    assert invoke("separate", short_mix, "-o", tmp_path, *FAST).exit_code == 0
    target = tmp_path / "short" / "source1.wav"
    target.write_bytes(b"precious")
    (tmp_path / "unrelated.txt").write_text("keep")
    result = invoke("separate", short_mix, "-o", tmp_path, *FAST)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {tmp_path}: outputs exist already (use --force to overwrite): "
    )
    assert str(target) in result.stderr
    assert target.read_bytes() == b"precious"
    forced = invoke("separate", short_mix, "-o", tmp_path, "--force", *FAST)
    assert forced.exit_code == 0
    assert target.read_bytes() != b"precious"
    assert (tmp_path / "unrelated.txt").read_text() == "keep"


def test_filename_template_and_collisions(tmp_path, short_mix):
    out = tmp_path / "out"
    result = invoke("separate", short_mix, "-o", out, "--filename", "{track}_s{index}.{ext}", *FAST)
    assert result.exit_code == 0
    assert files_in(out) == ["short_s1.wav", "short_s2.wav"]
    other = tmp_path / "other" / "short.wav"
    other.parent.mkdir()
    shutil.copy(short_mix, other)
    clash = invoke("separate", short_mix, other, "-o", tmp_path / "x", *FAST)
    assert clash.exit_code == 1
    assert "map to the same file: put {track} in --filename" in clash.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{track}.wav", "'{track}.wav' has no {index}: every source would get the same file"),
        ("{name}{index}.wav", "unknown placeholder {name} in '{name}{index}.wav'"),
    ],
)
def test_bad_templates_are_usage_errors(tmp_path, short_mix, template, message):
    result = invoke("separate", short_mix, "-o", tmp_path, "--filename", template)
    assert result.exit_code == 2
    assert message in result.stderr


def test_batch_of_two_mixtures_in_parallel_equals_sequential(tmp_path, short_mix):
    second = tmp_path / "in" / "second.wav"
    data, rate = sf.read(short_mix)
    sf.write(second, data[::-1].copy(), rate, subtype="FLOAT")
    par = invoke("separate", short_mix, second, "-o", tmp_path / "par", "-j", 2, "--json", *FAST)
    seq = invoke("separate", short_mix, second, "-o", tmp_path / "seq", *FAST)
    assert par.exit_code == seq.exit_code == 0, par.output
    assert [m["track"] for m in json.loads(par.stdout)["mixtures"]] == ["short", "second"]
    for rel in files_in(tmp_path / "seq"):
        assert (tmp_path / "par" / rel).read_bytes() == (tmp_path / "seq" / rel).read_bytes()


def test_keep_going_separates_the_rest_and_still_fails(tmp_path, short_mix):
    missing = tmp_path / "missing.wav"
    bad = tmp_path / "in" / "bad.wav"
    sf.write(bad, np.zeros((48000, 2)), 16000)
    stopped = invoke("separate", bad, short_mix, "-o", tmp_path / "a", *FAST)
    assert stopped.exit_code == 1
    assert stopped.stderr.strip().endswith(
        f"Error: {bad}: the input is digital silence: there is nothing to separate"
    )
    assert not (tmp_path / "a").exists()
    going = invoke("separate", bad, short_mix, "-o", tmp_path / "b", "--keep-going", *FAST)
    assert going.exit_code == 1
    assert files_in(tmp_path / "b") == ["short/source1.wav", "short/source2.wav"]
    absent = invoke("separate", missing, short_mix, "-o", tmp_path / "c")
    assert (absent.exit_code, absent.stderr) == (1, f"Error: {missing}: no such file\n")


def test_pcm_output_rescales_all_sources_with_one_gain(tmp_path, short_mix):
    data, rate = sf.read(short_mix)
    loud = tmp_path / "in" / "loud.wav"
    sf.write(loud, data / np.abs(data).max() * 4.0, rate, subtype="FLOAT")
    flt = invoke("separate", loud, "-o", tmp_path / "f", *FAST)
    pcm = invoke("separate", loud, "-o", tmp_path / "p", "--subtype", "pcm16", *FAST)
    assert flt.exit_code == pcm.exit_code == 0
    assert "every source scaled by" in pcm.stderr and "the same gain for all" in pcm.stderr
    f = [sf.read(tmp_path / "f" / "loud" / f"source{i}.wav")[0] for i in (1, 2)]
    p = [sf.read(tmp_path / "p" / "loud" / f"source{i}.wav")[0] for i in (1, 2)]
    assert sf.info(tmp_path / "p" / "loud" / "source1.wav").subtype == "PCM_16"
    assert max(np.abs(x).max() for x in p) <= 1.0
    gains = [np.dot(pi, fi) / np.dot(fi, fi) for pi, fi in zip(p, f, strict=True)]
    assert gains[0] == pytest.approx(gains[1], rel=1e-3)
    clamp = invoke(
        "separate", loud, "-o", tmp_path / "c", "--subtype", "pcm24", "--clip-mode", "clamp", *FAST
    )
    assert clamp.exit_code == 0 and "samples clamped" in clamp.stderr


def test_spectrograms_are_a_non_blank_png_with_one_panel_per_signal(tmp_path, short_mix):
    import matplotlib.image

    result = invoke("separate", short_mix, "-o", tmp_path, "--spectrograms", *FAST)
    assert result.exit_code == 0
    image = matplotlib.image.imread(tmp_path / "short" / "spectrograms.png")
    assert image.shape[0] > 400 and image.shape[1] > 600
    assert image[..., :3].std() > 0.1  # not blank


def test_loss_plot_is_a_png_beside_the_outputs(tmp_path, short_mix):
    import matplotlib.image

    result = invoke("separate", short_mix, "-o", tmp_path, "--loss-plot", *FAST)
    assert result.exit_code == 0
    png = tmp_path / "short" / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    custom = invoke(
        "separate", short_mix, "-o", tmp_path / "b", "--loss-plot", tmp_path / "l.png", *FAST
    )
    assert custom.exit_code == 0 and (tmp_path / "l.png").exists()
    rank1 = invoke("separate", short_mix, "-o", tmp_path / "r", "--loss-plot", "--spatial",
                   "rank1", *FAST)  # fmt: skip
    assert rank1.exit_code == 0
    # the default's plot marks where the full-rank model takes over; rank 1 has no marker
    marked = matplotlib.image.imread(png)[..., :3]
    plain = matplotlib.image.imread(tmp_path / "r" / "short" / "loss.png")[..., :3]
    assert marked.shape == plain.shape and not np.array_equal(marked, plain)


def test_the_loss_per_iteration_is_computed_only_for_a_plot_and_changes_nothing_else(
    tmp_path, short_mix
):
    docs = {}
    for name, extra in (("plain", []), ("plot", ["--loss-plot"])):
        result = invoke("separate", short_mix, "-o", tmp_path / name, "--json", *extra, *FAST)
        assert result.exit_code == 0
        docs[name] = json.loads(result.stdout)["mixtures"][0]
    read = lambda name, i: (tmp_path / name / "short" / f"source{i}.wav").read_bytes()  # noqa: E731
    assert all(read("plain", i) == read("plot", i) for i in (1, 2))
    finals = [docs[n]["resolved"]["final_losses"] for n in ("plain", "plot")]
    np.testing.assert_allclose(finals[0], finals[1], rtol=1e-12)
    assert len(finals[0]) == SeparationSettings().restarts and np.isfinite(finals[0]).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n-fft", "0"], "Invalid value for '--n-fft'"),
        (
            ["--n-fft", "4096", "--hop", "5000"],
            "Invalid value for --hop: 5000 is larger than --n-fft 4096",
        ),
        (["--hop", "512"], "Invalid value for --hop: --hop needs --n-fft"),
        (["--restarts", "0"], "Invalid value for '--restarts'"),
        (["--model", "laplace"], "Invalid value for '--model'"),
        (["--dof", "0"], "Invalid value for '--dof'"),
        (["--n-sources", "1"], "Invalid value for '--n-sources'"),
        (["--n-iter", "-1"], "Invalid value for '--n-iter'"),
        (["--n-basis", "0"], "Invalid value for '--n-basis'"),
        (["--update", "foo"], "Invalid value for '--update'"),
        (["--window", "kaiser"], "Invalid value for '--window'"),
        (["--subtype", "pcm8"], "Invalid value for '--subtype'"),
        (["--bogus"], "No such option '--bogus'"),
    ],
)
def test_usage_errors_exit_2(tmp_path, short_mix, args, message):
    result = invoke("separate", short_mix, "-o", tmp_path / "o", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "o").exists()


def test_missing_input_argument_is_a_usage_error():
    result = invoke("separate")
    assert result.exit_code == 2
    assert "Missing argument 'INPUTS...' (or --from-list FILE)" in result.stderr


def test_inputs_from_a_list_on_stdin(tmp_path, short_mix):
    listing = f"# recordings\n{short_mix}\n\n"
    result = CliRunner().invoke(
        cli, ["separate", "--from-list", "-", "-o", str(tmp_path / "o"), *FAST], input=listing
    )
    assert result.exit_code == 0, result.output
    assert files_in(tmp_path / "o") == ["short/source1.wav", "short/source2.wav"]


def _write(path: Path, data: np.ndarray, rate: int = 16000, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, **kwargs)
    return path


def test_input_errors_are_one_line_and_leave_nothing(tmp_path, short_mix):
    stereo, _ = sf.read(short_mix)
    src = tmp_path / "src"
    cases = {
        "directory": (src, "is a directory, not an audio file"),
        "empty": (src / "empty.wav", "empty file (0 bytes)"),
        "text": (src / "text.wav", "not a readable audio file"),
        "mono": (
            _write(src / "mono.wav", stereo[:, 0]),
            "is mono: ILRMA needs at least 2 channels",
        ),
        "short": (
            _write(src / "tiny.wav", stereo[:100]),
            "signal of 100 samples is shorter than one STFT frame (n_fft = 4096)",
        ),
        "nan": (src / "nan.wav", "contains NaN or infinite samples"),
    }
    src.mkdir(exist_ok=True)
    (src / "empty.wav").write_bytes(b"")
    (src / "text.wav").write_text("this is not audio\n" * 20)
    bad = stereo.copy()
    bad[10, 1] = np.nan
    _write(src / "nan.wav", bad, subtype="FLOAT")
    for name, (path, message) in cases.items():
        out = tmp_path / f"out_{name}"
        result = invoke("separate", path, "-o", out)
        assert result.exit_code == 1, name
        assert result.stderr.startswith(f"Error: {path}: {message}"), (name, result.stderr)
        assert result.stderr.count("\n") == 1, name
        assert "Traceback" not in result.output
        assert not out.exists(), name


def test_mono_microphone_problems(tmp_path, short_mix):
    stereo, _ = sf.read(short_mix)
    a = _write(tmp_path / "a.wav", stereo[:, 0])
    b8k = _write(tmp_path / "b8k.wav", stereo[:, 1], rate=8000)
    short = _write(tmp_path / "short.wav", stereo[:-10, 1])
    rate = invoke("separate", a, b8k, "-o", tmp_path / "o")
    assert rate.stderr == f"Error: {b8k}: sample rate 8000 Hz differs from {a} (16000 Hz)\n"
    length = invoke("separate", a, short, "-o", tmp_path / "o")
    assert length.exit_code == 1
    assert f"Error: {short}: has 47990 samples but {a} has 48000" in length.stderr
    padded = invoke("separate", a, short, "-o", tmp_path / "o", "--pad", *FAST)
    assert padded.exit_code == 0
    assert sf.info(tmp_path / "o" / "a" / "source1.wav").frames == 48000
    mixed = invoke("separate", a, short_mix, "-o", tmp_path / "p")
    assert (
        mixed.exit_code == 1
        and f"Error: {a}: mono file given with multichannel {short_mix}" in mixed.stderr
    )


def test_out_dir_problems(tmp_path, short_mix):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = invoke("separate", short_mix, "-o", a_file)
    assert result.stderr == f"Error: {a_file}: exists and is not a folder\n"
    below = invoke("separate", short_mix, "-o", a_file / "sub")
    assert below.stderr == f"Error: {a_file / 'sub'}: cannot be created: {a_file} is a file\n"
    inside = invoke("separate", short_mix, "-o", short_mix.parent, "--filename", "short.wav{index}")
    assert inside.exit_code == 0  # a different name: fine
    clash = invoke(
        "separate", short_mix, "-o", short_mix.parent.parent, "--filename", "in/{track}.wav{index}x"
    )
    assert clash.exit_code == 0


def test_a_silent_channel_is_refused_unless_fewer_sources_are_asked_for(tmp_path, short_mix):
    data, rate = sf.read(short_mix)
    data[:, 1] = 0
    path = _write(tmp_path / "in" / "half.wav", data, subtype="FLOAT")
    result = invoke("separate", path, "-o", tmp_path / "o", *FAST)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {path}: channel(s) [1] are digital silence: the 1 live channel(s) can "
        "separate at most 1 source(s)\n"
    )
    assert not (tmp_path / "o").exists()
    three = np.column_stack(
        [data[:, 0], np.zeros(len(data)), 0.5 * data[:, 0] + 0.1 * data[::-1, 0]]
    )
    path3 = _write(tmp_path / "in" / "three.wav", three, subtype="FLOAT")
    refused = invoke("separate", path3, "-o", tmp_path / "p", *FAST)
    assert refused.exit_code == 1 and "; use --n-sources 2\n" in refused.stderr
    fewer = invoke("separate", path3, "-o", tmp_path / "p", "--n-sources", "2", *FAST)
    assert fewer.exit_code == 0, fewer.output
    for i in (1, 2):
        out, _ = sf.read(tmp_path / "p" / "three" / f"source{i}.wav")
        assert np.all(np.isfinite(out)) and np.any(out)


def test_identical_channels_warn_and_stay_finite(tmp_path, short_mix):
    data, rate = sf.read(short_mix)
    data[:, 1] = data[:, 0]
    path = _write(tmp_path / "in" / "same.wav", data, subtype="FLOAT")
    result = invoke("separate", path, "-o", tmp_path / "o", *FAST)
    assert "channels 0 and 1 are identical" in result.stderr
    assert result.exit_code == 0
    for i in (1, 2):
        out, _ = sf.read(tmp_path / "o" / "same" / f"source{i}.wav")
        assert np.all(np.isfinite(out)) and np.any(out)


def test_version_and_help():
    assert invoke("--version").stdout.startswith("ilrma, version ")
    assert "Separate each mixture" in invoke("separate", "--help").stdout


def test_refs_score_the_result_into_report_json_and_a_table(tmp_path, short_mix):
    refs = []
    for index in (1, 2):
        data, rate = sf.read(SAMPLE / f"src{index}.wav")
        refs.append(
            _write(tmp_path / "refs" / f"ref{index}.wav", data[: 3 * rate], subtype="FLOAT")
        )
    good = ["--n-iter", "30", "--n-fft", "1024", "--hop", "256"]
    result = invoke("separate", short_mix, "-o", tmp_path / "o", "--refs", *refs, "--json", *good)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "short" / "report.json").read_text())
    assert report["references"] == [str(r) for r in refs]
    assert sorted(report["metrics"]["permutation"]) == [0, 1]
    assert report["metrics"]["mean"]["sdri"] > 5.0
    assert json.loads(result.stdout)["mixtures"][0]["metrics"] == report["metrics"]
    assert "SDRi" in result.stderr and "ref1.wav" in result.stderr
    swapped = invoke("separate", short_mix, "-o", tmp_path / "s", "--refs", refs[1], refs[0], *good)
    assert swapped.exit_code == 0
    report_swapped = json.loads((tmp_path / "s" / "short" / "report.json").read_text())
    assert report_swapped["metrics"]["permutation"] == report["metrics"]["permutation"][::-1]
    assert report_swapped["metrics"]["mean"] == pytest.approx(report["metrics"]["mean"])


def test_refs_problems(tmp_path, short_mix):
    one = invoke("separate", short_mix, "-o", tmp_path / "o", "--refs", SAMPLE / "src1.wav", *FAST)
    assert one.exit_code == 1
    assert one.stderr.endswith(
        f"Error: {SAMPLE / 'src1.wav'}: 1 references given for 2 separated sources\n"
    )
    assert not (tmp_path / "o").exists()
    two_mixes = invoke("separate", short_mix, SAMPLE / "mix.wav", "--refs", SAMPLE / "src1.wav")
    assert two_mixes.exit_code == 2
    assert "--refs scores one mixture: give a single mixture with it" in two_mixes.stderr
    missing = invoke("separate", short_mix, "-o", tmp_path / "o", "--refs", tmp_path / "nope.wav")
    assert missing.stderr == f"Error: {tmp_path / 'nope.wav'}: no such file\n"


def test_refs_of_other_lengths_warn_unless_quiet(tmp_path, short_mix):
    refs = []
    for index, seconds in ((1, 3.0), (2, 2.5)):
        data, rate = sf.read(SAMPLE / f"src{index}.wav")
        refs.append(_write(tmp_path / f"ref{index}.wav", data[: int(seconds * rate)]))
    args = ["separate", short_mix, "--refs", *refs, *FAST, "--iva-iter", "0", "--no-progress"]
    loud = invoke(*args, "-o", tmp_path / "loud")
    assert loud.exit_code == 0, loud.output
    assert loud.stderr.startswith(
        f"WARNING: lengths differ: {refs[1]} has 40000 samples, {refs[0]} has 48000; "
        "every signal is trimmed to 40000 samples\n"
    )
    quiet = invoke(*args, "-o", tmp_path / "quiet", "-q")
    assert (quiet.exit_code, quiet.stderr) == (0, "")


def test_memory_need_is_checked_before_any_work(tmp_path, short_mix):
    result = invoke("separate", short_mix, "-o", tmp_path / "o", "--max-memory", "50M")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {short_mix}: needs about 0.")
    assert "of memory, more than the 0.0 GiB allowed by --max-memory; use --max-memory SIZE" in (
        result.stderr
    )
    assert not (tmp_path / "o").exists()
    ok = invoke("separate", short_mix, "-o", tmp_path / "o", "--max-memory", "2G", *FAST)
    assert ok.exit_code == 0
    bad = invoke("separate", short_mix, "--max-memory", "lots")
    assert bad.exit_code == 2 and "'lots' is not a size such as 8G, 512M or 1.5G" in bad.stderr


@pytest.mark.parametrize(
    ("text", "size"), [("8G", 8 * 2**30), ("512M", 512 * 2**20), ("1.5g", 3 * 2**29), ("100", 100)]
)
def test_sizes(text, size):
    from ilrma_cli.memory import parse_size

    assert parse_size(text) == size


def test_single_precision_matches_double_closely(tmp_path, short_mix):
    for precision in ("double", "single"):
        result = invoke("separate", short_mix, "-o", tmp_path / precision, "--precision", precision)
        assert result.exit_code == 0, result.output
    for index in (1, 2):
        double, _ = sf.read(tmp_path / "double" / "short" / f"source{index}.wav")
        single, _ = sf.read(tmp_path / "single" / "short" / f"source{index}.wav")
        error = np.linalg.norm(single - double) / np.linalg.norm(double)
        assert 0 < error < 1e-4, error


def test_output_names_whose_format_cannot_hold_the_samples_are_refused_first(tmp_path, short_mix):
    flac = invoke(
        "separate", short_mix, "-o", tmp_path / "o", "--filename", "{track}/s{index}.flac"
    )
    assert flac.exit_code == 1
    assert flac.stderr == (
        f"Error: {tmp_path / 'o' / 'short' / 's1.flac'}: FLAC files cannot hold float samples: "
        "use --subtype pcm16 or pcm24\n"
    )
    assert not (tmp_path / "o").exists()
    pcm = invoke("separate", short_mix, "-o", tmp_path / "o", "--filename", "{track}/s{index}.flac",
                 "--subtype", "pcm16", *FAST)  # fmt: skip
    assert pcm.exit_code == 0 and sf.info(tmp_path / "o" / "short" / "s1.flac").format == "FLAC"
