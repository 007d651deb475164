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


def _never(tmp):
    pytest.fail(f"fetched to {tmp} for a bad argument")


@pytest.mark.parametrize("path, expected", [
    ("", r"download_once\(path=''\): .*empty"),  # was: the working directory, returned as if downloaded
    ("data/a\x00b", r"download_once\(path='data/a\\x00b'\): .*NUL"),  # was: a bare "embedded null byte"
    (None, r"download_once\(path=None\): expected a file or folder path"),  # was: a TypeError naming no argument
])
def test_a_bad_path_is_refused_naming_it(tmp_path, monkeypatch, path, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ts.ConfigError, match=expected):
        download_once(path, _never)
    assert os.listdir(tmp_path) == []  # nothing made


@pytest.mark.parametrize("timeout_s", [-1, float("nan"), "10"])
def test_a_bad_timeout_or_fetch_fn_is_refused_before_anything_is_made(tmp_path, timeout_s):
    # a negative timeout_s was filelock's "wait forever"
    with pytest.raises(ts.ConfigError, match=r"download_once\(timeout_s=.*\): expected None or a number >= 0"):
        download_once(tmp_path / "ds", _never, timeout_s=timeout_s)
    with pytest.raises(ts.ConfigError, match=r"download_once\(fetch_fn='http://x'\): expected a function"):
        download_once(tmp_path / "ds", "http://x")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_a_file_where_a_folder_of_the_path_should_be_is_named(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(ts.ConfigError, match=r"download_once\(.*data/set.*\): .*data' is a file, not a folder"):
        download_once(tmp_path / "data" / "set", _never)  # was: FileExistsError, as if data/set existed
    assert (tmp_path / "data").read_text() == "not a folder"


def test_a_link_planted_at_the_lock_is_not_followed_and_is_named(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "ds.lock").symlink_to(victim)  # opening it with O_TRUNC would empty the victim
    with pytest.raises(ts.ConfigError, match=r"ds\.lock' is a symbolic link .*victim.*remove it"):
        download_once(tmp_path / "ds", _never)  # was: a bare OSError "Too many levels of symbolic links"
    assert victim.read_text() == "precious" and not (tmp_path / "ds").exists()
