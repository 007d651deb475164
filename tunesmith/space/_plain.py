"""``plain``: a value as the store gives it back (numpy and torch numbers made Python ones, containers copied)."""

from __future__ import annotations

import numbers
from typing import Any

_PLAIN_TYPES = frozenset((str, int, float, bool, type(None)))


def plain(value: Any) -> Any:
    """``value`` as the store gives it back: numpy and torch scalars (``np.int64``, ``np.float32``, ``np.bool_``,
    0-d arrays, ``torch.tensor(1.0)``) and other numbers (``np.float64``, an ``IntEnum``) become Python
    ``int``/``float``/``bool``, arrays and tensors lists; dicts, lists and tuples are copied (so that a trial
    mutating its config cannot change the space) with their items made plain. Anything else is returned as it
    is: ``check_storable`` says whether the store can hold it.

    A trial so sees the same values on its first run as after a resume, which reads its config from the store.
    """
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if kind is dict:
        return {k: plain(v) for k, v in value.items()}
    if kind is list:
        return [plain(v) for v in value]
    if kind is tuple:
        return tuple(plain(v) for v in value)
    return _plain_other(value)


def _plain_other(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)  # np.str_
    if isinstance(value, numbers.Integral):  # np.int64, IntEnum (bool's subclasses cannot exist)
        return int(value)
    if isinstance(value, numbers.Real):  # np.float32, np.float64
        return float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):  # numpy arrays and scalars (np.bool_), torch tensors (torch.Size is a tuple)
        item, tolist = getattr(value, "item", None), getattr(value, "tolist", None)
        if shape == () and callable(item):
            scalar = item()
            if type(scalar) in _PLAIN_TYPES:
                return scalar
        elif callable(tolist):
            return plain(tolist())
    return value
