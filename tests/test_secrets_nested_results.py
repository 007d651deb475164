"""Text a trial reports under a secret-looking key is masked wherever that key is on the result's path (a nested
dict is stored flat, ``credentials/pass``), as a config is masked by its whole path; an experiment's own error
(stored in its meta) masks the secrets of the config that was being made when it failed."""

from __future__ import annotations

import io
import json
import os

import pytest
from click.testing import CliRunner
from rich.console import Console

import tunesmith as ts
from tests.test_secrets import _get
from tunesmith._secrets import MASK, mask_reported_text, mask_result
from tunesmith.callbacks import CSVLogger, JSONLLogger
from tunesmith.callbacks.progress import Progress
from tunesmith.cli import cli

NESTED = {"credentials": {"user": "alice-USER-777", "pass": "CRED-PASS-555"},
          "db_password": {"value": "PW-NESTED-111"},
          "openai_api_key": {"value": "sk-NESTEDKEY999"},
          "run": {"auth": {"hf_token": "hf_DEEPTOKEN333"}}}
SECRETS = ["alice-USER-777", "CRED-PASS-555", "PW-NESTED-111", "sk-NESTEDKEY999", "hf_DEEPTOKEN333",
           "FLAT-PW-222"]


def test_a_text_result_is_masked_when_any_part_of_its_name_looks_secret() -> None:
    result = {"loss": 1.0, "credentials/user": "alice", "credentials/pass": "p", "db_password/value": "pw",
              "openai_api_key/value": "sk-1", "a/b/hf_token": "hf", "flat_password": "x",
              "eval/phase": "train", "credentials/attempts": 3, "tokens/count": 5, "tokenizer/name": "bpe"}
    masked = mask_result(result, ())
    for key in ("credentials/user", "credentials/pass", "db_password/value", "openai_api_key/value",
                "a/b/hf_token", "flat_password"):
        assert masked[key] == MASK, key
    # numbers are shown as reported; text under no secret-looking part is shown
    assert masked["eval/phase"] == "train" and masked["credentials/attempts"] == 3 and masked["tokens/count"] == 5
    assert masked["tokenizer/name"] == "bpe" and masked["loss"] == 1.0
    assert mask_reported_text("credentials/pass", "p") == MASK
    assert mask_result({"loss": 1.0, "eval/phase": "train"}, ()) == {"loss": 1.0, "eval/phase": "train"}


def _nested_train(config):
    ts.report({"loss": 1.0, **NESTED, "flat_password": "FLAT-PW-222", "phase": "train"})


def test_text_results_nested_under_a_secret_key_appear_in_no_output(results_dir, tmp_path, capfd) -> None:
    from tunesmith.dashboard import make_app
    from tunesmith.store.sqlite import STORE_FILE

    buf = io.StringIO()
    callbacks = [Progress(verbose=2, console=Console(file=buf, force_terminal=True, width=400), refresh_s=0),
                 CSVLogger(), JSONLLogger()]
    result = ts.run(_nested_train, {"x": 1}, metric="loss", mode="min", name="n", storage_path=str(results_dir),
                    verbose=0, callbacks=callbacks)
    assert result.trials[0].last_result["credentials/pass"] == "CRED-PASS-555"  # the store keeps them as reported
    outputs = {"progress": buf.getvalue(), "driver": "".join(capfd.readouterr())}
    runner = CliRunner()
    for args in (["show", "n"], ["show", "n", "--json"], ["export", "n", "--to", str(tmp_path / "exported")]):
        res = runner.invoke(cli, [*args, "--storage-path", str(results_dir)])
        assert res.exit_code == 0, res.output
        outputs[" ".join(args)] = res.output
    outputs["dataframe"] = result.dataframe().to_csv()
    outputs["dataframe all results"] = result.dataframe(all_results=True).to_csv()
    outputs["notebook"] = result._repr_html_() + "".join(t._repr_html_() for t in result.trials)
    app = make_app(str(results_dir))
    for path in ("/api/e/n/trials", "/api/e/n/t/1", "/api/e/n/summary"):
        status, body = _get(app, path)
        assert status == 200, body
        outputs[path] = body
    files = [os.path.join(d, f) for root in (result.path, str(tmp_path / "exported"))
             for d, _, names in os.walk(root) for f in names]
    files = [f for f in files if os.path.basename(f) not in {STORE_FILE, STORE_FILE + "-wal", STORE_FILE + "-shm"}]
    assert any(f.endswith("result.jsonl") for f in files) and any(f.endswith("progress.csv") for f in files)
    for f in files:
        with open(f, "rb") as fh:
            outputs[f] = fh.read().decode("utf-8", "replace")
    for where, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in {where}"
    last = json.loads(outputs["show n --json"])["trials"][0]["last_result"]
    assert last["credentials/pass"] == MASK and last["openai_api_key/value"] == MASK and last["phase"] == "train"


