"""``tunesmith export``: the per-trial files written from the store on demand (the run writes none by default);
the same files the live file loggers write, never written through a link planted in the folder."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from typing import Any

import pytest
from click.testing import CliRunner

import tunesmith as ts
from tunesmith._layout import store_path
from tunesmith.cli import cli

pytestmark = pytest.mark.timeout(120)
ODD = 'a,"b\nc'  # a metric name with a comma, a quote and a newline: the CSV must quote it


def train(config: Any) -> None:
    for i in range(1, 4):
        metrics = {"loss": config["x"] / i, "tag": f"it,{i}"}
        if i >= 2:
            metrics[ODD] = i * 0.5  # a key that first appears at the second result
        ts.report(metrics)


def export(*args: str) -> Any:
    return CliRunner().invoke(cli, ["export", *args])


def test_the_default_run_writes_no_trial_files_and_export_writes_what_the_loggers_would(results_dir: Any,
                                                                                          tmp_path: Any) -> None:
    space = {"x": ts.grid([1.0, 2.0, 3.0]), "key": "s3cr3t-value-0123456789abcdef"}
    live = ts.run(train, space, metric="loss", mode="min", verbose=0, name="live", file_loggers=True)
    quiet = ts.run(train, space, metric="loss", mode="min", verbose=0, name="quiet")
    assert not os.path.exists(os.path.join(quiet.path, "trials")) or all(
        not {"progress.csv", "result.jsonl", "params.json"} & set(os.listdir(t.path))
        for t in quiet.trials if os.path.isdir(t.path))  # nothing per trial while it runs: the store has it

    res = export("live", "--storage-path", str(results_dir), "--to", str(tmp_path / "live"))
    assert res.exit_code == 0, res.output
    for t in live.trials:
        for name in ("progress.csv", "result.jsonl", "params.json"):
            with open(os.path.join(t.path, name), "rb") as fa, open(tmp_path / "live" / t.name / name, "rb") as fb:
                assert fa.read() == fb.read(), name  # byte for byte what the live loggers wrote

    res = export("quiet", "--storage-path", str(results_dir))
    assert res.exit_code == 0, res.output
    assert "wrote the files of 3 trials" in res.output

    for t in quiet.trials:
        stored = quiet.history(t.id)
        with open(os.path.join(t.path, "result.jsonl")) as f:
            assert [json.loads(line) for line in f] == stored
        with open(os.path.join(t.path, "progress.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r[ODD] for r in rows] == ["", "1.0", "1.5"]  # the odd name is one column; a later key's cell
        assert [float(r["loss"]) for r in rows] == [r["loss"] for r in stored]
        assert [r["tag"] for r in rows] == [r["tag"] for r in stored]
        with open(os.path.join(t.path, "params.json")) as f:
            params = json.load(f)
        assert params["x"] == t.config["x"] and "s3cr3t" not in params["key"]  # masked, as the logger does

    again = export("quiet", "--storage-path", str(results_dir), "--format", "jsonl", "--to", str(tmp_path / "out"))
    assert again.exit_code == 0, again.output
    assert sorted(os.listdir(tmp_path / "out" / quiet.trials[0].name)) == ["params.json", "result.jsonl"]
    export("quiet", "--storage-path", str(results_dir))  # a second export replaces, never appends
    with open(os.path.join(quiet.trials[0].path, "result.jsonl")) as f:
        assert len(f.readlines()) == 3


def test_export_writes_through_no_link_planted_in_the_folder(results_dir: Any, tmp_path: Any) -> None:
    rs = ts.run(train, {"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", verbose=0, name="shared")
    first, second = (os.path.join(rs.path, "trials", t.name) for t in rs.trials)
    os.makedirs(first, exist_ok=True)
    victims = {}
    for name in ("params.json", "progress.csv", "result.jsonl"):
        victim = tmp_path / f"victim-{name}"
        victim.write_text("precious")
        victims[name] = victim
        if os.path.lexists(os.path.join(first, name)):
            os.remove(os.path.join(first, name))
        os.symlink(victim, os.path.join(first, name))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if os.path.isdir(second):
        os.rename(second, str(tmp_path / "moved"))
    os.symlink(elsewhere, second)  # a trial folder that is a link to another folder

    res = export("shared", "--storage-path", str(results_dir))
    assert res.exit_code != 0
    assert "is a symbolic link" in res.output and rs.trials[1].name in res.output
    assert all(v.read_text() == "precious" for v in victims.values())  # the links were replaced, not followed
    assert not any(os.path.islink(os.path.join(first, n)) for n in victims)
    assert os.listdir(elsewhere) == []  # nothing written through the linked folder


def test_export_refuses_a_trial_id_from_the_store_that_is_no_whole_number(results_dir: Any) -> None:
    rs = ts.run(train, {"x": 1.0}, metric="loss", mode="min", verbose=0, name="odd")
    db = sqlite3.connect(store_path(rs.path))
    with db:
        db.execute("UPDATE trials SET id = -1")
    db.close()
    res = export("odd", "--storage-path", str(results_dir))
    assert res.exit_code != 0 and "names a trial -1; expected a whole number" in res.output


@pytest.mark.parametrize("target", ["elsewhere", "missing"])
def test_export_to_a_symbolic_link_is_refused_naming_it(results_dir: Any, tmp_path: Any, target: str) -> None:
    """A link to a missing folder was ``cannot write '...': File exists`` (``os.makedirs`` of a link it cannot
    follow); a link to a folder was refused as a symbolic link. Both now say so, and nothing is written."""
    ts.run(train, {"x": 1.0}, metric="loss", mode="min", verbose=0, name="linked")
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "out"
    os.symlink(tmp_path / target, link)
    res = export("linked", "--storage-path", str(results_dir), "--to", str(link))
    assert res.exit_code != 0
    assert f"{link} is a symbolic link; nothing is written through it" in res.output, res.output
    assert os.listdir(tmp_path / "elsewhere") == [] and not os.path.lexists(tmp_path / "missing")
