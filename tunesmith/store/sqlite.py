"""The experiment store: one SQLite file per experiment, WAL mode, the driver its only writer.

Everything is JSON (never pickles). Results are keyed by (trial, iteration), so a trial that restarts
from a checkpoint replaces its later results instead of duplicating them. Readers (CLI, dashboard,
``tunesmith.load``) open the file read-only and never block the writer.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

STORE_FILE = "experiment.db"
SCHEMA_VERSION = 1

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
    PRIMARY KEY (trial_id, iteration)
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

# Small migration functions, one per version step: MIGRATIONS[v] takes a store at version v to v + 1.
MIGRATIONS: dict[int, Any] = {}

ResultRow = tuple[int, int, float, float, str]  # trial_id, iteration, time_total, timestamp, metrics JSON


# rows of 5 values per INSERT statement, within SQLite's limit on bound variables (999 before 3.32)
ROWS_PER_INSERT = 1000 if sqlite3.sqlite_version_info >= (3, 32) else 199


@functools.lru_cache(maxsize=64)
def _insert_results_sql(n: int) -> str:
    return "INSERT OR REPLACE INTO results VALUES " + ",".join(["(?, ?, ?, ?, ?)"] * n)


def dumps(obj: Any) -> str:
    """JSON as tunesmith stores it: NaN and infinities kept (Python's json reads them back)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=True)


class StoreError(RuntimeError):
    """The experiment file is missing, newer than this tunesmith, or damaged."""


class Store:
    """One experiment's SQLite file. Open with ``readonly=True`` from anything that is not the driver."""

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        if readonly:
            if not os.path.exists(path):
                raise StoreError(f"no experiment store at {path}")
            uri = f"file:{path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA query_only=1")
        else:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a committed transaction survives a crash of the process (SIGKILL included);
            # only an OS crash or power loss can take the last commits. durable=True gives FULL.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        self._db.execute("PRAGMA busy_timeout=5000")

    # -- schema -------------------------------------------------------------------------------------
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
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    # -- experiment ---------------------------------------------------------------------------------
    def set_meta(self, db: sqlite3.Connection, key: str, value: Any) -> None:
        db.execute("INSERT OR REPLACE INTO experiment(key, value) VALUES (?, ?)", (key, dumps(value)))

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
    def append_results(db: sqlite3.Connection, rows: Iterable[ResultRow]) -> None:
        """Insert (or replace: a later row of the same trial and iteration wins) result rows, up to
        ``ROWS_PER_INSERT`` in one statement. Not ``executemany``: it gives up the interpreter lock around
        every row's step, and with another thread of the driver busy (the file loggers' writer, a user's
        callback thread) taking it back can wait the interpreter's switch interval, 5 ms, per row
        (``benchmarks/store.py``, 2-core VM: executemany 1.8 us a row alone, 8,950 us beside a busy thread;
        this 2.1 and 23 us)."""
        rows = rows if isinstance(rows, list) else list(rows)
        step = ROWS_PER_INSERT
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            db.execute(_insert_results_sql(len(part)), list(itertools.chain.from_iterable(part)))

    @staticmethod
    def add_checkpoints(db: sqlite3.Connection, rows: Iterable[tuple[int, int, str, float]]) -> None:
        db.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)", rows)

    @staticmethod
    def remove_checkpoints(db: sqlite3.Connection, rows: Iterable[tuple[int, int]]) -> None:
        db.executemany("DELETE FROM checkpoints WHERE trial_id = ? AND iteration = ?", rows)

    @staticmethod
    def update_trial(db: sqlite3.Connection, trial_id: int, **fields: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE trials SET {cols} WHERE id = ?", (*fields.values(), trial_id))

    @staticmethod
    def truncate_results(db: sqlite3.Connection, trial_id: int, after_iteration: int) -> None:
        """Drop results and checkpoint entries after ``after_iteration`` (a restart from a checkpoint)."""
        db.execute("DELETE FROM results WHERE trial_id = ? AND iteration > ?", (trial_id, after_iteration))
        db.execute("DELETE FROM checkpoints WHERE trial_id = ? AND iteration > ?", (trial_id, after_iteration))

    @staticmethod
    def log_event(db: sqlite3.Connection, kind: str, trial_id: int | None, data: Any = None) -> None:
        db.execute("INSERT INTO events(time, kind, trial_id, data) VALUES (?, ?, ?, ?)",
                   (time.time(), kind, trial_id, None if data is None else dumps(data)))

    # -- reads --------------------------------------------------------------------------------------
    def trials(self) -> list[dict[str, Any]]:
        cur = self._db.execute("SELECT * FROM trials ORDER BY id")
        names = [d[0] for d in cur.description]
        out = []
        for row in cur:
            rec = dict(zip(names, row))
            for key in ("config", "resources", "last_result"):
                if rec[key] is not None:
                    rec[key] = json.loads(rec[key])
            out.append(rec)
        return out

    def results(self, trial_id: int | None = None) -> list[tuple[int, int, float, float, str]]:
        if trial_id is None:
            return self._db.execute("SELECT * FROM results ORDER BY trial_id, iteration").fetchall()
        return self._db.execute("SELECT * FROM results WHERE trial_id = ? ORDER BY iteration",
                                (trial_id,)).fetchall()

    def checkpoints(self, trial_id: int) -> list[tuple[int, str]]:
        return self._db.execute("SELECT iteration, path FROM checkpoints WHERE trial_id = ? ORDER BY iteration",
                                (trial_id,)).fetchall()

    def events(self) -> list[tuple[int, float, str, int | None, Any]]:
        return [(s, t, k, tid, None if d is None else json.loads(d))
                for s, t, k, tid, d in self._db.execute("SELECT * FROM events ORDER BY seq")]

    def count_results(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def result_dict(row: tuple[int, int, float, float, str]) -> dict[str, Any]:
    """A stored result row as the metrics dict the user sees (auto keys included)."""
    _tid, iteration, time_total, timestamp, metrics = row
    out = json.loads(metrics)
    out["training_iteration"] = iteration
    out["time_total_s"] = time_total
    out["timestamp"] = timestamp
    return out
