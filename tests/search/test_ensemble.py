"""Final models averaged (search.final.ensemble, retrain --ensemble): tested once, logged with its
members, reported by the summary and status, taken by export, made again only when it did not end."""

import json
import warnings

import pytest
import torch

from search.campaign import open_store
from search.cli import main

ENSEMBLE = ["--set", "search.final={top: 2, epochs: 1, ensemble: true}"]


def test_an_ensemble_is_the_log_of_its_members_mean_probability():
    from models import Ensemble

    torch.manual_seed(0)
    members = [torch.nn.Linear(5, 3) for _ in range(3)]
    x = torch.randn(8, 5)
    out = Ensemble(members)(x)
    mean = torch.stack([m(x).softmax(1) for m in members]).mean(0)
    assert torch.allclose(out.exp(), mean, atol=1e-6)
    assert torch.allclose(out.softmax(1), mean, atol=1e-6)  # it stands where logits do
    assert torch.allclose(Ensemble(members[:1])(x), members[0](x).log_softmax(1), atol=1e-6)
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])


def test_the_ensemble_needs_two_final_models():
    import yaml

    from search.space import SpaceError, parse_space
    from tests.search.conftest import TINY

    raw = yaml.safe_load(TINY)
    raw["search"]["final"] = {"top": 1, "ensemble": True}
    with pytest.raises(SpaceError, match=r"search\.final\.ensemble: .*top is 1, give it 2 or more"):
        parse_space(raw, "tiny.yaml")


def averaged_by_hand(campaign, finals, runs) -> tuple[float, torch.Tensor]:
    """The test accuracy of the finals' mean probabilities, from their logged weights, and the
    averaged probabilities of the first images."""
    from models import build_model
    from search.data import load_data

    data = load_data("digits", cache_dir=runs / "data")
    probs = 0
    for final in finals:
        config = json.loads(campaign.read_text("architecture.json", final.run_id))
        net = build_model(config["architecture"], data.input_shape, data.n_classes)
        net.load_state_dict(campaign.read_weights(final.run_id))
        with torch.no_grad():
            probs = probs + net.eval()(data.x_test).softmax(1) / len(finals)
    return (probs.argmax(1) == data.y_test).float().mean().item(), probs[:16]


