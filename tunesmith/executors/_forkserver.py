"""A fork server for the local executor's workers (Linux).

A worker started as ``python -m tunesmith.executors._worker`` pays an interpreter start and tunesmith's imports,
per worker and per run, before its first trial (benchmarks/overhead.py measures the start). The fork server is
one such process per driver process, started on first use with those imports done; every worker after
that is a fork of it, ready in milliseconds. It is started once and kept for the driver's later runs
(a notebook, a script that tunes twice, a test suite).

What a forked worker gets from the driver at the moment it is asked for: the environment, the working
directory, stdout and stderr (the three are sent along with each request), as a freshly started process
would. It never holds the user's modules: the fork server imports tunesmith's own only. It is started as
``python -m tunesmith.executors._forkserver``, or, where the driver holds nothing a new interpreter would not
(``_forkable``: the standard library and tunesmith only, no other thread), forked from the driver and reset to
a new interpreter's state (``_as_new``), which saves the first result an interpreter start and the imports.

Lifetime: the server dies with the driver (the parent-death signal, tied to a thread of the driver that
lives as long as the process, not to the thread that happened to call ``run``), and its workers die with
it, so nothing outlives a driver that is killed. The server reaps its workers and tells the driver how
each ended (the driver is not their parent, so it cannot wait for them itself).

Protocol (a SOCK_SEQPACKET socket pair, JSON; both ends are our own processes):
  driver -> server: {"env": {...}, "cwd": str | null} with three file descriptors: the worker's end of
                    its socket pair, the driver's stdout and its stderr
  server -> driver: ["pid", pid] after each fork, ["exit", pid, returncode] when a worker has ended
                    (returncode as ``subprocess`` gives it: negative for a signal)
"""

from __future__ import annotations

import atexit
import collections
import errno
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Literal

from tunesmith.executors import _procs

log = logging.getLogger("tunesmith")

# imported by the server before it forks, so that no worker imports them again
_PRELOAD = ("tunesmith.executors._worker", "tunesmith.session", "tunesmith.checkpoint", "cloudpickle")
_MAX_REQUEST = 1 << 20  # a fork request (its environment) at most
_MAX_ANSWER = 1 << 12
_ANSWER_S = 10.0  # a fork server that does not answer a fork request within this is given up


def worker_env() -> dict[str, str]:
    """The environment of a worker process: the driver's, with tunesmith importable."""
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# -- driver side ---------------------------------------------------------------------------------------
# Besides the standard library's and tunesmith's own modules, what a new server would hold as well: its own
# dependency, and what the interpreter's start imports (site's .pth files: setuptools' and an editable install's
# finders; sitecustomize). A driver holding any other module is never forked.
_SHARED = frozenset({"tunesmith", "cloudpickle", "__main__", "__mp_main__", "_distutils_hack", "sitecustomize",
                     "usercustomize"})
_FLAGS = ("optimize", "isolated", "ignore_environment", "no_site", "no_user_site", "dev_mode", "safe_path",
          "bytes_warning", "verbose", "inspect", "interactive")
# what the warnings module starts with where no -W option nor PYTHONWARNINGS says otherwise (Python's documented
# default filters), last first as filterwarnings inserts each at the front
_DEFAULT_WARNINGS: tuple[tuple[Literal["default", "ignore"], type[Warning], str], ...] = (
    ("ignore", ResourceWarning, ""),
    ("ignore", ImportWarning, ""), ("ignore", PendingDeprecationWarning, ""), ("ignore", DeprecationWarning, ""),
    ("default", DeprecationWarning, "__main__"))
_INHERITED: list[Any] = []  # in a server forked from the driver: the driver's objects, kept and never used


