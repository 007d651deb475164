"""Everyday inputs to ``tunesmith.run`` (issue 14 §4): a clear ``ConfigError`` before anything is created, or
they simply work. Real worker processes, a real SQLite store."""

from __future__ import annotations

import enum
import functools
import json
import logging
import os
import sqlite3
import threading
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import tunesmith as ts
from tunesmith.store.sqlite import STORE_FILE

pytestmark = pytest.mark.timeout(120)


def once(config):
    ts.report({"x": 1})


def _unpicklable_fn():
    lock = threading.Lock()

    def train_with_lock(config):
        with lock:
            ts.report({"x": 1})

    return train_with_lock


def _stored_configs(results_dir: Any, name: str) -> list[Any]:
    db = sqlite3.connect(os.path.join(results_dir, name, STORE_FILE))
    try:
        return [json.loads(text) for (text,) in db.execute("SELECT config FROM trials ORDER BY id")]
    finally:
        db.close()


@pytest.mark.parametrize("space, expected", [
    ({"a": ts.grid(list(np.arange(3)))}, [{"a": 0}, {"a": 1}, {"a": 2}]),
    ({"a": ts.choice([np.float32(0.5)])}, [{"a": 0.5}]),
    ({"a": ts.sample_from(lambda c: np.int64(3))}, [{"a": 3}]),
    ({"a": np.int64(3), "b": np.bool_(False)}, [{"a": 3, "b": False}]),
])
def test_numpy_values_in_a_space_run_and_are_stored_as_numbers(results_dir, space, expected):
    result = ts.run(once, space, name="np", verbose=0)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * len(expected)
    assert [t.config for t in result.trials] == expected
    assert _stored_configs(results_dir, "np") == expected


def _refused_before_anything_is_created(results_dir: Any, match: str, fn: Any = once, **kwargs: Any) -> None:
    with pytest.raises(ts.ConfigError, match=match):
        ts.run(fn, name="early", verbose=0, **{"space": {}, **kwargs})
    assert not os.path.exists(os.path.join(results_dir, "early"))
    result = ts.run(once, {}, name="early", verbose=0)  # the name is free
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED]


def test_an_unpicklable_fn_fails_before_anything_is_created_naming_it(results_dir):
    _refused_before_anything_is_created(
        results_dir, r"fn '_unpicklable_fn.<locals>.train_with_lock' cannot be pickled .*_thread.lock",
        fn=_unpicklable_fn())


@pytest.mark.parametrize("space, match", [
    ({"a/b": 1}, r"space\[\"a/b\"\]: a key may not contain '/'"),
    ({"opt": {"x": ts.choice([{"w/h": 1}])}}, r"space\[\"opt\"\]\[\"x\"\]\.options\[0\]\[\"w/h\"\]: a key may not"),
    ({"m": {"obj": object()}}, r"space\[\"m\"\]\[\"obj\"\]: object cannot be stored"),
    ({"s": ts.sample_from(lambda c: {1, 2})}, r"config\[\"s\"\]: set \{1, 2\} cannot be stored"),
    ({"s": ts.sample_from(lambda c: {"a/b": 1})}, r"config\[\"s\"\]\[\"a/b\"\]: a key may not contain '/'"),
])
def test_a_config_that_cannot_be_stored_fails_before_anything_is_created(results_dir, space, match):
    _refused_before_anything_is_created(results_dir, match, space=space)


@pytest.mark.parametrize("kwargs, match", [
    ({"resources": {"cpu": 0}}, r"resources\['cpu'\] must be more than 0"),
    ({"stop": {"training_iteration": float("inf")}}, r"stop\['training_iteration'\] must be >= 1 and finite"),
    ({"stop": {"loss": float("inf")}, "metric": "x", "mode": "min"}, None),
    ({"stop": {"x": float("inf")}, "metric": "x", "mode": "min"}, r"stop\['x'\] = inf is met by every result"),
    ({"stop": {"acc": -float("inf")}}, r"stop\['acc'\] = -inf is met by every result"),
])
def test_silently_accepted_arguments_fail_before_anything_is_created(results_dir, kwargs, match):
    if match is None:  # loss >= inf (not the metric): fires only on an infinite loss, a real event
        assert ts.run(once, {}, verbose=0, **kwargs).trials[0].status is ts.TrialStatus.TERMINATED
        return
    _refused_before_anything_is_created(results_dir, match, **kwargs)


