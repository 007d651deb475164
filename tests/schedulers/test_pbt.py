from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tunesmith as ts
from tunesmith._errors import ConfigError
from tunesmith.schedulers._base import CONTINUE, STOP, Exploit
from tunesmith.schedulers.pbt import PBT

NAN = float("nan")


def population(Harness, values, *, interval=5, mode="min", checkpoint=True, configs=None, **kwargs):
    """Trials 0..n-1 with ``configs[i]``; all but the last report ``values[i]`` at iterations 1..interval.

    The last trial reports up to ``interval - 1``: the caller makes it reach the perturbation point.
    """
    kwargs.setdefault("hyperparam_mutations", {"lr": [0.001, 0.01, 0.1]})
    kwargs.setdefault("seed", 0)
    h = Harness(PBT(perturbation_interval=interval, **kwargs), mode=mode)
    for trial_id in range(len(values)):
        config = (configs or {}).get(trial_id, {"lr": 0.01, "width": 64 + trial_id, "id": trial_id})
        h.add(trial_id, config=config)
    last = len(values) - 1
    for iteration in range(1, interval + 1):
        for trial_id, value in enumerate(values):
            if trial_id == last and iteration == interval:
                continue
            h.report(trial_id, iteration, value, checkpoint=checkpoint)
    return h


def test_bottom_trial_exploits_the_top_trials_checkpoint_and_config(Harness):
    # Four trials, quantile 0.25: trial 1 is the top, trial 3 (worst) the bottom.
    h = population(Harness, [2.0, 1.0, 3.0, 9.0], resample_probability=0.0)
    decision = h.report(3, 5, 9.0)
    assert isinstance(decision, Exploit)
    source = h.trial(1)
    assert decision.source_trial == 1
    assert decision.source_checkpoint == source.checkpoint_path == "ckpt/1/5"
    assert decision.source_iteration == source.checkpoint_iteration == 5
    # Every key but the mutated one is the *source's*, not the trial's own.
    assert {k: v for k, v in decision.config.items() if k != "lr"} == {"width": 65, "id": 1}
    assert decision.config["lr"] in (0.001, 0.1)  # a neighbour of the source's 0.01
    assert source.config == {"lr": 0.01, "width": 65, "id": 1}  # the source is not mutated


def test_only_bottom_quantile_trials_exploit(Harness):
    h = population(Harness, [2.0, 1.0, 9.0, 3.0])
    assert h.report(3, 5, 3.0) == CONTINUE  # trial 2 is the bottom one


def test_between_perturbation_points_nothing_happens(Harness):
    h = population(Harness, [2.0, 1.0, 3.0, 9.0], interval=5)
    # Trial 3 was the bottom one all along, but iterations 1-4 are not perturbation points.
    assert [d for t, i, d in h.log if i < 5] == [CONTINUE] * 16
    assert isinstance(h.report(3, 5, 9.0), Exploit)


def test_decision_iteration_is_the_next_perturbation_point(Harness):
    h = population(Harness, [2.0, 1.0, 3.0, 9.0], interval=5)
    assert h.scheduler.decision_iteration(h.trial(3)) == 5
    assert h.scheduler.decision_iteration(h.trial(0)) == 10  # perturbed (kept) at 5
    decision = h.report(3, 5, 9.0)
    assert isinstance(decision, Exploit)
    # Restarted at the source's checkpoint (5): judged again one interval after the source's point.
    assert h.trial(3).iteration == 5
    assert h.scheduler.decision_iteration(h.trial(3)) == 10


def test_exploiting_trial_takes_over_the_sources_perturbation_point(Harness):
    h = population(Harness, [2.0, 1.0, 3.0, 9.0], interval=5)
    h.run([(1, i, 1.0) for i in range(6, 11)], checkpoint=True)  # the top trial runs ahead to 10
    decision = h.report(3, 5, 9.0)
    assert isinstance(decision, Exploit) and decision.source_trial == 1
    assert decision.source_iteration == 10
    # Restarted at the source's iteration 10, it trains a full interval before being judged.
    assert h.scheduler.decision_iteration(h.trial(3)) == 15


def test_no_checkpointed_source_means_continue(Harness):
    h = population(Harness, [2.0, 1.0, 3.0, 9.0], checkpoint=False)
    assert h.report(3, 5, 9.0) == CONTINUE


