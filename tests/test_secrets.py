from __future__ import annotations

import io
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

import tunesmith as ts
from tunesmith._run import check_name
from tunesmith._secrets import MASK, mask
from tunesmith.callbacks.progress import Progress


def test_mask_keys_and_url_passwords():
    config = {"lr": 0.1, "api_key": "sk-123", "nested": {"DB_PASSWORD": "hunter2", "token_ttl": 5},
              "url": "postgres://bob:s3cret@db:5432/x", "plain_url": "https://host/path", "steps": [1, 2]}
    m = mask(config)
    assert m["lr"] == 0.1 and m["steps"] == [1, 2] and m["plain_url"] == "https://host/path"
    assert m["api_key"] == MASK and m["nested"]["DB_PASSWORD"] == MASK
    assert m["url"] == f"postgres://bob:{MASK}@db:5432/x"
    assert config["api_key"] == "sk-123"  # the original is untouched


def test_counts_and_names_that_only_contain_key_or_token_are_shown() -> None:
    """An LLM sweep's ``max_new_tokens`` or a ``tokenizer`` is not a secret: a key is secret-looking by its words
    (``api_key``, ``hfToken``, ``OPENAI_API_KEY``, ``api_keys``), and where the word is only key(s)/token(s) a
    number under it is shown (a count, a size); text under it is still masked. Secret, password, credential...
    anywhere in a key mask every value, numbers too."""
    from tunesmith._secrets import mask_text, secret_strings

    config = {"max_new_tokens": 1024, "num_tokens": 7, "tokenizer": "gpt2", "keyword": "cat", "key_dim": 64,
              "token_budget": 2000, "api_key": "sk-1", "apiKey": "sk-2", "OPENAI_API_KEY": "sk-3", "hfToken": "hf-4",
              "api_keys": ["sk-5", "sk-6"], "db_password": 123456, "client_secret": 42, "pwd": 7777,
              "credentials": {"pin": 1234}, "sort_key": "loss", "use_token": True, "auth_token": None}
    m = mask(config)
    shown = {k: config[k] for k in ("max_new_tokens", "num_tokens", "tokenizer", "keyword", "key_dim", "token_budget",
                                    "use_token", "auth_token")}
    assert {k: m[k] for k in shown} == shown
    for key in ("api_key", "apiKey", "OPENAI_API_KEY", "hfToken", "db_password", "client_secret", "pwd", "sort_key"):
        assert m[key] == MASK, key
    assert m["api_keys"] == [MASK, MASK] and m["credentials"] == {"pin": MASK}
    assert secret_strings(config) == {"sk-1", "sk-2", "sk-3", "hf-4", "sk-5", "sk-6", "123456", "42", "7777", "1234",
                                      "loss"}
    assert mask_text("generated 1024 tokens with sk-1", secret_strings(config)) == f"generated 1024 tokens with {MASK}"


def test_a_swept_size_under_a_tokens_key_is_plotted_and_named(results_dir) -> None:
    """``max_new_tokens`` swept: its values on the sensitivity plot's axis and its name on the importance chart
    (both were ``***``); a swept ``hf_token`` is still told apart as ``*** #1``, ``*** #2``."""
    from tunesmith.plots.data import importance, sensitivity

    def train(config):
        ts.report({"loss": config["max_new_tokens"] / 100 + len(config["hf_token"]) + config["x"]})

    space = {"max_new_tokens": ts.grid([64, 128, 256]), "hf_token": ts.grid(["hf-aaaa", "hf-bbbbb"]),
             "x": ts.uniform(0, 1)}
    result = ts.run(train, space=space, num_samples=2, metric="loss", mode="min", verbose=0, seed=0)
    figure = sensitivity(result)
    assert figure is not None
    layout = figure["layout"]
    axes = {layout[k]["title"]["text"]: layout[k] for k in layout if k.startswith("xaxis")}
    assert axes["hf_token"]["categoryarray"] == [f"{MASK} #1", f"{MASK} #2"]
    tokens = {x for trace in figure["data"] if trace["xaxis"] == "x" for x in trace["x"]}
    assert tokens == {64, 128, 256}, figure["layout"]["xaxis"]
    bars = importance(result)
    assert bars is not None and "max_new_tokens" in bars["data"][0]["y"]


