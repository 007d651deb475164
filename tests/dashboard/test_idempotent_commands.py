"""A control request sent twice is applied once: the page sends an ``Idempotency-Key`` per click, the app answers a
request whose key it has seen with the first answer and writes nothing, and the driver drops a command whose id is
already in the store's ``command`` events (a retry that raced the driver's look, or one landing after a resume)."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

import pytest
from test_add_samples import _request, _wait, held_train  # noqa: E402  (tests have no packages)

import tunesmith as ts
from tunesmith._run import _acquire, _release
from tunesmith.dashboard import make_app
from tunesmith.dashboard._commands import commands_dir, write_command
from tunesmith.store.sqlite import Store

pytestmark = pytest.mark.timeout(180)

KEY = "3f9c1e0a7b6d4c2e8f1a5b9d0c7e6f21"  # what the page sends: 32 random hex digits per click
ADD = {"action": "add_samples", "n": 1}


def short(config: dict[str, Any]) -> None:
    for i in range(3):
        ts.report({"loss": config["x"] / (i + 1)})


def _commands(store: Store) -> list[dict[str, Any]]:
    return [data for _s, _t, kind, _tid, data in store.events() if kind == "command"]


class _Page:
    """The page's session on an app over ``root``: its cookie and CSRF token, and its control POSTs."""

    def __init__(self, root: str, name: str) -> None:
        self.app = make_app(root, allow_control=True)
        self.name = name
        _status, headers, page = _request(self.app, f"/e/{name}")
        csrf = page.decode().split('data-csrf="')[1].split('"')[0]
        self.headers = {"Content-Type": "application/json", "Cookie": headers["set-cookie"].split(";")[0],
                        "X-Tunesmith-CSRF": csrf}

    def post(self, command: dict[str, Any], key: str | None = KEY) -> tuple[int, dict[str, str], dict[str, Any]]:
        headers = {**self.headers, **({"Idempotency-Key": key} if key is not None else {})}
        status, out_headers, body = _request(self.app, f"/api/e/{self.name}/control", "POST",
                                             json.dumps(command).encode(), headers)
        return status, out_headers, json.loads(body)


class _Helper(threading.Thread):
    """Steps beside a driver; whatever happens, creates the release file at the end and keeps the error."""

    def __init__(self, steps: Any, release: str) -> None:
        super().__init__(daemon=True)
        self.steps, self.release = steps, release
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.steps()
        except BaseException as e:  # noqa: BLE001 - raised in the test's thread
            self.error = e
        finally:
            open(self.release, "w").close()

    def check(self) -> None:
        self.join(10)
        if self.error is not None:
            raise self.error


def _gone(path: str) -> Any:
    """A ``_wait`` condition: the driver has taken (and deleted) the command file ``path``."""
    return lambda _store: not os.path.exists(path)


def test_the_same_add_samples_request_sent_twice_adds_the_samples_once(results_dir: Any, tmp_path: Any) -> None:
    """A double click (or a retry) sends the same POST, with the same key, twice; a third copy comes once the
    driver has applied it. Every answer is the first one, and the experiment grows by one sample, not three."""
    release = str(tmp_path / "release")
    db = os.path.join(str(results_dir), "twice", "experiment.db")
    answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []

    def steps() -> None:
        _wait(db, lambda s: len(s.trials()) == 2 and all(t["iteration"] >= 1 for t in s.trials()))
        page = _Page(str(results_dir), "twice")
        answers.append(page.post(ADD))
        answers.append(page.post(ADD))  # before the driver's next look, or after: either way, once
        _wait(db, _commands)
        answers.append(page.post(ADD))  # after the driver logged it: the app finds its event in the store

    helper = _Helper(steps, release)
    result = ts.run(held_train, space={"x": ts.grid([1.0, 2.0]), "release": release}, num_samples=1,
                    max_concurrent=2, metric="loss", mode="min", verbose=0, name="twice", time_budget_s=60)
    helper.check()
    assert result._store.meta()["num_samples_added"] == 1
    [event] = _commands(result._store)
    assert event["applied"] is True and event["detail"] == "num_samples 1 -> 2"
    assert [t.config["x"] for t in result.trials] == [1.0, 2.0, 1.0, 2.0]  # num_samples 2, not 4
    first = answers[0]
    assert first[0] == 200 and first[2] == {"queued": event["id"]}
    assert [(code, body) for code, _h, body in answers] == [(200, first[2])] * 3
    assert [h.get("idempotent-replayed") for _c, h, _b in answers] == [None, "true", "true"]
    assert os.listdir(commands_dir(result.path)) == []


