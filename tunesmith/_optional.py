"""Optional dependencies: one place that turns a missing package into an error that says what to install."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from tunesmith._errors import ConfigError

__all__ = ["MissingDependency", "installed", "require"]


class MissingDependency(ConfigError, ImportError):
    """An optional package is not installed.

    Both a ``ConfigError`` (bad input: a feature was asked for that this installation cannot give) and an
    ``ImportError`` (so ``except ImportError`` around an import keeps working).
    """


def require(module: str, extra: str, what: str | None = None) -> ModuleType:
    """Import ``module``, or say which extra installs it.

    Args:
        module: the module to import, e.g. ``"optuna"`` or ``"scipy.stats.qmc"``.
        extra: the tunesmith extra that installs it, e.g. ``"optuna"``.
        what: who needs it, put first in the message (e.g. ``"sampler: 'cmaes'"``); defaults to the module.

    Returns:
        The imported module.

    Raises:
        MissingDependency: the module (or something it imports) is missing; the message ends with
            ``pip install 'tunesmith[EXTRA]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(what or module, getattr(exc, "name", None) or module, extra, f" ({exc})") from exc


def installed(module: str, extra: str, what: str) -> None:
    """Check that ``module``'s package is installed, without importing it (a logger made, long before the
    experiment starts and imports it, says at once what to install, before anything runs).

    Raises:
        MissingDependency: as ``require``'s.
    """
    top = module.split(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # ValueError: a module in ``sys.modules`` without a spec
        found = False
    if not found:
        raise _missing(what, top, extra, "")


def _missing(who: str, module: str, extra: str, why: str) -> MissingDependency:
    return MissingDependency(f"{who}: needs the optional package {module.split('.')[0]!r}, which is not installed"
                             f"{why}; install it with: pip install 'tunesmith[{extra}]'")
