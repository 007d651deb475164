from __future__ import annotations

import json
import math
import os
import sqlite3
import threading

import pytest

from tunesmith.store.sqlite import SCHEMA_VERSION, WAL_SIZE_LIMIT, Store, StoreError, result_dict


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
    c2 = str(tmp_path / "trials" / "trial_00001" / "checkpoints" / "c2")  # paths in the folder (stored relative)
    with s.transaction() as db:
        s.insert_trial(db, 1, {"x": 1}, {"cpu": 1}, "RUNNING")
        s.append_results(db, [(1, i, float(i), 0.0, f'{{"v": {i}}}') for i in range(1, 6)])
        s.add_checkpoints(db, [(1, 2, c2, 0.0), (1, 4, str(tmp_path / "trials/trial_00001/checkpoints/c4"), 0.0)])
    with s.transaction() as db:  # the trial restarted from its checkpoint at iteration 2
        s.truncate_results(db, 1, 2)
        s.append_results(db, [(1, 3, 3.0, 0.0, '{"v": 30}')])
    rows = s.results(1)
    assert [r.iteration for r in rows] == [1, 2, 3]
    assert rows[0]._fields == ("trial_id", "iteration", "time_total", "timestamp", "metrics", "generation")
    assert rows[-1].trial_id == 1 and json.loads(rows[-1].metrics)["v"] == 30
    assert result_dict(rows[-1])["v"] == 30
    assert s.checkpoints(1) == [(2, c2)]


def test_results_say_whether_they_came_with_a_checkpoint_after_its_index_row_is_gone(tmp_path):
    from tunesmith.store.sqlite import ROWS_PER_INSERT

    s = Store(str(tmp_path / "e.db"))
    n = 2 * ROWS_PER_INSERT + 7  # three statements of 7 values a row
    c = str(tmp_path / "trials" / "trial_00001" / "checkpoints" / "c")
    with s.transaction() as db:
        s.insert_trial(db, 1, {}, {}, "RUNNING")
        s.insert_trial(db, 2, {}, {}, "RUNNING")
        s.append_results(db, [(1, i, float(i), float(i), "{}", 0, i % 3 == 0) for i in range(1, n + 1)])
        s.append_results(db, [(2, 1, 1.0, 1.0, "{}")])  # a row that does not say (as before schema 3): unknown
        s.add_checkpoints(db, [(1, 3, c, 3.0)])
        s.remove_checkpoints(db, [(1, 3, c)])  # keep= deleted it
        s.new_generation(db, 1, 6, 1)  # a PBT exploit: the rows up to 6 move to generation 1
    assert s.checkpoints(1) == [] and len(s.results(all_generations=True)) == n + 1
    assert s.checkpointed(1) == {(1, 3), (1, 6)} | {(0, i) for i in range(9, n + 1, 3)}
    assert s.checkpointed(2) == set()
    assert s._db.execute("SELECT checkpointed FROM results WHERE trial_id = 2").fetchone() == (None,)


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


# -- a damaged, newer or incomplete store is tunesmith's error naming the file ---------------------------


def _experiment(results_dir, name="exp"):
    import tunesmith as ts

    ts.run(lambda c: ts.report({"loss": 1.0}), name=name, verbose=0)
    return results_dir / name / "experiment.db"


def _damage(db_path, *statements):
    db = sqlite3.connect(db_path)
    for stmt in statements:
        db.execute(stmt)
    db.commit()
    db.close()


@pytest.mark.parametrize("damage, message", [
    (["PRAGMA user_version=99"], r"newer tunesmith \(schema 99"),
    (["DROP TABLE results"], "table 'results' is missing"),
    (["DROP TABLE experiment"], "table 'experiment' is missing"),
    (["UPDATE experiment SET value = '{not json' WHERE key = 'spec'"], "not valid JSON"),
    (["UPDATE trials SET config = 'nope'"], "not valid JSON"),
    (["UPDATE trials SET status = 'SIDEWAYS'"], "a trial's row cannot be read"),
])
def test_load_of_a_damaged_or_newer_store_is_a_store_error_naming_the_file(results_dir, damage, message):
    import tunesmith as ts

    db_path = _experiment(results_dir)
    _damage(db_path, *damage)
    with pytest.raises(StoreError, match=message) as info:
        rs = ts.load("exp")
        rs.trials  # noqa: B018 - rows are read on first use
    assert str(db_path) in str(info.value)


