"""The experiment page's plots are the report's (one source of truth): hyperparameter importance, and the
timeline with the CPUs/GPUs in use, from a real run with per-trial resources; above the dashboard's result cap
the importance (which reads only each trial's last result) is still drawn."""

from __future__ import annotations

import io
import json
from typing import Any

import tunesmith as ts
from tunesmith.dashboard import _data, make_app
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.plots import data as plot_data
from tunesmith.plots.render import _plain
from tunesmith.results import ResultSet


def train(config: dict[str, Any], ctx: Any) -> Any:
    for i in range(4):
        yield ({"loss": (config["lr"] - 0.3) ** 2 + 0.01 * config["width"] + 0.001 * i}, 1.0, None)


def _get(app: Any, path: str) -> Any:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path.partition("?")[0], "QUERY_STRING": path.partition("?")[2],
               "HTTP_HOST": "127.0.0.1:8788", "wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0",
               "wsgi.url_scheme": "http"}
    got: dict[str, Any] = {}
    body = b"".join(app(environ, lambda status, headers: got.update(status=int(status.split()[0]))))
    assert got["status"] == 200, body
    return json.loads(body)


def _run(results_dir: Any) -> ResultSet:
    return ts.run(train, space={"lr": ts.uniform(0.0, 1.0), "width": ts.choice([1, 2, 3])}, num_samples=12,
                  metric="loss", mode="min", seed=3, resources={"cpu": 1, "gpu": 0.5},
                  backend=SimulatedBackend({"cpu": 4, "gpu": 1}), verbose=0, name="res")


def test_importance_and_resources_in_use_are_the_reports(results_dir: Any) -> None:
    rs = _run(results_dir)
    answer = _get(make_app(str(results_dir)), "/api/e/res/plots?metric=loss")
    panels = {p["title"]: p["figure"] for p in answer["panels"]}
    assert panels["Parameter importance"] == json.loads(json.dumps(_plain(plot_data.importance(rs, "loss", "min"))))
    assert set(panels["Parameter importance"]["data"][0]["y"]) == {"lr", "width"}
    timeline = panels["Trial timeline"]
    assert timeline == json.loads(json.dumps(_plain(plot_data.timeline(rs))))
    used = {t["meta"]["resource"]: t["y"] for t in timeline["data"] if t.get("meta", {}).get("kind") == "resources"}
    # two trials at a time fit (1 GPU, 0.5 each): the step line reaches 2 CPUs and 1 GPU and comes back to 0
    assert max(used["cpu"]) == 2 and max(used["gpu"]) == 1 and used["cpu"][-1] == used["gpu"][-1] == 0


def test_above_the_result_cap_the_importance_is_still_drawn(results_dir: Any, monkeypatch: Any) -> None:
    rs = _run(results_dir)
    monkeypatch.setattr(_data, "MAX_PLOT_RESULTS", 10)  # 48 results: "too many" for the full set of plots
    answer = _get(make_app(str(results_dir)), "/api/e/res/plots?metric=loss")
    assert [p["title"] for p in answer["panels"]] == ["Parameter importance"]
    assert answer["panels"][0]["figure"] == json.loads(json.dumps(_plain(plot_data.importance(rs, "loss", "min"))))
    assert any("tunesmith report" in n for n in answer["notes"])
