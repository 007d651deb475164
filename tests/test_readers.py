"""Readers at scale: `tunesmith show` pages, `dataframe(all_results=True)` builds columns, lookups by id and the
best over all results answer without reading every row in Python (issue 19 rows 6-8).

Stores are written by hand as the driver writes them (real SQLite files); answers are compared with a plain
scan of the same data."""

from __future__ import annotations

import json
import math
import os
import random
import re
import sqlite3
from typing import Any

import pytest
from click.testing import CliRunner
from reader_helpers import brute_best_all

from tunesmith._layout import STORE_FILE
from tunesmith.cli import cli
from tunesmith.results import ResultSet, load
from tunesmith.store.sqlite import Store, dumps

pytestmark = pytest.mark.timeout(120)


def write_store(folder: str, trials: list[dict[str, Any]], metric: Any = "loss", mode: Any = "min") -> str:
    """Each trial: ``id``, ``config``, ``status``, ``results`` (metric dicts, iterations 1, 2, ...), optional
    ``superseded`` (metric dicts of an earlier PBT generation, kept as data but not the trial's history)."""
    os.makedirs(folder, exist_ok=True)
    store = Store(os.path.join(folder, STORE_FILE))
    with store.transaction() as db:
        store.set_meta(db, "spec", {"name": os.path.basename(folder), "metric": metric, "mode": mode, "space": {}})
        store.set_meta(db, "status", "finished")
        for t in trials:
            store.insert_trial(db, t["id"], t["config"], {"cpu": 1.0}, t.get("status", "TERMINATED"))
            old = t.get("superseded", [])
            generation = 1 if old else 0
            rows = [(t["id"], it, float(it), 1000.0 + it, dumps(m), 0) for it, m in enumerate(old, start=1)]
            rows += [(t["id"], it, float(it), 2000.0 + it, dumps(m), generation)
                     for it, m in enumerate(t["results"], start=1)]
            if rows:
                store.append_results(db, rows)
            last = {**t["results"][-1], "training_iteration": len(t["results"])} if t["results"] else None
            store.update_trial(db, t["id"], iteration=len(t["results"]), generation=generation,
                               last_result=dumps(last) if last else None, error=t.get("error"))
    assert store.index_results()  # as the driver does once the experiment finished
    store.close()
    return folder


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def many(folder: str, n: int, per_trial: int = 1) -> str:
    return write_store(folder, [{"id": i, "config": {"lr": i / 1000, "opt": {"name": "adam"}},
                                 "results": [{"loss": (i * 7919 % n) + j / 10} for j in range(per_trial)]}
                                for i in range(1, n + 1)])


# -- show ---------------------------------------------------------------------------------------------------


def test_show_pages_by_default_and_all_dumps_every_trial(tmp_path: Any) -> None:
    many(str(tmp_path / "big"), 75)
    rs = load(str(tmp_path / "big"))
    ranked = [t.name for t in rs.top(75)]

    res = invoke("show", "big", "--storage-path", str(tmp_path))
    assert res.exit_code == 0, res.output
    listed = [w for line in res.output.splitlines() for w in line.split()[:1] if w.startswith("trial_")]
    assert listed == ranked[:20]  # the best 20 by the metric
    assert "55 more trials not shown" in res.output and "--all" in res.output and "--limit" in res.output

    res = invoke("show", "big", "--storage-path", str(tmp_path), "--all")
    listed = [w for line in res.output.splitlines() for w in line.split()[:1] if w.startswith("trial_")]
    assert listed == ranked and "more trials" not in res.output

    res = invoke("show", "big", "--storage-path", str(tmp_path), "--limit", "30")
    listed = [w for line in res.output.splitlines() for w in line.split()[:1] if w.startswith("trial_")]
    assert listed == ranked[:30] and "45 more trials not shown" in res.output

    # --json is for scripts: complete unless --limit is given
    data = json.loads(invoke("show", "big", "--storage-path", str(tmp_path), "--json").output)
    assert [t["name"] for t in data["trials"]] == ranked
    data = json.loads(invoke("show", "big", "--storage-path", str(tmp_path), "--json", "--limit", "5").output)
    assert [t["name"] for t in data["trials"]] == ranked[:5]

    res = invoke("show", "big", "--storage-path", str(tmp_path), "--all", "--limit", "5")
    assert res.exit_code == 2 and "--all" in res.output and "--limit" in res.output


def test_show_all_of_many_trials_prints_one_aligned_plain_line_per_trial(tmp_path: Any) -> None:
    from tunesmith.cli import SHOW_RICH_ROWS

    n = SHOW_RICH_ROWS + 5
    write_store(str(tmp_path / "big"), [
        {"id": i, "config": {"lr": i / 1000, "prompt": "[INST] hi\x1b[31m [/INST]" if i == 3 else "plain"},
         "results": [{"loss": float(i)}]} for i in range(1, n + 1)])
    res = invoke("show", "big", "--storage-path", str(tmp_path), "--all")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:3] == ["trial", "status", "iter"])
    rows = [line for line in lines[head + 2:] if line.startswith("trial_")]
    assert [r.split()[0] for r in rows] == [f"trial_{i:05d}" for i in range(1, n + 1)]  # one line each, best first
    assert set(lines[head + 1]) <= {"-", " "}
    starts = {[m.start() for m in re.finditer(r"\S+", r)][3] for r in rows}  # the loss column: one place in all
    assert starts == {lines[head].index("loss")}
    third = rows[2]
    assert "[INST] hi\\x1b[31m [/INST]" in third and "\x1b" not in res.output  # shown as text, never sent raw


