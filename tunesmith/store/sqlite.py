"""The experiment store: one SQLite file per experiment, WAL mode, the driver its only writer.

Everything is JSON (never pickles). Results are keyed by (trial, generation, iteration): a trial that
restarts from its own checkpoint (a pause, a retry, a resume) replaces its later results of the current
generation instead of duplicating them, while a PBT exploit starts a new generation, so the results the
old lineage reported after the cloned checkpoint are kept (the rows up to it move to the new generation:
a trial's current generation is its whole current history). Readers (CLI, dashboard,
``tunesmith.load``) open the file read-only and never block the writer.

Checkpoint paths are kept relative to the experiment folder (the folder the store file is in) and given
back absolute under the folder the store is in now: a moved or copied experiment finds its own
checkpoints, never the original folder's (``tunesmith._layout``). A new store is built under a temporary
name and renamed into place once its schema and first metadata are committed, so ``experiment.db`` is
never a half-made experiment. Anything wrong with the file (damaged, from a newer tunesmith, a table
missing, a value that is not JSON) is a ``StoreError`` naming the file.
"""

from __future__ import annotations

import errno
import functools
import itertools
import json
import math
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar, cast

from tunesmith._layout import STORE_FILE, driver_running, from_stored, live_status, to_stored
from tunesmith.trial import AUTO_KEYS as COLUMN_KEYS  # columns of the results table, not in a result's JSON
from tunesmith.trial import FLOAT_LIMIT, Result

__all__ = ["SCHEMA_VERSION", "STORE_FILE", "ResultRow", "Store", "StoreError", "dumps", "result_dict"]

SCHEMA_VERSION = 4
_TABLES = ("experiment", "trials", "results", "checkpoints", "events")  # and warm_start (schema 4: a reader of an
# older store finds none; the WARM_START_KEY meta says whether one was written)
WARM_START_KEY = "warm_start_taken"
_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL from Python 3.11

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiment (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    resources TEXT NOT NULL DEFAULT '{}',
    parent_id INTEGER,
    parent_iteration INTEGER,
    generation INTEGER NOT NULL DEFAULT 0,
    num_failures INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    iteration INTEGER NOT NULL DEFAULT 0,
    last_result TEXT,
    checkpoint TEXT,
    checkpoint_iteration INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    start_time REAL,
    end_time REAL
);
CREATE TABLE IF NOT EXISTS results (
    trial_id INTEGER NOT NULL,
    iteration INTEGER NOT NULL,
    time_total REAL NOT NULL,
    timestamp REAL NOT NULL,
    metrics TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    checkpointed INTEGER,
    PRIMARY KEY (trial_id, generation, iteration)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    trial_id INTEGER NOT NULL,
    iteration INTEGER NOT NULL,
    path TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (trial_id, iteration)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    trial_id INTEGER,
    data TEXT
);
CREATE TABLE IF NOT EXISTS warm_start (
    seq INTEGER PRIMARY KEY,
    source INTEGER NOT NULL,
    config TEXT NOT NULL,
    result TEXT NOT NULL
);
"""


def _v1_generations(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: PBT generations. Results are keyed by (trial, generation, iteration) and trials know
    their current generation; every existing row is generation 0 (schema 1 deleted superseded results)."""
    db.execute("ALTER TABLE trials ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE results RENAME TO results_v1")
    db.execute("CREATE TABLE results (trial_id INTEGER NOT NULL, iteration INTEGER NOT NULL, time_total REAL NOT NULL, "
               "timestamp REAL NOT NULL, metrics TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 0, "
               "PRIMARY KEY (trial_id, generation, iteration)) WITHOUT ROWID")
    db.execute("INSERT INTO results SELECT trial_id, iteration, time_total, timestamp, metrics, 0 FROM results_v1")
    db.execute("DROP TABLE results_v1")


def _v2_checkpointed(db: sqlite3.Connection) -> None:
    """Schema 2 -> 3: whether each result came with a checkpoint (1 or 0), kept when ``keep=`` deletes the
    checkpoint and its index row: a resume replays it to the scheduler as it came (PBT clones and pauses only
    where there was one). The rows written before are NULL, unknown: the replay goes by the index for them."""
    db.execute("ALTER TABLE results ADD COLUMN checkpointed INTEGER")


def _v3_warm_start(db: sqlite3.Connection) -> None:
    """Schema 3 -> 4: the earlier trials a warm-started experiment took in (``run(warm_start=...)``), kept with it
    so that a resume replays them instead of reading its sources again. A store of before has none (no
    ``WARM_START_KEY`` meta): its resume reads its sources once more, then keeps what it took."""
    db.execute("CREATE TABLE IF NOT EXISTS warm_start (seq INTEGER PRIMARY KEY, source INTEGER NOT NULL, "
               "config TEXT NOT NULL, result TEXT NOT NULL)")


# Small migration functions, one per version step: MIGRATIONS[v] takes a store at version v to v + 1.
MIGRATIONS: dict[int, Any] = {1: _v1_generations, 2: _v2_checkpointed, 3: _v3_warm_start}


class ResultRow(NamedTuple):
    """One stored result, as :meth:`Store.results` gives it back. Made per row on reads only (a resume, the
    CLI, ``tunesmith.load``), where it costs little beside SQLite's own work per row; the driver writes plain
    tuples in the same order."""

    trial_id: int
    iteration: int
    time_total: float
    timestamp: float
    metrics: str  # JSON, without the automatic keys (result_dict adds them)
    generation: int = 0  # bumped by each PBT exploit of the trial


@functools.lru_cache(maxsize=64)
def _rows_of(path: str) -> type[ResultRow]:
    """ResultRow of the store at ``path``: the rows a store reads name their file (``store``, a class attribute: no
    cost per row) in :func:`result_dict`'s message about a damaged one. Pickled and copied as a ResultRow."""

    def reduce(row: ResultRow) -> tuple[Any, ...]:
        return ResultRow._make, (tuple(row),)

    return cast("type[ResultRow]", type("ResultRow", (ResultRow,), {"__slots__": (), "store": path,
                                                                    "__reduce__": reduce}))


# rows of up to 7 values per INSERT statement, within SQLite's limit on bound variables (999 before 3.32)
ROWS_PER_INSERT = 1000 if sqlite3.sqlite_version_info >= (3, 32) else 142


_RESULT_COLUMNS = ("trial_id", "iteration", "time_total", "timestamp", "metrics", "generation", "checkpointed")


@functools.lru_cache(maxsize=64)
def _insert_results_sql(n: int, width: int = 7) -> str:
    """Rows of the first ``width`` columns: without a generation, generation 0; without ``checkpointed``,
    NULL (unknown)."""
    values = "(" + ", ".join(["?"] * width) + ")"
    return (f"INSERT OR REPLACE INTO results({', '.join(_RESULT_COLUMNS[:width])}) VALUES "
            + ",".join([values] * n))


