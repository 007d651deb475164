"""What the dashboard's JSON endpoints answer, read from each experiment's store opened read-only.

Every read opens the store with ``Store(path, readonly=True)`` (a reader never blocks the driver) and closes
it. Payloads are bounded: curves are thinned to ``MAX_POINTS`` per trial (and ``MAX_TOTAL_POINTS`` per
answer), the trial table is paged, event lists are cut to the newest ``MAX_EVENTS``. Every config and error
shown goes through ``tunesmith._secrets.shown``; everything else the client draws as text.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import stat
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tunesmith import _layout
from tunesmith._errors import ConfigError
from tunesmith._flat import flatten
from tunesmith._objective import Objective
from tunesmith._secrets import mask_name, mask_result, mask_text, may_need_mask, secret_strings, shown
from tunesmith.dashboard._commands import ADDED_KEY, added_time
from tunesmith.plots.lineage import lineage_graph
from tunesmith.store.sqlite import Store, StoreError, _json_path
from tunesmith.trial import ITERATION, TIME_TOTAL, TIMESTAMP

MAX_POINTS = 1000  # per curve
MAX_TOTAL_POINTS = 100_000  # per curves answer: with many trials each curve gets fewer points
MAX_PAGE = 200
MAX_EVENTS = 1000
MAX_CURVE_TRIALS = 200
# the report's plot functions read every result: above this the dashboard leaves them to `tunesmith report`
MAX_PLOT_RESULTS = 200_000
LOG_TAIL_BYTES = 32 * 1024
MAX_RESULT_ROWS = 1000  # a trial page's results, thinned
_AUTO_COLUMNS = {ITERATION: "iteration", TIME_TOTAL: "time_total", TIMESTAMP: "timestamp"}
_SORT = re.compile(r"^(-?)(id|status|iteration|failures|[mc]:.{1,200})\Z", re.DOTALL)
STATUSES = ("RUNNING", "PENDING", "PAUSED", "TERMINATED", "ERROR")


class NotFound(Exception):
    """No such experiment or trial (answered 404)."""


@dataclasses.dataclass(frozen=True)
class _Shown:
    config: Any
    error: str | None


def _masked(config: Any, error: str | None = None) -> _Shown:
    return shown(_Shown(config, error))


def _masked_last(last: str | None, config: Any) -> str | None:
    """A trial's last result (JSON text) with the text it reported and names quoting a secret of ``config`` masked
    (``mask_result``); as it is when it holds no text value nor a credential in a name (``may_need_mask``) and
    the config no secret."""
    if not last:
        return last
    secrets = secret_strings(config)
    if not secrets and not may_need_mask(last):
        return last
    decoded = json.loads(last)
    if not isinstance(decoded, dict):
        return last
    masked = mask_result(decoded, secrets)
    return last if masked is decoded else json.dumps(masked)


def number(value: Any) -> float | None:
    """A finite float, else None (JSON has no NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def shown_number(value: Any) -> float | str | None:
    """A number for the page: finite as itself, NaN and infinities as the text ``nan``, ``inf``, ``-inf`` (JSON
    has no such numbers; the page shows text as it is), anything else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"


def flat(config: Any) -> dict[str, Any]:
    """Nested config as ``a/b`` keys (``tunesmith._flat``, as the rest of tunesmith flattens them); {} for a
    stored value that is not a dict."""
    return flatten(config) if isinstance(config, dict) else {}


class Experiments:
    """The experiments under ``root`` (or just ``only``, one name in it)."""

    def __init__(self, root: str, only: str | None = None) -> None:
        self.root = os.path.abspath(root)
        self.only = only
        self._plots: dict[str, tuple[Any, Any]] = {}
        self._plots_lock = threading.Lock()

    def names(self) -> list[str]:
        if self.only is not None:
            return [self.only]
        try:
            entries = sorted(os.listdir(self.root))
        except OSError:
            return []
        out = []
        for name in entries:
            try:
                _layout.check_folder_name(name)
            except ConfigError:
                continue
            folder = os.path.join(self.root, name)
            if not os.path.islink(folder) and os.path.isfile(_layout.store_path(folder)):
                out.append(name)
        return out

    def folder(self, name: str) -> str:
        """The experiment's folder: one folder name (any, also one renamed by hand), directly under the root, not a
        link."""
        try:
            _layout.check_folder_name(name)
        except ConfigError:
            raise NotFound(f"no experiment {name!r}") from None
        if self.only is not None and name != self.only:
            raise NotFound(f"no experiment {name!r}")
        folder = os.path.join(self.root, name)
        try:
            st = os.lstat(folder)
        except OSError:
            raise NotFound(f"no experiment {name!r}") from None
        if not stat.S_ISDIR(st.st_mode) or not os.path.isfile(_layout.store_path(folder)):
            raise NotFound(f"no experiment {name!r}")
        return folder

    @contextmanager
    def store(self, name: str) -> Iterator[Store]:
        store = Store(_layout.store_path(self.folder(name)), readonly=True)
        try:
            yield store
        finally:
            store.close()

    # -- the list -------------------------------------------------------------------------------------
    def listing(self) -> list[dict[str, Any]]:
        rows = []
        for name in self.names():
            try:
                rows.append(self.summary(name))
            except (StoreError, NotFound, OSError) as e:  # one damaged experiment must not hide the others
                rows.append({"name": name, "status": "unreadable", "error": str(e), "counts": {}, "trials": 0,
                             "best": None, "age_s": None, "created": None})
        rows.sort(key=lambda r: -(r.get("created") or 0))
        return rows

    def summary(self, name: str) -> dict[str, Any]:
        with self.store(name) as store:
            meta = store.meta()
            db = store._db
            counts = store.trial_counts()
            objective = _objective(meta)
            best = _best(store, objective)
            results = db.execute("SELECT TOTAL(iteration) FROM trials").fetchone()[0]
            metrics, params = _keys(db)
        status = _layout.live_status(self.folder(name), meta.get("status", "running"))
        created = meta.get("created")
        ended = meta.get("ended") if status != "running" else None
        spec = meta["spec"] if isinstance(meta.get("spec"), dict) else {}
        return {"name": name, "status": status, "counts": counts, "trials": sum(counts.values()),
                "results": int(results), "best": best, "metric": objective.names, "mode": objective.modes,
                "created": created if isinstance(created, (int, float)) else None,
                "age_s": time.time() - created if isinstance(created, (int, float)) else None,
                "ended": ended if isinstance(ended, (int, float)) else None,
                "time_budget_s": _time_budget(spec, meta), "num_samples": _num_samples(spec, meta),
                "scheduler": (spec.get("scheduler") or {}).get("type") if isinstance(spec.get("scheduler"), dict)
                else None, "metrics": metrics, "params": params}

    # -- the trial table ----------------------------------------------------------------------------
    def trials(self, name: str, offset: int = 0, limit: int = 50, sort: str = "id", status: str = "",
               query: str = "") -> dict[str, Any]:
        if not 1 <= limit <= MAX_PAGE:  # 0 is not "every trial": a page is at most MAX_PAGE, as the page asks
            raise ConfigError(f"limit must be a whole number from 1 to {MAX_PAGE} (trials a page), got {limit}")
        match = _SORT.match(sort)
        if match is None:
            raise ConfigError(f"sort must be id, status, iteration, failures, m:<metric> or c:<param>, got {sort!r}")
        statuses = {s for s in status.upper().split(",") if s}
        if statuses - set(STATUSES):
            raise ConfigError(f"status must be among {', '.join(STATUSES)}, got {status!r}")
        desc, key = match.group(1) == "-", match.group(2)
        args = sorted(statuses)
        with self.store(name) as store:
            shown = store.status_sql()  # PAUSED for RUNNING in a crashed experiment
            columns = f"id, config, {shown}, num_failures, iteration, last_result, parent_id"
            where = f"WHERE {shown} IN ({','.join('?' * len(statuses))})" if statuses else ""
            objective = _objective(store.meta())
            placed = _placements(store._db)
            if not query and key in ("id", "status", "iteration", "failures"):
                # the page's default view: sorted and paged by SQLite, only the page's configs read and masked
                column = {"id": "id", "status": shown, "iteration": "iteration", "failures": "num_failures"}[key]
                order = f"{column} {'DESC' if desc else 'ASC'}" + (", id" if key != "id" else "")
                total = store._db.execute(f"SELECT COUNT(*) FROM trials {where}", args).fetchone()[0]
                rows = [(tid, _masked(raw := json.loads(config)).config, st, failures, iteration,
                         _masked_last(last, raw), parent)
                        for tid, config, st, failures, iteration, last, parent in store._db.execute(
                            f"SELECT {columns} FROM trials {where} ORDER BY {order} LIMIT ? OFFSET ?",
                            [*args, limit, offset])]
                return self._page(rows, total, offset, limit, objective, placed)
            rows = []
            for tid, config, st, failures, iteration, last, parent in store._db.execute(
                    f"SELECT {columns} FROM trials {where} ORDER BY id", args):
                raw = json.loads(config)
                rows.append((tid, _masked(raw).config, st, failures, iteration, _masked_last(last, raw), parent))
        if query:
            needle = query.lower()
            rows = [r for r in rows if needle in json.dumps(r[1], default=str).lower() or needle in r[2].lower()
                    or needle == str(r[0])]
        if key in ("id", "status", "iteration", "failures"):
            index = {"id": 0, "status": 2, "iteration": 4, "failures": 3}[key]
            rows.sort(key=lambda r: r[index], reverse=desc)
        else:
            kind, field = key[0], key[2:]

            def value(r: tuple[Any, ...]) -> tuple[int, float, str]:
                """(group, number, text): 0 a number (infinities too), 1 text, 2 NaN, 3 no value."""
                if kind == "m":
                    v = json.loads(r[5]).get(field) if r[5] else None
                else:
                    v = flat(r[1]).get(field)
                if isinstance(v, float) and math.isnan(v):
                    return (2, 0.0, "")
                if isinstance(v, float) and math.isinf(v):
                    return (0, v, "")
                n = number(v)
                if n is not None:
                    return (0, n, "")
                return (1 if v is not None else 3, 0.0, str(v))

            keyed = [(value(r), r) for r in rows]
            present = [(k, r) for k, r in keyed if k[0] < 2]
            present.sort(key=lambda kr: kr[0], reverse=desc)
            # trials with NaN, then those without the value, last either way
            rows = [r for _k, r in present] + [r for k, r in keyed if k[0] == 2] + [r for k, r in keyed if k[0] == 3]
        return self._page(rows[offset:offset + limit], len(rows), offset, limit, objective, placed)

    @staticmethod
    def _page(rows: list[tuple[Any, ...]], total: int, offset: int, limit: int, objective: Objective,
              placed: dict[int, dict[str, Any]]) -> dict[str, Any]:
        page = []
        for tid, config, st, failures, iteration, last, parent in rows:
            last_result = json.loads(last) if last else {}
            page.append({"id": tid, "status": st, "iteration": iteration, "failures": failures, "parent": parent,
                         "placement": placed.get(tid),
                         "metrics": {k: _cell(v) for k, v in last_result.items() if k not in (TIMESTAMP,)},
                         "config": {k: _cell(v) for k, v in flat(config).items()}})
        return {"total": total, "offset": offset, "limit": limit, "rows": page, "primary": objective.names,
                "placed": bool(placed)}

    # -- curves, incrementally ----------------------------------------------------------------------
    def curves(self, name: str, metric: str, cursors: dict[int, tuple[int, int] | None], x: str = ITERATION
               ) -> dict[str, Any]:
        """Each asked trial's curve of ``metric`` against ``training_iteration``: what is new since its cursor
        (``append``), or all of it, thinned (``replace``) when the client has none or the trial restarted
        since (a pause, error or exploit event newer than the cursor, or its iteration went back)."""
        ids = sorted(cursors)[:MAX_CURVE_TRIALS]
        cap = max(20, min(MAX_POINTS, MAX_TOTAL_POINTS // max(1, len(ids))))
        out: dict[str, Any] = {}
        if not ids:
            return {"trials": out, "cap": cap}
        marks = ",".join("?" * len(ids))
        with self.store(name) as store:
            db = store._db
            # the status as stored (whether the curve may still change) and as shown (PAUSED for RUNNING in a
            # crashed experiment: the line's style)
            state = {tid: (it, st, shown) for tid, it, st, shown in db.execute(
                f"SELECT id, iteration, status, {store.status_sql()} FROM trials WHERE id IN ({marks})", ids)}
            # a trial restarts from a checkpoint only after a pause, an error or an exploit (logged first), and the
            # results it supersedes go in the transaction that makes it RUNNING again: a cursor taken before
            # that (or while it waits) gets the whole curve again
            gens = dict(db.execute(f"SELECT trial_id, COUNT(*) FROM events WHERE kind IN ('pause', 'error', "
                                   f"'exploit') AND trial_id IN ({marks}) GROUP BY trial_id", ids).fetchall())
            column, args = _metric_sql(metric)
            x_column, x_args = _metric_sql(x) if x != ITERATION else ("iteration", [])
            # the row's metrics where SQLite cannot read a value: every row for a name its path cannot spell,
            # else the rows it refuses (NaN, infinities)
            decoded = [m for m in (x, metric) if m not in _AUTO_COLUMNS and m != ITERATION]
            raw = ("metrics" if any(_json_path(m) is None for m in decoded) else
                   "CASE WHEN json_valid(metrics) THEN NULL ELSE metrics END" if decoded else "NULL")
            for tid in ids:
                if tid not in state:
                    continue
                iteration, st, shown = state[tid]
                # 0: not settled (paused or pending a restart): the next poll replaces the curve again
                gen = gens.get(tid, 0) + 1 if st not in ("PAUSED", "PENDING") else 0
                cursor = cursors[tid]
                if cursor is not None and cursor[1] == gen != 0 and cursor[0] == iteration:
                    out[str(tid)] = {"mode": "same", "status": shown}
                    continue
                replace = cursor is None or cursor[1] != gen or gen == 0 or iteration < cursor[0]
                after = 0 if replace else cursor[0]  # type: ignore[index]
                count = iteration - after
                stride = max(1, math.ceil(count / cap))
                if count > cap and not replace:
                    replace, after, stride = True, 0, max(1, math.ceil(iteration / cap))
                sql = (f"SELECT iteration, {x_column}, {column}, {raw} FROM results WHERE trial_id = ? AND "
                       f"iteration > ? AND ((iteration - ?) % ? = 0 OR iteration = ?) ORDER BY iteration")
                rows = db.execute(sql, [*x_args, *args, tid, after, after, stride, iteration]).fetchall()
                # the newest row may be beyond the trial row's iteration (a batch in flight): the row is the truth
                last_it = rows[-1][0] if rows else after
                out[str(tid)] = {"mode": "replace" if replace else "append", "status": shown,
                                 "x": [r[1] if x == ITERATION else number(_metric_of(x, r[1], r[3])) for r in rows],
                                 "y": [number(_metric_of(metric, r[2], r[3])) for r in rows],
                                 "cursor": [max(iteration, last_it) if rows else iteration, gen]}
        return {"trials": out, "cap": cap}

    # -- the other plots (the report's pure plot-data functions, cached per store version) ------------
    def plots(self, name: str, metric: str | None = None, x: str = ITERATION, final: str = "last") -> dict[str, Any]:
        from tunesmith.plots.report import build_panels
        from tunesmith.results import ResultSet

        folder = self.folder(name)
        with self.store(name) as store:
            version = (store._db.execute("SELECT COUNT(*), TOTAL(iteration), TOTAL(num_failures), "
                                         "GROUP_CONCAT(status) FROM trials").fetchone(),
                       store._db.execute("SELECT MAX(seq) FROM events").fetchone()[0], metric, x, final)
        large = version[0][1] > MAX_PLOT_RESULTS
        key = name
        with self._plots_lock:
            cached = self._plots.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
        rs = ResultSet(folder)
        try:
            panels, notes = (_importance_only(rs, metric, name) if large
                             else build_panels(rs, metric, x=x, final=final))
        except ConfigError as e:
            panels, notes = [], [str(e)]
        finally:
            rs._store.close()
        # learning curves are drawn live from the curves endpoint
        answer = {"panels": [{"title": p.title, "note": p.note, "figure": p.figure} for p in panels
                             if p.title != "Learning curves"], "notes": notes, "x": x, "final": final}
        with self._plots_lock:
            self._plots[key] = (version, answer)
        return answer

    # -- one trial ----------------------------------------------------------------------------------
    def trial(self, name: str, tid: int) -> dict[str, Any]:
        folder = self.folder(name)
        with self.store(name) as store:
            rec = next((r for r in store.trials() if r["id"] == tid), None)  # noqa: SIM110
            if rec is None:
                raise NotFound(f"no trial {tid} in {name}")
            results = store.results(tid)
            past = store.past_configs(tid).get(tid, [])
            checkpoints = store.checkpoints(tid)
            events = [e for e in store._db.execute(
                "SELECT seq, time, kind, trial_id, data FROM events WHERE trial_id = ? ORDER BY seq DESC LIMIT ?",
                (tid, MAX_EVENTS))]
        placement = next((e for e in events if e[2] == "placement"), None)  # the newest first
        view = _masked(rec["config"], rec["error"])
        # its results and log may quote the secrets of a config it had before a PBT exploit too
        secrets = secret_strings([rec["config"], *past])
        stride = max(1, math.ceil(len(results) / MAX_RESULT_ROWS))
        kept = [r for i, r in enumerate(results) if i % stride == 0 or i == len(results) - 1]
        rows = []
        for r in kept:
            metrics = mask_result(json.loads(r.metrics), secrets)
            rows.append({"iteration": r.iteration, "time_total": number(r.time_total),
                         **{k: _cell(v) for k, v in metrics.items()}})
        return {"id": tid, "status": rec["status"], "config": _plain(view.config), "error": view.error,
                "iteration": rec["iteration"], "failures": rec["num_failures"], "parent": rec["parent_id"],
                "parent_iteration": rec["parent_iteration"], "resources": rec["resources"],
                "start_time": rec["start_time"], "end_time": rec["end_time"],
                "placement": _placement(placement[4]) if placement else None,
                "results": rows, "results_total": len(results), "results_stride": stride,
                "checkpoints": [{"iteration": it, "path": _relative(folder, p)} for it, p in checkpoints],
                "events": [_event(e, secrets) for e in events],
                "log": _log_tail(folder, tid, secrets)}

    # -- why trials stopped, and the PBT lineage ----------------------------------------------------
    def events(self, name: str) -> dict[str, Any]:
        with self.store(name) as store:
            db = store._db
            configs = {tid: json.loads(c) for tid, c in db.execute("SELECT id, config FROM trials")}
            trials = {tid: (st, it) for tid, st, it in db.execute(f"SELECT id, {store.status_sql()}, iteration "
                                                                  f"FROM trials")}
            rows = db.execute("SELECT seq, time, kind, trial_id, data FROM events WHERE kind IN "
                              "('pause', 'exploit', 'error', 'restart', 'command') ORDER BY seq DESC LIMIT ?",
                              (MAX_EVENTS,)).fetchall()
            exploits = db.execute("SELECT seq, time, kind, trial_id, data FROM events WHERE kind = 'exploit' "
                                  "ORDER BY seq LIMIT ?", (MAX_EVENTS,)).fetchall()
            placed = _placements(db)
            logged = db.execute("SELECT seq, trial_id, data FROM events WHERE kind = 'stop' ORDER BY seq")
            stops = {tid: (seq, d) for seq, tid, data in logged if isinstance(d := json.loads(data or "null"), dict)}
            # the first stop_experiment from the dashboard applied: the trials "ended with the experiment" after it
            halted = next((seq for seq, data in db.execute(
                "SELECT seq, data FROM events WHERE kind = 'command' ORDER BY seq")
                if isinstance(d := json.loads(data or "null"), dict) and d.get("action") == "stop_experiment"
                and d.get("applied") is True), None)
            spec = store.meta().get("spec")
        scheduler = spec.get("scheduler") if isinstance(spec, dict) else None
        scheduler_name = str(scheduler.get("type")) if isinstance(scheduler, dict) and scheduler.get("type") else None
        secrets = set().union(*(secret_strings(c) for c in configs.values())) if configs else set()
        listed = [_event(e, secrets) for e in rows]
        # the last decision per trial: what it says about why the trial is where it is
        last: dict[int, dict[str, Any]] = {}
        for e in reversed(listed):
            if e["trial"] is not None and e["kind"] != "restart":
                last[e["trial"]] = e
        longest = max((it for _st, it in trials.values()), default=0)
        why = []
        for tid, (st, it) in sorted(trials.items()):
            if st in ("RUNNING", "PENDING"):
                continue
            e = last.get(tid)
            if st == "PAUSED":
                reason = f"paused by the scheduler at iteration {e['iteration'] if e else it}"
            elif st == "ERROR":
                reason = f"failed at iteration {e['iteration'] if e and e['iteration'] is not None else it}"
            elif tid in stops:  # the driver's own word (a dashboard command's event says it was sent, not how it ended)
                seq, stop = stops[tid]
                reason = _stop_reason(stop.get("reason"), scheduler_name, it)
                if stop.get("reason") == "experiment" and halted is not None and seq > halted:
                    reason = f"stopped from the dashboard with the experiment at iteration {it}"
            elif it < longest:  # a store written before the driver logged its stops
                reason = f"stopped at iteration {it} (the scheduler or a stop rule; the longest ran {longest})"
            else:
                reason = f"ran to its end (iteration {it})"
            why.append({"trial": tid, "status": st, "iteration": it, "reason": reason,
                        "last_event": e["kind"] if e else None})
        lineage = []
        for seq, t, _kind, tid, data in exploits:
            d = json.loads(data) if data else {}
            if not isinstance(d, dict):
                continue
            config = d.get("config") if isinstance(d.get("config"), dict) else {}
            lineage.append({"seq": seq, "time": t, "trial": tid, "source": d.get("source"),
                            "iteration": d.get("iteration"), "config": {k: _cell(v) for k, v in
                                                                        flat(_masked(config).config).items()}})
        graph = lineage_graph({tid: it for tid, (_st, it) in trials.items()},
                              [{**d, "trial": tid} for _s, _t, _k, tid, data in exploits
                               if isinstance(d := json.loads(data) if data else None, dict)])
        return {"events": listed, "why": why[:MAX_EVENTS], "lineage": lineage, "lineage_graph": graph,
                "nodes": _nodes(placed, trials)}


def _importance_only(rs: Any, metric: str | None, name: str) -> tuple[list[Any], list[str]]:
    """Above ``MAX_PLOT_RESULTS``: the report's importance panel (it reads only each trial's last result); the
    plots that read every result are left to ``tunesmith report``."""
    from tunesmith.plots import data as plot_data
    from tunesmith.plots.render import Panel

    notes = [f"best so far, parallel coordinates, metric against each parameter and the timeline are left out above "
             f"{MAX_PLOT_RESULTS:,} results (they read every result): `tunesmith report {name}` writes them to a file"]
    metric = plot_data.resolve_metric(rs, metric)
    try:
        mode = plot_data.resolve_mode(rs, None, metric)
    except ConfigError:
        return [], notes
    figure = plot_data.importance(rs, metric, mode)
    if figure is None:
        return [], notes
    return [Panel("Parameter importance", figure, "How differently each parameter is spread among the best 10% of "
                  "the trials than among all (PED-ANOVA); sums to 1.")], notes


def _placement(data: Any) -> dict[str, Any] | None:
    """A ``placement`` event's data (the Ray backend: node id, its address, the actor's pid), checked: the
    store is read as data."""
    d = json.loads(data) if isinstance(data, str) else data
    if not isinstance(d, dict) or not isinstance(d.get("node"), str):
        return None
    address, pid = d.get("address"), d.get("pid")
    return {"node": d["node"][:200], "address": address[:200] if isinstance(address, str) else None,
            "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) else None}


def _placements(db: Any) -> dict[int, dict[str, Any]]:
    """Each trial's newest placement (where it runs, or ran last)."""
    out: dict[int, dict[str, Any]] = {}
    for tid, data in db.execute("SELECT trial_id, data FROM events WHERE kind = 'placement' ORDER BY seq"):
        where = _placement(data)
        if tid is not None and where is not None:
            out[tid] = where
    return out


