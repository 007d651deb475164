"""A user's own ``Searcher`` and ``Scheduler`` subclasses that misbehave as real code does (a forgotten
``return``, a list for a dict, numpy values, a searcher that never says FINISHED): the run says which class and
method broke and what was expected, and what the store holds stays right."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import tunesmith as ts
from tunesmith.executors.local import LocalBackend
from tunesmith.searchers._base import FINISHED

pytestmark = pytest.mark.timeout(120)

TERMINATED = ts.TrialStatus.TERMINATED


def train(config):
    for i in range(5):
        ts.report({"loss": config["x"] + i})


def _one_at_a_time():
    return LocalBackend(total_resources={"cpu": 1})


class Suggests(ts.Searcher):
    """Suggests ``make(trial_id)`` for two trials."""

    def __init__(self, make):
        self.make = make

    def suggest(self, trial_id):
        return FINISHED if trial_id > 2 else self.make(trial_id)


@pytest.mark.parametrize("bad", [[0.5], "x=0.5", 0.5])
def test_a_searcher_whose_suggest_returns_no_dict_fails_the_run_naming_it(results_dir, bad):
    with pytest.raises(ts.ConfigError, match=r"Suggests\.suggest\(1\) returned .*; expected a config dict, None "
                                             r"\(nothing yet: ask again later\) or FINISHED"):
        ts.run(train, {"x": ts.uniform(0, 1)}, searcher=Suggests(lambda t: bad), metric="loss", mode="min",
               verbose=0, name="nodict", backend=_one_at_a_time())
    rs = ts.load("nodict")
    assert rs.status == "failed" and "Suggests.suggest(1) returned" in rs.meta["error"]
    assert rs.trials == []


@pytest.mark.parametrize("wrap, where", [
    (lambda s: ts.Repeat(s, 2), r"Suggests\.suggest \(inside Repeat, for trial 1\)"),
    (lambda s: ts.ConcurrencyLimiter(s, 1), r"Suggests\.suggest \(inside ConcurrencyLimiter, for trial 1\)"),
], ids=["repeat", "limiter"])
def test_a_wrapped_searcher_whose_suggest_returns_no_dict_is_named_inside_its_wrapper(results_dir, wrap, where):
    # before: Repeat took the list for None, and the run failed as if Repeat waited for results
    with pytest.raises(ts.ConfigError, match=where + r" returned list \[0\.5\]; expected a config dict"):
        ts.run(train, {"x": ts.uniform(0, 1)}, searcher=wrap(Suggests(lambda t: [0.5])), metric="loss", mode="min",
               verbose=0, name="wrapped", backend=_one_at_a_time())
    assert ts.load("wrapped").status == "failed"


def test_a_searcher_suggesting_a_value_the_store_cannot_hold_is_named(results_dir):
    with pytest.raises(ts.ConfigError, match=r"Suggests\.suggest\(2\) returned a config the store cannot hold: "
                                             r"config\[\"x\"\]: int64"):
        ts.run(train, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", verbose=0, name="numpy", num_samples=2,
               searcher=Suggests(lambda t: {"x": 0.5} if t == 1 else {"x": np.int64(1)}),
               backend=_one_at_a_time())
    rs = ts.load("numpy")
    assert rs.status == "failed"
    # trial 1 ran while trial 2 was suggested: paused for a resume, every result it sent stored
    assert [(t.id, t.status) for t in rs.trials] == [(1, ts.TrialStatus.PAUSED)]
    assert len(rs.history(1)) == rs.trial(1).iteration >= 1


class Decides(ts.FIFO):
    """Waits for its decision at every result and answers ``answer`` at the second one."""

    def __init__(self, answer):
        self.answer = answer

    def decision_iteration(self, trial):
        return trial.iteration + 1

    def on_result(self, trial, result, view):
        from tunesmith.schedulers._base import CONTINUE

        return self.answer if result.iteration == 2 else CONTINUE


@pytest.mark.parametrize("answer", [None, "STOP", True], ids=["forgot-return", "string", "bool"])
def test_a_scheduler_whose_on_result_returns_no_decision_fails_the_run_naming_it(results_dir, answer):
    # before: any such value stopped the trial silently, as STOP would, and the run "finished"
    with pytest.raises(ts.ConfigError, match=r"Decides\.on_result returned .* for trial_00001's result 2; expected "
                                             r"CONTINUE, STOP, a Pause or an Exploit"):
        ts.run(train, {"x": 0.5}, scheduler=Decides(answer), metric="loss", mode="min", verbose=0, name="decides",
               backend=_one_at_a_time())
    rs = ts.load("decides")
    assert rs.status == "failed" and "Decides.on_result returned" in rs.meta["error"]
    # the trial pauses, the result the answer was about stored and left for a resume to decide
    assert [(t.status, t.iteration) for t in rs.trials] == [(ts.TrialStatus.PAUSED, 2)]
    assert len(rs.history(1)) == 2
    assert [(e[4]["by"], e[4]["decided"]) for e in rs._store.events() if e[2] == "pause"] == [("failed", 1)]
    # resumed with the scheduler fixed (it answers STOP at result 2), the paused trial ends at 2 and the run finishes
    resumed = ts.run(train, {"x": 0.5}, scheduler=Decides(ts.FIFO.STOP), metric="loss", mode="min", verbose=0,
                     name="decides", backend=_one_at_a_time(), resume=True)
    assert resumed.status == "finished"
    assert [(t.status, t.iteration) for t in resumed.trials] == [(TERMINATED, 2)]
    assert len(resumed.history(1)) == 2


class Endless(ts.Searcher):
    """Never says FINISHED: a config for every trial id, ``num_samples`` unread (as a user's first searcher is)."""

    def suggest(self, trial_id):
        return {"x": trial_id / 10}


@pytest.mark.parametrize("wrap, trials", [
    (lambda s: s, 3),
    (lambda s: ts.ConcurrencyLimiter(s, max_concurrent=1), 3),
    (lambda s: ts.Repeat(s, 2), 6),  # num_samples counts the configs Repeat runs n times each
], ids=["alone", "limited", "repeated"])
def test_a_searcher_of_your_own_gets_num_samples_trials_when_it_never_says_finished(results_dir, caplog, wrap,
                                                                                   trials):
    # before: the run never ended (the controller asked it for ever)
    caplog.set_level("INFO", logger="tunesmith")
    rs = ts.run(train, {"x": ts.uniform(0, 1)}, searcher=wrap(Endless()), num_samples=3, metric="loss", mode="min",
                verbose=0, name="endless")
    assert rs.status == "finished"
    assert [t.id for t in rs.trials] == list(range(1, trials + 1))
    assert all(t.status is TERMINATED and t.iteration == 5 for t in rs.trials)
    [said] = [r for r in caplog.records if "suggested more configs" in r.getMessage()]
    assert f"Endless suggested more configs than num_samples=3: no more trials are made ({trials} in all;" in (
        said.getMessage())
    assert said.levelname == "INFO"  # num_samples given: it bounds the run as asked


class Waits(ts.Searcher):
    """One config, then None for ever: it waits for a result that no trial will send (a user's bug)."""

    def suggest(self, trial_id):
        return {"x": 0.5} if trial_id == 1 else None


def test_a_searcher_that_waits_while_nothing_runs_fails_the_run_naming_it(results_dir):
    # before: the driver polled for ever, the run never ended and nothing said why
    with pytest.raises(ts.ConfigError, match=r"Waits\.suggest\(2\) returned None \(ask again later\) while no trial "
                                             r"runs or is paused"):
        ts.run(train, {"x": ts.uniform(0, 1)}, searcher=Waits(), num_samples=3, metric="loss", mode="min", verbose=0,
               name="waits")
    rs = ts.load("waits")
    assert rs.status == "failed" and "Waits.suggest(2) returned None" in rs.meta["error"]
    assert [(t.status, t.iteration) for t in rs.trials] == [(TERMINATED, 5)]


class Listed(ts.Searcher):
    """A finite list of configs, ``num_samples`` unread: it says FINISHED after them."""

    def suggest(self, trial_id):
        return {"x": trial_id / 10} if trial_id <= 3 else FINISHED


def test_a_searcher_that_says_finished_before_num_samples_ends_the_experiment_then(results_dir, caplog):
    caplog.set_level("WARNING", logger="tunesmith")
    rs = ts.run(train, {"x": ts.uniform(0, 1)}, searcher=Listed(), num_samples=10, metric="loss", mode="min",
                verbose=0, name="listed")
    assert [t.config["x"] for t in rs.trials] == [0.1, 0.2, 0.3]
    rs = ts.run(train, {"x": ts.uniform(0, 1)}, searcher=Listed(), num_samples=3, metric="loss", mode="min",
                verbose=0, name="listed3")  # exactly its count: no word of more configs
    assert len(rs.trials) == 3 and "more configs" not in caplog.text
    rs = ts.run(train, {"x": ts.uniform(0, 1)}, searcher=Listed(), metric="loss", mode="min", verbose=0,
                name="listed1")  # num_samples=1, the default: one trial, and the warning says why
    assert len(rs.trials) == 1
    [said] = [r for r in caplog.records if "suggested more configs" in r.getMessage()]
    assert "Listed suggested more configs than num_samples=1: no more trials are made (1 in all;" in (
        said.getMessage())
    assert said.levelname == "WARNING"  # the default, likely left unset


class ObserveRaises(Endless):
    def observe(self, trial_id, result, final):
        if final:
            raise KeyError("no such trial in my table")


class OnCompleteRaises(ts.FIFO):
    def on_complete(self, trial, result, view):
        raise ValueError("my scheduler's bug")


@pytest.mark.parametrize("kw, error, origin", [
    ({"searcher": ObserveRaises()}, KeyError, "ObserveRaises.observe"),
    ({"scheduler": OnCompleteRaises()}, ValueError, "OnCompleteRaises.on_complete"),
], ids=["searcher-observe", "scheduler-on_complete"])
def test_an_extension_that_raises_is_named_with_its_method_in_the_error_and_the_store(results_dir, kw, error, origin):
    # before: the store said only "KeyError: 'no such trial in my table'" (tunesmith show too): whose?
    if sys.version_info < (3, 11):  # no co_qualname: the method's own name (and the file:line)
        origin = origin.rsplit(".", 1)[1]
    with pytest.raises(error) as raised:
        ts.run(train, {"x": 0.5}, num_samples=2, metric="loss", mode="min", verbose=0, name="raises",
               backend=_one_at_a_time(), **kw)
    assert any(f"raised in {origin} (" in note and "test_user_extensions.py:" in note
               for note in getattr(raised.value, "__notes__", []))
    rs = ts.load("raises")
    assert rs.status == "failed" and f"raised in {origin} (" in rs.meta["error"]
    assert rs.trial(1).status is TERMINATED and len(rs.history(1)) == 5  # the trial whose end was observed


def test_the_decisions_and_finished_are_reached_through_the_public_base_classes(results_dir):
    """A scheduler or searcher of your own returns tunesmith's decisions and FINISHED; they are reached through
    ``ts.Scheduler`` and ``ts.Searcher`` (``self.STOP``, ``ts.Searcher.FINISHED``), not a private module."""
    assert ts.Scheduler.CONTINUE is not None and ts.Searcher.FINISHED is FINISHED

    class Twice(ts.Searcher):
        def suggest(self, trial_id):
            return self.FINISHED if trial_id > 2 else {"x": float(trial_id)}

    class StopAtTwo(ts.FIFO):
        def decision_iteration(self, trial):  # each result waits for on_result's decision
            return trial.iteration + 1

        def on_result(self, trial, result, view):
            return self.STOP if result.iteration >= 2 else self.CONTINUE

    rs = ts.run(train, {}, metric="loss", mode="min", num_samples=5, searcher=Twice(), scheduler=StopAtTwo(),
                storage_path=str(results_dir), verbose=0)
    assert [(t.status, t.iteration) for t in rs.trials] == [(TERMINATED, 2), (TERMINATED, 2)]
    assert {name: type(getattr(ts.Scheduler, name)).__name__ for name in ("CONTINUE", "STOP", "PAUSE")} == \
        {"CONTINUE": "Continue", "STOP": "Stop", "PAUSE": "Pause"}
    assert ts.Scheduler.Pause(resources={"cpu": 1}).resources == {"cpu": 1}
    assert ts.Scheduler.Exploit(1, {"x": 1.0}).source_trial == 1


class PausesAtTwo(ts.FIFO):
    """Waits for its decision at every result, pauses each trial at its second result and, unless a subclass
    answers otherwise, resumes the trial paused first."""

    def __init__(self):
        self.paused = []

    def decision_iteration(self, trial):
        return trial.iteration + 1

    def on_result(self, trial, result, view):
        if result.iteration == 2 and trial.id not in self.paused:
            self.paused.append(trial.id)
            return self.PAUSE
        return self.CONTINUE

    def choose_trial_to_run(self, view):
        return next((t for t in self.paused if view.trials[t].status is ts.TrialStatus.PAUSED), None)


def _answering(name, base=ts.FIFO, **hooks):
    """A subclass of ``base`` named ``name`` whose hooks are ``hooks``: a user's scheduler that answers junk."""
    return type(name, (base,), hooks)()


PAUSED_AT_2 = [(ts.TrialStatus.PAUSED, 2)]  # its results stored, it resumes from there
NOT_STARTED = [(ts.TrialStatus.PENDING, 0)]  # made, failed before it started: a resume starts it


@pytest.mark.parametrize("scheduler, said, trials", [
    (_answering("Forgot", accepting_new_trials=lambda self, view: None),
     r"Forgot\.accepting_new_trials returned NoneType None; expected True or False", []),
    (_answering("Says", accepting_new_trials=lambda self, view: "no"),
     r"Says\.accepting_new_trials returned str 'no'; expected True or False", []),
    (_answering("NoSuch", PausesAtTwo, choose_trial_to_run=lambda self, view: 99),
     r"NoSuch\.choose_trial_to_run returned int 99; expected None or the id of a paused trial \(paused: \[1\]\)",
     PAUSED_AT_2),
    (_answering("Named", PausesAtTwo, choose_trial_to_run=lambda self, view: "trial_00001"),
     r"Named\.choose_trial_to_run returned str 'trial_00001'; expected None or the id of a paused trial",
     PAUSED_AT_2),
    (_answering("NoList", PausesAtTwo, trials_to_stop=lambda self, view: None),
     r"NoList\.trials_to_stop returned NoneType None; expected a list of trial ids", PAUSED_AT_2),
    (_answering("Strings", PausesAtTwo, trials_to_stop=lambda self, view: ["1"]),
     r"Strings\.trials_to_stop returned list \['1'\]; expected a list of trial ids", PAUSED_AT_2),
    (_answering("Text", decision_iteration=lambda self, trial: "3"),
     r"Text\.decision_iteration returned str '3' for trial_00001 at iteration 0; expected None or an iteration "
     r"after 0", NOT_STARTED),
    (_answering("Same", decision_iteration=lambda self, trial: trial.iteration),
     r"Same\.decision_iteration returned int 0 for trial_00001 at iteration 0; expected None or an iteration "
     r"after 0", NOT_STARTED),
    (_answering("Plain", decision_iteration=lambda self, trial: trial.iteration + 1,
                decision_plan=lambda self, trial: [(trial.iteration + 1, 0.0)]),
     r"Plain\.decision_plan returned list \[\(1, 0\.0\)\] for trial_00001; expected None or a DecisionPlan",
     NOT_STARTED),
], ids=["accepting-forgot-return", "accepting-string", "choose-no-such-trial", "choose-a-name", "to-stop-none",
        "to-stop-strings", "decision-iteration-string", "decision-iteration-not-after", "decision-plan-list"])
def test_a_scheduler_hook_that_answers_junk_fails_the_run_naming_it(results_dir, scheduler, said, trials):
    # before: accepting_new_trials' None ended the run "finished" with no trial, its string was taken for True; a
    # choose_trial_to_run naming no paused trial left the paused one unresumed, closed TERMINATED at 2 in a
    # "finished" run; an unexpected decision_iteration streamed results; the others failed deep in the driver
    # with a bare TypeError or AttributeError
    with pytest.raises(ts.ConfigError, match=said):
        ts.run(train, {"x": 0.5}, scheduler=scheduler, metric="loss", mode="min", verbose=0, name="junk",
               backend=_one_at_a_time())
    rs = ts.load("junk")
    assert rs.status == "failed" and f"{type(scheduler).__name__}." in rs.meta["error"]
    assert [(t.status, t.iteration) for t in rs.trials] == trials
    assert [len(rs.history(t.id)) for t in rs.trials] == [t.iteration for t in rs.trials]
    fixed = type(type(scheduler).__name__, type(scheduler).__bases__, {})()  # the same class, its hook fixed
    rs = ts.run(train, {"x": 0.5}, scheduler=fixed, metric="loss", mode="min", verbose=0, name="junk", resume=True,
                backend=_one_at_a_time())
    assert rs.status == "finished"
    assert [(t.status, t.iteration) for t in rs.trials] == [(TERMINATED, 5)] * max(len(trials), 1)


@pytest.mark.parametrize("scheduler, said", [
    (_answering("NoMetrics", compared_metrics=lambda self: None),
     r"NoMetrics\.compared_metrics returned NoneType None; expected a list of metric names"),
    (_answering("OneName", compared_metrics=lambda self: "loss"),
     r"OneName\.compared_metrics returned str 'loss'; expected a list of metric names"),
    (_answering("NoKeys", mutated_keys=lambda self: None),
     r"NoKeys\.mutated_keys returned NoneType None; expected a list of \(path, name\) pairs"),
    (_answering("KeyNames", mutated_keys=lambda self: ["x"]),
     r"KeyNames\.mutated_keys returned list \['x'\]; expected a list of \(path, name\) pairs"),
], ids=["compared-none", "compared-string", "mutated-none", "mutated-names"])
def test_a_scheduler_that_lists_its_metrics_or_keys_as_junk_is_refused_before_the_run_starts(results_dir, scheduler,
                                                                                           said):
    # before: compared_metrics' None was a TypeError in the driver, its store left 'running' (then 'crashed'); its
    # string was read a letter at a time ("metric 'l' ... is not in the results"); mutated_keys' None a TypeError
    with pytest.raises(ts.ConfigError, match=said):
        ts.run(train, {"x": 0.5}, scheduler=scheduler, metric="loss", mode="min", verbose=0, name="lists",
               backend=_one_at_a_time())
    with pytest.raises(ts.ConfigError, match="no experiment"):  # refused as a bad argument is: nothing stored
        ts.load("lists")


@pytest.mark.parametrize("inner, said, trials", [
    (_answering("Forgot", accepting_new_trials=lambda self, view: None),
     r"Forgot\.accepting_new_trials \(inside ResourceChanging\) returned NoneType None; expected True or False", []),
    (_answering("NoList", PausesAtTwo, trials_to_stop=lambda self, view: None),
     r"NoList\.trials_to_stop \(inside ResourceChanging\) returned NoneType None; expected a list of trial ids",
     PAUSED_AT_2),
], ids=["accepting-forgot-return", "to-stop-none"])
def test_a_wrapped_scheduler_hook_that_answers_junk_is_named_inside_its_wrapper(results_dir, inner, said, trials):
    # before: ResourceChanging took None for False (the run "finished" with no trial), and its list(None) failed
    # inside it with a bare TypeError
    with pytest.raises(ts.ConfigError, match=said):
        ts.run(train, {"x": 0.5}, scheduler=ts.ResourceChanging(inner, lambda trial, view: None), metric="loss",
               mode="min", verbose=0, name="wrapped", backend=_one_at_a_time())
    rs = ts.load("wrapped")
    assert rs.status == "failed" and [(t.status, t.iteration) for t in rs.trials] == trials