def dumps(obj: Any) -> str:
    """JSON as tunesmith stores it: NaN and infinities kept (Python's json reads them back)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=True)


# the most the writer's -wal file keeps on disk after a checkpoint (``PRAGMA journal_size_limit``): a log that grew
# while a reader held a snapshot (``tunesmith report`` during a fast run) is cut back to it at the first commit once
# the log restarts; 4 times what SQLite's automatic checkpoint (1000 pages) lets it reach otherwise, so a steady
# run's log is never cut and grown again
WAL_SIZE_LIMIT = 16 * 1024 * 1024


class StoreError(RuntimeError):
    """The experiment file is missing, newer than this tunesmith, or damaged."""


_F = TypeVar("_F", bound=Callable[..., Any])


def _reading(fn: _F) -> _F:
    """A read that fails on a damaged file raises ``StoreError`` naming the file, not sqlite3/JSON errors."""

    @functools.wraps(fn)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            if self.readonly:
                self._still_unwatched()
            return fn(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot read the experiment store {self.path}: {e} (is the file damaged?)") from e
        except ValueError as e:  # json.JSONDecodeError
            raise StoreError(f"the experiment store {self.path} holds a value that is not valid JSON ({e}): "
                             f"the file is damaged") from e
        except RecursionError as e:  # JSON nested deeper than Python decodes (a made-up store)
            raise StoreError(f"the experiment store {self.path} holds a value nested too deeply to read ({e}): "
                             f"the file is damaged") from e

    return wrapper  # type: ignore[return-value]


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL
                                               or "disk is full" in str(exc))


def _private_copy(path: str) -> str:
    """A copy of the store at ``path`` and its ``-wal`` file in a new private temporary folder (its -shm is made
    there): what a reader reads of a log left without its -shm (:meth:`Store._side_files`). Neither file is opened
    through a link."""
    folder = tempfile.mkdtemp(prefix="tunesmith_store_")
    try:
        for suffix in ("", "-wal"):
            fd = os.open(path + suffix, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as src, open(os.path.join(folder, STORE_FILE + suffix), "wb") as dst:
                shutil.copyfileobj(src, dst)
    except OSError as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise StoreError(f"cannot read the experiment store {path}: its write-ahead log has no -shm file beside it, "
                         f"and copying both to read them failed ({e})") from e
    return folder


def _refuse_links(path: str) -> None:
    """A store, or its ``-wal``/``-shm``/``-journal`` file, that is a symbolic link is opened by nobody: the folder
    may be someone else's, and the link would take a driver (a second one, beside the other's lock) or a reader
    (SQLite writes the ``-shm`` file) into a file elsewhere."""
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        if os.path.islink(name):
            raise StoreError(f"the experiment store file {name} is a symbolic link (to {os.readlink(name)!r}): "
                             f"tunesmith opens no store through a link; copy the experiment's folder instead")


class Store:
    """One experiment's SQLite file. Open with ``readonly=True`` from anything that is not the driver.

    Args:
        path: the store file, ``<experiment folder>/experiment.db``.
        readonly: a reader: never writes, never blocks the driver.
        create: a new experiment: the store is built under a temporary name beside ``path`` until
            :meth:`publish` renames it into place (so a driver killed while creating leaves no store, and
            the name can be created again).
    """

    def __init__(self, path: str, readonly: bool = False, create: bool = False) -> None:
        self.path = path
        self.final_path = path
        self.folder = os.path.dirname(os.path.abspath(path))
        self.readonly = readonly
        if not create:
            _refuse_links(path)
        if readonly:
            if not os.path.exists(path):
                raise StoreError(f"no experiment store at {path}")
            if not os.path.isfile(path):
                raise StoreError(f"the experiment store {path} is not a file")
            # quoted: a folder named C#, a?b or 100% is a path, not a URI's fragment, query or escape
            uri = f"file:{_pathname2url(os.path.abspath(path))}?mode=ro"
            self._unwatched = self._side_files()
            self._copy: str | None = None  # the private copy of a log without its -shm (:meth:`_side_files`)
            if self._unwatched is not None and self._unwatched[0]:
                self._copy = _private_copy(self.path)
                uri = f"file:{_pathname2url(os.path.join(self._copy, STORE_FILE))}?mode=ro"
            elif self._unwatched is not None:
                uri += "&immutable=1"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            try:
                self._checked(lambda: self._db.execute("PRAGMA query_only=1"))
                self._check_schema()
            except StoreError as e:
                if not isinstance(e.__cause__, sqlite3.OperationalError) or os.access(self.folder, os.W_OK):
                    raise
                self._db.close()
                self._open_read_only_folder(uri)
        else:
            if create:
                self.path = os.path.join(self.folder, f".{os.path.basename(path)}.new")
                _remove_database(self.path)  # left by a driver killed while creating
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                self._checked(lambda: self._open_writer(building=create))
            except BaseException:
                self._db.close()
                raise
        self._db.execute("PRAGMA busy_timeout=5000")

    def _side_files(self) -> tuple[int, ...] | None:
        """How a reader opens a store that no driver holds (copied, moved, finished), so that it writes nothing in the
        folder: SQLite's usual reader of a WAL store makes the ``-wal`` and ``-shm`` files where they are missing
        (and leaves them), and writes its read marks into the ``-shm`` file. Without a log to read (no ``-wal``
        file, or an empty one) the store file alone is the experiment: it is read as immutable. A log holding
        results without its ``-shm`` (copied without it): SQLite would make one, so a private copy of the store
        and its log is read. Either way the sizes, mtimes and inodes returned are what :meth:`_still_unwatched`
        compares before each read (the first number: 1 for a copy). None: SQLite's usual reader, for a store a
        driver holds (it writes the folder anyway) or a log beside its ``-shm`` (a driver killed): one opened
        read-only (``readonly_shm``) would be the read-only one of a driver later opened in this process too (a
        resume after ``ts.load``), and copying every crashed experiment's store at each read costs too much."""
        if driver_running(self.folder):
            return None
        try:
            db = os.stat(self.path)
        except OSError:
            return None  # gone: the usual reader's error names it
        try:
            wal = os.lstat(self.path + "-wal")
        except OSError:
            wal = None  # no log
        if wal is None or not wal.st_size:
            return (0, db.st_size, db.st_mtime_ns, db.st_ino)
        if os.path.lexists(self.path + "-shm"):
            return None
        return (1, db.st_size, db.st_mtime_ns, db.st_ino, wal.st_size, wal.st_mtime_ns, wal.st_ino)

    def _still_unwatched(self) -> None:
        """Before a read through an immutable connection that :meth:`_side_files` chose: still no driver, no log, the
        store file as it was; else reopen as SQLite's usual reader (it reads what a driver wrote since)."""
        if self._unwatched is None or self._side_files() == self._unwatched:
            return
        self.close()
        self._unwatched = None
        uri = f"file:{_pathname2url(os.path.abspath(self.path))}?mode=ro"
        self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        self._checked(lambda: self._db.execute("PRAGMA query_only=1"))
        self._db.execute("PRAGMA busy_timeout=5000")

    def _open_read_only_folder(self, uri: str) -> None:
        """The store in a folder this process cannot write (a read-only mount, an archive) that SQLite's usual reader
        could not open: :meth:`_side_files` chose that reader because a process holds the experiment's lock (a
        driver), and the ``-shm`` file it needs beside a WAL store is not there and cannot be made. Without a
        ``-wal`` file (or an empty one), everything is in the file: it is read as immutable. A log holding results
        cannot be read without its ``-shm`` (nor copied safely while a driver may write it): a StoreError says so,
        rather than a partial experiment."""
        wal = self.path + "-wal"
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            raise StoreError(f"cannot read the experiment store {self.path}: its folder is read-only, and its "
                             f"write-ahead log ({os.path.basename(wal)}) holds results that SQLite reads only "
                             f"through a -shm file beside it ({os.path.basename(self.path)}-shm), which it can "
                             f"neither open nor make there; copy the folder somewhere writable and read it there")
        self._db = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        self._checked(lambda: self._db.execute("PRAGMA query_only=1"))
        self._check_schema()

    def _open_writer(self, building: bool = False) -> None:
        if building:
            # the temporary file of a new store: nothing reads it and a build that fails is removed, so no
            # journal file and no flush per commit; publish() flushes it once, whole, before it is renamed
            self._db.execute("PRAGMA journal_mode=MEMORY")
            self._db.execute("PRAGMA synchronous=OFF")
        else:
            self._writing_pragmas()
        self._migrate()
        self._check_schema()

    def _writing_pragmas(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed transaction survives a crash of the process (SIGKILL included);
        # only an OS crash or power loss can take the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")

    def _checked(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open the experiment store {self.path}: {e} (is the file damaged?)") from e

    def publish(self) -> None:
        """Rename a store made with ``create=True`` into place (after its schema and spec are committed).

        Closed first, so its write-ahead log is folded into the file: the renamed file is complete alone.
        """
        if self.path == self.final_path:
            return
        self._db.execute("PRAGMA journal_mode=WAL")  # kept in the file: the published store opens in WAL mode
        self._db.close()
        if os.path.exists(self.path + "-wal"):
            raise StoreError(f"the new experiment store {self.path} could not be completed (its write-ahead "
                             f"log is left); remove the folder and run again")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.path, self.final_path)
        _fsync_dir(self.folder)
        self.path = self.final_path
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._checked(self._writing_pragmas)  # its schema was made and checked while it was built
        self._db.execute("PRAGMA busy_timeout=5000")

    # -- schema -------------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        """Refuse a store this tunesmith cannot read: newer, never completed, or with a table missing."""
        version = self._checked(lambda: self._db.execute("PRAGMA user_version").fetchone()[0])
        # a reader of a schema-1 store (never migrated: readers do not write) reads it without generations
        self._generations = version >= 2 or version == 0
        self._checkpointed = version >= 3 or version == 0  # schema 2: no results.checkpointed
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer tunesmith (schema {version} > "
                             f"{SCHEMA_VERSION}); upgrade tunesmith to read it")
        tables = {row[0] for row in self._checked(
            lambda: self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall())}
        missing = [t for t in _TABLES if t not in tables]
        if version == 0 and len(missing) == len(_TABLES):
            raise StoreError(f"{self.path} is not a tunesmith experiment store (it has no tables)")
        if missing:
            raise StoreError(f"the experiment store {self.path} is damaged: table {missing[0]!r} is missing")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            with self.transaction():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer tunesmith (schema {version} > "
                             f"{SCHEMA_VERSION}); upgrade tunesmith to read it")
        while version < SCHEMA_VERSION:
            with self.transaction():
                MIGRATIONS[version](self._db)
                version += 1
                self._db.execute(f"PRAGMA user_version={version}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing. The error that stopped it is the one raised: a ROLLBACK that fails (SQLite already
        rolled back after a full disk) must not hide "database or disk is full"; a failed COMMIT rolls back
        too, so the connection is never left inside a transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error says what went wrong
            note = getattr(exc, "add_note", None)  # Python 3.11+: shown with the traceback
            if note is not None and _disk_full(exc):
                note(f"the disk holding {self.path} is full (ENOSPC): free space, then resume")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Within this block every read of this connection sees the store as at the block's first read (one read
        transaction: the driver's commits meanwhile are not seen, and do not wait for it; in WAL mode a reader never
        blocks the writer, it only keeps the log from being folded back past its state until it ends). Nested
        blocks share the outer one's state."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            if self._db.in_transaction:
                self._db.execute("COMMIT")  # a read transaction: nothing to write, it ends it

    @property
    def in_snapshot(self) -> bool:
        """Whether a :meth:`snapshot` block is open on this connection."""
        return self._db.in_transaction

    def close(self) -> None:
        self._db.close()
        copy = getattr(self, "_copy", None)
        if copy is not None:
            self._copy = None
            shutil.rmtree(copy, ignore_errors=True)

    def __del__(self) -> None:
        # a Store let go closes its file now: a sqlite3 connection sits in a reference cycle of its own (its
        # statement cache), and left to the garbage collector it stays open, then folds its write-ahead log into
        # the file at some later moment (a ResultSet dropped in a loop of runs, a folder copied right after)
        db = getattr(self, "_db", None)
        if db is not None:
            try:
                db.close()
            except Exception:  # noqa: BLE001 - an interpreter at exit, a connection already gone
                pass
        copy = getattr(self, "_copy", None)
        if copy is not None:
            shutil.rmtree(copy, ignore_errors=True)

    # -- experiment ---------------------------------------------------------------------------------
    def set_meta(self, db: sqlite3.Connection, key: str, value: Any) -> None:
        """Set an experiment value. Setting the status to running (a start or a resume) drops the indexes of
        :meth:`index_results`: a running experiment's writes pay for no index."""
        db.execute("INSERT OR REPLACE INTO experiment(key, value) VALUES (?, ?)", (key, dumps(value)))
        if key == "status" and value == "running":
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND (name LIKE "
                                      f"'results_metric_%' OR name = '{_STATUS_INDEX}')").fetchall():
                db.execute(f"DROP INDEX {name}")

    def index_results(self) -> bool:
        """Index the experiment's metrics in its results (:func:`index_metrics`), in a transaction of its own:
        the driver calls it once the experiment finished (after its last results and status are committed), so
        ``get_best(scope="all")`` of a finished experiment is a seek per trial, while a running one's writes
        pay for no index (an index on the results doubled the cost of storing a result; build: about a second
        per million results). False when it could not be made (a full disk...): readers then scan."""
        try:
            spec = json.loads((self._db.execute("SELECT value FROM experiment WHERE key = 'spec'").fetchone()
                               or ["{}"])[0])
            metric = spec.get("metric") if isinstance(spec, dict) else None
            with self.transaction() as db:
                index_metrics(db, metric if isinstance(metric, list) else [metric])
            return True
        except (sqlite3.Error, ValueError):
            return False

    @_reading
    def meta(self) -> dict[str, Any]:
        return {k: _json(v, functools.partial(self._damaged_meta, k))
                for k, v in self._db.execute("SELECT key, value FROM experiment")}

    def _damaged_meta(self, key: str) -> str:
        return f"the experiment store {self.path} is damaged: its {key!r}"

    # -- writes (driver only, inside transaction()) -------------------------------------------------
    @staticmethod
    def insert_trial(db: sqlite3.Connection, trial_id: int, config: dict[str, Any],
                     resources: dict[str, float], status: str, parent_id: int | None = None,
                     parent_iteration: int | None = None, created: float | None = None,
                     start_time: float | None = None) -> int:
        """``created``: when the trial was made (default now; the row may be written after it started). Returns the
        length of the config's JSON (the driver says when it is large: ``_controller.big_config_warning``)."""
        text = dumps(config)
        db.execute(
            "INSERT INTO trials(id, config, status, resources, parent_id, parent_iteration, created, start_time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (trial_id, text, status, dumps(resources), parent_id, parent_iteration,
             time.time() if created is None else created, start_time))
        return len(text)

    @staticmethod
    def append_results(db: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert (or replace: a later row of the same trial, generation and iteration wins) result rows
        (trial, iteration, time_total, timestamp, metrics, generation, checkpointed: whether it came with a
        checkpoint; without it: NULL, unknown; without the generation as well: generation 0), up to
        ``ROWS_PER_INSERT`` in one statement. Not ``executemany``: it gives up the interpreter lock around
        every row's step, and with another thread of the driver busy (the file loggers' writer, a user's
        callback thread) taking it back can wait the interpreter's switch interval per row
        (``sys.getswitchinterval()``); one statement for many rows does not (measure both with
        ``.venv/bin/python benchmarks/store.py``)."""
        rows = rows if isinstance(rows, list) else list(rows)
        step = ROWS_PER_INSERT
        width = len(rows[0]) if rows else 7
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            db.execute(_insert_results_sql(len(part), width), list(itertools.chain.from_iterable(part)))

    def add_checkpoints(self, db: sqlite3.Connection, rows: Iterable[tuple[int, int, str, float]]) -> None:
        """Index checkpoints (trial, iteration, absolute path, time); paths in the folder are stored relative."""
        folder = self.folder
        db.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                       [(tid, it, to_stored(folder, path), t) for tid, it, path, t in rows])

    def remove_checkpoints(self, db: sqlite3.Connection, rows: Iterable[tuple[int, int, str]]) -> None:
        """Drop the index rows of checkpoints (trial, iteration, absolute path): only a row that still names
        that folder (the trial may have re-reached the iteration since, under another folder name)."""
        folder = self.folder
        db.executemany("DELETE FROM checkpoints WHERE trial_id = ? AND iteration = ? AND path = ?",
                       [(tid, it, to_stored(folder, path)) for tid, it, path in rows])

    def update_trial(self, db: sqlite3.Connection, trial_id: int, **fields: Any) -> None:
        """Set a trial's columns; a ``checkpoint`` path in the folder is stored relative to it."""
        if fields.get("checkpoint") is not None:
            fields["checkpoint"] = to_stored(self.folder, fields["checkpoint"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE trials SET {cols} WHERE id = ?", (*fields.values(), trial_id))

    def update_trials(self, db: sqlite3.Connection, changes: dict[int, dict[str, Any]],
                      events: Iterable[tuple[str, int | None, Any]] = ()) -> None:
        """A batch's row changes: ``changes`` maps a trial to the columns to set (one UPDATE per trial), and
        ``events`` are (kind, trial, data) to log, in order."""
        for trial_id, fields in changes.items():
            self.update_trial(db, trial_id, **fields)
        for kind, about, data in events:
            self.log_event(db, kind, about, data)

    @staticmethod
    def truncate_results(db: sqlite3.Connection, trial_id: int, after_iteration: int) -> None:
        """Drop the current generation's results and the checkpoint entries after ``after_iteration`` (a
        restart from the trial's own checkpoint: what it reports next replaces them)."""
        db.execute("DELETE FROM results WHERE trial_id = ? AND iteration > ? AND generation = "
                   "(SELECT generation FROM trials WHERE id = ?)", (trial_id, after_iteration, trial_id))
        db.execute("DELETE FROM checkpoints WHERE trial_id = ? AND iteration > ?", (trial_id, after_iteration))

    @staticmethod
    def new_generation(db: sqlite3.Connection, trial_id: int, at_iteration: int, generation: int) -> None:
        """A PBT exploit: the trial continues from a checkpoint of iteration ``at_iteration`` as generation
        ``generation``. Its rows up to that iteration move to the new generation (they stay its current
        history); the ones after it keep the old generation (the superseded lineage, kept as data). Its own
        checkpoint entries after it are dropped (the files go with retention's ledger)."""
        db.execute("UPDATE results SET generation = ? WHERE trial_id = ? AND generation = ? AND iteration <= ?",
                   (generation, trial_id, generation - 1, at_iteration))
        db.execute("UPDATE trials SET generation = ? WHERE id = ?", (generation, trial_id))
        db.execute("DELETE FROM checkpoints WHERE trial_id = ? AND iteration > ?", (trial_id, at_iteration))

    @staticmethod
    def undo_generation(db: sqlite3.Connection, trial_id: int, generation: int, event_seq: int) -> None:
        """A PBT exploit undone (``tunesmith._exploit.undo_exploit``: the trial ended before its new config reported
        anything): the rows :meth:`new_generation` moved into ``generation`` go back to the one before, the trial is
        of that generation again, and the exploit's event ``event_seq`` becomes an ``exploit_undone`` one (the
        readers of ``exploit`` events leave it out; a resume's replay reads it)."""
        db.execute("UPDATE results SET generation = ? WHERE trial_id = ? AND generation = ?",
                   (generation - 1, trial_id, generation))
        db.execute("UPDATE trials SET generation = ? WHERE id = ?", (generation - 1, trial_id))
        db.execute("UPDATE events SET kind = 'exploit_undone' WHERE seq = ? AND kind = 'exploit'", (event_seq,))

    def set_warm_start(self, db: sqlite3.Connection, trials: list[tuple[int, Any, Any]] | None) -> None:
        """Keep the earlier trials a warm start handed the searcher, (source index in the spec's ``warm_start``,
        config, last result) in order, in place of any kept before; ``WARM_START_KEY`` says how many. None: none
        kept, as in a store of before schema 4 (a failed resume of one puts that back)."""
        db.execute("DELETE FROM warm_start")
        if trials is None:
            db.execute("DELETE FROM experiment WHERE key = ?", (WARM_START_KEY,))
            return
        db.executemany("INSERT INTO warm_start(source, config, result) VALUES (?, ?, ?)",
                       [(source, dumps(config), dumps(result)) for source, config, result in trials])
        self.set_meta(db, WARM_START_KEY, len(trials))

    @_reading
    def warm_start_trials(self) -> list[tuple[int, Any, Any]]:
        """The earlier trials kept by :meth:`set_warm_start`, in their order."""
        return [(source, _json(config, functools.partial(self._damaged_warm, seq)),
                 _json(result, functools.partial(self._damaged_warm, seq)))
                for seq, source, config, result in self._db.execute("SELECT * FROM warm_start ORDER BY seq")]

    def _damaged_warm(self, seq: int) -> str:
        return f"the experiment store {self.path} is damaged: its warm_start row {seq}"

    @staticmethod
    def log_event(db: sqlite3.Connection, kind: str, trial_id: int | None, data: Any = None) -> int:
        """Append an event; returns its ``seq``."""
        cur = db.execute("INSERT INTO events(time, kind, trial_id, data) VALUES (?, ?, ?, ?)",
                         (time.time(), kind, trial_id, None if data is None else dumps(data)))
        return int(cur.lastrowid or 0)

    @staticmethod
    def delete_event(db: sqlite3.Connection, seq: int) -> None:
        """Remove the event ``seq`` (one logged by a run that then did nothing, e.g. a refused resume's)."""
        db.execute("DELETE FROM events WHERE seq = ?", (seq,))

    # -- reads --------------------------------------------------------------------------------------
    def _crashed(self) -> bool:
        """Whether this reader's experiment is crashed (``_layout.live_status``: stored as running, no driver holds
        its lock): its trials stored RUNNING run no more, and every read shows them PAUSED, as a Ctrl-C or a failure
        leaves them and as a resume continues them (from their last checkpoint). The store keeps RUNNING."""
        if not self.readonly:
            return False
        row = self._db.execute("SELECT value FROM experiment WHERE key = 'status'").fetchone()
        stored = "running" if row is None else _json(row[0], functools.partial(self._damaged_meta, "status"))
        return live_status(self.folder, str(stored)) == "crashed"

    def status_sql(self) -> str:
        """The SQL expression of a trial's status as this reader shows it (the ``status`` column, but PAUSED for
        RUNNING in a crashed experiment: :meth:`_crashed`), for a query over the trials table."""
        return _SHOWN_STATUS if self._crashed() else "status"

    def _shown_statuses(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``records`` with the status this reader shows (:meth:`_crashed`; asked only when one is RUNNING)."""
        if any(rec["status"] == "RUNNING" for rec in records) and self._crashed():
            for rec in records:
                if rec["status"] == "RUNNING":
                    rec["status"] = "PAUSED"
        return records

    @_reading
    def trials(self) -> list[dict[str, Any]]:
        """Every trial's row, JSON decoded; ``checkpoint`` an absolute path under this folder (or a URL); the status
        as readers show it (:meth:`_crashed`)."""
        cur = self._db.execute("SELECT * FROM trials ORDER BY id")
        names = [d[0] for d in cur.description]
        return self._shown_statuses([self._trial_record(names, row) for row in cur])

    @_reading
    def trial_briefs(self, key: str | None = None) -> list[tuple[int, str, int, str | None, str, Any]]:
        """Every trial's (id, status, iteration, last result, config, value at ``key``) by id, the JSON undecoded:
        what ranking the trials by ``key`` needs (`tunesmith show` decodes a config only when sorting by it).

        The value at ``key`` is the number the last result holds there, picked by SQLite's JSON functions (no
        JSON decoded in Python), or the text ``"absent"`` when the trial has no last result or it lacks the key,
        or ``"decode"`` when only Python's JSON can tell (a bool, text, a list; NaN or Infinity, which SQLite's
        JSON cannot read; a key a JSON path cannot spell as it is, ``_json_path``). Without ``key``: None."""
        path = None if key is None else _json_path(key)
        if path is None:
            pick = "NULL" if key is None else "'decode'"
        else:  # a number as _NUMBER reads it; else whether the key is there at all
            pick = (f"CASE WHEN last_result IS NULL THEN 'absent' WHEN NOT json_valid(last_result) THEN 'decode' ELSE "
                    f"coalesce({_NUMBER.format('last_result')}, CASE WHEN json_type(last_result, ?) IS NULL THEN "
                    f"'absent' ELSE 'decode' END) END")
        return self._db.execute(f"SELECT id, {self.status_sql()}, iteration, last_result, config, {pick} FROM trials "
                                f"ORDER BY id", () if path is None else (path, path, path)).fetchall()

    @_reading
    def trial(self, trial_id: int) -> dict[str, Any] | None:
        """One trial's row as :meth:`trials` gives it (None if there is no such trial): one primary-key lookup."""
        cur = self._db.execute("SELECT * FROM trials WHERE id = ?", (trial_id,))
        row = cur.fetchone()
        return None if row is None else self._shown_statuses([self._trial_record([d[0] for d in cur.description],
                                                                                 row)])[0]

    def _trial_record(self, names: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
        rec = dict(zip(names, row))
        for key in ("config", "resources", "last_result"):
            if rec[key] is not None:
                rec[key] = _object(rec[key], functools.partial(self._damaged, rec["id"], key))
        if rec["last_result"] is not None:
            rec["last_result"] = within_floats(rec["last_result"])
        rec["checkpoint"] = self._checkpoint_path(rec["checkpoint"], rec["id"])
        rec.setdefault("generation", 0)  # schema 1
        return rec

    def _checkpoint_path(self, stored: Any, trial_id: int, iteration: int | None = None) -> Any:
        """A stored checkpoint path (a trial's, or the index row of its checkpoint of ``iteration``) under this
        folder (``_layout.from_stored``); a ``StoreError`` naming the store, the trial and the path when it leaves
        the folder's ``trials/<trial>/checkpoints/`` or is not text: the store may be someone else's."""
        try:
            return from_stored(self.folder, stored)
        except ValueError as e:
            of = "checkpoint" if iteration is None else f"checkpoint of iteration {iteration} (the index)"
            raise StoreError(f"{self._damaged(trial_id, of)}: {e}") from None

    def _damaged(self, trial_id: int, column: str) -> str:
        return f"the experiment store {self.path} is damaged: trial {trial_id}'s {column}"

    @_reading
    def data_version(self) -> int:
        """SQLite's count for this connection of the commits other connections made (``PRAGMA data_version``): equal
        between two calls when nothing was written in between (`show --watch` then reads nothing)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    @_reading
    def trial_counts(self) -> dict[str, int]:
        """{status: number of trials}, counted by SQLite (nothing decoded; in a finished experiment from the index on
        the status that :func:`index_metrics` built), by the status readers show (:meth:`_crashed`)."""
        return dict(self._db.execute(f"SELECT {self.status_sql()} AS shown, COUNT(*) FROM trials GROUP BY shown"
                                     ).fetchall())

    @_reading
    def best_by_trial(self, key: str, mode: str, feasible: bool = False) -> dict[int, float] | None:
        """Each trial's best value of the metric ``key`` over the stored results its current config produced
        (``_PRODUCED``; ``mode`` "min" or "max"): {trial: value} for the trials that reported it as a real
        number (not a bool, not NaN). SQLite reads the JSON and aggregates, so a million results are not
        decoded in Python; only rows its JSON reader refuses (Python writes NaN and infinities as
        ``NaN``/``Infinity``) are decoded here. None when ``key`` cannot be written as an SQLite JSON path
        (``_json_path``: a quote, a backslash, a character JSON escapes) or is an automatic key (``COLUMN_KEYS``,
        not in the JSON): the caller scans.
        ``feasible=True``: only the results that meet ``run(constraints=...)`` (:func:`feasible_result`) count,
        checked by SQLite too."""
        path = _json_path(key)
        if path is None or key in COLUMN_KEYS:
            return None
        feasible_sql = f" AND {_feasible_sql('r.metrics')}" if feasible else ""
        join = f" JOIN trials t ON t.id = r.trial_id AND {_PRODUCED if self._generations else _PRODUCED_V1}"
        agg = "MIN" if mode == "min" else "MAX"
        out: dict[int, float] = {}
        unreadable: list[int] = []
        indexed = self._generations and self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (_metric_index_name(key),)).fetchone()
        if indexed:  # one index seek per trial for its best, one for whether it has rows SQLite cannot read
            # (numbers sort before text, so "< ''" is the numbers; ORDER BY ... LIMIT 1, not MIN(): SQLite seeks
            # the index's end only for that spelling)
            value = _indexed_value(key, "r.metrics")
            query = (f"SELECT t.id, (SELECT {value} FROM results r WHERE r.trial_id = t.id AND {_PRODUCED} "
                     f"AND {value} < ''{feasible_sql} ORDER BY {value} "
                     f"{'ASC' if mode == 'min' else 'DESC'} LIMIT 1), EXISTS (SELECT 1 FROM results r INDEXED BY "
                     f"{_metric_index_name(key)} WHERE r.trial_id = t.id AND {_PRODUCED} AND "
                     f"{value} = '{_UNREADABLE}') FROM trials t")
            rows = self._db.execute(query)
        else:
            rows = self._db.execute(
                f"SELECT r.trial_id, {agg}(CASE WHEN json_valid(r.metrics){feasible_sql} THEN "
                f"{_NUMBER.format('r.metrics')} END), SUM(NOT json_valid(r.metrics)) FROM results r{join} "
                "GROUP BY r.trial_id", (path, path))
        for tid, value, refused in rows:
            if value is not None:
                out[tid] = value
            if refused:
                unreadable.append(tid)
        better = min if mode == "min" else max
        for tid in unreadable:
            for it, metrics in self._db.execute(f"SELECT r.iteration, r.metrics FROM results r{join} WHERE "
                                                "r.trial_id = ? AND NOT json_valid(r.metrics)", (tid,)):
                decoded = _object(metrics, functools.partial(_damaged_result, self.path, tid, it))
                if feasible and not feasible_result(decoded):
                    continue
                found = _real(decoded.get(key))
                if found is not None:
                    out[tid] = found if tid not in out else better(out[tid], found)
        return out

    @_reading
    def best_result(self, trial_id: int, key: str, mode: str, feasible: bool = False) -> ResultRow | None:
        """The result a trial's current config produced (``_PRODUCED``) with the best real value of ``key`` (the
        earliest of equals), found in the metric's index (:func:`index_metrics`); None when there is no index, the
        trial has rows SQLite's JSON reader refuses (NaN, infinities: the caller scans the trial's rows), or no such
        value.
        ``feasible=True``: among the results that meet ``run(constraints=...)`` only."""
        if not self._generations or _json_path(key) is None or key in COLUMN_KEYS or not self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (_metric_index_name(key),)).fetchone():
            return None
        value, name = _indexed_value(key, "r.metrics"), _metric_index_name(key)
        # ``_PRODUCED``, with the trial's row read once for each of its two columns
        where = ("r.trial_id = ? AND r.generation = (SELECT generation FROM trials WHERE id = ?) AND r.iteration > "
                 "(SELECT coalesce(parent_iteration, -1) FROM trials WHERE id = ?)")
        if self._db.execute(f"SELECT 1 FROM results r INDEXED BY {name} WHERE {where} AND {value} = '{_UNREADABLE}' "
                            "LIMIT 1", (trial_id,) * 3).fetchone():
            return None
        kept = f" AND {_feasible_sql('r.metrics')}" if feasible else ""
        row = self._db.execute(
            f"SELECT r.trial_id, r.iteration, r.time_total, r.timestamp, r.metrics, r.generation FROM results r "
            f"INDEXED BY {name} WHERE {where} AND {value} < ''{kept} ORDER BY {value} "
            f"{'ASC' if mode == 'min' else 'DESC'}, r.iteration LIMIT 1", (trial_id,) * 3).fetchone()
        return None if row is None else _rows_of(self.path)._make(row)

    @_reading
    def best_overall(self, key: str, mode: str) -> ResultRow | None:
        """The result with the best real value of ``key`` among those every trial's current config produced
        (``_PRODUCED``; the lowest trial id, then the earliest iteration, among equals). In a finished experiment it
        is read from the metric's value-ordered index (:func:`index_metrics`): the best value at one end of it, then
        the first current row holding it. In a running one (no index yet) SQLite reads every current result's JSON
        in one pass, in key order: its min()/max() takes the other columns from the first row holding the best
        value. Rows SQLite's JSON reader refuses (NaN, infinities) are found by one more seek (a second pass without
        the index, only when the first counted some) and decoded here. None when no trial reported a real value,
        for a name a JSON path cannot spell or a schema-1 store (the caller ranks the trials)."""
        if not self._generations or _json_path(key) is None or key in COLUMN_KEYS:
            return None
        name = _metric_index_name(key, "value")
        indexed = self._has_index(name)
        # CROSS JOIN: the index is the outer loop, so rows come in its order; a row counts when its trial's current
        # config produced it (``_PRODUCED``: a PBT exploit's superseded rows, and those before its clone, are skipped)
        source = (f" FROM results r{f' INDEXED BY {name}' if indexed else ''} CROSS JOIN trials t ON t.id = "
                  f"r.trial_id AND {_PRODUCED}")
        cols = "r.trial_id, r.iteration, r.time_total, r.timestamp, r.metrics, r.generation"
        candidates: list[tuple[float, ResultRow]] = []
        value = _indexed_value(key, "r.metrics")  # a number, NULL, or 'unreadable' (numbers sort before text)
        if indexed:
            top = self._db.execute(f"SELECT {value}{source} WHERE {value} < '' ORDER BY {value} "
                                   f"{'ASC' if mode == 'min' else 'DESC'} LIMIT 1").fetchone()
            if top is not None:
                row = self._db.execute(f"SELECT {cols}{source} WHERE {value} = ? ORDER BY r.trial_id, r.generation, "
                                       "r.iteration LIMIT 1", (top[0],)).fetchone()
                candidates.append((top[0], _rows_of(self.path)._make(row)))
            refusing = True
        else:
            # the subquery's order is kept (an aggregate's subquery with ORDER BY is not flattened) and is the order
            # the results are scanned in, their key's (nothing sorted); min()/max() keep the first row of the best
            top = self._db.execute(
                f"SELECT {'MIN' if mode == 'min' else 'MAX'}(CASE WHEN v < '' THEN v END), SUM(v = '{_UNREADABLE}'), "
                f"trial_id, iteration, time_total, timestamp, metrics, generation FROM (SELECT {value} AS v, {cols} "
                f"FROM trials t JOIN results r ON r.trial_id = t.id AND {_PRODUCED} ORDER BY "
                f"r.trial_id, r.generation, r.iteration)").fetchone()
            if top[0] is not None:
                candidates.append((top[0], _rows_of(self.path)._make(top[2:])))
            refusing = bool(top[1])
        refused = self._db.execute(f"SELECT {cols}{source} WHERE {value} = '{_UNREADABLE}'") if refusing else ()
        for row in refused:
            decoded = _object(row[4], functools.partial(_damaged_result, self.path, row[0], row[1], row[5]))
            found = _real(decoded.get(key))
            if found is not None:
                candidates.append((found, _rows_of(self.path)._make(row)))
        if not candidates:
            return None
        sign = 1 if mode == "min" else -1
        return min(candidates, key=lambda c: (sign * c[0], c[1].trial_id, c[1].iteration))[1]

    def _has_index(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                                (name,)).fetchone() is not None

    @_reading
    def best_last(self, key: str, mode: str) -> tuple[int, float] | None:
        """(trial, value) of the trial whose last result has the best real value of ``key`` (the lowest id among
        equals), or None when no trial has one; SQLite ranks (in a finished experiment, from the index of
        :func:`index_metrics` over the last results: two index reads), and only last results its JSON reader
        refuses (NaN, infinities) are decoded here, or every last result for a name its JSON path cannot spell
        (``_json_path``)."""
        path = _json_path(key)
        order = "ASC" if mode == "min" else "DESC"
        name = _metric_index_name(key, "last")
        best: tuple[int, float] | None = None
        if path is None:
            refused = self._db.execute("SELECT id, last_result FROM trials WHERE last_result IS NOT NULL")
        elif self._has_index(name):
            indexed = _indexed_value(key, "last_result")
            top = self._db.execute(f"SELECT {indexed} FROM trials INDEXED BY {name} WHERE {indexed} < '' ORDER BY "
                                   f"{indexed} {order} LIMIT 1").fetchone()
            if top is not None:
                found = self._db.execute(f"SELECT id FROM trials INDEXED BY {name} WHERE {indexed} = ? ORDER BY id "
                                         "LIMIT 1", (top[0],)).fetchone()
                best = (found[0], top[0])
            refused = self._db.execute(f"SELECT id, last_result FROM trials INDEXED BY {name} WHERE {indexed} = "
                                       f"'{_UNREADABLE}' AND last_result IS NOT NULL")
        else:
            found = self._db.execute(
                f"SELECT id, v FROM (SELECT id, {_NUMBER.format('last_result')} AS v FROM trials "
                f"WHERE json_valid(last_result)) WHERE v IS NOT NULL ORDER BY v {order}, id LIMIT 1",
                (path, path)).fetchone()
            best = None if found is None else (found[0], found[1])
            refused = self._db.execute("SELECT id, last_result FROM trials WHERE last_result IS NOT NULL "
                                       "AND NOT json_valid(last_result)")
        for tid, last in refused:
            decoded = json.loads(last)
            value = _real(decoded.get(key)) if isinstance(decoded, dict) else None
            if value is None:
                continue
            if best is None or (value < best[1] if mode == "min" else value > best[1]) or (
                    value == best[1] and tid < best[0]):
                best = (tid, value)
        return best

    @_reading
    def any_last_result_has(self, key: str) -> bool:
        """Whether some trial's last result has the key ``key`` (a text search by SQLite, nothing decoded; for a
        key of :data:`FLAGGED_KEYS` in a finished experiment, a read of its partial index, empty when none has)."""
        name = _metric_index_name(key, "has")
        if key in FLAGGED_KEYS and self._has_index(name):
            return self._db.execute(f"SELECT 1 FROM trials INDEXED BY {name} WHERE {_has_key(key)} LIMIT 1"
                                    ).fetchone() is not None
        return self._db.execute("SELECT 1 FROM trials WHERE instr(last_result, ?) LIMIT 1",
                                (json.dumps(key) + ":",)).fetchone() is not None

    @_reading
    def results(self, trial_id: int | None = None, all_generations: bool = False) -> list[ResultRow]:
        """Every stored result of the trials' current generation (of one trial, or of all, by trial), in
        iteration order; ``all_generations=True`` adds the rows PBT exploits superseded (ordered by trial,
        generation, iteration)."""
        cols = "r.trial_id, r.iteration, r.time_total, r.timestamp, r.metrics, r.generation"
        if not self._generations:
            cols, join, order = "r.trial_id, r.iteration, r.time_total, r.timestamp, r.metrics, 0", "", \
                "r.trial_id, r.iteration"
        elif all_generations:
            join, order = "", "r.trial_id, r.generation, r.iteration"
        else:
            join = " JOIN trials t ON t.id = r.trial_id AND t.generation = r.generation"
            order = "r.trial_id, r.iteration"
        where, args = "", ()
        if trial_id is not None:
            where, args = " WHERE r.trial_id = ?", (trial_id,)  # type: ignore[assignment]
        elif join:  # every trial's: trials first, then each one's rows by key, already in order (no sort)
            cur = self._db.execute(f"SELECT {cols} FROM trials t CROSS JOIN results r ON r.trial_id = t.id AND "
                                   "r.generation = t.generation ORDER BY t.id, r.iteration")
            return list(map(_rows_of(self.path)._make, cur))
        cur = self._db.execute(f"SELECT {cols} FROM results r{join}{where} ORDER BY {order}", args)
        return list(map(_rows_of(self.path)._make, cur))

    def result_chunks(self, size: int = 4096) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of :meth:`results` (all trials, current generations, by trial and iteration) as lists of up
        to ``size`` plain tuples (trial, iteration, time_total, timestamp, metrics): a million results are
        never all in memory as Python objects at once."""
        cols = "r.trial_id, r.iteration, r.time_total, r.timestamp, r.metrics"
        # trials first, then each one's rows by key: already in order, no sort of a million rows
        source = (" FROM trials t CROSS JOIN results r ON r.trial_id = t.id AND r.generation = t.generation"
                  if self._generations else " FROM results r")
        try:
            cur = self._db.execute(f"SELECT {cols}{source} ORDER BY {'t.id' if self._generations else 'r.trial_id'}, "
                                   "r.iteration")
            while True:
                part = cur.fetchmany(size)
                if not part:
                    return
                yield part
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot read the experiment store {self.path}: {e} (is the file damaged?)") from e

    @_reading
    def result_columns(self, keys: Iterable[str] = ()) -> dict[str, Any]:
        """Every stored result of the trials' current generation in one pass, as numpy columns (ordered by
        trial, then iteration): ``trial_id``, ``training_iteration``, ``time_total_s``, ``timestamp`` and one
        float column per key of ``keys``, NaN where a result lacks the key or holds no finite number.

        For readers of a million results (the report): 8 bytes a value instead of a dict per result, and
        each result's JSON decoded once whatever the number of keys. Without ``keys`` nothing is decoded.
        """
        import math

        import numpy as np

        auto = COLUMN_KEYS  # columns, as result_dict gives them
        wanted = [k for k in dict.fromkeys(keys) if k not in auto]
        # SQLite's JSON functions pick the numbers out and numpy takes the rows without a Python object per
        # row (faster than json.loads and a loop: benchmarks/readers.py); a row SQLite cannot read (NaN or
        # Infinity, which Python's JSON writes) is decoded here afterwards. A key a JSON path cannot spell
        # as it is (``_json_path``) is read by json.loads for every row.
        fast = [k for k in wanted if _json_path(k) is not None]
        slow = [k for k in wanted if k not in fast]
        picks, args = "", []
        for key in fast:
            path = _json_path(key)
            # 9e999 is SQLite's infinity: no number here (numpy takes no NULL; infinities become NaN below)
            picks += (", CASE WHEN json_valid(r.metrics) THEN CASE json_type(r.metrics, ?) WHEN 'real' THEN "
                      "json_extract(r.metrics, ?) WHEN 'integer' THEN json_extract(r.metrics, ?) ELSE 9e999 END "
                      "ELSE 9e999 END")
            args += [path, path, path]
        join = " JOIN trials t ON t.id = r.trial_id AND t.generation = r.generation" if self._generations else ""
        # the primary key's order (one generation per trial here): ordering by (trial_id, iteration) alone
        # makes SQLite sort each trial's rows again
        order = " ORDER BY r.trial_id, r.generation, r.iteration" if self._generations else \
            " ORDER BY r.trial_id, r.iteration"
        # a row SQLite reads as a JSON object (json_type after json_valid: measured no slower on a million rows);
        # any other row is decoded here, and one that is not an object (a damaged store) is a StoreError naming
        # it, not a row left out of every plot
        readable = "CASE WHEN json_valid(r.metrics) THEN json_type(r.metrics) = 'object' ELSE 0 END"
        valid = f", {readable}" if wanted else ", 1"
        sql = f"SELECT r.trial_id, r.iteration, r.time_total, r.timestamp{valid}{picks} FROM results r{join}{order}"
        dtype = [("trial_id", "i8"), ("it", "i8"), ("total", "f8"), ("stamp", "f8"), ("valid", "i8")]
        dtype += [(f"k{i}", "f8") for i in range(len(fast))]
        table = np.fromiter(self._db.execute(sql, args), dtype=dtype)
        out = {"trial_id": table["trial_id"], auto[0]: table["it"], auto[1]: table["total"], auto[2]: table["stamp"]}
        for i, key in enumerate(fast):
            out[key] = table[f"k{i}"].copy()
        for key in slow:
            out[key] = np.full(len(table), math.nan)
        redo = np.arange(len(table)) if slow else np.flatnonzero(table["valid"] == 0)
        if len(redo):
            where = "" if slow else f" WHERE NOT ({readable})"
            generation = "r.generation" if self._generations else "0"  # schema 1: none
            texts = self._db.execute(f"SELECT r.trial_id, r.iteration, {generation}, r.metrics FROM results r{join}"
                                     f"{where}{order}")
            for at, (tid, it, gen, text) in zip(redo.tolist(), texts):
                decoded = _object(text, functools.partial(_damaged_result, self.path, tid, it, gen))
                for key in wanted:
                    v: Any = decoded.get(key)
                    kind = type(v)
                    out[key][at] = v if kind is float else _as_float(v) if kind is int else math.nan
        for key in wanted:
            out[key][~np.isfinite(out[key])] = np.nan  # infinities are no more plottable than NaN
        return out

    @_reading
    def checkpointed(self, trial_id: int) -> set[tuple[int, int]]:
        """(generation, iteration) of a trial's results that came with a checkpoint, every generation, whether
        the checkpoint is still there or not (``keep=`` deletes it and its index row). The rows of a store written
        before schema 3 say nothing (NULL): none of them is here."""
        if not self._checkpointed:
            return set()
        return set(self._db.execute("SELECT generation, iteration FROM results WHERE trial_id = ? AND checkpointed = 1",
                                    (trial_id,)))

    @_reading
    def checkpoints(self, trial_id: int) -> list[tuple[int, str]]:
        """(iteration, absolute path under this folder, or a URL) of a trial's indexed checkpoints."""
        return [(it, self._checkpoint_path(path, trial_id, it)) for it, path in self._db.execute(
            "SELECT iteration, path FROM checkpoints WHERE trial_id = ? ORDER BY iteration", (trial_id,))]

    @_reading
    def events(self, kind: str | None = None) -> list[tuple[int, float, str, int | None, Any]]:
        """(seq, time, kind, trial, data) of every event, oldest first; only those of one ``kind`` if given."""
        where, args = (" WHERE kind = ?", (kind,)) if kind is not None else ("", ())
        return [(s, t, k, tid, None if d is None else json.loads(d))
                for s, t, k, tid, d in self._db.execute(f"SELECT * FROM events{where} ORDER BY seq", args)]

    @_reading
    def past_configs(self, trial_id: int | None = None) -> dict[int, list[Any]]:
        """The configs each PBT-exploited trial (or only ``trial_id``) had besides its current one: its exploit
        events' ``old_config`` and ``config`` (undone ones too). Text it printed or reported under them may quote
        their secrets: every output masks those as well (``secret_strings([config, *past])``)."""
        where, args = ("", ()) if trial_id is None else (" AND trial_id = ?", (trial_id,))
        out: dict[int, list[Any]] = {}
        for tid, data in self._db.execute("SELECT trial_id, data FROM events WHERE kind IN ('exploit', "
                                          f"'exploit_undone') AND trial_id IS NOT NULL{where} ORDER BY seq", args):
            decoded = json.loads(data) if data else None
            if isinstance(decoded, dict):
                out.setdefault(tid, []).extend(decoded.get(k) for k in ("old_config", "config")
                                               if isinstance(decoded.get(k), dict))
        return out

    @_reading
    def command_events(self) -> list[dict[str, Any]]:
        """The data of the ``command`` events (``tunesmith.dashboard._commands``: one per command file the drivers
        took, with its ``id``), oldest first."""
        rows = self._db.execute("SELECT data FROM events WHERE kind = 'command' AND data IS NOT NULL ORDER BY seq")
        return [d for d in (json.loads(text) for (text,) in rows) if isinstance(d, dict)]

    @_reading
    def time_spent(self) -> float:
        """Seconds the experiment's earlier drivers ran, on the clock of the results' timestamps: from each start
        (or resume) to the last result or event stored before the next one. The latest start is the running
        driver's own, not counted."""
        db = self._db
        starts = [t for (t,) in db.execute("SELECT time FROM events WHERE kind IN ('start', 'resume') ORDER BY seq")]
        if len(starts) < 2:
            return 0.0
        # one pass over each table: a row's run is the last start at or before it (bucket i: [starts[i], starts[i+1]))
        run = "CASE " + " ".join(f"WHEN {{col}} < ? THEN {i}" for i in range(len(starts) - 1)) + " END"
        ends = list(starts[:-1])
        for table, col in (("events", "time"), ("results", "timestamp")):
            sql = (f"SELECT {run.format(col=col)} AS r, MAX({col}) FROM {table} WHERE {col} >= ? AND {col} < ? "
                   "GROUP BY r")
            for i, last in db.execute(sql, (*starts[1:], starts[0], starts[-1])):
                ends[i] = max(ends[i], last)
        return sum(end - begin for begin, end in zip(starts, ends))

    @_reading
    def count_results(self) -> int:
        if not self._generations:
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM results r JOIN trials t ON t.id = r.trial_id "
                                "AND t.generation = r.generation").fetchone()[0]


