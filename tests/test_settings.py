"""The settings schema: one entry per setting, in step with the engine and the commands."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ilrma_cli.cli import cli
from ilrma_cli.engine import ILRMAConfig
from ilrma_cli.errors import IlrmaError
from ilrma_cli.settings import (
    BY_NAME,
    DEFAULT_ILRMA,
    GRID_SETTINGS,
    SETTINGS,
    SeparationSettings,
)
from ilrma_cli.stft import StftConfig
from ilrma_cli.study.grid import SETTING_COLUMNS, parse_grid, setting_of, typed

REPO = Path(__file__).resolve().parents[1]


def test_every_engine_and_separation_field_has_one_entry():
    engine = {f.name for f in dataclasses.fields(ILRMAConfig)} - {"record_loss"}
    assert engine == {s.name for s in SETTINGS if s.home == "engine"}
    own = {f.name for f in dataclasses.fields(SeparationSettings)} - {"stft", "ilrma", "window"}
    assert own == {s.name for s in SETTINGS if s.home == "separation"}
    assert {s.name for s in SETTINGS if s.home == "stft"} == {"n_fft", "hop", "window"}
    assert len(BY_NAME) == len(SETTINGS)


def test_defaults_are_the_engine_defaults_of_separate():
    expected = ILRMAConfig(n_basis=4, n_iter=100, update="ip", iva_iter=20, spatial="fullrank",
                           fullrank_iter=60, fullrank_basis=16,
                           fullrank_weights="alternate", tap_refresh=8)  # fmt: skip
    assert expected == DEFAULT_ILRMA
    assert SeparationSettings.from_values({}) == SeparationSettings()


@pytest.mark.parametrize(
    ("values", "spatial"),
    [({}, "fullrank"), ({"model": "t"}, "rank1"), ({"model": "partition"}, "rank1"),
     ({"taps": 2}, "rank1"), ({"spatial": "rank1"}, "rank1"),
     ({"spatial": "fullrank", "n_basis": 2}, "fullrank")],
)  # fmt: skip
def test_the_spatial_model_follows_the_source_model_and_taps_unless_given(values, spatial):
    assert SeparationSettings.from_values(values).ilrma.spatial == spatial
    with pytest.raises(ValueError, match="gauss model"):
        SeparationSettings.from_values({"model": "t", "spatial": "fullrank"})


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.choices], ids=lambda s: s.name)
def test_every_choice_is_accepted_where_the_setting_lives(setting):
    for choice in setting.choices:
        settings = SeparationSettings.from_values({setting.name: choice})
        assert settings.value(setting.name) == choice


def test_values_round_trip_through_the_csv_text_and_json():
    chosen = {"n_fft": 2048, "hop": 256, "window": "hamming", "n_basis": 3, "n_iter": 7,
              "update": "iss", "model": "t", "dof": 2.5, "precision": "single", "iva_iter": 0,
              "spatial": "rank1", "fullrank_iter": 50, "fullrank_basis": 8,
              "fullrank_weights": "frequency", "taps": 0, "delay": 3, "tap_refresh": 3,
              "dereverb": 2, "dereverb_delay": 1, "dereverb_n_fft": 1024, "normalize": False,
              "ref_mic": 1}  # fmt: skip
    settings = SeparationSettings.from_values(chosen)
    assert settings.stft == StftConfig(2048, 256, "hamming")
    assert (
        settings.ilrma.model == "t" and settings.ilrma.dof == 2.5 and not settings.ilrma.normalize
    )
    row = setting_of(settings)
    assert list(row) == list(SETTING_COLUMNS)
    assert typed(row) == chosen
    assert {k: v for k, v in settings.to_dict().items() if k in chosen} == chosen


def test_an_automatic_stft_shows_as_auto_and_resolves_with_the_rate():
    settings = SeparationSettings.from_values({"window": "hamming"})
    assert (settings.value("n_fft"), settings.value("hop"), settings.value("window")) == (
        "auto", "auto", "hamming"
    )  # fmt: skip
    assert settings.for_rate(44100).stft == StftConfig(8192, 2048, "hamming")
    assert SeparationSettings.from_values({"n_fft": 1000}).stft == StftConfig(1000, 250)


@pytest.mark.parametrize(
    ("values", "message"),
    [({"hop": 256}, "--hop needs --n-fft"), ({"n_fft": 256, "hop": 512}, "larger than"),
     ({"model": "laplace"}, "unknown model"), ({"dof": 0.0}, "dof must be positive"),
     ({"colour": "red"}, "unknown setting 'colour'")],
)  # fmt: skip
def test_combinations_the_settings_refuse(values, message):
    with pytest.raises(ValueError, match=message):
        SeparationSettings.from_values(values)


def test_every_grid_setting_is_a_sweep_option_and_parses_its_default():
    sweep = {flag for param in cli.commands["sweep"].params for flag in param.opts}
    separate = {flag for param in cli.commands["separate"].params for flag in param.opts}
    for setting in SETTINGS:
        assert setting.option in separate, setting.name
        assert setting.option in sweep or setting.sweep == "none", setting.name
    assert {"--seed", "--images", "--n-sources"}.isdisjoint(sweep)  # separate's alone
    for setting in GRID_SETTINGS:
        if setting.kind is not bool:
            default = "auto" if setting.default is None else str(setting.default)
            assert parse_grid(default, setting) == [setting.default]


@pytest.mark.parametrize(
    ("name", "text", "values"),
    [("dof", "1,2.5,1", [1.0, 2.5]), ("model", "t,gauss", ["t", "gauss"]),
     ("n_fft", "auto", [None]), ("precision", "single", ["single"])],
)  # fmt: skip
def test_grids_of_every_kind(name, text, values):
    assert parse_grid(text, BY_NAME[name]) == values


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [("dof", "0", "not above 0"), ("dof", "x", "not a number"), ("n_basis", "auto", "integer"),
     ("model", "gauss,laplace", "not one of")],
)  # fmt: skip
def test_grid_errors(name, text, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(text, BY_NAME[name])


def test_errors_and_the_library_layers_do_not_depend_on_click():
    assert not issubclass(IlrmaError, click.ClickException)
    modules = ["audio", "atomic", "batch.job", "batch.plan", "signals", "execute", "settings",
               "study.grid", "study.run", "study.log", "study.summary", "metrics"]  # fmt: skip
    code = "; ".join(f"import ilrma_cli.{name}" for name in modules)
    code += "; import sys; print('click' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=300)  # fmt: skip
    assert result.stdout.strip() == "False", result.stderr
