"""Figures as PNG bytes (matplotlib is imported only when a figure is asked for)."""

from __future__ import annotations

import importlib.util
import io

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


def loss_curve_png(loss: np.ndarray, title: str) -> bytes:
    """Negative log-likelihood per iteration (index 0 is the initial point) as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    ax.plot(np.arange(len(loss)), loss, marker="." if len(loss) <= 60 else None, lw=1.5)
    ax.set_xlabel("iteration")
    ax.set_ylabel("negative log-likelihood")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
