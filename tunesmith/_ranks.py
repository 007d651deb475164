"""What any backend needs to run one trial as several ranks (``run(..., ranks=N)``): each rank's share of the
trial's resources, the rendezvous environment that ``torch.distributed.init_process_group()`` reads, how the
world size follows a resize, and the entry point a rank other than 0 runs in its own process.

Rank 0 is the trial as it always was: it runs where a single-rank trial runs (a local worker, a Ray actor),
with the trial's session; its ``report()`` and checkpoints are the trial's. Ranks 1..N-1 run the same function
in processes of their own through :func:`run_rank` (``python -m tunesmith._ranks`` from a local worker, or a
call inside a Ray actor): their session answers ``get_config``/``get_checkpoint``/``get_trial_dir`` as rank 0's
does (the same restore point), and ignores their ``report()`` (nothing is written, nothing is sent) and their
``should_stop()`` is always False: a stop reaches rank 0, and the backend ends the other ranks with it.

This module imports nothing heavy: a worker loads it only for a trial with ranks > 1.
"""

from __future__ import annotations

import math
import os
import pickle
import socket
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from tunesmith._errors import ConfigError

_EPS = 1e-9
TRACEBACK_MAX = 16_000  # characters of a failed rank's traceback sent back (its end: where it failed)
# after rank 0 returns, the other ranks this long to return too (a DDP loop's ranks end together, give or take
# their last writes); then they are killed
END_GRACE_S = 10.0


def ends_by(rank0_returned_at: float, grace_s: float) -> float:
    """When the driver kills a trial stopped on one of its results (``Executor.stop_on_result``: ``done``, a stop rule,
    the scheduler's decision) whose rank 0 returned at ``rank0_returned_at`` (its clock, when it heard so: ENDING):
    after the others' END_GRACE_S to return, and then the grace period ``grace_s`` to end, not after ``grace_s``
    alone (a DDP loop's last all-reduce or save on the other ranks)."""
    return rank0_returned_at + END_GRACE_S + grace_s


def check_ranks(ranks: Any, where: str = "ranks") -> int:
    """``ranks`` as an int >= 1, or a ConfigError naming it."""
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ConfigError(f"{where} must be an integer >= 1 (the processes a trial runs as, e.g. ranks=2 for "
                          f"two data-parallel ranks), got {ranks!r}")
    return ranks


def split_resources(resources: Mapping[str, float], ranks: int, where: str = "resources") -> dict[str, float]:
    """Each rank's share of a trial's TOTAL ``resources`` split evenly over ``ranks``.

    What is allowed:

    * CPUs and any other resource: any even split, fractions included (``{"cpu": 1}`` over 2 ranks is half a
      CPU each);
    * GPUs: a whole number per rank (``{"gpu": 4}`` over 2 ranks: 2 devices each), or ranks sharing devices
      evenly: all ranks on one device (``{"gpu": 1}`` or ``{"gpu": 0.5}`` over 2 ranks), or whole devices each
      shared by the same number of ranks (``{"gpu": 2}`` over 4 ranks: 2 ranks a device, 0.5 each).

    Raises:
        ConfigError: a GPU split that gives a rank parts of two devices (``{"gpu": 3}`` over 2 ranks: 1.5 each),
            naming ``where`` and ``ranks``.
    """
    gpu = float(resources.get("gpu", 0.0))
    share = {k: float(v) / ranks for k, v in resources.items()}
    if gpu > _EPS and not _gpu_split_ok(gpu, ranks):
        raise ConfigError(f"{where}['gpu'] = {gpu:g} over ranks={ranks}: {gpu / ranks:g} GPU per rank would "
                          f"give a rank parts of two devices; ask for a whole number of GPUs per rank, or for "
                          f"devices that the ranks share evenly (e.g. gpu=1 or gpu=0.5 over 2 ranks)")
    return share


def _gpu_split_ok(gpu: float, ranks: int) -> bool:
    per = gpu / ranks
    if abs(per - round(per)) < _EPS and round(per) >= 1:
        return True  # whole devices per rank
    if gpu <= 1 + _EPS:
        return True  # every rank on the one device
    whole = abs(gpu - round(gpu)) < _EPS
    return whole and ranks % round(gpu) == 0  # each device shared by ranks / gpu ranks


