"""Findings on reading results: long strings in a config are masked in linear time, the paths commands print are
shown escaped, a damaged result row is a StoreError naming the store file and the trial from every reader, and
`show --sort` takes a key whose value is None."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import textwrap
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import tunesmith as ts
from tunesmith._secrets import MASK, mask, mask_string, mask_text, secret_strings
from tunesmith.cli import cli


def invoke(*args: str, color: bool = False) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, color=color)


# ----------------------------------------------------------------------------- 1. masking long strings

# The pattern the masking used to run (quadratic on a long run of letters): the scanner must find what it found.
OLD_URL_AUTH = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/?#@:]*)(?::(?P<pw>\S*?))?"
                          r"@(?=[^\s/?#@]*(?:[\s/?#]|$))")


def _old_mask_urls(text: str) -> str:
    return OLD_URL_AUTH.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@" if m["pw"] is not None
                            else f"{m['scheme']}{MASK}@", text)


URLISH = st.lists(st.sampled_from(list("aZ9+.-:/@?# \n\té_") + ["://", "http://", "u:p@h", "@h/"]),
                  max_size=30).map("".join)


@settings(max_examples=1500, deadline=None)
@given(URLISH)
def test_url_passwords_are_found_as_the_pattern_finds_them(text: str) -> None:
    from tunesmith._secrets import _url_auths

    expected = [(m.start(), m.end(), m["scheme"], m["user"], m["pw"]) for m in OLD_URL_AUTH.finditer(text)]
    assert list(_url_auths(text)) == expected
    assert mask_string(text) == _old_mask_urls(text)
    found = {m["pw"] if m["pw"] is not None else m["user"] for m in OLD_URL_AUTH.finditer(text)}
    assert secret_strings({"v": text}) == {s for s in found if s and s != MASK}


@pytest.mark.parametrize(("text", "masked"), [
    ("postgres://bob:s3cret@db:5432/x", f"postgres://bob:{MASK}@db:5432/x"),
    ("https://a:p@ss@host/x", f"https://a:{MASK}@host/x"),  # '@' in the password
    ("https://ghp_TOKEN123@github.com/org/repo.git", f"https://{MASK}@github.com/org/repo.git"),
    ("https://host/path?to=a@b.com", "https://host/path?to=a@b.com"),
    ("1https://u:pw@h -x+ftp://t@h", f"1https://u:{MASK}@h -x+ftp://{MASK}@h"),  # the scheme starts at a letter
    ("see a://u:p@h/ and b://v:q@h?x and c://w@h#y", f"see a://u:{MASK}@h/ and b://v:{MASK}@h?x and c://{MASK}@h#y"),
    ("a://u:p@h@x/", f"a://u:{MASK}@x/"),
    ("a://u:p q@h", "a://u:p q@h"),  # a password never spans whitespace
])
def test_url_passwords_and_tokens_are_masked(text: str, masked: str) -> None:
    assert mask_string(text) == masked


LONG = 2_000_000  # characters: the pattern took about 30 minutes on the first of these (0.8 s on 40 KB, quadratic)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", [
    "ACGT" * (LONG // 4),  # a DNA sequence, a hex blob: one long run of letters
    "ACGT" * (LONG // 8) + "@" + "ACGT" * (LONG // 8),  # with an '@': mask_string scans it
    "ACGT" * (LONG // 8) + "@" + "ACGT" * (LONG // 8) + "://x",  # one '://' and one '@', not a URL
    "ACGT" * (LONG // 8) + "://" + "ACGT" * (LONG // 8) + ": @",  # a password that meets a space, not an '@'
    "a://x:" * (LONG // 6) + " @",  # every '://' starts a password that meets the space
    "a://x@y@" * (LONG // 8),  # every '://' starts a token whose '@' has another after it
    "a://x" * (LONG // 5) + " @",
])
def test_a_long_string_is_masked_in_linear_time(text: str) -> None:
    """A config value of megabytes without spaces (a prompt, a sequence) is masked within the timeout; the
    pattern that did it rescanned the text from each position (hung for minutes to hours)."""
    assert secret_strings({"prompt": text}) == set()
    assert mask_string(text) == text
    assert mask_text(text, {"sk-SECRET-1"}) == text


@pytest.mark.timeout(10)
def test_many_urls_in_a_long_string_are_each_masked() -> None:
    n = LONG // 30
    text = "x https://u:pw-%d@h/p ACGT" * n % tuple(range(n))
    masked = mask_string(text)
    assert masked.count(f"https://u:{MASK}@h/p") == n and "pw-" not in masked
    assert len(secret_strings({"v": text})) == n


@pytest.mark.timeout(90)
def test_show_export_report_and_dataframe_of_a_config_with_a_long_prompt(results_dir: Any, tmp_path: Any) -> None:
    """A 400 KB prompt in the config (the repro's 50 KB one made each command take 7-26 s for 5 trials), holding a
    database URL with its password: every output masks the password and takes well under the timeout."""
    prompt = "ACGT" * 50_000 + " postgres://bob:pw-IN-PROMPT@db/x " + "ACGT" * 50_000 + "@"

    def train(config: dict[str, Any]) -> None:
        ts.report({"loss": config["x"], "note": "ok"})  # a text result: its masking reads the config's secrets

    ts.run(train, {"x": ts.grid([0.1, 0.2, 0.3]), "prompt": prompt}, metric="loss", mode="min", name="prompt",
           verbose=0)
    shown = invoke("show", "prompt", "--json")
    assert shown.exit_code == 0, shown.output[-500:]
    configs = [t["config"]["prompt"] for t in json.loads(shown.output)["trials"]]
    assert configs == [prompt.replace("pw-IN-PROMPT", MASK)] * 3
    table = invoke("show", "prompt")
    assert table.exit_code == 0 and "pw-IN-PROMPT" not in table.output
    out = tmp_path / "export"
    assert invoke("export", "prompt", "--to", str(out)).exit_code == 0
    exported = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "postgres://bob:***@db/x" in exported and "pw-IN-PROMPT" not in exported
    report = invoke("report", "prompt", "-o", str(tmp_path / "r.html"))
    assert report.exit_code == 0, report.output
    assert "pw-IN-PROMPT" not in (tmp_path / "r.html").read_text()
    frame = ts.load("prompt").dataframe()
    assert list(frame["config/prompt"]) == [prompt.replace("pw-IN-PROMPT", MASK)] * 3


# ----------------------------------------------------------------------------- 2. paths shown escaped

ESCAPES = "demo\x1b]0;PWNED\x07\x1b[2J\x1b[31mRED"


def _train(config: dict[str, Any]) -> None:
    ts.report({"loss": config["x"]})


def _escaped_folder(results_dir: Any) -> str:
    """An experiment whose folder was renamed to a name holding terminal escapes (any folder name works)."""
    ts.run(_train, {"x": ts.grid([0.1, 0.2])}, metric="loss", mode="min", name="demo", verbose=0)
    folder = os.path.join(str(results_dir), ESCAPES)
    os.rename(os.path.join(str(results_dir), "demo"), folder)
    return folder


def _shown_escaped(output: str) -> None:
    assert "\x1b" not in output and "\x07" not in output, output
    assert "demo\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[31mRED" in output, output


def test_report_prints_the_path_it_wrote_escaped(results_dir: Any) -> None:
    folder = _escaped_folder(results_dir)
    res = invoke("report", ESCAPES, color=True)  # color: click would strip some escapes from a pipe
    assert res.exit_code == 0, res.output
    assert os.path.isfile(os.path.join(folder, "report.html"))
    _shown_escaped(res.output)
    assert "wrote " in res.output


def test_trust_prints_the_folder_escaped(results_dir: Any) -> None:
    _escaped_folder(results_dir)
    res = invoke("trust", ESCAPES, "--yes", color=True)
    assert res.exit_code == 0 and "has no checkpoints in" in res.output, res.output
    _shown_escaped(res.output)


def test_resume_prints_the_folder_escaped(results_dir: Any, tmp_path: Any) -> None:
    module = f"mod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        import tunesmith as ts

        def train(config):
            ts.report({"loss": 1.0})
    """))
    path = list(sys.path)
    try:
        res = invoke("run", f"{tmp_path / module}.py:train", "--name", "demo", "--metric", "loss", "--mode", "min",
                     "--verbose", "0")
        assert res.exit_code == 0, res.output
        os.rename(os.path.join(str(results_dir), "demo"), os.path.join(str(results_dir), ESCAPES))
        res = invoke("resume", ESCAPES, f"{tmp_path / module}.py:train", "--verbose", "0", color=True)
    finally:
        sys.modules.pop(module, None)
        sys.path[:] = path
    assert res.exit_code == 0, res.output
    assert "experiment " in res.output and "folder " in res.output
    _shown_escaped(res.output)


