"""Every separation setting, declared once: :data:`SETTINGS`.

Each :class:`Setting` says its name (the keyword of :class:`SeparationSettings` or of
:class:`~ilrma_cli.engine.ILRMAConfig`, the column of a study's CSV files and the key
in ``report.json`` and ``--json``), its type, default, limits or choices, help, where
it lives (``home``) and what ``sweep`` does with it (``sweep``). The options of
``separate`` and ``sweep`` (:mod:`ilrma_cli.commands.options`), the sweep's grid axes
and columns (:mod:`ilrma_cli.study`) and the settings in every JSON document are made
from this table: a new engine setting is one more entry here (and its field in
``ILRMAConfig``).

No click here: this is plain data, with :class:`SeparationSettings` built from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from ilrma_cli.engine import (
    FULLRANK_WEIGHTS,
    MODELS,
    PRECISIONS,
    RULES,
    SPATIAL_MODELS,
    ILRMAConfig,
)
from ilrma_cli.stft import WINDOWS, StftConfig

# "auto" STFT (QUALITY.md, "Frame length"): the longest of these frames (seconds) that leaves
# the recording at least AUTO_MIN_FRAMES frames, hop a quarter. The first is ~200 ms rounded
# to a power of two (4096 at 16 kHz); the others are 8192 and 11000 at 16 kHz.
AUTO_FRAME_SECONDS = (0.2, 0.512, 0.6875)
AUTO_MIN_FRAMES = 52
AUTO_HOP_DIVISOR = 4
AUTO = "auto"

Home = Literal["stft", "engine", "separation"]
SweepRole = Literal["grid", "fixed", "none"]


@dataclass(frozen=True)
class Setting:
    """One setting of a separation.

    ``home``: a field of :class:`StftConfig` (``stft``), of ``ILRMAConfig`` (``engine``)
    or of :class:`SeparationSettings` (``separation``). ``sweep``: a grid axis
    (``grid``), one value for every run (``fixed``), or not a sweep option (``none``).
    ``default`` None means "automatic" (``default_text`` says what that is) or "unset".
    A boolean is a flag (``flag``) that sets the opposite of its default.
    """

    name: str
    kind: type
    default: Any
    help: str
    home: Home
    sweep: SweepRole = "grid"
    example: str = ""
    minimum: float | None = None
    open_minimum: bool = False
    grid_minimum: float | None = None  # a sweep's own lower limit, when stricter
    choices: tuple[str, ...] = ()
    default_text: str | None = None
    flag: str | None = None

    @property
    def option(self) -> str:
        """The command-line spelling: ``--n-basis``, or the flag of a boolean."""
        return self.flag or "--" + self.name.replace("_", "-")

    def parse(self, text: str) -> Any:
        """One value from its text, as a CSV cell or a grid item holds it (``ValueError``)."""
        if text in (AUTO, "None") and self.default is None:
            return None
        if self.kind is bool:
            if text not in ("True", "False"):
                raise ValueError(f"{text!r} is not True or False")
            return text == "True"
        value = self.kind(text)
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """``ValueError`` for a value out of this setting's limits or choices."""
        if self.choices and value not in self.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}")
        if self.minimum is not None and value is not None:
            low = self.minimum
            if value < low or (self.open_minimum and value == low):
                relation = "above" if self.open_minimum else "at least"
                raise ValueError(f"{value} is not {relation} {low:g}")


