"""Optional dependencies: one place that turns a missing package into an error that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from tunesmith._errors import ConfigError

__all__ = ["MissingDependency", "require"]


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
        who = what or module
        missing = getattr(exc, "name", None) or module
        raise MissingDependency(
            f"{who}: needs the optional package {missing.split('.')[0]!r}, which is not installed "
            f"({exc}); install it with: pip install 'tunesmith[{extra}]'") from exc
