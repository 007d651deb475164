"""Population based training (Jaderberg et al., "Population Based Training of Neural Networks", 2017).

Each trial is judged at its perturbation points: the first result whose ``time_attr`` is at least
``perturbation_interval`` past the trial's last perturbation point (with ``training_iteration``: every
``perturbation_interval`` iterations, and ``decision_iteration`` makes the trial wait there). The live
trials are ranked by their latest metric (NaN worst, ties to the lower trial id); the top and bottom
``ceil(n * quantile_fraction)`` trials (at most ``n // 2`` each) form the quantiles. A bottom-quantile
trial is answered ``Exploit``: restart from the latest checkpoint of a random top-quantile trial that
has one (``view.trials[src].checkpoint_path``), with the source's config explored:

for each key of ``hyperparam_mutations`` (a top-level key, a ``"a/b"`` path into nested dicts, or a
nested dict of mutations; each config key named once, not inside another mutated key), with probability
``resample_probability`` (or when the source lacks the key) the value is resampled, otherwise perturbed:

* a list: resampled uniformly; perturbed to a neighbouring index (-1 or +1, clamped at the ends). The current
  value's index is found as the searchers find a choice's option (``True`` is not ``1``, a NaN is a NaN option);
  a value that is none of them is resampled.
* a ``tunesmith.space`` domain (anything with ``from_unit``): resampled as ``from_unit(rng.random())``;
  a numeric value is multiplied by 0.8 or 1.2 (an int moves by at least 1) and clipped to
  ``[from_unit(0), from_unit(1)]``; a ``quniform``/``qloguniform``/``qnormal`` value is then rounded as the
  domain rounds its draws (a multiple of ``q``, inside the bounds) and moves by at least one ``q``;
  ``choice``/``grid`` domains (``options``/``values``) behave as a list.
* a callable: resampled as ``fn()`` (its randomness is its own, not seeded by ``seed``); a numeric
  value is multiplied by 0.8 or 1.2 as above, unclipped. One that raises is a ``ConfigError`` naming the key.

Every other key keeps the source's value. If no top-quantile trial has a checkpoint the answer is
``CONTINUE``. All randomness comes from ``random.Random(seed)``.

After an exploit the trial takes over its source's last perturbation point, so it trains at least
``perturbation_interval`` past it before it is judged again (as in Ray Tune); when the source's checkpoint
is from its next point, whose result is still to be decided, the trial takes that point.

Time-sharing (a population larger than the free slots): the population must evolve together, or the
first trials would run to the end before the last ones start, and a trial at iteration 25 would clone
one at 975. So at a perturbation point a trial that is ahead *pauses* (``PAUSE``; after an exploit
too, ``Exploit(pause=True)``) while another trial is behind it: one the searcher may still add (until
``on_no_more_trials``; a new trial is at 0), or a paused or pending one whose progress is lower.
``choose_trial_to_run`` then resumes the least advanced paused trial (ties to the one paused first), and
answers ``None`` while new trials may come (they are the least advanced). This is Ray Tune's PBT with
``synch=False``. A trial pauses only when it has a checkpoint at this very result (checkpoint at every
perturbation point): one without would lose the iterations since its last checkpoint, so it runs on.
When the population fits in the slots nobody is behind a running trial and nothing pauses.

An exploit that sends a trial back to (or behind) the point it trained from, level with a trial paused
there (often its source), has used its turn for nothing: it then pauses too and waits behind that trial.
Otherwise it would keep the slot, train the same interval again, be ranked against the paused trial's
result from the earlier point, lose and be sent back again, forever, while the paused trial never ran (a
metric that grows with training, one slot). An exploit that moves a trial forward keeps the rule above.

A result without the metric (absent or ``None``: a trial that validates every few steps) is nothing to decide on:
it continues, the trial keeps its latest score (for the quantiles) and its perturbation point, which is then the
first later result that has the metric (PB2: no data point comes of it either).
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._objective import Objective
from tunesmith._secrets import mask_text_at
from tunesmith.schedulers._base import CONTINUE, PAUSE, STOP, Decision, Exploit, Scheduler, SchedulerView
from tunesmith.schedulers._milestones import (
    _as_iteration,
    _check_number,
    _check_time_attr,
    _rank_key,
    _reached,
    _time,
)
from tunesmith.space import Choice, Domain, Grid, QLogUniform, QNormal, QUniform
from tunesmith.space._plain import same_value
from tunesmith.space._unit import _quantize
from tunesmith.trial import ITERATION, Result, TrialStatus, TrialView

_PERTURB_FACTORS = (0.8, 1.2)


@dataclass
class _PbtTrial:
    last_score: float | None = None
    last_perturbation: float = 0.0
    progress: float = 0.0  # ``time_attr`` at its latest result (after an exploit: the cloned checkpoint's)
    ended: bool = False


def _categories(spec: Any) -> list[Any] | None:
    """The options of a categorical spec (a list, or a choice/grid domain), else None."""
    if isinstance(spec, list):
        return spec
    for attr in ("options", "values"):
        items = getattr(spec, attr, None)
        if hasattr(spec, "from_unit") and isinstance(items, list) and items:
            return items
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _flatten(mutations: Mapping[str, Any], prefix: tuple[str, ...], arg: str = "hyperparam_mutations",
             verb: tuple[str, str] = ("mutates", "mutated")) -> list[tuple[tuple[str, ...], Any]]:
    """``(path, spec)`` of every leaf of ``mutations`` (PBT's ``hyperparam_mutations``, PB2's ``hyperparam_bounds``:
    ``arg`` names it, ``verb`` says what it does to a key, present and past): a key is a name or an ``"a/b"`` path,
    and a dict that is not a domain holds the keys under it. Each config key may be named once. The specs
    themselves are the caller's to check."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, spec in mutations.items():
        where = "/".join((*prefix, str(key)))
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{arg}: keys must be non-empty strings; got {key!r}")
        path = (*prefix, *key.split("/"))
        if isinstance(spec, Mapping) and not hasattr(spec, "from_unit"):
            if not spec:
                raise ConfigError(f"{arg}[{where!r}]: an empty dict {verb[0]} nothing")
            out.extend(_flatten(spec, path, arg, verb))
        else:
            out.append((path, spec))
    if not prefix:
        _check_once(out, arg, verb)
    return out