def test_load_of_a_file_that_is_not_a_store(results_dir):
    import tunesmith as ts

    folder = results_dir / "junk"
    folder.mkdir(parents=True)
    (folder / "experiment.db").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StoreError, match="file is not a database") as info:
        ts.load("junk")
    assert str(folder / "experiment.db") in str(info.value)
    empty = results_dir / "empty"
    empty.mkdir()
    sqlite3.connect(empty / "experiment.db").close()  # an SQLite file with nothing in it
    with pytest.raises(StoreError, match="not a tunesmith experiment store"):
        ts.load("empty")


def test_a_full_disk_while_committing_says_so_and_the_store_stays_usable(tmp_path):
    """SQLite rolls the transaction back itself on SQLITE_FULL; the ROLLBACK that then fails must not hide
    "database or disk is full", and the connection must not be left inside a transaction."""
    s = Store(str(tmp_path / "e.db"))
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count={pages + 2}")  # a disk with two pages free
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        with s.transaction() as db:
            s.insert_trial(db, 1, {"blob": "x" * 100_000}, {}, "RUNNING")
    assert not s._db.in_transaction
    with s.transaction() as db:  # space freed (here: a larger limit): the next write works
        s._db.execute(f"PRAGMA max_page_count={pages + 1000}")
        s.insert_trial(db, 1, {"small": 1}, {}, "RUNNING")
    assert [t["id"] for t in s.trials()] == [1]


def test_a_storage_path_that_is_a_file_is_a_config_error(tmp_path):
    import tunesmith as ts

    afile = tmp_path / "results.txt"
    afile.write_text("not a folder")
    with pytest.raises(ts.ConfigError, match="storage_path .*results.txt is a file"):
        ts.run(lambda c: ts.report({"loss": 1.0}), name="e", storage_path=str(afile), verbose=0)
    with pytest.raises(ts.ConfigError, match="storage_path: cannot create .*results.txt"):
        ts.run(lambda c: ts.report({"loss": 1.0}), name="e", storage_path=str(afile / "sub"), verbose=0)
    assert afile.read_text() == "not a folder"


# -- a new experiment's store appears whole or not at all ----------------------------------------------


def test_a_new_store_appears_only_with_its_spec_and_a_half_made_one_is_replaced(tmp_path):
    from tunesmith.store.sqlite import STORE_FILE

    final = tmp_path / "exp" / STORE_FILE
    s = Store(str(final), create=True)
    assert not final.exists()  # schema committed, spec not yet: no experiment.db for readers or resume
    with s.transaction() as db:
        s.set_meta(db, "spec", {"name": "exp"})
    s.publish()
    assert [f for f in os.listdir(tmp_path / "exp") if not f.startswith(STORE_FILE)] == []  # temporary one gone
    assert Store(str(final), readonly=True).meta() == {"spec": {"name": "exp"}}
    s.close()
    # a driver killed while creating leaves the temporary store: the next creation starts it afresh
    again = tmp_path / "again" / STORE_FILE
    killed = Store(str(again), create=True)
    with killed.transaction() as db:
        killed.set_meta(db, "spec", {"name": "stale"})
    killed._db.close()
    s = Store(str(again), create=True)
    assert s.meta() == {}
    s.publish()
    s.close()


def test_a_store_built_without_a_journal_file_is_published_as_a_wal_store_that_rolls_back(tmp_path):
    """A new store is built without journal files and flushes (its temporary file is flushed once, whole, by
    publish); the published file is a WAL store with NORMAL flushing, like every store the driver opens, and a
    failed transaction while building still leaves nothing."""
    from tunesmith.store.sqlite import STORE_FILE

    final = tmp_path / "exp" / STORE_FILE
    s = Store(str(final), create=True)
    with pytest.raises(RuntimeError), s.transaction() as db:
        s.set_meta(db, "spec", {"name": "half"})
        raise RuntimeError("fails while building")
    assert s.meta() == {}
    assert [f for f in os.listdir(tmp_path / "exp") if f.endswith(("-journal", "-wal"))] == []
    with s.transaction() as db:
        s.set_meta(db, "spec", {"name": "exp"})
    s.publish()
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with s.transaction() as db:
        s.set_meta(db, "status", "running")
    s.close()
    other = sqlite3.connect(str(final))
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
    other.close()
    assert Store(str(final), readonly=True).meta() == {"spec": {"name": "exp"}, "status": "running"}


