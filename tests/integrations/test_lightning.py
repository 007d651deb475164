"""The Lightning bridge with a real 2-layer MLP trained by a real Trainer on CPU, in real worker processes."""

from __future__ import annotations

import json
import os

import pytest
from integration_helpers import assert_missing_library_error

pytest.importorskip("lightning")
import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import tunesmith as ts  # noqa: E402
from tunesmith.integrations.lightning import ReportCallback, resume_path  # noqa: E402


class MLP(pl.LightningModule):
    def __init__(self, lr: float = 0.05, fail_at_epoch: int | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        self.lr = lr
        self.fail_at_epoch = fail_at_epoch

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))
        self.log("epoch_seen", float(self.current_epoch))

    def on_train_epoch_start(self):
        if self.current_epoch == self.fail_at_epoch:
            raise RuntimeError("injected failure")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=g)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(96, 1, generator=g)
    return (DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16),
            DataLoader(TensorDataset(x[64:], y[64:]), batch_size=32))


def note(name, **kwargs):
    with open(os.path.join(os.environ["TUNESMITH_ORIG_WORKING_DIR"], f"{name}.json"), "w") as f:
        json.dump(kwargs, f)


def train(config):
    ckpt_path = resume_path()
    fail = config.get("fail_at_epoch") if ckpt_path is None else None  # the retry runs clean
    trainer = pl.Trainer(max_epochs=config.get("epochs", 3), accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[ReportCallback(config.get("metrics"), checkpoint=config.get("ckpt", True))])
    start = {}

    class Start(pl.Callback):
        def on_train_start(self, trainer, module):
            start["step"] = trainer.global_step

    trainer.callbacks.append(Start())
    torch.manual_seed(0)  # every trial starts from the same weights: only the learning rate tells them apart
    trainer.fit(MLP(config["lr"], fail), *loaders(), ckpt_path=ckpt_path)
    note(f"fit_{ts.get_trial_id()}_{'resumed' if ckpt_path else 'fresh'}", start_step=start["step"],
         end=trainer.current_epoch, should_stop=ts.should_stop())


