"""Shared by the bridges' tests (tests/integrations/test_<library>.py)."""

from __future__ import annotations

import subprocess
import sys


def assert_missing_library_error(bridge: str, library: str, extra: str) -> None:
    """Importing ``tunesmith.integrations.<bridge>`` in a fresh interpreter where ``library`` cannot be
    imported (``sys.modules[library] = None`` makes ``import library`` raise ImportError, as if it were not
    installed) raises tunesmith's MissingDependency, naming the extra that installs it."""
    code = (f"import sys\nsys.modules[{library!r}] = None\n"
            f"try:\n    import tunesmith.integrations.{bridge}\n"
            f"except ImportError as e:\n    print(type(e).__name__ + ': ' + str(e))\n"
            f"else:\n    print('imported')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MissingDependency: "), out.stdout
    assert f"pip install 'tunesmith[{extra}]'" in out.stdout, out.stdout