# A JSON value as SQLite reads it when it is a number (integer or real), else NULL (a bool, a string, missing).
_NUMBER = "CASE WHEN json_type({0}, ?) IN ('integer', 'real') THEN json_extract({0}, ?) END"


# a result of the trial's current config: its current generation, after its latest PBT exploit's cloned iteration (the
# rows up to it moved to the new generation with the clone, but an earlier config reported them): what ranks a trial
# by its best result, so that the config shown beside that result is the one that produced it
_PRODUCED_V1 = "(t.parent_iteration IS NULL OR r.iteration > t.parent_iteration)"  # schema 1: one generation
_PRODUCED = f"r.generation = t.generation AND {_PRODUCED_V1}"
_UNREADABLE = "unreadable"  # the indexed value of a row whose JSON SQLite cannot read (NaN, infinities)


# a trial's status in a crashed experiment's store as readers show it (Store.status_sql)
_SHOWN_STATUS = "CASE status WHEN 'RUNNING' THEN 'PAUSED' ELSE status END"


def _metric_index_name(key: str, kind: str = "") -> str:
    """The name of a metric's index (every one starts ``results_metric_``: a resume drops them by that prefix):
    by trial and generation (kind ""), by value over the results ("value"), by value over the last results
    ("last")."""
    import hashlib  # here: only a finished run builds indexes (OpenSSL's load is off the start of every run)

    return "results_metric_" + (kind + "_" if kind else "") + hashlib.sha256(key.encode()).hexdigest()[:16]