def test_metrics_and_checkpoints_arrive_in_the_store():
    result = ts.run(train, space={"lr": 0.05}, metric="val_loss", mode="min", verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    history = result.history(trial.id)
    assert [r["training_iteration"] for r in history] == [1, 2, 3]
    assert [r["epoch_seen"] for r in history] == [0.0, 1.0, 2.0]
    assert all(isinstance(r["val_loss"], float) and isinstance(r["train_loss"], float) for r in history[1:])
    assert history[-1]["val_loss"] < history[0]["val_loss"]  # it trained
    assert trial.checkpoint is not None
    assert os.path.isfile(os.path.join(trial.checkpoint.as_dir(), "lightning.ckpt"))


def test_a_stop_rule_ends_fit_within_one_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ts.run(train, space={"lr": 0.05, "epochs": 50}, stop={"training_iteration": 2}, metric="val_loss",
                    mode="min", verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert [r["training_iteration"] for r in result.history(trial.id)] == [1, 2]
    fit = json.loads((tmp_path / f"fit_{trial.id}_fresh.json").read_text())
    assert fit["should_stop"] is True
    assert fit["end"] == 2  # fit returned after its second epoch (of 50): no exception went through Lightning


def test_asha_stops_lightning_trials_at_a_rung(tmp_path, monkeypatch):
    """A scheduler's stop at a rung: the losers' fit ends there. One trial at a time, the good rate first: with
    two at once, a slow start of the good one let both small rates reach the rungs against each other only,
    and asynchronous halving rightly stopped neither (the one that came second was the better of the two)."""
    monkeypatch.chdir(tmp_path)
    result = ts.run(train, space={"lr": ts.grid([0.05, 1e-5, 2e-5]), "epochs": 4}, metric="val_loss", mode="min",
                    scheduler=ts.ASHA(max_t=4, grace_period=1, reduction_factor=3), max_concurrent=1, verbose=0)
    assert [t.iteration for t in result.trials] == [4, 1, 1]  # both small rates stopped at the first rung
    stopped = [t for t in result.trials if t.iteration < 4]
    for t in result.trials:
        assert t.status == ts.TrialStatus.TERMINATED, t.error
    for t in stopped:
        fit = json.loads((tmp_path / f"fit_{t.id}_fresh.json").read_text())
        assert fit["should_stop"] is True and fit["end"] == t.iteration
        assert len(result.history(t.id)) == t.iteration


def test_a_retry_continues_from_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ts.run(train, space={"lr": 0.05, "epochs": 4, "fail_at_epoch": 2}, max_failures=1, metric="val_loss",
                    mode="min", verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert trial.num_failures == 1
    history = result.history(trial.id)
    assert [r["training_iteration"] for r in history] == [1, 2, 3, 4]
    assert [r["epoch_seen"] for r in history] == [0.0, 1.0, 2.0, 3.0]
    assert not (tmp_path / f"fit_{trial.id}_fresh.json").exists()  # the first attempt raised
    resumed = json.loads((tmp_path / f"fit_{trial.id}_resumed.json").read_text())
    assert resumed["start_step"] == 8  # Lightning restored the state after 2 epochs of 4 batches, not step 0
    assert resumed["end"] == 4


def train_ddp(config):
    """``train`` as a DDP fit over the trial's two ranks (Lightning joins them instead of launching its own)."""
    ckpt_path = resume_path()  # every rank: the trial's restore point
    fail = config["fail_at_epoch"] if ckpt_path is None else None
    start = {}

    class Start(pl.Callback):
        def on_train_start(self, trainer, module):
            start["step"] = trainer.global_step

    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=config["epochs"], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[ReportCallback(["val_loss", "epoch_seen"]), Start()])
    torch.manual_seed(0)
    trainer.fit(MLP(config["lr"], fail), *loaders(), ckpt_path=ckpt_path)
    note(f"ddp_{ts.get_trial_id()}_rank{trainer.global_rank}", start_step=start["step"], world=trainer.world_size,
         resumed=ckpt_path is not None)


def test_a_ddp_trial_over_two_ranks_retries_every_rank_from_rank_0s_checkpoint(tmp_path):
    """ranks=2 with strategy="ddp": rank 0 reports and saves (Lightning's save_checkpoint on every rank), both ranks
    fail at epoch 2, and the retry resumes both from the trial's one kept checkpoint (keep=1)."""
    result = ts.run(train_ddp, space={"lr": 0.05, "epochs": 4, "fail_at_epoch": 2}, metric="val_loss", mode="min",
                    ranks=2, resources={"cpu": 2}, max_failures=1, keep=1, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert trial.num_failures == 1
    assert [r["epoch_seen"] for r in result.history(trial.id)] == [0.0, 1.0, 2.0, 3.0]  # rank 0's, once each
    for rank in (0, 1):
        done = json.loads((tmp_path / f"ddp_{trial.id}_rank{rank}.json").read_text())
        # 2 epochs of 2 batches a rank (64 examples, batches of 16, split over 2 ranks)
        assert done == {"start_step": 4, "world": 2, "resumed": True}, rank
    checkpoints = os.path.join(result.path, "trials", f"trial_{trial.id:05d}", "checkpoints")
    assert os.listdir(checkpoints) == ["checkpoint_000004"]


class Momentum(MLP):
    """SGD with momentum (restored state to check), optionally halving its learning rate each epoch."""

    def __init__(self, lr: float, momentum: float = 0.9, step_lr: bool = False) -> None:
        super().__init__(lr)
        self.momentum = momentum
        self.step_lr = step_lr

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)
        if not self.step_lr:
            return opt
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}


class Rates(pl.Callback):
    """The optimizer's hyperparameters at each epoch's start, and its momentum buffers when training starts."""

    def __init__(self) -> None:
        self.lr, self.momentum, self.buffers = [], [], None

    def on_train_start(self, trainer, module):
        state = trainer.optimizers[0].state
        self.buffers = [state[p]["momentum_buffer"].clone() for p in module.parameters() if p in state]

    def on_train_epoch_start(self, trainer, module):
        group = trainer.optimizers[0].param_groups[0]
        self.lr.append(group["lr"])
        self.momentum.append(group["momentum"])


class Unreported(ReportCallback):
    """The bridge's callback outside a trial, where there is no session to report to: its optimizer restore
    only."""

    def _report(self, trainer):
        pass


def fit_by_hand(module, epochs, ckpt_path=None):
    """``trainer.fit`` outside a trial with the bridge's callback (which does not report there)."""
    rates = Rates()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=[Unreported(), rates])
    trainer.fit(module, *loaders(), ckpt_path=ckpt_path)
    return trainer, rates


