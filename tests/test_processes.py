"""Driver as a real subprocess: functions from __main__, and no orphan workers (nor fork server) after SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from chaos_helpers import describe
from proc_helpers import pid_alive

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "driver.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_function_defined_in_main_script_runs_in_workers(tmp_path, results_dir):
    script = _script(tmp_path, """
        import tunesmith as ts
        SCALE = 10  # a module global of __main__, shipped by value with the function

        def train(config):
            ts.report({"score": config["x"] * SCALE})

        if __name__ == "__main__":
            r = ts.run(train, space={"x": ts.grid([1, 2, 3])}, metric="score", mode="max", verbose=0)
            print("BEST", r.best.metrics["score"])
    """)
    out = subprocess.run([sys.executable, script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "BEST 30" in out.stdout


def test_script_without_main_guard_is_not_re_executed_by_workers(tmp_path, results_dir):
    marker = tmp_path / "runs.txt"
    script = _script(tmp_path, f"""
        import tunesmith as ts
        with open({str(marker)!r}, "a") as f:
            f.write("x")
        ts.run(lambda c: ts.report({{"v": 1}}), num_samples=4, verbose=0)
    """)
    out = subprocess.run([sys.executable, script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert marker.read_text() == "x"


def test_no_worker_survives_sigkill_of_the_driver(tmp_path, results_dir):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    script = _script(tmp_path, f"""
        import os, time
        import tunesmith as ts

        def train(config):
            path = os.path.join({str(pids_dir)!r}, str(os.getpid()))
            with open(path + ".tmp", "w") as f:
                f.write(str(os.getppid()))  # the fork server (or the driver)
            os.replace(path + ".tmp", path)  # whole when the test sees it
            for i in range(600):
                time.sleep(0.1)
                ts.report({{"i": i}})

        ts.run(train, num_samples=4, verbose=0, max_concurrent=2)
    """)
    driver = subprocess.Popen([sys.executable, script], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len([p for p in os.listdir(pids_dir) if p.isdigit()]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for a condition (both workers started), bounded
    pids = [int(p) for p in os.listdir(pids_dir) if p.isdigit()]
    assert len(pids) == 2
    parents = {int((pids_dir / str(p)).read_text()) for p in pids}
    if sys.platform.startswith("linux"):  # forked by the fork server, which must die with the driver too
        assert parents != {driver.pid} and len(parents) == 1
        with open(f"/proc/{next(iter(parents))}/cmdline", "rb") as f:
            assert b"driver.py" in f.read()  # a driver holding only tunesmith forks itself into its server
        pids += parents
    assert all(pid_alive(p) for p in pids)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in pids), "a worker outlived the driver by 10 s"


# -- what a trial starts dies with it, and with the driver (issue 14 §5) ------------------------------
SPAWNER = """
    import os, subprocess, sys, time
    import tunesmith as ts
    PIDS, N = sys.argv[1], int(sys.argv[2])  # globals of __main__: shipped with the function
    WRITES_TO = sys.argv[3] if len(sys.argv) > 3 else None  # a folder: the worker blocks there while it is frozen

    def train(config):
        # a plain child, and a daemon-ish grandchild: double-forked, in its own session, parent gone
        child = subprocess.Popen(["sleep", "600"])
        daemon = subprocess.Popen([sys.executable, "-c",
                                   "import os, subprocess, sys; os.setsid(); "
                                   "p = subprocess.Popen(['sleep', '600'], start_new_session=True); "
                                   "print(p.pid); sys.stdout.flush(); os._exit(0)"],
                                  stdout=subprocess.PIPE, text=True)
        grandchild = int(daemon.stdout.readline())
        daemon.wait()
        path = os.path.join(PIDS, str(os.getpid()))
        with open(path + ".tmp", "w") as f:
            f.write(f"{{child.pid}} {{grandchild}}")
        os.replace(path + ".tmp", path)  # whole when the test sees it
        for i in range(N):
            time.sleep(0.05)
            if WRITES_TO:
                with open(os.path.join(WRITES_TO, str(os.getpid())), "w") as f:
                    f.write("x" * 4096)
                    f.flush()
                    os.fsync(f.fileno())
            ts.report({{"i": i}})

    if __name__ == "__main__":
        ts.run(train, num_samples=2, max_concurrent=2, verbose=0{extra})