def _check_once(leaves: list[tuple[tuple[str, ...], Any]], arg: str, verb: tuple[str, str]) -> None:
    """Each config key named once: not twice (a path and a nested dict), not inside another named key (the outer
    value would become a dict of the inner ones)."""
    seen: list[tuple[str, ...]] = []
    for path, _spec in leaves:
        where = "/".join(path)
        for other in seen:
            shared = min(len(path), len(other))
            if path[:shared] != other[:shared]:
                continue
            named = "/".join(other)
            if len(path) == len(other):
                raise ConfigError(f"{arg}[{where!r}]: given twice (a path 'a/b' and a nested dict "
                                  f"{{'a': {{'b': ...}}}} name the same key); give it once")
            if len(path) > len(other):
                raise ConfigError(f"{arg}[{where!r}]: inside {named!r}, which is {verb[1]} as a whole; "
                                  f"give one or the other")
            raise ConfigError(f"{arg}[{where!r}]: contains {named!r}, which is {verb[1]} too; give one or the other")
        seen.append(path)


def _check_spec(path: tuple[str, ...], spec: Any) -> None:
    """A mutation: a non-empty list of values, a domain with valid arguments (checked as ``validate_space`` checks a
    space's), or a callable. A list's values and a choice's or grid's options are taken as they are (PBT resolves
    nothing), so a domain inside them is refused: it would reach the config as the domain object itself."""
    where = "/".join(path)
    if isinstance(spec, tuple):
        raise ConfigError(
            f"hyperparam_mutations[{where!r}]: a tuple is ambiguous; pass a list of values or a domain "
            f"such as ts.uniform(low, high)")
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"hyperparam_mutations[{where!r}]: the list of values is empty")
        _check_values(f"hyperparam_mutations[{where!r}]", spec)
        return
    if isinstance(spec, Domain):
        problem = spec._problem()
        if problem:  # uniform(2, 1) gave 1.0 at every draw, randint(5, 3) gave 2
            raise ConfigError(f"hyperparam_mutations[{where!r}]: "
                              f"{mask_text_at(path, problem, *(getattr(spec, f) for f in spec._fields))}")
        if isinstance(spec, (Choice, Grid)):
            _check_values(f"hyperparam_mutations[{where!r}].{'options' if isinstance(spec, Choice) else 'values'}",
                          spec.options if isinstance(spec, Choice) else spec.values)
    if hasattr(spec, "from_unit"):
        try:
            spec.from_unit(0.5)
        except Exception as exc:  # any failure means the domain cannot be sampled on its own
            raise ConfigError(
                f"hyperparam_mutations[{where!r}]: {type(spec).__name__} cannot be sampled on its own "
                f"({exc}); pass a list, another domain or a callable") from exc
        return
    if callable(spec):
        return
    raise ConfigError(f"hyperparam_mutations[{where!r}]: expected a list, a tunesmith.space domain or a "
                      f"callable; got {spec!r}")