def test_only_checkpointed_top_trials_are_sources(Harness):
    # quantile 0.5 of 4: top {1, 0}, bottom {2, 3}; only trial 0 has a checkpoint.
    h = population(Harness, [2.0, 1.0, 3.0, 9.0], checkpoint=False, quantile_fraction=0.5)
    h.trial(0).checkpoint_path, h.trial(0).checkpoint_iteration = "ckpt/0/3", 3
    for iteration in (5, 10, 15, 20):  # each one a perturbation point again (the source's is 5)
        decision = h.report(3, iteration, 9.0, apply=False)
        assert isinstance(decision, Exploit) and decision.source_trial == 0
        assert (decision.source_checkpoint, decision.source_iteration) == ("ckpt/0/3", 3)


def test_mode_max(Harness):
    h = population(Harness, [2.0, 1.0, 3.0, 0.5], mode="max")
    decision = h.report(3, 5, 0.5)
    assert isinstance(decision, Exploit) and decision.source_trial == 2


def test_nan_is_bottom_and_never_a_source(Harness):
    h = population(Harness, [NAN, 1.0, 3.0, 2.0])
    decision = h.report(3, 5, 2.0)
    assert decision == CONTINUE  # trial 0 (NaN) is the bottom, not 3
    # Top 2 of 5 are trial 3 and a NaN one; NaN is dropped from the sources: exploits copy trial 3.
    h = population(Harness, [NAN, NAN, NAN, 2.0, NAN], quantile_fraction=0.5)
    h.report(4, 5, NAN, checkpoint=True)
    sources = [d.source_trial for _, _, d in h.log if isinstance(d, Exploit)]
    assert sources == [3, 3]  # trials 2 and 4, the bottom two


def test_ties_rank_by_lower_trial_id(Harness):
    h = population(Harness, [1.0, 1.0, 1.0, 1.0])
    decision = h.report(3, 5, 1.0)
    assert isinstance(decision, Exploit) and decision.source_trial == 0


def test_single_trial_never_exploits(Harness):
    h = population(Harness, [1.0])
    assert h.report(0, 5, 1.0) == CONTINUE


def test_results_after_completion_are_harmless(Harness):
    h = population(Harness, [2.0, 1.0, 3.0, 9.0])
    h.end(3)
    assert h.report(3, 5, 9.0) == STOP
    assert h.scheduler.decision_iteration(h.trial(3)) is None
    # Ended trials are neither sources nor compared: with 1 (the best) gone, 2 copies 0.
    h.end(1)
    decision = h.report(2, 10, 3.0)
    assert isinstance(decision, Exploit) and decision.source_trial == 0


# --------------------------------------------------------------------------------------- exploration


def explorer(mutations, resample=0.0, seed=0):
    pbt = PBT(perturbation_interval=1, hyperparam_mutations=mutations, resample_probability=resample, seed=seed)
    pbt.setup("loss", "min")
    return pbt


def test_list_values_move_to_a_neighbouring_index_clamped():
    pbt = explorer({"width": [16, 32, 64, 128]})
    assert {pbt.explore({"width": 32})["width"] for _ in range(50)} == {16, 64}
    assert {pbt.explore({"width": 16})["width"] for _ in range(50)} == {16, 32}
    assert {pbt.explore({"width": 128})["width"] for _ in range(50)} == {64, 128}
    assert {pbt.explore({"width": 100})["width"] for _ in range(50)} <= {16, 32, 64, 128}  # resampled


def test_bool_options_are_not_confused_with_numbers():
    pbt = explorer({"flag": [0, 1, True]})
    typed = {(type(v), v) for v in (pbt.explore({"flag": True})["flag"] for _ in range(50))}
    assert typed == {(int, 1), (bool, True)}  # True sits at index 2, not at 1's index
    typed = {(type(v), v) for v in (pbt.explore({"flag": 0})["flag"] for _ in range(50))}
    assert typed == {(int, 0), (int, 1)}


def test_a_nan_option_is_recognised_and_moves_to_its_neighbours():
    # NaN != NaN: a trial holding the NaN option (a new float read back from the store) was taken for one outside
    # the options and resampled anywhere, as was a list option holding a NaN
    for spec in ([1.0, float("nan"), 2.0, 3.0, 4.0], ts.choice([1.0, float("nan"), 2.0, 3.0, 4.0])):
        pbt = explorer({"v": spec})
        assert {pbt.explore({"v": float("nan")})["v"] for _ in range(50)} == {1.0, 2.0}
    pbt = explorer({"pair": [[1, 1], [0, float("nan")], [2, 2], [3, 3], [4, 4]]})
    assert {tuple(pbt.explore({"pair": [0, float("nan")]})["pair"]) for _ in range(50)} == {(1, 1), (2, 2)}


