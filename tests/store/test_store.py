from __future__ import annotations

import json
import math
import sqlite3
import threading

import pytest

from tunesmith.store.sqlite import SCHEMA_VERSION, Store, StoreError, result_dict


def test_schema_version_and_newer_store_refused(tmp_path):
    path = str(tmp_path / "e.db")
    Store(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer tunesmith"):
        Store(path)


def test_results_replace_not_duplicate_and_truncate(tmp_path):
    s = Store(str(tmp_path / "e.db"))
    with s.transaction() as db:
        s.insert_trial(db, 1, {"x": 1}, {"cpu": 1}, "RUNNING")
        s.append_results(db, [(1, i, float(i), 0.0, f'{{"v": {i}}}') for i in range(1, 6)])
        s.add_checkpoints(db, [(1, 2, "/c2", 0.0), (1, 4, "/c4", 0.0)])
    with s.transaction() as db:  # the trial restarted from its checkpoint at iteration 2
        s.truncate_results(db, 1, 2)
        s.append_results(db, [(1, 3, 3.0, 0.0, '{"v": 30}')])
    rows = s.results(1)
    assert [r[1] for r in rows] == [1, 2, 3]
    assert result_dict(rows[-1])["v"] == 30
    assert s.checkpoints(1) == [(2, "/c2")]


def test_a_batch_larger_than_one_statement_is_stored_whole_and_a_later_row_of_an_iteration_wins(tmp_path):
    from tunesmith.store.sqlite import ROWS_PER_INSERT

    s = Store(str(tmp_path / "e.db"))
    n = 2 * ROWS_PER_INSERT + 7  # three statements, the last a short one
    rows = [(1 + i % 3, i // 3 + 1, float(i), 1.0 + i, f'{{"v": {i}}}') for i in range(n)]
    rows.append((2, 1, -1.0, -1.0, '{"v": -1}'))  # trial 2's iteration 1 again, later in the same batch
    with s.transaction() as db:
        for tid in (1, 2, 3):
            s.insert_trial(db, tid, {}, {}, "RUNNING")
        s.append_results(db, iter(rows))  # any iterable
    assert s.count_results() == n
    stored = {(r[0], r[1]): r for r in s.results()}
    for tid, it, total, stamp, text in rows[:-1]:
        if (tid, it) != (2, 1):
            got = stored[(tid, it)]
            assert (got[2], got[3]) == (total, stamp) and result_dict(got)["v"] == json.loads(text)["v"]
    assert result_dict(stored[(2, 1)])["v"] == -1


def test_failed_transaction_leaves_nothing(tmp_path):
    s = Store(str(tmp_path / "e.db"))
    with pytest.raises(RuntimeError):
        with s.transaction() as db:
            s.insert_trial(db, 1, {}, {}, "RUNNING")
            raise RuntimeError("crash mid-write")
    assert s.trials() == []


def test_nan_round_trip_and_reader_does_not_block_writer(tmp_path):
    path = str(tmp_path / "e.db")
    s = Store(path)
    with s.transaction() as db:
        s.insert_trial(db, 1, {}, {}, "RUNNING")
        s.append_results(db, [(1, 1, 0.0, 0.0, '{"a": NaN, "b": Infinity}')])
    reader = Store(path, readonly=True)
    cur = reader._db.execute("SELECT * FROM results")  # an open read cursor
    cur.fetchone()
    done = threading.Event()

    def write():
        with s.transaction() as db:
            s.append_results(db, [(1, 2, 0.0, 0.0, "{}")])
        done.set()

    t = threading.Thread(target=write)
    t.start()
    t.join(timeout=10)
    assert done.is_set(), "the writer was blocked by a reader"
    r = result_dict(reader.results(1)[0])
    assert math.isnan(r["a"]) and r["b"] == math.inf
    with pytest.raises(sqlite3.OperationalError):
        reader._db.execute("INSERT INTO experiment VALUES ('k', '1')")


def test_trial_start_and_end_times_are_stored(results_dir):
    import time as _time

    import tunesmith as ts

    before = _time.time()
    result = ts.run(lambda c: ts.report({"loss": 1.0}), num_samples=3, max_concurrent=1, verbose=0, name="times")
    records = result._store.trials()
    assert len(records) == 3
    for rec in records:
        assert before <= rec["created"] <= rec["start_time"] <= rec["end_time"] <= _time.time()
    starts = sorted(rec["start_time"] for rec in records)
    ends = sorted(rec["end_time"] for rec in records)
    assert starts[1] >= ends[0] and starts[2] >= ends[1]  # one at a time: each starts after the last ended
