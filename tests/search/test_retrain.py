"""Retraining the best trials on training + validation images: their own initial weights, one
test, final runs that export then prefers."""

import json

import pytest
import torch

from search.campaign import open_store
from search.cli import main


def test_a_retrained_model_starts_from_its_trials_initial_weights(tiny, runs, monkeypatch):
    """Same seed, same start: the retrain builds each model from its trial's seed."""
    import search.retrain
    import search.train

    initial = {"trial": [], "final": []}

    def spy(kind, real):
        def train(model, *args, **kwargs):
            initial[kind].append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return real(model, *args, **kwargs)

        return train

    monkeypatch.setattr(search.train, "train", spy("trial", search.train.train))
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "1", "-q"]) == 0
    monkeypatch.setattr(search.retrain, "train", spy("final", search.retrain.train))
    assert main(["retrain", "tiny", "--runs", str(runs), "--top", "1", "--epochs", "1"]) == 0
    (trial,), (final,) = initial["trial"], initial["final"]
    assert trial.keys() == final.keys()
    assert all(torch.equal(trial[k], final[k]) for k in trial)


def test_retrain_tests_once_logs_final_runs_and_export_prefers_them(campaign_runs, tmp_path, capsys):
    assert main(["retrain", "tiny", "--runs", str(campaign_runs), "--top", "2", "--epochs", "1"]) == 0
    assert "2 final runs logged" in capsys.readouterr().out
    campaign = open_store(campaign_runs, None).require("tiny")
    finals, trials = campaign.trials("final"), campaign.trials()
    assert len(finals) == 2 and len(trials) == 2
    for final in finals:
        assert final.outcome == "ok" and final.name.startswith("final t00")
        assert 0 < final.metrics["test_acc"] <= 1 and final.metrics["test_loss"] > 0
        assert "val_acc" not in final.metrics  # validation images are training images here
        assert final.params["training.epochs"] == "1"
    for trial in trials:  # the test set is never looked at for ordinary trials
        assert "test_acc" not in trial.metrics and "test_loss" not in trial.metrics

    out = tmp_path / "bundle"
    assert main(["export", "tiny", "--runs", str(campaign_runs), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith("exported the retrained model (train + validation images) of t00")
    best = min(trials, key=lambda r: r.loss)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trial"] == best.trial
    assert metrics["run_id"] in {f.run_id for f in finals} and "test_acc" in metrics["metrics"]


# ---------------------------------------------------------------- the final stage of a campaign


def test_a_campaign_with_a_final_stage_trains_its_best_on_all_images_tests_once_and_export_takes_it(
    tiny, runs, tmp_path, capsys, monkeypatch
):
    import search.export
    from search.data import load_data

    final = ["--set", "search.final={top: 1, epochs: 1}", "--set", "data.subset=600"]
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "2", *final]) == 0
    out = capsys.readouterr().out
    campaign = open_store(runs, None).require("tiny")
    (final_run,), trials = campaign.trials("final"), campaign.trials()
    best = min(trials, key=lambda r: r.loss)
    assert final_run.trial == best.trial and final_run.outcome == "ok"
    # the whole training set, data.subset notwithstanding: training + validation images
    whole = load_data("digits", cache_dir=runs / "data")
    m = final_run.metrics
    assert round(m["images_per_second"] * m["train_seconds"]) == len(whole.x_train) + len(whole.x_val)
    assert m["train_images"] == len(whole.x_train) + len(whole.x_val)  # logged: export reads it
    assert m["epochs_done"] == 1 and 0 < m["test_acc"] <= 1
    assert f"final: {best.name}  test_acc {m['test_acc']:.4f} (1 epoch, " in out
    assert main(["status", "tiny", "--runs", str(runs)]) == 0
    assert f"final: {best.name}  test_acc {m['test_acc']:.4f} (1 epoch on training" in capsys.readouterr().out
    # the image count comes from the final run, not from loading the whole training set again
    monkeypatch.setattr(search.export, "final_data", lambda *a, **k: pytest.fail("loaded again"))
    assert main(["export", "tiny", "--runs", str(runs), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["run_id"] == final_run.run_id
    whole_images = len(whole.x_train) + len(whole.x_val)  # not the 600 of the campaign's trials
    assert f"retrained on all {whole_images:,} training and validation images of `digits`" in (
        (tmp_path / "b" / "MODEL.md").read_text()
    )


def test_final_models_train_with_the_recipe_settings_of_search_final_training(tiny, runs, capsys):
    recipe = "training: {label_smoothing: 0.1, optimizer: sgd, augmentation: {translate: 2}}"
    final = ["--set", f"search.final={{top: 1, epochs: 1, {recipe}}}", "--set", "data.subset=600"]
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "2", *final]) == 0
    said = capsys.readouterr().out
    assert 'with training.label_smoothing=0.1, training.optimizer.kind="sgd", ' in said
    campaign = open_store(runs, None).require("tiny")
    (final_run,) = campaign.trials("final")
    trial = next(r for r in campaign.trials() if r.trial == final_run.trial)
    trained = json.loads(campaign.read_text("architecture.json", final_run.run_id))["training"]
    chosen = json.loads(campaign.read_text("architecture.json", trial.run_id))["training"]
    # the given settings replace the trial's; the others (its searched lr among them) are its own
    assert trained["label_smoothing"] == 0.1 and chosen["label_smoothing"] == 0.0
    assert trained["optimizer"] == {"kind": "sgd", "momentum": 0.9, "nesterov": True}
    assert chosen["optimizer"]["kind"] == "adamw"
    assert trained["augmentation"] == {**chosen["augmentation"], "translate": 2}
    assert trained["lr"] == chosen["lr"] and trained["epochs"] == 1
    assert final_run.params["training.label_smoothing"] == "0.1"  # what the final run logged
    assert final_run.params["training.augmentation.translate"] == "2"
    # `archsearch retrain` trains with them too
    assert main(["retrain", "tiny", "--runs", str(runs), "--top", "1", "--epochs", "1"]) == 0
    again = max(open_store(runs, None).require("tiny").trials("final"), key=lambda r: r.start_time)
    assert again.run_id != final_run.run_id and again.params["training.label_smoothing"] == "0.1"