def _nodes(placed: dict[int, dict[str, Any]], trials: dict[int, tuple[str, int]]) -> list[dict[str, Any]]:
    """The per-node view: each node with the trials that ran (last) there and their statuses."""
    nodes: dict[str, dict[str, Any]] = {}
    for tid, where in sorted(placed.items()):
        node = nodes.setdefault(where["node"], {"node": where["node"], "address": where["address"], "trials": [],
                                                "counts": Counter()})
        node["trials"].append(tid)
        if tid in trials:
            node["counts"][trials[tid][0]] += 1
    return sorted(({**n, "counts": dict(n["counts"])} for n in nodes.values()),
                  key=lambda n: (str(n["address"]), n["node"]))


def _metric_sql(metric: str) -> tuple[str, list[str]]:
    """The SQL expression reading ``metric`` from a results row, and its arguments: a column, the value SQLite's
    JSON reads, or NULL where it cannot (NaN or infinities in the row, a name its JSON path cannot spell:
    ``_metric_of`` then decodes the row's ``metrics``)."""
    if metric in _AUTO_COLUMNS:
        return _AUTO_COLUMNS[metric], []
    path = _json_path(metric)
    if path is None:
        return "NULL", []
    return "CASE WHEN json_valid(metrics) THEN json_extract(metrics, ?) END", [path]


