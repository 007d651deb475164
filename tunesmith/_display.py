"""User strings on a terminal: shown as the text they are, never as markup or control sequences.

Config values and keys, metric names, experiment names and error messages are data. rich would read
``"[INST] {prompt} [/INST]"`` (a Llama-2 prompt template) as markup and fail, or ``":thumbs_up:"`` as an
emoji; a terminal would obey ``"\\x1b]0;title\\x07"`` or ``"\\x1b[2J"`` in a value. Everything the progress
display, ``tunesmith show`` and ``tunesmith ls`` print goes through ``printable`` (plain text) or
``text`` (a rich ``Text``, which rich never parses for markup or emoji).
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI on some terminals), the
# bidirectional overrides and isolates that make a terminal show text in another order than it is, and lone
# surrogates (a cut-off escaped emoji, a file name's bytes that are not UTF-8), which no terminal encoding carries.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LINE_BREAKS = re.compile("[\t\n]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any, one_line: bool = False) -> str:
    """``str(value)`` with every control character written as its escape (``\\x1b``), so a terminal shows
    it instead of obeying it; with ``one_line`` also tab and newline (``\\t``, ``\\n``)."""
    text = value if isinstance(value, str) else str(value)
    text = _CONTROL.sub(_escape, text)
    if one_line:
        text = _LINE_BREAKS.sub(lambda m: "\\t" if m.group() == "\t" else "\\n", text)
    return text


def error_lines(error: str | None) -> list[str]:
    """A stored error's (a traceback's) lines, split at newlines only: ``str.splitlines`` also splits at the line
    and paragraph separators (U+2028, U+2029), form feeds and U+0085 that an exception's message may hold, and
    would cut its last line, the one that names the exception, there. ``[]`` for no error."""
    text = (error or "").strip()
    return text.split("\n") if text else []


def trial_counts(trials: Any, unit: str = "") -> str:
    """How many trials, ``unit`` after the number, and how many of each status: ``16 (4 error, 12 terminated)``
    (``16 trials (...)`` with ``unit=" trials"``); ``0`` for none, not ``0 ()``."""
    from collections import Counter

    counts = Counter(t.status.value.lower() for t in trials)
    total = sum(counts.values())
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{total}{unit} ({by_status})" if total else f"0{unit}"


CELL = 60  # characters of a value in a cell or a line (`tunesmith show`, `run`, the progress); --json gives it whole
ERROR_CHARS = 300  # of a failure's line (the last line of its error); the whole error is in the store


def cut(text: str, limit: int = CELL) -> str:
    """``text`` as it is, or when longer than ``limit``, its start and its length (a 10 kB LLM prompt in a config
    is data, not a screenful for each trial)."""
    return text if len(text) <= limit else f"{text[:limit - 20]}… ({len(text):,} characters)"


def text(value: Any, style: str = "", one_line: bool = True) -> Any:
    """A rich ``Text`` of ``printable(value)``: rich shows it literally (no markup, no emoji codes)."""
    from rich.text import Text

    return Text(printable(value, one_line=one_line), style=style)
