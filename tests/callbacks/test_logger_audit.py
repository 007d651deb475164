"""Loggers given names that become file names of another tool: each metric and param reaches it (not a batch lost
to one name its files cannot hold)."""

from __future__ import annotations

from typing import Any

import pytest

import tunesmith as ts

pytestmark = pytest.mark.timeout(120)

LONG_CJK = "学" * 100  # 100 characters (MLflow takes 250), 300 bytes in UTF-8 (a file name holds 255)
LONG_ACCENTS = "é" * 249
NESTED = f"opt/{'ü' * 200}/lr"


def _reports_long_names(config: Any) -> None:
    for i in range(3):
        ts.report({"loss": float(i), LONG_CJK: 10.0 + i, LONG_ACCENTS: 20.0 + i, NESTED: 30.0 + i})


def test_mlflow_file_store_takes_every_name_a_file_name_cannot_hold(tmp_path: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The file store names a file after each ``/`` part of a name: a part over 255 bytes (100 Chinese characters)
    was ``File name too long``, and MLflow refused the whole batch with it: no param of the trial, and no metric of
    its results (``loss`` included), was logged."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from tunesmith.callbacks.mlflow import _key

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses a file store unless asked
    uri = (tmp_path / "mlruns").as_uri()
    logger = ts.MLflowLogger(tracking_uri=uri)
    rs = ts.run(_reports_long_names, {"lr": 0.1, LONG_CJK: 1}, name="long", verbose=0,
                storage_path=str(tmp_path / "results"), callbacks=[logger])
    (trial,) = rs.trials
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logger.run_id(trial.id))
    assert run.data.params == {"lr": "0.1", _key(LONG_CJK): "1"}
    for k, name in enumerate(["loss", LONG_CJK, LONG_ACCENTS, NESTED]):
        key = _key(name)
        assert all(len(part.encode()) <= 255 for part in key.split("/")), key
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [m.value for m in history] == [10.0 * k + i for i in range(3)], name
    assert len({_key(n) for n in (LONG_CJK, LONG_ACCENTS, NESTED, "学" * 101)}) == 4
    assert _key("学" * 85) == "学" * 85  # 255 bytes: kept as it is
