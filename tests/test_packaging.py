"""What a built wheel holds: the files tunesmith reads at run time besides its modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_the_wheel_ships_py_typed_and_the_vendored_plotly(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    src = tmp_path / "src"  # a copy: building in place would leave build/ and *.egg-info in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "tunesmith", src / "tunesmith", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(out), str(src)], check=True, timeout=240)
    (wheel,) = out.glob("tunesmith-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # py.typed: users' type checkers see tunesmith's annotations (ts.ASHA is not Any to them)
    assert "tunesmith/py.typed" in names
    # the HTML report reads plotly.js from the package (importlib.resources)
    assert "tunesmith/plots/static/plotly.min.js" in names
    assert "tunesmith/plots/static/plotly.min.js.LICENSE" in names
    # the dashboard serves its script and style only from the package
    assert {"tunesmith/dashboard/static/dashboard.js", "tunesmith/dashboard/static/dashboard.css"} <= names