def test_an_experiment_error_masks_the_secrets_of_the_config_being_made(results_dir) -> None:
    # a sample_from draws each trial's key; another one fails quoting it before that trial is stored
    drawn: list[str] = []

    def key(spec):
        drawn.append(f"sk-DRAWN-SECRET-{len(drawn) + 1:04d}")
        return drawn[-1]

    def pick(spec):
        if len(drawn) >= 2:
            raise ValueError(f"quota exceeded for key {spec['api_key']} at https://u:URL-PW-4444@h.example/")
        return 0.1

    space = {"api_key": ts.sample_from(key), "lr": ts.sample_from(pick)}
    with pytest.raises(ts.ConfigError, match="quota exceeded"):
        ts.run(lambda c: ts.report({"loss": 1.0}), space, metric="loss", mode="min", name="m",
               storage_path=str(results_dir), verbose=0, num_samples=3, max_concurrent=1)
    stored = [t.config["api_key"] for t in ts.load(str(results_dir / "m")).trials]
    assert len(drawn) == 2 and drawn[1] not in stored  # no stored trial holds the key the message quotes
    error = ts.load(str(results_dir / "m")).meta["error"]
    assert "quota exceeded for key" in error and "sk-DRAWN-SECRET-0002" not in error, error
    assert "URL-PW-4444" not in error and f"https://u:{MASK}@h.example/" in error, error
    res = CliRunner().invoke(cli, ["show", "m", "--storage-path", str(results_dir)])
    assert res.exit_code == 0, res.output
    assert "failed: ConfigError" in res.output and "sk-DRAWN-SECRET-0002" not in res.output, res.output


def _names_a_metric_after_its_key(config):
    ts.report({"loss": 1.0, f"acc_{config['api_key']}": 0.5})


def test_a_metric_name_that_quotes_a_secret_is_masked_in_place(results_dir) -> None:
    """``f"acc_{config['api_key']}"``: the name is shown with the key masked, in its place among the others; a
    result whose names quote no secret is shown as it is (the same dict)."""
    from tunesmith._secrets import secret_strings

    secrets = secret_strings({"api_key": "sk-NAME-4242"})
    masked = mask_result({"a": 1.0, "loss_sk-NAME-4242": 2.0, "z": "t"}, secrets)
    assert list(masked.items()) == [("a", 1.0), (f"loss_{MASK}", 2.0), ("z", "t")]
    plain = {"a": 1.0, "b": 2.0}
    assert mask_result(plain, secrets) is plain
    # no metric given: the notebook's table lists the names the trials reported
    rs = ts.run(_names_a_metric_after_its_key, {"api_key": "sk-NAME-4242"}, name="names", verbose=0,
                storage_path=str(results_dir))
    html = rs._repr_html_()
    assert "sk-NAME-4242" not in html and f"acc_{MASK}" in html and "0.5" in html


