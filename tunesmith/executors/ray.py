"""The Ray executor: every trial runs in a Ray actor on a Ray cluster.

Ray does what it is good at: cluster membership, scheduling of resources (CPUs, GPUs, fractional GPUs,
custom resources, placement groups), the object store and the autoscaler. Tunesmith keeps its own
controller, store, schedulers and searchers; this module only runs trials and streams their events back,
behind the same :class:`~tunesmith.executors._base.Executor` interface as the local executor (and it passes
the same conformance suite).

How a trial runs:

* one actor per running trial, created with the trial's resources (``{"cpu": 2, "gpu": 0.5, "tpu_v4": 1}``
  becomes ``num_cpus=2, num_gpus=0.5, resources={"tpu_v4": 1}``); with ``bundles=`` the actor is the first
  bundle of a placement group whose other bundles are for the Ray tasks and actors the trial starts itself
  (they are placed in the group automatically). An actor whose trial ended is reused for the next trial
  with the same resources (starting an actor costs a worker process; a trial on a reused one costs two
  round trips).
* inside the actor the trial runs the same code as in a local worker process (``tunesmith.executors._worker``,
  ``tunesmith.session``); only the channel differs: results are buffered in the actor and fetched by the
  driver with a long poll (``events``), one message per batch, which doubles as the heartbeat.
* checkpoints without shared storage: a trial on another node than the driver writes its checkpoints in
  a node-local staging folder and sends each one to the driver in chunks through the same long poll; the
  driver writes them into the experiment folder (temporary name, checksums verified, renamed) before the
  result that names them reaches the controller. A restart on another node gets its checkpoint through the
  object store. What such a trial prints goes the same way, as it is written (its staged ``output.log``,
  appended to the trial's ``output.log`` here). With ``shared_storage=True`` (NFS and the like) trials write
  into the experiment folder directly. With ``storage="s3://..."`` (any fsspec URL) every trial uploads its
  checkpoints there (the manifest last) before the result that names them is sent, and a restart downloads
  its checkpoint from there (every checksum checked); the driver only records, verifies (sizes) and deletes
  (``keep=``) URLs.
* a trial run as several ranks (``run(ranks=N)``) gets a placement group of one bundle per rank (each its
  share), then the ``bundles=``; its actor is rank 0 on bundle 0 and starts the other ranks as actors on
  theirs (``_ray_ranks``); that actor is never reused.
* a trial whose actor dies (its node was lost, it was OOM-killed) ends with an error event; the controller
  retries it per ``max_failures`` from its latest checkpoint, wherever Ray places the new actor.
* with ``autoscaling=True`` up to ``max_pending_trials`` actors are created beyond the free resources:
  they wait in Ray's queue, and their resource demand is what makes an autoscaling cluster grow.

This module is the driver's side (:class:`RayBackend`); what runs in the actor is ``_ray_actor``, and the
checkpoint transfer between nodes (both halves) is ``_ray_transfer``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._optional import require
from tunesmith.checkpoint import CheckpointError, is_url
from tunesmith.executors._base import Done, Event, Executor, Launch, Results, stop_changes, trial_spec
from tunesmith.executors._ray_actor import HEARTBEAT_S, _remove_staging, _TrialActor
from tunesmith.executors._ray_transfer import CHUNK_BYTES, Incoming, IncomingFiles, put_folder, staging_dir
from tunesmith.executors._wire import CHUNK, DONE, ENDING, FILE, OUTPUT, RESULTS

log = logging.getLogger("tunesmith")

_EPS = 1e-9
# at the shutdown of a Ray this backend started: how long the cleanups after killed ranks (``_clean_ranks``) may
# still take (each waits up to ``_ray_ranks.KILLED_WAIT_S`` for a rank's process to be gone)
CLEANUP_WAIT_S = 15.0


class _Slot:
    """One actor as the driver sees it."""

    __slots__ = ("actor", "shape", "pg", "demand", "trial_id", "trial_dir", "node", "pid", "ref", "kind", "started",
                 "last_seen", "stop_deadline", "restore_refs", "transfers", "files", "beyond", "limit_at",
                 "over_limit", "ranks", "stop_on_result", "rank0_returned")

    def __init__(self, actor: Any, shape: tuple[Any, ...], pg: Any, demand: dict[str, float],
                 ranks: int | None = None) -> None:
        self.actor = actor
        self.ranks = ranks  # a trial run as this many ranks: never reused (rank 0's process keeps their state)
        self.shape = shape
        self.pg = pg
        self.demand = demand  # what it holds on the cluster, Ray's names
        self.trial_id: int | None = None
        self.trial_dir = ""
        self.node: str | None = None
        self.pid: int | None = None  # the actor's process, on its node
        self.ref: Any = None
        self.kind = ""
        self.started = False
        self.last_seen = 0.0
        self.stop_deadline: float | None = None
        self.stop_on_result = False  # that stop was decided on one of the trial's results (stop_on_result)
        self.rank0_returned: float | None = None  # when it said its trial's rank 0 returned (ENDING)
        self.restore_refs: Any = None
        self.transfers = Incoming()  # checkpoints its trial is sending from another node
        self.files = IncomingFiles()  # the files it wrote there, sent when it ends
        self.beyond = False  # created beyond the free resources: it waits in Ray's queue (autoscaling)
        self.limit_at: float | None = None  # when its trial_time_limit_s runs out (counted once it started)
        self.over_limit: str | None = None  # why it was stopped for its time limit: it ends in ERROR


def ray_resources(resources: dict[str, float]) -> dict[str, float]:
    """Tunesmith's resource names to Ray's: ``cpu`` -> ``CPU``, ``gpu`` -> ``GPU``, the rest as they are
    (custom resources; ``memory`` in bytes)."""
    out: dict[str, float] = {}
    for key, value in resources.items():
        name = {"cpu": "CPU", "gpu": "GPU"}.get(key, key)
        if value > 0:
            out[name] = float(value)
    return out


@contextlib.contextmanager
def _pickled_by_value(fn: Any) -> Iterator[None]:
    """Pickle the function's own module by value while shipping it, when that module is the user's code
    (not installed, not the standard library): a remote node, and Ray Client's server, cannot import a
    module that lives only beside the driver (a test file, ``from mytrain import train``). Installed
    packages stay by reference; ``__main__`` is by value already."""
    import sysconfig

    import ray.cloudpickle as rcp

    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    installed = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    real = os.path.realpath(path) if path else ""
    own = (module is not None and path is not None and module.__name__ != "__main__"
           and module.__name__.split(".")[0] != "tunesmith"
           and not any(real.startswith(d + os.sep) for d in installed)
           and module.__name__ not in rcp.list_registry_pickle_by_value())
    if own:
        rcp.register_pickle_by_value(module)
    try:
        yield
    finally:
        if own:
            rcp.unregister_pickle_by_value(module)


def _close_failed_client_channel(exc: BaseException) -> None:
    """Close the gRPC channel of a Ray Client connection that failed. Ray Client raises on a connection
    timeout without closing its channel, whose connectivity-watching thread then goes on calling into gRPC;
    a later fork in this process (``ray.init`` starting a local Ray runs each of its processes through a
    ``preexec_fn``) is then made while gRPC is busy and may hang in the child before it executes. The channel is
    the failed client worker's own, found in the frames of the error's traceback, never by a search of the
    process (a channel of the user's is left alone)."""
    tb = exc.__traceback__
    while tb is not None:
        worker: Any = tb.tb_frame.f_locals.get("self")
        channel = worker.__dict__.get("channel") if type(worker).__module__ == "ray.util.client.worker" else None
        if channel is not None:
            with contextlib.suppress(Exception):
                channel.unsubscribe(worker._on_channel_state_change)
            with contextlib.suppress(Exception):
                channel.close()
            return
        tb = tb.tb_next


def _process_local(fs: Any) -> bool:
    """Whether an fsspec filesystem (or one it wraps: ``simplecache::memory://...``) keeps its files in this
    process's memory, where no other process (a trial's actor, the driver) can see them."""
    from fsspec.implementations.memory import MemoryFileSystem

    seen = 0
    while fs is not None and seen < 8:
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        if isinstance(fs, MemoryFileSystem) or "memory" in protocols:
            return True
        fs, seen = getattr(fs, "fs", None), seen + 1
    return False


def group_fits(bundles: list[dict[str, float]], nodes: list[dict[str, float]], strategy: str,
               budget: int = 100_000) -> bool:
    """Whether a placement group of ``bundles`` (Ray's resource names) can be placed on a cluster whose nodes
    have ``nodes`` in all, with ``strategy``: ``STRICT_PACK`` puts every bundle on one node, ``STRICT_SPREAD``
    each on a node of its own, ``PACK`` and ``SPREAD`` (best effort) wherever they fit. An exact search (bin
    packing), cut short after ``budget`` steps: a group it could not decide on counts as fitting (a group that
    may fit is never refused)."""
    keys = {k for b in bundles for k in b}

    def fits(bundle: dict[str, float], free: dict[str, float]) -> bool:
        return all(free.get(k, 0.0) + _EPS >= v for k, v in bundle.items())

    if strategy == "STRICT_PACK":
        total: dict[str, float] = {}
        for b in bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0.0) + v
        return any(fits(total, node) for node in nodes)
    free = [{k: float(node.get(k, 0.0)) for k in keys} for node in nodes]  # only what the bundles use
    size = {k: max(sum(n[k] for n in free), _EPS) for k in keys}
    order = sorted(bundles, key=lambda b: sum(v / size[k] for k, v in b.items()), reverse=True)  # largest first
    used = [False] * len(free)
    steps = 0

    class _TooLong(Exception):
        pass

    def place(i: int) -> bool:
        nonlocal steps
        if i == len(order):
            return True
        steps += 1
        if steps > budget:
            raise _TooLong
        tried: set[tuple[Any, ...]] = set()
        for j, node in enumerate(free):
            if strategy == "STRICT_SPREAD" and used[j]:
                continue
            same = tuple(sorted(node.items()))
            if same in tried or not fits(order[i], node):
                continue  # a node like one tried already leads to the same placements
            tried.add(same)
            was = used[j]
            for k, v in order[i].items():
                node[k] -= v
            used[j] = True
            if place(i + 1):
                return True
            for k, v in order[i].items():
                node[k] += v
            used[j] = was
        return False

    try:
        return place(0)
    except _TooLong:
        return True


