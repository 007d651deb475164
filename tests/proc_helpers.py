"""Helpers for tests that watch processes and their ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def until(condition, what: str, timeout: float = 60.0) -> None:
    """Wait for ``condition()`` to hold (checked every 10 ms); fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_a_terminal(args: list[str], env: dict[str, str], columns: int = 400) -> tuple[int, str]:
    """Run tunesmith's command line with its output on a pseudo-terminal (rich draws for a terminal then); its
    exit code and everything it wrote."""
    import pty

    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", *args], stdin=child, stdout=child, stderr=child,
                            env={**env, "COLUMNS": str(columns), "TERM": "xterm-256color"}, close_fds=True)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")
