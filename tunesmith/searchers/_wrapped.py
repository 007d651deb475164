"""The searcher inside tunesmith's wrappers (``ConcurrencyLimiter``, ``Repeat``) and how many trials it may make:
its own module, as it imports the wrappers, which import ``_base``."""

from __future__ import annotations

from tunesmith.searchers._base import UNLIMITED, Searcher
from tunesmith.searchers.limiter import ConcurrencyLimiter
from tunesmith.searchers.repeat import Repeat


def trial_cap(searcher: Searcher, num_samples: int) -> int | None:
    """How many trials the controller lets ``searcher`` make (then it takes it for ``FINISHED``): ``None`` for
    tunesmith's own searchers, which count their trials themselves (``Random``: grid points x ``num_samples``), and
    with ``num_samples=-1``; ``num_samples`` for one whose ``suggest`` is the user's, which may never say
    ``FINISHED``; through ``ConcurrencyLimiter`` (a trial per config) and ``Repeat`` (``n`` per config)."""
    inner, per_config = unwrapped(searcher)
    if num_samples == UNLIMITED or type(inner).suggest.__module__.startswith("tunesmith."):
        return None
    return num_samples * per_config


def unwrapped(searcher: Searcher) -> tuple[Searcher, int]:
    """The searcher inside ``ConcurrencyLimiter`` and ``Repeat`` wrappers, and how many trials each of its configs
    makes (``Repeat``'s ``n``s multiplied)."""
    per_config = 1
    while isinstance(searcher, (ConcurrencyLimiter, Repeat)):
        if isinstance(searcher, Repeat):
            per_config *= int(searcher.n)
        searcher = searcher.searcher
    return searcher, per_config