def test_a_resumed_final_stage_keeps_what_ended_and_trains_what_did_not(tiny, runs, capsys):
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "2", "-q"]) == 0
    assert main(["retrain", "tiny", "--runs", str(runs), "--top", "1", "--epochs", "1"]) == 0
    campaign = open_store(runs, None).require("tiny")
    (done,) = campaign.trials("final")
    other = next(r for r in campaign.trials() if r.trial != done.trial)
    config = json.loads(campaign.read_text("architecture.json", other.run_id))
    campaign.start_trial(other.trial, 1, config, other.vals, 0, "cpu", "final")  # its driver died here
    capsys.readouterr()
    resume = ["run", "--resume", "tiny", "--runs", str(runs), "--set", "search.final={top: 2, epochs: 1}"]
    assert main(resume) == 0
    finals = campaign.trials("final")
    assert [(r.trial, r.outcome) for r in finals if r.trial == done.trial] == [(done.trial, "ok")]
    assert sorted(r.outcome for r in finals if r.trial == other.trial) == ["killed", "ok"]
    assert len(campaign.trials()) == 2  # no trial ran again
    said = capsys.readouterr().out
    assert f"final {done.name.removeprefix('final ')}: trained before this run, kept (test_acc" in said
    assert said.count("test_acc") == 2 + 2  # the two finals: as kept or trained, then in the summary


def test_final_epochs_are_fixed_fill_the_time_left_at_the_measured_speed_or_double_the_trials():
    from types import SimpleNamespace

    from search.retrain import final_epochs

    # 4,000 training images in batches of 100 (40 steps an epoch), 3,000 test images (10 steps)
    data = SimpleNamespace(x_train=[0] * 4000, x_test=[0] * 3000)
    config = {"training": {"epochs": 2, "batch_size": 100}}
    fixed = {"top": 1, "epochs": 7, "share": 0.5}
    assert final_epochs(fixed, config, data, 100.0, 1, 0.1) == 7
    fill = {**fixed, "epochs": None}
    assert final_epochs(fill, config, data, 100.0, 1, 0.1) == 24  # (100 - 1 s of test) / 4 s an epoch
    assert final_epochs(fill, config, data, 100.0, 2, 0.1) == 12  # shared by two trials
    assert final_epochs(fill, config, data, 3.0, 1, 0.1) == 1  # at least one
    # averaged in an ensemble, each final passes over the test set twice: 2 s kept for its tests
    assert final_epochs(fill, config, data, 101.5, 1, 0.1) == 25
    assert final_epochs(fill, config, data, 101.5, 1, 0.1, passes=2) == 24
    assert final_epochs(fill, config, data, None, 1, None) == 4  # no time budget: twice the trial's