def test_checkpoint_paths_are_stored_relative_to_the_folder_and_read_under_the_current_one(tmp_path):
    """Relative in the file; absolute under the folder the store is in now; old absolute paths re-rooted."""
    import shutil

    from tunesmith.store.sqlite import STORE_FILE

    folder = tmp_path / "a"
    ck = str(folder / "trials" / "trial_00001" / "checkpoints" / "checkpoint_000002")
    s = Store(str(folder / STORE_FILE))
    with s.transaction() as db:
        s.insert_trial(db, 1, {}, {}, "RUNNING")
        s.add_checkpoints(db, [(1, 2, ck, 0.0), (1, 3, "s3://bucket/x/checkpoint_000003", 0.0)])
        s.update_trial(db, 1, checkpoint=ck, checkpoint_iteration=2)
        # a store written before paths were relative: an absolute path into another copy of the folder
        db.execute("INSERT INTO checkpoints VALUES (1, 4, '/old/place/a/trials/trial_00001/checkpoints/"
                   "checkpoint_000004', 0.0)")
    s.close()
    raw = sqlite3.connect(folder / STORE_FILE)
    assert raw.execute("SELECT checkpoint FROM trials").fetchone()[0] == os.path.join(
        "trials", "trial_00001", "checkpoints", "checkpoint_000002")
    raw.close()
    shutil.move(str(folder), str(tmp_path / "b"))
    moved = Store(str(tmp_path / "b" / STORE_FILE), readonly=True)
    b_ck = str(tmp_path / "b" / "trials" / "trial_00001" / "checkpoints")
    assert moved.checkpoints(1) == [(2, os.path.join(b_ck, "checkpoint_000002")),
                                    (3, "s3://bucket/x/checkpoint_000003"),
                                    (4, os.path.join(b_ck, "checkpoint_000004"))]
    assert moved.trials()[0]["checkpoint"] == os.path.join(b_ck, "checkpoint_000002")


# run in a read-only view of a folder: how many trials it reads and its meta's note, or the StoreError
_READ = ("import sys, tunesmith as ts\n"
         "try:\n    rs = ts.load(sys.argv[1])\n    print('trials', len(rs.trials), rs.meta.get('note'))\n"
         "except ts.StoreError as e:\n    print('StoreError', e)\n")