# ----------------------------------------------------------------------------- 3. a damaged result row


def _damaged(results_dir: Any, metrics: str) -> str:
    """An experiment of 3 trials x 3 results whose trial 2's result at iteration 2 is ``metrics`` (not a JSON
    object, or not JSON); the store's path."""

    def train(config: dict[str, Any]) -> None:
        for i in range(3):
            ts.report({"loss": config["x"] + i})

    ts.run(train, {"x": ts.grid([0.1, 0.2, 0.3])}, metric="loss", mode="min", name="dmg", verbose=0)
    store = os.path.join(str(results_dir), "dmg", "experiment.db")
    db = sqlite3.connect(store)
    db.execute("UPDATE results SET metrics = ? WHERE trial_id = 2 AND iteration = 2", (metrics,))
    db.commit()
    db.close()
    return store


DAMAGE = ['"oops"', "[1, 2]", "7", '{"loss": 1', "[NaN]", "garbage"]


def _names_the_row(message: str, store: str) -> None:
    assert f"the experiment store {store} is damaged: trial 2's result of iteration 2 is not " in message, message


@pytest.mark.parametrize("metrics", DAMAGE)
def test_a_damaged_result_row_is_a_store_error_naming_the_file_and_the_trial(results_dir: Any, metrics: str,
                                                                             tmp_path: Any) -> None:
    store = _damaged(results_dir, metrics)
    rs = ts.load("dmg")
    with pytest.raises(ts.StoreError) as caught:
        rs.history(2)
    _names_the_row(str(caught.value), store)
    assert [r["loss"] for r in rs.history(1)] == [0.1, 1.1, 2.1]  # the other trials read as they are
    with pytest.raises(ts.StoreError) as caught:
        rs.dataframe(all_results=True)
    _names_the_row(str(caught.value), store)
    res = invoke("export", "dmg", "--to", str(tmp_path / "out"))
    assert res.exit_code != 0
    _names_the_row(res.output.replace("\n", ""), store)


