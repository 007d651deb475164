"""The PBT lineage drawn as a graph, in the dashboard's events answer and the report: a node per (trial,
generation) segment, an edge per exploit from the source's segment to the new one, labelled with what the
exploit changed in the config (secrets masked, markup shown as text). A real PBT run on the simulated backend."""

from __future__ import annotations

import io
import json
from typing import Any

import tunesmith as ts
from tunesmith.dashboard import make_app
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.plots.lineage import lineage_graph
from tunesmith.plots.report import build_panels
from tunesmith.results import ResultSet


def pbt_train(config: dict[str, Any], ctx: Any) -> Any:
    state = ctx.checkpoint or {"step": 0, "loss": 1.0}
    while state["step"] < 12:
        state["step"] += 1
        state["loss"] *= 1 - 0.05 * config["lr"]
        yield ({"loss": state["loss"]}, 1.0, dict(state) if state["step"] % 3 == 0 else None)


def _get(app: Any, path: str) -> Any:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "HTTP_HOST": "127.0.0.1:8788",
               "wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0", "wsgi.url_scheme": "http"}
    got: dict[str, Any] = {}
    body = b"".join(app(environ, lambda status, headers: got.update(status=int(status.split()[0]))))
    assert got["status"] == 200, body
    return json.loads(body)


def test_the_lineage_graph_has_a_node_per_generation_and_an_edge_per_exploit_with_its_changes(results_dir: Any
                                                                                              ) -> None:
    pbt = ts.PBT(perturbation_interval=3, hyperparam_mutations={"lr": [0.5, 1.0, 2.0, 4.0]}, seed=0,
                 time_attr="time_total_s", quantile_fraction=0.25)
    result = ts.run(pbt_train, space={"lr": ts.grid([0.5, 1.0, 2.0, 4.0]), "api_key": "hunter2-secret"},
                    metric="loss", mode="min", scheduler=pbt, backend=SimulatedBackend({"cpu": 4}), verbose=0,
                    name="pbt")
    exploits = [(tid, d) for _s, _t, kind, tid, d in result._store.events() if kind == "exploit"]
    assert exploits, "PBT exploited nothing: the test shows nothing"
    figure = _get(make_app(str(results_dir)), "/api/e/pbt/events")["lineage_graph"]
    edges = next(t for t in figure["data"] if t.get("meta", {}).get("kind") == "lineage-exploits")
    assert [(e[0], e[2], e[4]) for e in edges["meta"]["edges"]] == [(d["source"], tid, d["iteration"])
                                                                     for tid, d in exploits]
    assert [e[3] for e in edges["meta"]["edges"]] == [d["generation"] for _tid, d in exploits]
    for (_tid, d), change in zip(exploits, edges["meta"]["changes"]):
        if d["old_config"]["lr"] != d["config"]["lr"]:
            assert f"lr: {d['old_config']['lr']:.4g} → {d['config']['lr']:.4g}" in change
    assert "hunter2" not in json.dumps(figure)
    segments = {t["meta"]["trial"]: t["meta"]["segments"] for t in figure["data"]
                if t.get("meta", {}).get("kind") == "lineage-segments"}
    assert set(segments) == {1, 2, 3, 4}
    for tid in segments:  # one segment per generation the trial went through, the last ending where it ended
        gens = [g for g, _a, _b in segments[tid]]
        assert gens == list(range(len(gens))) and len(gens) == 1 + sum(1 for t, _d in exploits if t == tid)
        assert segments[tid][-1][2] == result.trials[tid - 1].iteration
    rs = ResultSet(str(results_dir / "pbt"))
    panels, _notes = build_panels(rs)
    [panel] = [p for p in panels if p.title == "PBT lineage"]
    assert panel.figure == lineage_graph({t.id: t.iteration for t in rs.trials},
                                         [{**d, "trial": tid} for tid, d in exploits])


def test_config_changes_are_shown_as_text_with_secrets_masked() -> None:
    old = {"lr": 0.1, "note": "a", "token": "s1", "<i>k": 1}
    new = {"lr": 0.2, "note": "<b>x</b>", "token": "s2", "<i>k": 2}
    figure = lineage_graph({1: 6, 2: 6}, [{"trial": 2, "source": 1, "iteration": 3, "from_iteration": 3,
                                           "generation": 1, "old_config": old, "config": new}])
    assert figure is not None
    [change] = next(t for t in figure["data"] if t.get("meta", {}).get("kind") == "lineage-exploits")["meta"][
        "changes"]
    assert change == ["&lt;i&gt;k: 1 → 2", "lr: 0.1 → 0.2", "note: a → &lt;b&gt;x&lt;/b&gt;", "token: *** → ***"]
    assert lineage_graph({1: 3}, []) is None  # no exploit: no graph