def test_secrets_are_stored_as_given_and_masked_when_shown(results_dir):
    buf = io.StringIO()
    result = ts.run(lambda c: ts.report({"v": 1}), space={"api_token": "tok-XYZ", "lr": ts.grid([0.1])},
                    verbose=0, callbacks=[Progress(console=Console(file=buf, force_terminal=True, width=150),
                                                   refresh_s=0)])
    assert "tok-XYZ" not in buf.getvalue() and MASK in buf.getvalue()
    assert result.trials[0].config["api_token"] == "tok-XYZ"  # stored as given
    assert result.dataframe()["config/api_token"][0] == MASK
    assert result.dataframe(show_secrets=True)["config/api_token"][0] == "tok-XYZ"


@pytest.mark.parametrize("name", ["nl\n", "ok\n", "a.b\n"])
def test_a_name_with_a_newline_at_its_end_is_refused(name):
    # `$` in a regular expression matches before a final newline: the rule said letters, digits and . _ = + -
    with pytest.raises(ts.ConfigError, match="name must be a folder name"):
        check_name(name)


@given(st.text(min_size=0, max_size=40))
def test_hostile_experiment_names_never_leave_the_results_folder(name):
    root = "/srv/results"
    try:
        check_name(name)
    except ts.ConfigError:
        return
    path = os.path.realpath(os.path.join(root, name))
    assert os.path.dirname(path) == root


# -- every output masks; the store keeps the value --------------------------------------------------------

KEYS = ["sk-live-AAAA1111", "sk-live-BBBB2222"]
DB_URL = "postgres://bob:pa/ss-w0rd@db.example:5432/x"


METRIC_SECRETS = ["hf_METRICSECRET", "METRICPW"]


def secret_train(config):
    ts.report({"loss": 1.0 if config["api_key"] == KEYS[0] else 2.0,  # text results: a token, a URL, the config's key
               "hf_token": METRIC_SECRETS[0], "endpoint": f"https://u:{METRIC_SECRETS[1]}@h.example/",
               "note": f"called with {config['api_key']}",
               # the config's key in a metric's name (a nested one too): masked there as in a value
               f"loss_{config['api_key']}": 1.0, "by_key": {config["api_key"]: 2.0}})
    if config["api_key"] == KEYS[1]:
        raise ValueError(f"request refused for config {config}")  # a message that quotes the config


def _get(app, path: str) -> tuple[int, str]:
    got = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "HTTP_HOST": "127.0.0.1:8788",
               "wsgi.input": io.BytesIO(b""), "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8788",
               "wsgi.url_scheme": "http"}
    body = b"".join(app(environ, lambda status, headers: got.update(status=int(status.split()[0]))))
    return got["status"], body.decode()


def _files_under(path: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(path) for f in files]