def _joined_address(ray: Any) -> str | None:
    """The address of the Ray this process joined: ``ray://host:port`` through Ray Client, else its GCS's
    ``host:port``; None where Ray does not tell."""
    try:
        from ray.util.client import ray as client_ray

        if client_ray.is_connected():
            conn = getattr(client_ray.get_context().client_worker, "_conn_str", None)
            if not isinstance(conn, str) or not conn:
                return None
            return conn if "://" in conn else f"ray://{conn}"
    except Exception:  # noqa: BLE001 - an older Ray without the client module
        pass
    try:
        gcs = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - a Ray that does not tell
        return None
    return gcs if isinstance(gcs, str) and gcs else None


def _same_address(a: str, b: str, ray: Any) -> bool:
    """Whether two Ray addresses (``host:port``, ``ray://host:port``) name the same endpoint: the same scheme and
    port, and hosts that resolve to a shared IP (a loopback one counts as this machine's node IP)."""
    import ipaddress
    import socket

    def split(addr: str) -> tuple[str, str, str]:
        scheme, sep, rest = addr.partition("://")
        if not sep:
            scheme, rest = "", addr
        host, _, port = rest.rstrip("/").rpartition(":")
        return scheme, host.strip("[]").lower(), port

    (sa, ha, pa), (sb, hb, pb) = split(a), split(b)
    if (sa, pa) != (sb, pb):
        return False
    if ha == hb:
        return True

    def ips(host: str) -> set[str]:
        try:
            found = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
        except OSError:
            return {host}
        if any(ipaddress.ip_address(ip.split("%")[0]).is_loopback for ip in found):
            with contextlib.suppress(Exception):
                found.add(ray.util.get_node_ip_address())
        return found

    return bool(ips(ha) & ips(hb))


