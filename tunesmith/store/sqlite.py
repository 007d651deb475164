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
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

from tunesmith._layout import STORE_FILE, from_stored, to_stored

__all__ = ["SCHEMA_VERSION", "STORE_FILE", "ResultRow", "Store", "StoreError", "dumps", "result_dict"]

SCHEMA_VERSION = 2
_TABLES = ("experiment", "trials", "results", "checkpoints", "events")
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


# Small migration functions, one per version step: MIGRATIONS[v] takes a store at version v to v + 1.
MIGRATIONS: dict[int, Any] = {1: _v1_generations}


class ResultRow(NamedTuple):
    """One stored result, as :meth:`Store.results` gives it back. Made per row on reads only (a resume, the
    CLI, ``tunesmith.load``): about half a microsecond a row beside SQLite's one; the driver writes plain
    tuples in the same order."""

    trial_id: int
    iteration: int
    time_total: float
    timestamp: float
    metrics: str  # JSON, without the automatic keys (result_dict adds them)
    generation: int = 0  # bumped by each PBT exploit of the trial


# rows of 6 values per INSERT statement, within SQLite's limit on bound variables (999 before 3.32)
ROWS_PER_INSERT = 1000 if sqlite3.sqlite_version_info >= (3, 32) else 166


@functools.lru_cache(maxsize=64)
def _insert_results_sql(n: int, width: int = 6) -> str:
    if width == 5:  # rows without a generation: generation 0
        return ("INSERT OR REPLACE INTO results(trial_id, iteration, time_total, timestamp, metrics) VALUES "
                + ",".join(["(?, ?, ?, ?, ?)"] * n))
    return "INSERT OR REPLACE INTO results VALUES " + ",".join(["(?, ?, ?, ?, ?, ?)"] * n)