def _metric_of(metric: str, value: Any, metrics: str | None) -> Any:
    """``metric``'s value in a results row: what SQLite read, or from the row's ``metrics`` (selected where SQLite
    could not read it) decoded here."""
    if metrics is None or metric in _AUTO_COLUMNS:
        return value
    decoded = json.loads(metrics)
    return decoded.get(metric) if isinstance(decoded, dict) else None


def _num_samples(spec: dict[str, Any], meta: dict[str, Any]) -> Any:
    """The run's num_samples plus those added from the dashboard (``_commands.add_samples``)."""
    own, added = spec.get("num_samples"), meta.get(ADDED_KEY)
    if isinstance(own, int) and own > 0 and isinstance(added, int) and not isinstance(added, bool) and added > 0:
        return own + added
    return own


def _time_budget(spec: dict[str, Any], meta: dict[str, Any]) -> float | None:
    """The time budget in force: the run's time_budget_s plus the seconds added from the dashboard
    (``_commands.extend_time``)."""
    own = number(spec.get("time_budget_s"))
    return own + added_time(meta) if isinstance(own, (int, float)) else own


def _objective(meta: dict[str, Any]) -> Objective:
    spec = meta["spec"] if isinstance(meta.get("spec"), dict) else {}
    try:
        return Objective.from_spec(spec)
    except (ConfigError, TypeError, ValueError):
        return Objective()


