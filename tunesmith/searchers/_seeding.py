"""Seeds of the searchers: the check of a ``seed=`` argument, and NumPy streams derived from any int seed."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

from tunesmith._errors import ConfigError

if TYPE_CHECKING:
    import numpy as np


def check_seed(seed: Any) -> None:
    """``ConfigError`` naming ``seed`` unless it is an int."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"seed: expected an int or None; got {seed!r} ({type(seed).__name__})")


def seed_sequence(seed: int, *more: int) -> np.random.SeedSequence:
    """A NumPy seed sequence for any int seed (negative ones too) and further stream indices."""
    import numpy as np  # here: the random searcher checks seeds without NumPy, and a plain run starts sooner

    return np.random.SeedSequence([abs(int(seed)), int(seed < 0), *(int(m) for m in more)])
