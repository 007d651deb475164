"""The searcher contract, checked once for every searcher: each built-in searcher, each Optuna sampler, and the
wrappers (``ConcurrencyLimiter``, ``Repeat``) and ``points_to_evaluate`` around a model-based searcher.

What every searcher promises (``tunesmith.searchers._base``):

* seeding: the same seed gives the same configs for the same results; another seed other configs; an
  unseeded searcher records the seed it drew in its spec, so the spec replays the same stream;
* bad constructor arguments are stored, and ``setup`` raises ``ConfigError`` naming the argument;
* ``mode`` is a sign: minimising ``loss`` and maximising ``-loss`` give the same configs;
* resume by replay: ``setup``, then per stored trial in id order ``restore_suggestion`` and its stored
  ``observe`` calls, and the next suggestions are those an uninterrupted run makes;
* purity: ``setup``/``suggest``/``observe`` open no file or socket and read no clock;
* ``to_spec`` is JSON that rebuilds an equal searcher, which suggests the same configs.

Each searcher is driven the way the controller drives it: two trials at a time, an intermediate result as
soon as a trial starts, its last results and its final ``observe`` when it ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import tunesmith as ts
from tunesmith.searchers._base import FINISHED, Searcher
from tunesmith.space import choice, loguniform, randint, uniform

pytest.importorskip("optuna")
pytest.importorskip("scipy")
import optuna  # noqa: E402,F401  (imported before the no-I/O guard: an import reads files)
import scipy.stats.qmc  # noqa: E402,F401

SPACE: dict[str, Any] = {"x": uniform(-1, 1), "lr": loguniform(1e-4, 1e-1), "k": randint(0, 10),
                         "act": choice(["relu", "tanh"])}
# a conditional choice: one option holds a domain of its own
CONDITIONAL: dict[str, Any] = {"x": uniform(-1, 1), "k": randint(0, 10),
                               "act": choice(["relu", {"name": "tanh", "scale": uniform(0.5, 2)}, "tanh"])}
POINTS = [{"x": 0.25, "act": "tanh"}, {"k": 3}]
NUM_SAMPLES = 40
TRIALS = 10  # enough for every model to take over (n_startup_trials=3, min_points_in_model=2)

Make = Callable[[Any], Searcher]

# id -> a factory of the searcher for a seed (None: unseeded)
SEARCHERS: dict[str, Make] = {
    "random": lambda seed: ts.Random(seed=seed),
    "quasirandom": lambda seed: ts.QuasiRandom(seed=seed),
    "bohb": lambda seed: ts.BOHB(seed=seed, min_points_in_model=2),
    "optuna-tpe": lambda seed: ts.OptunaSearch(sampler="tpe", seed=seed, n_startup_trials=3),
    "optuna-cmaes": lambda seed: ts.OptunaSearch(sampler="cmaes", seed=seed, n_startup_trials=3),
    # GP fits are slow (about 0.5 s an ask): two model-based asks per run suffice
    "optuna-gp": lambda seed: ts.OptunaSearch(sampler="gp", seed=seed, n_startup_trials=TRIALS - 2),
    "optuna-nsgaii": lambda seed: ts.OptunaSearch(sampler="nsgaii", seed=seed),
    "optuna-random": lambda seed: ts.OptunaSearch(sampler="random", seed=seed),
    "limiter": lambda seed: ts.ConcurrencyLimiter(ts.OptunaSearch(seed=seed, n_startup_trials=3), max_concurrent=2),
    "repeat": lambda seed: ts.Repeat(ts.BOHB(seed=seed, min_points_in_model=2), n=2),
    "points-random": lambda seed: ts.Random(seed=seed, points_to_evaluate=POINTS),
    "points-quasirandom": lambda seed: ts.QuasiRandom(seed=seed, points_to_evaluate=POINTS),
    "points-bohb": lambda seed: ts.BOHB(seed=seed, min_points_in_model=2, points_to_evaluate=POINTS),
    "points-tpe": lambda seed: ts.OptunaSearch(seed=seed, n_startup_trials=3, points_to_evaluate=POINTS),
}


# OptunaSearch's docstring: CMA-ES keeps its generations in trial attributes that a replay does not rebuild, so
# after a resume it starts a new search distribution (from the whole history); its next suggestions differ.
INEXACT_REPLAY = {"optuna-cmaes"}


@pytest.fixture(params=list(SEARCHERS))
def make(request: pytest.FixtureRequest) -> Make:
    if "cmaes" in request.param:
        pytest.importorskip("cmaes")
    if "gp" in request.param:
        pytest.importorskip("torch")
    factory = SEARCHERS[request.param]
    factory.id = request.param  # type: ignore[attr-defined]
    return factory


# -- driving a searcher as the controller does -------------------------------------------------------------------
Event = tuple[int, dict[str, Any], bool]  # (trial id, result, final)


def loss(config: dict[str, Any], step: int) -> float:
    return (config["x"] - 0.3) ** 2 + config["k"] / 50 + 0.05 * (config["act"] == "tanh") + 1 / step


class Run:
    """A searcher driven two trials at a time; every suggestion and observation is logged (the store)."""

    def __init__(self, searcher: Searcher, *, metric: str = "loss", mode: str = "min",
                 space: dict[str, Any] = SPACE) -> None:
        self.searcher, self.metric, self.sign = searcher, metric, (1.0 if mode == "min" else -1.0)
        self.space = space
        searcher.setup(space, metric, mode, NUM_SAMPLES)
        self.configs: dict[int, dict[str, Any]] = {}
        self.events: list[Event] = []
        self.running: list[int] = []
        self.next_id = 1

    def result(self, trial_id: int, step: int) -> dict[str, Any]:
        return {self.metric: self.sign * loss(self.configs[trial_id], step), "training_iteration": step}

    def observe(self, trial_id: int, result: dict[str, Any], final: bool) -> None:
        self.searcher.observe(trial_id, result, final)
        self.events.append((trial_id, result, final))

    def suggest(self) -> Any:
        config = self.searcher.suggest(self.next_id)
        if isinstance(config, dict):
            self.configs[self.next_id] = json.loads(json.dumps(config))  # as the store gives it back
            self.running.append(self.next_id)
            self.observe(self.next_id, self.result(self.next_id, 1), False)
            self.next_id += 1
        return config

    def finish_oldest(self) -> None:
        trial_id = self.running.pop(0)
        for step in (2, 3):
            self.observe(trial_id, self.result(trial_id, step), False)
        self.observe(trial_id, self.result(trial_id, 3), True)

    def until(self, trials: int) -> Run:
        """Suggest until ``trials`` configs were handed out, keeping at most two trials running."""
        while len(self.configs) < trials:
            config = self.suggest()
            assert config is not FINISHED
            if config is None or len(self.running) >= 2:
                assert self.running, "the searcher returned None with no trial running"
                self.finish_oldest()
        return self

    def finish_all(self) -> None:
        while self.running:
            self.finish_oldest()

    def suggestions(self, n: int) -> list[Any]:
        """The next ``n`` suggestions, each trial ending before the next is asked for."""
        out = []
        for _ in range(n):
            out.append(self.suggest())
            self.finish_all()
        return out


def replay(searcher: Searcher, run: Run) -> Run:
    """What the controller does on resume: setup, then per stored trial in id order its suggestion and its
    stored observations; trials still running are restarted (nothing more is observed for them yet)."""
    resumed = Run(searcher, metric=run.metric, mode="min" if run.sign > 0 else "max", space=run.space)
    for trial_id in sorted(run.configs):
        searcher.restore_suggestion(trial_id, run.configs[trial_id])
        for tid, result, final in run.events:
            if tid == trial_id:
                resumed.observe(tid, result, final)
    resumed.configs = dict(run.configs)
    resumed.running = list(run.running)
    resumed.next_id = run.next_id
    return resumed


def configs_of(searcher: Searcher, **kw: Any) -> list[dict[str, Any]]:
    run = Run(searcher, **kw).until(TRIALS)
    return [run.configs[t] for t in sorted(run.configs)]


# -- seeding -------------------------------------------------------------------------------------------------------
def test_same_seed_same_configs_other_seed_other_configs(make: Make) -> None:
    first = configs_of(make(5))
    assert configs_of(make(5)) == first
    assert configs_of(make(6)) != first


def test_an_unseeded_searcher_records_the_seed_it_drew(make: Make) -> None:
    searcher = make(None)
    assert getattr(searcher, "searcher", searcher).seed is None  # the argument stays as given
    spec = searcher.to_spec()
    seed = spec["searcher"]["seed"] if "searcher" in spec else spec["seed"]
    assert isinstance(seed, int), spec  # not None: `tunesmith resume` rebuilds the searcher from this spec
    assert configs_of(rebuild(spec)) == configs_of(searcher)
    assert configs_of(make(None)) != configs_of(make(None))  # and each unseeded searcher draws its own


# -- bad arguments -------------------------------------------------------------------------------------------------
def _optuna(**kw: Any) -> Searcher:
    return ts.OptunaSearch(**kw)


# (id, the searcher, setup's (metric, mode, num_samples), what the ConfigError starts with). The constructor
# only stores its arguments; setup checks them.
BAD: list[tuple[str, Callable[[], Searcher], tuple[Any, Any, Any], str]] = [
    ("random-seed-str", lambda: ts.Random(seed="x"), ("loss", "min", 1), r"^seed: expected an int or None"),
    ("random-seed-float", lambda: ts.Random(seed=1.5), ("loss", "min", 1), r"^seed: expected an int or None"),
    ("random-seed-bool", lambda: ts.Random(seed=True), ("loss", "min", 1), r"^seed: expected an int or None"),
    ("random-seed-list", lambda: ts.Random(seed=[1]), ("loss", "min", 1), r"^seed: expected an int or None"),
    *[(f"random-num_samples-{n!r}", lambda: ts.Random(seed=0), ("loss", "min", n),
       r"^num_samples: expected an int >= 1, or -1") for n in (0, -2, 1.5, True, "3", None)],
    ("quasirandom-method", lambda: ts.QuasiRandom(method="lhs"), (None, None, 4),
     r"^method: expected one of \['sobol', 'halton'\]"),
    ("quasirandom-seed-str", lambda: ts.QuasiRandom(seed="x"), (None, None, 4), r"^seed: expected an int"),
    ("quasirandom-seed-bool", lambda: ts.QuasiRandom(seed=True), (None, None, 4), r"^seed: expected an int"),
    ("quasirandom-num_samples", lambda: ts.QuasiRandom(), (None, None, 0), r"^num_samples: expected an int >= 1"),
    ("bohb-seed", lambda: ts.BOHB(seed=1.5), ("loss", "min", 10), r"^seed: expected an int"),
    ("bohb-min_points-1", lambda: ts.BOHB(min_points_in_model=1), ("loss", "min", 10),
     r"^min_points_in_model: expected an int >= 2 or None"),
    ("bohb-min_points-float", lambda: ts.BOHB(min_points_in_model=2.0), ("loss", "min", 10),
     r"^min_points_in_model: expected an int >= 2"),
    ("bohb-top-0", lambda: ts.BOHB(top_n_percent=0), ("loss", "min", 10),
     r"^top_n_percent: expected a number with 0 < top_n_percent < 100"),
    ("bohb-top-100", lambda: ts.BOHB(top_n_percent=100), ("loss", "min", 10), r"^top_n_percent:"),
    ("bohb-random_fraction", lambda: ts.BOHB(random_fraction=1.5), ("loss", "min", 10),
     r"^random_fraction: expected a number with 0 <= random_fraction <= 1"),
    ("bohb-random_fraction-nan", lambda: ts.BOHB(random_fraction=float("nan")), ("loss", "min", 10),
     r"^random_fraction:"),
    ("bohb-bandwidth_factor", lambda: ts.BOHB(bandwidth_factor=0), ("loss", "min", 10),
     r"^bandwidth_factor: expected a number with bandwidth_factor > 0"),
    ("bohb-min_bandwidth", lambda: ts.BOHB(min_bandwidth=1), ("loss", "min", 10),
     r"^min_bandwidth: expected a number with 0 < min_bandwidth < 1"),
    ("bohb-n_candidates-0", lambda: ts.BOHB(n_candidates=0), ("loss", "min", 10),
     r"^n_candidates: expected an int >= 1"),
    ("bohb-n_candidates-bool", lambda: ts.BOHB(n_candidates=True), ("loss", "min", 10),
     r"^n_candidates: expected an int >= 1"),
    ("bohb-num_samples", lambda: ts.BOHB(seed=0), ("loss", "min", 0), r"^num_samples"),
    ("bohb-metric-none", lambda: ts.BOHB(seed=0), (None, None, 10),
     r"^metric: BOHB learns from results and needs the name of a reported metric; got None"),
    ("bohb-metric-list", lambda: ts.BOHB(seed=0), (["a", "b"], ["min", "min"], 10),
     r"^metric: BOHB .*; got \['a', 'b'\]"),
    ("bohb-mode", lambda: ts.BOHB(seed=0), ("loss", "down", 10), r"^mode: BOHB expects 'min' or 'max'"),
    ("optuna-sampler-name", lambda: _optuna(sampler="bayes"), ("loss", "min", 5), r"^sampler: expected one of"),
    ("optuna-sampler-int", lambda: _optuna(sampler=3), ("loss", "min", 5), r"^sampler: expected one of"),
    ("optuna-seed-str", lambda: _optuna(seed="x"), ("loss", "min", 5), r"^seed: expected an int"),
    ("optuna-seed-float", lambda: _optuna(seed=1.5), ("loss", "min", 5), r"^seed: expected an int"),
    ("optuna-startup-neg", lambda: _optuna(n_startup_trials=-1), ("loss", "min", 5),
     r"^n_startup_trials: expected an int >= 0"),
    ("optuna-startup-float", lambda: _optuna(n_startup_trials=2.5), ("loss", "min", 5),
     r"^n_startup_trials: expected an int >= 0"),
    ("optuna-startup-unused", lambda: _optuna(sampler="random", n_startup_trials=3), ("loss", "min", 5),
     r"^n_startup_trials: not used"),
    ("optuna-metric-none", lambda: _optuna(), (None, None, 5), r"^metric: OptunaSearch learns from results"),
    ("optuna-metric-empty", lambda: _optuna(), ("", "min", 5), r"^metric:"),
    ("optuna-mode-none", lambda: _optuna(), ("loss", None, 5), r"^mode: OptunaSearch expects 'min' or 'max'"),
    ("optuna-mode-word", lambda: _optuna(), ("loss", "minimize", 5), r"^mode:"),
    ("optuna-modes-short", lambda: _optuna(), (["a", "b"], ["min"], 5), r"^mode: expected a list of 2"),
    ("optuna-modes-str", lambda: _optuna(), (["a", "b"], "min", 5), r"^mode: expected a list of 2"),
    ("optuna-metrics-dup", lambda: _optuna(), (["a", "a"], ["min", "min"], 5),
     r"^metric: expected a non-empty list of distinct"),
    ("optuna-metrics-empty", lambda: _optuna(), ([], [], 5), r"^metric:"),
    ("optuna-modes-bad", lambda: _optuna(), (["a", "b"], ["min", "up"], 5), r"^mode: expected only 'min' or 'max'"),
    ("optuna-cmaes-multi", lambda: _optuna(sampler="cmaes"), (["a", "b"], ["min", "min"], 5),
     r"^sampler: 'cmaes' optimises a single metric"),
    *[(f"optuna-num_samples-{n!r}", lambda: _optuna(seed=0), ("loss", "min", n), r"^num_samples")
      for n in (0, -2, 1.5, None)],
    ("limiter-searcher", lambda: ts.ConcurrencyLimiter("tpe", max_concurrent=1), ("loss", "min", 2),  # type: ignore[arg-type]
     r"^searcher: expected a tunesmith searcher"),
    *[(f"limiter-max_concurrent-{m!r}", lambda m=m: ts.ConcurrencyLimiter(ts.Random(seed=0), max_concurrent=m),
       ("loss", "min", 2), r"^max_concurrent: expected an int >= 1") for m in (0, 1.5, True)],
    ("repeat-searcher", lambda: ts.Repeat("random", 2), ("loss", "min", 2),  # type: ignore[arg-type]
     r"^searcher: expected a tunesmith searcher"),
    *[(f"repeat-n-{n!r}", lambda n=n: ts.Repeat(ts.Random(seed=0), n), ("loss", "min", 2),
       r"^n: expected an int >= 1") for n in (0, 2.0)],
    *[(f"points-{name}-not-a-list", lambda make=make: make({"x": 1}), ("loss", "min", 5),
       r"^points_to_evaluate: expected a list") for name, make in (
        ("random", lambda p: ts.Random(seed=0, points_to_evaluate=p)),
        ("quasirandom", lambda p: ts.QuasiRandom(seed=0, points_to_evaluate=p)),
        ("bohb", lambda p: ts.BOHB(seed=0, points_to_evaluate=p)),
        ("optuna", lambda p: ts.OptunaSearch(seed=0, points_to_evaluate=p)))],
    ("points-quasirandom-not-a-dict", lambda: ts.QuasiRandom(points_to_evaluate=["x"]), (None, None, 4),
     r"^points_to_evaluate\[0\]: expected a config dict"),
    ("points-quasirandom-key", lambda: ts.QuasiRandom(points_to_evaluate=[{"y": 1}]), (None, None, 4),
     r'^points_to_evaluate\[0\]\["y"\]: not a key of the space'),
    ("points-random-key", lambda: ts.Random(points_to_evaluate=[{"nope": 1}]), ("loss", "min", 5),
     r'^points_to_evaluate\[0\]\["nope"\]: not a key'),
    ("points-bohb-key", lambda: ts.BOHB(points_to_evaluate=[{"z": 1}]), ("loss", "min", 10),
     r'^points_to_evaluate\[0\]\["z"\]: not a key'),
    ("points-optuna-key", lambda: _optuna(points_to_evaluate=[{"nope": 1}]), ("loss", "min", 5),
     r'^points_to_evaluate\[0\]\["nope"\]: not a key'),
    ("points-optuna-option", lambda: _optuna(points_to_evaluate=[{"c": "z"}]), ("loss", "min", 5),
     r'^points_to_evaluate\[0\]\["c"\]: \'z\' is none of the options'),
    ("points-quasirandom-too-many", lambda: ts.QuasiRandom(points_to_evaluate=[{"x": 1}] * 3), (None, None, 2),
     r"^points_to_evaluate: 3 points, but the searcher suggests only 2"),
    ("points-optuna-too-many", lambda: _optuna(points_to_evaluate=[{"x": 0.1}] * 6), ("loss", "min", 5),
     r"^points_to_evaluate: 6 points, but"),
]


@pytest.mark.parametrize(("build", "setup_args", "match"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments_are_stored_then_named_by_setup(build: Callable[[], Searcher], setup_args: tuple[Any, Any, Any],
                                                      match: str) -> None:
    if "cmaes" in match:
        pytest.importorskip("cmaes")
    searcher = build()  # the constructor only stores
    metric, mode, num_samples = setup_args
    with pytest.raises(ts.ConfigError, match=match):
        searcher.setup({"x": uniform(0, 1), "c": choice(["a", "b"])}, metric, mode, num_samples)


# -- mode ----------------------------------------------------------------------------------------------------------
def test_maximising_the_negated_metric_is_minimising_the_metric(make: Make) -> None:
    assert configs_of(make(3), metric="score", mode="max") == configs_of(make(3), metric="loss", mode="min")


# -- resume by replay ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [SPACE, CONDITIONAL], ids=["flat", "conditional"])
@pytest.mark.parametrize("crash_at", [3, TRIALS])
def test_resume_by_replay_gives_the_same_next_suggestions(make: Make, crash_at: int, space: dict[str, Any]) -> None:
    uninterrupted = Run(make(11), space=space).until(crash_at)
    assert uninterrupted.running  # crashed with trials running: they are restarted, not observed again
    resumed = replay(make(11), uninterrupted)
    # right after the resume (the limiter's second is None: its running trials count), then with them ended
    assert [resumed.suggest(), resumed.suggest()] == [uninterrupted.suggest(), uninterrupted.suggest()]
    resumed.finish_all()
    uninterrupted.finish_all()
    ahead, again = uninterrupted.suggestions(3), resumed.suggestions(3)
    if make.id in INEXACT_REPLAY:  # type: ignore[attr-defined]
        assert all(isinstance(c, dict) and c.keys() == space.keys() for c in again)
    else:
        assert again == ahead


# -- purity --------------------------------------------------------------------------------------------------------
def test_no_file_socket_or_clock(make: Make, request: pytest.FixtureRequest) -> None:
    searcher = make(2)  # constructed outside the guard: an unseeded one draws its seed from the OS
    calls = request.getfixturevalue("no_io")
    run = Run(searcher).until(TRIALS)
    replay(make(2), run).suggestions(1)
    assert calls == []


# -- spec ----------------------------------------------------------------------------------------------------------
def rebuild(spec: dict[str, Any]) -> Any:
    """A searcher from its spec, nested specs included (what `tunesmith resume` does for one level)."""
    args = {k: rebuild(v) if isinstance(v, dict) and "type" in v else v for k, v in spec.items() if k != "type"}
    return getattr(ts, spec["type"])(**args)


def test_to_spec_is_json_and_rebuilds_the_same_searcher(make: Make) -> None:
    searcher = make(9)
    spec = searcher.to_spec()
    assert json.loads(json.dumps(spec)) == spec
    again = rebuild(spec)
    assert type(again) is type(searcher) and again.to_spec() == spec
    assert configs_of(again) == configs_of(searcher)


def test_the_command_line_rebuilds_every_searcher_it_offers() -> None:
    from tunesmith.cli import _SEARCHERS, _rebuild

    for type_name, kwargs in _SEARCHERS.values():
        spec = getattr(ts, type_name)(seed=4, **kwargs).to_spec()
        assert _rebuild(spec, "searcher").to_spec() == spec


def test_finished_stays_finished(make: Make) -> None:
    searcher = make(1)
    searcher.setup(SPACE, "loss", "min", 2)
    got = []
    for trial_id in range(1, 10):
        config = searcher.suggest(trial_id)
        got.append(config is FINISHED)
        if isinstance(config, dict):
            searcher.observe(trial_id, {"loss": 1.0, "training_iteration": 1}, True)
    first = got.index(True)
    assert all(got[first:]), got  # FINISHED means never ask again