def _forkable() -> bool:
    """Whether the driver, now, may become its fork server by a plain fork instead of starting a new
    interpreter (its start, site and tunesmith's imports: CPU the first trial would wait for; measured by
    benchmarks/pertrial.py's first result).
    Only while it holds nothing that a new interpreter would not: no module but the standard library's,
    tunesmith's and those in ``_SHARED`` (no user package, no native library that keeps threads or devices),
    no thread but the caller of ``run`` and the one forking (a lock another thread holds would stay held in
    the fork), no tracer or profiler, no interpreter option a plain start does not pass on. Called from the
    keeper thread while the caller waits for it."""
    stdlib = sys.stdlib_module_names
    for name in list(sys.modules):
        top = name.partition(".")[0]
        if top not in stdlib and top not in _SHARED and not top.startswith("__editable__"):
            return False
    try:
        if len(os.listdir("/proc/self/task")) != 2:
            return False
    except OSError:
        return False
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and getattr(mp_util, "_finalizer_registry", None):
        return False  # multiprocessing's exit work for the driver's own pools and queues
    return (sys.gettrace() is None and sys.getprofile() is None and not sys.warnoptions and not sys._xoptions
            and not any(getattr(sys.flags, flag, 0) for flag in _FLAGS))


def _fork_server(fd: int, ours: int) -> _ServerProcess:
    """Fork this driver into its fork server, serving on ``fd`` (``ours``: the driver's end); in the fork,
    ``_as_new`` first undoes what the driver set up, so that the server and its workers are what a new
    interpreter's would be."""
    # else what the driver buffered would be written again by the fork
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            serve(_as_new(fd, ours))
            code = 0
        except BaseException:  # noqa: BLE001 - printed where the driver's errors go
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return _ServerProcess(pid)


def _as_new(fd: int, ours: int) -> int:
    """In a server just forked from the driver: become what ``python -m tunesmith.executors._forkserver`` would
    be. Every file descriptor but 0-2 and ``fd`` is closed (the driver's files, sockets and pipes are not held
    open by the server and its workers); the Python objects that owned them are kept, unused and never
    finalized (one closing its old number would close a new file); the driver's exit handlers, finalizers,
    signal handlers, logging handlers, warning filters, hooks, ``__main__`` and ``sys.argv`` are replaced by
    a new interpreter's. ``ours``: the driver's end of the socket, which the server must not hold (where the
    driver had 0-2 closed, it may be one of them). Returns where ``fd`` is now (above 0-2)."""
    import atexit
    import builtins
    import gc
    import types
    import warnings
    import weakref

    global _SERVER_LOCK
    gc.freeze()  # nothing inherited is collected: its finalizer would close a number that names a new file
    gc.enable()  # as in a new interpreter (the driver's run() pauses it while it sets up)
    os.setsid()  # as start_new_session: Ctrl-C reaches the driver only
    if ours <= 2:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, ours)
        os.close(null)
    fd = _procs.standard_fds(fd)  # above 0-2, which get /dev/null where the driver had them closed
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2 and int(name) != fd:
            try:
                os.close(int(name))
            except OSError:
                pass  # the listing's own
    _SERVER_LOCK = threading.Lock()  # held by the driver's caller of get() at the fork
    keep = _INHERITED
    keep.append(sys.modules["__main__"])
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    sys.argv = [os.path.abspath(__file__), str(fd)]
    if sys.path:
        sys.path[0] = os.getcwd()  # as ``python -m`` started here has it (a worker's is the driver's cwd)
    for name in ("stdin", "stdout", "stderr", "excepthook", "displayhook", "breakpointhook", "unraisablehook"):
        keep.append(getattr(sys, name))
        setattr(sys, name, getattr(sys, "__" + name + "__"))
    null = os.open(os.devnull, os.O_RDONLY)  # stdin: as subprocess.DEVNULL
    if null != 0:
        os.dup2(null, 0)
        os.close(null)
    if sys.stdin is not None:  # a new one: the driver's may hold input it read ahead
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stream
        sys.__stdin__ = sys.stdin  # type: ignore[misc]
    atexit._clear()
    keep.append(dict(weakref.finalize._registry))  # type: ignore[attr-defined]
    weakref.finalize._registry.clear()  # type: ignore[attr-defined]
    weakref.finalize._registered_with_atexit = False  # type: ignore[attr-defined]
    atexit.register(_close_at_exit)
    if "multiprocessing.util" in sys.modules:
        atexit.register(sys.modules["multiprocessing.util"]._exit_function)
    if "logging" in sys.modules:
        _fresh_logging(keep)
    warnings.resetwarnings()
    for action, category, module in _DEFAULT_WARNINGS:
        warnings.filterwarnings(action, category=category, module=module)
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
        if callable(handler) and handler is not signal.default_int_handler:
            keep.append(handler)
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    return fd


