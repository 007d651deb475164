from __future__ import annotations

import io
import os

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


def test_secrets_are_stored_as_given_and_masked_when_shown(results_dir):
    buf = io.StringIO()
    result = ts.run(lambda c: ts.report({"v": 1}), space={"api_token": "tok-XYZ", "lr": ts.grid([0.1])},
                    verbose=0, callbacks=[Progress(console=Console(file=buf, force_terminal=True, width=150),
                                                   refresh_s=0)])
    assert "tok-XYZ" not in buf.getvalue() and MASK in buf.getvalue()
    assert result.trials[0].config["api_token"] == "tok-XYZ"  # stored as given
    assert result.dataframe()["config/api_token"][0] == MASK
    assert result.dataframe(show_secrets=True)["config/api_token"][0] == "tok-XYZ"


@given(st.text(min_size=0, max_size=40))
def test_hostile_experiment_names_never_leave_the_results_folder(name):
    root = "/srv/results"
    try:
        check_name(name)
    except ts.ConfigError:
        return
    path = os.path.realpath(os.path.join(root, name))
    assert os.path.dirname(path) == root
