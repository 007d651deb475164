"""A URL's password (``https://user:pw@host``) and a ``Bearer <token>`` are masked wherever a trial's text is
shown, whether or not its config holds a secret: in a metric's name and in an error message alone."""

from __future__ import annotations

import json
import os
import warnings

from click.testing import CliRunner

import tunesmith as ts
from tests.test_secrets import _get
from tunesmith._secrets import MASK, MIN_TEXT_SECRET, mask_name, mask_result, mask_text
from tunesmith.callbacks import CSVLogger, JSONLLogger
from tunesmith.cli import cli

URL_PW = "URLPW-4242"
TOKEN = "eyTOKEN.xyz-99"
URL_NAME = f"latency_https://bob:{URL_PW}@api.example/v1"
BEARER_NAME = f"calls Authorization: Bearer {TOKEN}"


def test_a_name_quoting_a_url_password_or_a_bearer_token_is_masked_without_config_secrets() -> None:
    assert mask_name(URL_NAME, ()) == f"latency_https://bob:{MASK}@api.example/v1"
    assert mask_name(BEARER_NAME, frozenset()) == f"calls Authorization: Bearer {MASK}"
    assert mask_name("val/accuracy_top5", ()) == "val/accuracy_top5"
    masked = mask_result({"loss": 1.0, URL_NAME: 2.0}, ())
    assert masked == {"loss": 1.0, f"latency_https://bob:{MASK}@api.example/v1": 2.0}


def test_a_secret_shorter_than_the_text_minimum_is_left_in_free_text() -> None:
    # replacing "42" in a traceback would mangle every line number: the config shows it masked, text does not
    short = "4" * (MIN_TEXT_SECRET - 1)
    assert mask_text(f"line {short}: bad key {short}", {short}) == f"line {short}: bad key {short}"
    assert mask_text("bad key abcd", {"abcd"}) == f"bad key {MASK}"


def _train(config):
    ts.report({"loss": 1.0, URL_NAME: 2.0, BEARER_NAME: 3.0})
    raise RuntimeError(f"fetch failed: https://bob:{URL_PW}@api.example/v1 with Authorization: Bearer {TOKEN}")


def test_the_all_results_frame_renames_a_masked_column_without_a_deprecated_pandas_call(results_dir) -> None:
    """The masked metric names were renamed with ``DataFrame.rename(inplace=True)``, deprecated in pandas 3.1
    (a ``DeprecationWarning`` from tunesmith's own line)."""
    result = ts.run(_train, space={"lr": 0.1}, metric="loss", mode="min", name="renamed",
                    storage_path=str(results_dir), verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        frame = result.dataframe(all_results=True)
    masked = [f"latency_https://bob:{MASK}@api.example/v1", f"calls Authorization: Bearer {MASK}"]
    assert frame[masked].values.tolist() == [[2.0, 3.0]] and URL_NAME not in frame.columns


def test_credentials_in_names_and_errors_of_a_config_without_secrets_appear_in_no_output(results_dir,
                                                                                        tmp_path) -> None:
    from tunesmith.dashboard import make_app

    result = ts.run(_train, space={"lr": 0.1}, metric="loss", mode="min", name="cred",
                    storage_path=str(results_dir), verbose=0, callbacks=[CSVLogger(), JSONLLogger()])
    trial = result.trials[0]
    assert trial.status.value == "ERROR" and URL_PW in trial.error  # stored as raised
    outputs = {"repr": repr(result.trials),
               "dataframe": result.dataframe().to_csv(),
               "all results": result.dataframe(all_results=True).to_csv()}
    runner = CliRunner()
    for args in (["show", "cred"], ["show", "cred", "--json"]):
        res = runner.invoke(cli, [*args, "--storage-path", str(results_dir)])
        assert res.exit_code == 0, res.output
        outputs[" ".join(args)] = res.output
    app = make_app(str(results_dir))
    for path in ("/api/e/cred/trials", "/api/e/cred/t/1", "/api/e/cred/summary"):
        status, body = _get(app, path)
        assert status == 200, body
        outputs[path] = body
    for folder, _dirs, files in os.walk(result.path):
        for f in files:
            if f.endswith((".csv", ".json", ".jsonl")):
                with open(f"{folder}/{f}", encoding="utf-8") as fh:
                    outputs[f] = fh.read()
    leaks = [f"{secret!r} in {where}" for where, text in outputs.items() for secret in (URL_PW, TOKEN)
             if secret in text]
    assert not leaks, "\n".join(leaks)
    last = json.loads(outputs["show cred --json"])["trials"][0]["last_result"]
    assert last[f"latency_https://bob:{MASK}@api.example/v1"] == 2.0
    assert last[f"calls Authorization: Bearer {MASK}"] == 3.0
    assert f"fetch failed: https://bob:{MASK}@api.example" in outputs["show cred"]


def test_a_bearer_token_after_the_word_in_any_case_is_masked() -> None:
    # the regex ignores case; the substring pre-test must not skip what it would mask
    for word in ("BeArEr", "bEARER", "BEARer"):
        assert mask_name(f"calls {word} {TOKEN}", ()) == f"calls {word} {MASK}"
        assert mask_name(f"calls {word} {TOKEN}", frozenset({"unrelated-secret"})) == f"calls {word} {MASK}"
        assert mask_text(f"failed with {word} {TOKEN}") == f"failed with {word} {MASK}"


def test_a_bearer_token_glued_to_a_name_by_a_separator_is_masked() -> None:
    # \bbearer: "_" is a word character, so "loss_Bearer <token>" was left as it was
    for sep in ("_", "-", ".", "/"):
        assert mask_name(f"loss{sep}Bearer {TOKEN}", ()) == f"loss{sep}Bearer {MASK}"
        assert mask_text(f"failed: auth{sep}bearer {TOKEN}") == f"failed: auth{sep}bearer {MASK}"
    # a word that merely ends in the letters is not the word: "Xbearer", "2bearer" are left
    assert mask_name(f"Xbearer {TOKEN}", ()) == f"Xbearer {TOKEN}"
    assert mask_name(f"2bearer {TOKEN}", ()) == f"2bearer {TOKEN}"