def test_a_restored_optimizer_takes_the_hyperparameters_the_new_config_changed(tmp_path):
    """A PBT exploit restores the source trial's checkpoint into a module built from the exploited config:
    Lightning's restore brings back the saved learning rate and momentum; the bridge applies the new ones over
    them, and keeps the restored optimizer state (momentum buffers) and training progress."""
    torch.manual_seed(0)
    saved, _ = fit_by_hand(Momentum(0.05, momentum=0.9), 2)
    trainer_state = saved.optimizers[0].state
    buffers = [trainer_state[p]["momentum_buffer"].clone() for p in saved.lightning_module.parameters()]
    saved.save_checkpoint(tmp_path / "source.ckpt")

    trainer, rates = fit_by_hand(Momentum(0.01, momentum=0.5), 3, ckpt_path=tmp_path / "source.ckpt")
    assert rates.lr == [0.01] and rates.momentum == [0.5]  # epoch 3 only: epochs 1-2 came from the checkpoint
    for restored, before in zip(rates.buffers, buffers, strict=True):
        torch.testing.assert_close(restored, before)
    assert trainer.global_step == 12  # 8 restored + 4

    retried, rates = fit_by_hand(Momentum(0.05, momentum=0.9), 3, ckpt_path=tmp_path / "source.ckpt")
    assert rates.lr == [0.05] and rates.momentum == [0.9]  # the same config: the checkpoint's values


def test_a_scheduled_learning_rate_keeps_its_progress_scaled_by_the_new_config(tmp_path):
    """With an LR scheduler the restored rate is the scheduled one: a retry with the same config keeps it; a new
    base rate scales it (and the scheduler's base), so the schedule goes on from where it was."""
    torch.manual_seed(0)
    saved, rates = fit_by_hand(Momentum(0.04, step_lr=True), 2)
    assert rates.lr == [0.04, 0.02]
    saved.save_checkpoint(tmp_path / "source.ckpt")

    _, rates = fit_by_hand(Momentum(0.04, step_lr=True), 4, ckpt_path=tmp_path / "source.ckpt")
    assert rates.lr == [0.01, 0.005]  # a retry: the schedule as saved, not restarted at 0.04
    trainer, rates = fit_by_hand(Momentum(0.08, step_lr=True), 4, ckpt_path=tmp_path / "source.ckpt")
    assert rates.lr == pytest.approx([0.02, 0.01])  # twice the base rate: twice the scheduled rate
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == pytest.approx([0.08])


class Epochs(MLP):
    """Logs the epoch from training (aggregated over the epoch, as ``on_epoch=True`` metrics are) and from
    validation, so a report shows which epoch each of its metrics came from."""

    def training_step(self, batch, batch_idx):
        self.log("train_epoch", float(self.current_epoch), on_epoch=True, on_step=False)
        return super().training_step(batch, batch_idx)


def train_epochs(config):
    trainer = pl.Trainer(max_epochs=config["epochs"], accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[ReportCallback(config.get("metrics"))], **config["trainer"])
    train_loader, val_loader = loaders()
    trainer.fit(Epochs(), train_loader, val_loader)