def rank_devices(gpu_ids: list[str], ranks: int) -> list[list[str]]:
    """The devices of each rank, given the trial's devices in order (``split_resources`` allowed the split):
    consecutive equal chunks when each rank has whole devices, else ``ranks / len(gpu_ids)`` ranks a device.
    No devices: every rank gets none."""
    if not gpu_ids:
        return [[] for _ in range(ranks)]
    n = len(gpu_ids)
    if n >= ranks and n % ranks == 0:
        per = n // ranks
        return [gpu_ids[r * per:(r + 1) * per] for r in range(ranks)]
    per_device = max(1, math.ceil(ranks / n))
    return [[gpu_ids[min(r // per_device, n - 1)]] for r in range(ranks)]


def world_size(resources: Mapping[str, float], unit: Mapping[str, float]) -> int:
    """How many ranks a trial with (total) ``resources`` runs as, given the per-rank share ``unit`` it was
    started with: as many as the resources hold whole shares of (at least 1), lowered until the GPUs split
    evenly. A resize (``ResourceChanging``, ``Deadline``) from ``{"cpu": 2}`` to ``{"cpu": 4}`` of a trial
    started as 2 ranks of 1 CPU runs it as 4 ranks; to ``{"cpu": 3}``, as 3; to ``{"cpu": 1.5}``, as 1 rank
    with all of it. Each rank then gets ``resources / world_size``."""
    fits = [float(resources.get(k, 0.0)) / v for k, v in unit.items() if v > _EPS]
    n = max(1, int(min(fits) + _EPS)) if fits else 1
    gpu = float(resources.get("gpu", 0.0))
    while n > 1 and gpu > _EPS and not _gpu_split_ok(gpu, n):
        n -= 1
    return n


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listened on a moment ago, for rank 0's rendezvous store. Another
    process could take it before rank 0 binds it; ``init_process_group`` then fails and the trial is retried
    (``max_failures``) on a new port."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def rank_env(rank: int, world_size: int, local_rank: int, local_world_size: int, master_addr: str,
             master_port: int, cuda_devices: list[str] | None = None) -> dict[str, str]:
    """The environment of one rank: the variables torchrun sets (``init_process_group()`` with the default
    ``env://`` reads them; Lightning and Accelerate read them to join instead of launching processes), the
    rank's devices when it has any, and the same under ``TUNESMITH_`` names."""
    env = {
        "MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port),
        "RANK": str(rank), "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(local_rank), "LOCAL_WORLD_SIZE": str(local_world_size),
        "GROUP_RANK": "0" if local_world_size == world_size else str(rank // max(1, local_world_size)),
        "TUNESMITH_RANK": str(rank), "TUNESMITH_WORLD_SIZE": str(world_size),
    }
    if cuda_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(cuda_devices)
    return env


def rank_threads(env: Mapping[str, str], resources: Mapping[str, float],
                 share: Mapping[str, float]) -> dict[str, str]:
    """The thread variables (``OMP_NUM_THREADS`` and its family) of one rank of a trial whose environment is
    ``env`` and whose TOTAL resources are ``resources``: where the backend sized them from the trial's CPUs
    (``env`` holds what ``resources.thread_env`` gives with nothing set by the user), the same sized from the
    rank's ``share`` (2 ranks of ``{"cpu": 2}``: 1 thread each, not 2); else none (the user set them: their
    count is every rank's; or the backend set none, as Ray, which sets each actor's OMP_NUM_THREADS itself)."""
    from tunesmith.executors.resources import thread_env

    whole = thread_env(resources, ())
    if any(env.get(var) != count for var, count in whole.items()):
        return {}
    return thread_env(share, ())


def rank_spec(spec: dict[str, Any], fn_bytes: bytes, env: dict[str, str], resources: dict[str, float],
              sys_path: list[str]) -> dict[str, Any]:
    """What :func:`run_rank` needs, from the trial's spec (``executors._base.trial_spec``): the function's
    cloudpickled bytes, the trial's environment with the thread variables of the rank's share
    (:func:`rank_threads`), the rank's own environment (``rank_env``) and share of resources, and where to import
    from."""
    keep = ("trial_id", "config", "trial_dir", "restore", "iteration", "takes_config", "chdir", "ranks")
    trial_env = spec.get("env") or {}
    return {**{k: spec.get(k) for k in keep},
            "env": {**trial_env, **rank_threads(trial_env, spec.get("resources") or {}, resources)},
            "fn": fn_bytes, "rank_env": env, "resources": resources, "sys_path": sys_path}


def run_rank(spec: dict[str, Any], fn: Any = None) -> None:
    """Run the trial's function as one rank other than 0, in this process: the trial's environment and the
    rank's (``spec["rank_env"]``) into ``os.environ``, a session whose ``report()`` is ignored and whose
    ``get_checkpoint()`` is rank 0's restore point, the trial's folder as the working folder (as rank 0's),
    then ``fn(config)``. ``fn``: the function, if the caller has it loaded; else unpickled from ``spec["fn"]``.
    Raises what the function raises; the caller reports it (``main`` exits non-zero with the traceback)."""
    from tunesmith import session
    from tunesmith.checkpoint import Checkpoint

    for p in reversed(spec.get("sys_path") or []):
        if p not in sys.path:
            sys.path.insert(0, p)
    os.environ.update(spec.get("env") or {})
    os.environ.update(spec.get("rank_env") or {})
    if fn is None:
        from tunesmith._importing import importing

        with importing("the training function's module (in a rank, to load the function)"):
            fn = pickle.loads(spec["fn"])
    restore = Checkpoint(spec["restore"], iteration=spec["iteration"]) if spec.get("restore") else None
    rank_env_ = spec.get("rank_env") or {}
    rank = int(rank_env_.get("RANK", "1"))
    world = int(rank_env_.get("WORLD_SIZE", str(spec.get("ranks") or 1)))
    session._session = session._OtherRank(
        spec["trial_id"], spec["config"], spec["trial_dir"], spec["resources"], session._NO_CHANNEL,
        spec["iteration"], None, restore, 0.0, rank=rank, world_size=world)
    home = None
    try:
        if spec.get("chdir", False):
            home = os.getcwd()
            os.makedirs(spec["trial_dir"], exist_ok=True)
            os.chdir(spec["trial_dir"])
        if spec.get("takes_config", True):
            fn(spec["config"])
        else:
            fn()
    except session.StopTrial:
        pass  # cannot come from this session; a user's own raise ends the rank like a return
    finally:
        session._session = None
        if home is not None:
            try:
                os.chdir(home)
            except OSError:
                pass


def main() -> None:
    """``python -m tunesmith._ranks ERROR_FD``: read the rank's pickled spec (``rank_spec``; our own worker
    wrote it) from stdin, run it, exit 0; on a failure print the traceback (it lands in the trial's
    ``output.log``), write its end to ``ERROR_FD`` for the worker, and exit 1. Dies with its parent, the worker
    that runs rank 0."""
    from tunesmith.executors._procs import die_with_parent, flush_quietly

    die_with_parent()
    err_fd = int(sys.argv[1]) if len(sys.argv) > 1 else -1
    if os.getppid() == 1:
        os._exit(1)  # the worker died before we could ask to follow it
    spec = pickle.loads(sys.stdin.buffer.read())
    code = 0
    try:
        run_rank(spec)
    except BaseException:  # noqa: BLE001 - reported to the worker, which fails the trial with it
        code = 1
        tb = traceback.format_exc()
        flush_quietly(sys.stderr)  # what the rank printed comes first
        _write(2, tb)  # the descriptor, not sys.stderr: the function may have closed or replaced that
        if err_fd >= 0:
            _write(err_fd, tb[-TRACEBACK_MAX:])
    finally:
        # whatever the function made of them (closed, replaced, None): a rank that returned exits 0
        flush_quietly(sys.stdout)
        flush_quietly(sys.stderr)
    # The rank's work is over and said: skip the interpreter's teardown, where a collective library's threads
    # still running (gloo's, when the function did not call destroy_process_group()) abort the process
    # ("terminate called without an active exception", SIGABRT) and would fail a trial that finished.
    os._exit(code)


def _write(fd: int, text: str) -> None:
    data = memoryview(text.encode("utf-8", "backslashreplace"))
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # nowhere to write


if __name__ == "__main__":
    main()
