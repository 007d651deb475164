"""A lone surrogate in user text (what ``json.loads`` gives for a cut-off escaped emoji in a prompt data set, what
``os.listdir`` gives for a file name's bytes that are not UTF-8) is data like any other: stored as it is, and shown
escaped (``\\ud83d``) at every door that cannot carry it, as control characters are."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import tunesmith as ts

pytestmark = pytest.mark.timeout(120)

PROMPT = json.loads('"truncated emoji \\ud83d"')

SCRIPT = """
import json, sys, tunesmith as ts

def train(config):
    ts.report({"loss": 1.0, "note": "file-\\udcff.bin"})

if __name__ == "__main__":
    prompt = json.loads('"truncated emoji \\\\ud83d"')
    r = ts.run(train, {"prompt": ts.choice([prompt, "ok"])}, metric="loss", mode="min", num_samples=3, seed=1,
               name="sur", storage_path=sys.argv[1], verbose=1)
    print("STATUS", r.status)
"""


def _tunesmith(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunesmith.cli", *args], capture_output=True, text=True,
                          encoding="utf-8", errors="strict", timeout=100)


def test_a_lone_surrogate_in_a_config_and_a_result_is_shown_escaped_by_run_show_and_report(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    # its progress lines on a pipe (strict UTF-8, as a terminal's encoding is)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "res")], capture_output=True, text=True,
                         encoding="utf-8", timeout=100)
    assert run.returncode == 0 and "STATUS finished" in run.stdout, run.stderr[-2000:]
    rs = ts.load(str(tmp_path / "res" / "sur"))
    assert rs.status == "finished"
    assert PROMPT in [t.config["prompt"] for t in rs.trials]  # stored as given
    shown = _tunesmith("show", "--storage-path", str(tmp_path / "res"), "sur")
    assert shown.returncode == 0, shown.stderr
    assert "\\ud83d" in shown.stdout
    report = _tunesmith("report", "--storage-path", str(tmp_path / "res"), "sur", "-o", str(tmp_path / "r.html"))
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "r.html").read_text(encoding="utf-8")  # valid UTF-8
    assert "\\ud83d" in html or "\\\\ud83d" in html
    assert os.path.getsize(tmp_path / "r.html") > 0


def test_the_live_display_on_a_terminal_shows_it_escaped_and_the_run_finishes(tmp_path):
    """On a terminal the progress is a rich display: its end printed the config and raised UnicodeEncodeError
    after every trial had finished (the experiment then said crashed)."""
    import pty

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "res")], stdout=child, stderr=child,
                            env={**os.environ, "TERM": "xterm", "COLUMNS": "200"})
    os.close(child)
    out = b""
    while True:
        try:
            data = os.read(main, 1 << 16)
        except OSError:  # EIO: the child's end is closed
            break
        if not data:
            break
        out += data
    os.close(main)
    text = out.decode("utf-8", "replace")
    assert proc.wait(timeout=100) == 0, text[-3000:]
    assert "STATUS finished" in text and "UnicodeEncodeError" not in text, text[-3000:]
    assert ts.load(str(tmp_path / "res" / "sur")).status == "finished"
