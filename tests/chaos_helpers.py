"""Kill the driver at random moments and resume until the experiment finishes (shared by chaos tests)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable

from tunesmith.store.sqlite import STORE_FILE

DRIVER = """
    import os, sys, time
    import tunesmith as ts

    def train(config):
        ck = ts.get_checkpoint()
        start = ck.load() if ck else 0
        for i in range(start, 10):
            time.sleep(0.02)
            ts.report({"v": round(config["x"] * 100, 6) + i + 1}, checkpoint=ts.Checkpoint.from_state(i + 1))

    name, storage = sys.argv[1], sys.argv[2]
    resume = os.path.exists(os.path.join(storage, name, "experiment.db"))
    ts.run(train, space={"x": ts.uniform(0, 1)}, num_samples=8, max_concurrent=2, name=name, seed=0,
           verbose=0, storage_path=storage, resume=resume, keep=2)
"""


def _stored(db_path: str) -> tuple[dict[tuple[int, int], str], set[tuple[int, int, str]]]:
    """(each trial's current history: (trial, iteration) -> metrics; every stored row of every generation as
    (trial, iteration, metrics)). A PBT exploit moves a trial's rows up to its restart point to a new
    generation and keeps the ones after it as the superseded lineage: no row goes, so a row once seen must
    stay in the second set whatever happened since."""
    if not os.path.exists(db_path):
        return {}, set()
    db = sqlite3.connect(db_path)
    try:
        rows = set(db.execute("SELECT trial_id, iteration, metrics FROM results"))
        current = {(t, i): m for t, i, m in db.execute(
            "SELECT r.trial_id, r.iteration, r.metrics FROM results r JOIN trials t ON t.id = r.trial_id "
            "AND t.generation = r.generation")}
        return current, rows
    except sqlite3.OperationalError:
        return {}, set()
    finally:
        db.close()


# Trials that start processes: a child and a double-forked grandchild in its own session, pids recorded
SPAWNING_DRIVER = """
    import os, subprocess, sys, time
    import tunesmith as ts
    PIDS = sys.argv[3]
    START_METHOD = sys.argv[4]  # how the workers start: forked by the fork server, or the plain way

    def train(config):
        child = subprocess.Popen(["sleep", "600"])
        daemon = subprocess.Popen([sys.executable, "-c",
                                   "import os, subprocess, sys; os.setsid(); "
                                   "p = subprocess.Popen(['sleep', '600'], start_new_session=True); "
                                   "print(p.pid); sys.stdout.flush(); os._exit(0)"],
                                  stdout=subprocess.PIPE, text=True)
        grandchild = int(daemon.stdout.readline())
        daemon.wait()
        path = os.path.join(PIDS, f"{os.getpid()}-{child.pid}")
        with open(path + ".tmp", "w") as f:
            f.write(f"{child.pid} {grandchild}")
        os.replace(path + ".tmp", path)
        ck = ts.get_checkpoint()
        start = ck.load() if ck else 0
        for i in range(start, 10):
            time.sleep(0.1)
            ts.report({"v": i + 1}, checkpoint=ts.Checkpoint.from_state(i + 1))

    name, storage = sys.argv[1], sys.argv[2]
    resume = os.path.exists(os.path.join(storage, name, "experiment.db"))
    ts.run(train, num_samples=4, max_concurrent=2, name=name, seed=0, verbose=0, storage_path=storage,
           resume=resume, backend=ts.LocalBackend(start_method=START_METHOD))
"""


def sleepers(pids_dir: str) -> list[int]:
    """The recorded processes of SPAWNING_DRIVER's trials that still run (a reused pid is not one of them)."""
    alive = []
    for name in os.listdir(pids_dir):
        if name.endswith(".tmp"):
            continue
        with open(os.path.join(pids_dir, name)) as f:
            for pid in map(int, f.read().split()):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        if c.read().split(b"\0")[:2] == [b"sleep", b"600"]:
                            with open(f"/proc/{pid}/stat") as st:
                                if st.read().rsplit(")", 1)[1].split()[0] != "Z":
                                    alive.append(pid)
                except OSError:
                    pass
    return alive


