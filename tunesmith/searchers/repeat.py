"""``Repeat``: every config run ``n`` times with different seeds; the searcher learns from the average."""

from __future__ import annotations

import json
import math
import numbers
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.searchers._base import FINISHED, Searcher, _Finished

__all__ = ["Repeat"]

SEED_KEY = "seed"
REPEAT_KEY = "repeat_index"


class Repeat(Searcher):
    """Runs each config of the wrapped searcher ``n`` times, to average out noisy training.

    The ``n`` trials of a config differ only in one key: ``config["seed"] = i`` for the ``i``-th repeat
    (``0 .. n-1``), so the training function can seed itself from it. When the space already has a
    top-level ``"seed"`` key, that key is left as the wrapped searcher chose it and the repeat index
    goes to ``config["repeat_index"]`` instead (a space with both keys is refused).

    The wrapped searcher sees one trial per config (its own trial ids ``0, 1, 2, ...``): once all ``n``
    repeats have ended it observes, once and ``final=True``, the average of their final results (every
    numeric key averaged over the repeats where it is a number, NaN left out: an infinity makes it infinite, +inf
    and -inf together NaN, float max in every repeat averages to float max; other keys from the first repeat;
    ``{}`` when no repeat reported anything). Intermediate results are not passed on (``n`` trials report the
    same iterations, which a model of learning curves would count ``n`` times).

    The experiment runs ``n`` trials per config the wrapped searcher suggests: ``num_samples`` counts configs
    (``num_samples=6`` with ``n=3`` runs 18 trials; Ray Tune's ``Repeater`` counts trials), or pass
    ``num_samples=-1`` with a time budget.

    Warm start (``run(warm_start=...)``): the wrapped searcher takes earlier trials in the same way, a config once
    with its repeats' average and without the repeat index (``fold_repeats``).

    Args:
        searcher: the searcher to wrap.
        n: repeats per config (an int >= 1).
    """

    def __init__(self, searcher: Searcher, n: int) -> None:
        self.searcher = searcher
        self.n = n
        self._key = SEED_KEY
        self._group = -1  # the wrapped searcher's trial id of the current config
        self._base: dict[str, Any] = {}
        self._next_repeat = 0  # the repeat index to hand out next within the current group
        self._done = False
        self._group_of: dict[int, tuple[int, int]] = {}  # trial id -> (group, repeat index)
        self._finals: dict[int, dict[int, dict[str, Any]]] = {}  # group -> repeat index -> final result

    @property
    def learns_from_results(self) -> bool:  # type: ignore[override]
        """As the wrapped searcher does."""
        return self.searcher.learns_from_results

    def setup(self, space: dict[str, Any], metric: str | list[str] | None, mode: str | list[str] | None,
              num_samples: int) -> None:
        """Validate ``searcher`` and ``n``, then set up the wrapped searcher.

        Raises:
            ConfigError: naming ``searcher`` or ``n``; or what the wrapped searcher raises.
        """
        super().setup(space, metric, mode, num_samples)
        if not isinstance(self.searcher, Searcher):
            raise ConfigError(f"searcher: expected a tunesmith searcher to wrap; got {self.searcher!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, numbers.Integral) or self.n < 1:
            raise ConfigError(f"n: expected an int >= 1 (repeats per config); got {self.n!r}")
        if isinstance(space, dict) and SEED_KEY in space and REPEAT_KEY in space:
            raise ConfigError(f"space[{json.dumps(REPEAT_KEY)}]: Repeat numbers a config's repeats under "
                              f"{SEED_KEY!r}, or under {REPEAT_KEY!r} when the space has {SEED_KEY!r}; this space has "
                              f"both {SEED_KEY!r} and {REPEAT_KEY!r}, whose value the repeat index would replace: "
                              "rename one of them")
        self._key = repeat_key(space)
        self._group, self._base, self._next_repeat, self._done = -1, {}, int(self.n), False
        self._group_of, self._finals = {}, {}
        self.searcher.setup(space, metric, mode, num_samples)

    def suggest(self, trial_id: int) -> dict[str, Any] | None | _Finished:
        """The current config with the next repeat index, or the wrapped searcher's next config."""
        if self._next_repeat >= self.n:
            if self._done:
                return FINISHED
            config = self.searcher.suggest(self._group + 1)
            if config is FINISHED:
                self._done = True
                return FINISHED
            if not isinstance(config, dict):
                return config  # None: ask later; anything else the controller names as the searcher's error
            self._start_group(config)
        return self._hand_out(trial_id)

    def restore_suggestion(self, trial_id: int, config: dict[str, Any]) -> None:
        """Replay: a repeat index 0 replays a new config to the wrapped searcher (without the index key)."""
        if self._next_repeat >= self.n:
            base = {k: v for k, v in config.items() if k != self._key}
            self.searcher.restore_suggestion(self._group + 1, base)
            self._start_group(base)
        self._hand_out(trial_id)

    def warm_start(self, trials: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
        """The wrapped searcher observes the earlier trials as it observes this experiment's: a config once, with
        the average of its repeats' results and without the repeat index (``fold_repeats``). Each config is
        handed over in a call of its own, so the count is of the earlier trials taken in, every repeat included."""
        used = 0
        for config, result, count in fold_repeats(trials, self.space):
            if self.searcher.warm_start([(config, result)]):
                used += count
        return used

    def use_constraints(self) -> bool:
        return self.searcher.use_constraints()

    def observe(self, trial_id: int, result: dict[str, Any], final: bool) -> None:
        """Collect final results; when a config's ``n`` repeats have ended, the wrapped searcher observes
        their average."""
        if not final or trial_id not in self._group_of:
            return
        group, index = self._group_of.pop(trial_id)
        finals = self._finals.setdefault(group, {})
        finals[index] = result
        if len(finals) == self.n:
            del self._finals[group]
            self.searcher.observe(group, average([finals[i] for i in sorted(finals)]), True)

    def _start_group(self, config: dict[str, Any]) -> None:
        self._group += 1
        self._base = config
        self._next_repeat = 0

    def _hand_out(self, trial_id: int) -> dict[str, Any]:
        config = _copy(self._base)
        config[self._key] = self._next_repeat
        self._group_of[trial_id] = (self._group, self._next_repeat)
        self._next_repeat += 1
        return config


def repeat_key(space: Any) -> str:
    """The key under which ``Repeat`` numbers a config's repeats in this space: ``"seed"``, or ``"repeat_index"``
    when the space has a top-level ``"seed"`` key."""
    return REPEAT_KEY if isinstance(space, dict) and SEED_KEY in space else SEED_KEY


def fold_repeats(trials: list[tuple[dict[str, Any], dict[str, Any]]], space: dict[str, Any]
                 ) -> list[tuple[dict[str, Any], dict[str, Any], int]]:
    """Earlier trials (warm start) as a searcher over ``space`` takes them in when they may come from an experiment
    that ran ``Repeat``: a config holding the repeat index ``Repeat`` adds (``repeat_key(space)``, a key the space
    lacks, with an int >= 0) loses it, and the repeats of one config become one trial whose result is the
    ``average`` of theirs, as ``Repeat`` hands its searcher live results (here over the repeats that finished).
    Other trials stay as they are, one each.

    Args:
        trials: ``(config, last result)`` pairs.
        space: the space of the searcher that takes them in.

    Returns:
        ``(config, result, how many of trials it stands for)``, in order of first appearance.
    """
    key = repeat_key(space)
    out: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    groups: dict[str, int] = {}  # a config without its repeat index, as JSON -> its place in out
    for config, result in trials:
        index = config.get(key) if isinstance(config, dict) and key not in space else None
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or index < 0:
            out.append((config, [result]))
            continue
        base = {k: v for k, v in config.items() if k != key}
        ident = json.dumps(base, sort_keys=True, default=repr)
        if ident in groups:
            out[groups[ident]][1].append(result)
        else:
            groups[ident] = len(out)
            out.append((base, [result]))
    return [(config, results[0] if len(results) == 1 else average(results), len(results))
            for config, results in out]


def average(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of each numeric key over the results where it is a number other than NaN (NaN where it
    never is; ``_mean``: an infinity makes the mean infinite, +inf and -inf together NaN, a sum past the float
    range is no error); other keys from the first result that has them.

    Args:
        results: final results (``{}`` for a trial that reported nothing).

    Returns:
        One result; ``{}`` when every result is empty.
    """
    out: dict[str, Any] = {}
    sums: dict[str, list[float]] = {}
    for result in results:
        for key, value in result.items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                bucket = sums.setdefault(key, [])
                if not math.isnan(value):
                    bucket.append(float(value))
            else:
                out.setdefault(key, value)
    for key, values in sums.items():
        out[key] = _mean(values)
    return out


def _mean(values: list[float]) -> float:
    """The mean of numbers (none NaN): NaN for none, or for +inf and -inf together (undefined); an infinity
    otherwise; else the mean of finite numbers, also where their sum overflows (float max in every repeat, a
    common value for a diverged run, averages to float max) and never outside their range (rounding)."""
    if not values or (math.inf in values and -math.inf in values):
        return math.nan
    try:
        mean = math.fsum(values) / len(values)
    except OverflowError:  # "intermediate overflow": the sum is past the float range, the mean is not
        k = len(values).bit_length()  # 2**k > len(values): the sum of the values over 2**k (exact) fits
        scaled = [math.ldexp(value, -k) for value in values]
        mean = math.ldexp(min(max(math.fsum(scaled) / len(values), min(scaled)), max(scaled)), k)
    return min(max(mean, min(values)), max(values))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