def _best(store: Store, objective: Objective) -> dict[str, Any] | None:
    """The trial whose last result is best (as ``ResultSet.get_best()`` without constraints), or None."""
    if not objective or objective.is_multi:
        return None
    metric, mode = objective.primary, objective.primary_mode
    found = store.best_last(metric, mode)
    if found is None:
        return None
    return {"trial": found[0], "metric": metric, "mode": mode, "value": shown_number(found[1])}


def _keys(db: Any) -> tuple[list[str], list[str]]:
    """Metric names (from a few last results; a name quoting a secret of its trial's config masked) and flat config
    keys (from a few configs)."""
    metrics: Counter[str] = Counter()
    params: Counter[str] = Counter()
    for last, config in db.execute("SELECT last_result, config FROM trials ORDER BY id DESC LIMIT 50"):
        config = json.loads(config)
        if last:
            secrets = secret_strings(config)
            metrics.update(mask_name(k, secrets) for k, v in json.loads(last).items()
                           if shown_number(v) is not None and k != TIMESTAMP)
        params.update(flat(config).keys())  # the keys counted (a mapping's values would be added up)
    return sorted(metrics), sorted(params)


def _cell(value: Any) -> Any:
    """A table cell: numbers (NaN and infinities as ``nan``, ``inf``, ``-inf``), strings, booleans; anything else
    as compact JSON text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return shown_number(value) if isinstance(value, float) else value
    return json.dumps(value, default=str, allow_nan=True)[:500]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return number(value)
    return value


# schedulers that stop a trial only where it reaches a rung (its decision points)
_RUNG_SCHEDULERS = frozenset({"ASHA", "HyperBand", "BOHB"})


def _stop_reason(reason: Any, scheduler: str | None, iteration: int) -> str:
    """A ``stop`` event's reason (who ended the trial, as the driver logged it) in words."""
    if reason == "scheduler":
        who = scheduler or "the scheduler"
        where = "at its rung at iteration" if scheduler in _RUNG_SCHEDULERS else "at iteration"
        return f"stopped by {who} {where} {iteration}"
    if reason == "stop_rule":
        return f"met the stop rule (stop=) at iteration {iteration}"
    if reason == "experiment":
        return f"ended with the experiment at iteration {iteration}"
    if reason == "dashboard":
        return f"stopped from the dashboard at iteration {iteration}"
    return f"stopped at iteration {iteration}"


