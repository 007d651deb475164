"""Kill the driver at random moments and resume until the experiment finishes (shared by chaos tests)."""

from __future__ import annotations

import json
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


def _stored(db_path: str) -> dict[tuple[int, int], str]:
    if not os.path.exists(db_path):
        return {}
    db = sqlite3.connect(db_path)
    try:
        return {(t, i): m for t, i, m in db.execute("SELECT trial_id, iteration, metrics FROM results")}
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


# Trials that start processes: a child and a double-forked grandchild in its own session, pids recorded
SPAWNING_DRIVER = """
    import os, subprocess, sys, time
    import tunesmith as ts
    PIDS = sys.argv[3]

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
           resume=resume)
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


def kill_and_resume(tmp_path, name: str, kills: int, rng: random.Random, driver: str = DRIVER,
                    args: tuple[str, ...] = (), before_kill: Callable[[], None] | None = None,
                    after_kill: Callable[[], None] | None = None, window: tuple[float, float] = (0.15, 1.2),
                    replaced: Callable[[str, int], dict[int, int]] | None = None) -> tuple[dict, int]:
    """Run the driver, SIGKILL it ``kills`` times at random moments (``window`` seconds after it starts),
    resume until it finishes; after every start, no stored result may be lost or changed. ``before_kill``/
    ``after_kill``: called around each kill (e.g. to count the processes trials run, then check for
    orphans). ``replaced(db_path, since_seq)``: trial -> iteration after which its results may legitimately
    change (a PBT exploit logged since event ``since_seq`` replaces the clone's later results)."""
    script = tmp_path / "chaos_driver.py"
    script.write_text(textwrap.dedent(driver))
    storage = str(tmp_path / "store")
    db_path = os.path.join(storage, name, STORE_FILE)
    seen: dict[tuple[int, int], str] = {}
    seen_seq = 0
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
        now = _stored(db_path)
        may_go = replaced(db_path, seen_seq) if replaced is not None and os.path.exists(db_path) else {}
        lost = {(t, i) for (t, i), m in seen.items()
                if ((t, i) not in now or now[(t, i)] != m) and i <= may_go.get(t, 10**9)}
        assert not lost, f"stored results lost or changed: {sorted(lost)[:5]}"
        seen, seen_seq = now, _last_seq(db_path)
        if not killed:
            return now, starts


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


def _exploits_since(db_path: str, seq: int) -> dict[int, int]:
    """trial -> the lowest iteration it restarted from in an exploit logged after event ``seq``."""
    db = sqlite3.connect(db_path)
    try:
        out: dict[int, int] = {}
        for tid, data in db.execute("SELECT trial_id, data FROM events WHERE kind = 'exploit' AND seq > ?", (seq,)):
            out[tid] = min(out.get(tid, 10**9), json.loads(data)["iteration"])
        return out
    finally:
        db.close()


def _last_seq(db_path: str) -> int:
    if not os.path.exists(db_path):
        return 0
    db = sqlite3.connect(db_path)
    try:
        return db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def pbt_kill_and_resume(tmp_path, name: str, kills: int, rng: random.Random) -> dict[str, int]:
    """PBT with keep=1: SIGKILL the driver ``kills`` times at random moments, resume until it finishes.

    A stored result may only go when its trial exploited another after it was seen (its later results are
    replaced by the new lineage's); any other missing or changed one is lost (an assertion fails). Returns counts:
    kills done, starts."""
    done = {"kills": 0}

    def count() -> None:
        done["kills"] += 1

    _final, starts = kill_and_resume(tmp_path, name, kills, rng, driver=PBT_DRIVER, before_kill=count,
                                     window=(0.2, 1.5), replaced=_exploits_since)
    return {"kills": done["kills"], "starts": starts}
