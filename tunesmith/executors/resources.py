"""Resource accounting for one machine: CPU slots and GPUs, fractional GPUs packed onto devices."""

from __future__ import annotations

import math
import numbers
import os
import shutil
import subprocess
from collections.abc import Container, Mapping, Sequence
from typing import Any

from tunesmith._errors import ConfigError

_EPS = 1e-9
MIN_AMOUNT = 1e-4  # the least of a resource a trial may ask for, other than none (Ray Tune's precision)
KNOWN = ("cpu", "gpu")


def detect_cpus() -> float:
    """The CPUs this process may use: those it may run on, or fewer where its cgroup has a CPU quota
    (``cpu_quota``: a container's ``--cpus=2`` on a larger host), a fraction (1.5) kept."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    quota = cpu_quota()
    return cpus if quota is None else max(MIN_AMOUNT, min(cpus, quota))


def cpu_quota(root: str = "/sys/fs/cgroup", own: str | None = None) -> float | None:
    """The CPU time this process's cgroup may use, in CPUs (``docker --cpus=2``, a Kubernetes CPU limit: 2.0), or
    None where it has no limit or none is found. cgroup v2: ``cpu.max`` of ``own``, the process's cgroup (the ``0::``
    line of ``/proc/self/cgroup``) under ``root``; cgroup v1: ``cpu/cpu.cfs_quota_us`` over ``cpu.cfs_period_us``."""
    if own is None:
        try:
            with open("/proc/self/cgroup") as f:
                own = next((line[3:].strip() for line in f if line.startswith("0::")), "/")
        except OSError:
            own = "/"
    try:
        with open(os.path.join(root, own.lstrip("/"), "cpu.max")) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f, \
                    open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as g:
                quota, period = f.read().strip(), g.read().strip()
        except OSError:
            return None
    try:
        cpus = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):  # "max": no limit
        return None
    return cpus if cpus > 0 else None  # v1's -1: no limit


def detect_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else what ``nvidia-smi`` lists."""
    visible = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        # CUDA stops at the first invalid entry, "-1" included
        out = []
        for v in ids:
            if v.startswith("-"):
                break
            out.append(v)
        return out
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        proc = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def amounts(resources: Any, where: str, example: str) -> dict[str, float]:
    """``resources`` (a trial's request, a backend's total) checked: a dict of resource names (strings) to
    non-negative numbers, as floats; ``where`` names it in the errors, ``example`` shows the expected form."""
    if not isinstance(resources, dict):
        raise ConfigError(f"{where} must be a dict like {example}, got {type(resources).__name__}")
    out = {}
    for key, value in resources.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: resource names must be strings, got {key!r}")
        # a numpy number too (resources(config) computed with numpy); not a bool (numpy's is no numbers.Real)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}[{key!r}] must be a non-negative number, got {value!r}")
        out[key] = float(value)
    return out


def total_amounts(total: Any, who: str) -> dict[str, float] | None:
    """A backend's ``total_resources=`` (``who``: the backend's name, for the errors) checked: names and amounts
    as a trial's request has them (non-negative numbers), a whole number of GPUs; ``None`` stays ``None``."""
    if total is None:
        return None
    out = amounts(total, f"{who}: total_resources", "{'cpu': 4, 'gpu': 2}")
    for key in out:
        if key not in KNOWN and (close := close_name(key, KNOWN)):  # "cpus": 1 would leave every CPU in use
            raise ConfigError(f"{who}: total_resources[{key!r}]: did you mean {close!r}? A resource of your own may "
                              f"not be named like {close!r}: a typo of it would be taken for one")
    if "gpu" in out and out["gpu"] != int(out["gpu"]):
        raise ConfigError(f"{who}: total_resources['gpu'] must be a whole number of GPUs, got {total['gpu']!r} "
                          f"(a trial may ask for a fraction of one)")
    return out


def close_name(key: str, names: Sequence[str]) -> str | None:
    """The one of ``names`` that ``key`` looks like a typo of (``"gpus"``, ``"CPU"`` for ``"gpu"``, ``"cpu"``; not
    ``"tpu"``), or None."""
    import difflib  # for names other than cpu and gpu only

    close = difflib.get_close_matches(key.lower(), names, n=1, cutoff=0.8)
    return close[0] if close else None


def normalize(resources: Any, where: str = "resources") -> dict[str, float]:
    """Check a per-trial resource request; default ``{"cpu": 1, "gpu": 0}``.

    A request must ask for some of at least one resource (``{"cpu": 0}`` alone would let every trial start at
    once); ``{"cpu": 0, "gpu": 0.25}`` is fine: the GPU share limits how many run.
    """
    if resources is None:
        return {"cpu": 1.0, "gpu": 0.0}
    out = {"cpu": 1.0, "gpu": 0.0, **amounts(resources, where, "{'cpu': 1, 'gpu': 0.5}")}
    for key, value in out.items():  # 1e-12 of a CPU passes "more than 0" and holds back nothing
        if 0 < value < MIN_AMOUNT:
            raise ConfigError(f"{where}[{key!r}] = {value:g} is more than 0 but under {MIN_AMOUNT:g}, too little to "
                              f"limit how many trials run at once: ask for 0 or at least {MIN_AMOUNT:g}")
    if not any(value > 0 for value in out.values()):
        raise ConfigError(f"{where}['cpu'] must be more than 0 (a fraction such as 0.5 is fine), or the trial must "
                          f"ask for a GPU or another resource: a trial that asks for nothing is never held back, "
                          f"so every trial would start at once; got {resources!r}")
    gpu = out["gpu"]
    if gpu > 1 and abs(gpu - round(gpu)) > _EPS:
        raise ConfigError(f"{where}['gpu'] must be a fraction of one GPU (<= 1) or a whole number, got {gpu}")
    return out


