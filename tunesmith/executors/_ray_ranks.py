"""The ranks 1..N-1 of a trial on the Ray backend, started and watched by the actor that runs rank 0.

The driver (``executors.ray``) gives a trial run with ``ranks=N`` a placement group of N bundles, each one rank's
share of the trial's resources (then the ``bundles=`` of ``RayBackend``, for what the trial starts itself), and
runs the trial's actor, rank 0, on bundle 0 as for any trial. :class:`RayRankGroup` (inside that actor) creates
one :class:`_RankActor` per other rank on bundle r of the same group, so Ray places each where its bundle was
reserved (another node, possibly) and assigns its devices (``CUDA_VISIBLE_DEVICES`` as Ray sets it per actor).
Rank 0's actor is their owner: they die with it, and with the placement group the driver removes when the
trial ends. Rendezvous: ``MASTER_ADDR`` is rank 0's node's address, ``MASTER_PORT`` a free port there;
``LOCAL_RANK``/``LOCAL_WORLD_SIZE`` count the ranks that landed on the same node.

A rank on a node other than the driver's runs in that node's staging folder (as rank 0 does), and gets the
trial's restore checkpoint there: from rank 0's copy when it shares rank 0's node, from the object store
chunks the driver sent (``_ray_transfer.receive_folder``) otherwise, or downloaded from ``storage=``'s URL; its
own copy is written under the staging folder's ``.tunesmith-restore/<attempt>-rank<N>-<pid>/``
(``_ray_transfer.RESTORE``: not a name of the trial's files, neither sent to the driver nor taken from it;
:func:`held_name`) and removed when the rank ends. On a node
without rank 0, the last of the trial's ranks there to end also removes the node's staging folder of the trial (when
the trial left no files of its own in it), as rank 0's actor removes its own node's; a rank killed (a stop, a failed
rank, rank 0's actor killed) removes nothing: the driver, once it killed the trial's actor, runs
:func:`remove_killed_ranks` on each node of the other ranks but rank 0's, which does it for them.

The same ends as on the local backend (``_local_ranks``): a rank that fails (raises, its process dies) fails the
trial with its story, the other rank actors are killed, and rank 0 gets ``FAIL_GRACE_S`` to end by itself (gloo
raises in a collective whose peer is gone); one stuck where Python cannot reach it is not waited for: the
trial's end is reported and the driver kills the actor (an actor that ran rank 0 is never reused). When rank 0
ends, the others end with it: after a return, or a stop on the result rank 0 just reported that ended it there, they
get ``_ranks.END_GRACE_S`` to return too (cut short by a stop from outside the trial's results, as there), otherwise
they are killed at once.

Ray exports :class:`_RankActor` by reference: this module imports no Ray at module level.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from typing import Any

from tunesmith import _ranks
from tunesmith.checkpoint import is_url
from tunesmith.executors._local_ranks import END_STOP_CHECK_S, FAIL_GRACE_S, RANK0_FAILED_WAIT_S
from tunesmith.executors._ray_transfer import (
    RESTORE,
    make_staging,
    receive_folder,
    remove_empty_staging,
    staging_dir,
    under_staging_root,
)

_WAIT_S = 0.5  # the watcher looks at "rank 0 ended" this often while no rank ends
KILLED_WAIT_S = 10.0  # how long the driver's cleanup after a kill waits for a killed rank's process to be gone


def actor_options(share: dict[str, float]) -> dict[str, Any]:
    """Ray actor options for one rank's share (tunesmith's names: ``cpu``, ``gpu``, custom, ``memory``)."""
    options: dict[str, Any] = {"num_cpus": float(share.get("cpu", 0.0)), "num_gpus": float(share.get("gpu", 0.0))}
    custom = {k: float(v) for k, v in share.items() if k not in ("cpu", "gpu", "memory") and v > 0}
    if custom:
        options["resources"] = custom
    if share.get("memory", 0) > 0:
        options["memory"] = share["memory"]
    return options


class _RankActor:
    """One rank other than 0 of one trial, on its own bundle of the trial's placement group; used once."""

    def __init__(self) -> None:
        import ray

        from tunesmith.executors._ray_keep import keep_ray_up

        keep_ray_up()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.restore_dir: str | None = None

    def where(self) -> dict[str, Any]:
        return {"node": self.node_id, "pid": os.getpid()}

    def run(self, spec: dict[str, Any], fn_ref: list[Any], restore_files: list[Any] | None) -> None:
        """Run the trial's function as the rank ``spec["rank_env"]["RANK"]`` (``_ranks.run_rank``); raises what
        it raises (the group's watcher makes it the trial's failure)."""
        import ray

        from tunesmith import _signing

        spec = dict(spec)
        _signing.use(spec.pop("signing_key"))  # a checkpoint's signature is checked with the driver's key
        for p in reversed(spec.get("sys_path") or []):
            if p not in sys.path:
                sys.path.insert(0, p)
        driver_node, shared_storage = spec.pop("driver_node"), spec.pop("shared_storage")
        remote = driver_node != self.node_id and not shared_storage  # the driver's folder is not here
        stage = staging_dir(self.node_id, spec["trial_dir"])
        if remote:
            make_staging(stage)  # (in this user's private root, checked)
            spec["trial_dir"] = stage
        restore, rank0_restore, rank0_node = spec["restore"], spec.pop("rank0_restore"), spec.pop("rank0_node")
        # its own copy, in this node's staging folder (other ranks on this node may be reading theirs), under
        # tunesmith's own name (RESTORE, where rank 0 keeps its copy on its node; never a name a trial's own files
        # may have: this folder is the trial's folder here, and the copy is removed by its path), named for the
        # trial's attempt and this process (``remove_killed_ranks``: the driver's cleanup after a kill)
        restore_dir = os.path.join(stage, RESTORE, held_name(spec.pop("attempt"), spec["rank_env"]["RANK"]))
        # on a node without rank 0 (whose actor removes its node's folder when the trial ends), this node's staging
        # folder of the trial is its ranks' here: each holds its own folder (restore_dir) in it while it runs, so the
        # staging folder is empty only once the last of them ended, which removes it
        own = self.node_id != rank0_node and (remote or is_url(restore))
        try:
            if own:
                make_staging(restore_dir)
                self.restore_dir = restore_dir
            if restore is not None and self.node_id == rank0_node:
                spec["restore"] = rank0_restore  # the copy rank 0 has on this node (written before we started)
            elif is_url(restore):
                from tunesmith.checkpoint import download

                make_staging(stage)
                os.makedirs(restore_dir, exist_ok=True)
                self.restore_dir = restore_dir
                spec["restore"] = download(restore, restore_dir)
            elif restore is not None and remote and restore_files is not None:
                self.restore_dir = restore_dir
                spec["restore"] = receive_folder(restore_files, restore_dir, os.path.basename(restore))
            _ranks.run_rank(spec, ray.get(fn_ref[0]))
        finally:
            if self.restore_dir is not None:
                _release(self.restore_dir, stage if own else None)


