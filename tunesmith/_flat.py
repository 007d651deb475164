"""Nested dicts to one level of keys, joined with ``/``: ``{"optim": {"lr": 0.1}}`` -> ``{"optim/lr": 0.1}``.

One walk for every place that shows or writes a config or a result flat (``space.flatten``, the file
loggers, TensorBoard, MLflow, W&B, the progress table). An empty nested dict stays a value, so that
``space.unflatten`` gives it back.
"""

from __future__ import annotations

from typing import Any

from tunesmith._errors import ConfigError


def flatten(mapping: dict[Any, Any], sep: str = "/", *, strict: bool = False) -> dict[str, Any]:
    """A new dict of ``mapping``'s leaves under their joined key paths.

    Args:
        mapping: the nested dict.
        sep: what joins the keys.
        strict: raise ``ConfigError`` for a key that is not a string or contains ``sep`` (the flat form
            must map back to the same dict); otherwise such a key is joined as ``str(key)``.
    """
    out: dict[str, Any] = {}
    _walk(out, mapping, "", sep, strict)
    return out


def flat_metrics(metrics: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    """A result as one level of keys (reported metrics are usually flat already; this keeps a nested one
    readable instead of a dict in one CSV cell). A flat dict is returned as it is (not copied): callers must
    not change it."""
    for value in metrics.values():
        if isinstance(value, dict):
            break
    else:
        return metrics  # the common case, on the hot path of every result
    return flatten(metrics, sep)


def _walk(out: dict[str, Any], mapping: dict[Any, Any], prefix: str, sep: str, strict: bool) -> None:
    for key, value in mapping.items():
        if strict and (not isinstance(key, str) or sep in key):
            raise ConfigError(f"config key {key!r}: expected a string without {sep!r} to flatten")
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _walk(out, value, name + sep, sep, strict)
        else:
            out[name] = value
