"""``plain``: a value as the store gives it back (numpy and torch numbers made Python ones, tuples lists,
containers copied)."""

from __future__ import annotations

import math
import numbers
from typing import Any

_PLAIN_TYPES = frozenset((str, int, float, bool, type(None)))


def plain(value: Any, keep_tuples: bool = False) -> Any:
    """``value`` as the store gives it back: numpy and torch scalars (``np.int64``, ``np.float32``, ``np.bool_``,
    0-d arrays, ``torch.tensor(1.0)``), other numbers (``np.float64``, an ``IntEnum``) and strings (``np.str_``, a
    ``(str, Enum)``: its value ``"adam"``, not ``str(member)``) become Python ``int``/``float``/``bool``/``str``,
    arrays and tensors lists; dicts, lists and tuples are copied (so that a trial mutating its config cannot
    change the space) with their items made plain, tuples as lists (JSON has no tuples) unless ``keep_tuples``
    (a space's own options: its JSON keeps tuples). Anything else is returned as it is: ``check_storable`` says
    whether the store can hold it.

    A trial so sees the same values on its first run as after a resume, which reads its config from the store.
    """
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if kind is dict:
        return {k: plain(v, keep_tuples) for k, v in value.items()}
    if kind is list:
        return [plain(v, keep_tuples) for v in value]
    if kind is tuple:
        return tuple(plain(v, keep_tuples) for v in value) if keep_tuples else [plain(v) for v in value]
    return _plain_other(value, keep_tuples)


def _plain_other(value: Any, keep_tuples: bool) -> Any:
    if isinstance(value, str):
        return str.__str__(value)  # np.str_, a (str, Enum) member: the text itself (str() of a member is its name)
    if isinstance(value, numbers.Integral):  # np.int64, IntEnum (bool's subclasses cannot exist)
        return int(value)
    if isinstance(value, numbers.Real):  # np.float32, np.float64, a (float, Enum) member
        return float(value)
    if isinstance(value, dict):
        return {k: plain(v, keep_tuples) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, keep_tuples) for v in value]
    if isinstance(value, tuple):  # a namedtuple
        return tuple(plain(v, keep_tuples) for v in value) if keep_tuples else [plain(v) for v in value]
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


def same_value(a: Any, b: Any) -> bool:
    """Whether a config value ``b`` is ``a`` (an option of a choice or of a PBT mutation list): lists and tuples
    compare alike (a config read back from JSON has lists), numpy scalars as Python values, ``True`` is not
    ``1``, a NaN is a NaN (NaN != NaN)."""
    a, b = _scalar(a), _scalar(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True  # choice([nan, 1]): a config holding NaN took that option, though NaN != NaN
    try:
        return bool(a == b)
    except Exception:  # an object whose == misbehaves is simply not the same
        return False


def _scalar(value: Any) -> Any:
    """A numpy scalar or array, a str/int Enum member, as the Python value a stored config holds (``np.True_`` is
    ``True``, so not ``1``); containers as they are (``same_value`` compares their items)."""
    return value if isinstance(value, (list, tuple, dict)) or type(value) in _PLAIN_TYPES else plain(value)