def test_a_grid_swept_api_key_appears_in_no_output(results_dir, tmp_path, capfd) -> None:
    import json

    from click.testing import CliRunner

    from tunesmith.callbacks import CSVLogger, JSONLLogger, MLflowLogger, TensorBoardLogger
    from tunesmith.cli import cli
    from tunesmith.plots.report import write_report
    from tunesmith.store.sqlite import STORE_FILE

    buf = io.StringIO()
    mlflow_uri = f"sqlite:///{tmp_path}/mlflow.db"
    callbacks = [Progress(verbose=2, console=Console(file=buf, force_terminal=True, width=200), refresh_s=0),
                 CSVLogger(), JSONLLogger(), TensorBoardLogger(),
                 MLflowLogger(tracking_uri=mlflow_uri, experiment_name="secrets")]
    result = ts.run(secret_train, space={"api_key": ts.grid(KEYS), "seed": ts.grid([0, 1]), "db": DB_URL},
                    metric="loss", mode="min", name="sec", storage_path=str(results_dir), verbose=0,
                    callbacks=callbacks)
    secrets = [*KEYS, "pa/ss-w0rd", *METRIC_SECRETS]
    failed = [t for t in result.trials if t.status.value == "ERROR"]
    assert len(failed) == 2 and KEYS[1] in failed[0].error  # the store keeps the error as raised...
    assert {t.config["api_key"] for t in result.trials} == set(KEYS)  # ... and the config as given

    driver = capfd.readouterr()
    outputs = {"progress": buf.getvalue(), "driver stdout": driver.out, "driver stderr": driver.err}
    report = tmp_path / "report.html"
    write_report(result, str(report))
    runner = CliRunner()
    for args in (["show", "sec"], ["show", "sec", "--json"], ["ls"],
                 ["report", "sec", "-o", str(tmp_path / "r2.html")],
                 ["export", "sec", "--to", str(tmp_path / "exported")]):
        res = runner.invoke(cli, [*args, "--storage-path", str(results_dir)])
        assert res.exit_code == 0, res.output
        outputs[" ".join(args)] = res.output
    frame = result.dataframe()
    outputs["dataframe"] = frame.to_csv()
    outputs["notebook"] = result._repr_html_() + "".join(t._repr_html_() for t in result.trials)
    outputs["repr"] = repr(result.trials)
    from tunesmith.dashboard import make_app

    app = make_app(str(results_dir))
    for path in ("/api/e/sec/trials", "/api/e/sec/t/1", "/api/e/sec/t/2", "/api/e/sec/summary"):
        status, body = _get(app, path)
        assert status == 200, body
        outputs[path] = body
    outputs["dataframe all results"] = result.dataframe(all_results=True).to_csv()
    store_files = {STORE_FILE, STORE_FILE + "-wal", STORE_FILE + "-shm"}
    files = [f for f in _files_under(result.path) if os.path.basename(f) not in store_files]
    files += _files_under(str(tmp_path / "mlruns")) if (tmp_path / "mlruns").exists() else []
    files += [str(report), str(tmp_path / "r2.html"), str(tmp_path / "mlflow.db")]
    files += _files_under(str(tmp_path / "exported"))  # tunesmith export's params.json too
    assert any(f.endswith("params.json") for f in files) and any("tfevents" in f for f in files)
    for f in files:
        with open(f, "rb") as fh:
            outputs[f] = fh.read().decode("utf-8", "replace")
    res = runner.invoke(cli, ["report", "sec", "--metric", "typo", "--storage-path", str(results_dir)])
    assert res.exit_code != 0 and f"loss_{MASK}" in res.output, res.output  # the reported names it lists, masked
    outputs["report --metric typo"] = res.output
    from tunesmith.plots.data import learning_curves

    with pytest.raises(ts.ConfigError, match="no result reported a number") as refused:
        learning_curves(result, metric="typo")
    outputs["learning_curves(metric='typo')"] = str(refused.value)
    leaks = [f"{secret!r} in {where}" for where, text in outputs.items() for secret in secrets if secret in text]
    assert not leaks, "\n".join(leaks)
    assert MASK in outputs["show sec"] and "***" in outputs["progress"]
    assert json.loads(outputs["show sec --json"])["trials"][0]["config"]["api_key"] == MASK
    assert "request refused" in outputs["show sec"]  # the error is shown, its secret masked
    # a name that quoted the key is there masked, its value as reported
    assert json.loads(outputs["show sec --json"])["trials"][0]["last_result"]["by_key/***"] == 2.0
    every = result.dataframe(all_results=True)
    assert every["loss_***"].tolist() == [1.0] * 4 and every["by_key/***"].tolist() == [2.0] * 4  # one column
    assert all(f"loss_{MASK}" in outputs[f].splitlines()[0] for f in files if f.endswith("progress.csv"))
    assert f"loss_{MASK}" in json.loads(outputs["/api/e/sec/summary"])["metrics"]
    from tunesmith.plots.data import sensitivity

    figure = sensitivity(result)  # the swept key's values told apart, not shown
    assert figure is not None and figure["layout"]["xaxis"]["categoryarray"] == [f"{MASK} #1", f"{MASK} #2"]
    assert {x for trace in figure["data"] for x in trace["x"]} == {f"{MASK} #1", f"{MASK} #2"}  # lines and points
    from tunesmith.plots.data import parallel_coordinates, scatter

    told_apart = [f"{MASK} #1", f"{MASK} #2"]  # the other plots too (every value *** read as one value: no axis)
    dimensions = {d["label"]: d for d in parallel_coordinates(result)["data"][0]["dimensions"]}
    assert dimensions["api_key"]["ticktext"] == told_apart
    points = scatter(result)
    assert points is not None
    assert sorted({x for trace in points["data"] if trace["meta"]["param"] == "api_key" for x in trace["x"]}) == (
        told_apart)
    shown = json.loads(runner.invoke(cli, ["show", "sec", "--json", "--show-secrets", "--storage-path",
                                           str(results_dir)]).output)
    assert {t["config"]["api_key"] for t in shown["trials"]} == set(KEYS)  # asked for: shown as stored


