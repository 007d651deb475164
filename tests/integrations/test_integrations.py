"""What every framework bridge shares: lazy imports and the chosen-metric check."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from tunesmith._errors import ConfigError
from tunesmith.integrations._common import MetricPicker

LIBRARIES = ["lightning", "pytorch_lightning", "transformers", "xgboost", "lightgbm", "keras", "stable_baselines3",
             "sklearn", "wandb", "torch", "tensorflow"]


def test_import_tunesmith_imports_no_bridge_and_no_framework():
    """A worker that only needs report() must not pay for torch or transformers (seconds each), and a user
    without them must be able to import tunesmith: neither `import tunesmith` nor the integrations package
    imports a bridge or a framework."""
    code = ("import sys, tunesmith, tunesmith.integrations\n"
            "tunesmith.run, tunesmith.Checkpoint, tunesmith.ASHA\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {LIBRARIES!r} "
            "or (m.startswith('tunesmith.integrations.') and m != 'tunesmith.integrations._common')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_picker_reports_every_scalar_by_default():
    picker = MetricPicker(None, "x.ReportCallback")
    logged = {"loss": torch.tensor(0.5), "acc": np.float32(0.25), "step": 3, "hist": torch.ones(3), "name": "a"}
    assert picker.pick(logged) == {"loss": 0.5, "acc": 0.25, "step": 3}
    assert all(type(v) in (int, float) for v in picker.pick(logged).values())


def test_picker_renames_and_chooses():
    assert MetricPicker("loss", "x").pick({"loss": 1.0, "acc": 2.0}) == {"loss": 1.0}
    assert MetricPicker(["loss", "acc"], "x").pick({"loss": 1.0, "acc": 2.0, "z": 3}) == {"loss": 1.0, "acc": 2.0}
    assert MetricPicker({"val": "val/loss"}, "x").pick({"val/loss": torch.tensor(2.0)}) == {"val": 2.0}


def test_picker_names_what_was_logged_when_a_metric_is_missing():
    picker = MetricPicker(["val_los"], "lightning.ReportCallback")
    with pytest.raises(ConfigError, match=r"lightning.ReportCallback\(metrics=...\): metric 'val_los' was not "
                                          r"logged; the framework logged: train_loss, val_loss"):
        picker.pick({"val_loss": 1.0, "train_loss": 2.0})
    with pytest.raises(ConfigError, match="'hist' is not a number"):
        MetricPicker(["hist"], "x").pick({"hist": torch.ones(3)})


@pytest.mark.parametrize("bad, match", [(3, "expected None, a metric name"), ([], "no metric chosen"),
                                        ({"a": 1}, "must be strings")])
def test_picker_bad_argument(bad, match):
    with pytest.raises(ConfigError, match=match):
        MetricPicker(bad, "x")
