"""Process tools of the local executor's worker and fork server: standard file descriptors, dying with
the parent, being a child subreaper, killing every descendant, and waiting for processes to end. Linux
features where Linux has them; elsewhere each degrades as its docstring says."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import sys
import time
from typing import Any


def standard_fds(fd: int) -> int:
    """Give file descriptors 0-2 /dev/null where they are closed (a driver started with its output
    closed passes that on), after moving ``fd``, our socket, above them if it is one of them, and give
    Python streams for 1 and 2 if it has none; returns where ``fd`` is now. Otherwise redirecting a trial's
    output onto 1 and 2 would replace the socket, and a trial's print() would fail."""
    if fd < 3:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        os.close(fd)
        fd = moved
    for std in range(3):
        try:
            os.fstat(std)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != std:
                os.dup2(null, std)
                os.close(null)
    # Python starts with sys.stdout/sys.stderr None where 1/2 were closed; a trial's print() needs them
    if sys.stdout is None:
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own stream
    if sys.stderr is None:
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
    return fd


def flush_quietly(stream: Any) -> None:
    """Flush ``stream``, whatever a trial made of it (closed, None, an object of its own whose flush raises):
    what it held is lost, the descriptors are not."""
    try:
        stream.flush()
    except BaseException:  # noqa: BLE001, S110
        pass


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except Exception:  # noqa: BLE001 - best effort
        return False


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send us ``sig`` (default SIGKILL) when our parent dies, so no worker outlives the driver.
    Best effort: the socket's EOF still ends an idle worker. False where it is not available."""
    return _prctl(1, sig)  # PR_SET_PDEATHSIG


def become_subreaper() -> bool:
    """Make orphaned descendants (a trial's double-forked daemon) our children instead of init's, so that
    :func:`kill_children` finds them. Linux only; False where it is not available."""
    return _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def _has_children() -> bool:
    """Whether this process has a child (of any thread), zombies included: one syscall that reaps nothing,
    where reading every thread's children file takes a dozen (a worker asks after every trial)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WSTOPPED | os.WCONTINUED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except (AttributeError, OSError):
        pass  # no waitid here: look
    return True


def _children(pid: int | None = None) -> list[int]:
    """The children (of every thread) of process ``pid`` (default: this one), zombies included; none if it
    is gone."""
    me = os.getpid() if pid is None else pid
    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"):
        return _children_by_scan(me)  # a kernel without the children file: look at every process
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{me}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{me}/task/{tid}/children") as f:
                kids.extend(int(p) for p in f.read().split())
        except (OSError, ValueError):
            continue  # a thread that just ended
    return kids


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _running(pidfd: int) -> bool:
    """Whether the process a pidfd holds has not exited (its pid is still its own)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return not poller.poll(0)


def kill_descendants(root: int) -> None:
    """SIGKILL every descendant of ``root`` (our own child, unreaped, so its pid is its own), deepest first,
    without waiting for them to pass to us as their parents die: a process that cannot die yet (a worker
    stuck in a write to a stalled disk) would keep its trial's daemons alive until it can, and past any time
    we wait for it. Each descendant is held by a pidfd and signalled only once it is known to be the child of
    its parent (itself held and still running after its children were read), so a pid that ended and was
    taken by another process meanwhile is never signalled. Where pidfds are not available, nothing is done:
    the descendants pass to us as their parents die, as they always did."""
    held: list[int] = []
    try:
        _kill_below(root, None, held, 0)
    except (OSError, AttributeError):
        pass  # no pidfds here, or not allowed
    finally:
        for fd in held:
            os.close(fd)


def kill_all_descendants(root: int, timeout: float = 5.0) -> None:
    """:func:`kill_descendants`, again until ``root`` (a child subreaper, left alive) has no child left running, or
    ``timeout`` seconds passed. A process forked after its parent's children were read and before the parent was
    killed escapes a pass; ``root`` adopts it as its parents die, and the next pass takes it."""
    if not hasattr(os, "pidfd_open") or not hasattr(signal, "pidfd_send_signal"):
        kill_descendants(root)  # (nothing is done there: see kill_descendants)
        return
    deadline = time.monotonic() + timeout
    while True:
        kill_descendants(root)
        # once its children have exited, what they left was passed to root: running, or none left
        if wait_gone(_children(root), max(0.0, deadline - time.monotonic())) or not wait_gone(_children(root), 0):
            return


