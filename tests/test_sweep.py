"""`ilrma sweep`: grid parsing, the run log, resume, determinism, figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SAMPLE, invoke, read_csv

from ilrma_cli import figures
from ilrma_cli.study import grid
from ilrma_cli.study import run as study_run
from ilrma_cli.study import summary as study_summary
from ilrma_cli.study.log import RunLog, columns, result_columns

FAST = ["--n-iter", "3", "--n-fft", "1024", "--hop", "512"]
GRID = ["--n-basis", "2,4", "--update", "ip,iss", "--restarts", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first 2 s of the sample mixture and its references."""
    folder = tmp_path_factory.mktemp("data")
    paths = {}
    for name in ("mix", "src1", "src2"):
        signal, rate = sf.read(SAMPLE / f"{name}.wav")
        paths[name] = folder / f"{name}.wav"
        sf.write(paths[name], signal[: 2 * rate], rate, subtype="FLOAT")
    return paths


def sweep_args(data: dict[str, Path], out: Path, *extra: object) -> list[object]:
    return ["sweep", data["mix"], "--refs", data["src1"], data["src2"], "-o", out, *FAST, *extra]


@pytest.fixture(scope="module")
def done(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A finished 2 x 2 settings x 2 seeds sweep: its folder and the click result."""
    out = tmp_path_factory.mktemp("sweep") / "study"
    result = invoke(*sweep_args(data, out, *GRID))
    assert result.exit_code == 0, result.output
    return out, result


@pytest.mark.parametrize(
    ("text", "values"),
    [("4", [4]), ("2-9", list(range(2, 10))), ("2,4,8", [2, 4, 8]), ("2-9:3", [2, 5, 8]),
     ("1,4-6,4", [1, 4, 5, 6]), (" 2 , 3 ", [2, 3])],
)  # fmt: skip
def test_integer_grids(text, values):
    assert grid.parse_int_grid(text, 1) == values


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("2,,3", "empty"), ("a", "not an integer"), ("2-x", "not an integer"),
     ("9-2", "ends before"), ("2:3", "needs a range"), ("2-9:0", "step"), ("0-3", "minimum")],
)  # fmt: skip
def test_integer_grid_errors(text, message):
    with pytest.raises(ValueError, match=message):
        grid.parse_int_grid(text, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--n-basis", "0-3"], "--n-basis"), (["--n-basis", "4-2"], "--n-basis"),
     (["--update", "ip,foo"], "--update"), (["--window", "box"], "--window"),
     (["--hop", "512,2048"], "--hop"), (["--seeds", "1-x"], "--seeds"),
     (["--restarts", "1", "--seeds", "0-2"], "not both"), (["--ref-mic", "5"], "--ref-mic")],
)  # fmt: skip
def test_bad_grids_are_usage_errors_naming_the_option(tmp_path, data, args, message):
    result = invoke(*sweep_args(data, tmp_path / "out", *args))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_several_mixtures_or_a_wrong_number_of_refs_are_usage_errors(tmp_path, data):
    two = invoke("sweep", data["mix"], data["mix"], "--refs", data["src1"], data["src2"],
                 "-o", tmp_path)  # fmt: skip
    assert two.exit_code == 2 and "one mixture" in two.stderr
    one_ref = invoke("sweep", data["mix"], "--refs", data["src1"], "-o", tmp_path)
    assert one_ref.exit_code == 2 and "one reference per source" in one_ref.stderr


def test_runs_csv_has_one_row_per_run_with_every_column(done):
    out, result = done
    rows = read_csv(out / "runs.csv")
    assert list(rows[0]) == columns(2)
    assert [(r["n_basis"], r["update"], r["seed"]) for r in rows] == [
        (b, u, s) for b in ("2", "4") for u in ("ip", "iss") for s in ("0", "1")
    ]
    assert {(r["n_fft"], r["hop"], r["n_iter"], r["iterations"]) for r in rows} == {
        ("1024", "512", "3", "63")  # 3 ILRMA iterations, then 60 of the full-rank model
    }
    assert len({r["key"] for r in rows}) == 8
    for row in rows:
        assert np.isfinite([float(row[c]) for c in ("sdr_1", "sir_2", "sar_1", "sdri")]).all()
    losses = RunLog(out, columns(2), rows[0]["data_id"]).losses()
    assert all(len(losses[r["key"]]) == 64 and losses[r["key"]][-1] == float(r["final_loss"])
               for r in rows)  # fmt: skip
    assert "8 runs (4 settings x 2 seeds); 0 already" in result.stderr


def test_summary_csv_and_table_hold_the_statistics_of_the_runs(done):
    out, result = done
    rows, summary = read_csv(out / "runs.csv"), read_csv(out / "summary.csv")
    assert len(summary) == 4
    for entry in summary:
        sdri = [float(r["sdri"]) for r in rows
                if (r["n_basis"], r["update"]) == (entry["n_basis"], entry["update"])]  # fmt: skip
        assert entry["n_runs"] == "2"
        assert float(entry["sdri_mean"]) == pytest.approx(np.mean(sdri))
        assert float(entry["sdri_median"]) == pytest.approx(np.median(sdri))
        assert (float(entry["sdri_min"]), float(entry["sdri_max"])) == (min(sdri), max(sdri))
    lines = result.stdout.splitlines()
    assert "n_fft=1024" in lines[0] and "n_basis" not in lines[0]
    assert lines[1].split() == ["n_basis", "update", "runs", "SDRi", "mean", "SDRi", "median",
                                "SDRi", "min", "SDRi", "max"]  # fmt: skip
    assert len(lines) == 6 and lines[3].split()[:3] == ["2", "iss", "2"]


@pytest.mark.parametrize("name", ["sdr_boxplot.png", "loss_curves.png"])
def test_figures_are_valid_non_blank_pngs(done, name):
    import matplotlib.image

    image = matplotlib.image.imread(done[0] / name)
    assert image.ndim == 3 and image.shape[0] >= 400 and image.shape[1] >= 600
    assert image[..., :3].std() > 0.05


def test_boxplot_shows_the_csv_values(done, data, monkeypatch, tmp_path):
    drawn = []
    original = figures.sdr_boxplot_png

    def spy(boxes, xlabel, title):
        drawn.append((boxes, xlabel, title))
        return original(boxes, xlabel, title)

    monkeypatch.setattr(figures, "sdr_boxplot_png", spy)
    out = tmp_path / "copy"
    shutil.copytree(done[0], out)
    assert invoke(*sweep_args(data, out, *GRID)).exit_code == 0
    rows = read_csv(out / "runs.csv")
    boxes, xlabel, title = drawn[0]
    assert boxes == study_summary.box_data(rows)
    assert [name for name, _ in boxes] == ["n_basis=2, update=ip", "n_basis=2, update=iss",
                                           "n_basis=4, update=ip", "n_basis=4, update=iss"]  # fmt: skip
    assert [v for _, values in boxes for v in values] == [float(r["sdri"]) for r in rows]
    assert xlabel == "n_basis / update" and "n_fft=1024" in title and "2 seeds" in title


def test_resume_runs_only_what_is_missing(done, data, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(done[0], out)
    before = read_csv(out / "runs.csv")
    again = invoke(*sweep_args(data, out, *GRID))
    assert again.exit_code == 0, again.output
    assert "8 already in" in again.stderr and "0 to run" in again.stderr
    assert read_csv(out / "runs.csv") == before  # times included: nothing was run again

    with open(out / "runs.csv", "a") as handle:  # a crash while writing a row
        handle.write("deadbeef,half a row")
    more = invoke(*sweep_args(data, out, "--n-basis", "2", "--seeds", "0-2", "--no-figures"))
    assert more.exit_code == 0, more.output
    assert "3 runs (1 settings x 3 seeds); 2 already in" in more.stderr
    rows = read_csv(out / "runs.csv")
    assert len(rows) == 9 and [r["seed"] for r in rows[:3]] == ["0", "1", "2"]  # this grid first
    assert rows[:2] == before[:2] and rows[3:] == before[2:]


def test_resume_refuses_a_log_of_other_data_or_columns(done, data, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(done[0], out)
    swapped = invoke("sweep", data["mix"], "--refs", data["src2"], data["src1"], "-o", out, *FAST)
    assert swapped.exit_code == 1 and "other input or reference files" in swapped.stderr
    text = (out / "runs.csv").read_text()
    (out / "runs.csv").write_text(text.replace(",error\n", ",message\n", 1))
    renamed = invoke(*sweep_args(data, out))
    assert renamed.exit_code == 1 and "other columns" in renamed.stderr


def test_two_jobs_give_the_same_numbers_as_one(done, data, tmp_path):
    result = invoke(*sweep_args(data, tmp_path / "par", *GRID, "-j", 2, "--no-figures", "--json"))
    assert result.exit_code == 0, result.output
    parallel, serial = read_csv(tmp_path / "par" / "runs.csv"), read_csv(done[0] / "runs.csv")
    for row in parallel + serial:
        del row["seconds"]
    assert parallel == serial
    document = json.loads(result.stdout)
    assert (document["ran"], document["varying"], document["seeds"]) == (
        8,
        ["n_basis", "update"],
        [0, 1],
    )
    # every engine setting is a column since the settings schema (issue 13)
    assert document["fixed"] == {"n_fft": 1024, "hop": 512, "window": "hann", "n_iter": 3,
                                 "iva_iter": 20, "normalize": True, "ref_mic": 0,
                                 "model": "gauss", "dof": 1.0, "precision": "double",
                                 "spatial": "fullrank", "fullrank_iter": 60,
                                 "fullrank_basis": 16, "fullrank_weights": "alternate",
                                 "taps": 0, "delay": 2, "tap_refresh": 8,
                                 "dereverb": 0, "dereverb_delay": 2,
                                 "dereverb_n_fft": None}  # fmt: skip
    assert [(s["n_basis"], s["update"], s["n_runs"]) for s in document["summary"]] == [
        (2, "ip", 2), (2, "iss", 2), (4, "ip", 2), (4, "iss", 2)
    ]  # fmt: skip
    assert not (tmp_path / "par" / "sdr_boxplot.png").exists()


def test_save_audio_keeps_the_sources_of_each_run_under_its_key(data, tmp_path):
    result = invoke(*sweep_args(data, tmp_path, "--save-audio", "--no-figures"))
    assert result.exit_code == 0, result.output
    (row,) = read_csv(tmp_path / "runs.csv")
    mix = sf.info(data["mix"])
    for index in (1, 2):
        info = sf.info(tmp_path / "audio" / row["key"] / f"source{index}.wav")
        assert (info.frames, info.channels, info.samplerate) == (mix.frames, 1, mix.samplerate)


def test_dask_cluster_gives_the_same_rows_and_resumes(done, data, tmp_path):
    out = tmp_path / "dask"
    args = sweep_args(data, out, *GRID, "--scheduler", "local:2", "--no-figures")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    on_dask, serial = read_csv(out / "runs.csv"), read_csv(done[0] / "runs.csv")
    for row in on_dask + serial:
        del row["seconds"]
    assert on_dask == serial
    again = invoke(*args)
    assert again.exit_code == 0
    assert "8 already in" in again.stderr and "0 to run" in again.stderr


def test_a_torn_losses_line_is_cut_and_the_sweep_goes_on(done, data, tmp_path):
    out = tmp_path / "torn"
    shutil.copytree(done[0], out)
    with open(out / "losses.jsonl", "a") as handle:
        handle.write('{"key": "x", "loss": [1, 2')
    result = invoke(*sweep_args(data, out, *GRID[:-2], "--restarts", "3"))
    assert result.exit_code == 0, result.output
    assert len(read_csv(out / "runs.csv")) == 12
    lines = (out / "losses.jsonl").read_text().splitlines()
    assert all(json.loads(line)["key"] != "x" for line in lines) and len(lines) == 12


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Runs in this process (so a patched ``separate`` applies); ``failing[...]`` says
    whether the run of n_basis 4, seed 1 raises a numerical failure."""
    from ilrma_cli.commands import sweep as sweep_command

    state = {"failing": True}
    separate = study_run.separate

    def fragile(mixture, settings, rate=None):
        if state["failing"] and (settings.ilrma.n_basis, settings.seed) == (4, 1):
            raise np.linalg.LinAlgError("Singular matrix")
        return separate(mixture, settings, rate=rate)

    def serial(func, items, jobs):
        return ((index, func(item)) for index, item in enumerate(items))

    monkeypatch.setattr(study_run, "separate", fragile)
    monkeypatch.setattr(sweep_command, "imap_processes", serial)
    return state


def test_a_failed_run_is_logged_the_sweep_finishes_and_exits_1(done, data, tmp_path, in_process):
    out = tmp_path / "failing"
    result = invoke(*sweep_args(data, out, *GRID))
    assert result.exit_code == 1, result.output
    rows = read_csv(out / "runs.csv")
    assert list(rows[0]) == columns(2)
    failed = [r for r in rows if r["status"] == "failed"]
    assert [(r["n_basis"], r["update"], r["seed"]) for r in failed] == [("4", "ip", "1"),
                                                                       ("4", "iss", "1")]  # fmt: skip
    assert {r["error"] for r in failed} == {"Singular matrix"}
    assert all(r[c] == "" for r in failed for c in result_columns(2))
    serial = {r["key"]: r for r in read_csv(done[0] / "runs.csv")}
    for row in rows:
        if row["status"] == "ok":
            assert row["error"] == "" and row["sdri"] == serial[row["key"]]["sdri"]
    assert len((out / "losses.jsonl").read_text().splitlines()) == 6

    summary = read_csv(out / "summary.csv")
    assert [(s["n_basis"], s["update"], s["n_runs"], s["n_failed"]) for s in summary] == [
        ("2", "ip", "2", "0"), ("2", "iss", "2", "0"), ("4", "ip", "1", "1"), ("4", "iss", "1", "1")
    ]  # fmt: skip
    (survivor,) = [r for r in rows if (r["n_basis"], r["update"], r["status"]) == ("4", "ip", "ok")]
    assert float(summary[2]["sdri_mean"]) == float(survivor["sdri"])
    lines = result.stdout.splitlines()
    assert lines[1].split()[:4] == ["n_basis", "update", "runs", "failed"]
    assert lines[4].split()[:4] == ["4", "ip", "1", "1"]
    assert result.stderr.count("WARNING: run ") == 2 and "failed: Singular matrix" in result.stderr
    assert (
        result.stderr.splitlines()[-1].startswith("Error: 2 of 8 runs failed (first: run ")
        and "rerun to retry them" in result.stderr
    )
    assert (out / "sdr_boxplot.png").exists() and (out / "loss_curves.png").exists()

    in_process["failing"] = False  # the cause is gone: a rerun retries the failed runs only
    again = invoke(*sweep_args(data, out, *GRID, "--json"))
    assert again.exit_code == 0, again.output
    assert "6 already in" in again.stderr and "2 to run (2 failed before: retried)" in again.stderr
    retried = read_csv(out / "runs.csv")
    assert [r["key"] for r in retried] == [r["key"] for r in rows]  # replaced in place, once
    assert all(r["status"] == "ok" for r in retried)
    assert [r for r in retried if r["key"] not in {f["key"] for f in failed}] == [
        r for r in rows if r["status"] == "ok"
    ]
    document = json.loads(again.stdout)
    assert document["ran"] == 2 and document["failed"] == []
    assert {s["n_failed"] for s in document["summary"]} == {0}


def test_failed_runs_are_listed_in_the_json_and_a_setting_without_success_has_no_statistics(
    data, tmp_path, in_process
):
    out = tmp_path / "failing"
    result = invoke(*sweep_args(data, out, "--n-basis", "2,4", "--seeds", "1", "--json", "-q"))
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    (failure,) = document["failed"]
    assert (failure["n_basis"], failure["seed"], failure["error"]) == (4, 1, "Singular matrix")
    assert [(s["n_basis"], s["n_runs"], s["n_failed"]) for s in document["summary"]] == [
        (2, 1, 0), (4, 0, 1)
    ]  # fmt: skip
    assert document["summary"][1]["sdri"] == dict.fromkeys(study_summary.STATISTICS)
    assert read_csv(out / "summary.csv")[1]["sdri_mean"] == "nan"
    assert result.stderr.startswith("Error: 1 of 2 runs failed")  # -q: only the error


def test_references_of_other_lengths_warn_unless_quiet(data, tmp_path):
    short = tmp_path / "short.wav"
    signal, rate = sf.read(data["src2"])
    sf.write(short, signal[:rate], rate, subtype="FLOAT")
    args = ["sweep", data["mix"], "--refs", data["src1"], short, "-o", tmp_path / "out"]
    loud, quiet = invoke(*args), invoke(*args, "-q")
    refused = f"Error: {data['src1']}: has {rate} samples, the mixture {2 * rate}: references must match it\n"
    warning = (f"WARNING: lengths differ: {short} has {rate} samples, {data['src1']} has "
               f"{2 * rate}; every signal is trimmed to {rate} samples\n")  # fmt: skip
    assert (loud.exit_code, loud.stderr) == (1, warning + refused)
    assert (quiet.exit_code, quiet.stderr) == (1, refused)


def test_each_study_run_is_one_seed_whatever_the_restarts_default():
    from ilrma_cli.settings import BY_NAME, SeparationSettings
    from ilrma_cli.study.grid import SETTING_COLUMNS, plan_runs

    assert SeparationSettings().restarts > 1  # the default is the mean of several runs
    grid = {name: [BY_NAME[name].default] for name in SETTING_COLUMNS}
    runs = plan_runs(grid, [0, 1, 2], "data", 16000, 16000 * 10)
    assert [run.settings.seed for run in runs] == [0, 1, 2]
    assert all(run.settings.restarts == 1 for run in runs)