class ResourcePool:
    """What is free on this machine. GPUs: a fraction < 1 goes onto the fullest device it still fits on
    (best fit, so small trials pack together and whole devices stay free); whole numbers take free
    devices."""

    def __init__(self, total: dict[str, float], gpu_ids: list[str], given: tuple[str, Any] = ("", ())) -> None:
        """``given``: (the argument the user set totals with, e.g. ``"LocalBackend(total_resources=)"``, the keys it
        set): an error names it for those, "this machine" for the others."""
        self._given_by, self._given = given[0], frozenset(given[1])
        self.total = dict(total)
        self.free = dict(total)
        self.gpu_ids = list(gpu_ids)
        self.gpu_free = {g: 1.0 for g in gpu_ids}
        self.assigned: dict[int, tuple[dict[str, float], dict[str, float]]] = {}

    def check(self, resources: dict[str, float], where: str = "resources") -> None:
        for key, value in resources.items():
            if key not in self.total and value > 0:
                self._unknown(key, value, where)
            have = self.total.get(key, 0.0)
            if value > have + _EPS:
                source = f"{self._given_by} gives" if key in self._given else "this machine has"
                raise ConfigError(f"{where}[{key!r}] = {value:g} is more than {source} ({have:g}); "
                                  f"a trial asking for it could never start")

    def _unknown(self, key: str, value: float, where: str) -> None:
        """A name the totals lack: a typo of a known one (``"gpus"``, ``"CPU"``; not ``"tpu"``, a resource of its own)
        or a resource of the user's own never declared; "more than this machine has (0)" said neither."""
        close = close_name(key, list(self.total))
        hint = f" (did you mean {close!r}?)" if close else ""
        declare = self._given_by or "total_resources="
        raise ConfigError(f"{where}[{key!r}] = {value:g}: this machine has no resource named {key!r}{hint}; it has "
                          f"{', '.join(map(repr, self.total))}. A resource of your own is declared with its amount in "
                          f"{declare}, e.g. {{{key!r}: 4}}")

    def acquire(self, trial_id: int, resources: dict[str, float]) -> dict[str, float] | None:
        """Reserve ``resources``; return the GPU share per device id, or None if they are not free."""
        for key, value in resources.items():
            if key != "gpu" and value > self.free.get(key, 0.0) + _EPS:
                return None
        gpus = self._place_gpus(resources.get("gpu", 0.0))
        if gpus is None:
            return None
        for key, value in resources.items():
            if key != "gpu":
                self.free[key] = self.free.get(key, 0.0) - value
        for g, share in gpus.items():
            self.gpu_free[g] -= share
        self.assigned[trial_id] = (resources, gpus)
        return gpus

    def release(self, trial_id: int) -> None:
        resources, gpus = self.assigned.pop(trial_id, ({}, {}))
        for key, value in resources.items():
            if key != "gpu":
                self.free[key] = self.free.get(key, 0.0) + value
        for g, share in gpus.items():
            self.gpu_free[g] = min(1.0, self.gpu_free[g] + share)

    def _place_gpus(self, want: float) -> dict[str, float] | None:
        if want <= _EPS:
            return {}
        if want < 1 - _EPS:
            fits = [g for g in self.gpu_ids if self.gpu_free[g] + _EPS >= want]
            if not fits:
                return None
            best = min(fits, key=lambda g: (self.gpu_free[g], self.gpu_ids.index(g)))
            return {best: want}
        n = int(round(want))
        whole = [g for g in self.gpu_ids if self.gpu_free[g] >= 1 - _EPS]
        if len(whole) < n:
            return None
        return {g: 1.0 for g in whole[:n]}


def cuda_visible(gpus: dict[str, float]) -> str:
    return ",".join(gpus)


# The variables that size the thread pools of OpenMP, MKL, OpenBLAS, numexpr and Apple's Accelerate (read when
# each library loads; torch reads OMP_NUM_THREADS at import).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def thread_env(resources: Mapping[str, float], given: Container[str],
               environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The thread variables a trial with ``resources`` gets, for each variable not in ``given`` (what the user
    set: the driver's environment, the trial's own; their values read from ``environ``, default ``os.environ``):

    * the user set none: the trial's CPUs rounded up (at least 1). Without them a 1-CPU trial running numpy or
      torch starts a thread per core, and trials side by side oversubscribe the machine (Ray Tune sets
      OMP_NUM_THREADS the same way);
    * the user set some: the others follow the user's count (``OMP_NUM_THREADS``'s, else the first set in
      ``THREAD_VARS``' order), so that every library uses it. A CPU count beside it would override it: torch
      at import takes MKL_NUM_THREADS's count over OMP_NUM_THREADS's. None when that value is not a whole
      number >= 1 (OpenMP's nested ``"4,2"``, a typo) or not in ``environ``: MKL, OpenBLAS, numexpr and torch
      then fall back to OMP_NUM_THREADS by themselves where it is set."""
    user = [var for var in THREAD_VARS if var in given]
    if not user:
        count = str(max(1, math.ceil(resources.get("cpu", 1.0) - _EPS)))
        return dict.fromkeys(THREAD_VARS, count)
    values = os.environ if environ is None else environ
    value = values.get(user[0], "").strip()  # OMP_NUM_THREADS comes first in THREAD_VARS
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        return {}
    return {var: str(int(value)) for var in THREAD_VARS if var not in given}