def _indexed_value(key: str, column: str) -> str:
    """The metric ``key``'s value in the JSON ``column`` when it is a number, NULL when it is not, and the text
    ``'unreadable'`` when SQLite cannot read the JSON (Python's NaN and infinities): the expression of its
    index (a query uses the index only when it spells the expression alike, path inlined)."""
    path = _json_path(key)
    assert path is not None
    literal = "'" + path.replace("'", "''") + "'"
    return (f"CASE WHEN json_valid({column}) THEN (CASE WHEN json_type({column}, {literal}) IN ('integer', 'real') "
            f"THEN json_extract({column}, {literal}) END) ELSE '{_UNREADABLE}' END")


def index_metrics(db: sqlite3.Connection, metrics: Iterable[Any]) -> None:
    """Index each metric's value (expression indexes: SQLite reads the value from each row's JSON; rows it
    cannot read, with NaN or infinities, are marked so) three ways: in the results by trial and generation
    (``top(k, scope="all")``: two index seeks per trial), in the results by value (``get_best(scope="all")``:
    one ordered read from the best end, skipping superseded generations' rows), and in the trials' last results
    by value (``get_best()``); and the trials by status (``tunesmith ls``). A metric name an SQLite JSON path
    cannot hold is not indexed (its best is found by a scan); stores without the indexes are read by a scan."""
    for key in metrics:
        if isinstance(key, str) and _json_path(key) is not None:
            value = _indexed_value(key, "metrics")
            db.execute(f"CREATE INDEX IF NOT EXISTS {_metric_index_name(key)} ON results(trial_id, generation, "
                       f"({value}))")
            db.execute(f"CREATE INDEX IF NOT EXISTS {_metric_index_name(key, 'value')} ON results(({value}), "
                       "trial_id, generation, iteration)")
            db.execute(f"CREATE INDEX IF NOT EXISTS {_metric_index_name(key, 'last')} ON trials(("
                       f"{_indexed_value(key, 'last_result')}), id)")
    for key in FLAGGED_KEYS:  # which trials' last results hold the key: most often none, so the index is empty
        db.execute(f"CREATE INDEX IF NOT EXISTS {_metric_index_name(key, 'has')} ON trials(id) WHERE {_has_key(key)}")
    # the trials by status: `tunesmith ls` counts them (trial_counts) from this small index instead of reading every
    # trial's row, its config and last result with it
    db.execute(f"CREATE INDEX IF NOT EXISTS {_STATUS_INDEX} ON trials(status)")