def test_a_retry_that_reaches_the_driver_after_its_command_was_applied_is_dropped_even_by_a_resumed_driver(
        results_dir: Any, tmp_path: Any) -> None:
    """add_samples 2 with a key is applied, then the run is interrupted (Ctrl-C) and resumed. The same request again,
    to the resumed run: the app answers as the first time and writes nothing; the same command file again (a retry
    whose write raced the driver's look, past the app's check) is dropped by the resumed driver, which read the ids
    already logged from the store. The resume creates the trials of one add_samples 2, not two."""
    release = str(tmp_path / "release")
    exp = os.path.join(str(results_dir), "again")
    db = os.path.join(exp, "experiment.db")
    space = {"x": ts.grid([1.0, 2.0]), "release": release}
    first: dict[str, Any] = {}

    def interrupt() -> None:
        _wait(db, lambda s: len(s.trials()) == 2 and all(t["iteration"] >= 1 for t in s.trials()))
        first["id"] = write_command(exp, {"action": "add_samples", "n": 2}, key=KEY)
        _wait(db, _commands)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the run stops at the top of its loop's next pass

    helper = threading.Thread(target=interrupt, daemon=True)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        ts.run(held_train, space=space, num_samples=1, max_concurrent=2, metric="loss", mode="min", verbose=0,
               name="again", time_budget_s=60)
    helper.join(5)
    answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []

    def retry() -> None:
        _wait(db, lambda s: any(kind == "resume" for _s, _t, kind, _tid, _d in s.events()))
        answers.append(_Page(str(results_dir), "again").post({"action": "add_samples", "n": 2}))
        assert not os.path.exists(os.path.join(commands_dir(exp), first["id"] + ".json"))  # nothing written
        again = write_command(exp, {"action": "add_samples", "n": 2}, key=KEY)
        assert again == first["id"]
        _wait(db, _gone(os.path.join(commands_dir(exp), again + ".json")))

    late = _Helper(retry, release)
    resumed = ts.run(held_train, space=space, num_samples=1, max_concurrent=2, metric="loss", mode="min",
                     verbose=0, name="again", resume=True, time_budget_s=60)
    late.check()
    assert [(code, body) for code, _h, body in answers] == [(200, {"queued": first["id"]})]
    assert answers[0][1].get("idempotent-replayed") == "true"
    assert resumed._store.meta()["num_samples_added"] == 2
    assert [e["id"] for e in _commands(resumed._store)] == [first["id"]]
    assert [t.config["x"] for t in resumed.trials] == [1.0, 2.0] * 3  # num_samples 3, not 5


def test_the_idempotency_key_is_checked_and_a_key_names_one_command(results_dir: Any) -> None:
    """The key is untrusted input: 16 to 64 of [A-Za-z0-9_-] (a quoted one, as the IETF draft's structured header
    has it, is the same key), else 400 and nothing written. A key already used for another command is 422; without a
    key, each request is a command of its own (a script's plain POSTs)."""
    rs = ts.run(short, space={"x": 1.0}, metric="loss", mode="min", verbose=0, name="keys")
    store = Store(os.path.join(rs.path, "experiment.db"))
    with store.transaction() as db:
        store.set_meta(db, "status", "running")
    store.close()
    lock = _acquire(rs.path, "keys")  # a driver holds the experiment: the app sees it running
    try:
        page = _Page(str(results_dir), "keys")
        folder = commands_dir(rs.path)
        for bad in ("short", "x" * 65, "a" * 20 + " " + "b", "a" * 20 + "/..", "é" * 20, "\"" + "a" * 20, ""):
            code, _h, body = page.post(ADD, key=bad)
            assert code == 400 and "Idempotency-Key" in body["error"], (bad, body)
            assert bad not in body["error"] or not bad  # the value is not echoed
        assert not os.path.exists(folder) or os.listdir(folder) == []
        code, headers, body = page.post(ADD)
        assert code == 200 and "idempotent-replayed" not in headers
        for key in (KEY, f'"{KEY}"'):  # again, and quoted: the same key
            code, again_headers, again = page.post(ADD, key=key)
            assert (code, again, again_headers.get("idempotent-replayed")) == (200, body, "true")
        assert os.listdir(folder) == [body["queued"] + ".json"]  # one file for the three requests
        code, _h, other = page.post({"action": "add_samples", "n": 5})
        assert code == 422 and "Idempotency-Key" in other["error"] and "add_samples" in other["error"], other
        assert os.listdir(folder) == [body["queued"] + ".json"]
        plain = [page.post(ADD, key=None)[2]["queued"] for _ in range(2)]  # no key: each its own command
        assert len(set(plain) | {body["queued"]}) == 3
        assert len(os.listdir(folder)) == 3
    finally:
        _release(lock, rs.path)
