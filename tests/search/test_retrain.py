"""Retraining the best trials on training + validation images: their own initial weights, one
test, final runs that export then prefers."""

import json

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