@pytest.mark.parametrize("trainer", [{}, {"check_val_every_n_epoch": 2}])
def test_a_report_holds_the_training_metrics_of_its_own_epoch(trainer):
    """A validation at an epoch's end is reported with that epoch's training metrics (``on_epoch=True``), which
    Lightning computes only after the validation: they were reported one epoch late (the first report had none,
    and ``metrics=["train_loss"]`` failed as 'not logged')."""
    result = ts.run(train_epochs, space={"epochs": 4, "trainer": trainer}, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    history = result.history(trial.id)
    validated = [1, 3] if trainer else [0, 1, 2, 3]
    assert [r["epoch_seen"] for r in history] == validated
    assert [r["train_epoch"] for r in history] == validated
    result = ts.run(train_epochs, space={"epochs": 2, "trainer": trainer, "metrics": ["train_loss"]}, verbose=0)
    assert result.trials[0].status == ts.TrialStatus.TERMINATED, result.trials[0].error


def test_a_validation_within_an_epoch_is_reported_when_it_ends():
    """``val_check_interval=2`` (of 4 batches): two validations an epoch, each one report; the one at the epoch's
    end holds that epoch's training metrics."""
    result = ts.run(train_epochs, space={"epochs": 2, "trainer": {"val_check_interval": 2}}, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    history = result.history(trial.id)
    assert [r["epoch_seen"] for r in history] == [0, 0, 1, 1]
    assert [r.get("train_epoch") for r in history[1::2]] == [0, 1]


# fits that never validate, over 4 training batches an epoch (loaders()): each reports its 3 epochs
_NEVER_VALIDATES = {
    "limit_val_batches=0": (3, {"limit_val_batches": 0}),
    "every-4-epochs-of-3": (3, {"check_val_every_n_epoch": 4}),
    # validation by batches across epochs, every 20: the fit's 12 batches never get there
    "steps-past-the-fit": (3, {"check_val_every_n_epoch": None, "val_check_interval": 20}),
    # max_steps=10 ends the fit in its third epoch (reported at its end too); the fourth would have validated
    "max_steps-before-the-epoch": (10, {"check_val_every_n_epoch": 4, "max_steps": 10}),
    # no epoch limit: max_steps alone ends the fit
    "max_epochs=-1": (-1, {"check_val_every_n_epoch": 4, "max_steps": 10}),
}


@pytest.mark.parametrize("epochs,trainer", _NEVER_VALIDATES.values(), ids=_NEVER_VALIDATES.keys())
def test_a_fit_that_never_validates_reports_each_training_epoch(epochs, trainer):
    """``limit_val_batches=0``, or validation configured but the fit ends (``max_epochs``, ``max_steps``) before it
    comes: no validation end ever came, and the trial ended with no result, silently."""
    result = ts.run(train_epochs, space={"epochs": epochs, "trainer": trainer}, metric="train_loss", mode="min",
                    verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    history = result.history(trial.id)
    assert [r["train_epoch"] for r in history] == [0, 1, 2]
    assert all("val_loss" not in r for r in history)
    assert trial.checkpoint is not None


def test_a_fit_validating_by_steps_across_epochs_reports_each_validation():
    """``check_val_every_n_epoch=None``: a validation every 6 batches across the 4-batch epochs (after the 6th and the
    12th): those are reported, not each training epoch."""
    result = ts.run(train_epochs, space={"epochs": 3, "trainer": {"check_val_every_n_epoch": None,
                                                                  "val_check_interval": 6}}, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert [r["epoch_seen"] for r in result.history(trial.id)] == [1, 2]


@pytest.mark.parametrize("epochs,trainer,why", [
    (3, {"check_val_every_n_epoch": 5}, "no epoch of this fit validates (check_val_every_n_epoch=5, max_epochs=3)"),
    (-1, {"check_val_every_n_epoch": 4, "max_steps": 10},
     "this fit ends at max_steps=10, before its first validation (check_val_every_n_epoch=4, val_check_interval=1.0)"),
], ids=["max_epochs", "max_steps"])
def test_a_validation_metric_the_fit_ends_before_is_an_error_that_says_why(epochs, trainer, why):
    result = ts.run(train_epochs, space={"epochs": epochs, "trainer": trainer, "metrics": ["val_loss"]}, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.ERROR
    assert "metric 'val_loss' was not logged; the framework logged: train_epoch, train_loss" in trial.error
    assert why in trial.error, trial.error
    assert result.history(trial.id) == []


def test_a_metric_never_logged_is_one_clear_error():
    result = ts.run(train, space={"lr": 0.05, "metrics": ["val_los"]}, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.ERROR
    assert ("lightning.ReportCallback(metrics=...): metric 'val_los' was not logged; the framework logged: "
            "epoch_seen, train_loss, val_loss") in trial.error
    assert result.history(trial.id) == []


def test_resume_path_refuses_a_checkpoint_it_did_not_save():
    def foreign(config):
        if ts.get_checkpoint() is None:
            ts.report({"x": 1}, checkpoint=ts.Checkpoint.from_state({"a": 1}))
            raise RuntimeError("retry me")
        resume_path()

    result = ts.run(foreign, max_failures=1, verbose=0)
    assert "holds no lightning.ckpt" in result.trials[0].error


def test_resume_path_refuses_a_checkpoint_another_key_signed(tmp_path):
    """trainer.fit(ckpt_path=...) unpickles the file: resume_path hands it over only when this user's key
    signed the checkpoint (here the retry runs under another key, as a folder from someone else would)."""
    def foreign_key(config):
        if ts.get_checkpoint() is None:
            folder = tmp_path / f"ckpt_{os.getpid()}"
            folder.mkdir()
            (folder / "lightning.ckpt").write_bytes(b"not for this user")
            ts.report({"x": 1}, checkpoint=ts.Checkpoint.from_dir(folder))
            raise RuntimeError("retry me")
        os.environ["TUNESMITH_KEY"] = "someone-elses-key-0123456789"
        try:
            resume_path()
        finally:
            del os.environ["TUNESMITH_KEY"]

    result = ts.run(foreign_key, max_failures=1, verbose=0)
    assert "refusing to load the checkpoint" in result.trials[0].error
    assert "signed by another key" in result.trials[0].error


def test_resume_path_is_none_on_a_fresh_start():
    def fresh(config):
        ts.report({"none": resume_path() is None})

    result = ts.run(fresh, verbose=0)
    assert result.trials[0].last_result["none"] is True


def test_importing_without_lightning_says_which_extra():
    assert_missing_library_error("lightning", "lightning", "lightning")
