"""Figures as PNG bytes (matplotlib is imported only when a figure is asked for)."""

from __future__ import annotations

import importlib.util
import io
from typing import Any

import numpy as np

from ilrma_cli.errors import IlrmaError


def require_matplotlib(option: str) -> None:
    """Fail early, with the install command, when the ``plot`` extra is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise IlrmaError(
            f"{option} needs matplotlib, which is not installed: pip install 'ilrma-cli[plot]'"
        )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve_png(loss: np.ndarray, title: str, switch: int | None = None) -> bytes:
    """Negative log-likelihood per iteration (index 0 is the initial point) as a PNG.

    ``switch``: the last iteration of the rank-1 model, after which the full-rank model's
    own likelihood follows (marked by a dashed line).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    ax.plot(np.arange(len(loss)), loss, marker="." if len(loss) <= 60 else None, lw=1.5)
    if switch is not None and 0 < switch < len(loss) - 1:
        ax.axvline(switch, color="0.4", ls="--", lw=1)
        ax.annotate(" full-rank model (its own likelihood)", xy=(switch, 0.95),
                    xycoords=("data", "axes fraction"), va="top", fontsize=8)  # fmt: skip
    if len(loss) > 2:  # the initial point is far above; keep the iterations readable
        low, high = float(np.min(loss[1:])), float(np.max(loss[1:]))
        margin = 0.05 * (high - low) or 1.0
        ax.set_ylim(low - margin, high + margin)
        if loss[0] > high + margin:
            ax.annotate(f"initial {loss[0]:.4g} (off scale)", xy=(0.02, 0.95),
                        xycoords="axes fraction", va="top", fontsize=8)  # fmt: skip
    ax.set_xlabel("iteration")
    ax.set_ylabel("negative log-likelihood")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def spectrograms_png(
    mixture: np.ndarray,
    sources: np.ndarray,
    rate: int,
    title: str,
    mixture_label: str = "mixture",
    dynamic_range_db: float = 80.0,
) -> bytes:
    """Mixture channel ``(n_samples,)`` above each source ``(n_sources, n_samples)``, in dB.

    One colour scale for all panels (top ``dynamic_range_db`` below the loudest bin),
    time in seconds, frequency in kHz; a 64-ms Hann analysis for display only.
    """
    from ilrma_cli.stft import StftConfig, stft

    n_fft = max(int(2 ** np.ceil(np.log2(0.064 * rate))), 16)
    config = StftConfig(n_fft, n_fft // 4, "hann")
    signals = np.vstack([mixture[None, :], sources])
    power_db = 10 * np.log10(np.abs(stft(signals, config)) ** 2 + 1e-20)
    top = float(power_db.max())
    n_frames = power_db.shape[-1]
    extent = (0.0, n_frames * config.hop / rate, 0.0, rate / 2000)

    plt = _pyplot()
    rows = len(signals)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 1.9 * rows + 0.8), dpi=100, sharex=True)
    for row, (ax, panel) in enumerate(zip(np.atleast_1d(axes), power_db, strict=True)):
        image = ax.imshow(
            panel, origin="lower", aspect="auto", extent=extent, cmap="magma",
            vmin=top - dynamic_range_db, vmax=top,
        )  # fmt: skip
        ax.set_ylabel("frequency (kHz)")
        ax.set_title(mixture_label if row == 0 else f"source {row}", fontsize=9, loc="left")
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    fig.suptitle(title, fontsize=10)
    fig.colorbar(image, ax=axes, label="power (dB)", fraction=0.025, pad=0.01)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _wrapped(title: str, width: float) -> str:
    """Wrap each line of ``title`` to the figure width (inches) at the title font size."""
    import textwrap

    columns = int(width * 11)
    return "\n".join(textwrap.fill(line, columns) for line in title.splitlines())


def _png(fig: Any, plt: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def sdr_boxplot_png(boxes: list[tuple[str, list[float]]], xlabel: str, title: str) -> bytes:
    """One box per setting ``(label, SDRi values in dB)``, every run drawn as a point on it."""
    plt = _pyplot()
    width = min(14.0, max(6.0, 0.9 * len(boxes) + 2.5))
    fig, ax = plt.subplots(figsize=(width, 4.8), dpi=100)
    labels = [name for name, _ in boxes]
    ax.boxplot([values for _, values in boxes], widths=0.55, showfliers=False,
               medianprops={"color": "tab:orange", "lw": 2})  # fmt: skip
    rng = np.random.default_rng(0)  # fixed jitter: the same data give the same picture
    for position, (_, values) in enumerate(boxes, start=1):
        offsets = rng.uniform(-0.12, 0.12, len(values))
        ax.plot(position + offsets, values, "o", ms=4, alpha=0.6, color="tab:blue", mec="none")
    ax.set_xticks(range(1, len(boxes) + 1), labels,
                  rotation=30 if max(map(len, labels)) > 8 else 0,
                  ha="right" if max(map(len, labels)) > 8 else "center")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("SDR improvement, SDRi (dB)")
    ax.set_title(_wrapped(title, width), fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig, plt)


def loss_curves_png(groups: list[tuple[str, list[list[float]]]], legend_title: str,
                    title: str) -> bytes:  # fmt: skip
    """Loss per iteration of every run ``(setting label, curves)``, one colour per setting."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=100)
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "viridis")
    later = [v for _, curves in groups for curve in curves for v in curve[1:]]
    for index, (name, curves) in enumerate(groups):
        colour = cmap(index if len(groups) <= 10 else index / max(1, len(groups) - 1))
        for number, curve in enumerate(curves):
            ax.plot(np.arange(len(curve)), curve, color=colour, lw=1, alpha=0.7,
                    label=name if number == 0 else None)  # fmt: skip
    if later:  # the initial point is far above; keep the iterations readable
        low, high = min(later), max(later)
        margin = 0.05 * (high - low) or 1.0
        ax.set_ylim(low - margin, high + margin)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("iteration")
    ax.set_ylabel("negative log-likelihood")
    ax.set_title(_wrapped(title, 8), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(title=legend_title, fontsize=8, title_fontsize=8, ncol=2 if len(groups) > 6 else 1)
    fig.tight_layout()
    return _png(fig, plt)
