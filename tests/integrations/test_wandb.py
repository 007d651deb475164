"""Weights & Biases: the logger and the in-trial setup in W&B's offline mode (no network); the offline run
files are read back (W&B's record format: a LevelDB-style log of protobuf records)."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from typing import Any

import pytest

import tunesmith as ts

pytest.importorskip("wandb")
import wandb  # noqa: E402
from wandb.proto import wandb_internal_pb2 as pb  # noqa: E402

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cr3t-token-value"
URL_PASSWORD = "hunter2pass"


@pytest.fixture(autouse=True)
def _offline(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    folder = str(tmp_path / "wandb")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, folder)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    # W&B reads its settings (WANDB_DIR...) once per process, where the driver's WandbLogger runs: each test's
    # runs go to its own folder only with W&B's process state set up again
    wandb.teardown()
    yield folder
    wandb.teardown()


def _records(path: str) -> list[Any]:
    """The protobuf records of a ``.wandb`` file: a 7-byte header, then 32 KiB blocks of chunks (crc32,
    length, type: 1 full, 2 first, 3 middle, 4 last)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B"
    pos, block, buf, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


def _runs(folder: str) -> dict[str, dict[str, Any]]:
    """name -> {group, config, history (rows), summary} of every offline run under ``folder``."""
    runs = {}
    for path in glob.glob(os.path.join(folder, "**", "*.wandb"), recursive=True):
        run: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "exit": None}
        for record in _records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run["name"], run["group"], run["project"] = (record.run.display_name, record.run.run_group,
                                                             record.run.project)
                run["tags"] = list(record.run.tags)
                run["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "config":
                run["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
            elif kind == "history":
                run["history"].append({"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                                       for i in record.history.item})
            elif kind == "summary":
                run["summary"].update({"/".join(u.nested_key) or u.key: json.loads(u.value_json)
                                       for u in record.summary.update})
            elif kind == "exit":
                run["exit"] = record.exit.exit_code
        runs[run["name"]] = run
    return runs


def _no_secret_in(folder: str) -> None:
    for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            assert SECRET.encode() not in data and URL_PASSWORD.encode() not in data, path


def _train(config: dict[str, Any]) -> None:
    for i in range(1, 4):
        ts.report({"loss": config["x"] / i, "opt": {"lr": 0.1 * i}, "note": "text is not logged",
                   "converged": i == 2, f"loss_{config['api_token']}": float(i)})  # a name quoting the token
    if config["x"] > 1:
        raise RuntimeError(f"x too large, token {config['api_token']}")


def test_one_run_per_trial_with_config_results_and_summary(_offline: str) -> None:
    from tunesmith.callbacks.wandb import WandbLogger

    space = {"x": ts.grid([0.5, 2.0]), "api_token": SECRET, "db": f"postgres://me:{URL_PASSWORD}@db/x"}
    result = ts.run(_train, space=space, metric="loss", mode="min", name="wb-exp", verbose=0,
                    callbacks=[ts.WandbLogger(project="tunesmith-test", tags=["mine"])])
    runs = _runs(_offline)
    assert sorted(runs) == ["trial_00001", "trial_00002"]
    assert WandbLogger is ts.WandbLogger
    for trial in result.trials:
        run = runs[trial.name]
        assert (run["project"], run["group"], run["tags"]) == ("tunesmith-test", "wb-exp", ["mine", "wb-exp"])
        assert run["config"]["x"] == trial.config["x"]
        assert run["config"]["api_token"] == "***" and run["config"]["db"] == "postgres://me:***@db/x"
        history = result.history(trial.id)
        assert len(run["history"]) == len(history) == 3
        for logged, reported in zip(run["history"], history):
            for key in ("loss", "opt/lr", "training_iteration", "time_total_s", "timestamp"):
                assert logged[key] == pytest.approx(reported[key]), key
            assert "note" not in logged
            assert logged["converged"] == int(reported["converged"])  # bools as 0/1, as MLflow and TensorBoard
            assert logged["loss_***"] == reported[f"loss_{SECRET}"]  # logged under its name masked
    ok, failed = runs["trial_00001"], runs["trial_00002"]
    assert ok["summary"]["tunesmith/status"] == "TERMINATED" and ok["exit"] == 0
    assert failed["summary"]["tunesmith/status"] == "ERROR" and failed["exit"] == 1
    assert failed["summary"]["tunesmith/error"] == "RuntimeError: x too large, token ***"
    _no_secret_in(_offline)


def test_the_logger_refuses_the_arguments_it_sets() -> None:
    with pytest.raises(ts.ConfigError, match=r"\['group', 'name'\] are set by the logger"):
        ts.WandbLogger(project="p", name="mine", group="g")
    with pytest.raises(ts.ConfigError, match=r"\['id', 'resume'\] are set by the logger"):  # a resume continues the run
        ts.WandbLogger(project="p", id="mine", resume="never")


def _train_with_setup(config: dict[str, Any]) -> None:
    from tunesmith.integrations.wandb import setup

    run = setup(project="in-trial")
    for i in range(1, 3):
        run.log({"inner": config["x"] * i})
        ts.report({"loss": config["x"] / i})
    run.finish()


def test_setup_inside_a_trial_names_the_run_after_it_and_groups_by_experiment(_offline: str) -> None:
    ts.run(_train_with_setup, space={"x": 3.0, "password": SECRET}, name="wb-inside", verbose=0)
    runs = _runs(_offline)
    assert list(runs) == ["trial_00001"]
    run = runs["trial_00001"]
    assert (run["project"], run["group"]) == ("in-trial", "wb-inside")
    assert run["config"]["x"] == 3.0 and run["config"]["password"] == "***"
    assert [row["inner"] for row in run["history"]] == [3.0, 6.0]
    _no_secret_in(_offline)


def test_setup_works_in_every_trial_a_worker_runs(_offline: str) -> None:
    """A worker runs trial after trial, and ends what a trial started when it ends: W&B's service process too. The
    next trial's setup() on that worker failed (wandb's MailboxClosedError / ConnectionResetError): every trial
    but the first on each worker ended ERROR."""
    rs = ts.run(_train_with_setup, {"x": ts.grid([1.0, 2.0, 3.0])}, name="wb-seq", max_concurrent=1, verbose=0,
                raise_on_failed_trial=False)
    assert [t.status for t in rs.trials] == [ts.TrialStatus.TERMINATED] * 3, [t.error for t in rs.trials]
    runs = _runs(_offline)
    assert sorted(runs) == ["trial_00001", "trial_00002", "trial_00003"]
    assert [runs[t.name]["history"][-1]["inner"] for t in rs.trials] == [2.0, 4.0, 6.0]


def _fails_once_with_setup(config: dict[str, Any]) -> None:
    from tunesmith.integrations.wandb import setup

    run = setup(project="in-trial")
    ckpt = ts.get_checkpoint()
    start = ckpt.load() if ckpt else 0
    for i in range(start + 1, 4):
        run.log({"inner": i})
        ts.report({"loss": 1.0 / i}, checkpoint=ts.Checkpoint.from_state(i))
        if i == 2 and ckpt is None:
            raise RuntimeError("fails once")
    run.finish()


def test_setup_inside_a_trial_continues_the_trials_run_when_it_restarts(_offline: str) -> None:
    """Each start of a trial (a retry here; a PBT exploit or pause, a resume) called setup() again and opened a new
    W&B run: its steps were split over runs. The run id is the trial's in its experiment (not the WandbLogger's)."""
    from tunesmith.callbacks.wandb import _run_id

    rs = ts.run(_fails_once_with_setup, {}, name="wb-retry", max_failures=1, verbose=0)
    trial = rs.trials[0]
    assert trial.status is ts.TrialStatus.TERMINATED and trial.num_failures == 1, (trial.error or "")[-1500:]
    ids, inner = set(), []
    folders = glob.glob(os.path.join(_offline, "wandb", "offline-run-*", "*.wandb"))
    for path in sorted(folders):
        records = _records(path)
        ids.update(r.run.run_id for r in records if r.WhichOneof("record_type") == "run")
        inner += [json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "history"
                  for item in r.history.item if ("/".join(item.nested_key) or item.key) == "inner"]
    assert len(folders) == 2 and len(ids) == 1, ids  # two starts, one run
    assert sorted(inner) == [1, 2, 3]
    (run_id,) = ids
    key = run_id.split("-")[0]
    assert run_id == f"{key}-t1" != _run_id(key, 1)  # the trial's own, not the driver logger's run


def test_setup_outside_a_trial_says_so() -> None:
    from tunesmith.integrations.wandb import setup

    with pytest.raises(RuntimeError, match="outside a trial"):
        setup(project="p")


def test_a_resumed_experiment_continues_each_trials_wandb_run(_offline: str, tmp_path: Any) -> None:
    """After Ctrl-C and ``resume=True`` each trial got a second W&B run (a new random id): its history was split
    over two runs. Offline, each driver writes a folder of its own, both under the trial's one run id."""
    import sys

    import wandb

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "callbacks"))
    from resume_helpers import interrupted_then_resumed, until_go

    space = {"x": ts.grid([0, 1]), "go": str(tmp_path / "go")}
    # ``dir``: W&B keeps the WANDB_DIR it read first in this process (an earlier test's folder)
    rs = interrupted_then_resumed(until_go, space, 6, [ts.WandbLogger(project="p", dir=_offline)],
                                  [ts.WandbLogger(project="p", dir=_offline)], metric="loss", mode="min",
                                  name="wb-res", verbose=0, storage_path=str(tmp_path / "results"))

    ids: dict[str, set[str]] = {}  # trial name -> the run ids its offline folders hold
    logged: dict[str, set[int]] = {}  # run id -> the training iterations logged into it, by either driver
    folders = glob.glob(os.path.join(_offline, "wandb", "offline-run-*", "*.wandb"))
    for path in folders:
        records = _records(path)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        ids.setdefault(run.display_name, set()).add(run.run_id)
        logged.setdefault(run.run_id, set()).update(
            int(json.loads(item.value_json)) for r in records if r.WhichOneof("record_type") == "history"
            for item in r.history.item if ("/".join(item.nested_key) or item.key) == "training_iteration")
    assert len(folders) == 4  # two drivers, two trials
    assert sorted(ids) == ["trial_00001", "trial_00002"]
    assert all(len(one) == 1 for one in ids.values()), ids  # one run per trial
    assert len(set.union(*ids.values())) == 2
    for trial in rs.trials:
        (run_id,) = ids[trial.name]
        wandb.Settings(run_id=run_id)  # an id W&B takes (it refuses ``/`` and other reserved characters)
        assert logged[run_id] == {r["training_iteration"] for r in rs.history(trial.id)}  # both drivers' results


# -- W&B: names it reserves ----------------------------------------------------------------------------------


def _wandb_history(folder: str) -> list[dict[str, Any]]:
    """The history rows of the one offline run under ``folder``."""
    (path,) = glob.glob(os.path.join(folder, "wandb", "offline-run-*", "*.wandb"))
    return [{"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
            for record in _records(path) if record.WhichOneof("record_type") == "history"]


def _reports_reserved_names(config: Any) -> None:
    for i in range(3):
        ts.report({"loss": float(i), "_step": 100.0 + i, "_runtime": 200.0 + i, "_timestamp": 300.0 + i,
                   "step": 400.0 + i, "__x": {"_y": 500.0 + i}})


def test_wandb_logs_metrics_named_as_its_own_fields_under_other_names(tmp_path: Any, _offline: str) -> None:
    """``_step`` and ``_runtime`` were dropped from the history and ``_timestamp`` replaced W&B's wall clock (300:
    1970)."""
    from tunesmith.callbacks.wandb import _name

    folder = _offline
    rs = ts.run(_reports_reserved_names, {"x": 1}, metric="loss", mode="min", name="wb-names", verbose=0,
                storage_path=str(tmp_path / "results"), callbacks=[ts.WandbLogger(project="p")])

    def sha(name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()[:8]

    renamed = {"_step": f"step-{sha('_step')}", "_runtime": f"runtime-{sha('_runtime')}",
               "_timestamp": f"timestamp-{sha('_timestamp')}", "__x/_y": f"x/_y-{sha('__x/_y')}"}
    assert {name: _name(name) for name in renamed} == renamed
    assert _name("step") == "step" and _name("opt/_lr") == "opt/_lr"  # a name W&B takes is kept
    rows = _wandb_history(folder)
    (trial,) = rs.trials
    history = rs.history(trial.id)
    assert len(rows) == len(history) == 3
    for i, (row, reported) in enumerate(zip(rows, history)):
        assert row["_step"] == i  # W&B's own fields are W&B's
        assert row["_timestamp"] == pytest.approx(reported["timestamp"], abs=3600)
        assert 0 <= row["_runtime"] < 3600
        for name, logged in renamed.items():
            assert row[logged] == reported[name], name
        assert row["step"] == reported["step"] and row["loss"] == reported["loss"]


def _reports_an_empty_name(config: dict[str, Any]) -> None:
    for i in range(3):
        ts.report({"loss": float(i), "": 10.0 + i, "/": 20.0 + i})


def test_wandb_logs_a_metric_named_with_the_empty_string_under_a_name(tmp_path: Any, _offline: str) -> None:
    """W&B drops a metric named ``""`` from the row without a word: it was in no history row."""
    from tunesmith.callbacks.wandb import _name

    rs = ts.run(_reports_an_empty_name, {"x": 1}, metric="loss", mode="min", name="wb-empty", verbose=0,
                storage_path=str(tmp_path / "results"), callbacks=[ts.WandbLogger(project="p")])
    rows = _wandb_history(_offline)
    assert [{k: v for k, v in row.items() if k in ("loss", "/") or v == 10.0 + i} for i, row in enumerate(rows)] == [
        {"loss": float(i), _name(""): 10.0 + i, "/": 20.0 + i} for i in range(3)]
    assert _name("") == hashlib.sha256(b"").hexdigest()[:8] and _name("/") == "/"  # no other metric's name
    assert len(rs.history(rs.trials[0].id)) == 3


@pytest.mark.parametrize("length", [64, 65, 200])
def test_an_experiment_named_longer_than_a_wandb_tag_is_logged(tmp_path: Any, _offline: str, length: int) -> None:
    """W&B refuses a tag over 64 characters (``run_tags``) and the logger tagged each run with the experiment's name
    (up to 200): wandb.init failed for every trial, and nothing of a 65-character experiment reached W&B."""
    name = ("e" * length)[:-3] + "end"
    rs = ts.run(_reports_an_empty_name, {"x": 1}, metric="loss", mode="min", name=name, verbose=0,
                storage_path=str(tmp_path / "results"), callbacks=[ts.WandbLogger(project="p")])
    (run,) = _runs(_offline).values()
    assert run["group"] == name and len(run["history"]) == len(rs.history(rs.trials[0].id)) == 3
    (tag,) = run["tags"]
    if length <= 64:
        assert tag == name
    else:  # cut, with a hash of the whole name: two long names that differ only at their ends stay two tags
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        assert tag == f"{name[:64 - 9]}-{digest}"


def test_a_run_ends_with_the_config_its_trial_ends_with_after_an_undone_exploit(_offline: str) -> None:
    """One slot: trial 2 is exploited at its last result (its clone started, and the run's config was updated to the
    new one), has nothing left to train, and the exploit is undone: the run showed the config it never trained with."""
    from algorithm_helpers import exploited_at_its_last_result

    result = exploited_at_its_last_result(name="wb-undo", callbacks=[ts.WandbLogger(project="tunesmith-test")])
    assert [(tid, d["config"]["a"]) for _s, _t, kind, tid, d in result._store.events()
            if kind == "exploit_undone"] and result.trial(2).config == {"a": 0}
    runs = _runs(_offline)
    assert runs["trial_00002"]["config"]["a"] == 0 and runs["trial_00001"]["config"]["a"] == 1
