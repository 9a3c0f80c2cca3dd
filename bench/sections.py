"""Marked sections of BENCHMARKS.md that one benchmark script owns and rewrites."""

from __future__ import annotations

import re
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


def marked_sections(text: str) -> str:
    """Every ``<!-- name: begin -->`` ... ``<!-- name: end -->`` section of ``text``, in order,
    so that a script rewriting the rest of BENCHMARKS.md keeps the other scripts' sections."""
    pattern = re.compile(r"<!-- ([\w-]+): begin -->.*?<!-- \1: end -->", flags=re.DOTALL)
    return "".join(f"\n{match.group(0)}\n" for match in pattern.finditer(text))