def test_the_mask_covers_nested_urls_tokens_and_pwd() -> None:
    config = {"credentials": {"user": "alice", "pin": 1234, "scopes": ["read", "write"]},
              "url": "postgres://bob:pa/ss@db:5432/x", "repo": "https://ghp_TOKEN123@github.com/org/repo.git",
              "header": "Authorization: Bearer eyJhbGciOi.JIUzI1-NiJ9", "pwd": "hunter2", "passwd": "x1",
              "mail": "https://host/path?to=a@b.com", "use_token": True, "lr": 0.1}
    m = mask(config)
    assert m["credentials"] == {"user": MASK, "pin": MASK, "scopes": [MASK, MASK]}
    assert m["url"] == f"postgres://bob:{MASK}@db:5432/x"
    assert m["repo"] == f"https://{MASK}@github.com/org/repo.git"
    assert m["header"] == f"Authorization: Bearer {MASK}"
    assert m["pwd"] == MASK and m["passwd"] == MASK
    assert m["mail"] == "https://host/path?to=a@b.com" and m["use_token"] is True and m["lr"] == 0.1
    assert mask({"u": "https://a:p@ss@host/x"})["u"] == f"https://a:{MASK}@host/x"  # '@' in the password


def test_an_error_message_that_quotes_the_config_is_masked() -> None:
    from tunesmith._secrets import mask_text, secret_strings, shown
    from tunesmith.trial import TrialStatus, TrialView

    config = {"api_key": "sk-QUOTED-9", "db": "mysql://u:se/cret@h/x", "n": 3, "token": "ab"}
    error = (f"Traceback (most recent call last):\n  line 3\nValueError: bad {config!r} "
             f"{json_dumps(config)} Bearer zzz-TOKEN-1")
    trial = TrialView(id=1, config=config, status=TrialStatus.ERROR, error=error)
    masked = shown(trial)
    for secret in ("sk-QUOTED-9", "se/cret", "zzz-TOKEN-1"):
        assert secret not in masked.error
    assert "line 3" in masked.error  # short values ("ab", 3) are masked in the config, not in free text
    assert masked.config["token"] == MASK and trial.error == error and trial.config["api_key"] == "sk-QUOTED-9"
    assert secret_strings(config) == {"sk-QUOTED-9", "se/cret", "ab"}
    assert mask_text("key 'it\\'s-a-secret'", {"it's-a-secret"}) == f"key '{MASK}'"  # as repr writes it


def json_dumps(value: object) -> str:
    import json

    return json.dumps(value)


def _too_big(config):
    return {"cpu": 10_000}


def test_an_impossible_resources_request_names_the_config_masked(results_dir):
    config = {"api_key": "sk-REALSECRET", "db": "postgres://u:hunter2@h/db", "x": 1}
    with pytest.raises(ts.ConfigError) as caught:
        ts.run(lambda c: None, config, resources=_too_big, verbose=0, name="res")
    text = str(caught.value)
    assert "resources(config) for trial 1" in text and "'x': 1" in text
    assert "sk-REALSECRET" not in text and "hunter2" not in text and MASK in text, text


@pytest.mark.parametrize("space", [
    {"api_key": ts.choice("sk-NOTALIST99")},
    {"db_password": ts.uniform("hunter2hunter2", 5)},
    {"credentials": {"value": ts.uniform("sk-NOTALIST99", 1)}},  # secret by an enclosing key
    {"auth": {"client_secret": ts.loguniform(-1.0, "sk-NOTALIST99")}},
])
def test_a_bad_domain_under_a_secret_key_is_named_without_its_values(space):
    with pytest.raises(ts.ConfigError) as caught:
        ts.run(lambda c: None, space, verbose=0)
    text = str(caught.value)
    assert "sk-NOTALIST99" not in text and "hunter2hunter2" not in text, text
    assert 'space["' in text  # still says where


def test_a_point_to_evaluate_under_a_secret_key_is_named_without_its_values():
    space = {"api_key": ts.choice(["sk-REALSECRET", "sk-SECOND1"]), "x": ts.uniform(0, 1)}
    searcher = ts.OptunaSearch(points_to_evaluate=[{"api_key": "sk-OTHER9", "x": 0.5}], seed=0)
    with pytest.raises(ts.ConfigError) as caught:
        ts.run(lambda c: None, space, searcher=searcher, metric="x", mode="min", verbose=0)
    text = str(caught.value)
    assert "points_to_evaluate[0]" in text and "api_key" in text, text
    assert not any(s in text for s in ("sk-OTHER9", "sk-REALSECRET", "sk-SECOND1")), text


