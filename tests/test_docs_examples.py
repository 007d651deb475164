"""README.md's quick start, copied as a new user copies it: the Python block(s) under "## Quick start" run as
written, as a script in an empty folder, and leave what the text after them says is there."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import tunesmith as ts

ROOT = Path(__file__).resolve().parents[1]


def quick_start_blocks() -> list[str]:
    """The ```python blocks between the "## Quick start" heading and the next heading of that level."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)


def test_the_readme_quick_start_runs_as_written_and_leaves_the_folder_it_describes(tmp_path: Any,
                                                                                   monkeypatch: Any) -> None:
    blocks = quick_start_blocks()
    assert blocks, "README.md's quick start has no ```python block"
    script = tmp_path / "quick_start.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    # The default storage path (./tunesmith_results), as for a user who set no $TUNESMITH_RESULTS; this tree's
    # tunesmith first on the path.
    monkeypatch.delenv("TUNESMITH_RESULTS")
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    # Its last line is `print(result.best.config, result.best.metrics["loss"])`.
    config_text, loss_text = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    config = ast.literal_eval(config_text)
    assert set(config) == {"lr", "layers"} and config["layers"] in (1, 2, 3) and 1e-4 <= config["lr"] <= 1e-1
    loss = float(loss_text)

    # "Everything about the experiment lives in ./tunesmith_results/<name>/: experiment.db, trials/trial_00001/"
    (folder,) = (tmp_path / "tunesmith_results").iterdir()
    assert (folder / "experiment.db").is_file()
    assert (folder / "trials" / "trial_00001").is_dir()
    # "ts.load(name) reads it back": the name is looked for under ./tunesmith_results, where the script wrote it.
    loaded = ts.load(folder.name)
    assert len(loaded.trials) == 16
    assert loaded.best.config == config and loaded.best.metrics["loss"] == loss
