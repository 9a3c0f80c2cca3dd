"""Batch use (issue 16): a bad input never stops a --keep-going batch, --json always
prints one document, every mixture says where its files went."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SAMPLE, invoke

from ilrma_cli.audio import plan_mixtures
from ilrma_cli.batch import plan
from ilrma_cli.settings import SeparationSettings, auto_stft

REPO = Path(__file__).resolve().parents[1]
FAST = ["--n-iter", "3", "--n-fft", "1024", "--hop", "512"]


def run_cli(*args: object) -> subprocess.CompletedProcess:
    """``python -m ilrma_cli ARGS`` in a process of its own: real streams, real exit code."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "ilrma_cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Two good 2-s stereo mixtures, a mono file, a file that is not audio, a missing path."""
    data, rate = sf.read(SAMPLE / "mix.wav")
    folder = tmp_path / "in"
    folder.mkdir()
    paths = {name: folder / f"{name}.wav" for name in ("good", "other", "mono", "bad", "missing")}
    sf.write(paths["good"], data[: 2 * rate], rate, subtype="FLOAT")
    sf.write(paths["other"], data[rate : 3 * rate], rate, subtype="FLOAT")
    sf.write(paths["mono"], data[: 2 * rate, 0], rate, subtype="FLOAT")
    paths["bad"].write_text("not audio at all\n")
    return paths


def test_keep_going_records_missing_unreadable_and_mono_inputs_and_separates_the_rest(
    tmp_path, inputs
):
    order = ["good", "missing", "bad", "mono", "other"]
    out = tmp_path / "out"
    result = run_cli("separate", *(inputs[n] for n in order), "-o", out, "--keep-going",
                     "--json", "--no-progress", *FAST)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert files_in(out) == [f"{t}/source{i}.wav" for t in ("good", "other") for i in (1, 2)]
    document = json.loads(result.stdout)  # exactly one document
    mixtures = document["mixtures"]
    assert [(m["track"], m["status"]) for m in mixtures] == [
        ("good", "ok"), ("missing", "error"), ("bad", "error"), ("mono", "error"), ("other", "ok")
    ]  # fmt: skip
    errors = {m["track"]: m["error"] for m in mixtures}
    assert errors["missing"] == f"{inputs['missing']}: no such file"
    assert errors["bad"].startswith(f"{inputs['bad']}: not a readable audio file")
    assert errors["mono"].startswith(f"{inputs['mono']}: mono file given with multichannel")
    assert [m["inputs"] for m in mixtures] == [[str(inputs[n])] for n in order]
    for track in ("missing", "bad", "mono"):
        assert f"Error: {errors[track]}\n" in result.stderr
    for track in ("good", "other"):
        assert f"{track}: 2 files in {out / track}{os.sep} (" in result.stderr


def test_without_keep_going_a_bad_input_stops_before_any_work(tmp_path, inputs):
    for name in ("missing", "bad", "mono"):
        out = tmp_path / name
        result = invoke("separate", inputs["good"], inputs[name], "-o", out, *FAST)
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error: {inputs[name]}: ")
        assert result.stderr.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("keep_going", [[], ["--keep-going"]])
def test_json_is_one_document_with_the_error_when_the_input_stage_fails(
    tmp_path, inputs, keep_going
):
    result = run_cli("separate", inputs["missing"], "-o", tmp_path / "out", "--json",
                     *keep_going)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == f"Error: {inputs['missing']}: no such file\n"
    document = json.loads(result.stdout)
    (mixture,) = document["mixtures"]
    message = f"{inputs['missing']}: no such file"
    assert (mixture["status"], mixture["error"], mixture["outputs"]) == ("error", message, [])
    assert document.get("error") == (None if keep_going else message)  # stopped before any work
    assert document["settings"]["n_fft"] == "auto"
    assert not (tmp_path / "out").exists()


def test_json_holds_the_error_of_an_output_refusal(tmp_path, inputs):
    out = tmp_path / "out"
    assert invoke("separate", inputs["good"], "-o", out, *FAST).exit_code == 0
    again = invoke("separate", inputs["good"], "-o", out, "--json", *FAST)
    assert again.exit_code == 1
    assert "outputs exist already" in json.loads(again.stdout)["error"]


def test_a_microphone_file_that_cannot_be_read_fails_its_mixture(tmp_path, inputs):
    mics = tmp_path / "mics"
    mics.mkdir()
    data, rate = sf.read(inputs["good"])
    for channel in (0, 1):
        sf.write(mics / f"mic{channel}.wav", data[:, channel], rate, subtype="FLOAT")
    args = ["separate", mics / "mic0.wav", inputs["missing"], mics / "mic1.wav"]
    result = invoke(*args, "-o", tmp_path / "out", "--keep-going", "--json", *FAST)
    assert result.exit_code == 1
    mixtures = json.loads(result.stdout)["mixtures"]
    assert [m["status"] for m in mixtures] == ["error", "error"]
    assert mixtures[0]["error"].startswith(f"{mics / 'mic0.wav'}: a microphone file of this")
    assert not (tmp_path / "out").exists()


def test_a_mixture_over_the_memory_limit_fails_alone_with_keep_going(tmp_path, inputs):
    data, rate = sf.read(inputs["good"])
    big = inputs["good"].parent / "big.wav"
    sf.write(big, np.tile(data, (40, 1)), rate, subtype="FLOAT")
    # room for "good" whole, not even for the long path (streaming) of "big" (rank 1: the
    # full-rank model's own scratch would make "good" need more than that long path)
    values = {"n_iter": 3, "n_fft": 1024, "hop": 512, "spatial": "rank1"}
    settings = SeparationSettings.from_values(values)
    good, huge = plan_mixtures([inputs["good"], big])
    limit = plan.whole_file_bytes(good, settings) + 2**20
    assert plan.memory_problem(huge, settings, limit) is not None
    args = ["separate", inputs["good"], big, "-o", tmp_path / "out", "--max-memory", str(limit),
            "--spatial", "rank1"]  # fmt: skip
    result = invoke(*args, "--keep-going", "--json", *FAST)
    assert result.exit_code == 1
    statuses = [(m["track"], m["status"]) for m in json.loads(result.stdout)["mixtures"]]
    assert statuses == [("good", "ok"), ("big", "error")]
    assert f"Error: {big}: needs about " in result.stderr


def test_one_line_per_mixture_unless_quiet(tmp_path, inputs):
    loud = invoke("separate", inputs["good"], inputs["other"], "-o", tmp_path / "a", *FAST)
    assert loud.exit_code == 0
    lines = loud.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["good", "other"]
    assert lines[0].startswith(f"good: 2 files in {tmp_path / 'a' / 'good'}{os.sep} (")
    assert lines[0].endswith(" s)")
    quiet = invoke("separate", inputs["good"], "-o", tmp_path / "b", "-q", *FAST)
    assert (quiet.exit_code, quiet.stderr) == (0, "")


def test_messages_number_channels_from_zero_like_ref_mic(tmp_path, inputs):
    data, rate = sf.read(inputs["good"])
    three = np.column_stack([data, np.zeros(len(data))])
    path = inputs["good"].parent / "three.wav"
    sf.write(path, three, rate, subtype="FLOAT")
    result = invoke("separate", path, "-o", tmp_path / "out", *FAST)
    assert result.exit_code == 1
    assert "channel(s) [2] are digital silence" in result.stderr
    same = inputs["good"].parent / "same.wav"
    sf.write(same, np.column_stack([data[:, 1], data[:, 0], data[:, 1]]), rate, subtype="FLOAT")
    warned = invoke("separate", same, "-o", tmp_path / "same", *FAST)
    assert "channels 0 and 2 are identical" in warned.stderr


def test_help_describes_seed_subtype_and_each_commands_jobs():
    def help_of(command: str) -> str:
        return " ".join(invoke(command, "--help").stdout.split())

    separate, sweep = help_of("separate"), help_of("sweep")
    assert "--seed INTEGER RANGE Seed of the random NMF initialisation" in separate
    assert "--subtype [float|pcm16|pcm24] Sample format of the output files" in separate
    jobs = sweep.split("--jobs INTEGER RANGE ", 1)[1].split("[default", 1)[0]
    assert "runs in parallel" in jobs and "separate" not in jobs and "mixture" not in jobs


def test_sweep_picks_the_same_automatic_stft_as_separate(tmp_path, inputs):
    refs = [tmp_path / f"ref{i}.wav" for i in (1, 2)]
    data, rate = sf.read(inputs["good"])
    for index, ref in enumerate(refs, start=1):
        sf.write(ref, sf.read(SAMPLE / f"src{index}.wav")[0][: 2 * rate], rate, subtype="FLOAT")
    swept = invoke("sweep", inputs["good"], "--refs", *refs, "-o", tmp_path / "study",
                   "--n-iter", "1", "--no-figures", "--json")  # fmt: skip
    assert swept.exit_code == 0, swept.output
    fixed = json.loads(swept.stdout)["fixed"]
    separated = invoke("separate", inputs["good"], "-o", tmp_path / "sep", "--n-iter", "1",
                       "--json")  # fmt: skip
    resolved = json.loads(separated.stdout)["mixtures"][0]["resolved"]
    expected = auto_stft(rate)
    assert (fixed["n_fft"], fixed["hop"]) == (resolved["n_fft"], resolved["hop"])
    assert (fixed["n_fft"], fixed["hop"]) == (expected.n_fft, expected.hop) == (4096, 1024)


def test_sweep_grids_over_the_model_and_a_flag(tmp_path, inputs):
    refs = [tmp_path / f"ref{i}.wav" for i in (1, 2)]
    rate = sf.info(inputs["good"]).samplerate
    for index, ref in enumerate(refs, start=1):
        sf.write(ref, sf.read(SAMPLE / f"src{index}.wav")[0][: 2 * rate], rate, subtype="FLOAT")
    result = invoke("sweep", inputs["good"], "--refs", *refs, "-o", tmp_path / "study",
                    "--model", "gauss,t", "--dof", "2", "--no-normalize=no,yes", "--no-figures",
                    "--json", *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    # the default spatial model follows the source model: fullrank for gauss, rank1 for t
    assert document["varying"] == ["model", "spatial", "normalize"]
    assert [(s["model"], s["normalize"]) for s in document["summary"]] == [
        ("gauss", True), ("gauss", False), ("t", True), ("t", False)
    ]  # fmt: skip
    assert document["fixed"]["dof"] == 2.0
    both = invoke("sweep", inputs["good"], "--refs", *refs, "-o", tmp_path / "x",
                  "--no-normalize", "--no-normalize=yes")  # fmt: skip
    assert both.exit_code == 2 and "not both" in both.stderr