def _event(row: tuple[Any, ...], secrets: set[str]) -> dict[str, Any]:
    seq, t, kind, tid, data = row
    d = json.loads(data) if data else None
    out: dict[str, Any] = {"seq": seq, "time": t, "kind": kind, "trial": tid, "iteration": None}
    if isinstance(d, dict):
        out["iteration"] = d.get("iteration") if isinstance(d.get("iteration"), int) else None
        if kind == "error":
            out["traceback"] = mask_text(str(d.get("traceback") or ""), secrets)
            out["failure"] = d.get("failure")
        elif kind == "exploit":
            out["source"] = d.get("source")
        elif kind == "placement":
            out.update(_placement(d) or {})
        elif kind == "command":
            out["action"] = d.get("action")
            out["applied"] = bool(d.get("applied"))
            out["detail"] = mask_text(str(d.get("detail") or ""), secrets)
    return out


def _relative(folder: str, path: str | None) -> str | None:
    if path is None:
        return None
    prefix = folder.rstrip(os.sep) + os.sep
    return path[len(prefix):] if path.startswith(prefix) else path


def _log_tail(folder: str, tid: int, secrets: set[str]) -> str | None:
    """The last ``LOG_TAIL_BYTES`` of the trial's ``output.log``; no link on the way is followed."""
    trials = os.path.join(folder, _layout.TRIALS)
    trial = _layout.trial_dir(folder, tid)
    for part in (trials, trial):
        try:
            if not stat.S_ISDIR(os.lstat(part).st_mode):
                return None
        except OSError:
            return None
    try:
        fd = os.open(os.path.join(trial, _layout.OUTPUT_LOG), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        start = max(0, st.st_size - LOG_TAIL_BYTES)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, LOG_TAIL_BYTES)
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="replace")
    if start > 0:  # from the first line's start (after a newline, or a progress bar's carriage return): the cut
        # may fall inside a secret, whose rest no mask would find; with neither, the longest secret's length is cut
        ends = [i for i in (text.find("\n"), text.find("\r")) if i >= 0]
        text = text[min(ends) + 1:] if ends else "…" + text[max((len(s) for s in secrets), default=0):]
    return mask_text(text, secrets)