def _fresh_logging(keep: list[Any]) -> None:
    """Loggers as a new interpreter's: no handler (the driver's may write to a file closed here), the root at
    WARNING, every other logger at NOTSET, propagating, enabled."""
    import logging

    keep.append(logging.root.handlers[:])
    logging.root.handlers.clear()
    logging.root.setLevel(logging.WARNING)
    logging.disable(logging.NOTSET)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            keep.append(logger.handlers[:])
            logger.handlers.clear()
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
            logger.disabled = False


class ServerGone(OSError):
    """The fork server died or stopped answering."""


class ForkServer:
    """The driver's end of its fork server. Thread-safe: runs in several threads may share it."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        started: dict[str, Any] = {}
        ready = threading.Event()
        self._closed = threading.Event()

        def keeper() -> None:
            # The server's parent-death signal fires when the thread that started it ends: this one, which
            # waits until the server is closed (or the process ends), not the caller of run().
            try:
                if _forkable():
                    started["proc"] = _fork_server(theirs.fileno(), ours.fileno())
                else:
                    started["proc"] = subprocess.Popen(
                        [sys.executable, "-m", "tunesmith.executors._forkserver", str(theirs.fileno())],
                        pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=worker_env(),
                        start_new_session=True)  # Ctrl-C reaches the driver only
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                started["error"] = e
            finally:
                ready.set()
            self._closed.wait()

        threading.Thread(target=keeper, name="tunesmith-forkserver", daemon=True).start()
        ready.wait()
        theirs.close()
        if "error" in started:
            ours.close()
            raise started["error"]
        self.proc: subprocess.Popen[bytes] | _ServerProcess = started["proc"]
        self.pid = os.getpid()  # the driver process this server belongs to (a fork of it must not use it)
        self._sock = ours
        self._lock = threading.Lock()
        self._exits: dict[int, int] = {}
        self._asked: collections.deque[Asked] = collections.deque()  # requests not answered yet, oldest first
        self.dead = False

    def ask(self, conn_fd: int, env: dict[str, str], cwd: str | None) -> Asked:
        """Ask for a worker that talks over ``conn_fd`` and return without waiting for it: ``wait()`` on the
        answer gives the process (the caller does other work meanwhile, as the local executor makes the store
        while its first worker is forked). Raises ServerGone if the request cannot be sent."""
        data = json.dumps({"env": env, "cwd": cwd}).encode()
        nulls = []
        try:
            fds = [conn_fd]
            for fd in (1, 2):  # the driver's output now; /dev/null where it has none (closed)
                try:
                    os.fstat(fd)
                    fds.append(fd)
                except OSError:
                    nulls.append(os.open(os.devnull, os.O_WRONLY))
                    fds.append(nulls[-1])
            return self._request(data, fds)
        finally:
            for fd in nulls:
                os.close(fd)

    def _request(self, data: bytes, fds: list[int]) -> Asked:
        with self._lock:
            if self.dead:
                raise ServerGone("the fork server is gone")
            try:
                socket.send_fds(self._sock, [data], fds)
            except OSError as e:
                if e.errno != errno.EMSGSIZE:  # too large a request (environment) is no reason to give up
                    self._gone()
                raise ServerGone(f"could not reach the fork server: {e}") from e
            asked = Asked(self)
            self._asked.append(asked)  # under the lock that sent it: answers come in the order of the requests
            return asked

    def _answer(self, asked: Asked) -> ForkedProcess:
        """The process of ``asked``, reading the server's answers until its own is filed (``_read``)."""
        with self._lock:
            deadline = time.monotonic() + _ANSWER_S
            while asked.pid is None:
                if self.dead:
                    raise ServerGone("the fork server is gone")
                if self._read(deadline - time.monotonic()) is None:
                    # gone, or hung: killed, so that it cannot fork this request's worker after all (the
                    # caller starts one the plain way on the same socket)
                    self._gone()
                    self.proc.kill()
                    raise ServerGone("the fork server did not answer")
            if asked.pid < 0:
                raise ServerGone("the fork server refused the request")
            return ForkedProcess(self, asked.pid)

    def returncode(self, pid: int, timeout: float) -> int | None:
        """The exit code of worker ``pid`` once it ended, waiting up to ``timeout`` seconds; raises
        TimeoutError while it runs. None if it ended but the server, gone, could not say how."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while pid not in self._exits:
                remaining = deadline - time.monotonic()
                if self.dead:  # its parent-death signal is on its way, if it has not ended yet
                    if _procs.wait_gone([pid], remaining):
                        raise TimeoutError(pid)
                    return None
                if self._read(remaining) is None and not self.dead and remaining <= 0:
                    raise TimeoutError(pid)
            return self._exits.pop(pid)

    def close(self) -> None:
        """Let the server go: it exits when its socket closes, and workers it forked die with it."""
        self._closed.set()
        with self._lock:
            self.dead = True
            try:
                self._sock.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    # lock held ---------------------------------------------------------------------------------------
    def _read(self, timeout: float) -> list[Any] | None:
        """One message from the server within ``timeout`` (exit notices are filed as they come); None if
        none came in time, or the server is gone (then ``dead`` is set)."""
        try:
            ready, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
            if not ready:
                return None
            data = self._sock.recv(_MAX_ANSWER)
        except OSError:
            data = b""
        if not data:
            self._gone()
            return None
        msg = json.loads(data)
        if msg[0] == "exit":
            self._exits[int(msg[1])] = int(msg[2])
        elif msg[0] == "pid" and self._asked:
            self._asked.popleft().pid = int(msg[1])  # whoever reads it: the answer to the oldest request
        return msg

    def _gone(self) -> None:
        self.dead = True
        self._closed.set()


class _ServerProcess:
    """A fork server forked from the driver (its child): what ``subprocess.Popen`` gives of it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: it ended
                self.returncode = -signal.SIGKILL
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.poll() is None:
            _procs.wait_gone([self.pid], 1e9 if timeout is None else timeout)
            if self.poll() is None:
                raise subprocess.TimeoutExpired(f"fork server {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Asked:
    """A worker asked of the fork server (``ForkServer.ask``); its pid is filed when the answer is read."""

    def __init__(self, server: ForkServer) -> None:
        self.server = server
        self.pid: int | None = None  # negative: the server refused

    def wait(self) -> ForkedProcess:
        """The forked worker, once the server has answered. Raises ServerGone if it refused, died, or did not
        answer in time."""
        return self.server._answer(self)


class ForkedProcess:
    """A worker forked by the fork server: what the local executor needs of ``subprocess.Popen``."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None
        self._ended = False

    @property
    def orphaned(self) -> bool:
        """Its server is gone: the process ends (its parent-death signal) if it has not yet."""
        return self.server.dead

    def poll(self) -> int | None:
        try:
            return self.wait(0.0)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._ended:
            try:
                self.returncode = self.server.returncode(self.pid, 1e9 if timeout is None else timeout)
            except TimeoutError:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0) from None
            self._ended = True
        return self.returncode


_SERVER: ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def get() -> ForkServer | None:
    """This process's fork server, started on first use (again if it died); None where there is none
    (not Linux) or it cannot start: the caller starts its worker the plain way then."""
    global _SERVER
    if not sys.platform.startswith("linux") or not hasattr(socket, "send_fds"):
        return None
    with _SERVER_LOCK:
        server = _SERVER
        if server is not None and (server.dead or server.pid != os.getpid() or server.proc.poll() is not None):
            if server.pid == os.getpid():
                server.close()
            server = _SERVER = None
        if server is None:
            try:
                server = _SERVER = ForkServer()
            except OSError as e:
                log.warning("could not start the fork server (%s); starting workers one by one", e)
                return None
        return server


@atexit.register
def _close_at_exit() -> None:
    server = _SERVER
    if server is not None and server.pid == os.getpid():
        try:
            server.close()
        except KeyboardInterrupt:  # Ctrl-C pressed again while the program exits: no wait, and no traceback
            server.proc.kill()


# -- server side ---------------------------------------------------------------------------------------
def _send(sock: socket.socket, msg: list[Any]) -> None:
    sock.send(json.dumps(msg).encode())


def _reap(sock: socket.socket, workers: set[int]) -> None:
    """Report the workers that ended; kill what else came to us (we are a child subreaper): the processes
    of a trial whose worker died or was killed."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid in workers:
            workers.discard(pid)
            _send(sock, ["exit", pid, os.waitstatus_to_exitcode(status)])
    _procs.kill_children(keep=workers)


def _end_all(workers: set[int]) -> None:
    """Kill every worker with its process group and everything their trials started, before the server exits:
    nothing outlives the driver. A worker blocked in a write to a stalled disk cannot die until the write
    returns: what its trial started is killed all the same (``kill_children`` kills every descendant), and the
    server waits up to a minute for such a worker, for anything it could still leave us."""
    for pid in workers:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _procs.kill_children(timeout=60.0)


def _child(request: dict[str, Any], fds: list[int], closing: list[int], server_pid: int, start_cwd: str) -> None:
    """In the forked worker: become what a fresh worker process would be, then run the worker. Never
    returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd in closing:
            os.close(fd)
        os.setsid()  # its own process group: the executor kills a worker with everything it started
        conn_fd, out, err = fds
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for fd, target in ((out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        cwd = request.get("cwd")
        if cwd:
            os.chdir(cwd)
            if sys.path and sys.path[0] == start_cwd:
                sys.path[0] = cwd  # as ``python -m`` started there would have it
        from tunesmith.executors import _worker

        _worker.main(conn_fd, parent=server_pid)
        code = 0
        atexit._run_exitfuncs()  # what the trials registered (a forked process skips the interpreter's end)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - printed where the worker's output goes
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def serve(fd: int) -> None:
    # SIGTERM, not SIGKILL, when the driver dies: the server kills everything its workers' trials started
    # first (it is idle in poll(), so the handler runs at once)
    gone: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: gone.append(1))
    _procs.die_with_parent(signal.SIGTERM)
    if os.getppid() == 1:
        return  # the driver died before we could ask to follow it
    _procs.become_subreaper()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # above 0-2, which get /dev/null if closed: a worker's received descriptors must not land there
    sock = socket.socket(fileno=_procs.standard_fds(fd))
    import importlib

    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # a worker imports what it needs itself
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the poll below through wake_r
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    me = os.getpid()
    start_cwd = os.getcwd()  # ``python -m`` put it first on sys.path; a worker gets the driver's of its time
    workers: set[int] = set()
    try:
        while True:
            if gone:
                return
            for ready, _ev in poller.poll():
                if ready == wake_r:
                    while True:
                        try:
                            if not os.read(wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                    continue
                msg, fds, flags, _addr = socket.recv_fds(sock, _MAX_REQUEST, 3)
                if not msg:
                    return  # the driver closed its end, or died
                if flags & socket.MSG_TRUNC or len(fds) != 3:
                    for f in fds:
                        os.close(f)
                    _send(sock, ["pid", -1])
                    continue
                pid = os.fork()
                if pid == 0:
                    _child(json.loads(msg), fds, [sock.fileno(), wake_r, wake_w], me, start_cwd)
                workers.add(pid)
                for f in fds:
                    os.close(f)
                _send(sock, ["pid", pid])
            _reap(sock, workers)
    except OSError:
        return  # the driver is gone
    finally:
        _end_all(workers)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