class RayBackend(Executor):
    """Run every trial as a Ray actor on a Ray cluster: ``tunesmith.run(..., backend=RayBackend(...))``, or
    ``backend="ray"`` for the defaults.

    Args:
        address: ``None`` starts a local Ray of the run's own (or uses the one this process already started
            with ``ray.init``), even where ``RAY_ADDRESS`` is set or a ``ray start`` cluster runs on this machine;
            ``"auto"`` joins the cluster this machine belongs to (``RAY_ADDRESS``, else the latest ``ray start``
            here), ``"host:6379"`` that cluster's head (refused at once when nothing listens there),
            ``"ray://host:10001"`` connects through Ray Client. With a Ray this process already joined
            (``ray.init``), an address naming another one is refused (``"auto"`` uses the joined one).
        num_cpus, num_gpus, resources, object_store_memory: for a local Ray started here (``address=None``),
            what it offers (whole numbers of CPUs and GPUs, non-negative custom amounts, bytes; checked here);
            ignored when connecting to a cluster; with a Ray this process already joined (``ray.init``), one it
            does not offer is refused (``init_kwargs`` are not applied to it).
        init_kwargs: more arguments for ``ray.init`` (e.g. ``runtime_env={"working_dir": "."}`` to ship
            your code to a remote cluster).
        bundles: extra placement-group bundles per trial, for trials that start their own Ray tasks or
            actors, e.g. ``[{"cpu": 2, "gpu": 1}] * 4``; the trial's actor takes the first bundle (its
            ``resources``) and what it starts lands in the group.
        placement_strategy: the group's strategy: ``"PACK"``, ``"SPREAD"``, ``"STRICT_PACK"``,
            ``"STRICT_SPREAD"``; it also places the ranks of a trial run with ``ranks=N`` (one bundle each:
            with PACK on one node where one has room, else over several).
        autoscaling: the cluster can grow: trials larger than any node now are accepted, and up to
            ``max_pending_trials`` trials wait in Ray's queue beyond the free resources, so that their
            demand reaches the autoscaler.
        max_pending_trials: see ``autoscaling`` (default 16 when autoscaling, else 0).
        reuse_actors: run the next trial with the same resources in an actor whose trial ended.
        shared_storage: every node sees the experiment folder at the same path (NFS...): trials write
            their checkpoints there directly instead of sending them to the driver.
        storage: a URL any fsspec filesystem understands (``"s3://bucket/prefix"``, ``"gs://..."``,
            ``"file:///mnt/shared/ckpts"``; S3 needs ``pip install s3fs``): every trial uploads its
            checkpoints there directly, as ``<storage>/<experiment>-<8 hex digits of the experiment folder's
            path>/trials/<trial>/checkpoints/checkpoint_<iteration>`` (two experiments of one name never share
            one), instead of sending them to the driver; a restarted trial downloads its checkpoint from there.
            A ``file://`` URL must name an absolute path (``file:///mnt/shared/ckpts``); ``memory://`` (a
            filesystem inside one process, which no actor shares with the driver) is refused. The experiment
            folder (the SQLite store, logs) stays on the driver. Credentials come from the usual places of that
            filesystem (environment, config files) on every node.
        grace_period_s: how long a stopped trial has to reach its next ``report()`` before its actor is
            killed; a trial run as several ranks stopped on one of its results, after its rank 0 returned: the
            other ranks' time to return (``_ranks.END_GRACE_S``) first.
        trial_timeout_s: a started trial whose actor answers nothing for this long is declared dead (its
            actor is killed; the trial fails and is retried per ``max_failures``).
        chunk_bytes: checkpoints sent between nodes go in pieces of this size (memory in flight per trial
            stays about this much).
        sync_trial_files: a trial on another node than the driver (without ``shared_storage``) works in a
            node-local folder; when it ends, the files it wrote there are sent to its folder in the experiment
            (``trials/<trial>/``, replacing those of an earlier run) and removed from the node, as Ray Tune's
            ``SyncConfig(sync_artifacts=True)`` does. ``False`` leaves them on the node. Its checkpoints and
            what it prints reach the experiment either way.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, num_gpus: float | None = None,
                 resources: dict[str, float] | None = None, object_store_memory: int | None = None,
                 init_kwargs: dict[str, Any] | None = None, bundles: list[dict[str, float]] | None = None,
                 placement_strategy: str = "PACK", autoscaling: bool = False, max_pending_trials: int | None = None,
                 reuse_actors: bool = True, shared_storage: bool = False, grace_period_s: float = 5.0,
                 trial_timeout_s: float | None = None, chunk_bytes: int = CHUNK_BYTES,
                 storage: str | None = None, sync_trial_files: bool = True) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = resources
        self.object_store_memory = object_store_memory
        self.init_kwargs = init_kwargs
        self.bundles = bundles
        self.placement_strategy = placement_strategy
        self.autoscaling = autoscaling
        self.max_pending_trials = max_pending_trials
        self.reuse_actors = reuse_actors
        self.shared_storage = shared_storage
        self.grace_period_s = grace_period_s
        self.trial_timeout_s = trial_timeout_s
        self.chunk_bytes = chunk_bytes
        self.storage = storage
        self.sync_trial_files = sync_trial_files
        self._storage_prefix: str | None = None  # with storage=: <storage>/<experiment key>/trials/
        self._bundles: list[dict[str, float]] = []  # ``bundles`` in Ray's names, once validated
        self._ray: Any = None
        self._owns_ray = False
        self._actor_cls: Any = None
        self._driver_node: str | None = None
        self._fn_ref: Any = None
        self._fn_key = ""
        self._takes_config = True
        self._sys_path: list[str] = []
        self._cwd = ""
        self._stop_bytes: bytes | None = None
        self._slots: list[_Slot] = []
        self._by_trial: dict[int, _Slot] = {}
        self._by_ref: dict[Any, _Slot] = {}
        self._orphans: set[Any] = set()  # refs whose results nobody needs; consumed so Ray does not warn
        self._cleanups: set[Any] = set()  # of those, cleanups after killed ranks (_clean_ranks): awaited at shutdown
        self._cleanup_fn: Any = None  # the Ray task that runs them (_ray_ranks.remove_killed_ranks), made once
        self._killed_stages: set[str] = set()  # staging folders here of trials whose actor was killed (shutdown)
        self._cluster: dict[str, float] = {}
        self._nodes: list[dict[str, float]] = []
        self._addresses: dict[str, str | None] = {}  # Ray node id -> its IP (placements)
        self._cluster_at = -1e9
        self._ranks: int | None = None  # run(ranks=N): each rank's share is what must fit on a node
        self._validate()  # a wrong argument is refused here, before Ray starts (and again at connect)

    # the arguments an experiment's spec records (``record``), for `tunesmith resume` to build the backend again
    RECORDED = ("address", "num_cpus", "num_gpus", "resources", "object_store_memory", "bundles", "placement_strategy",
                "autoscaling", "max_pending_trials", "reuse_actors", "shared_storage", "grace_period_s",
                "trial_timeout_s", "chunk_bytes", "storage", "sync_trial_files")

    def record(self) -> dict[str, Any]:
        """What an experiment's spec keeps of this backend: ``{"kind": "ray", ...}`` with the arguments of
        ``RECORDED`` (plain values, checked by the constructor), so that ``tunesmith resume`` builds the same
        backend. Never a secret: ``init_kwargs`` (a ``runtime_env`` may carry environment variables) and an address or
        storage URL with credentials in it (``user:password@``) are not kept, only named in ``"not_recorded"``
        (such an experiment is resumed from Python)."""
        from urllib.parse import urlsplit

        out: dict[str, Any] = {"kind": "ray"}
        left = []
        for name in self.RECORDED:
            v = getattr(self, name)
            if name in ("address", "storage") and isinstance(v, str) and "@" in urlsplit(v).netloc:
                left.append(name)
                continue
            if name == "resources" and v is not None:
                v = {k: float(x) for k, x in v.items()}
            elif name == "bundles" and v is not None:
                v = [{k: float(x) for k, x in b.items()} for b in v]
            elif name in ("num_cpus", "object_store_memory", "chunk_bytes", "max_pending_trials") and v is not None:
                v = int(v)
            elif name in ("num_gpus", "grace_period_s", "trial_timeout_s") and v is not None:
                v = float(v)
            out[name] = v
        if self.init_kwargs:
            left.append("init_kwargs")
        if left:
            out["not_recorded"] = left
        return out

    # -- connection -----------------------------------------------------------------------------------
    def _validate(self) -> None:
        a = self.address
        if a is not None and not (isinstance(a, str) and (a == "auto" or a.startswith("ray://") or ":" in a)):
            raise ConfigError(f"RayBackend(address=...) must be None (start a local Ray), 'auto' or "
                              f"'ray://host:port', got {a!r}")
        if self.placement_strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise ConfigError(f"RayBackend(placement_strategy=...) must be 'PACK', 'SPREAD', 'STRICT_PACK' or "
                              f"'STRICT_SPREAD', got {self.placement_strategy!r}")
        if self.bundles is not None:
            from tunesmith.executors.resources import normalize

            if not isinstance(self.bundles, list) or not self.bundles:
                raise ConfigError(f"RayBackend(bundles=...) must be a non-empty list of resource dicts, got "
                                  f"{self.bundles!r}")
            self._bundles = [ray_resources(normalize(b, where=f"bundles[{i}]")) for i, b in enumerate(self.bundles)]
        mp = self.max_pending_trials
        if mp is not None and (isinstance(mp, bool) or not isinstance(mp, int) or mp < 0):
            raise ConfigError(f"RayBackend(max_pending_trials=...) must be an integer >= 0, got {mp!r}")
        if not isinstance(self.sync_trial_files, bool):
            raise ConfigError(f"RayBackend(sync_trial_files=...) must be True or False, got "
                              f"{self.sync_trial_files!r}")
        cb = self.chunk_bytes
        if isinstance(cb, bool) or not isinstance(cb, int) or cb < 1:
            raise ConfigError(f"RayBackend(chunk_bytes=...) must be a positive integer, got {cb!r}")
        if self.storage is not None:
            if not is_url(self.storage):
                raise ConfigError(f"RayBackend(storage=...) must be a URL such as 's3://bucket/prefix' or "
                                  f"'file:///mnt/shared/ckpts', got {self.storage!r} (for a folder every node "
                                  f"mounts at the same path, pass shared_storage=True instead)")
            protocol, _, rest = self.storage.partition("://")
            if protocol in ("file", "local") and not rest.startswith("/"):
                # fsspec reads it relative to the working folder: each trial's own, another on every node
                raise ConfigError(f"RayBackend(storage={self.storage!r}): a {protocol}:// URL must name an absolute "
                                  f"path, e.g. '{protocol}://{os.path.abspath(rest)}' (three slashes): a relative "
                                  "one would be read from each trial's own folder")
            if self.shared_storage:
                raise ConfigError("RayBackend(storage=..., shared_storage=True): pass one of them (storage sends "
                                  "checkpoints to a URL, shared_storage writes them into the experiment folder)")
            from tunesmith.checkpoint import storage_fs

            fs, _path = storage_fs(self.storage, "RayBackend(storage=...)")  # fsspec and the protocol's package
            if _process_local(fs):
                raise ConfigError(f"RayBackend(storage={self.storage!r}): this filesystem lives inside one process "
                                  "(fsspec's memory://): each trial's actor would write into its own memory, and "
                                  "the driver, a retried trial and a later load() would find no checkpoint; pass a "
                                  "URL every process and node reaches (s3://, gs://, file:///mnt/shared/...)")
        for name in ("grace_period_s", "trial_timeout_s"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0):
                raise ConfigError(f"RayBackend({name}=...) must be a number of seconds >= 0, got {v!r}")
        self._validate_sizes()

    def _validate_sizes(self) -> None:
        """``num_cpus``, ``num_gpus``, ``resources``, ``object_store_memory`` (what a local Ray started here offers)
        checked as ``LocalBackend(total_resources=...)`` checks its own: Ray's own checks fail only once it is
        starting, with an AssertionError or ValueError that names no argument of ours."""
        import math
        import numbers

        from tunesmith.executors.resources import amounts

        for name in ("num_cpus", "num_gpus"):
            v: Any = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
                                  or v < 0 or v != math.floor(v)):
                raise ConfigError(f"RayBackend({name}=...) must be a whole number >= 0 (what the local Ray started "
                                  f"here offers), got {v!r}")
        if self.resources is not None:
            amounts(self.resources, "RayBackend(resources=...)", "{'accel': 4}")
            for key in self.resources:
                if key in ("cpu", "gpu", "CPU", "GPU", "memory", "object_store_memory"):
                    arg = {"cpu": "num_cpus", "gpu": "num_gpus"}.get(key.lower(), key)
                    raise ConfigError(f"RayBackend(resources=...) names {key!r}, which is not a custom resource: "
                                      f"pass RayBackend({arg}=...) instead")
        osm = self.object_store_memory
        if osm is not None and (isinstance(osm, bool) or not isinstance(osm, numbers.Integral) or osm <= 0):
            raise ConfigError(f"RayBackend(object_store_memory=...) must be a positive number of bytes (an integer), "
                              f"got {osm!r}")

    def _check_listening(self, timeout: float = 5.0) -> None:
        """A ``host:port`` address (a cluster's GCS) must have something listening: Ray itself retries a closed port
        for minutes ("Failed to connect to GCS") and answers SIGTERM slowly meanwhile. A TCP connection with a
        short timeout tells at once."""
        import socket

        a = self.address
        if not isinstance(a, str) or a == "auto" or "://" in a:
            return  # "auto" is resolved by Ray; Ray Client (ray://) fails on its own after its retries
        host, _, port_text = a.rpartition(":")
        host = host.strip("[]")  # [::1]:6379
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"RayBackend(address={a!r}): expected host:port (the head's GCS address, e.g. "
                              f"'10.0.0.5:6379'), 'auto' or 'ray://host:10001'") from None
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as e:
            raise ConfigError(f"RayBackend(address={a!r}): nothing answers at {host}:{port} ({e}); is the Ray head "
                              f"running there (`ray start --head` prints its address)? Pass address='auto' to "
                              f"join the cluster this machine belongs to, or None to start a local Ray") from None

    def _check_joined(self, ray: Any) -> None:
        """This process joined a Ray before (the user's ``ray.init``), which ``address=None`` uses as it is: sizes asked
        of this backend that it does not offer are refused, naming them (they would be ignored silently)."""
        have = ray.cluster_resources()
        wrong = []
        for name, key in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("object_store_memory", "object_store_memory")):
            v = getattr(self, name)
            offers = float(have.get(key, 0.0))
            if v is not None and abs(offers - v) > _EPS:
                wrong.append(f"{name}={v!r} (it offers {int(offers) if offers.is_integer() else offers})")
        if self.resources:
            missing = {k: v for k, v in self.resources.items() if abs(float(have.get(k, 0.0)) - v) > _EPS}
            if missing:
                offered = {k: float(have.get(k, 0.0)) for k in missing}
                wrong.append(f"resources={missing!r} (it offers {offered!r})")
        if wrong:
            raise ConfigError(f"RayBackend({', '.join(wrong)}): this process already joined a Ray (ray.init was "
                              "called before), which tunesmith uses as it is and cannot resize; pass these sizes to "
                              "your ray.init, or leave them out of RayBackend(...), or call ray.shutdown() first so "
                              "that tunesmith starts a local Ray of its own")

    def _check_joined_address(self, ray: Any) -> None:
        """This process joined a Ray before (the user's ``ray.init``), which is the one tunesmith uses: an ``address``
        naming another is refused, naming both (the trials would run on the joined one). ``"auto"`` takes the joined
        one; a host is the same when it resolves to the same addresses (``localhost`` is this machine's node)."""
        a = self.address
        if a is None or a == "auto":
            return
        joined = _joined_address(ray)
        if joined is None or _same_address(a, joined, ray):
            return
        raise ConfigError(f"RayBackend(address={a!r}): this process already joined the Ray at {joined!r} (ray.init "
                          "was called before), which is the one tunesmith would use; pass address="
                          f"{joined!r} or 'auto' to use it, or call ray.shutdown() first so that tunesmith connects to "
                          f"{a!r}")

    def connect(self) -> Any:
        """Connect to (or start) Ray; return the ``ray`` module. Called on first use; call it yourself
        before ``tunesmith.put`` so that shared data goes to this cluster's object store."""
        if self._ray is not None:
            return self._ray
        self._validate()
        ray = require("ray", "ray", "backend='ray'")
        if not ray.is_initialized():
            kwargs = dict(self.init_kwargs or {})
            if self.address is None:
                kwargs.setdefault("include_dashboard", False)
                for key in ("num_cpus", "num_gpus", "resources", "object_store_memory"):
                    if getattr(self, key) is not None:
                        kwargs.setdefault(key, getattr(self, key))
            if self.address is None:
                # a Ray of this run's own, as documented: ray.init() without an address would join the cluster
                # RAY_ADDRESS names or the latest `ray start` on this machine (someone else's, maybe), and then
                # refuse num_cpus=...; address="auto" is the way to join one
                kwargs.setdefault("address", "local")
            else:
                kwargs["address"] = self.address
                self._check_listening()
            try:
                ray.init(**kwargs)
            except BaseException as exc:
                # a failed connection (Ray Client above all) leaves Ray's globals half set, and the
                # process's next ray.init would fail on them: undo it before the error goes up
                _close_failed_client_channel(exc)
                with contextlib.suppress(Exception):
                    ray.shutdown()
                raise
            self._owns_ray = True
        elif self.address is None:
            self._check_joined(ray)
        else:
            self._check_joined_address(ray)
        self._ray = ray
        client = False
        try:
            from ray.util.client import ray as client_ray

            client = client_ray.is_connected()
        except Exception:  # noqa: BLE001 - an older Ray without the client module
            pass
        # Through Ray Client this process is on no node of the cluster: every trial sends its checkpoints.
        self._driver_node = None if client else ray.get_runtime_context().get_node_id()
        self._actor_cls = ray.remote(max_concurrency=4, max_restarts=0, max_task_retries=0)(_TrialActor)
        return ray

    def setup(self, fn: Any, experiment_dir: str) -> None:
        import hashlib
        import inspect

        import cloudpickle

        ray = self.connect()
        # ray.put(fn), not bytes: Ray then tracks object refs the function holds (tunesmith.put data)
        try:
            with _pickled_by_value(fn):
                self._fn_ref = ray.put(fn)
        except TypeError:
            # by value, the module's globals the function uses travel too, and one may not pickle (a lock,
            # an open file): by reference, as before, which works wherever the module can be imported
            self._fn_ref = ray.put(fn)
        self._fn_key = hashlib.sha1(cloudpickle.dumps(fn)).hexdigest()
        try:
            self._takes_config = len(inspect.signature(fn).parameters) > 0
        except (TypeError, ValueError):
            self._takes_config = True
        self._cwd = os.getcwd()
        # absolute: a trial runs in its own folder, where a relative entry would name another one
        self._sys_path = [os.path.abspath(p) if p else self._cwd for p in sys.path]
        self._stop_bytes = self.stop_rules.for_trials() if self.stop_rules is not None else None
        from tunesmith._ledger import storage_prefix

        self._storage_prefix = storage_prefix(self.storage, experiment_dir)
        from tunesmith import _signing

        self._signing_key = _signing.key()  # the trials sign their checkpoints with it (a node has no key file)

    # -- resources ------------------------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._cluster_at < 1.0:
            return
        ray = self.connect()
        self._cluster = dict(ray.cluster_resources())
        self._nodes = [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
        self._cluster_at = now

    def total_resources(self) -> dict[str, float]:
        self._refresh(force=True)
        out = {"cpu": float(self._cluster.get("CPU", 0.0)), "gpu": float(self._cluster.get("GPU", 0.0))}
        for key, value in self._cluster.items():
            if key not in ("CPU", "GPU", "object_store_memory") and not key.startswith("node:") \
                    and not key.startswith("accelerator_type:"):
                out[key] = float(value)
        return out

    def check_ranks(self, ranks: int | None) -> None:
        """Any number: a trial's ranks run on the bundles of its placement group, one bundle per rank
        (``_ray_ranks``); ``check_resources`` then checks one rank's share."""
        self._ranks = ranks

    def check_resources(self, resources: dict[str, float]) -> None:
        self._refresh(force=True)
        if self.autoscaling:
            return  # the cluster may grow nodes that fit
        ours = {"CPU": "cpu", "GPU": "gpu"}
        first = resources
        if self._ranks is not None:  # one bundle per rank: each rank's share must fit on a node
            from tunesmith import _ranks

            first = _ranks.split_resources(resources, self._ranks)
        for i, bundle in enumerate([ray_resources(first), *self._bundles]):
            if any(all(node.get(k, 0.0) + _EPS >= v for k, v in bundle.items()) for node in self._nodes):
                continue
            where = ("resources" if self._ranks is None else f"resources / ranks={self._ranks}") if i == 0 \
                else f"RayBackend(bundles=...)[{i - 1}]"
            for k, v in bundle.items():
                most = max((node.get(k, 0.0) for node in self._nodes), default=0.0)
                if v > most + _EPS:
                    raise ConfigError(f"{where}[{ours.get(k, k)!r}] = {v:g} is more than any node of the Ray "
                                      f"cluster has (at most {most:g}); a trial asking for it could never start "
                                      f"(pass RayBackend(autoscaling=True) if the cluster grows)")
            shown = first if i == 0 else (self.bundles or [])[i - 1]  # bundles were given when i > 0
            raise ConfigError(f"{where} = {shown} fits on no single node "
                              f"of the Ray cluster; a trial asking for it could never start (pass "
                              f"RayBackend(autoscaling=True) if the cluster grows)")
        self._check_group(first)

    def _check_group(self, first: dict[str, float]) -> None:
        """Each bundle fits on a node (checked before); the trial's placement group as a whole must be placeable
        too (``_create``: a rank's share per rank, or ``resources``, then the ``bundles=``), with
        ``placement_strategy``: else Ray keeps the group pending, and the trial with it, forever."""
        ranks = self._ranks if self._ranks is not None and self._ranks > 1 else None
        group = [ray_resources(first)] * (ranks or 1) + self._bundles
        if len(group) < 2 or group_fits(group, self._nodes, self.placement_strategy):
            return
        ours = {"CPU": "cpu", "GPU": "gpu"}
        strategy = self.placement_strategy
        what = (f"resources / ranks={ranks} for each of {ranks} ranks" if ranks else "resources") + (
            f" + RayBackend(bundles={self.bundles})" if self.bundles else "")
        total: dict[str, float] = {}
        for b in group:
            for k, v in b.items():
                total[k] = total.get(k, 0.0) + v
        why = ""
        for k, v in total.items():
            if strategy == "STRICT_PACK":
                most = max((node.get(k, 0.0) for node in self._nodes), default=0.0)
                if v > most + _EPS:
                    why = f"{ours.get(k, k)!r} = {v:g} in all on one node, and the largest node has {most:g}"
                    break
            else:
                have = sum(node.get(k, 0.0) for node in self._nodes)
                if v > have + _EPS:
                    why = f"{ours.get(k, k)!r} = {v:g} in all, and the whole Ray cluster has {have:g}"
                    break
        if not why and strategy == "STRICT_SPREAD" and len(group) > len(self._nodes):
            why = f"{len(group)} bundles each on a node of its own, and the Ray cluster has {len(self._nodes)} nodes"
        if not why:
            why = f"its {len(group)} bundles {group}, and they fit on no combination of the nodes"
        raise ConfigError(f"a trial's placement group ({what}, placement_strategy={strategy!r}) needs {why}: it "
                          f"could never be placed and the trial never start (ask for less, or pass "
                          f"RayBackend(autoscaling=True) if the cluster grows)")

    def _demand(self, resources: dict[str, float]) -> dict[str, float]:
        total = dict(ray_resources(resources))
        for bundle in self._bundles:
            for k, v in bundle.items():
                total[k] = total.get(k, 0.0) + v
        return total

    def _fits(self, demand: dict[str, float]) -> bool:
        self._refresh()
        held: dict[str, float] = {}
        for slot in self._slots:
            for k, v in slot.demand.items():
                held[k] = held.get(k, 0.0) + v
        return all(held.get(k, 0.0) + v <= self._cluster.get(k, 0.0) + _EPS for k, v in demand.items())

    # -- trials ---------------------------------------------------------------------------------------
    def try_start(self, launch: Launch) -> bool:
        ray = self.connect()
        shape = tuple(sorted(launch.resources.items()))
        slot = None
        if launch.ranks is None:  # a trial run as ranks gets fresh actors and its own placement group
            slot = next((s for s in self._slots if s.trial_id is None and s.shape == shape and s.ranks is None), None)
        if slot is None:
            demand = self._demand(launch.resources)
            while not self._fits(demand):
                idle = next((s for s in self._slots if s.trial_id is None), None)
                if idle is None:
                    break
                self._kill(idle)  # an idle actor of another shape gives its resources back
            beyond = not self._fits(demand)
            if beyond:
                limit = self.max_pending_trials if self.max_pending_trials is not None else (
                    16 if self.autoscaling else 0)
                pending = sum(1 for s in self._slots if s.beyond and not s.started)
                if not self.autoscaling or pending >= limit:
                    return False
            slot = self._create(shape, launch.resources, demand, launch.ranks)
            slot.beyond = beyond
        restore_files = None
        restore_error = None
        if launch.restore is not None and not self.shared_storage and not is_url(launch.restore) \
                and self._multi_node():
            try:
                restore_files = slot.restore_refs = put_folder(ray, launch.restore, self.chunk_bytes)
            except CheckpointError as e:
                # a damaged checkpoint (a link or a FIFO among its files): the trial fails in its actor, naming
                # it, as loading the same folder fails in a local trial; a retry skips the damaged checkpoint
                restore_error = str(e)
        spec = trial_spec(launch, env={**launch.env, "TUNESMITH_ORIG_WORKING_DIR": self._cwd}, fn_key=self._fn_key,
                          takes_config=self._takes_config, sys_path=self._sys_path, stop=self._stop_bytes,
                          chdir=self.chdir_to_trial_dir, driver_node=self._driver_node,
                          shared_storage=self.shared_storage, chunk_bytes=self.chunk_bytes,
                          storage=self._storage_url(launch.trial_dir), signing_key=self._signing_key,
                          sync_trial_files=self.sync_trial_files, restore_error=restore_error)
        slot.trial_id = launch.trial_id
        slot.trial_dir = launch.trial_dir
        slot.started = slot.node is not None  # a reused actor is up; a new one may wait for resources
        slot.stop_deadline = None
        slot.limit_at = slot.over_limit = None
        slot.last_seen = time.monotonic()
        self._by_trial[launch.trial_id] = slot
        self._submit(slot, "run", slot.actor.run.remote(spec, [self._fn_ref], restore_files))
        return True

    def _storage_url(self, trial_dir: str) -> str | None:
        """Where a trial's checkpoints go with ``storage=``: ``<storage>/<experiment>-<hash of the experiment
        folder's path>/trials/<trial>/checkpoints``, under the prefix the controller deletes in
        (``_ledger.storage_prefix``): an experiment of the same name elsewhere has its own."""
        if self._storage_prefix is None:
            return None
        return f"{self._storage_prefix}{os.path.basename(trial_dir)}/checkpoints"

    def _multi_node(self) -> bool:
        self._refresh()
        return self._driver_node is None or len(self._nodes) > 1 or self.autoscaling

    def _create(self, shape: tuple[Any, ...], resources: dict[str, float], demand: dict[str, float],
                ranks: int | None = None) -> _Slot:
        """An actor for a trial with ``resources``; with ``bundles=``, in a placement group. A trial run as
        ``ranks``: a placement group of one bundle per rank (each its share; ``placement_strategy`` places them,
        PACK by default: on one node where one has room, else over several), then the ``bundles=``; the actor
        is rank 0 on bundle 0 and creates the other ranks' actors on theirs (``_ray_ranks``)."""
        rank_bundles: list[dict[str, float]] = []
        if ranks is not None:
            from tunesmith import _ranks

            rank_bundles = [ray_resources(_ranks.split_resources(resources, ranks))] * ranks
            head = rank_bundles[0]
        else:
            head = ray_resources(resources)
        options: dict[str, Any] = {"num_cpus": head.get("CPU", 0.0), "num_gpus": head.get("GPU", 0.0)}
        custom = {k: v for k, v in head.items() if k not in ("CPU", "GPU", "memory")}
        if custom:
            options["resources"] = custom
        if "memory" in head:
            options["memory"] = head["memory"]
        pg = None
        if self._bundles or ranks is not None:
            from ray.util.placement_group import placement_group
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            pg = placement_group([*(rank_bundles or [head]), *self._bundles], strategy=self.placement_strategy)
            # what the trial starts itself lands in the group (in the bundles=); the ranks name their bundle
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=bool(self._bundles))
        actor = self._actor_cls.options(**options).remote()
        slot = _Slot(actor, shape, pg, demand, ranks)
        self._slots.append(slot)
        return slot

    def _submit(self, slot: _Slot, kind: str, ref: Any) -> None:
        slot.ref, slot.kind = ref, kind
        self._by_ref[ref] = slot

    def decide(self, trial_id: int, cont: bool, next_decision: int | None, plan: Any = None) -> None:
        # plan: ignored: a Ray actor takes no plan (takes_plans is False)
        slot = self._by_trial.get(trial_id)
        if slot is not None:
            if not cont and slot.stop_deadline is None:  # a stop: one that catches it is killed in time
                slot.stop_deadline = time.monotonic() + self.grace_period_s
            self._orphans.add(slot.actor.decide.remote(trial_id, cont, next_decision))

    def stop(self, trial_id: int) -> None:
        on_result = self.stopping_on_result  # (``stop_on_result`` comes through here)
        slot = self._by_trial.get(trial_id)
        if slot is None or not stop_changes(slot.stop_deadline, slot.stop_on_result, on_result):
            return
        deadline = time.monotonic() + self.grace_period_s
        slot.stop_deadline = deadline if slot.stop_deadline is None else min(slot.stop_deadline, deadline)
        slot.stop_on_result = on_result
        self._after_ranks(slot)
        self._orphans.add(slot.actor.stop.remote(trial_id, on_result))

    def _after_ranks(self, slot: _Slot) -> None:
        """As ``LocalBackend._after_ranks``: a trial stopped on one of its results whose rank 0 returned is killed
        only after its other ranks' time to return (``_ranks.ends_by``)."""
        if slot.stop_deadline is not None and slot.stop_on_result and slot.rank0_returned is not None:
            from tunesmith import _ranks

            slot.stop_deadline = max(slot.stop_deadline, _ranks.ends_by(slot.rank0_returned, self.grace_period_s))

    def running(self) -> int:
        return len(self._by_trial)

    # -- events ---------------------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        now = time.monotonic()
        for slot in self._by_trial.values():
            for deadline in (slot.stop_deadline, slot.limit_at):
                if deadline is not None:
                    timeout = max(0.0, min(timeout, deadline - now))
        refs = [*self._by_ref, *self._orphans]
        if not refs:
            if timeout > 0:
                time.sleep(timeout)  # nothing of ours in flight: the caller waits for time to pass
            return events
        ray = self._ray
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and len(refs) > 1:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            if ref in self._orphans:
                self._orphans.discard(ref)
                self._cleanups.discard(ref)
                try:
                    ray.get(ref)
                except Exception:  # noqa: BLE001 - nobody waits for this answer (its actor may be gone)
                    pass
                continue
            answered = self._by_ref.pop(ref, None)
            if answered is not None:
                self._answer(answered, ref, events)
        self._enforce_deadlines(events)
        if any(s.beyond and not s.started for s in self._slots):
            for slot in [s for s in self._slots if s.trial_id is None]:
                self._kill(slot)  # an idle actor must not hold resources a waiting trial needs
        return events

    def _answer(self, slot: _Slot, ref: Any, events: list[Event]) -> None:
        ray = self._ray
        try:
            value = ray.get(ref)
        except ray.exceptions.ActorUnavailableError:
            self._submit(slot, "events", slot.actor.events.remote(HEARTBEAT_S))  # unreachable for now: ask again
            return
        except ray.exceptions.RayError as e:
            tid = slot.trial_id
            self._finish(slot, keep=False)
            if tid is not None:
                where = f" on node {slot.node}" if slot.node else ""
                events.append(Done(tid, "error", f"the Ray actor running this trial{where} died (its node "
                                   f"may have been lost, or the process was killed): {type(e).__name__}: {e}"))
            return
        slot.last_seen = time.monotonic()
        if slot.kind == "run":
            slot.started = True
            if self.trial_time_limit_s is not None and slot.limit_at is None and slot.over_limit is None:
                slot.limit_at = slot.last_seen + self.trial_time_limit_s
            slot.node, slot.pid = value["node"], value.get("pid")
            slot.restore_refs = None  # the actor has written the checkpoint: the object store may drop it
            self._submit(slot, "events", slot.actor.events.remote(HEARTBEAT_S))
            return
        for msg in value:
            kind = msg[0]
            if kind == RESULTS:
                rows = msg[2]
                if slot.transfers:
                    rows = [self._landed(slot, row) for row in rows]
                events.append(Results(msg[1], rows, msg[3]))
            elif kind == CHUNK:
                self._chunk(slot, msg)
            elif kind == OUTPUT:
                self._output(slot, msg[2])
            elif kind == FILE:
                self._file(slot, msg)
            elif kind == ENDING:
                if slot.trial_id == msg[1]:
                    slot.rank0_returned = time.monotonic()
                    self._after_ranks(slot)
            elif kind == DONE:
                done = Done(msg[1], msg[2], msg[3])
                if slot.trial_id == done.trial_id:
                    if slot.over_limit is not None and done.status in ("ok", "stopped"):
                        done = Done(done.trial_id, "error", slot.over_limit)
                    self._finish(slot, keep=self.reuse_actors and slot.ranks is None and len(msg) < 5)
                events.append(done)
                return
        self._submit(slot, "events", slot.actor.events.remote(HEARTBEAT_S))

    def _chunk(self, slot: _Slot, msg: tuple[Any, ...]) -> None:
        """One chunk of a checkpoint a trial sends from another node."""
        _c, _tid, dest, rel, offset, data = msg
        slot.transfers.chunk(os.path.join(slot.trial_dir, "checkpoints"), dest, rel, offset, data)

    def _output(self, slot: _Slot, data: bytes) -> None:
        """What a trial on another node printed since the last poll: appended to its output.log here, as a
        trial on this node appends to it itself (a retry's output after the run before), and opened the same
        way (``_safe_write.open_log``): a link or a FIFO in its place (a folder someone else made) is replaced by
        a file, never written through, waited on, or a reason to drop the output."""
        from tunesmith._layout import OUTPUT_LOG
        from tunesmith._safe_write import open_log

        try:
            os.makedirs(slot.trial_dir, exist_ok=True)
            fd = open_log(os.path.join(slot.trial_dir, OUTPUT_LOG))
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError as e:
            log.warning("trial %s: what it printed on node %s could not be added to %s (%s); dropped",
                        slot.trial_id, slot.node, os.path.join(slot.trial_dir, OUTPUT_LOG), e)

    def _file(self, slot: _Slot, msg: tuple[Any, ...]) -> None:
        """One piece of a file a trial on another node wrote in its folder (``sync_trial_files``)."""
        _f, _tid, rel, offset, data, last, mode = msg
        try:
            slot.files.piece(slot.trial_dir, rel, offset, data, last, mode)
        except (OSError, ValueError) as e:
            log.warning("trial %s: a file it wrote on node %s is not kept in %s: %s", slot.trial_id, slot.node,
                        slot.trial_dir, e)

    def _landed(self, slot: _Slot, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """The row naming a checkpoint whose chunks all came: the checkpoint lands (checked, renamed into
        place) first; a damaged one is dropped and the result kept without it."""
        from tunesmith.checkpoint import CheckpointError

        try:
            slot.transfers.land(row[4])
        except (OSError, CheckpointError) as e:
            log.warning("trial %s: the checkpoint %s sent from node %s is damaged (%s); result kept without it",
                        slot.trial_id, row[4], slot.node, e)
            return (*row[:4], None)
        return row

    def _enforce_deadlines(self, events: list[Event]) -> None:
        now = time.monotonic()
        for tid, slot in list(self._by_trial.items()):
            if slot.limit_at is not None and now >= slot.limit_at \
                    and stop_changes(slot.stop_deadline, slot.stop_on_result, False):
                # (one already being stopped ends as it was asked to; one stopped on a result: now, from outside)
                # past its wall-clock limit: stopped, killed after the grace period if it does not end; ERROR
                slot.limit_at = None
                slot.over_limit = self.over_limit()
                self.stop(tid)
            if slot.stop_deadline is not None and now >= slot.stop_deadline:
                over = slot.over_limit
                log.warning("trial %s did not stop within %.1fs; killing its actor", tid, self.grace_period_s)
                self._finish(slot, keep=False)
                if over is not None:
                    events.append(Done(tid, "error", f"{over}, then killed: it did not end within the grace "
                                                     f"period ({self.grace_period_s:g}s)"))
                else:
                    events.append(Done(tid, "stopped", None))
            elif (self.trial_timeout_s is not None and slot.started and slot.stop_deadline is None
                  and now - slot.last_seen > self.trial_timeout_s):
                silent = now - slot.last_seen
                self._finish(slot, keep=False)
                events.append(Done(tid, "error", f"no answer from the Ray actor for {silent:.1f}s "
                                   f"(trial_timeout_s={self.trial_timeout_s:g}): hung or unreachable; actor killed"))

    def _finish(self, slot: _Slot, keep: bool) -> None:
        if slot.trial_id is not None:
            self._by_trial.pop(slot.trial_id, None)
            if not keep and self._storage_prefix is not None and slot.node is not None \
                    and slot.node == self._driver_node:
                # with storage=, a trial on this node stages copies of its checkpoints here (its files are in its
                # folder): one whose actor is killed cannot remove them; at shutdown, once no actor writes there
                self._killed_stages.add(staging_dir(slot.node, slot.trial_dir))
        slot.trial_id = None
        slot.stop_deadline = slot.rank0_returned = None
        slot.stop_on_result = False
        slot.limit_at = slot.over_limit = None
        slot.restore_refs = None
        slot.transfers.discard()
        slot.files.discard()
        if not keep:
            self._kill(slot)

    def _kill(self, slot: _Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        if slot.ref is not None and self._by_ref.pop(slot.ref, None) is not None:
            self._orphans.add(slot.ref)
        slot.ref = None
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead
            pass
        if slot.pg is not None:
            from ray.util.placement_group import remove_placement_group

            if slot.ranks is not None and slot.trial_dir:
                self._clean_ranks(slot)
            try:
                remove_placement_group(slot.pg)
            except Exception:  # noqa: BLE001
                pass

    def _clean_ranks(self, slot: _Slot) -> None:
        """The ranks of a trial's attempt (``slot``, whose actor was just killed; each attempt has its own actor and
        placement group) on nodes other than rank 0's: one killed (with rank 0's actor, or by it: a failed rank, a
        stop) left its node's staging folder of the trial there, which only a process on that node can remove. A
        task pinned to each such node removes what that attempt's killed ranks held there (``_ray_ranks.
        remove_killed_ranks``: nothing where they ended by themselves and removed it already)."""
        from ray.util.placement_group import placement_group_table
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from tunesmith.executors._ray_ranks import remove_killed_ranks

        try:
            by_bundle = placement_group_table(slot.pg).get("bundles_to_node_id") or {}
        except Exception:  # noqa: BLE001 - its group is gone (the cluster's): nothing of it to find
            return
        assert slot.ranks is not None
        nodes: set[str] = {by_bundle[b] for b in range(1, slot.ranks) if by_bundle.get(b)} - {slot.node or ""}
        if not nodes:
            return
        if self._cleanup_fn is None:
            self._cleanup_fn = self._ray.remote(num_cpus=0, max_retries=0)(remove_killed_ranks)
        fn, attempt = self._cleanup_fn, slot.pg.id.hex()
        for node in sorted(nodes):
            ref = fn.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
                staging_dir(node, slot.trial_dir), attempt)
            self._orphans.add(ref)
            self._cleanups.add(ref)

    def placements(self) -> dict[int, dict[str, Any]]:
        """Where each running trial runs, once its actor has started it: {trial: {"node": Ray node id, "address":
        the node's IP, "pid": the actor's process}} (the controller logs each new one as a ``placement`` event,
        which the dashboard shows)."""
        out = {}
        for tid, slot in self._by_trial.items():
            if slot.node is None or not slot.started:
                continue
            if slot.node not in self._addresses:
                self._addresses.update({n["NodeID"]: n.get("NodeManagerAddress") for n in self._ray.nodes()})
            out[tid] = {"node": slot.node, "address": self._addresses.get(slot.node), "pid": slot.pid}
        return out

    def actor_nodes(self) -> dict[int, str | None]:
        """Running trial -> the Ray node id its actor runs on (None while it waits for resources)."""
        return {tid: slot.node for tid, slot in self._by_trial.items()}

    def shutdown(self) -> None:
        if self._ray is None:
            return
        for slot in list(self._slots):
            self._finish(slot, keep=False)
        if self._owns_ray and self._cleanups:  # (Ray's end would cut them short)
            with contextlib.suppress(Exception):
                self._ray.wait(list(self._cleanups), num_returns=len(self._cleanups), timeout=CLEANUP_WAIT_S)
        self._cleanups.clear()
        self._by_trial.clear()
        self._by_ref.clear()
        self._orphans.clear()
        self._fn_ref = None
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False
            self._ray = None
        for stage in self._killed_stages:
            _remove_staging(stage)  # (a trial that ended, or a retry that did, removed it already)
        self._killed_stages.clear()
