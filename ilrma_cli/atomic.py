"""Durable, atomic file writing: files appear whole, together, or not at all.

:class:`AtomicWriter` stages each file as a temporary ``.name.*.part`` beside its target
and renames them all in :meth:`~AtomicWriter.commit`, after an ``fsync`` of each, so a
crash or a full disk never leaves a partial file under a target's name.
:class:`ilrma_cli.audio.AudioWriter` adds audio staged block by block. Errors are
:class:`~ilrma_cli.errors.OutputError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TypeVar

from ilrma_cli.errors import OutputError

Writer = TypeVar("Writer", bound="AtomicWriter")


class AtomicWriter:
    """Write several files so that they appear together or not at all.

    :meth:`commit` syncs then renames every staged temporary. :meth:`rollback` (also on
    any exception inside ``with``) removes the temporaries, every file this writer
    renamed, and the folders it created that are left empty. Nothing else is touched.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._done: list[Path] = []
        self._made_dirs: list[Path] = []

    def __enter__(self: Writer) -> Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.rollback()

    def _make_parent(self, path: Path) -> None:
        missing = []
        for parent in [path.parent, *path.parent.parents]:
            if parent.exists():
                break
            missing.append(parent)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(
                path, f"cannot write (cannot create folder {path.parent}: {err.strerror})"
            ) from None
        self._made_dirs.extend(missing)

    def stage(self, path: Path) -> tuple[int, Path]:
        """A new empty temporary beside ``path`` (its folder made if needed), to be renamed
        onto ``path`` at :meth:`commit`: its open descriptor and name."""
        path = Path(path)
        self._make_parent(path)
        try:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        except OSError as err:
            raise OutputError(path.parent, f"cannot write ({err.strerror})") from None
        os.fchmod(fd, new_file_mode())  # mkstemp makes it private; give it a normal file's mode
        self._pending.append((Path(name), path))
        return fd, Path(name)

    def write_bytes(self, path: Path, content: bytes) -> None:
        """Stage a small file (a report, a figure, a table)."""
        fd, _ = self.stage(path)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
        except OSError as err:
            raise OutputError(path, f"cannot write ({err.strerror})") from None

    def commit(self) -> list[Path]:
        """Sync each temporary to disk and rename it onto its target; returns the targets."""
        target = None
        try:
            for tmp, target in self._pending:
                _fsync(tmp)
                os.replace(tmp, target)
                self._done.append(target)
        except OSError as err:
            self.rollback()
            raise OutputError(target, f"cannot write ({err.strerror})") from None
        self._pending = []
        return list(self._done)

    def rollback(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        for path in self._done:
            path.unlink(missing_ok=True)
        for folder in sorted(self._made_dirs, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: someone else's files
                folder.rmdir()
        self._pending, self._done, self._made_dirs = [], [], []


def write_atomically(path: Path, content: str | bytes) -> None:
    """Replace ``path`` at once with ``content`` (text is UTF-8): one file, one commit."""
    with AtomicWriter() as writer:
        writer.write_bytes(path, content.encode("utf-8") if isinstance(content, str) else content)
        writer.commit()


def append_durably(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` and sync it to disk before returning."""
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file (0666 less the umask); mkstemp uses 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
