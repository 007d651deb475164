"""Constructor arguments as JSON: every argument is an attribute (scikit-learn style), so a searcher's
or scheduler's spec can be written to the store and shown back.

A searcher or scheduler built with ``seed=None`` draws its seed at construction and keeps it as ``_seed``;
its spec records that seed, not ``None``, so that the object rebuilt from the spec (``tunesmith resume``)
draws the same stream again."""

from __future__ import annotations

import inspect
import json
from typing import Any


def constructor_spec(obj: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type(obj).__name__}
    init = type(obj).__init__
    # no __init__ of its own (FIFO): no arguments; object.__init__'s signature would be parsed from its text
    params = () if init is object.__init__ else inspect.signature(init).parameters
    for name in params:
        if name == "self" or not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        spec[name] = value.to_spec() if hasattr(value, "to_spec") else _jsonable(value)
    drawn = getattr(obj, "_seed", None)
    if "seed" in spec and spec["seed"] is None and isinstance(drawn, int) and not isinstance(drawn, bool):
        spec["seed"] = drawn
    return spec


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)
