"""Checkpoints between Ray nodes without shared storage: both halves of the transfer protocol.

Driver-bound (a trial on another node checkpoints): the actor reads the checkpoint folder as
:func:`chunks` (every file the manifest lists, then the manifest) and queues them behind the results before
the row naming the checkpoint; the driver writes each into a temporary folder (:meth:`Incoming.chunk`) and,
when that row arrives, checks every file against the manifest, fsyncs and renames the folder into place
(:meth:`Incoming.land`). The row names the folder the driver will have, never the sender's.

Actor-bound (a restart on another node): the driver puts the checkpoint folder into the object store in
chunks (:func:`put_folder`); the actor writes it back and checks its checksums (:func:`receive_folder`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from tunesmith.checkpoint import CHECKPOINT_NAME, MANIFEST, _fsync_dir, inside, verify

CHUNK_BYTES = 16 << 20  # checkpoint data per chunk (and at most about this much queued per actor)


# -- driver-bound: the actor's half ----------------------------------------------------------------------
def chunks(src: str, chunk_bytes: int) -> Iterator[tuple[str, int, bytes]]:
    """The checkpoint folder ``src`` as (relative path, offset, data) pieces of at most ``chunk_bytes``: the
    files its manifest lists, then the manifest last (the driver checks every file against it before the
    folder is renamed into place). An empty file is one empty piece."""
    with open(os.path.join(src, MANIFEST), "rb") as f:
        manifest = json.loads(f.read())
    for rel in [*sorted(manifest["files"]), MANIFEST]:
        offset = 0
        with open(os.path.join(src, rel), "rb") as f:
            while True:
                data = f.read(chunk_bytes)
                yield rel, offset, data
                offset += len(data)
                if len(data) < chunk_bytes:
                    break


# -- driver-bound: the driver's half ---------------------------------------------------------------------
class Incoming:
    """The checkpoints one trial is sending to the driver, each in a temporary folder beside where it goes,
    until the result naming it arrives."""

    __slots__ = ("_tmp",)

    def __init__(self) -> None:
        self._tmp: dict[str, str] = {}  # checkpoint folder -> its temporary folder being received

    def __bool__(self) -> bool:
        return bool(self._tmp)

    def chunk(self, checkpoints_dir: str, dest: str, rel: str, offset: int, data: bytes) -> None:
        """Write one piece of the checkpoint ``dest``, which must be a checkpoint folder in the trial's
        ``checkpoints_dir`` (the sender names it; the driver decides where it may go)."""
        if os.path.dirname(dest) != checkpoints_dir or not CHECKPOINT_NAME.fullmatch(os.path.basename(dest)):
            raise RuntimeError(f"refusing a checkpoint sent for {dest!r}: not in the trial's checkpoints folder")
        tmp = self._tmp.get(dest)
        if tmp is None:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            tmp = self._tmp[dest] = tempfile.mkdtemp(prefix=".tmp_recv_" + os.path.basename(dest) + "_",
                                                     dir=os.path.dirname(dest))
        path = inside(tmp, rel)
        if offset == 0:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.write(data)

    def land(self, dest: str | None) -> bool:
        """The result naming ``dest`` arrived, so all its pieces did: fsync, check against the manifest,
        rename into place (replacing the folder a restarted trial wrote at the same iteration). False when
        nothing was being received for it; raises ``OSError`` or ``CheckpointError`` (the temporary folder
        removed) when the checkpoint is damaged."""
        tmp = self._tmp.pop(dest, None) if dest is not None else None
        if tmp is None or dest is None:
            return False
        try:
            manifest = verify(tmp)
            for rel in [*manifest.get("files", {}), MANIFEST]:
                fd = os.open(os.path.join(tmp, rel), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _fsync_dir(tmp)
            if os.path.exists(dest):
                shutil.rmtree(dest)
            os.rename(tmp, dest)
            _fsync_dir(os.path.dirname(dest))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return True

    def discard(self) -> None:
        """The trial ended (or its actor died): checkpoints still on their way are dropped."""
        for tmp in self._tmp.values():
            shutil.rmtree(tmp, ignore_errors=True)
        self._tmp.clear()


# -- actor-bound (a restore checkpoint) ------------------------------------------------------------------
def put_folder(ray: Any, folder: str, chunk_bytes: int) -> list[tuple[str, list[Any]]]:
    """A checkpoint folder as (relative path, [object refs of its chunks]) for an actor on another node."""
    files: list[tuple[str, list[Any]]] = []
    for root, _dirs, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            refs = []
            with open(path, "rb") as f:
                while True:
                    data = f.read(chunk_bytes)
                    refs.append(ray.put(data))
                    if len(data) < chunk_bytes:
                        break
            files.append((os.path.relpath(path, folder), refs))
    return files


def receive_folder(files: list[tuple[str, list[Any]]], parent: str, name: str) -> str:
    """Write a checkpoint sent through the object store (:func:`put_folder`) as ``parent/name``; checksums
    checked."""
    import ray

    final = os.path.join(parent, name)
    tmp = final + ".part"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, refs in files:
        path = inside(tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            for ref in refs:
                f.write(ray.get(ref))
    verify(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    return final


def staging_dir(node_id: str, trial_dir: str) -> str:
    """A node-local folder for a trial whose experiment folder (``<exp>/trials/<trial>``) is on the driver's
    machine (its actors on that node write there: rank 0's checkpoints on their way, restore copies)."""
    exp = os.path.basename(os.path.dirname(os.path.dirname(trial_dir)))
    return os.path.join(tempfile.gettempdir(), "tunesmith-ray", node_id[:16], exp, "trials",
                        os.path.basename(trial_dir))