@pytest.mark.parametrize("metrics", DAMAGE)
def test_report_of_a_damaged_result_row_fails_naming_it(results_dir: Any, metrics: str, tmp_path: Any) -> None:
    """The report read the results in SQL and left the row out of every plot without a word (exit 0)."""
    store = _damaged(results_dir, metrics)
    res = invoke("report", "dmg", "-o", str(tmp_path / "r.html"))
    assert res.exit_code != 0, res.output
    _names_the_row(res.output.replace("\n", ""), store)
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(ts.StoreError) as caught:
        ts.load("dmg").plot.learning_curves()
    _names_the_row(str(caught.value), store)


def test_a_damaged_config_row_names_the_file_and_the_trial_the_same_way(results_dir: Any, tmp_path: Any) -> None:
    store = _damaged(results_dir, '{"loss": 1}')
    db = sqlite3.connect(store)
    db.execute("UPDATE trials SET config = '[1]' WHERE id = 2")
    db.commit()
    db.close()
    res = invoke("export", "dmg", "--to", str(tmp_path / "out"))
    assert res.exit_code != 0
    assert f"the experiment store {store} is damaged: trial 2's config is not a JSON object" in res.output


# ----------------------------------------------------------------------------- 4. show --sort on None values


@pytest.fixture
def nones(results_dir: Any) -> None:
    def train(config: dict[str, Any]) -> None:
        ts.report({"loss": config["x"], "aux": float("nan")})  # report() takes no None: NaN is its "no value"

    ts.run(train, {"x": ts.grid([0.4, 0.3, 0.2, 0.1]), "warmup": None, "sched": ts.grid([None, "cos"])},
           metric="loss", mode="min", name="nones", verbose=0)


def _ids(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"^ *trial_(\d+) ", output, re.MULTILINE)]  # the table's rows


@pytest.mark.parametrize("key", ["warmup", "-warmup", "config/warmup", "aux", "-aux"])
def test_sort_by_a_key_whose_value_is_none_in_every_trial_keeps_the_id_order(nones: None, key: str) -> None:
    """The key is a column of every trial (None in the config, NaN in the results): accepted, and every trial is one
    without a value (by id)."""
    table = invoke("show", "nones", f"--sort={key}")
    assert table.exit_code == 0, table.output
    assert _ids(table.output) == list(range(1, 9))
    listed = invoke("show", "nones", f"--sort={key}", "--json")
    assert listed.exit_code == 0, listed.output
    assert [t["id"] for t in json.loads(listed.output)["trials"]] == list(range(1, 9))


@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_sort_by_a_key_none_in_some_trials_puts_those_last(nones: None, flags: list[str]) -> None:
    res = invoke("show", "nones", "--sort=sched", *flags)
    assert res.exit_code == 0, res.output
    ids = [t["id"] for t in json.loads(res.output)["trials"]] if flags else _ids(res.output)
    rs = ts.load("nones")
    cos = [t.id for t in rs.trials if t.config["sched"] == "cos"]
    assert ids == cos + [t.id for t in rs.trials if t.id not in cos]


def test_sort_by_a_key_no_trial_has_is_refused(nones: None) -> None:
    res = CliRunner().invoke(cli, ["show", "nones", "--sort=nope"])
    assert res.exit_code == 2 and "--sort: no trial has 'nope'" in res.output


def test_masking_keeps_a_config_as_it_was() -> None:
    """A config without URLs is returned equal (the scanner's precheck)."""
    config = {"prompt": "ACGT" * 1000, "api_key": "sk-1", "url": "https://h/p", "n": None}
    assert mask(config) == {**config, "api_key": MASK}