_STATUS_INDEX = "trials_status"


# keys whose presence in some last result readers ask about (Store.any_last_result_has): "constraint/0" makes an
# experiment constrained (feasible trials rank first)
FLAGGED_KEYS = ("constraint/0",)


CONSTRAINT_PREFIX = "constraint/"  # run(constraints=fn) stores fn(result)[i] as the metric constraint/<i>


def feasible_result(result: dict[str, Any]) -> bool | None:
    """Whether a result meets ``run(constraints=...)``: every ``constraint/<i>`` is a number <= 0 (NaN is not);
    None when it carries no constraint values."""
    if CONSTRAINT_PREFIX + "0" not in result:
        return None
    i = 0
    while CONSTRAINT_PREFIX + str(i) in result:
        value = result[CONSTRAINT_PREFIX + str(i)]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value <= 0:
            return False
        i += 1
    return True


def _feasible_sql(column: str) -> str:
    """:func:`feasible_result` of the JSON ``column`` as an SQL condition (false for a row SQLite cannot read: those
    are decoded and checked in Python): ``constraint/0`` is there and no ``constraint/<digits>`` value is other
    than a number <= 0. The driver writes ``constraint/0``, ``/1``... without gaps (a trial's own keys of that
    prefix are replaced), so the two agree on every result it stored."""
    return (f"(CASE WHEN json_valid({column}) THEN json_type({column}, '$.\"{CONSTRAINT_PREFIX}0\"') IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM json_each({column}) WHERE key GLOB '{CONSTRAINT_PREFIX}[0-9]*' AND "
            f"substr(key, {len(CONSTRAINT_PREFIX) + 1}) NOT GLOB '*[^0-9]*' AND NOT (type IN ('integer', 'real') "
            "AND value <= 0)) ELSE 0 END)")


