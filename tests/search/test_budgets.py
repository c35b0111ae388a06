"""Budgets: a time limit per trial, a campaign's time budget with trials in flight, compute spent."""

import time

import pytest

from search.campaign import open_store
from search.cli import main
from search.run import launch
from search.settings import resolve
from search.trial import TrialResult
from tests.search.test_end_to_end import campaign_of, client_for, trial_runs


def test_a_trial_past_its_timeout_is_failed_with_reason_timeout_and_the_campaign_goes_on(tiny, runs, capsys):
    args = ["run", str(tiny), "--runs", str(runs), "--trials", "3", "--trial-timeout", "0.5"]
    args += ["--set", "training.epochs=500"]  # minutes of training per trial
    started = time.monotonic()
    assert main(args) == 0
    assert time.monotonic() - started < 60
    out = capsys.readouterr().out
    assert "failed: timeout" in out and "3 trials ended (3 failed)" in out
    client = client_for(runs)
    exp, parent = campaign_of(client, "tiny")
    children = trial_runs(client, exp.experiment_id)
    assert len(children) == 3
    for c in children:
        assert c.info.status == "FAILED"
        assert c.data.tags["archsearch.reason"] == "timeout"
        assert 0.5 <= c.data.metrics["train_seconds"] < 5
        epochs = client.get_metric_history(c.info.run_id, "val_acc")
        assert len(epochs) < 500  # stopped mid-training, its epochs so far kept
    assert parent.data.tags["archsearch.trial_timeout"] == "0.5"


def test_a_screened_trial_past_its_timeout_stops_too(tiny, runs, capsys):
    args = ["run", str(tiny), "--runs", str(runs), "--trials", "1", "--trial-timeout", "0.01"]
    args += ["--set", "training.mode=screen", "--set", "data.input_shape=[1, 96, 96]"]
    assert main(args) == 0
    assert "failed: timeout" in capsys.readouterr().out


def one_second(config, data, **kwargs):
    time.sleep(1.0)
    return TrialResult("ok", val_acc=0.5, val_loss=1.0, train_seconds=1.0, params=1, macs=1)


def test_the_time_budget_starts_no_trial_that_would_end_past_it(tiny, runs, capsys):
    settings = resolve(str(tiny), ["search.trials=50", "search.time_budget=2.5"], runs=runs)
    started = time.monotonic()
    assert launch(settings, open_store(runs, None), evaluate_fn=one_second) == 0
    took = time.monotonic() - started
    out = capsys.readouterr().out
    # trials of 1 s: after the second, 0.5 s are left, less than a trial takes
    assert "s left, less than a trial takes (median 1 s), so no new trial started" in out
    assert "2 trials ended" not in out  # the reason is the budget, not the count
    client = client_for(runs)
    exp, _ = campaign_of(client, "tiny")
    assert len(trial_runs(client, exp.experiment_id)) == 2
    assert took < 2.5 + 2.0


def test_the_time_budget_counts_from_the_command_s_start_data_loading_included(
    tiny, runs, capsys, monkeypatch
):
    # what came before the campaign's loop (here 2 s, as a slow data load): one trial fits, not two
    settings = resolve(str(tiny), ["search.trials=50", "search.time_budget=3.5"], runs=runs)
    assert launch(settings, open_store(runs, None), one_second, started=time.monotonic() - 2.0) == 0
    out = capsys.readouterr().out
    assert "less than a trial takes (median 1 s), so no new trial started" in out
    client = client_for(runs)
    assert len(trial_runs(client, campaign_of(client, "tiny")[0].experiment_id)) == 1
    # `archsearch run` gives its start: taken before its arguments are read
    seen = {}
    monkeypatch.setattr("search.run.launch", lambda settings, store, started: seen.setdefault("at", started))
    before = time.monotonic()
    main(["run", str(tiny), "--runs", str(runs), "--name", "again"])
    assert before <= seen["at"] <= time.monotonic()


def test_the_compute_spent_is_logged_and_said(tiny, runs, capsys):
    settings = resolve(str(tiny), ["search.trials=3"], runs=runs)
    assert launch(settings, open_store(runs, None), evaluate_fn=one_second) == 0
    assert "compute 3.0s of training" in capsys.readouterr().out
    client = client_for(runs)
    _, parent = campaign_of(client, "tiny")
    history = client.get_metric_history(parent.info.run_id, "compute_seconds")
    assert history[-1].value == pytest.approx(3.0) and history[-1].step == 2