def _read_only_view(folder, code):
    """Run ``code`` (python, argv[1] = ``folder``) where ``folder`` is a read-only bind mount of itself, in a
    private mount namespace (root, as in CI's container); skipped where this machine cannot make one."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("no unshare here: no read-only mount to test with")
    script = (f'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" || exit 97; '
              f'exec "{sys.executable}" -c "$2" "$1"')
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(folder), code], capture_output=True,
                          text=True, timeout=60)
    if done.returncode == 97 or "unshare failed" in done.stderr:
        pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()[:200]}")
    return done


def test_a_store_in_a_read_only_folder_without_its_side_files_is_read(tmp_path, results_dir):
    # A WAL store opened read-only needs its -shm file, which a read-only folder cannot get: an archived (or
    # mounted read-only) experiment folder copied without it could not be read ("is the file damaged?").
    import shutil

    import tunesmith as ts

    ts.run(lambda c: ts.report({"loss": c["x"]}), {"x": ts.grid([1, 2, 3])}, verbose=0, name="ro")
    clean = tmp_path / "clean"
    shutil.copytree(results_dir / "ro", clean)
    wal = clean / "experiment.db-wal"
    assert not wal.exists() or os.path.getsize(wal) == 0  # everything is in the file: the side files go,
    for side in ("experiment.db-wal", "experiment.db-shm"):  # as a copy or an archive of the file alone has it
        if (clean / side).exists():
            os.remove(clean / side)
    done = _read_only_view(clean, _READ)
    assert done.stdout.strip() == "trials 3 None", (done.stdout, done.stderr)

    # a log not yet written back into the file (its driver was killed): without -shm SQLite cannot read it there,
    # and reading the file alone would miss what it holds: a private copy of both is read (it was a StoreError)
    pending = tmp_path / "pending"
    shutil.copytree(clean, pending)
    writer = Store(str(pending / "experiment.db"))
    with writer.transaction() as db:
        writer.set_meta(db, "note", "only in the log")
    os.remove(pending / "experiment.db-shm")  # (the open writer keeps its own mapping)
    done = _read_only_view(pending, _READ)
    writer.close()
    assert done.stdout.strip() == "trials 3 only in the log", (done.stdout, done.stderr)


def test_a_read_only_folder_whose_lock_a_process_holds_is_read_through_sqlite_or_a_clear_error(tmp_path, results_dir):
    # A process holding the experiment's lock (a driver) makes a reader use SQLite's usual connection, which in a
    # read-only folder needs the -shm beside a log that holds results: the one path left to _open_read_only_folder.
    import fcntl
    import shutil

    import tunesmith as ts
    from tunesmith._layout import lock_path

    ts.run(lambda c: ts.report({"loss": c["x"]}), {"x": ts.grid([1, 2, 3])}, verbose=0, name="ro")
    clean, pending = tmp_path / "clean", tmp_path / "pending"
    shutil.copytree(results_dir / "ro", clean)
    for side in ("experiment.db-wal", "experiment.db-shm"):
        if (clean / side).exists():
            os.remove(clean / side)
    shutil.copytree(clean, pending)
    writer = Store(str(pending / "experiment.db"))
    with writer.transaction() as db:
        writer.set_meta(db, "note", "only in the log")
    os.remove(pending / "experiment.db-shm")  # (the open writer keeps its own mapping)
    try:
        for folder in (clean, pending):
            with open(lock_path(str(folder)), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                done = _read_only_view(folder, _READ)
            if folder == clean:  # no log: the file holds everything and is read as immutable
                assert done.stdout.strip() == "trials 3 None", (done.stdout, done.stderr)
    finally:
        writer.close()
    wal, shm = pending / "experiment.db-wal", pending / "experiment.db-shm"
    assert done.stdout.strip() == (
        f"StoreError cannot read the experiment store {pending / 'experiment.db'}: its folder is read-only, and its "
        f"write-ahead log ({wal.name}) holds results that SQLite reads only through a -shm file beside it "
        f"({shm.name}), which it can neither open nor make there; copy the folder somewhere writable and read it "
        f"there"), done.stdout


@pytest.mark.parametrize("linked", ["experiment.db", "experiment.db-wal", "experiment.db-shm"])
def test_a_store_or_side_file_that_is_a_link_is_opened_by_no_reader_or_driver(results_dir, linked):
    """A folder someone else made whose experiment.db links to another experiment's store (a resume would run a
    second driver in it, the other's lock untouched), or whose -wal/-shm links elsewhere (SQLite writes there,
    a reader too): refused, and the link's target left as it was."""
    import shutil

    import tunesmith as ts

    victim = _experiment(results_dir, "victim")
    ts.load("victim")  # its side files, if any, as a reader leaves them
    before = {p.name: p.read_bytes() for p in victim.parent.iterdir() if p.is_file()}
    folder = results_dir / "planted"
    folder.mkdir()
    if linked != "experiment.db":
        shutil.copyfile(victim, folder / "experiment.db")
    target = victim if linked == "experiment.db" else victim.parent / "elsewhere"
    if linked != "experiment.db":
        target.write_bytes(b"the user's own file")
        before[target.name] = target.read_bytes()
    os.symlink(target, folder / linked)
    with pytest.raises(StoreError, match=f"{linked} is a symbolic link") as info:
        ts.load("planted").trials  # noqa: B018
    assert str(folder / linked) in str(info.value)
    with pytest.raises(StoreError, match="symbolic link"):
        ts.run(lambda c: ts.report({"loss": 1.0}), name="planted", resume=True, verbose=0)
    assert {p.name: p.read_bytes() for p in victim.parent.iterdir() if p.is_file()} == before