def _keyed_climb(config):
    """Prints and reports the key it trains with; climbs faster with the good key; a checkpoint each step."""
    print(f"training with {config['api_key']}", flush=True)
    checkpoint = ts.get_checkpoint()
    start = checkpoint.load()["i"] if checkpoint else 0
    for i in range(start, 4):
        good = config["api_key"].startswith("sk-GOOD")
        ts.report({"score": float((i + 1) * (2 if good else 1)), "note": f"used {config['api_key']}"},
                  checkpoint=ts.Checkpoint.from_state({"i": i + 1}))


def test_an_exploited_trials_earlier_key_appears_in_no_output(results_dir, tmp_path) -> None:
    """PBT copies the source's whole config, key included: trial 2 (the bad key) becomes a clone with the good key at
    its perturbation point 2. What it printed and reported with its earlier key (its log, the rows of its current
    generation up to the clone's iteration) was masked with its current config's secrets only, so the earlier key
    showed in the clear."""
    from tunesmith.dashboard import make_app

    bad = "sk-BADKEY-2222"
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"lr": [0.1, 0.2]}, quantile_fraction=0.5,
                 resample_probability=1.0, seed=0)
    result = ts.run(_keyed_climb, {"api_key": ts.grid(["sk-GOODKEY-1111", bad]), "lr": 0.1}, metric="score",
                    mode="max", max_concurrent=1, name="k", storage_path=str(results_dir), verbose=0, scheduler=pbt)
    (exploit,) = result.lineage(2)
    assert exploit["old_config"]["api_key"] == bad and result.trial(2).config["api_key"] != bad
    assert any(bad in h["note"] for h in result.history(2))  # the store keeps what it reported, as reported
    outputs = {"dataframe all results": result.dataframe(all_results=True).to_csv()}
    res = CliRunner().invoke(cli, ["export", "k", "--to", str(tmp_path / "exported"), "--storage-path",
                                   str(results_dir)])
    assert res.exit_code == 0, res.output
    for d, _, names in os.walk(tmp_path / "exported"):
        for f in names:
            with open(os.path.join(d, f), encoding="utf-8") as fh:
                outputs[os.path.join(d, f)] = fh.read()
    status, body = _get(make_app(str(results_dir)), "/api/e/k/t/2")
    assert status == 200 and "training with" in body, body
    outputs["dashboard trial"] = body
    for where, text in outputs.items():
        assert bad not in text, f"{bad!r} in {where}"


def test_a_resumed_drivers_files_of_an_exploited_trial_mask_its_earlier_key(results_dir) -> None:
    """The file loggers of a resumed driver write a trial's files again from the store at its first start: the rows
    it reported before its exploit, with its earlier key, were masked with its current config's secrets only."""
    from algorithm_helpers import CtrlCAfter

    bad = "sk-BADKEY-2222"

    def go(**kw):
        pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"lr": [0.1, 0.2]}, quantile_fraction=0.5,
                     resample_probability=1.0, seed=0)
        return ts.run(_keyed_climb, {"api_key": ts.grid(["sk-GOODKEY-1111", bad]), "lr": 0.1}, metric="score",
                      mode="max", max_concurrent=1, name="r", storage_path=str(results_dir), verbose=0,
                      scheduler=pbt, file_loggers=True, **kw)

    with pytest.raises(KeyboardInterrupt):
        go(callbacks=[CtrlCAfter(5)])
    stopped = ts.load(str(results_dir / "r"))
    assert [e["old_config"]["api_key"] for e in stopped.lineage(2)] == [bad]
    assert not stopped.trial(2).status.is_finished  # it starts again in the resumed driver
    result = go(resume=True)
    assert result.trial(2).config["api_key"] != bad
    folder = os.path.join(result.path, "trials", "trial_00002")
    for name in ("progress.csv", "result.jsonl"):
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            text = fh.read()
        assert "used ***" in text and bad not in text, (name, text)