def _has_key(key: str) -> str:
    """The condition "the last result has the key ``key``" (a text search), spelled alike in the partial index
    and in the query that reads it (SQLite uses a partial index only then)."""
    needle = json.dumps(key) + ":"
    return "instr(last_result, '" + needle.replace("'", "''") + "')"


def _json_path(key: str) -> str | None:
    """The SQLite JSON path of the top-level key ``key`` (quoted: dots and brackets are part of the name), or
    None when the stored JSON does not spell the name as it is: a quote or a backslash, or a character Python's
    JSON writes escaped (``é`` as ``\\u00e9``, control characters), which SQLite's path does not match before
    3.45 (the caller then decodes in Python)."""
    return f'$."{key}"' if json.dumps(key)[1:-1] == key else None


def _real(value: Any) -> float | None:
    """A metric value that ranks: a real number, not a bool, not NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return value


def _pathname2url(path: str) -> str:
    """``urllib.request.pathname2url`` without importing urllib.request (it imports http, email and ssl, a
    noticeable share of every `tunesmith show`/`ls`): what it is on POSIX (``quote``) and on Windows
    (``nturl2path``)."""
    if os.name == "nt":
        from nturl2path import pathname2url

        return str(pathname2url(path))
    from urllib.parse import quote

    return quote(path)


def _remove_database(path: str) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _as_float(value: int) -> float:
    """A JSON integer as a float column holds it (one too large for a float is no plottable number)."""
    try:
        return float(value)
    except OverflowError:
        return float("nan")


# levels a stored value may nest: configs nest as their space does (a few), results are flat. A made-up store's
# deeper value is damaged whatever the Python: 3.11's decoder refuses 5,000 levels (a RecursionError), 3.13's reads
# them, and every reader that walks the value (masking, flattening) would then overflow the stack.
MAX_DEPTH = 100


def too_deep(text: str, value: Any, brackets: int = 0) -> bool:
    """Whether ``value`` (decoded from ``text``) nests more than ``MAX_DEPTH`` levels: counted only where ``text``
    has that many brackets at all beyond the ``brackets`` it holds anyway (a list of flat results: one each, and the
    list's), two C-speed counts per value."""
    if text.count("{") + text.count("[") <= brackets + MAX_DEPTH:
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return False


def _json(text: str, what: Callable[[], str]) -> Any:
    """The JSON value ``text`` holds; a ``StoreError`` saying ``what()`` is not valid JSON (the file is damaged):
    not JSON, not text (a BLOB), or nested deeper than ``MAX_DEPTH`` (or than Python's decoder goes)."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError) as e:
        raise StoreError(f"{what()} is not valid JSON ({e})") from e
    except RecursionError as e:
        raise StoreError(f"{what()} is not valid JSON: nested too deeply to read ({e})") from e
    if too_deep(text, value):
        raise StoreError(f"{what()} is not valid JSON: nested more than {MAX_DEPTH} levels")
    return value


def _object(text: str, what: Callable[[], str]) -> dict[str, Any]:
    """The JSON object ``text`` holds; a ``StoreError`` saying ``what()`` is not one (the file is damaged)."""
    value = _json(text, what)
    if not isinstance(value, dict):
        raise StoreError(f"{what()} is not a JSON object (a {type(value).__name__})")
    return value


def within_floats(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` (decoded from the store) with an integer beyond a float's range as the infinity of its sign, as
    SQLite's JSON reads it: ``report()`` refuses one, but a store an older tunesmith wrote may hold it, which every
    ranking (``float()``) would fail on. ``metrics`` itself, changed in place where it holds one."""
    for key, value in metrics.items():
        if type(value) is int and not -FLOAT_LIMIT < value < FLOAT_LIMIT:
            metrics[key] = math.inf if value > 0 else -math.inf
    return metrics


def holds_huge_int(text: str) -> bool:
    """Whether JSON ``text`` may hold an integer beyond a float's range (309 digits or more): one C-speed scan."""
    return _DIGITS_309.search(text) is not None


_DIGITS_309 = re.compile("[0-9]{309}")


def _damaged_result(path: str | None, trial_id: int, iteration: int, generation: int = 0) -> str:
    """What a damaged result row is called (as a damaged trial row: ``Store._damaged``)."""
    of = f"iteration {iteration}" + (f" (generation {generation})" if generation else "")
    return f"the experiment store {path or ''}{' ' if path else ''}is damaged: trial {trial_id}'s result of {of}"


def stored_results(store: Store, trial_id: int) -> list[Result]:
    """The current results of ``trial_id`` in ``store`` as ``Result``s, each carrying its stored JSON text (as the
    file loggers get a trial's results: ``tunesmith export`` and a resumed driver's loggers write them)."""
    return [Result(trial_id, row.iteration, result_dict(row), None, row.metrics) for row in store.results(trial_id)]


def result_dict(row: ResultRow) -> dict[str, Any]:
    """A stored result row as the metrics dict the user sees (auto keys included); a ``StoreError`` naming the store
    file (a row a :class:`Store` read), the trial and the iteration when its metrics are not a JSON object."""
    out = _object(row.metrics, lambda: _damaged_result(getattr(row, "store", None), row.trial_id, row.iteration,
                                                      row.generation))
    if len(row.metrics) > 308 and holds_huge_int(row.metrics):
        within_floats(out)
    out["training_iteration"] = row.iteration
    out["time_total_s"] = row.time_total
    out["timestamp"] = row.timestamp
    return out
