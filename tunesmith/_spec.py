"""Constructor arguments as JSON: every argument is an attribute (scikit-learn style), so a searcher's
or scheduler's spec can be written to the store and shown back."""

from __future__ import annotations

import inspect
import json
from typing import Any


def constructor_spec(obj: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type(obj).__name__}
    for name in inspect.signature(type(obj).__init__).parameters:
        if name == "self" or not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        spec[name] = value.to_spec() if hasattr(value, "to_spec") else _jsonable(value)
    return spec


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)
