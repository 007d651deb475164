"""Measurements in docstrings and comments rot (issue 17 §6): the code keeps the one-line why and names the
benchmark that measures it. A timing written into a comment or a docstring fails here."""

from __future__ import annotations

import io
import pathlib
import re
import tokenize

import tunesmith

# a duration (12 ms, 0.5-0.8 us, 40 microseconds, 2 seconds of CPU) or a speed-up (3x faster)
TIMING = re.compile(r"\b\d[\d.,]*\s?(?:-\s?\d[\d.,]*\s?)?(?:ms|µs|us|microseconds?|milliseconds?|seconds? of CPU)\b"
                    r"|\b\d[\d.]*x (?:faster|slower)\b")


def timings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every timing in the comments and triple-quoted strings of ``source``."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        prose = tok.type == tokenize.COMMENT or (
            tok.type == tokenize.STRING and tok.string.lstrip("rbuRBU").startswith(('"""', "'''")))
        if prose:
            found += [(tok.start[0], m.group(0)) for m in TIMING.finditer(tok.string)]
    return found


def test_the_scan_finds_a_timing_in_a_comment_and_a_docstring_and_nothing_in_code() -> None:
    source = 'def f():\n    """Reads it (about 0.5 us a row)."""\n    x = "12 ms"  # 3x faster than before\n'
    assert timings(source) == [(2, "0.5 us"), (3, "3x faster")]


def test_no_measurement_in_the_libraries_comments_or_docstrings() -> None:
    root = pathlib.Path(tunesmith.__file__).parent
    found = [f"{p.relative_to(root)}:{line}: {text}" for p in sorted(root.rglob("*.py"))
             for line, text in timings(p.read_text(encoding="utf-8"))]
    assert found == [], "name the benchmark instead of a figure:\n" + "\n".join(found)