def test_a_final_stage_with_a_time_budget_plans_its_epochs_at_the_speed_measured_on_its_images_and_logs_them(
    tiny, runs, monkeypatch
):
    import search.retrain
    from search.data import load_data

    measured, planned = [], []
    real_step, real_epochs = search.retrain.measured_step, search.retrain.final_epochs

    def measured_step(config, data, dev):
        measured.append(len(data.x_train))
        return real_step(config, data, dev)

    def final_epochs(*args):
        planned.append(real_epochs(*args))
        return planned[-1]

    monkeypatch.setattr(search.retrain, "measured_step", measured_step)
    monkeypatch.setattr(search.retrain, "final_epochs", final_epochs)
    sets = ["--set", "search.final={top: 1, share: 0.5}", "--set", "data.subset=600"]
    budget = ["--trials", "2", "--time-budget", "8", "-q"]
    assert main(["run", str(tiny), "--runs", str(runs), *budget, *sets]) == 0
    (final,) = open_store(runs, None).require("tiny").trials("final")
    whole = load_data("digits", cache_dir=runs / "data")
    assert measured == [len(whole.x_train) + len(whole.x_val)]  # the final's images, not a trial's 600
    assert len(planned) == 1 and planned[0] >= 1  # from the measured step, then again after each epoch:
    epochs = int(final.metrics["epochs_done"])  # the epochs it trained are those logged
    assert epochs > 1 and final.params["training.epochs"] == str(epochs)


def test_the_epochs_planned_again_after_each_fill_the_time_left_at_the_recent_speed_less_the_test():
    import time

    from search.retrain import filling

    replan = filling(time.monotonic() + 100.0, 10.0)
    assert replan([29.0]) == 1 + 3  # after the first epoch: 3 more of 29 s in the 90 s left
    assert replan([40.0, 22.0]) == 2 + 4  # its warm-up left out: the second epoch's speed
    assert replan([40.0, 20.0, 20.0, 20.0, 20.0, 20.0, 80.0]) == 7 + 2  # the last 5 but the first: 32 s
    assert replan([200.0]) == 1  # none more fits: stop now
    assert filling(time.monotonic() - 5.0, 0.0)([1.0, 1.0]) == 2  # past its end already


def test_a_campaign_stopped_in_its_final_stage_resumes_there_and_searches_no_more(
    tiny, runs, monkeypatch, capsys
):
    import search.retrain

    real = search.retrain.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("stopped")  # Ctrl-C in the middle of the final training

    monkeypatch.setattr(search.retrain, "train", interrupted)
    final = ["--set", "search.final={top: 1, epochs: 2}"]
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "2", "-q", *final]) == 130
    campaign = open_store(runs, None).require("tiny")
    (killed,) = campaign.trials("final")
    assert killed.outcome == "killed" and len(campaign.trials()) == 2
    assert killed.params["training.epochs"] == "2"

    monkeypatch.setattr(search.retrain, "train", real)
    capsys.readouterr()
    # more trials asked for: the search had ended, so none runs; the final trains for the epochs
    # it was given, whatever the resumed settings say
    resume = [
        "run",
        "--resume",
        "tiny",
        "--runs",
        str(runs),
        "--trials",
        "4",
        "--set",
        "search.final.epochs=3",
    ]
    assert main(resume) == 0
    assert "its search had ended; its final stage resumed" in capsys.readouterr().out
    assert len(campaign.trials()) == 2
    finals = campaign.trials("final")
    assert sorted(r.outcome for r in finals) == ["killed", "ok"]
    (trained,) = [r for r in finals if r.outcome == "ok"]
    assert trained.params["training.epochs"] == "2" and trained.trial == killed.trial