SETTINGS: tuple[Setting, ...] = (
    Setting("n_fft", int, None, "STFT frame length in samples, any size", "stft",
            example="1024,2048,4096", minimum=2,
            default_text="auto: the longest of about 0.2, 0.5 and 0.7 s that leaves 52 frames; at 16 kHz 4096 below 6.7 s, 8192 to 8.9 s, 11000 beyond; 0.2 s for more sources than channels"),
    Setting("hop", int, None, "STFT hop in samples, at most --n-fft", "stft",
            example="512,1024", minimum=1, default_text="n_fft / 4"),
    Setting("window", str, "hann", "STFT window", "stft", example="hann,hamming",
            choices=WINDOWS),
    Setting("n_basis", int, 4, "NMF bases per source", "engine",
            example="2-9, 2,4,8 or 2-9:2", minimum=1),
    Setting("n_iter", int, 100, "ILRMA iterations", "engine", example="50,100,200",
            minimum=0, grid_minimum=1),
    Setting("update", str, "ip", "Demixing update rule", "engine", example="ip,iss",
            choices=RULES),
    Setting("model", str, "gauss", "Source model: Gaussian NMF, Student's t NMF (t-ILRMA), "
            "or bases shared by all sources (partition)", "engine", example="gauss,t",
            choices=MODELS),
    Setting("dof", float, 1.0, "Degrees of freedom of --model t", "engine", example="1,2,5",
            minimum=0.0, open_minimum=True),
    Setting("precision", str, "double", "Spectrograms in complex64 instead of complex128: "
            "about a fifth less memory (the iterations always run in double)",
            "engine", example="double,single", choices=tuple(sorted(PRECISIONS))),
    Setting("iva_iter", int, 20,
            "IVA iterations before ILRMA, a permutation-free start for the NMF model (0: none)",
            "engine", example="0,20", minimum=0),
    Setting("spatial", str, None, "Spatial model: rank1 (ILRMA), or fullrank (FastMNMF2 "
            "refined from the ILRMA solution, Wiener-filtered output; gauss model only, no "
            "--taps)", "engine", example="rank1,fullrank", choices=SPATIAL_MODELS,
            default_text="fullrank; rank1 with --model t or partition, or --taps"),
    Setting("fullrank_iter", int, 60, "Iterations of the full-rank model after the ILRMA "
            "ones (--spatial fullrank)", "engine", example="30,100", minimum=0),
    Setting("fullrank_basis", int, 16, "NMF bases per source of the full-rank model, refitted "
            "to the ILRMA outputs (--spatial fullrank)", "engine", example="4,16", minimum=1),
    Setting("fullrank_weights", str, "alternate", "Spatial weights of the full-rank model: "
            "shared by every frequency (FastMNMF2), one set per frequency (FastMNMF1), or "
            "alternate: the restarts take turns, shared first, and their sources are averaged "
            "(a run alone is shared) (--spatial fullrank)", "engine",
            example="shared,frequency,alternate", choices=FULLRANK_WEIGHTS),
    Setting("taps", int, 0, "Joint dereverberation: past frames of the convolutional demixing "
            "filter (0: none; 2 helps reverberant rooms, at 2x the time per iteration with 2 "
            "mics, 3x with 4)", "engine",
            example="0,2,5", minimum=0),
    Setting("delay", int, 2, "Prediction delay of the dereverberation filter, in frames "
            "(--taps)", "engine", example="1,2,3", minimum=1),
    Setting("tap_refresh", int, 8, "With --taps or --dereverb and the ip rule: the joint "
            "update of the dereverberation filters with the demixing (ILRMA-T's IP) every N "
            "iterations, IP on the dereverberated outputs between, at about 1.5-2x the cost "
            "of an iteration without taps (1: every iteration)", "engine", example="1,4,8",
            minimum=1),
    Setting("dereverb", int, 0, "Dereverberate first: joint ILRMA-T with this many past "
            "frames at a 0.2-s frame (--dereverb-n-fft), one source per channel, then "
            "separate the dereverberated mixture: sources closer to the early images, not the "
            "reverberant ones (0: off; 4 for reverberant speech, not for music or dry rooms, "
            "see the README; about 1.3x the time with 2 mics, 1.5x with 4)", "separation", example="0,4",
            minimum=0),
    Setting("dereverb_delay", int, 2, "Prediction delay of --dereverb, in frames of its "
            "own STFT", "separation", example="1,2,3", minimum=1),
    Setting("dereverb_n_fft", int, None, "Frame length of the --dereverb stage in samples, "
            "hop a quarter", "separation", example="2048,4096", minimum=4,
            default_text="auto: about 0.2 s, 4096 at 16 kHz"),
    Setting("normalize", bool, True, "Skip the per-iteration power normalisation", "engine",
            flag="--no-normalize"),
    Setting("ref_mic", int, 0, "Microphone (0-based) the sources are scaled to and scored at "
            "(the channel read from multichannel --refs)", "separation", sweep="fixed",
            minimum=0),
    Setting("images", bool, False, "Write each source as heard at every microphone",
            "separation", sweep="none", flag="--images"),
    Setting("seed", int, 0, "Seed of the random NMF initialisation: the same input, settings "
            "and seed give the same output", "separation", sweep="none", minimum=0),
    Setting("restarts", int, 4, "Runs with seeds seed, seed+1, ...; outputs the mean of "
            "their sources, each run's paired with those of the run that agrees most with the "
            "others (the medoid; of 2 runs, the lower final loss). 4 (the default) add about "
            "0.6 dB to one run on average and steady music results, at 2.5-3.2x its time on two "
            "cores (3.5x on one) and 1.6x its memory; 1 for speed",
            "separation", sweep="none", minimum=1),
    Setting("n_sources", int, None, "Sources to separate: fewer than the channels reduces "
            "by PCA; more than the channels needs the full-rank model (the default spatial "
            "model; expect a few dB per source, see the README)", "separation", sweep="none",
            minimum=2,
            default_text="one per channel"),
)  # fmt: skip
BY_NAME = {setting.name: setting for setting in SETTINGS}
# What a sweep varies or records, in column order.
SWEEP_SETTINGS = tuple(s for s in SETTINGS if s.sweep != "none")
GRID_SETTINGS = tuple(s for s in SETTINGS if s.sweep == "grid")


