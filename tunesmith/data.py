"""Shared data for trials: store a large object once, read it from every trial without a copy per trial.

    ref = tunesmith.put(big_array)              # in the driver, before tunesmith.run
    def train(config):
        data = tunesmith.get(ref)               # in a trial: a read-only view, not a copy
        path = tunesmith.download_once("/data/mnist", fetch)   # one download per machine, the rest wait

Where the data lives depends on the backend:

* local backend: a file in shared memory (``/dev/shm``; the temporary folder where there is none),
  written once by the driver. Trials map it read-only; numpy arrays (also inside dicts, lists, pandas
  objects: anything pickled with protocol 5 out-of-band buffers) are views onto the shared pages, so N
  trials on a machine cost one copy. Only data written by :func:`put` is unpickled: the reference carries
  the SHA-256 of the pickle stream, checked before loading (the array bytes themselves are data, never
  code).
* Ray backend: Ray's object store, which keeps one copy per node and hands numpy arrays to each process
  zero-copy.

The file of a local :func:`put` is removed when its reference is garbage-collected in the driver, or when
the driver exits; files of drivers that died are removed by the next :func:`put`.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import json
import mmap
import os
import pickle
import shutil
import struct
import sys
import tempfile
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from tunesmith._errors import ConfigError

__all__ = ["DataRef", "download_once", "get", "put"]

_MAGIC = b"TSDATA1\n"
_ALIGN = 64
_PREFIX = "tunesmith-data-"
_cache: dict[str, Any] = {}  # path -> object, per process: a trial calling get() twice maps the file once
_local_dirs: dict[str, str] = {}  # root -> this driver's folder there


class DataRef:
    """A handle on data stored with :func:`put`. Small and cheap to pickle: capture it in the training
    function (or keep it in a global the function reads); read the data with :func:`get`."""

    __slots__ = ("kind", "path", "digest", "nbytes", "obj", "__weakref__")

    def __init__(self, kind: str, path: str | None, digest: str | None, nbytes: int, obj: Any = None) -> None:
        self.kind = kind  # "local" (a shared-memory file) or "ray" (an object in Ray's object store)
        self.path = path
        self.digest = digest
        self.nbytes = nbytes
        self.obj = obj  # the Ray ObjectRef

    def __reduce__(self) -> tuple[Any, ...]:
        return (DataRef, (self.kind, self.path, self.digest, self.nbytes, self.obj))

    def __repr__(self) -> str:
        where = self.path if self.kind == "local" else self.obj
        return f"DataRef({self.kind}, {where}, {self.nbytes:,} bytes)"


def put(obj: Any, backend: Any = None) -> DataRef:
    """Store ``obj`` once for every trial to read with :func:`get`.

    Args:
        obj: any object cloudpickle can pickle (lambdas and classes of your script too); numpy arrays (and
            objects made of them) are shared without copies.
        backend: ``"local"`` (shared memory on this machine), ``"ray"`` (the object store of the Ray this
            process is connected to) or a :class:`~tunesmith.RayBackend` (connected first). Default: Ray's
            object store if this process is connected to Ray (``ray.init`` or ``RayBackend.connect()``),
            else local shared memory.

    Returns:
        A :class:`DataRef`.

    Raises:
        ConfigError: an unknown backend, ``"ray"`` without a Ray connection, or (local) ``obj`` cannot be
            pickled.
    """
    kind = _backend_kind(backend)
    if kind == "ray":
        import ray

        if not ray.is_initialized():
            raise ConfigError("put(obj, backend='ray'): this process is not connected to Ray; call ray.init(...) "
                              "or pass backend=tunesmith.RayBackend(address=...)")
        return DataRef("ray", None, None, _nbytes(obj), ray.put(obj))
    return _put_local(obj)


def get(ref: DataRef) -> Any:
    """The object stored with :func:`put`. In a trial, numpy arrays come back as read-only views of the
    shared copy (copy one with ``.copy()`` to write to it).

    Raises:
        ConfigError: ``ref`` is not a :class:`DataRef`, or its data is not reachable from here (a local
            ``put`` read on another machine, or after its driver exited or let go of its reference).
    """
    if not isinstance(ref, DataRef):
        raise ConfigError(f"get(ref) expects the DataRef returned by tunesmith.put, got {type(ref).__name__}")
    if ref.kind == "ray":
        import ray

        return ray.get(ref.obj)
    assert ref.path is not None and ref.digest is not None
    hit = _cache.get(ref.path)
    if hit is not None and hit[0] == ref.digest:
        return hit[1]
    value = _load_local(ref.path, ref.digest)
    _cache[ref.path] = (ref.digest, value)
    return value


def _backend_kind(backend: Any) -> str:
    if backend is None:
        ray = sys.modules.get("ray")
        return "ray" if ray is not None and getattr(ray, "is_initialized", lambda: False)() else "local"
    if backend in ("local", "ray"):
        return str(backend)
    from tunesmith.executors.ray import RayBackend  # light: imports no Ray until it connects

    if isinstance(backend, RayBackend):
        backend.connect()
        return "ray"
    raise ConfigError(f"put(backend=...) must be 'local', 'ray' or a RayBackend, got {backend!r}")


def _nbytes(obj: Any) -> int:
    n = getattr(obj, "nbytes", None)
    return int(n) if isinstance(n, int) else 0


# -- local: one file in shared memory per put ---------------------------------------------------------------
def _shm_root() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def _my_dir(root: str | None = None) -> str:
    """This driver's private folder (0700) for put() files under ``root`` (shared memory by default);
    removed at exit. Each call first removes the folders of dead drivers (a notebook's puts too, not only its
    first)."""
    root = root or _shm_root()
    _sweep(root)
    folder = _local_dirs.get(root)
    if folder is None or not os.path.isdir(folder):
        folder = _local_dirs[root] = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=root)  # mode 0700
        atexit.register(shutil.rmtree, folder, True)
    return folder


def _sweep(root: str) -> None:
    """Remove the put() folders of drivers that are no longer alive (killed before their exit handlers)."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if not name.startswith(_PREFIX):
            continue
        try:
            pid = int(name[len(_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        path = os.path.join(root, name)
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _put_local(obj: Any) -> DataRef:
    import cloudpickle  # as trial functions travel, and Ray's put: a lambda or a class of the script is data too

    buffers: list[pickle.PickleBuffer] = []
    try:
        stream = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise ConfigError(f"put(obj): {type(obj).__name__} cannot be pickled ({e}); expected an object that "
                          f"pickles (numpy arrays, pandas objects, tensors, plain Python objects)") from e
    views = [b.raw() for b in buffers]
    # layout: magic, header length, header (JSON: offsets), pickle stream, then each buffer 64-byte aligned
    offsets, pos = [], 0
    for v in views:
        pos = -(-pos // _ALIGN) * _ALIGN
        offsets.append([pos, v.nbytes])
        pos += v.nbytes
    header = json.dumps({"pickle": len(stream), "buffers": offsets}).encode()
    start = -(-(len(_MAGIC) + 8 + len(header) + len(stream)) // _ALIGN) * _ALIGN
    head = _MAGIC + struct.pack("<Q", len(header)) + header + stream
    try:
        path = _write(_my_dir(), head, start, offsets, views, start + pos)
    except OSError as e:
        if e.errno != errno.ENOSPC or _shm_root() == tempfile.gettempdir():
            raise
        # a small /dev/shm (containers default to 64 MB): a file on disk is shared through the page cache
        path = _write(_my_dir(tempfile.gettempdir()), head, start, offsets, views, start + pos)
    ref = DataRef("local", path, hashlib.sha256(header + stream).hexdigest(), start + pos)
    weakref.finalize(ref, _release, path)  # only the driver's own reference owns the file
    return ref


def _release(path: str) -> None:
    """The driver's reference is gone: remove the file, and drop this process's mapping of it (a get() in the
    driver) so that its shared memory is freed once the caller lets go of the values too."""
    _cache.pop(path, None)
    _remove(path)


def _write(folder: str, head: bytes, start: int, offsets: list[list[int]], views: list[memoryview],
           size: int) -> str:
    path = os.path.join(folder, uuid.uuid4().hex + ".bin")
    tmp = path + ".part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            for (off, _n), v in zip(offsets, views):
                f.seek(start + off)
                f.write(v)
            f.truncate(size)
    except BaseException:
        _remove(tmp)
        raise
    os.rename(tmp, path)
    return path


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _load_local(path: str, digest: str) -> Any:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ConfigError(f"get(): the data of this DataRef ({path}) is gone or not on this machine. It was "
                          f"stored with the local backend, where it lasts only while the driver that put it holds "
                          f"it: a DataRef from an earlier run (kept in a checkpoint or a file) or one the driver "
                          f"let go of finds nothing; put it again in this driver. On a Ray cluster call "
                          f"ray.init(...) (or RayBackend.connect()) before tunesmith.put, so that it goes to "
                          f"Ray's object store") from None
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else None
    finally:
        os.close(fd)
    if mm is None or mm[:len(_MAGIC)] != _MAGIC:
        raise ConfigError(f"get(): {path} is not a tunesmith.put file")
    (hlen,) = struct.unpack("<Q", mm[len(_MAGIC):len(_MAGIC) + 8])
    h0 = len(_MAGIC) + 8
    view = memoryview(mm)
    header_bytes = bytes(view[h0:h0 + hlen])
    header = json.loads(header_bytes)
    stream = bytes(view[h0 + hlen:h0 + hlen + header["pickle"]])
    # never unpickle what put() did not write: the reference says what the stream's checksum must be
    if hashlib.sha256(header_bytes + stream).hexdigest() != digest:
        raise ConfigError(f"get(): {path} does not match its DataRef's checksum; refusing to load it")
    start = -(-(h0 + hlen + header["pickle"]) // _ALIGN) * _ALIGN
    buffers = [view[start + off:start + off + n] for off, n in header["buffers"]]
    return pickle.loads(stream, buffers=buffers)


# -- download_once ------------------------------------------------------------------------------------------
def download_once(path: str | os.PathLike[str], fetch_fn: Callable[[str], Any], timeout_s: float | None = None) -> str:
    """Make sure ``path`` exists on this machine, fetching it at most once however many trials ask.

    The first caller on a machine runs ``fetch_fn(tmp_path)`` under a file lock (``path`` + ``.lock``);
    ``fetch_fn`` writes a file or a folder at ``tmp_path`` (a new name beside ``path``), which is then renamed to
    ``path``. Other callers wait for the lock and find ``path`` there. A ``fetch_fn`` that raises, or a process
    killed mid-download, leaves nothing at ``path``; the next caller cleans up and fetches again. The lock file
    stays beside ``path`` (empty; removing it safely while others may wait on it would need a locking protocol
    of our own in place of ``filelock``'s).

    Args:
        path: the file or folder to have, e.g. ``~/data/mnist``. A relative path is taken from the driver's
            working directory, where ``tunesmith.run`` was called (``TUNESMITH_ORIG_WORKING_DIR`` in a trial),
            not from the trial's own folder: ``download_once("data/mnist", ...)`` in every trial is one
            ``data/mnist`` beside your script (on a Ray cluster: that same path on each node). Outside a trial:
            the current working directory.
        fetch_fn: ``fetch_fn(tmp_path)`` downloads (or builds) the data at ``tmp_path``.
        timeout_s: wait at most this long for another process's download (default: as long as it takes).

    Returns:
        ``path``, absolute.

    Raises:
        ConfigError: ``path`` is empty, holds a NUL or is not a path; a folder of it is a file; it is a link to
            nothing (a dangling symbolic link); its lock file is a symbolic link (never followed); ``fetch_fn``
            is not callable; ``timeout_s`` is not None or a number >= 0.
        RuntimeError: ``fetch_fn`` returned without creating ``tmp_path``.
        filelock.Timeout: ``timeout_s`` passed while another process was downloading.
    """
    final = _download_path(path)
    if not callable(fetch_fn):
        raise ConfigError(f"download_once(fetch_fn={fetch_fn!r}): expected a function that writes the data at the "
                          f"path it is given, fetch_fn(tmp_path)")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not timeout_s >= 0):
        raise ConfigError(f"download_once(timeout_s={timeout_s!r}): expected None or a number >= 0 of seconds "
                          f"to wait for another process's download")
    if os.path.exists(final):
        return final
    if os.path.islink(final):  # the data would be fetched, then could not be put where the link is
        raise ConfigError(f"download_once({final!r}): that path is a link to {os.readlink(final)!r}, which does "
                          f"not exist; remove the link, or give the path it should point to")
    parent, name = os.path.split(final)
    _make_folder(final, parent)
    lock = final + ".lock"
    from filelock import FileLock

    try:
        held = FileLock(lock, timeout=-1 if timeout_s is None else timeout_s)
        held.acquire()
    except OSError as e:
        if not os.path.islink(lock):
            raise
        raise ConfigError(f"download_once({final!r}): {lock!r} is a symbolic link (to {os.readlink(lock)!r}), "
                          f"not a lock file; refusing to follow it: remove it") from e
    try:
        if os.path.exists(final):
            return final  # another process fetched it while we waited
        for stale in os.listdir(parent):  # leftovers of a download that crashed; we hold the lock
            if stale.startswith(f".{name}.tmp-"):
                _rm(os.path.join(parent, stale))
        tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            fetch_fn(tmp)
            if not os.path.exists(tmp):
                raise RuntimeError(f"download_once({final!r}): fetch_fn returned without creating the path it "
                                   f"was given ({tmp})")
            os.rename(tmp, final)
        except BaseException:
            _rm(tmp)
            raise
    finally:
        held.release()
    return final


def _download_path(path: Any) -> str:
    """``download_once``'s ``path``, absolute: a relative one from where the driver was started (a trial runs in
    its own folder)."""
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise ConfigError(f"download_once(path={path!r}): expected a file or folder path (a str or os.PathLike), "
                          f"e.g. 'data/mnist'")
    given = os.path.expanduser(os.fspath(path))
    if not given:
        raise ConfigError("download_once(path=''): the path is empty; expected the file or folder to fetch to, "
                          "e.g. 'data/mnist'")
    if "\0" in given:
        raise ConfigError(f"download_once(path={given!r}): a path cannot hold a NUL character")
    return os.path.abspath(os.path.join(os.environ.get("TUNESMITH_ORIG_WORKING_DIR") or os.getcwd(), given))


def _make_folder(final: str, parent: str) -> None:
    try:
        os.makedirs(parent, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = parent
        while not os.path.lexists(blocker):  # the deepest part of the path that exists is not a folder
            blocker = os.path.dirname(blocker)
        raise ConfigError(f"download_once({final!r}): {blocker!r} is a file, not a folder; expected the folders "
                          f"of the path to be folders (or not to exist yet)") from None


def _rm(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except OSError:
            pass
