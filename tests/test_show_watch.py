"""`tunesmith show NAME --watch [SECONDS]`: one process redraws the page beside a running experiment (issue 19
row 9: a `show` started every second slowed the writer), reads only what changed, holds no lock or read snapshot
between draws, and exits 0 once the experiment ended."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner
from proc_helpers import in_a_terminal

from tunesmith._layout import STORE_FILE
from tunesmith.cli import cli
from tunesmith.store.sqlite import Store, dumps

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT}

# a real run whose trial i reports only once the file go<i> exists: the test decides when results arrive
WRITER = textwrap.dedent("""
    import os, sys, time
    import tunesmith as ts

    gates, storage = sys.argv[1], sys.argv[2]

    def train(config):
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(gates, f"go{config['i']}")) and time.monotonic() < deadline:
            time.sleep(0.01)
        ts.report({"loss": 10.0 - config["i"]})

    ts.run(train, space={"i": ts.grid([1, 2, 3])}, metric="loss", mode="min", name="watched",
           storage_path=storage, verbose=0, max_concurrent=3)
""")


def wait_for(condition: Any, timeout: float = 60.0, what: str = "") -> Any:
    """Poll ``condition`` until it gives something true (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Pages:
    """The pages a `show --watch` writing to a pipe prints, one after another, each from its header line on."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.pages: list[list[str]] = []
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, out: Any) -> None:
        for line in out:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, predicate: Any, timeout: float = 60.0) -> list[str]:
        """The first page for which ``predicate`` holds, as far as it was read (the last one may still grow); the end
        of the output is the page ``["<end>"]``."""
        deadline = time.monotonic() + timeout
        while True:
            for page in self.pages:
                if predicate(page):
                    return page
            left = deadline - time.monotonic()
            if (self.pages and self.pages[-1] == ["<end>"]) or left <= 0:
                raise AssertionError(f"no such page; pages: {self.pages}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.pages.append(["<end>"])
            elif line.startswith("experiment watched (") or not self.pages:
                self.pages.append([line])
            else:
                self.pages[-1].append(line)


def row(page: list[str], name: str) -> list[str] | None:
    """The table row of trial ``name`` on ``page`` (its cells), or None."""
    return next((line.split() for line in page if line.split()[:1] == [name]), None)


def test_watch_redraws_as_results_arrive_and_exits_when_the_experiment_ends(tmp_path: Any) -> None:
    gates, storage = tmp_path / "gates", tmp_path / "results"
    gates.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(gates), str(storage)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watcher = None
    try:
        wait_for(lambda: (storage / "watched" / STORE_FILE).exists() or writer.poll() is not None, what="the store")
        watcher = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "show", "watched", "--storage-path",
                                    str(storage), "--watch", "0.2"], env=ENV, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        pages = Pages(watcher)
        first = pages.until(lambda p: "(running)" in p[0] and "3 trials" in p[0] and row(p, "trial_00003"))
        assert "terminated" not in first[0] and row(first, "trial_00001")[1] == "running"
        (gates / "go1").touch()
        one = pages.until(lambda p: "1 terminated" in p[0] and row(p, "trial_00001"))
        assert "(running)" in one[0]
        assert row(one, "trial_00001")[:4] == ["trial_00001", "terminated", "1", "9"]
        assert watcher.poll() is None  # still watching: the experiment runs
        (gates / "go2").touch()
        (gates / "go3").touch()
        assert watcher.wait(timeout=60) == 0
        pages.until(lambda p: p == ["<end>"])  # every page read
        last = pages.pages[-2]  # the one drawn once it ended
        assert "(finished)" in last[0] and "3 terminated" in last[0]
        assert [cells[0] for cells in (line.split() for line in last) if cells[:1] and cells[0].startswith("trial_")] \
            == ["trial_00003", "trial_00002", "trial_00001"]  # best first, every result in
        assert all("(running)" in p[0] for p in pages.pages[:-2])  # nothing drawn after it
        assert writer.wait(timeout=60) == 0
    finally:
        for proc in (watcher, writer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def write_store(folder: str, n: int, status: str = "running") -> Store:
    os.makedirs(folder, exist_ok=True)
    store = Store(os.path.join(folder, STORE_FILE))
    with store.transaction() as db:
        store.set_meta(db, "spec", {"name": os.path.basename(folder), "metric": "loss", "mode": "min"})
        store.set_meta(db, "status", status)
        for i in range(1, n + 1):
            store.insert_trial(db, i, {"lr": i / 100, "opt": {"name": "adam"}}, {"cpu": 1.0}, "RUNNING")
            store.update_trial(db, i, iteration=1, last_result=dumps({"loss": float(i), "training_iteration": 1}))
    return store


def test_a_watch_reads_only_what_changed_and_holds_no_snapshot_between_draws(tmp_path: Any, monkeypatch: Any) -> None:
    """Between draws the watcher holds nothing the writer waits on (a checkpoint that truncates the write-ahead
    log succeeds); a draw decodes only the trials whose row changed, and a tick with nothing committed reads no
    trial at all."""
    import fcntl

    from tunesmith import cli as cli_module
    from tunesmith._layout import lock_path
    from tunesmith.results import ResultSet

    folder = str(tmp_path / "exp")
    writer = write_store(folder, 50)
    lock = os.open(lock_path(folder), os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held as a live driver holds it: the experiment is running
    built: list[int] = []
    real_init = cli_module._Brief.__init__

    def counted(self: Any, row: Any, key: Any) -> None:
        built.append(row[0])
        real_init(self, row, key)

    monkeypatch.setattr(cli_module._Brief, "__init__", counted)
    watch = cli_module._Watch(ResultSet(folder), sort_key=None, limit=20, show_secrets=False)
    page, ended = watch.poll()
    assert page is not None and not ended and len(built) == 50

    statements: list[str] = []
    watch.rs._store._db.set_trace_callback(statements.append)
    assert watch.poll() == (None, False)  # nothing committed since: nothing read, nothing drawn
    assert not any("trials" in s for s in statements), statements
    assert writer._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not blocked by the reader

    with writer.transaction() as db:
        writer.update_trial(db, 7, status="TERMINATED", iteration=2,
                            last_result=dumps({"loss": -1.0, "training_iteration": 2}))
    built.clear()
    page, ended = watch.poll()
    assert built == [7] and not ended
    text = "\n".join(item for item in page if isinstance(item, str))
    assert "1 terminated" in text
    assert writer._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0

    with writer.transaction() as db:
        writer.set_meta(db, "status", "finished")
    page, ended = watch.poll()
    assert ended and page is not None and "(finished)" in page[0]
    watch.rs._store.close()
    writer.close()
    os.close(lock)


def test_watch_of_an_ended_experiment_draws_once_and_exits_0_in_a_terminal(tmp_path: Any) -> None:
    """On a terminal the page is drawn with rich's Live; user strings stay text there too."""
    store = write_store(str(tmp_path / "done"), 3, status="finished")
    with store.transaction() as db:
        store.update_trial(db, 2, config=dumps({"prompt": "[bold]x[/bold]\x1b]0;pwned\x07"}))
    store.close()
    code, out = in_a_terminal(["show", "done", "--storage-path", str(tmp_path), "--watch", "0.2"], ENV, columns=200)
    assert code == 0, out
    assert "experiment done (finished), 3 trials" in out and "trial_00003" in out
    assert "[bold]x[/bold]" in out and "\x1b]0;pwned" not in out and "\x07" not in out


@pytest.mark.parametrize("value, expected", [("0.1", "0.2"), ("-1", "0.2"), ("=-1", "0.2"), ("abc", "seconds"),
                                             ("nan", "0.2"), ("0", "0.2")])
def test_watch_refuses_a_period_under_0_2_s_or_not_a_number(tmp_path: Any, value: str, expected: str) -> None:
    write_store(str(tmp_path / "exp"), 1).close()
    watch = ["--watch" + value] if value.startswith("=") else ["--watch", value]
    res = CliRunner().invoke(cli, ["show", "exp", "--storage-path", str(tmp_path), *watch])
    value = value.lstrip("=")
    assert res.exit_code == 2
    assert "--watch" in res.output and expected in res.output and value in res.output


def test_watch_with_json_is_refused(tmp_path: Any) -> None:
    write_store(str(tmp_path / "exp"), 1).close()
    res = CliRunner().invoke(cli, ["show", "exp", "--storage-path", str(tmp_path), "--watch", "--json"])
    assert res.exit_code == 2 and "--watch" in res.output and "--json" in res.output


def test_watch_without_a_value_waits_2_seconds(tmp_path: Any) -> None:
    """`--watch` alone is 2 s (an ended experiment is drawn once: nothing waits here)."""
    write_store(str(tmp_path / "exp"), 2, status="finished").close()
    res = CliRunner().invoke(cli, ["show", "exp", "--storage-path", str(tmp_path), "--watch"])
    assert res.exit_code == 0, res.output
    assert res.output.count("experiment exp (finished), 2 trials") == 1
    help_text = CliRunner().invoke(cli, ["show", "--help"]).output
    assert "--watch" in help_text and "2" in help_text


def test_ctrl_c_ends_the_watch_with_exit_0_and_leaves_the_experiment_running(tmp_path: Any) -> None:
    import fcntl
    import signal

    from tunesmith._layout import lock_path

    folder = str(tmp_path / "watched")
    write_store(folder, 2).close()
    lock = os.open(lock_path(folder), os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # a live driver's lock: the experiment runs until the test ends
    try:
        proc = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "show", "watched", "--storage-path",
                                 str(tmp_path), "--watch", "0.2"], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        pages = Pages(proc)
        pages.until(lambda p: "(running), 2 trials" in p[0] and row(p, "trial_00002"))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        pages.until(lambda p: p == ["<end>"])
        assert not any("interrupted" in line or "Traceback" in line for p in pages.pages for line in p)
    finally:
        os.close(lock)
    # the watch wrote nothing: still marked running (crashed now that no driver holds its lock)
    assert json.loads(CliRunner().invoke(cli, ["show", folder, "--json"]).output)["status"] == "crashed"