def test_callable_values_are_scaled_by_0_8_or_1_2():
    pbt = explorer({"lr": lambda: 123.0})
    assert {pbt.explore({"lr": 0.5})["lr"] for _ in range(50)} == {0.4, 0.6}
    assert {pbt.explore({"lr": "adam"})["lr"] for _ in range(5)} == {123.0}  # not a number: resampled
    assert {explorer({"lr": lambda: 123.0}, resample=1.0).explore({"lr": 0.5})["lr"]} == {123.0}


def test_ints_move_by_at_least_one():
    pbt = explorer({"layers": lambda: 3})
    assert {pbt.explore({"layers": 1})["layers"] for _ in range(50)} == {0, 2}
    assert {pbt.explore({"layers": 10})["layers"] for _ in range(50)} == {8, 12}


@dataclass(frozen=True)
class FakeUniform:
    """Duck-typed stand-in for a tunesmith.space domain."""

    low: float
    high: float

    def from_unit(self, u: float) -> float:
        return self.low + u * (self.high - self.low)


def test_domain_resamples_with_from_unit_and_clips_perturbations():
    pbt = explorer({"lr": FakeUniform(1.0, 2.0)}, resample=1.0)
    assert all(1.0 <= pbt.explore({"lr": 1.5})["lr"] <= 2.0 for _ in range(50))
    pbt = explorer({"lr": FakeUniform(1.0, 2.0)})
    assert sorted({pbt.explore({"lr": 1.9})["lr"] for _ in range(50)}) == pytest.approx([1.52, 2.0])


def test_space_domains_if_present():
    space = pytest.importorskip("tunesmith.space")
    pbt = explorer({"lr": space.loguniform(1e-4, 1e-1), "units": space.randint(1, 10),
                    "act": space.choice(["relu", "tanh", "gelu"])})
    for _ in range(50):
        new = pbt.explore({"lr": 0.1, "units": 9, "act": "relu"})
        assert new["lr"] in (pytest.approx(0.08), pytest.approx(0.1))  # 0.12 clipped to high
        assert new["units"] in (7, 9)  # 10.8 -> 11 clipped to 9 (high is excluded)
        assert new["act"] in ("relu", "tanh")
    resampled = explorer({"lr": space.loguniform(1e-4, 1e-1)}, resample=1.0).explore({"lr": 5.0})
    assert 1e-4 <= resampled["lr"] <= 1e-1


QUANTIZED = {  # name -> (domain, q, low, high)
    "quniform": (ts.quniform(0, 1, 0.25), 0.25, 0.0, 1.0),
    "quniform-0.1": (ts.quniform(-1, 2, 0.1), 0.1, -1.0, 2.0),
    "qloguniform": (ts.qloguniform(1, 100, 5), 5, 5.0, 100.0),  # 5 is the smallest multiple of 5 inside
    "qnormal": (ts.qnormal(0, 1, 0.5), 0.5, -math.inf, math.inf),
}


def on_grid(value, q):
    """Whether ``value`` is a multiple of ``q`` as the domain writes one (``0.3``, not ``0.30000000000000004``)."""
    return isinstance(value, float) and Decimal(repr(value)) % Decimal(repr(float(q))) == 0


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(QUANTIZED)), seed=st.integers(0, 2**32), start=st.floats(0, 1))
def test_quantized_domains_stay_on_their_grid_and_in_their_bounds(name, seed, start):
    domain, q, low, high = QUANTIZED[name]
    pbt = explorer({"v": domain}, seed=seed)
    config = {"v": domain.from_unit(start)}
    for _ in range(50):  # a lineage: each exploit perturbs the value the last one chose
        new = pbt.explore(config)["v"]
        assert on_grid(new, q) and low <= new <= high, (config["v"], new)
        # a move smaller than q would round back: it moves one q (unless clamped at a bound)
        assert new != config["v"] or new in (domain.from_unit(0.0), domain.from_unit(1.0)), (config["v"], new)
        config = {"v": new}