def test_a_campaign_averages_its_final_models_tests_them_once_and_export_takes_the_ensemble(
    tiny, runs, tmp_path, capsys
):
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "3", *ENSEMBLE]) == 0
    said = capsys.readouterr().out
    campaign = open_store(runs, None).require("tiny")
    finals = [r for r in campaign.trials("final") if r.outcome == "ok"]
    (ensemble,) = campaign.trials("ensemble")
    assert len(finals) == 2 and ensemble.outcome == "ok"
    by_rank = sorted(finals, key=lambda f: next(r.loss for r in campaign.trials() if r.trial == f.trial))
    assert ensemble.params["members"] == ",".join(str(f.trial) for f in by_rank)  # best first
    assert ensemble.params["member_runs"] == ",".join(f.run_id for f in by_rank)
    assert ensemble.name == "ensemble " + " + ".join(f"t{f.trial:03d}" for f in by_rank)
    acc, first = averaged_by_hand(campaign, by_rank, runs)
    assert ensemble.metrics["test_acc"] == pytest.approx(acc, abs=1e-6)  # the same images right
    assert ensemble.metrics["best_member_test_acc"] == max(f.metrics["test_acc"] for f in finals)
    summary = f"{ensemble.name}: test_acc {acc:.4f} (the mean of their probabilities)"
    assert summary in said

    assert main(["status", "tiny", "--runs", str(runs)]) == 0
    assert f"{ensemble.name}: test_acc {acc:.4f} (the mean of 2 final models' probabilities)" in (
        capsys.readouterr().out
    )

    out = tmp_path / "bundle"
    assert main(["export", "tiny", "--runs", str(runs), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"exported the {ensemble.name} (the mean of its models")
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["run_id"] == ensemble.run_id
        and metrics["metrics"]["test_acc"] == ensemble.metrics["test_acc"]
    )
    config = json.loads((out / "architecture.json").read_text())
    assert [m["run_id"] for m in config["members"]] == [f.run_id for f in by_rank]
    card = (out / "MODEL.md").read_text()
    assert "## Members" in card and all(f"### {f.name.removeprefix('final ')}" in card for f in by_rank)
    # the bundle's TorchScript model gives the averaged probabilities on [0, 1] images
    from search.data import load_data

    data = load_data("digits", cache_dir=runs / "data")
    images = data.x_test[:16] * data.std[0] + data.mean[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice
        scripted = torch.jit.load(str(out / "model.pt"))
    with torch.no_grad():
        assert torch.allclose(scripted(images).softmax(1), first, atol=1e-4)

    # one model of it, by its trial: that trial's retrained model
    single = tmp_path / "single"
    assert (
        main(["export", "tiny", "--runs", str(runs), "--out", str(single), "--trial", str(by_rank[1].trial)])
        == 0
    )
    assert json.loads((single / "metrics.json").read_text())["run_id"] == by_rank[1].run_id


def test_a_resumed_final_stage_keeps_its_ensemble_and_makes_one_that_did_not_end(tiny, runs, capsys):
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "3", "-q", *ENSEMBLE]) == 0
    campaign = open_store(runs, None).require("tiny")
    (first,) = campaign.trials("ensemble")
    resume = ["run", "--resume", "tiny", "--runs", str(runs), *ENSEMBLE]
    capsys.readouterr()
    assert main(resume) == 0
    assert f"{first.name}: tested before this run, kept (test_acc {first.metrics['test_acc']:.4f})" in (
        capsys.readouterr().out
    )
    assert [r.run_id for r in campaign.trials("ensemble")] == [first.run_id]
    assert len(campaign.trials("final")) == 2 and len(campaign.trials()) == 3  # nothing ran again

    # a driver that died while it tested the ensemble: marked killed, made again
    campaign.client.set_tag(first.run_id, "archsearch.outcome", "running")
    campaign.client.update_run(first.run_id, status="RUNNING")
    assert main(resume) == 0
    runs_now = campaign.trials("ensemble")
    assert [r.outcome for r in runs_now] == ["killed", "ok"]
    assert runs_now[1].metrics["test_acc"] == first.metrics["test_acc"]  # the same models, tested again
    assert len(campaign.trials("final")) == 2


def test_an_interrupted_ensemble_test_is_recorded_killed_and_resumes(tiny, runs, monkeypatch):
    import search.ensemble

    real = search.ensemble.validate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("stopped")

    monkeypatch.setattr(search.ensemble, "validate", interrupted)
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "3", "-q", *ENSEMBLE]) == 130
    campaign = open_store(runs, None).require("tiny")
    assert [r.outcome for r in campaign.trials("ensemble")] == ["killed"]
    assert [r.outcome for r in campaign.trials("final")] == ["ok", "ok"]
    monkeypatch.setattr(search.ensemble, "validate", real)
    assert main(["run", "--resume", "tiny", "--runs", str(runs), "-q", *ENSEMBLE]) == 0
    assert [r.outcome for r in campaign.trials("ensemble")] == ["killed", "ok"]
    assert len(campaign.trials("final")) == 2  # the finals were not trained again


def test_retrain_ensemble_averages_the_retrained_models_and_refuses_one(campaign_runs, capsys):
    assert main(["retrain", "tiny", "--runs", str(campaign_runs), "--top", "1", "--ensemble"]) == 2
    assert "--ensemble averages the retrained models of --top trials; give --top 2" in capsys.readouterr().err
    args = ["retrain", "tiny", "--runs", str(campaign_runs), "--top", "2", "--epochs", "1", "--ensemble"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "2 final runs logged in campaign 'tiny' (tag archsearch.kind=final) and their ensemble" in said
    campaign = open_store(campaign_runs, None).require("tiny")
    (ensemble,) = campaign.trials("ensemble")
    finals = campaign.trials("final")
    assert set(ensemble.params["member_runs"].split(",")) == {f.run_id for f in finals}
    acc, _ = averaged_by_hand(
        campaign,
        [f for r in ensemble.params["member_runs"].split(",") for f in finals if f.run_id == r],
        campaign_runs,
    )
    assert ensemble.metrics["test_acc"] == pytest.approx(acc, abs=1e-6)  # the same images right