def auto_spatial(model: str, taps: int) -> str:
    """The spatial model when none is asked for: the full-rank refinement wherever it runs
    (the Gaussian model without taps), else rank 1 (QUALITY.md, "The full-rank default")."""
    return "fullrank" if model == "gauss" and not taps else "rank1"


def engine_config(values: Mapping[str, Any]) -> ILRMAConfig:
    """:class:`ILRMAConfig` from the engine settings' values, ``spatial`` None resolved."""
    engine = dict(values)
    if engine["spatial"] is None:
        engine["spatial"] = auto_spatial(engine["model"], engine["taps"])
    return ILRMAConfig(**engine)


# Defaults of `ilrma separate`, chosen on bench/quality.py and bench/grid.py (see QUALITY.md).
DEFAULT_ILRMA = engine_config({s.name: s.default for s in SETTINGS if s.home == "engine"})


def next_fast_len(target: int) -> int:
    """Smallest length >= ``target`` with no prime factor above 11 (fast for the FFT)."""
    length = max(target, 1)
    while True:
        rest = length
        for prime in (2, 3, 5, 7, 11):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return length
        length += 1


def auto_stft(rate: int, window: str = "hann", n_samples: int | None = None) -> StftConfig:
    """The default STFT for a recording of ``n_samples`` at ``rate`` Hz; hop a quarter of the frame.

    Long frames fit reverberant rooms better (the convolution is then nearly a product in
    each frequency), but ILRMA needs enough frames to estimate its demixing matrices and
    NMF activations. So the frame is the longest of :data:`AUTO_FRAME_SECONDS` that leaves
    at least :data:`AUTO_MIN_FRAMES` frames (``n_samples / hop``): at 16 kHz, 4096 below
    about 6.7 s, 8192 up to 8.9 s, 11000 from there. Without ``n_samples``, or for a
    shorter signal, the shortest: ~200 ms rounded to a power of two (4096/1024 at 16 kHz,
    8192/2048 at 44.1 and 48 kHz). The longer frames are multiples of 4 with small prime
    factors (fast FFTs).
    """
    n_fft = 2 ** max(int(round(np.log2(AUTO_FRAME_SECONDS[0] * rate))), 4)
    for seconds in AUTO_FRAME_SECONDS[1:]:
        longer = 4 * next_fast_len(int(round(seconds * rate / 4)))
        if n_samples is not None and n_samples / (longer // AUTO_HOP_DIVISOR) >= AUTO_MIN_FRAMES:
            n_fft = longer
    return StftConfig(n_fft, n_fft // AUTO_HOP_DIVISOR, window)


def check_stft_sizes(n_fft: int | None, hop: int | None) -> None:
    """``ValueError`` for a hop without a frame length (auto sets both) or longer than it."""
    if hop is not None and n_fft is None:
        raise ValueError("--hop needs --n-fft (the automatic STFT sets both)")
    if n_fft is not None and hop is not None and hop > n_fft:
        raise ValueError(f"{hop} is larger than --n-fft {n_fft}")


@dataclass(frozen=True)
class SeparationSettings:
    """Everything that decides a separation's output (besides the input).

    ``stft=None`` is "auto": :func:`auto_stft` of the input's sample rate, with ``window``.
    ``restarts`` runs seeds ``seed, seed + 1, ...`` and outputs the mean of the runs'
    sources paired with the medoid's (:mod:`ilrma_cli.consensus`). ``n_sources`` below
    the channel count separates in the principal subspace (:mod:`ilrma_cli.engine.pca`).
    """

    stft: StftConfig | None = None
    window: str = "hann"
    ilrma: ILRMAConfig = DEFAULT_ILRMA
    ref_mic: int = 0
    images: bool = False
    seed: int = 0
    restarts: int = 4
    n_sources: int | None = None
    dereverb: int = 0
    dereverb_delay: int = 2
    dereverb_n_fft: int | None = None

    def __post_init__(self) -> None:
        if self.restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {self.restarts}")
        if self.n_sources is not None and self.n_sources < 2:
            raise ValueError(f"n_sources must be >= 2, got {self.n_sources}")
        if self.dereverb < 0 or self.dereverb_delay < 1:
            raise ValueError("dereverb must be >= 0 and dereverb_delay >= 1")
        if self.dereverb and self.ilrma.taps:
            raise ValueError("--dereverb and --taps both dereverberate: choose one")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> SeparationSettings:
        """Settings from ``{name: value}`` of :data:`SETTINGS` (a missing name: its default).

        ``n_fft`` None is the automatic STFT; ``hop`` None is ``n_fft / 4``. Raises
        ``ValueError`` for a combination the settings refuse.
        """
        unknown = set(values) - set(BY_NAME)
        if unknown:
            raise ValueError(f"unknown setting {sorted(unknown)[0]!r}")
        value = {s.name: values.get(s.name, s.default) for s in SETTINGS}
        n_fft, hop, window = value["n_fft"], value["hop"], value["window"]
        check_stft_sizes(n_fft, hop)
        stft = None
        if n_fft is not None:
            stft = StftConfig(n_fft, max(n_fft // AUTO_HOP_DIVISOR, 1) if hop is None else hop,
                              window)  # fmt: skip
        engine = {s.name: value[s.name] for s in SETTINGS if s.home == "engine"}
        own = {s.name: value[s.name] for s in SETTINGS if s.home == "separation"}
        return cls(stft=stft, window=window, ilrma=engine_config(engine), **own)

    def value(self, name: str) -> Any:
        """The value of setting ``name``; ``"auto"`` for the sizes of an automatic STFT."""
        home = BY_NAME[name].home
        if home == "stft":
            if self.stft is None:
                return self.window if name == "window" else AUTO
            return getattr(self.stft, name)
        return getattr(self.ilrma if home == "engine" else self, name)

    def with_loss_per_iteration(self, wanted: bool) -> SeparationSettings:
        """These settings with the loss recorded after every iteration (for a loss plot or a
        sweep's log) or, ``wanted`` False, after the last only (a progress callback still
        sees every tenth): the same output, and about 13 % less time for the defaults (the
        log terms of every bin)."""
        return replace(self, ilrma=replace(self.ilrma, record_loss=wanted))

    def for_rate(
        self, rate: int | None, n_samples: int | None = None, n_channels: int | None = None
    ) -> SeparationSettings:
        """These settings with the "auto" STFT resolved for ``n_samples`` at ``rate`` Hz.

        More sources than ``n_channels`` take the shortest automatic frame whatever the
        length: the full-rank model then has more to estimate per frequency, and the
        ~200-ms frame did better on 5 of 6 such rooms (docs/FULLRANK.md).
        """
        if self.stft is not None:
            return self
        if rate is None:
            raise ValueError("the automatic STFT size needs the sample rate")
        more = n_channels is not None and (self.n_sources or 0) > n_channels
        return replace(self, stft=auto_stft(rate, self.window, None if more else n_samples))

    def dereverb_stft(self, rate: int) -> StftConfig:
        """The STFT of the ``--dereverb`` stage (:mod:`ilrma_cli.dereverb`): ``dereverb_n_fft``
        with a quarter hop, else the shortest automatic frame, ~0.2 s (4096/1024 at 16 kHz),
        whatever the separation's."""
        if self.dereverb_n_fft is not None:
            n_fft = self.dereverb_n_fft
            return StftConfig(n_fft, n_fft // AUTO_HOP_DIVISOR, self.window)
        return auto_stft(rate, self.window)

    def to_dict(self) -> dict[str, object]:
        """Every setting of :data:`SETTINGS` by name (for ``--json`` and ``report.json``)."""
        return {s.name: self.value(s.name) for s in SETTINGS}