def test_quantized_values_move_by_0_8_or_1_2_then_round_as_the_domain_does():
    pbt = explorer({"q": ts.quniform(0, 1, 0.25), "ql": ts.qloguniform(1, 100, 5), "qn": ts.qnormal(0, 1, 0.5)})
    moves = [pbt.explore({"q": 0.75, "ql": 50.0, "qn": 1.0}) for _ in range(50)]
    assert {m["q"] for m in moves} == {0.5, 1.0}  # 0.6 and 0.9: 0.8999999999999999 and 0.72 before
    assert {m["ql"] for m in moves} == {40.0, 60.0}
    assert {m["qn"] for m in moves} == {0.5, 1.5}  # 0.8 and 1.2 round back to 1.0: one q instead
    assert {pbt.explore({"q": 0.25, "ql": 5.0, "qn": 0.0})["q"] for _ in range(50)} == {0.0, 0.5}
    assert {pbt.explore({"q": 1.0, "ql": 100.0, "qn": 0.0})["ql"] for _ in range(50)} == {80.0, 100.0}


def test_nested_paths_and_nested_dicts():
    pbt = explorer({"optim/lr": lambda: 1.0, "model": {"width": [1, 2, 3]}})
    new = pbt.explore({"optim": {"lr": 0.5, "beta": 0.9}, "model": {"width": 2, "depth": 4}, "x": 1})
    assert new["optim"]["beta"] == 0.9 and new["model"]["depth"] == 4 and new["x"] == 1
    assert new["optim"]["lr"] in (0.4, 0.6)
    assert new["model"]["width"] in (1, 3)
    created = pbt.explore({"x": 1})
    assert created == {"x": 1, "optim": {"lr": 1.0}, "model": {"width": created["model"]["width"]}}


def test_explore_does_not_touch_its_input():
    pbt = explorer({"optim/lr": lambda: 1.0})
    config = {"optim": {"lr": 0.5}}
    pbt.explore(config)
    assert config == {"optim": {"lr": 0.5}}


@settings(max_examples=100, deadline=None)
@given(
    config=st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]),
                           st.one_of(st.integers(-5, 5), st.floats(-5, 5), st.sampled_from(["x", "y"])),
                           min_size=1),
    mutated=st.sets(st.sampled_from(["a", "b", "c"]), min_size=1),
    resample=st.floats(0, 1),
    seed=st.integers(0, 100),
)
def test_exploit_keeps_every_unmutated_key_of_the_source(Harness, config, mutated, resample, seed):
    options = [-5, 0, 5, "x", "y"]
    mutations = {key: options for key in mutated}
    h = Harness(PBT(perturbation_interval=1, hyperparam_mutations=mutations,
                    resample_probability=resample, seed=seed))
    h.add(0, config={**config, "who": "source"})
    h.add(1, config={"who": "bottom", "a": "own"})
    h.report(0, 1, 0.0, checkpoint=True)
    decision = h.report(1, 1, 1.0)
    assert isinstance(decision, Exploit) and decision.source_trial == 0
    assert decision.source_checkpoint == "ckpt/0/1" and decision.source_iteration == 1
    for key, value in {**config, "who": "source"}.items():
        if key not in mutated:
            assert decision.config[key] == value or (isinstance(value, float) and math.isnan(value))
    for key in mutated:
        assert decision.config[key] in options


def test_unsampleable_domain_is_rejected_at_setup():
    space = pytest.importorskip("tunesmith.space")
    with pytest.raises(ConfigError, match=r"^hyperparam_mutations\['lr'\]"):
        PBT(5, {"lr": space.sample_from(lambda config: 0.1)}).setup("loss", "min")


@pytest.mark.parametrize(("mutations", "match"), [
    ({"optim/lr": [0.1, 0.2], "optim": {"lr": [0.3]}}, r"hyperparam_mutations\['optim/lr'\]: given twice"),
    ({"optim": [1, 2], "optim/lr": [0.1]}, r"hyperparam_mutations\['optim/lr'\]: inside 'optim', which is mutated"),
    ({"optim": {"lr": [0.1]}, "optim/lr/x": [1]},
     r"hyperparam_mutations\['optim/lr/x'\]: inside 'optim/lr', which is mutated"),
])
def test_a_key_given_twice_or_inside_another_mutated_key_is_rejected(mutations, match):
    """Each config key is mutated once: a path and a nested dict naming the same key (it would be mutated twice,
    the second from the first's result), or a key inside another mutated one (the outer value would be replaced
    by a dict of the inner one alone), is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=f"^{match}"):
        PBT(1, mutations).setup("loss", "min")


def test_nested_and_path_forms_overlap_nowhere_else():
    # siblings under one prefix, given both ways, are distinct keys
    pbt = explorer({"optim/lr": lambda: 1.0, "optim": {"beta": lambda: 2.0}, "optimizer": lambda: 3.0}, resample=1.0)
    assert pbt.explore({}) == {"optim": {"lr": 1.0, "beta": 2.0}, "optimizer": 3.0}
