"""The Transformers bridge with a randomly initialised BERT-style model (hidden size 32, built from its config:
no download) trained by a real Trainer on synthetic token ids, on CPU, in real worker processes."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from integration_helpers import assert_missing_library_error

pytest.importorskip("transformers")
import torch  # noqa: E402
import transformers  # noqa: E402
from accelerate.state import GradientState  # noqa: E402
from transformers.trainer_utils import BestRun, HPSearchBackend, SchedulerType  # noqa: E402

import tunesmith as ts  # noqa: E402
from tunesmith.integrations.transformers import (  # noqa: E402
    ReportCallback,
    _pickled,
    _trial_trainer,
    hyperparameter_search,
    resume_path,
)

STEPS_PER_EPOCH = 4  # 32 examples, batches of 8


class Tokens(torch.utils.data.Dataset):
    """Sequences of 8 token ids; the label is whether token 5 occurs (learnable, and quick)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 20, (n, 8), generator=g)
        self.labels = (self.ids == 5).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}


def model_init(trial=None):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=20, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=37, max_position_embeddings=16, num_labels=2)
    return transformers.BertForSequenceClassification(config)


def make_trainer(epochs=2, lr=1e-3, callbacks=(), output_dir="trainer_output", eval_dataset=None, **arguments):
    args = transformers.TrainingArguments(**{
        "output_dir": output_dir, "num_train_epochs": epochs, "learning_rate": lr, "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 16, "eval_strategy": "epoch", "save_strategy": "epoch",
        "logging_strategy": "no", "report_to": "none", "use_cpu": True, "disable_tqdm": True, "seed": 0,
        "dataloader_num_workers": 0, **arguments})
    return transformers.Trainer(model_init=model_init, args=args, train_dataset=Tokens(32, 0),
                                eval_dataset=Tokens(16, 1) if eval_dataset is None else eval_dataset,
                                callbacks=list(callbacks))


class Notes(transformers.TrainerCallback):
    def __init__(self, fail_at_epoch=None):
        self.first_step = None
        self.fail_at_epoch = fail_at_epoch

    def on_step_begin(self, args, state, control, **kwargs):
        if self.first_step is None:
            self.first_step = state.global_step

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.fail_at_epoch is not None and round(state.epoch or 0) == self.fail_at_epoch:
            raise RuntimeError("injected failure")


def note(name, **kwargs):
    with open(os.path.join(os.environ["TUNESMITH_ORIG_WORKING_DIR"], f"{name}.json"), "w") as f:
        json.dump(kwargs, f)


def train(config):
    path = resume_path()
    notes = Notes(config.get("fail_at_epoch") if path is None else None)
    trainer = make_trainer(config.get("epochs", 2), config["lr"],
                           [ReportCallback(config.get("metrics")), notes])
    trainer.train(resume_from_checkpoint=path)
    note(f"train_{ts.get_trial_id()}_{'resumed' if path else 'fresh'}", first_step=notes.first_step,
         global_step=trainer.state.global_step, should_stop=ts.should_stop())