def test_a_trial_results_repr_masks_its_config_and_error(results_dir):
    # printing a trial (a notebook cell, a log line, a debugger) is an output too
    def fails(config):
        raise RuntimeError(f"cannot reach {config['db']} with {config['api_key']}")

    result = ts.run(fails, {"api_key": "sk-REPRSECRET", "db": "postgres://u:hunter2@h/db", "x": 1}, verbose=0)
    text = repr(result.trials[0])
    assert text.startswith("TrialResult(id=1, config={") and "'x': 1" in text and MASK in text
    assert "sk-REPRSECRET" not in text and "hunter2" not in text, text
    assert result.trials[0].config["api_key"] == "sk-REPRSECRET"  # the value itself is the user's, as given


def test_plots_of_an_experiment_without_a_metric_mask_a_secret_in_the_name_they_plot(results_dir, tmp_path) -> None:
    """``run(metric=None)``: the plots take the first number a trial reported as their metric; a name that quotes
    the trial's key (``loss_<api_key>``) is masked in every figure, the report and a refusal naming it, as every
    other output masks it."""
    import json

    from tunesmith.plots import data as plot_data
    from tunesmith.plots.report import write_report

    def train(config):
        for step in range(3):
            ts.report({f"loss_{config['api_key']}": step + config["seed"] + len(config["api_key"]), "other": 1.0})

    result = ts.run(train, space={"api_key": ts.grid(KEYS), "seed": ts.grid([0, 1]), "x": ts.grid([1, 2])},
                    name="nometric", storage_path=str(results_dir), verbose=0)
    assert result.metric is None and any(KEYS[0] in k for k in result.trials[0].last_result)  # stored raw
    report = tmp_path / "report.html"
    write_report(result, str(report))
    outputs = {"report": report.read_text()}
    write_report(result, str(tmp_path / "named.html"), metric=f"loss_{KEYS[0]}", mode="min")  # its summary names it
    outputs["report with metric="] = (tmp_path / "named.html").read_text()
    figures = {"learning_curves": plot_data.learning_curves(result),
               "learning_curves aggregated": plot_data.learning_curves(result, mode="min", max_trials=2),
               "seed_curves": plot_data.seed_curves(result),
               "best_so_far": plot_data.best_so_far(result, mode="min"),
               "sensitivity": plot_data.sensitivity(result),
               "parallel_coordinates": plot_data.parallel_coordinates(result),
               "scatter": plot_data.scatter(result),
               "importance": plot_data.importance(result, mode="min")}
    for name, figure in figures.items():
        assert figure is not None, name
        outputs[name] = json.dumps(figure)
    with pytest.raises(ts.ConfigError, match="no mode") as refused:
        plot_data.best_so_far(result)
    outputs["best_so_far refused"] = str(refused.value)
    leaks = [f"{key!r} in {where}" for where, text in outputs.items() for key in KEYS if key in text]
    assert not leaks, "\n".join(leaks)
    assert f"loss_{MASK}" in figures["learning_curves"]["layout"]["yaxis"]["title"]["text"]
    assert f"loss_{MASK}" in outputs["best_so_far refused"] and f"loss_{MASK}" in outputs["report"]


def test_a_refreshed_result_set_masks_the_secret_of_a_trial_added_since_in_a_plotted_name(results_dir) -> None:
    """The plots keep a source's config secrets while it lives (a notebook plots one experiment again and again);
    a refresh that reads a trial added since (a resume: another key) must mask that trial's key in the names too."""
    import json

    from tunesmith.plots import data as plot_data

    keys = [f"sk-refresh-{i:02d}-abcdefgh" for i in range(6)]

    def train(config):
        ts.report({f"loss_{config['api_key']}": 1.0})

    def run(n, resume=False):
        return ts.run(train, space={"api_key": ts.choice(keys)}, num_samples=n, name="grows",
                      storage_path=str(results_dir), verbose=0, seed=0, resume=resume)

    first = run(1)
    rs = ts.load(first.path)
    json.dumps(plot_data.learning_curves(rs))  # the secrets of the one trial so far, kept for rs
    more = run(6, resume=True)
    new = {t.config["api_key"] for t in more.trials} - {first.trials[0].config["api_key"]}
    assert new, "the resume drew no other key"
    rs.refresh()
    key = sorted(new)[0]
    drawn = json.dumps(plot_data.learning_curves(rs, metric=f"loss_{key}", mode="min"))  # its own trial's name
    assert f"loss_{MASK}" in drawn and key not in drawn
