"""Search-space, searcher and scheduler inputs off the happy path (an audit as a demanding user): each is refused up
front naming the argument and what was expected, or behaves as documented; none fails deep in a run or silently.

Covered here: PBT ``hyperparam_mutations`` domains checked as a space's are (reversed bounds gave a constant, a
choice of dicts holding domains failed mid-run), an exploit config the store cannot hold (a raw ``TypeError`` that
left trials RUNNING), and OptunaSearch's partial point for a choice of dicts with a number outside its domain (refused,
where every other searcher uses it as given), and ``Repeat`` over a space with both ``seed`` and ``repeat_index``
(the repeat index replaced the space's value).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import tunesmith as ts
from tunesmith._errors import ConfigError
from tunesmith.searchers.bohb import BOHB
from tunesmith.searchers.optuna import OptunaSearch
from tunesmith.searchers.random import Random
from tunesmith.searchers.sobol import QuasiRandom
from tunesmith.trial import TrialStatus

# ----------------------------------------------------------------- PBT's hyperparam_mutations as domains


@pytest.mark.parametrize(("spec", "match"), [
    (ts.uniform(2, 1), r"hyperparam_mutations\['lr'\]: uniform expected low < high; got low=2, high=1"),
    (ts.randint(5, 3), r"hyperparam_mutations\['lr'\]: randint expected low < high"),
    (ts.loguniform(10, 1), r"hyperparam_mutations\['lr'\]: loguniform expected low < high"),
    (ts.quniform(0.3, 0.4, 1), r"hyperparam_mutations\['lr'\]: expected a multiple of q=1"),
    (ts.randint(0.5, 3), r"hyperparam_mutations\['lr'\]: randint expected low to be an int"),
    (ts.choice("abc"), r"hyperparam_mutations\['lr'\]: choice expected options to be a list"),
    (ts.choice([{"x": ts.uniform(0, 1)}, 2]),
     r"hyperparam_mutations\['lr'\]\.options\[0\]\[\"x\"\]: .*domain.*not sampled"),
    (ts.grid([1, ts.randint(1, 3)]), r"hyperparam_mutations\['lr'\]\.values\[1\]: .*domain.*not sampled"),
    ([0.1, ts.uniform(0, 1)], r"hyperparam_mutations\['lr'\]\[1\]: .*domain.*not sampled"),
    ({"optim": {"lr": ts.normal(0, 0)}}, r"hyperparam_mutations\['optim/lr'\]: expected a positive sd"),
])
def test_a_pbt_mutation_domain_is_checked_as_a_space_domain_is(spec: Any, match: str) -> None:
    """Before, only ``from_unit(0.5)`` was tried: ``uniform(2, 1)`` always gave 1.0, ``randint(5, 3)`` always 2
    (outside both bounds), and a choice whose options hold domains put the domain object itself into the exploited
    trial's config, which failed the run at its first exploit (``TypeError: Object of type Uniform is not JSON
    serializable``)."""
    mutations = spec if isinstance(spec, dict) else {"lr": spec}
    with pytest.raises(ConfigError, match=match):
        ts.PBT(perturbation_interval=2, hyperparam_mutations=mutations).setup("loss", "min")


def test_a_pbt_mutation_of_valid_domains_is_accepted_and_drawn_inside_them() -> None:
    pbt = ts.PBT(perturbation_interval=2, seed=0, resample_probability=1.0, hyperparam_mutations={
        "lr": ts.uniform(0.1, 0.2), "n": ts.randint(3, 5), "opt": ts.choice([{"name": "sgd"}, "adam"])})
    pbt.setup("loss", "min")
    for _ in range(20):
        config = pbt.explore({"lr": 0.15, "n": 4, "opt": "adam"})
        assert 0.1 <= config["lr"] <= 0.2 and config["n"] in (3, 4) and config["opt"] in ({"name": "sgd"}, "adam")


def test_run_refuses_a_bad_pbt_mutation_before_anything_is_created(results_dir: Any) -> None:
    def train(config: dict[str, Any]) -> None:
        ts.report({"loss": 1.0})

    with pytest.raises(ConfigError, match=r"hyperparam_mutations\['lr'\]: uniform expected low < high"):
        ts.run(train, space={"lr": ts.uniform(0, 1)}, metric="loss", mode="min", verbose=0, name="bad-pbt",
               scheduler=ts.PBT(perturbation_interval=1, hyperparam_mutations={"lr": ts.uniform(1, 0)}))
    assert not os.path.exists(os.path.join(results_dir, "bad-pbt"))


# ------------------------------------------------------------------ an exploit config the store cannot hold


def _climb(config: dict[str, Any]) -> None:
    checkpoint = ts.get_checkpoint()
    start = checkpoint.load()["i"] if checkpoint else 0
    for i in range(start, 6):
        ts.report({"score": float(config["a"] * (i + 1))}, checkpoint=ts.Checkpoint.from_state({"i": i + 1}))


def _a_set() -> set[int]:
    return {1, 2}


def test_an_exploit_config_the_store_cannot_hold_ends_the_run_with_a_config_error_naming_it(results_dir: Any) -> None:
    """A PBT mutation function's value is known only at an exploit. Before, the store's ``json.dumps`` raised a raw
    ``TypeError: Object of type set is not JSON serializable`` and the experiment's trials were left RUNNING ("could
    not be stopped cleanly"). Now the experiment ends with a ConfigError naming the scheduler, the trial and the key,
    and every trial ends."""
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"a": _a_set}, resample_probability=1.0, seed=0)
    # one slot: trial 1 (a=1) pauses at iteration 2 for trial 2 (a=0), which is then the bottom and exploits trial 1
    with pytest.raises(ConfigError, match=r"PBT's Exploit of trial_00002 .*config\[\"a\"\]: set \{1, 2\} cannot be "
                                          r"stored"):
        ts.run(_climb, space={"a": ts.grid([1, 0])}, metric="score", mode="max", max_concurrent=1, verbose=0,
               name="unstorable-exploit", scheduler=pbt)
    stored = ts.load("unstorable-exploit")
    assert stored.meta["status"] == "failed"
    assert all(t.status is not TrialStatus.RUNNING for t in stored.trials), [t.status for t in stored.trials]
    assert all(t.config["a"] in (0, 1) for t in stored.trials)


# --------------------------------------------- OptunaSearch: a partial point for a choice of dicts, out of bounds

COND = {"m": ts.choice([{"t": "a", "lr": ts.uniform(0, 1)}, {"t": "b", "k": ts.randint(1, 3)}]),
        "x": ts.uniform(0, 1)}


@pytest.mark.parametrize(("point", "expected"), [
    ({"m": {"t": "a", "lr": 5.0}}, {"t": "a", "lr": 5.0}),
    ({"m": {"lr": 5.0}}, {"t": "a", "lr": 5.0}),
    ({"m": {"k": 7}}, {"t": "b", "k": 7}),
])
@pytest.mark.parametrize("make", [Random, QuasiRandom, BOHB, OptunaSearch])
def test_every_searcher_takes_a_conditional_point_with_a_number_outside_its_domain(make: Any, point: dict[str, Any],
                                                                                  expected: dict[str, Any]) -> None:
    """A number outside its domain is used as given (a known baseline), in a choice's option too: the option it
    picks is the first whose keys and constants it agrees with. OptunaSearch refused it ("is none of the options")."""
    searcher = make(seed=0, points_to_evaluate=[point])
    searcher.setup(COND, "loss", "min", 2)
    with pytest.warns(UserWarning, match="out of range") if make is OptunaSearch else _nothing():
        config = searcher.suggest(0)
    assert isinstance(config, dict) and config["m"] == expected


class _nothing:  # noqa: N801 - a context manager used as pytest.warns is
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_optuna_still_refuses_a_conditional_point_that_fits_no_option() -> None:
    searcher = OptunaSearch(seed=0, points_to_evaluate=[{"m": {"t": "c"}}])
    with pytest.raises(ConfigError, match=r"points_to_evaluate\[0\]\[\"m\"\]: \{'t': 'c'\} is none of the options"):
        searcher.setup(COND, "loss", "min", 2)


# ------------------------------------------------------------- Repeat: a space that has both of its keys


def test_repeat_refuses_a_space_with_both_seed_and_repeat_index_naming_them() -> None:
    """``Repeat`` numbers repeats under ``seed``, or ``repeat_index`` where the space has ``seed``. With both keys in
    the space it overwrote the space's ``repeat_index`` (a choice of 5 and 6 became 0 and 1) without a word."""
    searcher = ts.Repeat(Random(seed=0), 2)
    with pytest.raises(ConfigError, match=r"space\[\"repeat_index\"\]: .*Repeat.*'seed' and 'repeat_index'"):
        searcher.setup({"seed": 1, "repeat_index": ts.choice([5, 6])}, "loss", "min", 1)