def test_eval_metrics_and_checkpoints_arrive_in_the_store():
    result = ts.run(train, space={"lr": 1e-3}, metric="eval_loss", mode="min", verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    history = result.history(trial.id)
    assert [r["training_iteration"] for r in history] == [1, 2]
    assert [r["epoch"] for r in history] == [1.0, 2.0]
    assert all(isinstance(r["eval_loss"], float) for r in history)
    assert os.path.isfile(os.path.join(trial.checkpoint.as_dir(), "trainer_state.json"))
    assert json.load(open(os.path.join(trial.checkpoint.as_dir(), "trainer_state.json")))["global_step"] == 8


def test_a_stop_ends_training_within_one_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ts.run(train, space={"lr": 1e-3, "epochs": 20}, stop={"training_iteration": 1}, metric="eval_loss",
                    mode="min", verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert [r["training_iteration"] for r in result.history(trial.id)] == [1]
    done = json.loads((tmp_path / f"train_{trial.id}_fresh.json").read_text())
    assert done["should_stop"] is True
    assert done["global_step"] == STEPS_PER_EPOCH  # train() returned after its first epoch (of 20)


def test_a_retry_continues_from_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ts.run(train, space={"lr": 1e-3, "epochs": 3, "fail_at_epoch": 2}, max_failures=1, metric="eval_loss",
                    mode="min", verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert trial.num_failures == 1
    assert [r["epoch"] for r in result.history(trial.id)] == [1.0, 2.0, 3.0]
    resumed = json.loads((tmp_path / f"train_{trial.id}_resumed.json").read_text())
    assert resumed["first_step"] == 2 * STEPS_PER_EPOCH  # the Trainer resumed after epoch 2, not from step 0
    assert resumed["global_step"] == 3 * STEPS_PER_EPOCH


def test_a_metric_never_logged_is_one_clear_error():
    result = ts.run(train, space={"lr": 1e-3, "metrics": ["eval_los"]}, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.ERROR
    assert "transformers.ReportCallback(metrics=...): metric 'eval_los' was not logged; the framework logged: " \
           "epoch, eval_loss, eval_runtime" in trial.error


def test_hyperparameter_search_returns_the_best_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = make_trainer(epochs=1)
    best = hyperparameter_search(trainer, {"learning_rate": ts.grid([1e-6, 3e-3])}, n_trials=1, verbose=0)
    assert isinstance(best, BestRun)
    summary = best.run_summary
    assert isinstance(summary, ts.ResultSet) and len(summary.trials) == 2
    objectives = {t.config["learning_rate"]: t.last_result["objective"] for t in summary.trials}
    assert best.objective == min(objectives.values())
    assert best.hyperparameters == {"learning_rate": min(objectives, key=objectives.get)}
    for t in summary.trials:  # each trial trained with its own learning rate (from TrainingArguments)
        assert t.last_result["objective"] == t.last_result["eval_loss"]
        assert t.checkpoint is not None
    assert objectives[1e-6] != objectives[3e-3]
    assert trainer.model is not None  # the caller's trainer is left as it was


class Rates(transformers.TrainerCallback):
    """Trains one step: the optimizer's hyperparameters before it and after it (the scheduler stepped), and its
    Adam moments when training starts."""

    def __init__(self):
        self.lr, self.weight_decay, self.moments = [], [], None

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.moments = [s["exp_avg"].clone() for s in optimizer.state.values()]

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lr.append(optimizer.param_groups[0]["lr"])
        self.weight_decay.append(optimizer.param_groups[0]["weight_decay"])

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.lr.append(optimizer.param_groups[0]["lr"])
        control.should_training_stop = True
        return control


def test_a_trial_restored_after_an_exploit_trains_with_its_configs_optimizer_hyperparameters(tmp_path):
    """A PBT exploit: the trial resumes from the source's checkpoint with a new learning rate and weight decay.
    Transformers' resume restores the source's optimizer and scheduler, their rates included; the trial's copy of
    the Trainer applies its own over them (a scheduled rate keeps its progress, scaled), Adam's moments stay."""
    # the copies as the search makes them (before any training here, as a script that only searches)
    settings = {"epochs": 3, "lr": 5e-3, "eval_strategy": "no", "save_strategy": "steps", "save_steps": 1}
    blobs = {(schedule, copy): _pickled(make_trainer(lr_scheduler_type=schedule, callbacks=[Rates()], **settings))
             for schedule in ("constant", "linear") for copy in ("exploited", "retried")}
    steps = 3 * STEPS_PER_EPOCH  # the linear schedule's length: the rate after step n is (1 - n/12) of the base
    try:
        for schedule in ("constant", "linear"):
            left = (lambda n: 1.0) if schedule == "constant" else (lambda n: 1 - n / steps)
            source = make_trainer(output_dir=str(tmp_path / schedule), lr_scheduler_type=schedule, callbacks=[Rates()],
                                  **settings)
            source.train()  # one step and its checkpoint, as a trial PBT exploits
            saved = [s["exp_avg"].clone() for s in source.optimizer.state.values()]
            folder = str(tmp_path / schedule / "checkpoint-1")

            trainer = _trial_trainer(blobs[schedule, "exploited"], {"learning_rate": 3e-3, "weight_decay": 0.1},
                                     str(tmp_path / schedule / "exploited"))
            trainer.train(resume_from_checkpoint=folder)
            rates = next(c for c in trainer.callback_handler.callbacks if isinstance(c, Rates))
            assert rates.lr == pytest.approx([3e-3 * left(1), 3e-3 * left(2)]), schedule  # at step 2, after it
            assert rates.weight_decay == [0.1]
            for restored, before in zip(rates.moments, saved, strict=True):
                torch.testing.assert_close(restored, before)
            assert trainer.state.global_step == 2

            retried = _trial_trainer(blobs[schedule, "retried"], {}, str(tmp_path / schedule / "retried"))
            retried.train(resume_from_checkpoint=folder)  # the source's config: its rates, as saved
            rates = next(c for c in retried.callback_handler.callbacks if isinstance(c, Rates))
            assert rates.lr == pytest.approx([5e-3 * left(1), 5e-3 * left(2)]) and rates.weight_decay == [0.0]
    finally:
        GradientState._reset_state()  # for the tests that pickle a Trainer after this one


def test_hyperparameter_search_after_a_train_in_the_same_process(tmp_path, monkeypatch):
    """A script that trains once, then searches: Accelerate's shared GradientState then holds weak references,
    which no Trainer's Accelerator pickles; the copy sent to the trials leaves the Accelerator out (each trial
    makes its own)."""
    monkeypatch.chdir(tmp_path)
    try:
        make_trainer(epochs=1, output_dir=str(tmp_path / "first")).train()
        trainer = make_trainer(epochs=1)
        accelerator = trainer.accelerator
        best = hyperparameter_search(trainer, {"learning_rate": ts.grid([1e-3])}, n_trials=1, verbose=0)
        (trial,) = best.run_summary.trials
        assert trial.status == ts.TrialStatus.TERMINATED and trial.last_result["objective"] == best.objective
        assert trainer.accelerator is accelerator  # the caller's trainer is left as it was
    finally:
        GradientState._reset_state()


def test_hyperparameter_search_needs_model_init():
    trainer = make_trainer()
    trainer.model_init = None
    with pytest.raises(ts.ConfigError, match="needs a model_init"):
        hyperparameter_search(trainer, {"learning_rate": ts.uniform(0, 1)}, n_trials=1)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_trials": 0}, r"hyperparameter_search\(n_trials=\.\.\.\): expected a positive number of trials.*got 0"),
    ({"hp_space": lambda trial: {}}, r"hyperparameter_search\(hp_space=\.\.\.\): Transformers' .*pass a tunesmith "
                                     r"search space as space="),
    ({"hp_name": lambda trial: "x"}, r"hyperparameter_search\(hp_name=\.\.\.\): Transformers' .*"),
    ({"backend": HPSearchBackend.WANDB}, r"hyperparameter_search\(backend='wandb'\): Transformers' search backends"),
    ({"backend": "optuna"}, r"hyperparameter_search\(backend='optuna'\): Transformers' search backends do not apply.*"
                            r"'local', 'ray'"),
])
def test_transformers_own_arguments_and_a_bad_n_trials_are_refused_by_their_names(kwargs, match):
    """A Transformers user switching keeps ``Trainer.hyperparameter_search``'s arguments: they reached ``ts.run``
    ('run() got an unexpected keyword argument 'hp_space'', 'backend must be 'local', 'ray'...', 'num_samples must
    be a positive integer')."""
    with pytest.raises(ts.ConfigError, match=match):
        hyperparameter_search(make_trainer(), {"learning_rate": ts.uniform(1e-4, 1e-3)}, **{"n_trials": 1, **kwargs})


def test_importing_without_transformers_says_which_extra():
    assert_missing_library_error("transformers", "transformers", "transformers")


def test_a_trials_training_arguments_take_the_configs_values_as_their_fields_accept_them(tmp_path):
    """A float given to a field declared ``float`` whose default is an int is set as given (``warmup_steps=0.5`` is
    half the steps in Transformers 5, not 0); an int-only field takes a whole float or numpy integer as an int; a
    string for an enum field becomes the enum, as ``TrainingArguments`` makes it."""
    config = {"warmup_steps": 0.5, "save_steps": 0.25, "logging_steps": 0.1, "per_device_train_batch_size": 16.0,
              "gradient_accumulation_steps": np.int64(2), "save_total_limit": 3.0, "lr_scheduler_type": "cosine"}
    trainer = _trial_trainer(_pickled(make_trainer()), config, str(tmp_path / "out"))
    args = trainer.args
    assert (args.warmup_steps, args.save_steps, args.logging_steps) == (0.5, 0.25, 0.1)
    assert args.get_warmup_steps(12) == 6
    for key, value in (("per_device_train_batch_size", 16), ("gradient_accumulation_steps", 2),
                       ("save_total_limit", 3)):
        assert getattr(args, key) == value and type(getattr(args, key)) is int, key
    assert trainer._train_batch_size == 16
    assert args.lr_scheduler_type is SchedulerType.COSINE


def test_a_config_value_that_a_cast_would_change_is_refused(tmp_path):
    blob = _pickled(make_trainer())
    for key, value, expected in (("per_device_train_batch_size", 2.5, "int"), ("use_cpu", "yes", "bool"),
                                 ("lr_scheduler_type", "sometimes", "SchedulerType")):
        with pytest.raises(ts.ConfigError, match=rf"{key}.*{value!r}.*{expected}"):
            _trial_trainer(blob, {key: value}, str(tmp_path / "out"))


def train_on_two_sets(config):
    trainer = make_trainer(config.get("epochs", 2), config["lr"], [ReportCallback()],
                           eval_dataset={"dev": Tokens(16, 1), "test": Tokens(16, 2)})
    trainer.train(resume_from_checkpoint=resume_path())
    note(f"train_{ts.get_trial_id()}", global_step=trainer.state.global_step)


def test_eval_datasets_in_a_dict_make_one_report_per_evaluation():
    """Transformers evaluates each set of an ``eval_dataset`` dict in turn, one ``on_evaluate`` each: the callback
    reports them as one result (both sets' metrics) with the checkpoint of that step."""
    result = ts.run(train_on_two_sets, space={"lr": 1e-3}, metric="eval_test_loss", mode="min", verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    history = result.history(trial.id)
    assert [r["training_iteration"] for r in history] == [1, 2]
    assert [r["epoch"] for r in history] == [1.0, 2.0]
    for r in history:
        assert isinstance(r["eval_dev_loss"], float) and isinstance(r["eval_test_loss"], float)
        assert r["eval_dev_loss"] != r["eval_test_loss"]
    assert trial.metrics["eval_test_loss"] == history[-1]["eval_test_loss"]
    assert json.load(open(os.path.join(trial.checkpoint.as_dir(), "trainer_state.json")))["global_step"] == 8


def test_a_stop_with_eval_datasets_in_a_dict_ends_training_at_that_evaluation(tmp_path):
    result = ts.run(train_on_two_sets, space={"lr": 1e-3, "epochs": 20}, stop={"training_iteration": 1},
                    metric="eval_test_loss", mode="min", verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    (only,) = result.history(trial.id)
    assert "eval_dev_loss" in only and "eval_test_loss" in only
    assert json.loads((tmp_path / f"train_{trial.id}.json").read_text())["global_step"] == STEPS_PER_EPOCH


def test_hyperparameter_search_with_eval_datasets_in_a_dict():
    """compute_objective sees every set's metrics, at each evaluation and at the one after training (none
    during it with eval_strategy="no")."""
    sets = {"dev": Tokens(16, 1), "test": Tokens(16, 2)}
    for strategy, epochs in (("epoch", [1.0, 2.0]), ("no", [2.0])):
        trainer = make_trainer(epochs=2, eval_dataset=sets, eval_strategy=strategy)
        best = hyperparameter_search(trainer, {"learning_rate": ts.grid([1e-3])}, n_trials=1, name=strategy,
                                     compute_objective=lambda m: m["eval_dev_loss"] + 2 * m["eval_test_loss"],
                                     verbose=0)
        (trial,) = best.run_summary.trials
        assert trial.status == ts.TrialStatus.TERMINATED, trial.error
        history = best.run_summary.history(trial.id)
        assert [r["epoch"] for r in history] == epochs, strategy
        for r in history:
            assert r["objective"] == pytest.approx(r["eval_dev_loss"] + 2 * r["eval_test_loss"])
        assert best.objective == history[-1]["objective"]


def test_a_scheduler_without_evaluations_during_training_is_warned_of(caplog):
    """``eval_strategy="no"``: each trial reports once, the evaluation after training, so ASHA can stop none
    early; nothing said so (training losses are not reported in its place: results without ``objective``
    would be compared with ones that have it)."""
    trainer = make_trainer(epochs=2, eval_strategy="no", save_strategy="no")
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        best = hyperparameter_search(trainer, {"learning_rate": ts.grid([1e-3])}, n_trials=1, verbose=0,
                                     scheduler=ts.ASHA(max_t=2, grace_period=1), name="no-eval")
    assert [r["epoch"] for r in best.run_summary.history(best.run_summary.trials[0].id)] == [2.0]
    assert ("hyperparameter_search: the Trainer's eval_strategy is 'no': each trial reports once, after training, "
            "so scheduler=ASHA cannot stop or change a trial early; set eval_strategy='epoch' or 'steps' (and "
            "save_strategy like it)") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        hyperparameter_search(make_trainer(epochs=1, eval_strategy="no", save_strategy="no"),
                              {"learning_rate": ts.grid([1e-3])}, n_trials=1, verbose=0, name="no-eval-fifo")
    assert "eval_strategy" not in caplog.text  # no scheduler: nothing to warn of


def test_hyperparameter_search_when_every_trial_fails_gives_the_first_error():
    trainer = make_trainer(epochs=1)
    with pytest.raises(ts.TrialError) as raised:
        hyperparameter_search(trainer, {"learning_rate": ts.grid([1e-3, 2e-3])}, n_trials=1, direction="maximize",
                              compute_objective=lambda m: m["eval_accuracy"], verbose=0)  # no compute_metrics
    message = str(raised.value)
    assert "every trial failed (2 of 2)" in message
    assert "KeyError: 'eval_accuracy'" in message


class FailOnce(transformers.TrainerCallback):
    """Raises once, at the start of epoch ``at_epoch`` of the first attempt (a marker file beside the test says it
    did), and notes the step each attempt starts training at."""

    def __init__(self, at_epoch):
        self.at_epoch = at_epoch
        self.noted = False

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.noted:
            self.noted = True
            note(f"start_{ts.get_trial_id()}_{'resumed' if ts.get_checkpoint() else 'fresh'}",
                 first_step=state.global_step)

    def on_epoch_begin(self, args, state, control, **kwargs):
        marker = os.path.join(os.environ["TUNESMITH_ORIG_WORKING_DIR"], f"failed_{ts.get_trial_id()}")
        if round(state.epoch or 0) == self.at_epoch and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("injected failure")


class BestAtEnd(transformers.TrainerCallback):
    """Notes, when training ends (after the Trainer loaded its best model), the checkpoint it loaded it from."""

    def on_train_end(self, args, state, control, **kwargs):
        best = state.best_model_checkpoint
        note(f"best_{ts.get_trial_id()}", best=best and os.path.basename(best),
             existed=bool(best) and os.path.isdir(best))


def _trainer_checkpoints(result, trial):
    """The checkpoint folders a trial left: (the Trainer's under trainer_output, tunesmith's under checkpoints)."""
    folder = os.path.join(result.path, "trials", f"trial_{trial.id:05d}")
    listed = [sorted(n for n in os.listdir(os.path.join(folder, sub)) if n.startswith("checkpoint"))
              for sub in ("trainer_output", "checkpoints")]
    return listed[0], listed[1]


def test_hyperparameter_search_with_keep_1_leaves_one_copy_of_one_checkpoint(tmp_path):
    """keep= is the retention rule: each Trainer checkpoint-N, once copied into tunesmith's checkpoint, is removed
    from trainer_output (which kept every one of them beside tunesmith's copies), and the retry still resumes from
    tunesmith's copy of the latest."""
    trainer = make_trainer(epochs=4, callbacks=[FailOnce(at_epoch=2)])
    best = hyperparameter_search(trainer, {"learning_rate": ts.grid([1e-3])}, n_trials=1, keep=1, max_failures=1,
                                 verbose=0)
    (trial,) = best.run_summary.trials
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert trial.num_failures == 1
    assert [r["epoch"] for r in best.run_summary.history(trial.id)] == [1.0, 2.0, 3.0, 4.0]
    resumed = json.loads((tmp_path / f"start_{trial.id}_resumed.json").read_text())
    assert resumed["first_step"] == 2 * STEPS_PER_EPOCH  # from tunesmith's copy of checkpoint-8
    assert _trainer_checkpoints(best.run_summary, trial) == ([], ["checkpoint_000004"])
    assert json.load(open(os.path.join(trial.checkpoint.as_dir(), "trainer_state.json")))["global_step"] == 16


def test_hyperparameter_search_keeps_the_trainers_best_checkpoint_until_it_loaded_it(tmp_path):
    """load_best_model_at_end: the Trainer's folder of the best checkpoint stays until training ended (the Trainer
    loads the best model from it), across a retry, then goes too; the others go as they are copied. A user's
    save_total_limit changes nothing on the disk: keep= rules."""
    trainer = make_trainer(epochs=3, callbacks=[BestAtEnd(), FailOnce(at_epoch=2)], load_best_model_at_end=True,
                           metric_for_best_model="eval_loss", greater_is_better=True, save_total_limit=2)
    best = hyperparameter_search(trainer, {"learning_rate": ts.grid([1e-3])}, n_trials=1, max_failures=1, verbose=0)
    (trial,) = best.run_summary.trials
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert trial.num_failures == 1  # the retry resumed from step 8, the best being step 4's
    # greater_is_better on a falling loss: the best is the first evaluation's, the oldest folder
    assert json.loads((tmp_path / f"best_{trial.id}.json").read_text()) == {
        "best": f"checkpoint-{STEPS_PER_EPOCH}", "existed": True}
    assert _trainer_checkpoints(best.run_summary, trial) == (
        [], ["checkpoint_000001", "checkpoint_000002", "checkpoint_000003"])


def test_pbt_through_hyperparameter_search_with_keep_1_restores_from_tunesmiths_copies():
    """PBT exploits restore from the source trial's tunesmith checkpoint; the Trainer's own folders are gone."""
    trainer = make_trainer(epochs=4)
    pbt = ts.PBT(perturbation_interval=1, hyperparam_mutations={"learning_rate": [1e-4, 3e-3]},
                 quantile_fraction=0.5, resample_probability=1.0)
    best = hyperparameter_search(trainer, {"learning_rate": ts.grid([1e-6, 3e-3])}, n_trials=1, keep=1,
                                 scheduler=pbt, seed=0, verbose=0)
    summary = best.run_summary
    for trial in summary.trials:
        assert trial.status == ts.TrialStatus.TERMINATED, trial.error
        assert [r["training_iteration"] for r in summary.history(trial.id)][-1] == 4
        trainer_side, ours = _trainer_checkpoints(summary, trial)
        assert trainer_side == [] and len(ours) == 1