"""


def _spawner(tmp_path, pids_dir, iterations: int, extra: str = "", writes_to: str | None = None) -> subprocess.Popen:
    script = _script(tmp_path, SPAWNER.format(extra=extra))
    args = [sys.executable, script, str(pids_dir), str(iterations), *([writes_to] if writes_to else [])]
    return subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _started(pids_dir, n: int, deadline_s: float = 30) -> list[int]:
    deadline = time.monotonic() + deadline_s
    while len([p for p in os.listdir(pids_dir) if p.isdigit()]) < n and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for a condition (the trials' processes started), bounded
    found = [p for p in os.listdir(pids_dir) if p.isdigit()]
    assert len(found) == n, f"{len(found)} of {n} trials started their processes"
    return [int(x) for p in found for x in (pids_dir / p).read_text().split()]


def _none_alive(pids: list[int], timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux-only")
def test_no_process_a_trial_started_survives_sigkill_of_the_driver(tmp_path, results_dir):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    driver = _spawner(tmp_path, pids_dir, iterations=100000)
    try:
        pids = _started(pids_dir, 2)
        assert all(pid_alive(p) for p in pids)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert not _none_alive(pids), "a process a trial started outlived the driver by 10 s"


def _in_sessions(sids: set[int]) -> list[int]:
    """The processes of sessions ``sids`` still running (a zombie, exited, does not count)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if fields[0] != "Z" and int(fields[3]) in sids:
                found.append(int(name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux-only")
def test_no_process_of_a_plain_worker_survives_sigkill_of_the_driver(tmp_path, results_dir):
    """Workers started the plain way (``start_method="spawn"``; also where the fork server cannot start or died),
    each in a session of its own, whose trials start a child and a daemon (a session of its own too): SIGKILL of
    the driver leaves, within 10 s, no process of the workers' sessions and no daemon."""
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    driver = _spawner(tmp_path, pids_dir, iterations=100000, extra=", backend=ts.LocalBackend(start_method='spawn')")
    try:
        pids = _started(pids_dir, 2)
        sessions = {os.getsid(int(p)) for p in os.listdir(pids_dir) if p.isdigit()}
        assert not sessions & {os.getsid(0), os.getsid(driver.pid)}  # the workers' own: none of ours is scanned
        assert all(pid_alive(p) for p in pids) and set(pids) & set(_in_sessions(sessions))
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    left: list[int] = []
    try:
        deadline = time.monotonic() + 10
        while (left := sorted(set(_in_sessions(sessions)) | {p for p in pids if pid_alive(p)})) and (
                time.monotonic() < deadline):
            time.sleep(0.05)  # waiting for a condition (the workers' sessions and the daemons gone), bounded
        assert not left, "outlived the driver by 10 s:\n" + "\n".join(describe(p) for p in left)
    finally:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)  # no orphan of a failed test outlives it
            except ProcessLookupError:
                pass


def _blocked(pid: int) -> bool:
    """Whether a thread of process ``pid`` sleeps uninterruptibly."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "D":
                return True
    return False


@pytest.fixture
def freezable(tmp_path):
    """A small ext4 file system of its own (a loop device) that the test can freeze: a process writing to it
    then sleeps uninterruptibly, as on a disk that stalls, and even SIGKILL waits until it is thawed."""
    tools = ("losetup", "mkfs.ext4", "fsfreeze", "mount", "umount")
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not all(shutil.which(t) for t in tools):
        pytest.skip("needs root and losetup, mkfs.ext4, fsfreeze (Linux)")
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    with open(image, "wb") as f:
        f.truncate(32 * 2**20)
    mnt.mkdir()
    if subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True).returncode != 0 or subprocess.run(
            ["mount", "-o", "loop", str(image), str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a loop device here")
    try:
        yield str(mnt)
    finally:
        subprocess.run(["fsfreeze", "-u", str(mnt)], capture_output=True)  # thawed whatever happened
        # the workers that were blocked in it may still be closing their files: busy until they are gone
        deadline = time.monotonic() + 20
        while subprocess.run(["umount", str(mnt)], capture_output=True).returncode and time.monotonic() < deadline:
            time.sleep(0.1)  # waiting for a condition (the file system no longer in use), bounded
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)  # detached once the last user is gone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux-only")
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_what_a_trial_started_dies_with_the_driver_while_its_worker_cannot(tmp_path, results_dir, freezable,
                                                                           start_method):
    """SIGKILL of the driver while both workers are stuck in a write to a stalled disk (a frozen file system;
    they cannot die until it thaws): the processes their trials started die all the same, daemons included,
    within 10 s, before the thaw (they used to outlive the fork server, which gave up after 5 s, and pass to
    init for good: the orphans CI's chaos test found). Workers started the plain way too."""
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    driver = _spawner(tmp_path, pids_dir, iterations=100000, writes_to=freezable,
                      extra=f", backend=ts.LocalBackend(start_method={start_method!r})")
    try:
        pids = _started(pids_dir, 2)
        assert all(pid_alive(p) for p in pids)
        subprocess.run(["fsfreeze", "-f", freezable], check=True)
        workers = [int(p) for p in os.listdir(pids_dir) if p.isdigit()]
        deadline = time.monotonic() + 10
        while not all(_blocked(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.02)  # waiting for a condition (both workers blocked in their write), bounded
        assert len(workers) == 2 and all(_blocked(w) for w in workers)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    try:
        left = _none_alive(pids)
    finally:
        subprocess.run(["fsfreeze", "-u", freezable], check=True)
    try:
        assert not left, f"{len(left)} of {len(pids)} processes trials started outlived the driver by 10 s"
        assert not _none_alive(pids), "processes trials started outlived the thaw"
    finally:
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)  # no orphan of a failed test outlives it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux-only")
def test_a_trial_that_ends_leaves_none_of_its_processes(tmp_path, results_dir):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    driver = _spawner(tmp_path, pids_dir, iterations=3)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 0, err.decode()[-2000:]
    pids = _started(pids_dir, 2, deadline_s=0)
    assert not _none_alive(pids, timeout=2), "a trial's processes outlived it"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux-only")
def test_a_stopped_trial_leaves_none_of_its_processes(tmp_path, results_dir):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    driver = _spawner(tmp_path, pids_dir, iterations=100000, extra=", stop={'training_iteration': 5}")
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 0, err.decode()[-2000:]
    pids = _started(pids_dir, 2, deadline_s=0)
    assert not _none_alive(pids, timeout=2), "a stopped trial's processes outlived it"


def uses_a_multiprocessing_forkserver(config):
    import multiprocessing as mp

    import tunesmith as ts

    with mp.get_context("forkserver").Pool(1) as pool:
        value = pool.map(abs, [-3])[0]
    ts.report({"v": value, "pid": os.getpid()})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux-only")
def test_the_next_trial_on_a_worker_can_use_multiprocessing_again(results_dir):
    """The end of a trial kills multiprocessing's forkserver too (the trial started it); the next trial on
    the same worker must get a new one, not a ChildProcessError."""
    import tunesmith as ts

    result = ts.run(uses_a_multiprocessing_forkserver, num_samples=3, max_concurrent=1, verbose=0)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 3, [t.error for t in result.trials]
    assert len({t.last_result["pid"] for t in result.trials}) == 1  # one worker ran them all


def starts_a_daemon(config):
    import threading

    import tunesmith as ts

    daemon = subprocess.Popen(["sleep", "600"], start_new_session=True)  # a session (and group) of its own
    ts.report({"daemon": daemon.pid, "worker": os.getpid()})
    threading.Event().wait()  # reports no more: a stop kills its worker after the grace period


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux-only")
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_a_worker_killed_after_the_grace_period_takes_the_daemons_its_trial_started(tmp_path, start_method):
    """A stopped trial that does not end within the grace period has its worker killed with everything the trial
    started, a daemon in a session of its own included, the plain way (``start_method="spawn"``, a keeper per
    worker) as with the fork server: the plain way killed the worker's process group only, and the daemon lived
    on until the driver ended."""
    import json

    from tunesmith.executors._base import Done, Launch, Results
    from tunesmith.executors._procs import wait_gone
    from tunesmith.executors.local import LocalBackend

    b = LocalBackend(total_resources={"cpu": 1}, grace_period_s=0, start_method=start_method)
    b.setup(starts_a_daemon, str(tmp_path))
    rows: list[dict] = []
    done: list[Done] = []
    try:
        assert b.try_start(Launch(trial_id=1, config={}, trial_dir=str(tmp_path / "t1"), resources={"cpu": 1.0}))
        deadline = time.monotonic() + 60
        while not rows:
            assert time.monotonic() < deadline, "the trial reported nothing in 60 s"
            rows += [json.loads(r[3]) for ev in b.poll(0.05) if isinstance(ev, Results) for r in ev.rows]
        daemon, worker = rows[0]["daemon"], rows[0]["worker"]
        assert pid_alive(daemon) and os.getsid(daemon) not in (os.getsid(worker), os.getsid(0))
        b.stop(1)
        while not done:
            assert time.monotonic() < deadline, "the stopped trial did not end in 60 s"
            done += [ev for ev in b.poll(0.05) if isinstance(ev, Done)]
        assert done[0].status == "stopped"
        assert not wait_gone([worker], 10.0), "the worker of a trial that ignored its stop was not killed"
        assert not wait_gone([daemon], 10.0), "the daemon its trial started outlived the killed worker by 10 s"
    finally:
        b.shutdown()
        if rows and pid_alive(rows[0]["daemon"]):
            os.kill(rows[0]["daemon"], signal.SIGKILL)  # no orphan of a failed test outlives it


# a process in a session of its own that makes 100 children waiting for it to end, then forks children in a loop
# that wait 20 ms for it; each notes its pid while it runs; a child that sees its parent end (its pipe closes) before
# being killed lives on, as a daemon would (a plain interpreter, small: its forks are quick)
FORKER = """
import itertools, os, select, sys, time
r, w = os.pipe()  # the children's: closed (EOF) when this process ends
alive = 0
for n in itertools.count():
    if os.fork() == 0:
        try:
            os.close(w)
            note = os.path.join(sys.argv[1], str(os.getpid()))
            open(note, "w").close()
            if not select.select([r], [], [], None if n < 100 else 0.02)[0]:
                os.remove(note)  # its parent lived its 20 ms: it ends
            else:
                time.sleep(600)  # its parent ended
        finally:
            os._exit(0)
    alive += 1
    if n == 300:  # in full: 100 waiting, the others coming and going
        open(os.path.join(sys.argv[1], "forking"), "w").close()
    while alive > 100 and os.waitpid(-1, os.WNOHANG)[0]:
        alive -= 1
"""


def forks_while_it_is_stopped(config):
    """Reports once, then ignores its stop while the FORKER it started forks (each child in the FORKER's session
    from its birth: out of the worker's process group)."""
    import threading

    import tunesmith as ts

    subprocess.Popen([sys.executable, "-c", FORKER, config["pids"]], start_new_session=True)
    ts.report({"worker": os.getpid()})
    threading.Event().wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux-only")
def test_a_killed_plain_worker_takes_the_children_its_trial_forks_as_it_is_killed(tmp_path):
    """A plain worker (``start_method="spawn"``) killed after the grace period while a process its trial started forks
    children out of the worker's process group: a child forked between the driver's look at its parent's children and
    its parent's death passed to the keeper, which the driver killed at once with the worker's group, and lived on
    (reparented to init)."""
    import json

    from tunesmith.executors._base import Done, Launch, Results
    from tunesmith.executors._procs import wait_gone
    from tunesmith.executors.local import LocalBackend

    pids = tmp_path / "pids"
    pids.mkdir()
    b = LocalBackend(total_resources={"cpu": 1}, grace_period_s=0, start_method="spawn")
    b.setup(forks_while_it_is_stopped, str(tmp_path))
    rows: list[dict] = []
    done: list[Done] = []
    try:
        assert b.try_start(Launch(trial_id=1, config={"pids": str(pids)}, trial_dir=str(tmp_path / "t1"),
                                  resources={"cpu": 1.0}))
        deadline = time.monotonic() + 60
        while not rows:
            assert time.monotonic() < deadline, "the trial reported nothing in 60 s"
            rows += [json.loads(r[3]) for ev in b.poll(0.05) if isinstance(ev, Results) for r in ev.rows]
        while not os.path.exists(pids / "forking"):
            assert time.monotonic() < deadline, "the trial's FORKER did not fork 300 children in 60 s"
            time.sleep(0.01)  # waiting for a condition, bounded
        os.remove(pids / "forking")
        b.stop(1)
        while not done:
            assert time.monotonic() < deadline, "the stopped trial did not end in 60 s"
            done += [ev for ev in b.poll(0.05) if isinstance(ev, Done)]
        assert done[0].status == "stopped"
        assert not wait_gone([rows[0]["worker"]], 10.0), "the worker of a trial that ignored its stop was not killed"
        left = [int(p) for p in os.listdir(pids)]
        assert not wait_gone(left, 10.0), "a child its trial forked as it was killed outlived the kill by 10 s"
    finally:
        b.shutdown()
        for p in os.listdir(pids):
            if pid_alive(int(p)):
                os.kill(int(p), signal.SIGKILL)  # no orphan of a failed test outlives it