def test_repeat_leaves_a_space_seed_alone_and_numbers_repeats_under_repeat_index() -> None:
    searcher = ts.Repeat(Random(seed=0), 2)
    searcher.setup({"seed": ts.choice([5, 6]), "x": 1}, "loss", "min", 1)
    configs = [searcher.suggest(i) for i in range(2)]
    assert [c["repeat_index"] for c in configs] == [0, 1]  # type: ignore[index]
    assert configs[0]["seed"] == configs[1]["seed"] in (5, 6)  # type: ignore[index]


def _pbt_trial(config):
    for i in range(4):
        ts.report({"loss": config.get("learning_rate", 0.5) / (i + 1)})


@pytest.mark.parametrize("scheduler", [
    lambda: ts.PBT(perturbation_interval=2, hyperparam_mutations={"lr": ts.uniform(0, 1)}),
    lambda: ts.PBT(perturbation_interval=2, hyperparam_mutations={"opt": {"lr": [0.1, 0.2]}}),
    lambda: ts.PB2(perturbation_interval=2, hyperparam_bounds={"lr": [0.0, 1.0]}),
    # wrapped: ResourceChanging passed every hook on but mutated_keys, so the typo ran unexplored
    lambda: ts.ResourceChanging(ts.PBT(perturbation_interval=2, hyperparam_mutations={"lr": ts.uniform(0, 1)}),
                                lambda trial, view: None),
])
def test_a_pbt_mutation_of_a_key_the_space_does_not_have_is_refused_naming_it(results_dir, scheduler):
    """``hyperparam_mutations={"lr": ...}`` over a space whose key is ``learning_rate`` (a typo, or a renamed key):
    exploited trials got a new ``lr`` nothing read, and ``learning_rate`` was only copied, never explored. Refused
    before anything is created, naming the key and the space's keys."""
    space = {"learning_rate": ts.uniform(0.1, 1.0), "opt": ts.choice([{"kind": "sgd", "momentum": 0.9},
                                                                      {"kind": "adam"}])}
    with pytest.raises(ts.ConfigError, match=r"(mutations|bounds)\['(lr|opt/lr)'\] is not a key of the space "
                                             r"\(its keys: learning_rate, opt, opt/kind, opt/momentum\)"):
        ts.run(_pbt_trial, space, metric="loss", mode="min", num_samples=2, scheduler=scheduler(), name="typo",
               verbose=0)
    assert not (results_dir / "typo").exists()


def test_pbt_mutations_of_keys_the_space_has_run(results_dir):
    """Constants, keys inside a choice of dicts and whole nested dicts are keys of the space."""
    space = {"learning_rate": 0.5, "opt": ts.choice([{"kind": "sgd", "momentum": 0.9}, {"kind": "adam"}])}
    scheduler = ts.PBT(perturbation_interval=2, hyperparam_mutations={"learning_rate": ts.uniform(0.1, 1.0),
                                                                      "opt/momentum": [0.8, 0.9]})
    result = ts.run(_pbt_trial, space, metric="loss", mode="min", num_samples=2, scheduler=scheduler, verbose=0)
    assert {t.status for t in result.trials} == {ts.TrialStatus.TERMINATED}