def _kill_below(pid: int, pidfd: int | None, held: list[int], depth: int) -> None:
    kids = _children(pid)
    if pidfd is not None and not _running(pidfd):
        return  # it ended while we read: what we read may be another process's (its children pass upwards)
    for kid in kids:
        try:
            fd = os.pidfd_open(kid)
        except ProcessLookupError:
            continue
        held.append(fd)
        if _parent(kid) != pid or not _running(fd) or (pidfd is not None and not _running(pidfd)):
            continue  # not (or no longer) the process we listed
        if depth < 100:  # a chain deeper than this passes to us as its parents die
            _kill_below(kid, fd, held, depth + 1)
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _children_by_scan(me: int) -> list[int]:
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        kids.append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    return kids


def kill_children(keep: frozenset[int] | set[int] = frozenset(), timeout: float = 5.0) -> int:
    """SIGKILL every child of this process but ``keep``, with all its descendants, and reap it; again for any
    that a child subreaper inherits as they lose their parents, until none is left (or ``timeout`` seconds
    passed).
    Returns how many were killed. Processes in another session (a daemon) are found all the same: they are
    children, not process group members."""
    if not sys.platform.startswith("linux"):
        return 0
    if not keep and not _has_children():
        return 0
    deadline = time.monotonic() + timeout
    killed: set[int] = set()
    while True:
        kids = [p for p in _children() if p not in keep]
        if not kids or time.monotonic() >= deadline:
            if killed:
                _forget_helpers(killed)
            return len(killed)
        for pid in kids:
            kill_descendants(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_gone(kids, max(0.0, deadline - time.monotonic()))
        for pid in kids:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        killed.update(kids)


def _forget_helpers(killed: set[int]) -> None:
    """multiprocessing's forkserver remembers its process and waits for it unguarded the next time it is
    used (ChildProcessError once it was reaped here): forget it, so the next trial starts a new one. Its
    resource tracker notices by itself."""
    server = getattr(sys.modules.get("multiprocessing.forkserver"), "_forkserver", None)
    try:
        if server is not None and getattr(server, "_forkserver_pid", None) in killed:
            if server._forkserver_alive_fd is not None:
                os.close(server._forkserver_alive_fd)
            server._forkserver_pid = server._forkserver_address = server._forkserver_alive_fd = None
    except (AttributeError, OSError):  # another Python's internals: its next use may fail as it would have
        pass


def wait_gone(pids: list[int], timeout: float) -> set[int]:
    """Wait up to ``timeout`` seconds for the processes ``pids`` (our children or not) to end, woken by the
    exits themselves through pidfds (``Popen.wait(timeout)`` sleeps in steps that double up to a limit,
    which made a run's end up to twice as late as its workers' exits). Returns those still there; one
    that cannot be watched (no pidfds here) counts as there while it exists. Reaps nothing."""
    deadline = time.monotonic() + timeout
    watched: dict[int, int] = {}  # pidfd -> pid
    unwatched: list[int] = []
    try:
        for pid in pids:
            try:
                watched[os.pidfd_open(pid)] = pid
            except ProcessLookupError:
                pass  # gone already
            except (OSError, AttributeError):  # pidfds not allowed here, or not this platform
                unwatched.append(pid)
        poller = select.poll()
        for fd in watched:
            poller.register(fd, select.POLLIN)
        while watched:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for fd, _ev in poller.poll(remaining * 1000):
                poller.unregister(fd)
                os.close(fd)
                del watched[fd]
    finally:
        for fd in watched:
            os.close(fd)
    return set(watched.values()) | {pid for pid in unwatched if _exists(pid)}


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def make_folder(folder: str) -> None:
    """Create ``folder`` if it is not there. Most trials' folders are new, so it is made first: one mkdir
    (a stat before it would be one system call more per trial); one already there (a restarted trial, or one the
    driver made ahead) is left as it is; its parent is made only when missing. Other failures raise ``OSError``."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
