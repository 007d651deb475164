"""Search-space, searcher and scheduler inputs off the happy path (an audit as a demanding user): each is refused up
front naming the argument and what was expected, or behaves as documented; none fails deep in a run or silently.

Covered here: PBT ``hyperparam_mutations`` domains checked as a space's are (reversed bounds gave a constant, a
choice of dicts holding domains failed mid-run).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import tunesmith as ts
from tunesmith._errors import ConfigError

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
