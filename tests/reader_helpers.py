"""Reference answers for the store's readers: every result scanned in Python."""

from __future__ import annotations

import math
from typing import Any

from tunesmith.results import feasible_result


def brute_best_all(rs: Any, k: int, metric: str, mode: str,
                   only_feasible: bool = False) -> list[tuple[int, float, int]]:
    """(trial, value, iteration) of the k best trials by their best result (``only_feasible``: their best result
    that meets the constraints), best first, scanning every result in Python."""
    best: list[tuple[float, int, float, int]] = []
    for t in rs.trials:
        chosen = None
        for res in rs.history(t.id):
            v = res.get(metric)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                continue
            if only_feasible and not feasible_result(res):
                continue
            if chosen is None or (v < chosen[0] if mode == "min" else v > chosen[0]):
                chosen = (v, res["training_iteration"])
        if chosen is not None:
            best.append((chosen[0] if mode == "min" else -chosen[0], t.id, chosen[0], chosen[1]))
    best.sort(key=lambda x: (x[0], x[1]))
    return [(tid, v, it) for _, tid, v, it in best[:k]]
