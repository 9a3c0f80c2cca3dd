"""``ilrma evaluate`` from the command line: forms of arguments, outputs, every error path."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import DEV

from ilrma_cli.cli import cli
from ilrma_cli.commands.options import expand_variadic
from ilrma_cli.metrics import score

RATE = 16000
N_SAMPLES = 3 * RATE


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """3 s of a dev case: 2-channel reference images, mixture, and two mono estimates
    written in swapped order (est_a.wav estimates src2)."""
    folder = tmp_path_factory.mktemp("evaluate")
    case = DEV / "arctic_2src_rt250"
    images = [sf.read(case / f"src{i}.wav", dtype="float64")[0][:N_SAMPLES].T for i in (1, 2)]
    mix = images[0] + images[1]
    rng = np.random.default_rng(0)
    estimates = [
        images[1][0] + 0.2 * images[0][1] + 0.01 * rng.standard_normal(N_SAMPLES),
        images[0][0] + 0.3 * images[1][1] + 0.01 * rng.standard_normal(N_SAMPLES),
    ]
    paths = {
        "ref1": folder / "src1.wav",
        "ref2": folder / "src2.wav",
        "mix": folder / "mix.wav",
        "est_a": folder / "est" / "est_a.wav",
        "est_b": folder / "est" / "est_b.wav",
    }
    paths["est_a"].parent.mkdir()
    for name, data in zip(("ref1", "ref2", "mix"), (*images, mix), strict=True):
        sf.write(paths[name], data.T, RATE, subtype="FLOAT")
    for name, data in zip(("est_a", "est_b"), estimates, strict=True):
        sf.write(paths[name], data, RATE, subtype="FLOAT")
    (paths["est_a"].parent / "notes.txt").write_text("not audio")
    (paths["est_a"].parent / ".est_c.wav.x1.part").write_text("hidden temporary file")
    signals = {
        name: sf.read(path, dtype="float64", always_2d=True)[0][:, 0]
        for name, path in paths.items()
    }
    expected = score(
        np.stack([signals["ref1"], signals["ref2"]]),
        np.stack([signals["est_a"], signals["est_b"]]),
        signals["mix"],
    )
    return {name: str(path) for name, path in paths.items()}, expected


def invoke(*args: str):
    return CliRunner().invoke(cli, ["evaluate", *args])


def est_dir(paths) -> str:
    return str(Path(paths["est_a"]).parent)


def refs(paths) -> list[str]:
    return ["--refs", paths["ref1"], paths["ref2"]]


def test_table_on_stdout_with_the_permutation(files):
    paths, expected = files
    result = invoke(paths["est_a"], paths["est_b"], *refs(paths))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["reference", "estimate", "SDR", "SIR", "SAR", "SI-SDR"]
    name = {key: Path(path).name for key, path in paths.items()}  # names in tables (issue 16)
    assert lines[1].split()[:2] == [name["ref1"], name["est_b"]]
    assert lines[2].split()[:2] == [name["ref2"], name["est_a"]]
    assert lines[3].split()[0] == "mean" and len(lines) == 4
    assert [float(v) for v in lines[1].split()[2:]] == pytest.approx(
        [expected.sdr[0], expected.sir[0], expected.sar[0], expected.si_sdr[0]], abs=0.005
    )


@pytest.mark.parametrize(
    "form",
    [
        "{est_a} {est_b} --refs {ref1} {ref2} --json --mix {mix}",
        "--refs {ref1} {ref2} --est-dir {est_dir} --json --mix {mix}",
        "--refs {ref1} {ref2} --json --mix {mix} {est_a} {est_b}",
        "--refs {ref1} {ref2} --mix {mix} --json -- {est_a} {est_b}",
        "--mix {mix} --refs={ref1} {ref2} --json -- {est_a} {est_b}",
    ],
)
def test_json_document_from_every_form_of_arguments(files, form):
    paths, expected = files
    result = invoke(*form.format(est_dir=est_dir(paths), **paths).split())
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["references"] == [paths["ref1"], paths["ref2"]]
    assert document["estimates"] == [paths["est_a"], paths["est_b"]]
    assert document["mixture"] == paths["mix"]
    assert (document["rate"], document["n_samples"], document["backend"]) == (
        RATE,
        N_SAMPLES,
        "fast",
    )
    assert document["permutation"] == [1, 0]
    first = document["sources"][0]
    assert (first["reference_file"], first["estimate_file"]) == (paths["ref1"], paths["est_b"])
    for name in ("sdr", "sir", "sar", "si_sdr", "sdr_mix", "sir_mix", "sar_mix", "sdri", "siri"):
        assert [entry[name] for entry in document["sources"]] == pytest.approx(
            getattr(expected, name), abs=1e-9
        )
        assert document["mean"][name] == pytest.approx(np.mean(getattr(expected, name)))


def test_csv_file_written_beside_the_table(files, tmp_path):
    paths, expected = files
    target = tmp_path / "scores.csv"
    result = invoke(
        paths["est_a"], paths["est_b"], *refs(paths), "--mix", paths["mix"], "--csv", str(target)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("reference")
    with target.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "reference", "estimate", "sdr", "sir", "sar", "si_sdr",
        "sdr_mix", "sir_mix", "sar_mix", "sdri", "siri",
    ]  # fmt: skip
    assert [(row["reference"], row["estimate"]) for row in rows] == [
        (paths["ref1"], paths["est_b"]),
        (paths["ref2"], paths["est_a"]),
        ("mean", ""),
    ]
    assert [float(row["sdri"]) for row in rows[:2]] == pytest.approx(expected.sdri, abs=1e-9)
    assert float(rows[2]["sir"]) == pytest.approx(np.mean(expected.sir), abs=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]  # no temporary left


def test_mir_eval_backend_and_ref_mic(files):
    paths, _ = files
    base = [paths["est_a"], paths["est_b"], *refs(paths), "--json", "--ref-mic", "1"]
    fast = json.loads(invoke(*base).stdout)
    reference = json.loads(invoke(*base, "--backend", "mir_eval").stdout)
    assert reference["backend"] == "mir_eval"
    assert reference["permutation"] == fast["permutation"]
    for ours, theirs in zip(fast["sources"], reference["sources"], strict=True):
        assert ours["sdr"] == pytest.approx(theirs["sdr"], abs=0.01)
        assert ours["sir"] == pytest.approx(theirs["sir"], abs=0.01)
    mic0 = json.loads(invoke(*base[:-2]).stdout)
    assert fast["sources"][0]["sdr"] != pytest.approx(mic0["sources"][0]["sdr"], abs=0.1)


def test_lengths_are_trimmed_with_a_warning(files, tmp_path):
    paths, _ = files
    short = tmp_path / "short.wav"
    sf.write(short, sf.read(paths["est_b"])[0][:40000], RATE, subtype="FLOAT")
    result = invoke(paths["est_a"], str(short), *refs(paths), "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"WARNING: lengths differ: {short} has 40000 samples, {paths['ref1']} has {N_SAMPLES}; "
        "every signal is trimmed to 40000 samples\n"
    )
    assert json.loads(result.stdout)["n_samples"] == 40000
    quiet = invoke(paths["est_a"], str(short), *refs(paths), "--json", "-q")
    assert (quiet.exit_code, quiet.stderr, quiet.stdout) == (0, "", result.stdout)


@pytest.fixture
def bad_files(files, tmp_path):
    paths, _ = files
    one = sf.read(paths["est_a"])[0]
    silent, nan, rate8k, garbage = (
        tmp_path / n for n in ("silent.wav", "nan.wav", "8k.wav", "bad.wav")
    )
    sf.write(silent, np.zeros((N_SAMPLES, 2)), RATE, subtype="FLOAT")
    sf.write(nan, np.where(np.arange(N_SAMPLES) == 5, np.nan, one), RATE, subtype="FLOAT")
    sf.write(rate8k, one, 8000, subtype="FLOAT")
    garbage.write_text("RIFF but not really")
    return {"silent": str(silent), "nan": str(nan), "8k": str(rate8k), "bad": str(garbage)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "{est_a} --refs {ref1} {ref2}",
            "{ref2}: 1 estimate for 2 references: this reference has no estimate",
        ),
        (
            "{est_a} {est_b} {mix} --refs {ref1} {ref2}",
            "{mix}: 3 estimates for 2 references: this estimate has no reference",
        ),
        (
            "--refs {ref1} --est-dir {est_dir}",
            "{est_dir}: 2 estimates for 1 reference: give one audio file per reference",
        ),
        (
            "{est_a} {8k} --refs {ref1} {ref2}",
            "{8k}: sample rate 8000 Hz differs from {ref1} (16000 Hz)",
        ),
        (
            "{est_a} {est_b} --refs {silent} {ref2}",
            "{silent}: is silent (all samples zero): BSS Eval is undefined for it",
        ),
        ("{est_a} {nan} --refs {ref1} {ref2}", "{nan}: contains NaN or infinite samples"),
        (
            "{est_a} {est_b} --refs {ref1} {ref2} --mix {nan}",
            "{nan}: contains NaN or infinite samples",
        ),
        ("{est_a} {est_b} --refs {ref1} {missing}", "{missing}: no such file"),
        ("{est_a} {bad} --refs {ref1} {ref2}", "{bad}: not a readable audio file"),
        (
            "{est_a} {est_b} --refs {ref1} {ref2} --ref-mic 2",
            "{ref1}: has 2 channels: --ref-mic 2 does not exist",
        ),
        ("--refs {ref1} {ref2} --est-dir {missing}", "{missing}: no such directory"),
        ("--refs {ref1} {ref2} --est-dir {mix}", "{mix}: is not a directory"),
        ("{est_a} {est_b} --refs {ref1} {ref2} --csv {mix}/x.csv", "{mix}/x.csv: cannot write"),
    ],
)
def test_errors_name_the_file_on_one_line(files, bad_files, tmp_path, args, message):
    paths, _ = files
    names = {**paths, **bad_files, "est_dir": est_dir(paths)}
    names["missing"] = str(tmp_path / "missing.wav")
    result = invoke(*args.format(**names).split())
    assert result.exit_code == 1
    assert result.stdout == ""
    error_lines = [line for line in result.stderr.splitlines() if not line.startswith("Warning")]
    assert error_lines == [error_lines[0]]
    assert error_lines[0].startswith("Error: " + message.format(**names))
    assert isinstance(result.exception, SystemExit)  # no traceback


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("{est_a} {est_b} --refs {ref1} {ref2} --est-dir {est_dir}", "not both"),
        ("--refs {ref1} {ref2} {est_a} {est_b}", "no ESTIMATE files: put them before --refs"),
        ("{est_a} {est_b} --refs", "Option '--refs' requires at least one value."),
        ("{est_a} {est_b} --refs --json", "Option '--refs' requires at least one value."),
        ("{est_a} {est_b}", "Missing option '--refs'"),
        ("{est_a} {est_b} --refs {ref1} {ref2} --backend museval", "'museval' is not one of"),
    ],
)
def test_usage_errors_exit_2(files, args, message):
    paths, _ = files
    names = {**paths, "est_dir": est_dir(paths)}
    result = invoke(*args.format(**names).split())
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "expanded"),
    [
        (["e1", "--refs", "a", "b"], ["e1", "--refs", "a", "--refs", "b"]),
        (["--refs=a", "b", "--json", "e"], ["--refs", "a", "--refs", "b", "--json", "e"]),
        (["--refs", "a", "--", "e", "--refs"], ["--refs", "a", "--", "e", "--refs"]),
        (["--refs", "a", "--refs", "b"], ["--refs", "a", "--refs", "b"]),
        (["--mix", "m", "e"], ["--mix", "m", "e"]),
    ],
)
def test_expand_variadic(args, expanded):
    assert expand_variadic(args, {"--refs"}) == expanded


def test_the_same_reference_twice_gives_the_same_permutation_in_both_backends(files):
    paths, _ = files
    args = [paths["est_a"], paths["est_b"], "--refs", paths["ref1"], paths["ref1"], "--json"]
    fast, reference = invoke(*args), invoke(*args, "--backend", "mir_eval")
    assert fast.exit_code == reference.exit_code == 0, fast.output + reference.output
    assert json.loads(fast.stdout)["permutation"] == [0, 1]
    assert json.loads(reference.stdout)["permutation"] == [0, 1]