def dumps(obj: Any) -> str:
    """JSON as tunesmith stores it: NaN and infinities kept (Python's json reads them back)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=True)


class StoreError(RuntimeError):
    """The experiment file is missing, newer than this tunesmith, or damaged."""


_F = TypeVar("_F", bound=Callable[..., Any])


def _reading(fn: _F) -> _F:
    """A read that fails on a damaged file raises ``StoreError`` naming the file, not sqlite3/JSON errors."""

    @functools.wraps(fn)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot read the experiment store {self.path}: {e} (is the file damaged?)") from e
        except ValueError as e:  # json.JSONDecodeError
            raise StoreError(f"the experiment store {self.path} holds a value that is not valid JSON ({e}): "
                             f"the file is damaged") from e

    return wrapper  # type: ignore[return-value]


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL
                                               or "disk is full" in str(exc))


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
        if readonly:
            if not os.path.exists(path):
                raise StoreError(f"no experiment store at {path}")
            if not os.path.isfile(path):
                raise StoreError(f"the experiment store {path} is not a file")
            # quoted: a folder named C#, a?b or 100% is a path, not a URI's fragment, query or escape
            from urllib.request import pathname2url  # here: it imports http and ssl, which a run's start need not

            uri = f"file:{pathname2url(os.path.abspath(path))}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self._checked(lambda: self._db.execute("PRAGMA query_only=1"))
            self._check_schema()
        else:
            if create:
                self.path = os.path.join(self.folder, f".{os.path.basename(path)}.new")
                _remove_database(self.path)  # left by a driver killed while creating
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                self._checked(self._open_writer)
            except BaseException:
                self._db.close()
                raise
        self._db.execute("PRAGMA busy_timeout=5000")

    def _open_writer(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed transaction survives a crash of the process (SIGKILL included);
        # only an OS crash or power loss can take the last commits. durable=True gives FULL.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._check_schema()

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
        self._checked(self._open_writer)
        self._db.execute("PRAGMA busy_timeout=5000")

    # -- schema -------------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        """Refuse a store this tunesmith cannot read: newer, never completed, or with a table missing."""
        version = self._checked(lambda: self._db.execute("PRAGMA user_version").fetchone()[0])
        # a reader of a schema-1 store (never migrated: readers do not write) reads it without generations
        self._generations = version >= 2 or version == 0
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

    def close(self) -> None:
        self._db.close()

    # -- experiment ---------------------------------------------------------------------------------
    def set_meta(self, db: sqlite3.Connection, key: str, value: Any) -> None:
        db.execute("INSERT OR REPLACE INTO experiment(key, value) VALUES (?, ?)", (key, dumps(value)))

    @_reading
    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM experiment")}

    # -- writes (driver only, inside transaction()) -------------------------------------------------
    @staticmethod
    def insert_trial(db: sqlite3.Connection, trial_id: int, config: dict[str, Any],
                     resources: dict[str, float], status: str, parent_id: int | None = None,
                     parent_iteration: int | None = None, created: float | None = None,
                     start_time: float | None = None) -> None:
        """``created``: when the trial was made (default now; the row may be written after it started)."""
        db.execute(
            "INSERT INTO trials(id, config, status, resources, parent_id, parent_iteration, created, start_time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (trial_id, dumps(config), status, dumps(resources), parent_id, parent_iteration,
             time.time() if created is None else created, start_time))

    @staticmethod
    def append_results(db: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert (or replace: a later row of the same trial, generation and iteration wins) result rows
        (trial, iteration, time_total, timestamp, metrics, generation; without the generation: 0), up to
        ``ROWS_PER_INSERT`` in one statement. Not ``executemany``: it gives up the interpreter lock around
        every row's step, and with another thread of the driver busy (the file loggers' writer, a user's
        callback thread) taking it back can wait the interpreter's switch interval per row
        (``sys.getswitchinterval()``); one statement for many rows does not (measure both with
        ``.venv/bin/python benchmarks/store.py``)."""
        rows = rows if isinstance(rows, list) else list(rows)
        step = ROWS_PER_INSERT
        width = len(rows[0]) if rows else 6  # 5: (trial, iteration, time_total, timestamp, metrics), generation 0
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            db.execute(_insert_results_sql(len(part), width), list(itertools.chain.from_iterable(part)))

    def add_checkpoints(self, db: sqlite3.Connection, rows: Iterable[tuple[int, int, str, float]]) -> None:
        """Index checkpoints (trial, iteration, absolute path, time); paths in the folder are stored relative."""
        folder = self.folder
        db.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                       [(tid, it, to_stored(folder, path), t) for tid, it, path, t in rows])

    @staticmethod
    def remove_checkpoints(db: sqlite3.Connection, rows: Iterable[tuple[int, int]]) -> None:
        db.executemany("DELETE FROM checkpoints WHERE trial_id = ? AND iteration = ?", rows)

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
    def log_event(db: sqlite3.Connection, kind: str, trial_id: int | None, data: Any = None) -> None:
        db.execute("INSERT INTO events(time, kind, trial_id, data) VALUES (?, ?, ?, ?)",
                   (time.time(), kind, trial_id, None if data is None else dumps(data)))

    # -- reads --------------------------------------------------------------------------------------
    @_reading
    def trials(self) -> list[dict[str, Any]]:
        """Every trial's row, JSON decoded; ``checkpoint`` an absolute path under this folder (or a URL)."""
        cur = self._db.execute("SELECT * FROM trials ORDER BY id")
        names = [d[0] for d in cur.description]
        out = []
        for row in cur:
            rec = dict(zip(names, row))
            for key in ("config", "resources", "last_result"):
                if rec[key] is not None:
                    rec[key] = json.loads(rec[key])
            rec["checkpoint"] = from_stored(self.folder, rec["checkpoint"])
            rec.setdefault("generation", 0)  # schema 1
            out.append(rec)
        return out

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
        cur = self._db.execute(f"SELECT {cols} FROM results r{join}{where} ORDER BY {order}", args)
        return list(map(ResultRow._make, cur))

    @_reading
    def checkpoints(self, trial_id: int) -> list[tuple[int, str]]:
        """(iteration, absolute path under this folder, or a URL) of a trial's indexed checkpoints."""
        folder = self.folder
        return [(it, from_stored(folder, path)) for it, path in self._db.execute(
            "SELECT iteration, path FROM checkpoints WHERE trial_id = ? ORDER BY iteration", (trial_id,))]

    @_reading
    def events(self) -> list[tuple[int, float, str, int | None, Any]]:
        return [(s, t, k, tid, None if d is None else json.loads(d))
                for s, t, k, tid, d in self._db.execute("SELECT * FROM events ORDER BY seq")]

    @_reading
    def count_results(self) -> int:
        if not self._generations:
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM results r JOIN trials t ON t.id = r.trial_id "
                                "AND t.generation = r.generation").fetchone()[0]


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


def result_dict(row: ResultRow) -> dict[str, Any]:
    """A stored result row as the metrics dict the user sees (auto keys included)."""
    out = json.loads(row.metrics)
    out["training_iteration"] = row.iteration
    out["time_total_s"] = row.time_total
    out["timestamp"] = row.timestamp
    return out