def held_name(attempt: str, rank: Any) -> str:
    """The name of a rank's folder in its node's ``RESTORE`` folder of the trial (its restore copy, and its hold on
    the staging folder): the attempt (its placement group's id), the rank, and its process id, so that the driver's
    cleanup after a kill (:func:`remove_killed_ranks`) finds that attempt's alone (a retry's ranks may already hold
    theirs on the node) and waits for the process to be gone."""
    return f"{attempt}-rank{rank}-{os.getpid()}"


def _release(held: str, stage: str | None) -> None:
    """Remove a rank's folder ``held`` (:func:`held_name`), the ``RESTORE`` folder above it when that is left empty,
    and, ``stage``, the trial's staging folder when left empty (``remove_empty_staging``: another rank's folder, or
    files the trial wrote, keep it). Only below the private staging root with no link on the way."""
    if under_staging_root(held):
        shutil.rmtree(held, ignore_errors=True)
    _remove_empty(os.path.dirname(held), stage)


def _remove_empty(restore: str, stage: str | None) -> None:
    """The last steps of :func:`_release`: the trial's ``RESTORE`` folder ``restore`` when empty (another rank's
    copy still there: it stays), then ``stage`` when left empty (``remove_empty_staging``: the folders above it too,
    also where a release cut short by a kill removed it already); only below the private staging root with no link on
    the way."""
    if under_staging_root(restore):
        with contextlib.suppress(OSError):
            os.rmdir(restore)
    if stage is not None:
        remove_empty_staging(stage)


