"""Optional dependencies: one helper that turns a missing module into an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or say which tunesmith extra installs it.

    Args:
        module: the module to import, e.g. ``"tensorboardX"``.
        extra: the tunesmith extra that provides it, e.g. ``"tensorboard"``.

    Returns:
        The imported module.

    Raises:
        ImportError: the module is not installed; the message names the ``pip install`` line.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is not installed; it comes with pip install 'tunesmith[{extra}]'") from exc
