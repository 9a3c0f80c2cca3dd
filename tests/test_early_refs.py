"""``--early-refs`` (issue 15): scores against the early images in separate, evaluate and sweep.

Through the real CLI on 2 s of a reverberant dev case (``earlyK.wav`` beside ``srcK.wav``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DEV, invoke, read_csv

from ilrma_cli.metrics import score

FAST = ["--n-iter", "5", "--iva-iter", "5", "--n-fft", "1024", "--hop", "256", "--no-progress"]
SECONDS = 2


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first 2 s of arctic_2src_rt600: mix, src1/2 and early1/2 (2 channels each),
    an early image cut 0.5 s shorter, and a quick separation of the mixture."""
    folder = tmp_path_factory.mktemp("early")
    paths = {}
    for name in ("mix", "src1", "src2", "early1", "early2"):
        data, rate = sf.read(DEV / "arctic_2src_rt600" / f"{name}.wav")
        paths[name] = folder / f"{name}.wav"
        sf.write(paths[name], data[: SECONDS * rate], rate, subtype="FLOAT")
    data, rate = sf.read(paths["early2"])
    paths["short"] = folder / "short.wav"
    sf.write(paths["short"], data[: rate * SECONDS - rate // 2], rate, subtype="FLOAT")
    out = folder / "sep"
    result = invoke("separate", paths["mix"], "-o", out, *FAST, "-q")
    assert result.exit_code == 0, result.output
    paths["est1"], paths["est2"] = out / "mix" / "source1.wav", out / "mix" / "source2.wav"
    return paths


def early(case: dict[str, Path]) -> list[Path]:
    return [case["early1"], case["early2"]]


def refs(case: dict[str, Path]) -> list[Path]:
    return [case["src1"], case["src2"]]


def test_separate_scores_against_the_early_images(case, tmp_path):
    out = tmp_path / "o"
    result = invoke("separate", case["mix"], "-o", out, *FAST, "--json",
                    "--refs", *refs(case), "--early-refs", *early(case))  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "mix" / "report.json").read_text())
    assert report["early_references"] == [str(p) for p in early(case)]
    full, against_early = report["metrics"], report["metrics_early"]
    assert sorted(against_early["permutation"]) == [0, 1]
    assert set(against_early["mean"]) >= {"sdr", "sir", "sar", "sdri"}
    assert against_early["mean"]["sdri"] != pytest.approx(full["mean"]["sdri"])
    (mixture,) = json.loads(result.stdout)["mixtures"]
    assert (mixture["metrics"], mixture["metrics_early"]) == (full, against_early)
    assert "scores in dB against --early-refs" in result.stderr and "early1.wav" in result.stderr
    # the same numbers as scoring the written files against the early images at mic 0
    signals = [sf.read(p, always_2d=True)[0][:, 0] for p in (*early(case), case["mix"])]
    estimates = [sf.read(out / "mix" / f"source{i}.wav")[0] for i in (1, 2)]
    expected = score(np.stack(signals[:2]), np.stack(estimates), signals[2]).means()
    assert against_early["mean"]["sdri"] == pytest.approx(expected["sdri"], abs=1e-3)

    alone = invoke("separate", case["mix"], "-o", tmp_path / "a", *FAST, "-q",
                   "--early-refs", *early(case))  # fmt: skip
    assert alone.exit_code == 0, alone.output
    report = json.loads((tmp_path / "a" / "mix" / "report.json").read_text())
    assert (report["references"], report["metrics"]) == ([], None)
    assert report["metrics_early"]["mean"] == pytest.approx(against_early["mean"])


def test_evaluate_scores_against_the_early_images(case, tmp_path):
    estimates = [case["est1"], case["est2"]]
    args = ["evaluate", *estimates, "--refs", *refs(case), "--early-refs", *early(case),
            "--mix", case["mix"]]  # fmt: skip
    table = invoke(*args, "--csv", tmp_path / "scores.csv")
    assert table.exit_code == 0, table.output
    assert "against the early images (--early-refs):" in table.stdout
    document = json.loads(invoke(*args, "--json").stdout)
    against_early = document["metrics_early"]
    assert against_early["references"] == [str(p) for p in early(case)]
    assert {s["reference_file"] for s in against_early["sources"]} == {str(p) for p in early(case)}
    signals = [sf.read(p, always_2d=True)[0][:, 0] for p in (*early(case), *estimates, case["mix"])]
    expected = score(np.stack(signals[:2]), np.stack(signals[2:4]), signals[4]).means()
    assert against_early["mean"] == pytest.approx(expected)
    assert document["mean"] != pytest.approx(expected)  # the --refs scores stay their own
    rows = read_csv(tmp_path / "scores.csv")
    assert [row["reference"] for row in rows] == [
        *(str(p) for p in refs(case)), "mean", *(str(p) for p in early(case)), "mean early"
    ]  # fmt: skip
    assert float(rows[-1]["sdri"]) == pytest.approx(expected["sdri"])