def test_show_of_a_small_experiment_has_no_paging_line(tmp_path: Any) -> None:
    many(str(tmp_path / "small"), 20)
    res = invoke("show", "small", "--storage-path", str(tmp_path))
    assert res.exit_code == 0 and res.output.count("trial_000") == 20 and "more trials" not in res.output


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("sort", [None, "-x", "status", "-iteration"])
def test_show_builds_only_the_trials_it_shows_in_the_order_of_a_full_read(tmp_path: Any, monkeypatch: Any,
                                                                          mode: str, sort: str | None) -> None:
    """A page of `show` ranks every trial from its status, iteration and last result (its config decoded only
    when sorting by it) and builds a TrialResult for the shown ones only (counted), in the order the full read
    gives (ties, NaN, strings, missing values; --json without --limit reads every trial)."""
    import tunesmith.results as results_module

    folder = write_store(str(tmp_path / "awk"), awkward_trials(), mode=mode)
    sort_args = [] if sort is None else ["--sort", sort]
    every = json.loads(invoke("show", folder, "--json", *sort_args).output)["trials"]
    built = [0]
    original = results_module.ResultSet._trial

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        built[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(results_module.ResultSet, "_trial", counted)
    page = json.loads(invoke("show", folder, "--json", "--limit", "7", *sort_args).output)["trials"]
    assert page == every[:7] and built[0] == 7
    built[0] = 0
    res = invoke("show", folder, *sort_args)
    listed = [w for line in res.output.splitlines() for w in line.split()[:1] if w.startswith("trial_")]
    assert listed == [t["name"] for t in every[:20]] and built[0] == 20
    assert "40 trials (" in res.output and "20 more trials not shown" in res.output


@pytest.mark.parametrize("sort", [None, "loss", "-loss", "-lr", "id"])
def test_a_page_of_show_decodes_no_last_result_it_does_not_need(tmp_path: Any, monkeypatch: Any,
                                                                sort: str | None) -> None:
    """Ranking by a metric whose values are plain numbers reads them through SQLite (no trial's last result is
    decoded in Python but the shown ones'); ranking by id or a config key, or an experiment without a metric,
    decodes no last result at all. The page is the one a full read gives."""
    from tunesmith import cli as cli_module

    folder = many(str(tmp_path / "plain"), 60)
    sort_args = [] if sort is None else ["--sort", sort]
    every = json.loads(invoke("show", folder, "--json", *sort_args).output)["trials"]
    decoded: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(json, name)

        @staticmethod
        def loads(text: Any, *args: Any, **kwargs: Any) -> Any:
            decoded.append(text)
            return json.loads(text, *args, **kwargs)

    monkeypatch.setattr(cli_module, "json", Counting())
    res = invoke("show", folder, *sort_args)
    listed = [w for line in res.output.splitlines() for w in line.split()[:1] if w.startswith("trial_")]
    assert listed == [t["name"] for t in every[:20]]
    assert not [t for t in decoded if '"loss"' in t], decoded[:3]


def test_show_ranks_by_a_metric_sqlite_cannot_read_as_a_full_read_does(tmp_path: Any) -> None:
    """A metric whose name a JSON path cannot spell (a quote, a backslash, a dot) or whose values are not all
    numbers (bools, text, NaN and infinities, which SQLite's JSON cannot read) is ranked from the decoded
    results, as a full read ranks it."""
    rng = random.Random(5)
    values: list[Any] = [1.5, -2, True, False, "7", math.nan, math.inf, -math.inf, None, 3, 0.25, 10**30]
    for metric in ('lo"ss', "lo\\ss", "lo.ss", "loss"):
        folder = write_store(str(tmp_path / f"m{len(os.listdir(tmp_path))}"),
                             [{"id": i, "config": {"x": i},
                               "results": [{metric: rng.choice(values)}] if i % 9 else [{"acc": 1}]}
                              for i in range(1, 41)], metric=metric)
        for sort_args in ([], ["--sort", metric], ["--sort", "-" + metric]):
            every = json.loads(invoke("show", folder, "--json", *sort_args).output)["trials"]
            page = json.loads(invoke("show", folder, "--json", "--limit", "12", *sort_args).output)["trials"]
            assert [t["id"] for t in page] == [t["id"] for t in every[:12]], (metric, sort_args)


# -- dataframe ----------------------------------------------------------------------------------------------


def old_all_results_frame(rs: ResultSet, show_secrets: bool = False) -> Any:
    """dataframe(all_results=True) as it was built before issue 19: a dict per result."""
    import pandas as pd

    from tunesmith._secrets import shown as masked
    from tunesmith.space import flatten
    from tunesmith.store.sqlite import result_dict

    by_id = {t.id: t if show_secrets else masked(t) for t in rs.trials}
    rows = []
    for row in rs._store.results():
        t = by_id.get(row[0])
        rec = {"trial_id": row[0], **result_dict(row)}
        if t is not None:
            rec.update({f"config/{k}": v for k, v in flatten(t.config).items()})
        rows.append(rec)
    return pd.DataFrame(rows)


def mixed_trials() -> list[dict[str, Any]]:
    rng = random.Random(3)
    trials = []
    for i in range(1, 13):
        config: dict[str, Any] = {"lr": rng.random(), "api_token": f"tok-{i}", "opt": {"name": "adam", "b": i},
                                  "db": "postgres://u:hunter2@h/db"}
        if i % 3 == 0:
            config["extra"] = "only some"  # a column only some trials have
        if i % 4 == 0:
            config["opt"] = {"name": "sgd"}
        results = []
        for it in range(rng.randint(0, 5)):
            m: dict[str, Any] = {"loss": rng.random(), "acc": rng.randint(0, 100)}
            if it == 2:
                m["note"] = "text"  # a key only some results have
            if it == 3:
                m["loss"] = math.nan
            results.append(m)
        trials.append({"id": i, "config": config, "results": results,
                       "superseded": [{"loss": 5.0}] if i == 5 else []})
    return trials


@pytest.mark.parametrize("show_secrets", [False, True])
@pytest.mark.parametrize("chunk", [None, 3])
def test_all_results_frame_equals_the_old_one(tmp_path: Any, show_secrets: bool, chunk: int | None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    import tunesmith.results as results_module

    if chunk is not None:  # several chunks: the frame is put together from parts
        monkeypatch.setattr(results_module, "_FRAME_CHUNK", chunk)
    rs = load(write_store(str(tmp_path / "mixed"), mixed_trials()))
    new = rs.dataframe(all_results=True, show_secrets=show_secrets)
    old = old_all_results_frame(rs, show_secrets)
    assert list(new.columns) == list(old.columns)
    pd.testing.assert_frame_equal(new, old)
    assert ("hunter2" in new.to_string()) is show_secrets and ("tok-1" in new.to_string()) is show_secrets


def typed_trials() -> list[dict[str, Any]]:
    """Columns whose type is decided across chunks: an int metric that is a float in a later trial, one that
    only some trials report, one a number then a string, bools and strings with gaps, configs of every JSON
    type, an int past int64."""
    trials = []
    for i in range(1, 9):
        config: dict[str, Any] = {"lr": i / 10, "width": 32 * i, "opt": {"name": "sgd" if i % 2 else "adam"}}
        if i % 3 == 0:
            config.update(width=0.5, flag=True, few=[1, 2])  # int -> float; keys some trials lack
        if i == 5:
            config["huge"] = 2**70
        results = []
        for it in range(4):
            m: dict[str, Any] = {"loss": 1.0 / (i + it), "step": i * 10 + it, "big": 2**60 + it}
            if i >= 6:
                m["step"] = i + it / 2  # an int column becomes float in a later chunk
            if i in (2, 7):
                m.update(some=it, done=it == 3, phase="warm" if it < 2 else "main")  # only some trials
            if i >= 4:
                m["mixed"] = 0.5 * it if i < 7 else "nan-ish"  # numbers, then strings (object in the end)
            if i == 8 and it == 1:
                m["loss"] = math.nan
            results.append(m)
        trials.append({"id": i, "config": config, "results": results})
    return trials


@pytest.mark.parametrize("chunk", [None, 1, 3, 5, 8])
def test_all_results_frame_types_decided_across_chunks_equal_the_old_one(tmp_path: Any, chunk: int | None,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each column's dtype is the one a frame of every row gets, whatever chunk an int, a float, a gap or a
    string falls in (int64 kept where every row holds an int)."""
    import pandas as pd

    import tunesmith.results as results_module

    if chunk is not None:
        monkeypatch.setattr(results_module, "_FRAME_CHUNK", chunk)
    rs = load(write_store(str(tmp_path / "typed"), typed_trials()))
    new, old = rs.dataframe(all_results=True), old_all_results_frame(rs)
    assert list(new.columns) == list(old.columns)
    assert str(new["big"].dtype) == "int64" and str(new["step"].dtype) == "float64"
    assert str(new["config/width"].dtype) == "float64" and new["mixed"].dtype == object
    pd.testing.assert_frame_equal(new, old)


def same_keys_trials(reorder: bool) -> list[dict[str, Any]]:
    """Every result reports the same keys (a chunk is then built without looking at each row), trials of several
    lengths whose configs differ in their keys; with ``reorder`` every other result gives its keys in another
    order (the same keys: still one column each, in the order they first appeared)."""
    trials = []
    for i in range(1, 8):
        config: dict[str, Any] = {"lr": i / 10, "opt": {"name": "adam" if i % 2 else "sgd"}}
        if i in (3, 6):
            config["only_some"] = i
        results = []
        for it in range(i % 4 + 1):
            m: dict[str, Any] = {"loss": 1.0 / (i + it), "step": it, "phase": "warm" if it else "start"}
            if reorder and it % 2:
                m = {"phase": m["phase"], "step": m["step"], "loss": m["loss"]}
            results.append(m)
        trials.append({"id": i, "config": config, "results": results})
    return trials


@pytest.mark.parametrize("reorder", [False, True])
@pytest.mark.parametrize("chunk", [None, 1, 2, 5])
def test_all_results_frame_of_results_with_the_same_keys_equals_the_old_one(
        tmp_path: Any, reorder: bool, chunk: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    import tunesmith.results as results_module

    if chunk is not None:  # trials' rows split across chunks
        monkeypatch.setattr(results_module, "_FRAME_CHUNK", chunk)
    rs = load(write_store(str(tmp_path / "same"), same_keys_trials(reorder)))
    new, old = rs.dataframe(all_results=True), old_all_results_frame(rs)
    assert list(new.columns)[:4] == ["trial_id", "loss", "step", "phase"] and "config/only_some" in new.columns
    pd.testing.assert_frame_equal(new, old)


def test_all_results_frame_of_a_store_holding_text_in_its_number_columns_equals_the_old_one(tmp_path: Any) -> None:
    """A store someone else wrote may hold anything in a column (SQLite keeps text in a REAL column): the
    automatic columns are typed as pandas types them, text kept as text, not read as a number."""
    import sqlite3

    import pandas as pd

    folder = write_store(str(tmp_path / "odd"), same_keys_trials(False))
    db = sqlite3.connect(os.path.join(folder, STORE_FILE))
    db.execute("UPDATE results SET time_total = 'soon' WHERE trial_id = 2 AND iteration = 1")  # not a number
    db.commit()
    db.close()
    rs = load(folder)
    new = rs.dataframe(all_results=True)
    assert new["time_total_s"].dtype == object and "soon" in list(new["time_total_s"])
    pd.testing.assert_frame_equal(new, old_all_results_frame(rs))


def wide_number_trials() -> list[dict[str, Any]]:
    """Results JSON decoders read differently: ints past 64 bits (alone, in a list, negative), NaN and
    infinities (not JSON: Python writes them); beside plain rows."""
    trials = []
    for i in range(1, 7):
        results = []
        for it in range(3):
            m: dict[str, Any] = {"loss": 1.0 / (i + it), "step": it}
            if i == 2:
                m["loss"] = [2**64 + 1 + it, -(2**63) - 1 - it][it % 2]  # in a column of floats
            if i == 3:
                m["step"] = [2**64 - 1, 2**70 + 1, 5][it]
            if i == 4:
                m["loss"] = [math.nan, math.inf, -math.inf][it]
            if i == 5 and it == 1:
                m = {"loss": 0.5, "step": 1, "tags": [1, 2**80, {"deep": -(2**65)}]}
            results.append(m)
        trials.append({"id": i, "config": {"x": i}, "results": results})
    return trials


@pytest.mark.parametrize("chunk", [None, 1, 3, 4])
def test_all_results_frame_decodes_every_number_as_python_json_does(tmp_path: Any, chunk: int | None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The results' JSON is decoded by a faster decoder where installed (orjson, the `pandas` extra); a chunk
    it reads differently or not at all (an int past 64 bits it makes a float; NaN and Infinity it refuses) is
    decoded by Python's json instead: the frame is the one a dict per result gives."""
    import pandas as pd

    import tunesmith.results as results_module

    if chunk is not None:
        monkeypatch.setattr(results_module, "_FRAME_CHUNK", chunk)
    rs = load(write_store(str(tmp_path / "wide"), wide_number_trials()))
    new, old = rs.dataframe(all_results=True), old_all_results_frame(rs)
    assert 2**64 + 1 in list(new["loss"]) and 2**70 + 1 in list(new["step"])  # exact, not a float near it
    pd.testing.assert_frame_equal(new, old)


def test_the_frame_is_decoded_by_the_pandas_extras_orjson(tmp_path: Any, monkeypatch: Any) -> None:
    """`make test` installs every extra: the results' chunks are decoded by orjson there, one call a chunk (the
    fallback is Python's json), and the frame is the one a dict per result gives."""
    import orjson
    import pandas as pd

    import tunesmith.results as results_module

    real, texts = orjson.loads, []

    def counted(text: Any) -> Any:
        texts.append(text)
        return real(text)

    monkeypatch.setattr(orjson, "loads", counted)
    monkeypatch.setattr(results_module, "_FRAME_CHUNK", 4)
    rs = load(write_store(str(tmp_path / "same"), same_keys_trials(False)))
    new = rs.dataframe(all_results=True)
    assert len(texts) == math.ceil(len(new) / 4) and all(t.startswith("[{") for t in texts)
    pd.testing.assert_frame_equal(new, old_all_results_frame(rs))


@pytest.mark.parametrize("counted", [0, 7, 1000])
def test_all_results_frame_when_the_count_differs_from_the_rows_read(tmp_path: Any, counted: int,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The columns are allocated at the store's count, taken before the rows are read: a writer may add rows
    (or a PBT exploit move a trial's generation) in between. More rows grow the columns, fewer are cut off."""
    import pandas as pd

    import tunesmith.results as results_module

    monkeypatch.setattr(results_module, "_FRAME_CHUNK", 3)
    rs = load(write_store(str(tmp_path / "typed"), typed_trials()))
    monkeypatch.setattr(rs._store, "count_results", lambda: counted)
    pd.testing.assert_frame_equal(rs.dataframe(all_results=True), old_all_results_frame(rs))


def test_all_results_frame_is_built_once_not_copied_from_its_chunks(tmp_path: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The numeric columns are filled in place chunk by chunk and become the frame without a copy: the memory
    traced while building (numpy's arrays are traced) stays near the frame's own size, where chunk frames
    concatenated hold the frame twice (issue 19 row 7: peak <= 3x the frame at a million results)."""
    import tracemalloc

    import tunesmith.results as results_module

    monkeypatch.setattr(results_module, "_FRAME_CHUNK", 500)
    folder = write_store(str(tmp_path / "deep"), [
        {"id": i, "config": {"lr": i / 100, "width": 8 * i}, "results": [{"loss": 1 / j, "acc": j} for j in
                                                                          range(1, 2001)]} for i in range(1, 11)])
    rs = load(folder)
    rs.dataframe(all_results=True)  # pandas' own first-use allocations are not the frame's
    tracemalloc.start()
    try:
        df = rs.dataframe(all_results=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    frame = int(df.memory_usage(deep=True).sum())
    assert len(df) == 20_000 and frame >= 20_000 * 8 * 8
    assert peak < 1.5 * frame, f"traced peak {peak / frame:.2f}x the frame"


def test_all_results_frame_of_an_experiment_without_results(tmp_path: Any) -> None:
    rs = load(write_store(str(tmp_path / "empty"), [{"id": 1, "config": {"lr": 0.1}, "results": []}]))
    assert len(rs.dataframe(all_results=True)) == 0
    assert list(rs.dataframe(all_results=True).columns) == list(old_all_results_frame(rs).columns)


# -- lookups ------------------------------------------------------------------------------------------------


def awkward_trials() -> list[dict[str, Any]]:
    rng = random.Random(11)
    trials = []
    for i in range(1, 41):
        results = []
        for _ in range(rng.randint(0, 8)):
            choice = rng.random()
            value: Any = round(rng.uniform(-5, 5), 1)  # ties across and within trials
            if choice < 0.05:
                value = math.nan
            elif choice < 0.08:
                value = "high"
            elif choice < 0.11:
                value = True
            elif choice < 0.13:
                value = rng.choice([math.inf, -math.inf])
            elif choice < 0.2:
                value = rng.randint(-5, 5)
            m = {"loss": value, "other": math.nan} if rng.random() < 0.3 else {"loss": value}
            if rng.random() < 0.1:
                m = {"acc": 1.0}  # the metric missing
            results.append(m)
        superseded = [{"loss": -100.0}] if i % 7 == 0 else []  # an old lineage's rows are not the history
        trials.append({"id": i, "config": {"x": i}, "results": results, "superseded": superseded})
    return trials


def drop_indexes(folder: str) -> None:
    """The store as tunesmith wrote it before the metric's index (read by a scan)."""
    db = sqlite3.connect(os.path.join(folder, STORE_FILE))
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall():
        db.execute(f"DROP INDEX {name}")
    db.commit()
    db.close()


@pytest.mark.parametrize("indexed", [True, False])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_over_all_results_equals_a_scan(tmp_path: Any, mode: str, indexed: bool) -> None:
    folder = write_store(str(tmp_path / "awk"), awkward_trials(), mode=mode)
    if not indexed:
        drop_indexes(folder)
    rs = load(folder)
    fresh = load(rs.path).top(40, scope="all")  # before the trials are read: only the ranked ones are
    want = brute_best_all(rs, 40, "loss", mode)
    got = rs.top(40, scope="all")
    assert [(t.id, t.metrics["loss"], t.metrics["training_iteration"]) for t in got] == want
    assert fresh == got
    best = rs.get_best(scope="all")
    assert (best.id, best.metrics["loss"]) == want[0][:2]
    assert best.metrics == rs.history(best.id)[want[0][2] - 1]  # the whole result that made it best
    assert load(rs.path).get_best(scope="all") == best  # before the trials are read: one ordered index read
    other = "max" if mode == "min" else "min"
    assert [t.id for t in rs.top(5, mode=other, scope="all")] == [x[0] for x in brute_best_all(rs, 5, "loss", other)]
    flipped = load(rs.path).get_best(mode=other, scope="all")  # the index read from its other end
    assert (flipped.id, flipped.metrics["loss"], flipped.metrics["training_iteration"]) == \
        brute_best_all(rs, 1, "loss", other)[0]


def test_best_over_all_results_of_a_running_experiment_reads_the_results_in_one_statement(tmp_path: Any) -> None:
    """Without the metric's indexes (built when an experiment ends: a running one has none) ``get_best(scope=
    "all")`` is one pass of SQLite over the results, not each trial's best and then the best trial's rows decoded
    here (seconds at a million results)."""
    folder = many(str(tmp_path / "running"), 200, per_trial=5)
    drop_indexes(folder)
    rs = load(folder)
    seen: list[str] = []
    rs._store._db.set_trace_callback(seen.append)
    best = rs.get_best(scope="all")
    rs._store._db.set_trace_callback(None)
    reads = [sql for sql in seen if re.search(r"\bresults\b", sql)]
    assert len(reads) == 1, reads
    want = brute_best_all(rs, 1, "loss", "min")[0]
    assert (best.id, best.metrics["loss"], best.metrics["training_iteration"]) == want
    assert best.metrics == rs.history(best.id)[want[2] - 1]


@pytest.mark.parametrize("odd", ["val.loss $[0]", 'val "loss"'])  # SQLite's JSON path quoted; a scan
def test_best_over_all_results_of_a_metric_name_that_needs_quoting(tmp_path: Any, odd: str) -> None:
    trials = [{"id": i, "config": {}, "results": [{odd: v} for v in vals]}
              for i, vals in ((1, [3.0, 1.0]), (2, [2.0]), (3, []))]
    rs = load(write_store(str(tmp_path / "odd"), trials, metric=odd))
    assert [(t.id, t.metrics[odd]) for t in rs.top(3, scope="all")] == [(1, 1.0), (2, 2.0)]


def test_trial_by_id_reads_one_row(tmp_path: Any) -> None:
    many(str(tmp_path / "big"), 3000)
    rs = load(str(tmp_path / "big"))
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    rs._store._db.set_progress_handler(count, 1)  # one call per SQLite VM instruction
    t = rs.trial(2500)
    assert t.id == 2500 and t.config["lr"] == 2.5 and rs.trial("trial_02500") == t
    assert steps[0] < 500, steps[0]  # a scan of 3,000 rows takes tens of thousands
    with pytest.raises(KeyError, match="no trial 99999"):
        rs.trial(99999)
    everything = rs.trials  # once read, lookups come from a dict by id
    assert rs.trial(17) is everything[16]


def test_lookups_of_a_fresh_result_set_equal_the_scan(tmp_path: Any) -> None:
    rs = load(write_store(str(tmp_path / "awk"), awkward_trials()))
    for t in load(str(tmp_path / "awk")).trials:
        assert rs.trial(t.id) == t


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_by_last_result_before_the_trials_are_read_equals_a_scan(tmp_path: Any, mode: str) -> None:
    write_store(str(tmp_path / "awk"), awkward_trials(), mode=mode)
    scanned = load(str(tmp_path / "awk"))
    want = scanned.top(1)[0]  # reads every trial, ranks in Python
    fresh = load(str(tmp_path / "awk"))
    assert fresh.get_best() == want and fresh._trials is None  # ranked by SQLite, one trial's row read
    drop_indexes(str(tmp_path / "awk"))
    assert load(str(tmp_path / "awk")).get_best() == want  # without the finished run's index: SQLite scans
    data = json.loads(invoke("ls", "--storage-path", str(tmp_path), "--json").output)
    assert data[0]["best"]["trial"] == want.name and data[0]["trials"] == 40


def test_best_by_last_result_of_a_constrained_experiment_keeps_feasible_first(tmp_path: Any) -> None:
    trials = [{"id": 1, "config": {}, "results": [{"loss": 0.1, "constraint/0": 1.0}]},
              {"id": 2, "config": {}, "results": [{"loss": 0.5, "constraint/0": -1.0}]}]
    rs = load(write_store(str(tmp_path / "c"), trials))
    assert rs.get_best().id == 2


def test_all_results_frame_of_metrics_named_like_its_own_columns(tmp_path: Any) -> None:
    import pandas as pd

    trials = [{"id": 1, "config": {"lr": 0.1}, "results": [{"loss": 1.0, "config/lr": 5.0}, {"trial_id": 9}]},
              {"id": 2, "config": {"lr": 0.2}, "results": [{"loss": 2.0}]}]
    rs = load(write_store(str(tmp_path / "clash"), trials))
    pd.testing.assert_frame_equal(rs.dataframe(all_results=True), old_all_results_frame(rs))


def test_best_over_all_results_of_a_constrained_experiment_keeps_feasible_first(tmp_path: Any) -> None:
    trials = [{"id": 1, "config": {}, "results": [{"loss": 0.1, "constraint/0": 1.0}]},
              {"id": 2, "config": {}, "results": [{"loss": 0.2, "constraint/0": -1.0}, {"loss": 0.5,
                                                                                     "constraint/0": -1.0}]}]
    rs = load(write_store(str(tmp_path / "c"), trials))
    best = rs.get_best(scope="all")
    assert (best.id, best.metrics["loss"]) == (2, 0.2)


def test_best_over_all_results_seeks_an_index(tmp_path: Any) -> None:
    """The experiment's metric is indexed as results are written: the best of 40,000 results is a seek per
    trial and one trial's rows (counted in SQLite VM steps, not timed)."""
    trials = [{"id": i, "config": {}, "results": [{"loss": (i * 31 + j * 17) % 1000 / 7} for j in range(2000)]}
              for i in range(1, 21)]
    folder = write_store(str(tmp_path / "deep"), trials)

    def steps_of_best(path: str) -> tuple[int, Any]:
        rs = load(path)
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        rs._store._db.set_progress_handler(count, 1)
        best = rs.get_best(scope="all")
        return steps[0], (best.id, best.metrics)

    indexed, found = steps_of_best(folder)
    drop_indexes(folder)
    scanned, found_by_scan = steps_of_best(folder)
    assert found == found_by_scan
    # indexed: a seek per trial, then the best trial's own 2,000 rows (its best result, the earliest of equals)
    assert indexed * 20 < scanned, (indexed, scanned)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_of_a_fresh_load_reads_an_ordered_index_not_every_trial(tmp_path: Any, mode: str) -> None:
    """A finished experiment's overall best and best last result are each an ordered index read (the best value
    among the trials' current rows, then the lowest trial and earliest iteration holding it), not a seek per
    trial: SQLite VM steps counted, far fewer than there are trials; the answers equal a scan's."""
    n = 3000
    trials = [{"id": i, "config": {}, "results": [{"loss": (i * 7919 % 500) / 4 + j} for j in (2, 0, 1)],
               "superseded": [{"loss": -1.0}] if i % 100 == 0 else []} for i in range(1, n + 1)]
    folder = write_store(str(tmp_path / "wide"), trials, mode=mode)

    def steps_of(scope: str) -> tuple[int, Any]:
        rs = load(folder)
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        rs._store._db.set_progress_handler(count, 1)
        best = rs.get_best(scope=scope)
        return steps[0], best

    for scope in ("all", "last"):
        steps, best = steps_of(scope)
        scanned = load(folder)
        want = scanned.top(1, scope=scope)[0] if scope == "last" else None
        if scope == "all":
            brute = brute_best_all(scanned, 1, "loss", mode)[0]
            assert (best.id, best.metrics["loss"], best.metrics["training_iteration"]) == brute
        else:
            assert best == want
        assert steps < n, (scope, steps)  # a seek or a JSON read per trial is tens of steps each


def index_names(folder: str) -> set[str]:
    db = sqlite3.connect(os.path.join(folder, STORE_FILE))
    try:
        return {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    finally:
        db.close()


def test_a_finished_run_indexes_its_metric_and_a_resume_drops_the_index_while_it_runs(tmp_path: Any) -> None:
    import tunesmith as ts

    log = tmp_path / "seen.txt"

    def train(config: dict[str, Any]) -> None:  # runs in a worker process: what it sees goes to a file
        with open(log, "a") as f:
            f.write(json.dumps(sorted(index_names(str(tmp_path / "real")))) + "\n")
        ts.report({"loss": config["x"]})

    ts.run(train, space={"x": ts.grid([0.3, 0.1, 0.2])}, metric="loss", mode="min", name="real",
           storage_path=str(tmp_path), verbose=0, max_concurrent=1)
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(seen) == 3 and not any(seen)  # no index while it ran
    assert len(index_names(str(tmp_path / "real"))) == 5  # by trial, by value, by last result; constrained
    # trials; trials by status
    assert load(str(tmp_path / "real")).get_best(scope="all").metrics["loss"] == 0.1
    store = Store(os.path.join(str(tmp_path / "real"), STORE_FILE))
    with store.transaction() as db:
        store.set_meta(db, "status", "running")  # what a resume writes first
    store.close()
    assert index_names(str(tmp_path / "real")) == set()


def test_reading_a_store_does_not_import_urllib_request(tmp_path: Any) -> None:
    """Opening a store to read (every `show`, `ls`, `load`) quotes its path without urllib.request, which imports
    http, email and ssl (about 15 ms of each command); the quoting is the same (a folder named C#, a?b or 100%)."""
    import subprocess
    import sys
    from urllib.request import pathname2url

    from tunesmith.store.sqlite import _pathname2url

    folder = many(str(tmp_path / "odd C#a?b 100%"), 3)
    assert _pathname2url(os.path.join(folder, STORE_FILE)) == pathname2url(os.path.join(folder, STORE_FILE))
    code = ("import sys, tunesmith as ts; assert ts.load(sys.argv[1]).get_best().id == 3; "
            "print('urllib.request' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# -- ls -----------------------------------------------------------------------------------------------------


def test_ls_counts_a_finished_experiments_trials_from_an_index_and_answers_as_a_scan(tmp_path: Any) -> None:
    """`ls` counts each experiment's trials by status: in a finished experiment from the index on the trials'
    status built at its end (a read of the index, not of every trial's row with its config and last result);
    the counts equal a plain count of the rows."""
    statuses = ["TERMINATED", "ERROR", "TERMINATED", "PAUSED", "TERMINATED"]
    folder = write_store(str(tmp_path / "mixed"), [{"id": i, "config": {"x": i}, "status": statuses[i % 5],
                                                    "results": [{"loss": float(i)}]} for i in range(1, 51)])
    store = Store(os.path.join(folder, STORE_FILE), readonly=True)
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    counts = store.trial_counts()
    store._db.set_trace_callback(None)
    plans = [" ".join(str(r[-1]) for r in store._db.execute("EXPLAIN QUERY PLAN " + sql)) for sql in seen]
    store.close()
    assert counts == {"TERMINATED": 30, "ERROR": 10, "PAUSED": 10}
    trial_plans = [plan for plan in plans if " trials " in plan]  # (the experiment's status is read too)
    assert trial_plans and all("COVERING INDEX" in plan for plan in trial_plans), plans
    listed = json.loads(invoke("ls", "--storage-path", str(tmp_path), "--json").output)
    assert [(r["name"], r["trials"], r["errors"]) for r in listed] == [("mixed", 50, 10)]


def test_ls_draws_its_table_without_rich(tmp_path: Any) -> None:
    """`ls` is a handful of rows: its table is plain aligned text, so the command does not import rich (about
    15 ms of its start); names stay escaped (tests/test_cli.py prints hostile names through it in a terminal)."""
    import subprocess
    import sys

    many(str(tmp_path / "one"), 3)
    many(str(tmp_path / "two\x1b[2J"), 2)
    code = ("import sys\nfrom tunesmith.cli import main\ntry:\n    main(['ls', '--storage-path', sys.argv[1]])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\nprint('rich' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "False"
    header, rule, *rows = lines[:-1]
    assert header.split() == ["name", "status", "trials", "best", "age"] and set(rule.replace(" ", "")) == {"-"}
    assert [r.split()[:3] for r in rows] == [["one", "finished", "3"], ["two\\x1b[2J", "finished", "2"]]
    assert all(r.index("finished") == header.index("status") for r in rows)  # aligned columns
    assert "loss=0 (trial_00003)" in rows[0]


@pytest.mark.parametrize("all_results", [False, True])
def test_a_dataframe_keeps_text_pandas_str_columns_cannot_hold(tmp_path: Any, all_results: bool) -> None:
    """A file name that is not UTF-8 reaches Python as text with a lone surrogate (``os.listdir``'s
    surrogateescape); in a config or a metric it made pandas' str columns (pyarrow) fail the whole frame. Such
    text is kept as it is, its columns Python objects; the number columns keep their types."""
    odd = "run-\udcff.txt"
    folder = write_store(str(tmp_path / "odd"), [
        {"id": 1, "config": {"path": odd}, "results": [{"loss": 1.0, "file": odd}, {"loss": 0.5, "file": "b"}]},
        {"id": 2, "config": {"path": "b.txt"}, "results": [{"loss": 2.0, "file": "c"}]}])
    df = load(folder).dataframe(all_results=all_results)
    assert odd in list(df["config/path"]) and "b.txt" in list(df["config/path"])
    assert str(df["loss"].dtype) == "float64"
    if all_results:
        assert list(df["file"]) == [odd, "b", "c"]


def test_where_pandas_can_no_longer_build_text_as_objects_the_error_says_why(tmp_path: Any, monkeypatch: Any) -> None:
    """pandas 4 drops the option that builds text as objects: the frame then fails with a ValueError naming the
    cause, not a bare UnicodeEncodeError from pyarrow (the option's absence is what pandas 4 does, imitated)."""
    import pandas as pd

    if not pd.get_option("future.infer_string"):  # pandas 2 (Python 3.10's newest) builds text as objects already
        pytest.skip("this pandas stores text as objects by default: there is nothing to fall back from")

    def gone(*args: Any) -> Any:
        raise pd.errors.OptionError("No such keys(s): 'future.infer_string'")

    folder = write_store(str(tmp_path / "odd"), [{"id": 1, "config": {"path": "a\udcff"}, "results": [{"loss": 1}]}])
    monkeypatch.setattr(pd, "option_context", gone)
    with pytest.raises(ValueError, match="lone surrogate") as info:
        load(folder).dataframe()
    assert isinstance(info.value.__context__, pd.errors.OptionError)


@pytest.mark.parametrize("sql, where", [
    ("UPDATE results SET metrics = 'garbage' WHERE trial_id = 1", "result"),
    ("UPDATE results SET metrics = '[1, 2]' WHERE trial_id = 1", "result"),
    ("UPDATE trials SET config = 'null' WHERE id = 1", "config"),
    ("UPDATE trials SET last_result = '[1, 2]' WHERE id = 1", "last_result"),
    ("UPDATE trials SET resources = '\"x\"' WHERE id = 1", "resources"),
])
def test_a_damaged_value_in_a_row_is_a_store_error_from_every_reader(tmp_path: Any, sql: str, where: str) -> None:
    # the README promises a StoreError naming the file, never a raw JSON/attribute/type error
    from tunesmith.store.sqlite import StoreError

    folder = write_store(str(tmp_path / "bad"), [{"id": 1, "config": {"lr": 0.1}, "results": [{"loss": 1.0}] * 2},
                                                 {"id": 2, "config": {"lr": 0.2}, "results": [{"loss": 2.0}]}])
    with sqlite3.connect(os.path.join(folder, STORE_FILE)) as db:
        db.execute(sql)

    if where == "result":  # the trials' rows are sound: what reads the results says it
        rs = load(folder)
        reads = [lambda: rs.history(1), lambda: rs.dataframe(all_results=True)]
    else:
        reads = [lambda: load(folder).trials, lambda: load(folder).dataframe()]
    for read in reads:
        with pytest.raises(StoreError, match="damaged") as caught:
            read()
        assert where in str(caught.value) and "trial 1" in str(caught.value), caught.value
    readers = [["export", folder, "--to", str(tmp_path / "out")]]
    if "[1, 2]" not in sql or where != "result":  # (the report's plots read results with SQLite's JSON functions:
        readers.append(["report", folder, "-o", str(tmp_path / "r.html")])  # in an array they find no metric)
    if where != "result":  # (show reads the trials' rows, not their results)
        readers += [["show", folder], ["show", folder, "--json"]]
    for args in readers:
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 1 and res.output.startswith("error: StoreError: ") and "damaged" in res.output, \
            (args, res.output)