def remove_killed_ranks(stage: str, attempt: str, wait_s: float = KILLED_WAIT_S) -> None:
    """On a node where ranks of the trial's ``attempt`` were killed (their actors, with rank 0's or by it), do what
    each would have done as it ended: once its process is gone (at most ``wait_s``), remove its folder in the
    node's staging folder of the trial, then that folder when left empty. Run there by the driver
    (``RayBackend``, a task pinned to the node). A folder not named for this attempt (a retry's rank's), or not below
    the private staging root with no link on the way, is left alone."""
    from tunesmith.executors._procs import wait_gone

    held = os.path.join(stage, RESTORE)
    prefix = f"{attempt}-rank"
    for name in os.listdir(held) if under_staging_root(held) else []:
        pid = name.rpartition("-")[2]
        if attempt and name.startswith(prefix) and pid.isdigit():
            wait_gone([int(pid)], wait_s)  # killed a moment ago: it may still be writing its copy
            _release(os.path.join(held, name), stage)
    # what a rank's own release, cut short by the kill between its steps, left empty (its folder gone already)
    _remove_empty(held, stage)


class RayRankGroup:
    """Ranks 1..N-1 of one trial, started by :meth:`start` in the actor that runs rank 0 and ended by :meth:`end`
    when rank 0's function is over (``executors._worker._run_trial`` calls both, as for ``_local_ranks``)."""

    def __init__(self, spec: dict[str, Any], channel: Any, fn_ref: list[Any], restore_files: list[Any] | None,
                 *, node_id: str, driver_node: str | None, shared_storage: bool, driver_trial_dir: str,
                 driver_restore: str | None, signing_key: bytes | None) -> None:
        self.spec = spec  # rank 0's (its trial_dir and restore are on its node)
        self.channel = channel
        self.fn_ref = fn_ref
        self.restore_files = restore_files  # held until the ranks have read them (object refs borrowed)
        self.node_id = node_id
        self.driver_node = driver_node
        self.shared_storage = shared_storage
        self.driver_trial_dir = driver_trial_dir
        self.driver_restore = driver_restore
        self.signing_key = signing_key
        self.world = int(spec["ranks"])
        self.actors: dict[int, Any] = {}  # rank -> its actor
        self.where: dict[int, dict[str, Any]] = {}  # rank -> node, pid
        self.refs: dict[Any, int] = {}  # run() ref -> rank
        self.lock = threading.Lock()
        self.failure: str | None = None  # the first failed rank's story
        self.ending = False
        self.retiring = False  # the watcher reported the trial's end (rank 0 is stuck): the driver kills us
        self.rank0_done = threading.Event()
        self._envs = [_ranks.rank_env(0, self.world, 0, 1, "127.0.0.1", 0)]
        self.attempt = ""  # the trial's placement group's id (start)

    def share(self) -> dict[str, float]:
        return _ranks.split_resources(self.spec["resources"], self.world)

    def rank0_env(self) -> dict[str, str]:
        return self._envs[0]

    def start(self) -> None:
        """Create the other ranks' actors on their bundles, learn their nodes, choose the rendezvous (rank 0's
        node address, a free port there) and start the function on each."""
        import ray
        from ray.util.placement_group import get_current_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        share = self.share()
        if self.world > 1:
            pg = get_current_placement_group()
            if pg is None:
                raise RuntimeError("a trial run as several ranks on Ray must run in its placement group")
            self.attempt = pg.id.hex()  # the driver names it so too (its cleanup after a kill: remove_killed_ranks)
            cls = ray.remote(max_restarts=0, max_task_retries=0)(_RankActor)
            for rank in range(1, self.world):
                self.actors[rank] = cls.options(**actor_options(share), scheduling_strategy=(
                    PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=rank))).remote()
        for rank, info in zip(self.actors, ray.get([a.where.remote() for a in self.actors.values()])):
            self.where[rank] = info
        nodes = [self.node_id, *(self.where[r]["node"] for r in range(1, self.world))]
        ip = ray.util.get_node_ip_address()
        port = _ranks.free_port(ip)
        self._envs = [_ranks.rank_env(r, self.world, nodes[:r].count(nodes[r]), nodes.count(nodes[r]), ip, port)
                      for r in range(self.world)]
        base = {**self.spec, "trial_dir": self.driver_trial_dir, "restore": self.driver_restore}
        for rank, actor in self.actors.items():
            spec = {**_ranks.rank_spec(base, b"", self._envs[rank], share, list(self.spec.get("sys_path") or [])),
                    "signing_key": self.signing_key, "driver_node": self.driver_node,
                    "shared_storage": self.shared_storage, "rank0_restore": self.spec["restore"],
                    "rank0_node": self.node_id, "attempt": self.attempt}
            self.refs[actor.run.remote(spec, self.fn_ref, self.restore_files)] = rank
        threading.Thread(target=self._watch, name="tunesmith-ray-ranks", daemon=True).start()

    # the watcher thread ------------------------------------------------------------------------------
    def _watch(self) -> None:
        import ray

        left = list(self.refs)
        while left:
            ready, left = ray.wait(left, num_returns=1, timeout=_WAIT_S)
            with self.lock:
                if self.ending:
                    return
                for ref in ready:
                    self._collect(ref)
                failed = self.failure is not None
            if failed:
                self._kill_all()
                self._fail_trial()
                return

    def _collect(self, ref: Any) -> None:
        """Record the rank's failure when its ``run`` (finished) raised; lock held."""
        import ray

        try:
            ray.get(ref, timeout=0)
        except Exception as e:  # noqa: BLE001 - the rank's failure is the trial's
            if self.failure is None:
                rank = self.refs[ref]
                info = self.where.get(rank, {})
                died = isinstance(e, ray.exceptions.RayActorError)
                how = "its actor died (killed, out of memory, or its node was lost)" if died else "it raised"
                text = str(e).rstrip()[-_ranks.TRACEBACK_MAX:]
                self.failure = (f"rank {rank} of {self.world} (Ray actor, pid {info.get('pid', '?')}, node "
                                f"{info.get('node', '?')}) failed: {how}:\n{text}")

    def _fail_trial(self) -> None:
        if self.rank0_done.wait(FAIL_GRACE_S):
            return
        with self.lock:
            if self.ending:
                return  # rank 0 ended just now: it reports the failure itself
            self.retiring = True
        self.channel.finish("error", f"{self.failure}\n\nrank 0 did not end within {FAIL_GRACE_S:g}s (blocked in a "
                                     f"collective?): its actor was ended", retire=True)

    # rank 0's thread ---------------------------------------------------------------------------------
    def end(self, status: str) -> str | None:
        """Rank 0's function is over (``status``: "ok", "stopped", "error"): end the other ranks (after a
        return, once they returned too, within ``_ranks.END_GRACE_S`` unless a stop from outside the trial's results
        comes first; after a failure, once they ended within ``RANK0_FAILED_WAIT_S``; after a stop, at once).
        Returns why the trial failed because of them, or None. Blocks for good if the watcher already reported the
        trial's end (the driver kills this actor)."""
        import ray

        self.rank0_done.set()
        wait = {"ok": _ranks.END_GRACE_S, "error": RANK0_FAILED_WAIT_S}.get(status, 0.0)
        deadline, left = time.monotonic() + wait, list(self.refs)
        if status == "ok" and left and self.failure is None:
            self.channel.ending()  # the driver's stop on a result of the trial's kills only after this wait
        # after a return, a stop from outside the trial's results (the time limit, the dashboard, the experiment's
        # end) ends the wait: the trial is to end now, not after the driver's grace period (``_local_ranks``)
        while (wait and left and self.failure is None and time.monotonic() < deadline
               and not (status == "ok" and self.channel.stopped_outside)):
            ready, left = ray.wait(left, num_returns=len(left),
                                   timeout=min(END_STOP_CHECK_S, max(0.0, deadline - time.monotonic())))
            with self.lock:
                for ref in ready:
                    self._collect(ref)
        with self.lock:
            retiring = self.retiring
            self.ending = True
        while retiring:
            time.sleep(60)
        self._kill_all()
        self.restore_files = None
        return self.failure

    def _kill_all(self) -> None:
        import ray

        for actor in self.actors.values():
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead
                pass