def test_sweep_logs_and_summarises_the_early_scores(case, tmp_path):
    out = tmp_path / "study"
    result = invoke("sweep", case["mix"], "--refs", *refs(case), "--early-refs", *early(case),
                    "-o", out, *FAST, "--seeds", "0", "--no-figures", "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = read_csv(out / "runs.csv")
    for name in ("sdr_early_1", "sir_early_2", "sar_early_1", "sdri_early", "sdri"):
        assert np.isfinite(float(row[name])), name
    (summary,) = read_csv(out / "summary.csv")
    assert float(summary["sdri_early_mean"]) == pytest.approx(float(row["sdri_early"]))
    (entry,) = json.loads(result.stdout)["summary"]
    assert entry["sdri_early"]["mean"] == pytest.approx(float(row["sdri_early"]))
    assert entry["sdri"]["mean"] == pytest.approx(float(row["sdri"]))


def test_without_early_images_the_sweep_log_keeps_its_columns(case, tmp_path):
    out = tmp_path / "study"
    result = invoke("sweep", case["mix"], "--refs", *refs(case), "-o", out, *FAST,
                    "--seeds", "0", "--no-figures", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not any("early" in name for name in read_csv(out / "runs.csv")[0])
    assert "early mean" not in result.stdout


def _one_line_error(result: object, message: str, out: Path) -> None:
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    assert result.stderr == f"Error: {message}\n"  # type: ignore[attr-defined]
    assert not out.exists()


def test_separate_errors_are_one_line_before_any_work(case, tmp_path):
    out = tmp_path / "o"
    base = ["separate", case["mix"], "-o", out, *FAST, "--refs", *refs(case), "--json"]
    one = invoke(*base, "--early-refs", case["early1"])
    _one_line_error(one, f"{case['early1']}: 1 references given for 2 separated sources", out)
    assert json.loads(one.stdout)["error"].endswith("1 references given for 2 separated sources")
    missing = invoke(*base[:-1], "--early-refs", case["early1"], tmp_path / "nope.wav")
    _one_line_error(missing, f"{tmp_path / 'nope.wav'}: no such file", out)
    two = invoke("separate", case["mix"], case["src1"], "--early-refs", *early(case))
    assert two.exit_code == 2
    assert "--early-refs scores one mixture: give a single mixture with it" in two.stderr


def test_separate_scores_early_images_of_another_length_on_the_common_start(case, tmp_path):
    result = invoke("separate", case["mix"], "-o", tmp_path / "o", *FAST,
                    "--early-refs", case["early1"], case["short"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"WARNING: lengths differ: {case['short']} has 24000 samples" in result.stderr
    assert "the --early-refs files have 24000 samples, the mixture 32000" in result.stderr


def test_evaluate_errors_are_one_line(case, tmp_path):
    estimates = [case["est1"], case["est2"]]
    csv_path = tmp_path / "scores.csv"
    base = ["evaluate", *estimates, "--refs", *refs(case), "--csv", csv_path, "--early-refs"]
    one = invoke(*base, case["early1"])
    message = "2 estimates for 1 reference: this estimate has no reference"
    assert (one.exit_code, one.stderr) == (1, f"Error: {estimates[1]}: {message}\n")
    missing = invoke(*base, case["early1"], tmp_path / "nope.wav")
    assert (missing.exit_code, missing.stderr) == (
        1,
        f"Error: {tmp_path / 'nope.wav'}: no such file\n",
    )
    assert not csv_path.exists()


def test_sweep_errors_are_one_line_before_any_run(case, tmp_path):
    out = tmp_path / "study"
    base = ["sweep", case["mix"], "--refs", *refs(case), "-o", out, *FAST, "--no-figures"]
    short = invoke(*base, "-q", "--early-refs", case["short"], case["early1"])
    _one_line_error(
        short,
        f"{case['short']}: has 24000 samples, the mixture 32000: references must match it",
        out,
    )
    one = invoke(*base, "--early-refs", case["early1"])
    assert one.exit_code == 2 and not out.exists()
    assert "1 --early-refs for a mixture of 2 channels" in one.stderr
    missing = invoke(*base, "--early-refs", case["early1"], tmp_path / "nope.wav")
    _one_line_error(missing, f"{tmp_path / 'nope.wav'}: no such file", out)
