"""A report made while a run writes its store reads one state of it (one read transaction): the trials, the
best result at any iteration and the plots agree, and the writer goes on committing meanwhile."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner

import tunesmith as ts
from tests.proc_helpers import until
from tunesmith.cli import cli
from tunesmith.plots.report import summary, write_report
from tunesmith.store.sqlite import STORE_FILE, Store

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def writing(tmp_path: Any):
    """A real run in its own process, writing; (experiment folder, a count of its stored results)."""
    stop = tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "writing_run.py"), str(tmp_path / "runs"),
                             str(stop)], cwd=os.path.dirname(HERE), stderr=subprocess.PIPE)
    path = str(tmp_path / "runs" / "writing")
    until(lambda: os.path.exists(os.path.join(path, STORE_FILE)) or proc.poll() is not None, "the run's store")
    watcher = Store(os.path.join(path, STORE_FILE), readonly=True)
    try:
        until(lambda: watcher.count_results() >= 40 or proc.poll() is not None, "the run's first results")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        yield path, watcher.count_results
    finally:
        stop.touch()
        try:
            assert proc.wait(timeout=120) == 0, proc.stderr.read().decode() if proc.stderr else ""
        finally:
            watcher.close()


def _facts(page: str) -> dict[str, str]:
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", page)}


def _best_values(facts: dict[str, str]) -> tuple[str, str]:
    by_last = facts["best trial (by last result)"]
    ever = facts["best result (any iteration)"]
    return by_last.split("loss=")[1], ever.split("loss=")[1]


def test_reads_within_a_snapshot_see_one_state_while_the_writer_commits(writing) -> None:
    path, stored = writing
    rs = ts.load(path)
    with rs.snapshot():
        first = rs.get_best("loss", "min", scope="all")
        trials = [(t.id, t.last_result.get("training_iteration")) for t in rs.trials]
        seen = stored()
        until(lambda: stored() >= seen + 200, "the writer to commit while a snapshot is held")  # not blocked
        again = rs.get_best("loss", "min", scope="all")
        assert (again.id, again.metrics["training_iteration"]) == (first.id, first.metrics["training_iteration"])
        assert [(t.id, t.last_result.get("training_iteration")) for t in rs.trials] == trials
        # each trial's loss falls at every iteration: in one state, its last result is its best
        best_by_last = min(t.last_result["loss"] for t in rs.trials if "loss" in t.last_result)
        assert first.metrics["loss"] == best_by_last
    after = rs.get_best("loss", "min", scope="all")  # outside: read afresh
    assert after.metrics["training_iteration"] > first.metrics["training_iteration"] or after.id != first.id


def test_a_report_of_a_result_set_read_earlier_names_one_state(writing, tmp_path: Any) -> None:
    path, stored = writing
    rs = ts.load(path)
    assert rs.trials  # read now; the writer goes on
    seen = stored()
    until(lambda: stored() >= seen + 200, "the writer to commit more results")
    out = tmp_path / "report.html"
    write_report(rs, str(out))
    by_last, ever = _best_values(_facts(out.read_text(encoding="utf-8")))
    assert by_last == ever
    facts = dict(summary(rs))  # the ResultSet as the report read it
    assert _best_values(facts)[0] == by_last


def test_tunesmith_report_during_a_run_names_one_state(writing, tmp_path: Any) -> None:
    path, _stored = writing
    for n in range(3):
        out = tmp_path / f"report{n}.html"
        res = CliRunner().invoke(cli, ["report", path, "-o", str(out)])
        assert res.exit_code == 0, res.output
        by_last, ever = _best_values(_facts(out.read_text(encoding="utf-8")))
        assert by_last == ever


def test_a_report_lets_its_snapshot_go_before_it_computes_the_plots(tmp_path: Any) -> None:
    """Everything the page shows is read in one snapshot, which is let go before the plots are computed (seconds at
    10,000 trials): a writer's log cannot be checkpointed past a reader's snapshot, so it grew meanwhile (70 MB in
    1.6 s beside a fast run). Here a connection writes and then checkpoints the whole log (TRUNCATE: only when no
    reader holds a snapshot in it) from the plot of parameter importance, computed with the other plots."""
    import contextlib
    import sqlite3

    from tunesmith.results import ResultSet

    def train(config: dict) -> None:
        for i in range(1, 4):
            ts.report({"loss": config["lr"] / i})

    done = ts.run(train, space={"lr": ts.grid([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])}, metric="loss", mode="min",
                  storage_path=str(tmp_path), name="small", verbose=0)
    with contextlib.closing(sqlite3.connect(os.path.join(done.path, STORE_FILE), isolation_level=None,
                                                  timeout=0)) as writer:  # busy: answered at once
        writer.execute("INSERT INTO experiment VALUES ('probe', '0')")  # a log the report reads through
        checkpoints = []

        class Probe(ResultSet):
            def importance(self, metric: str | None = None, mode: str | None = None) -> dict[str, float]:
                writer.execute("UPDATE experiment SET value = '1' WHERE key = 'probe'")
                checkpoints.append(writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
                return super().importance(metric, mode)

        titles = write_report(Probe(done.path), str(tmp_path / "report.html"))
    assert "Parameter importance" in titles and len(checkpoints) == 1
    assert checkpoints[0][0] == 0, f"the checkpoint was blocked by the report's snapshot: {checkpoints}"
