"""ConcurrencyLimiter: at most N of a searcher's trials unfinished at once."""

from __future__ import annotations

from typing import Any

import pytest

import tunesmith as ts
from tunesmith.searchers._base import FINISHED
from tunesmith.searchers.limiter import ConcurrencyLimiter
from tunesmith.searchers.optuna import OptunaSearch
from tunesmith.space import uniform

SPACE = {"x": uniform(-1, 1)}


def test_holds_back_while_full_and_a_final_result_frees_a_slot() -> None:
    limiter = ConcurrencyLimiter(ts.Random(seed=1), max_concurrent=2)
    limiter.setup(SPACE, "loss", "min", 4)
    a, b = limiter.suggest(1), limiter.suggest(2)
    assert isinstance(a, dict) and isinstance(b, dict)
    assert limiter.suggest(3) is None
    limiter.observe(1, {"loss": 1.0, "training_iteration": 1}, False)  # intermediate: still running
    assert limiter.suggest(3) is None
    limiter.observe(1, {"loss": 1.0}, True)
    c = limiter.suggest(3)
    # the wrapped searcher was not asked while full: the third config is Random's third
    plain = ts.Random(seed=1)
    plain.setup(SPACE, "loss", "min", 4)
    assert [a, b, c] == [plain.suggest(i) for i in (1, 2, 3)]
    limiter.observe(2, {}, True)
    limiter.observe(3, {}, True)
    assert isinstance(limiter.suggest(4), dict)
    assert limiter.suggest(5) is FINISHED


def test_observations_reach_the_wrapped_searcher() -> None:
    inner = OptunaSearch(sampler="tpe", seed=0)
    limiter = ConcurrencyLimiter(inner, max_concurrent=1)
    limiter.setup(SPACE, "loss", "min", 3)
    config = limiter.suggest(1)
    assert isinstance(config, dict)
    limiter.observe(1, {"loss": 0.5, "training_iteration": 1}, False)
    limiter.observe(1, {"loss": 0.25, "training_iteration": 2}, True)
    (told,) = inner.study.trials
    assert told.value == 0.25 and told.intermediate_values == {1: 0.5}


def quick(config: dict[str, Any]) -> None:
    for _ in range(3):
        ts.report({"loss": config["x"] ** 2})


@pytest.mark.timeout(120)
def test_on_real_workers_no_two_trials_overlap(results_dir: Any) -> None:
    result = ts.run(quick, space=SPACE, metric="loss", mode="min", num_samples=4, verbose=0, name="limited",
                    searcher=ConcurrencyLimiter(ts.Random(seed=2), max_concurrent=1), resources={"cpu": 0.5})
    assert len(result.trials) == 4
    spans = sorted((h[0]["timestamp"] - h[0]["time_total_s"], h[-1]["timestamp"])
                   for h in (result.history(t.id) for t in result.trials))
    # the local executor could run 4 at once (half a CPU each); the limiter let one run at a time
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:]))