def test_an_integer_beyond_a_float_that_an_older_tunesmith_stored_is_read_as_infinity(tmp_path):
    """report() refuses an integer past a float's range, but an older tunesmith stored it: a load and a resume read
    it as the infinity of its sign (as SQLite's own JSON reads it), not as an OverflowError."""
    import tunesmith as ts
    from tunesmith.executors.simulated import SimulatedBackend

    def steady(config, ctx):
        state = ctx.checkpoint or {"step": 0}
        while state["step"] < 3:
            state["step"] += 1
            yield {"loss": config["x"] / state["step"], "acc": 0.5}, 1.0, dict(state)

    def run(**kw):
        return ts.run(steady, space={"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", name="old",
                      storage_path=str(tmp_path), backend=SimulatedBackend({"cpu": 2}), verbose=0,
                      file_loggers=False, **kw)

    run()
    huge, low = "1" + "0" * 400, "-1" + "0" * 400
    db = sqlite3.connect(os.path.join(str(tmp_path), "old", "experiment.db"))
    # as the older tunesmith wrote them: trial 1's second result and trial 2's last, a JSON integer of 401 digits
    db.execute("UPDATE results SET metrics = ? WHERE trial_id = 1 AND iteration = 2",
               (f'{{"loss": {huge}, "acc": {low}}}',))
    db.execute("UPDATE results SET metrics = ? WHERE trial_id = 2 AND iteration = 3",
               (f'{{"loss": {huge}, "acc": 0.5}}',))
    db.execute("UPDATE trials SET last_result = ? WHERE id = 2", (f'{{"loss": {huge}, "acc": 0.5}}',))
    db.commit()
    db.close()
    loaded = ts.load(os.path.join(str(tmp_path), "old"))
    assert loaded.history(1)[1]["loss"] == math.inf and loaded.history(1)[1]["acc"] == -math.inf
    assert loaded.trial(2).last_result["loss"] == math.inf
    assert loaded.best.id == 1 and ts.load(os.path.join(str(tmp_path), "old"), mode="max").best.id == 2
    assert loaded.dataframe(all_results=True)["loss"].tolist()[1] == math.inf
    resumed = run(resume=True)  # replays the stored results through the searcher and scheduler
    assert len(resumed.trials) == 2 and resumed.history(2)[-1]["loss"] == math.inf


def _open_files(path: str) -> int:
    """How many of this process's file descriptors are open on the file ``path`` (Linux). By path, not by name: a
    store another test of the same process left to the garbage collector is not this one (pytest-xdist runs many
    test files in one process)."""
    count = 0
    wanted = os.path.realpath(path)
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == wanted
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_a_result_set_let_go_closes_its_store_at_once(tmp_path):
    """A ResultSet dropped (a script's loop of runs, a notebook cell run again) kept its reader's SQLite connection open
    until the garbage collector ran (a connection sits in a reference cycle of its own: its statement cache), so an
    experiment folder copied or checked right after could still change when it closed (it folds a write-ahead log
    into the file: tests/schedulers/test_pbt_lineage.py's refused resume saw the file change under it)."""
    import gc

    import tunesmith as ts
    from tunesmith.executors.simulated import SimulatedBackend

    def steady(config, ctx):
        yield {"loss": config["x"]}, 1.0, None

    gc.collect()
    gc.disable()
    try:
        ts.run(steady, {"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", name="e", storage_path=str(tmp_path),
               backend=SimulatedBackend({"cpu": 2}), verbose=0, file_loggers=False)
        db = os.path.join(str(tmp_path), "e", "experiment.db")
        assert _open_files(db) == 0
        rs = ts.load(os.path.join(str(tmp_path), "e"))
        assert len(rs.trials) == 2 and _open_files(db) == 1
        del rs
        assert _open_files(db) == 0
    finally:
        gc.enable()


def test_the_writer_truncates_a_log_that_grew_under_a_readers_snapshot(tmp_path):
    """A reader's snapshot (``tunesmith report`` during a fast run) keeps checkpoints from getting past it, so the
    -wal grows; it kept its largest size on disk until the driver ended. Once the reader lets go, the writer's
    next checkpoint folds the log in and the commit after it truncates the file to ``WAL_SIZE_LIMIT``."""
    path = str(tmp_path / "e.db")
    s = Store(path)
    with s.transaction() as db:
        s.insert_trial(db, 1, {}, {}, "RUNNING")
    big = json.dumps({"blob": "x" * 50_000})
    it = 0

    def write() -> None:
        nonlocal it
        with s.transaction() as db:
            s.append_results(db, [(1, it + k, 0.0, 0.0, big) for k in range(1, 51)])
        it += 50

    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM results").fetchone()  # its snapshot, held until it ends
    while os.path.getsize(path + "-wal") <= 2 * WAL_SIZE_LIMIT:
        write()
    reader.execute("COMMIT")
    reader.close()
    write()  # its commit's checkpoint folds the whole log into the file
    write()  # the log restarts from its start: the commit truncates it
    assert os.path.getsize(path + "-wal") <= WAL_SIZE_LIMIT
    assert s.count_results() == it
    s.close()