def describe(pid: int) -> str:
    """What a test needs to tell why process ``pid`` is still there: its state, session, age, and its parent
    (init or the nearest subreaper when the trial's worker and the fork server are gone, the fork server while
    it is still killing, a worker that cannot die yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        state, ppid, sid, start = fields[0], int(fields[1]), int(fields[3]), int(fields[19])
        with open("/proc/uptime") as f:
            age = float(f.read().split()[0]) - start / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{ppid}/cmdline", "rb") as f:
            parent = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
        with open(f"/proc/{ppid}/stat") as f:
            parent_state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError) as e:
        return f"{pid} (gone or unreadable: {e})"
    return (f"{pid} state {state}, session {sid}, started {age:.1f} s ago, parent {ppid} "
            f"(state {parent_state}: {parent})")


def kill_and_resume(tmp_path, name: str, kills: int, rng: random.Random, driver: str = DRIVER,
                    args: tuple[str, ...] = (), before_kill: Callable[[], None] | None = None,
                    after_kill: Callable[[], None] | None = None, window: tuple[float, float] = (0.15, 1.2),
                    ) -> tuple[dict, int]:
    """Run the driver, SIGKILL it ``kills`` times at random moments (``window`` seconds after it starts),
    resume until it finishes; after every start, no stored result may be lost or changed. ``before_kill``/
    ``after_kill``: called around each kill (e.g. to count the processes trials run, then check for
    orphans). Returns the final run's current histories ((trial, iteration) -> metrics) and the starts."""
    script = tmp_path / "chaos_driver.py"
    script.write_text(textwrap.dedent(driver))
    storage = str(tmp_path / "store")
    db_path = os.path.join(storage, name, STORE_FILE)
    seen: set[tuple[int, int, str]] = set()
    starts = 0
    while True:
        starts += 1
        proc = subprocess.Popen([sys.executable, str(script), name, storage, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        killed = False
        if kills > 0:
            try:
                proc.wait(timeout=rng.uniform(*window))
            except subprocess.TimeoutExpired:
                if before_kill is not None:
                    before_kill()
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills -= 1
                killed = True
                if after_kill is not None:
                    after_kill()
        if not killed:
            err = proc.communicate(timeout=120)[1]
            assert proc.returncode == 0, err.decode()[-2000:]
        current, rows = _stored(db_path)
        lost = seen - rows
        assert not lost, f"stored results lost or changed (trial, iteration, metrics): {sorted(lost)[:5]}"
        seen = rows
        if not killed:
            return current, starts


PBT_DRIVER = """
    import os, sys, time
    import tunesmith as ts

    def train(config):
        ck = ts.get_checkpoint()
        start = ck.load() if ck else 0
        for i in range(start, 12):
            time.sleep(0.03)
            ts.report({"v": round(config["x"], 6) + 1.0 / (i + 1)}, checkpoint=ts.Checkpoint.from_state(i + 1))

    name, storage = sys.argv[1], sys.argv[2]
    resume = os.path.exists(os.path.join(storage, name, "experiment.db"))
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"x": ts.uniform(0, 1)}, quantile_fraction=0.5,
                 seed=0)
    ts.run(train, space={"x": ts.uniform(0, 1)}, num_samples=6, max_concurrent=3, name=name, seed=0, verbose=0,
           metric="v", mode="min", scheduler=pbt, keep=1, storage_path=storage, resume=resume)
"""


def pbt_kill_and_resume(tmp_path, name: str, kills: int, rng: random.Random) -> dict[str, int]:
    """PBT with keep=1: SIGKILL the driver ``kills`` times at random moments, resume until it finishes.

    No stored result may go or change, an exploit's superseded lineage included (an assertion fails). Returns counts:
    kills done, starts."""
    done = {"kills": 0}

    def count() -> None:
        done["kills"] += 1

    _final, starts = kill_and_resume(tmp_path, name, kills, rng, driver=PBT_DRIVER, before_kill=count,
                                     window=(0.2, 1.5))
    return {"kills": done["kills"], "starts": starts}
