"""Versions of the package and of the libraries that decide its numbers."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ilrma_cli import __version__


def versions() -> dict[str, str]:
    found = {"ilrma": __version__}
    for name in ("numpy", "scipy", "soundfile", "mir_eval"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
