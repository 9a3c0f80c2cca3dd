"""Marked sections of BENCHMARKS.md that one benchmark script owns and rewrites."""

from __future__ import annotations

from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def replace_section(name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name: begin/end -->`` with ``body``."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    text = OUTPUT.read_text() if OUTPUT.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
