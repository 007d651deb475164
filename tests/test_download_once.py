"""``download_once``: a relative path is the driver's (trials run in their own folders), fetched once however many
trials ask; a wait past ``timeout_s`` raises."""

from __future__ import annotations

import os

import pytest

import tunesmith as ts
from tunesmith.data import download_once
from tunesmith.executors.local import LocalBackend

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("relative", [True, False])
def test_a_path_is_fetched_once_for_many_trials_a_relative_one_beside_the_driver(results_dir, tmp_path, monkeypatch,
                                                                                 relative):
    monkeypatch.chdir(tmp_path)
    given = "data/set.txt" if relative else str(tmp_path / "data" / "set.txt")
    log = str(tmp_path / "fetches.log")

    def fetch(tmp):
        with open(log, "a") as f:
            f.write(f"{os.getcwd()}\n")
        with open(tmp, "w") as f:
            f.write("payload")

    def train(config):
        path = download_once(given, fetch)  # relative: as a user means it, beside the script, not in the trial's folder
        with open(path) as f:
            ts.report({"path": path, "content": f.read()})

    result = ts.run(train, num_samples=4, backend=LocalBackend(total_resources={"cpu": 2}), verbose=0)
    assert [t.last_result["content"] for t in result.trials] == ["payload"] * 4
    assert {t.last_result["path"] for t in result.trials} == {str(tmp_path / "data" / "set.txt")}
    with open(log) as f:
        assert len(f.read().split()) == 1  # once, not once per trial folder
    assert not any(os.path.exists(os.path.join(t.path, "data")) for t in result.trials)
    assert sorted(os.listdir(tmp_path / "data")) == ["set.txt", "set.txt.lock"]  # (filelock's file stays)
    # in the driver (no trial around) a relative path is the working directory's, as before
    assert download_once(given, fetch) == str(tmp_path / "data" / "set.txt")


def test_a_wait_past_timeout_s_raises_and_fetches_nothing(tmp_path):
    import fcntl

    import filelock

    target = tmp_path / "ds"
    held = os.open(str(target) + ".lock", os.O_RDWR | os.O_CREAT)  # another download in progress holds it
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(filelock.Timeout):
            download_once(target, lambda tmp: pytest.fail("fetched while another process held the lock"),
                          timeout_s=0.1)
        assert os.listdir(tmp_path) == ["ds.lock"]  # nothing fetched
    finally:
        os.close(held)
    assert download_once(target, lambda tmp: open(tmp, "w").close(), timeout_s=0.1) == str(target)
    assert sorted(os.listdir(tmp_path)) == ["ds", "ds.lock"]