def _check_values(where: str, values: Any) -> None:
    """A ``ConfigError`` naming the first domain inside ``values`` (a mutation's list, a choice's options)."""
    stack: list[tuple[str, Any]] = [(where, values)]
    while stack:
        at, value = stack.pop()
        if isinstance(value, Domain) and at != where:
            raise ConfigError(f"{at}: a domain inside a mutation's values is not sampled (PBT takes a value as it "
                              f"is, and the config would hold the domain itself); expected constants there, or "
                              f"mutate the inner key itself (a nested dict or an 'a/b' key of hyperparam_mutations)")
        if isinstance(value, dict):
            stack.extend((f"{at}[{json.dumps(k) if isinstance(k, str) else repr(k)}]", v)
                         for k, v in reversed(value.items()))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{at}[{i}]", v) for i, v in reversed(list(enumerate(value))))


def _get(config: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = config
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _set(config: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = config
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


class PBT(Scheduler):
    """Population based training: the bottom quantile copies the top quantile and explores.

    Args:
        perturbation_interval: how much ``time_attr`` passes between a trial's perturbation points.
        hyperparam_mutations: what to explore, key (or ``"a/b"`` path) -> list | domain | callable.
        quantile_fraction: the share of the population in each quantile, in (0, 0.5].
        resample_probability: the chance of resampling a value instead of perturbing it, in [0, 1].
        seed: seed of the scheduler's own random generator; ``None`` draws one at construction
            (``self._seed``, recorded in the spec).
        time_attr: the progress counter perturbation points are measured in.
        metric: the metric to compare; defaults to the experiment's.
        mode: ``"min"`` or ``"max"``; defaults to the experiment's.
    """

    def __init__(self, perturbation_interval: float, hyperparam_mutations: dict[str, Any],
                 quantile_fraction: float = 0.25, resample_probability: float = 0.25,
                 seed: int | None = None, time_attr: str = ITERATION, metric: str | None = None,
                 mode: str | None = None) -> None:
        self.perturbation_interval = perturbation_interval
        self.hyperparam_mutations = hyperparam_mutations
        self.quantile_fraction = quantile_fraction
        self.resample_probability = resample_probability
        self.seed = seed
        # drawn now, not at setup: the spec records it (``tunesmith resume`` rebuilds the same stream)
        self._seed: Any = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self.time_attr = time_attr
        self.metric = metric
        self.mode = mode

    def setup(self, metric: str | list[str] | None, mode: str | list[str] | None) -> None:
        """Validate the arguments and reset all state (the random generator included).

        Raises:
            ConfigError: naming the bad argument.
        """
        name = type(self).__name__  # PB2 shares this setup
        self._objective = Objective.for_scheduler(name, self.metric, self.mode, metric, mode)
        _check_time_attr(name, self.time_attr)
        self._interval = _check_number(name, "perturbation_interval", self.perturbation_interval,
                                       low=0, low_open=True)
        self._quantile = _check_number(name, "quantile_fraction", self.quantile_fraction,
                                       low=0, low_open=True, high=0.5)
        self._resample = _check_number(name, "resample_probability", self.resample_probability,
                                       low=0, high=1)
        if isinstance(self._seed, bool) or not isinstance(self._seed, numbers.Integral):
            raise ConfigError(f"seed: {name} expects an int or None; got {self.seed!r}")
        if not isinstance(self.hyperparam_mutations, Mapping) or not self.hyperparam_mutations:
            raise ConfigError(f"hyperparam_mutations: PBT expects a non-empty dict of key -> list, domain "
                              f"or callable; got {self.hyperparam_mutations!r}")
        self._mutations = _flatten(self.hyperparam_mutations, ())
        for path, spec in self._mutations:
            _check_spec(path, spec)
        self._rng = random.Random(int(self._seed))
        self._trials: dict[int, _PbtTrial] = {}
        self._newcomers = True  # the searcher may still add trials (until on_no_more_trials)
        # trials paused to let the others catch up, in the order they paused (ties resume the first)
        self._waiting: dict[int, None] = {}

    _mutations_arg = "hyperparam_mutations"  # the argument that names the mutated keys (PB2: hyperparam_bounds)

    def mutated_keys(self) -> list[tuple[tuple[str, ...], str]]:
        return [(path, f"{self._mutations_arg}[{'/'.join(path)!r}]") for path, _spec in self._mutations]

    def mutation_values(self) -> dict[tuple[str, ...], Any]:
        """Each mutation's list or domain (PB2: its bounds); a function's values are not known up front."""
        return {path: spec for path, spec in self._mutations if isinstance(spec, list) or hasattr(spec, "from_unit")}

    # -- hooks

    def on_trial_add(self, trial: TrialView, view: SchedulerView) -> None:
        self._trials.setdefault(trial.id, _PbtTrial())

    def on_result(self, trial: TrialView, result: Result, view: SchedulerView) -> Decision:
        state = self._trials.setdefault(trial.id, _PbtTrial())
        if state.ended:
            return STOP
        t = _time(result, self.time_attr)
        state.progress = t
        self._waiting.pop(trial.id, None)
        score = self._objective.reported_score(result)
        if score is None:  # no metric: nothing to rank it by; its perturbation point waits for a result that has it
            return CONTINUE
        state.last_score = score
        if not _reached(t - state.last_perturbation, self._interval):
            return CONTINUE
        start, state.last_perturbation = state.last_perturbation, t
        bottom, top = self._quantiles(view)
        sources = [s for s in top if s != trial.id and view.trials[s].checkpoint_path is not None]
        if trial.id not in bottom or not sources:
            if trial.checkpoint_path is not None and trial.checkpoint_iteration >= result.iteration \
                    and self._others_behind(trial.id, t, view):
                self._waiting[trial.id] = None
                return PAUSE
            return CONTINUE
        source = view.trials[self._rng.choice(sources)]
        state.last_perturbation, state.progress = self._landing(source)
        # sent back to (or behind) the point it trained from, its turn gained nothing: it waits behind a trial
        # paused there too, or it could take the slot again and again, always ranked against that trial's result
        # from the earlier point
        pause = self._others_behind(trial.id, state.progress, view, level=state.progress <= start)
        if pause:
            self._waiting[trial.id] = None
        return Exploit(source_trial=source.id, config=self.explore(source.config),
                       source_checkpoint=source.checkpoint_path, source_iteration=source.checkpoint_iteration,
                       pause=pause)

    def on_complete(self, trial: TrialView, result: Result | None, view: SchedulerView) -> None:
        self._trials.setdefault(trial.id, _PbtTrial()).ended = True
        self._waiting.pop(trial.id, None)

    def on_no_more_trials(self, view: SchedulerView) -> None:
        """No newcomer to wait for: the paused trials take turns, least advanced first."""
        self._newcomers = False

    def choose_trial_to_run(self, view: SchedulerView) -> int | None:
        """The least advanced trial paused for time-sharing (ties to the one paused first, so that trials level
        with each other take turns); ``None`` while the searcher may still add trials (a new trial is the least
        advanced of all)."""
        if self._newcomers or not self._waiting:
            return None
        best: tuple[float, int] | None = None
        for trial_id in list(self._waiting):  # in the order they paused
            trial = view.trials.get(trial_id)
            if trial is None or trial.status.is_finished:
                del self._waiting[trial_id]
            elif trial.status == TrialStatus.PAUSED:
                progress = self._trials[trial_id].progress
                if best is None or progress < best[0]:
                    best = (progress, trial_id)
        if best is None:
            return None
        del self._waiting[best[1]]
        return best[1]

    def _others_behind(self, trial_id: int, progress: float, view: SchedulerView, level: bool = False) -> bool:
        """Whether another live trial is behind ``progress`` and waiting for a slot (or may still be added);
        with ``level``, a paused one at ``progress`` counts too (a pending one starts before any paused one)."""
        if self._newcomers:
            return True
        for other_id, other in self._trials.items():
            if other_id == trial_id or other.ended:
                continue
            trial = view.trials.get(other_id)
            if trial is None or trial.status not in (TrialStatus.PAUSED, TrialStatus.PENDING):
                continue
            if other.progress < progress or (level and trial.status == TrialStatus.PAUSED
                                             and other.progress <= progress):
                return True
        return False

    def _landing(self, source: TrialView) -> tuple[float, float]:
        """(perturbation point, progress) of a trial restarted from ``source``'s latest checkpoint: the source's
        last perturbation point, and with ``training_iteration`` the checkpoint's iteration. A checkpoint a whole
        interval past that point is the source's next point, whose result is not decided yet (results that
        arrive together are decided one by one, their checkpoints known before): the clone takes that point."""
        point = self._trials[source.id].last_perturbation
        if self.time_attr != ITERATION:
            return point, point
        at = float(source.checkpoint_iteration)
        if _reached(at - point, self._interval):
            point = at
        return point, at

    def decision_iteration(self, trial: TrialView) -> int | None:
        """The trial's next perturbation point (``training_iteration`` only)."""
        if self.time_attr != ITERATION:
            return None
        state = self._trials.setdefault(trial.id, _PbtTrial())
        if state.ended:
            return None
        return max(_as_iteration(state.last_perturbation + self._interval), trial.iteration + 1)

    # -- exploration

    def explore(self, config: dict[str, Any]) -> dict[str, Any]:
        """A deep copy of ``config`` with every mutation key resampled or perturbed (uses the RNG).

        Raises:
            ConfigError: a mutation function raised; it names the key and the function (its error is the cause).
        """
        new = copy.deepcopy(config)
        for path, spec in self._mutations:
            present, current = _get(new, path)
            try:
                if not present or self._rng.random() < self._resample:
                    value = self._sample(spec)
                else:
                    value = self._perturb(spec, current)
            except Exception as exc:  # only a function of the user's can raise: lists and domains were checked
                if isinstance(spec, list) or hasattr(spec, "from_unit"):
                    raise
                raise ConfigError(f"{self._mutations_arg}[{'/'.join(path)!r}]: the mutation function "
                                  f"{getattr(spec, '__qualname__', repr(spec))} raised {type(exc).__name__}: "
                                  f"{exc}") from exc
            _set(new, path, value)
        return new

    def _sample(self, spec: Any) -> Any:
        if isinstance(spec, list):
            return copy.deepcopy(self._rng.choice(spec))
        if hasattr(spec, "from_unit"):
            return spec.from_unit(self._rng.random())
        fn: Callable[[], Any] = spec
        return fn()

    def _perturb(self, spec: Any, current: Any) -> Any:
        options = _categories(spec)
        if options is not None:
            index = next((i for i, option in enumerate(options) if same_value(option, current)), None)
            if index is None:
                return self._sample(spec)
            index = min(max(index + self._rng.choice((-1, 1)), 0), len(options) - 1)
            return copy.deepcopy(options[index])
        if not _is_number(current) or not math.isfinite(float(current)):
            return self._sample(spec)
        factor = self._rng.choice(_PERTURB_FACTORS)
        value: float | int
        if isinstance(spec, (QUniform, QLogUniform, QNormal)):
            value = _on_grid(spec, float(current) * factor)
            if value == _on_grid(spec, float(current)):  # a move under q rounds back: small values would never move
                value = _on_grid(spec, float(current) + (spec.q if factor > 1 else -spec.q))
        elif isinstance(current, numbers.Integral):
            value = round(int(current) * factor)
            if value == current:  # small ints would never move
                value = int(current) + (1 if factor > 1 else -1)
        else:
            value = float(current) * factor
        bounds = _bounds(spec)
        if bounds is not None:
            value = min(max(value, bounds[0]), bounds[1])
        return value

    # -- ranking

    def _quantiles(self, view: SchedulerView) -> tuple[list[int], list[int]]:
        """(bottom, top) trial ids among the live trials with a score; NaN never in the top."""
        scored = []
        for trial_id, state in self._trials.items():
            trial = view.trials.get(trial_id)
            if state.ended or state.last_score is None or (trial is not None and trial.status.is_finished):
                continue
            scored.append((trial_id, state.last_score))
        scored.sort(key=lambda item: _rank_key(item[1], item[0]))
        n = len(scored)
        size = min(math.ceil(n * self._quantile - 1e-9), n // 2)
        if size == 0:
            return [], []
        top = [t for t, s in scored[:size] if not math.isnan(s) and t in view.trials]
        bottom = [t for t, _ in scored[n - size:]]
        return bottom, top


def _on_grid(spec: QUniform | QLogUniform | QNormal, value: float) -> float:
    """``value`` rounded as the quantized domain rounds its draws (``from_unit``): to a multiple of ``q``, inside
    the bounds of ``quniform``/``qloguniform``."""
    if isinstance(spec, QNormal):
        return _quantize(value, spec.q)
    return _quantize(value, spec.q, spec.low, spec.high)


def _bounds(spec: Any) -> tuple[float, float] | None:
    if not hasattr(spec, "from_unit"):
        return None
    try:
        low, high = spec.from_unit(0.0), spec.from_unit(1.0)
    except Exception:  # noqa: BLE001 - no bounds known: leave the value unclipped
        return None
    if _is_number(low) and _is_number(high) and low <= high:
        return low, high
    return None