def three_results(config):
    for i in range(3):
        ts.report({"x": i, "loss": 1.0 / (i + 1)}, checkpoint=ts.Checkpoint.from_state(i))


def test_a_stop_key_no_trial_reports_is_warned_about_once(results_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        result = ts.run(three_results, {"k": ts.grid([1, 2, 3])}, stop={"acc": 0.9, "x": 100}, verbose=0)
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)
    warnings = [r.getMessage() for r in caplog.records if "stop[" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "stop['acc']" in warnings[0] and "without 'acc' (it reported: loss, training_iteration, x)" in warnings[0]


def test_a_keep_by_the_trials_do_not_report_fails_the_experiment_naming_it(results_dir):
    with pytest.raises(ts.ConfigError, match=r"keep_by='accuracy' is not in the result of trial_\d+ that carries a "
                                             r"checkpoint \(it reported: loss, training_iteration, x\)"):
        ts.run(three_results, {}, metric="loss", mode="min", keep=1, keep_by=("accuracy", "max"), verbose=0)


def test_a_keep_by_the_trials_report_ranks_checkpoints(results_dir):
    result = ts.run(three_results, {}, metric="loss", mode="min", keep=1, keep_by=("x", "min"), verbose=0)
    assert result.trials[0].status is ts.TrialStatus.TERMINATED


def rich_metrics(config):
    import torch

    ts.report({"opt": {"lr": 0.1, "sched": {"step": np.int64(3)}}, "loss": np.float32(0.5), "n": np.int64(7),
               "ok": np.bool_(True), "z": np.array(2.0), "t": torch.tensor(1.5), "flat/name": 1})


def test_nested_metric_dicts_are_flattened_and_numpy_torch_scalars_stored_as_numbers(results_dir):
    pytest.importorskip("torch")
    result = ts.run(rich_metrics, {}, metric="loss", mode="min", name="nested", verbose=0)
    trial = result.trials[0]
    assert trial.status is ts.TrialStatus.TERMINATED, trial.error
    row = result.history(trial.id)[0]
    reported = {k: row[k] for k in ("opt/lr", "opt/sched/step", "loss", "n", "ok", "z", "t", "flat/name")}
    assert reported == {"opt/lr": 0.1, "opt/sched/step": 3, "loss": 0.5, "n": 7, "ok": True, "z": 2.0, "t": 1.5,
                        "flat/name": 1}
    assert {k: type(v) for k, v in reported.items()} == {
        "opt/lr": float, "opt/sched/step": int, "loss": float, "n": int, "ok": bool, "z": float, "t": float,
        "flat/name": int}
    assert "opt/lr" in result.dataframe().columns


_draws: list[int] = []


def _stored_until_the_third_draw(config):
    _draws.append(1)
    return object() if len(_draws) == 3 else 1  # run()'s own check draws once: the 2nd trial gets an object


def test_a_sampled_value_the_store_cannot_hold_ends_the_run_with_a_config_error_naming_it(results_dir):
    """A sample_from value that run()'s one throwaway draw did not meet: the trial it was drawn for is not
    created, the experiment ends with a ConfigError naming the key (not a raw TypeError from the store), and
    what ran before is kept."""
    _draws.clear()

    def train(config):
        ts.report({"loss": 1.0})

    with pytest.raises(ts.ConfigError, match=r'config\["y"\]: object'):
        ts.run(train, space={"x": ts.grid([1, 2, 3]), "y": ts.sample_from(_stored_until_the_third_draw)},
               max_concurrent=1, verbose=0, name="unstorable")
    stored = ts.load("unstorable")
    assert [t.config for t in stored.trials] == [{"x": 1, "y": 1}] and stored.trials[0].last_result["loss"] == 1.0


class Optim(str, enum.Enum):
    ADAM = "adam"
    SGD = "sgd"


class Level(enum.IntEnum):
    HIGH = 2


def seen_types(config):
    ts.report({"optim": type(config["optim"]).__name__, "level": type(config["level"]).__name__,
               "shape": type(config["shape"]).__name__, "shown": str(config["optim"])})


def test_enums_and_tuples_reach_the_trial_as_the_store_holds_them(results_dir):
    """A (str, Enum) is its str value everywhere (the trial, the store, the spec), an IntEnum its int; a tuple
    constant is the list a resume reads back from the store, on the first run too."""
    space = {"optim": ts.choice([Optim.ADAM, Optim.SGD]), "const": Optim.SGD, "level": Level.HIGH,
             "shape": (3, 224, 224)}
    result = ts.run(seen_types, space, num_samples=2, name="enums", verbose=0)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 2
    for trial in result.trials:
        assert {k: trial.last_result[k] for k in ("optim", "level", "shape")} == {
            "optim": "str", "level": "int", "shape": "list"}
        assert trial.last_result["shown"] in ("adam", "sgd")
    for config in _stored_configs(results_dir, "enums"):
        assert config["optim"] in ("adam", "sgd") and config["const"] == "sgd" and config["level"] == 2
        assert config["shape"] == [3, 224, 224]
    assert result.meta["spec"]["space"]["optim"] == {"__domain__": "choice", "options": ["adam", "sgd"]}


def flag_trial(config):
    ts.report({"loss": Fraction(1, 2) if config["flag"] else Decimal("0.25"), "n": np.longdouble(1.5)})


def test_a_fraction_or_decimal_metric_is_stored_as_a_number(results_dir):
    result = ts.run(flag_trial, {"flag": ts.grid([True, False])}, metric="loss", mode="min", verbose=0)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 2, [t.error for t in result.trials]
    assert [t.last_result["loss"] for t in result.trials] == [0.5, 0.25]
    assert all(type(t.last_result["n"]) is float and t.last_result["n"] == 1.5 for t in result.trials)
    assert result.best.config == {"flag": False}


def test_filter_by_config_takes_numpy_values(results_dir):
    result = ts.run(once, {"flag": ts.grid([True, False]), "k": 3}, name="filter", verbose=0)
    assert [t.id for t in result.filter(config={"flag": np.bool_(True)})] == [result.trials[0].id]
    assert [t.id for t in result.filter(config={"flag": np.bool_(False), "k": np.int64(3)})] == [result.trials[1].id]
    assert result.filter(config={"flag": np.int64(1)}) == []  # True is not 1 in a config


def test_report_stores_any_real_number_as_a_number():
    from tunesmith.session import encode_metrics

    text = encode_metrics({"f": Fraction(1, 4), "d": Decimal("2.5"), "n": Decimal("NaN"), "l": np.longdouble(0.5),
                           "i": Fraction(4, 2), "ok": 1})
    assert json.loads(text, parse_constant=str) == {"f": 0.25, "d": 2.5, "n": "NaN", "l": 0.5, "i": 2.0, "ok": 1}
    for bad in (1j, Decimal("sNaN"), Fraction(10**400, 1) / 3, object()):
        with pytest.raises(ts.ConfigError, match="metric 'x' must be a number, string or bool"):
            encode_metrics({"x": bad})


def test_a_space_nested_too_deep_fails_before_anything_is_created(results_dir):
    deep: Any = 1
    for _ in range(400):
        deep = {"a": deep}
    _refused_before_anything_is_created(results_dir, r'space\["pad"\]: nested deeper than 100 levels',
                                        space={"pad": deep})


def test_callbacks_that_are_not_a_list_of_callback_objects_are_named(results_dir):
    def f(config):
        ts.report({"x": 1})

    for bad, said in ((ts.Callback(), "must be a list"), ([ts.Callback], "the class Callback"),
                      ([lambda *a: None], "got function"), ([object()], "got object")):
        with pytest.raises(ts.ConfigError, match=said):
            ts.run(f, num_samples=1, verbose=0, callbacks=bad, name="cb")
    assert not (results_dir / "cb").exists()  # refused before anything was made


class _Misspelled(ts.Callback):
    def on_trial_result(self, trial, results):  # on_trial_results: never called
        pass

    def on_trial_finished_upload(self, trial):  # a method of its own, like no hook: not a misspelling
        pass


def test_a_callback_method_that_misspells_a_hook_is_named_with_the_hook(results_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        ts.run(lambda c: ts.report({"x": 1}), num_samples=1, verbose=0, callbacks=[_Misspelled()])
    warned = [r.getMessage() for r in caplog.records if "on_trial_result" in r.getMessage()]
    assert len(warned) == 1 and "_Misspelled.on_trial_result is no hook" in warned[0], warned
    assert "on_trial_results" in warned[0] and "never called" in warned[0]


def test_a_seed_beside_a_searcher_of_ones_own_is_said_to_be_unused(results_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        ts.run(lambda c: ts.report({"x": c["x"]}), {"x": ts.uniform(0, 1)}, num_samples=1, verbose=0, seed=3,
               searcher=ts.QuasiRandom())
    assert "seed=3 seeds only the default searcher, not the QuasiRandom given" in caplog.text
    assert "QuasiRandom(seed=3)" in caplog.text


@pytest.mark.parametrize("kind", ["BOHB", "OptunaSearch"])
def test_a_grid_searched_by_a_model_searcher_is_said_to_be_searched_not_crossed(results_dir, caplog, kind):
    """Random runs every grid point num_samples times; OptunaSearch and BOHB search a grid key as a choice, so 2
    trials over a grid of 4 values leave 2 or more untried: the log says so, where it said nothing."""
    if kind == "OptunaSearch":
        pytest.importorskip("optuna")
    searcher = ts.Repeat(ts.BOHB(seed=0) if kind == "BOHB" else ts.OptunaSearch(seed=0), 1)
    space = {"g": ts.grid([1, 2, 3, 4]), "x": ts.uniform(0, 1)}
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        result = ts.run(lambda c: ts.report({"x": c["x"]}), space, metric="x", mode="min", num_samples=2, verbose=0,
                        searcher=searcher)
    assert len(result.trials) == 2
    warned = [r.getMessage() for r in caplog.records if "grid" in r.getMessage()]
    assert warned == [f"{kind} searches the grid keys ['g'] as choices, not crossing them as Random and QuasiRandom "
                      f"do: the configs need not include each of the grid's 4 points (num_samples=2)"], warned
    caplog.clear()
    one = {"g": ts.grid([5]), "x": ts.uniform(0, 1)}  # every config holds its one point
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        ts.run(lambda c: ts.report({"x": c["x"]}), space, metric="x", mode="min", num_samples=2, verbose=0,
               searcher=ts.Random(seed=0))
        ts.run(lambda c: ts.report({"x": c["x"]}), one, metric="x", mode="min", num_samples=2, verbose=0,
               searcher=ts.BOHB(seed=0) if kind == "BOHB" else ts.OptunaSearch(seed=0))
    assert not [r for r in caplog.records if "grid" in r.getMessage()]


def test_a_storage_path_under_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)

    def f(config):
        ts.report({"x": 1})

    result = ts.run(f, num_samples=1, verbose=0, storage_path="~/my results", name="tilde")
    assert result.path == str(tmp_path / "home" / "my results" / "tilde")
    assert not (tmp_path / "~").exists()


def test_numpy_scalars_are_taken_for_runs_numbers_and_flags(results_dir):
    """A sweep over np.arange values, or a flag computed with numpy, is what a user passes: each argument takes
    a numpy integer, float or bool as the Python value it stands for (the spec stores plain JSON)."""
    result = ts.run(once, {"a": ts.uniform(0, 1)}, metric="x", mode="max", num_samples=np.int64(3),
                    max_concurrent=np.int64(2), seed=np.int64(1), max_failures=np.int64(1),
                    time_budget_s=np.float32(600), trial_timeout_s=np.float32(600), chdir_to_trial_dir=np.True_,
                    fail_fast=np.bool_(False), resources={"cpu": np.int64(1), "gpu": np.float64(0)},
                    verbose=np.int64(0), name="np")
    assert len(result.trials) == 3 and all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)
    spec = result.meta["spec"]
    assert (spec["num_samples"], spec["max_concurrent"], spec["fail_fast"]) == (3, 2, False)
    assert type(spec["fail_fast"]) is bool and type(spec["num_samples"]) is int


def counted(config):
    ts.report({"x": 1, "n": np.int64(2)})


def test_resources_returned_as_numpy_numbers_are_taken(results_dir):
    result = ts.run(counted, {"a": ts.grid([1, 2])}, resources=lambda config: {"cpu": np.int64(1)}, verbose=0)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 2
    assert result.trials[0].resources["cpu"] == 1.0


def yields(config):
    yield {"x": 1}


async def awaits(config):
    ts.report({"x": 1})


@pytest.mark.parametrize("fn", [yields, awaits, functools.partial(yields), functools.partial(awaits)],
                         ids=["generator", "async", "partial-generator", "partial-async"])
def test_a_generator_or_async_training_function_is_refused_before_anything_is_created(results_dir, fn):
    """It would run nothing (a generator is only made, a coroutine never awaited) and the run say finished."""
    _refused_before_anything_is_created(results_dir, r"fn .* (a generator|an async) function", fn=fn)


def two_arguments(config, extra):
    ts.report({"x": 1})


def keyword_only(*, config):
    ts.report({"x": 1})


@pytest.mark.parametrize("fn", [two_arguments, keyword_only], ids=["two-arguments", "keyword-only"])
def test_a_training_function_that_cannot_take_the_config_is_refused_before_anything_is_created(results_dir, fn):
    """Each trial calls fn(config) (or fn() when it takes nothing): every trial failed with a TypeError and the run
    said finished."""
    _refused_before_anything_is_created(results_dir, r"fn '.*' cannot be called as fn\(config\)", fn=fn)


def optional_more(config, extra=1, *more, **named):
    ts.report({"x": extra})


def test_a_training_function_with_optional_parameters_runs(results_dir):
    result = ts.run(optional_more, {}, verbose=0)
    assert result.trials[0].status is ts.TrialStatus.TERMINATED and result.trials[0].last_result["x"] == 1


@pytest.mark.parametrize("url", ["file:///tmp/x", "memory://bucket/x", "s3://bucket/runs"])
def test_a_storage_path_that_is_a_url_is_refused_before_anything_is_made(tmp_path, monkeypatch, url):
    """storage_path='file:///tmp/x' made a folder named 'file:' in the current folder and ran there; a URL is
    for RayBackend(storage=...), the experiment folder is local."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ts.ConfigError, match=r"storage_path must be a local folder, got '[a-z0-9]+://[^']*': a URL "
                                             r"is for RayBackend\(storage=\.\.\.\)"):
        ts.run(lambda config: ts.report({"x": 1}), {}, storage_path=url, verbose=0)
    assert os.listdir(tmp_path) == []
    monkeypatch.setenv("TUNESMITH_RESULTS", url)
    with pytest.raises(ts.ConfigError, match=r"\$TUNESMITH_RESULTS must be a local folder"):
        ts.run(lambda config: ts.report({"x": 1}), {}, verbose=0)
    assert os.listdir(tmp_path) == []


def _reports_extra(config):
    ts.report({"loss": 1.0, **config["extra"]})


@pytest.mark.parametrize("extra, name", [({"lo\x00ss": 2.0}, "lo\x00ss"), ({"\x00": "t"}, "\x00"),
                                         ({"opt": {"l\x00r": 0.1}}, "opt/l\x00r")])
def test_a_metric_named_with_a_nul_character_is_refused_naming_it(results_dir, extra, name):
    """A NUL went raw into progress.csv's header (csv writes it as it is): report() refuses it, as it refuses a
    reserved name, and no file gets the name. (Other control characters are kept, as before: files hold them as
    written, a terminal shows them escaped.)"""
    from tunesmith.callbacks import CSVLogger, JSONLLogger

    result = ts.run(_reports_extra, {"extra": extra}, name="ctl", verbose=0,
                    callbacks=[CSVLogger(), JSONLLogger()])
    (trial,) = result.trials
    assert trial.status is ts.TrialStatus.ERROR and trial.iteration == 0
    assert f"ConfigError: report(): metric {name!r} has a NUL character" in trial.error, trial.error
    for root, _, files in os.walk(result.path):
        for f in files:
            if f.endswith((".csv", ".jsonl")):
                with open(os.path.join(root, f), encoding="utf-8") as fh:
                    assert name not in fh.read(), f


# -- a config too big for the store: said once, naming the key ----------------------------------------------------
def _big_config_warnings(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "ts.put" in r.getMessage()]


@pytest.mark.parametrize(("space", "named"), [
    ({"lr": ts.uniform(0, 1), "table": np.arange(20_000)}, 'config["table"]'),
    ({"lr": ts.uniform(0, 1), "data": {"small": 1, "rows": list(range(20_000))}}, 'config["data"]["rows"]'),
])
def test_a_config_too_big_for_the_store_is_said_once_naming_its_key(results_dir, caplog, space, named):
    """A numpy array (or a long list) in the space is stored as a JSON list with every trial's config: a warning,
    once per run, names its key and points to ts.put; the run goes on as before."""
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        result = ts.run(once, space, metric="x", mode="max", num_samples=3, name="big", verbose=0)
    [message] = _big_config_warnings(caplog)
    assert named in message and "64 KiB" in message and "docs/ray.md" in message, message
    assert len(result.trials) == 3 and all(len(json.dumps(t.config)) > 64 * 1024 for t in result.trials)


def test_a_config_under_the_size_bound_says_nothing(results_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        ts.run(once, {"lr": ts.uniform(0, 1), "table": np.arange(1_000)}, metric="x", mode="max", num_samples=2,
               name="small", verbose=0)
    assert _big_config_warnings(caplog) == []
