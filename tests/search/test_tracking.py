"""Tracking on MLflow: a campaign and its trial runs written and read back as TrialRecords, the
driver's lock, a killed trial, and a store that goes away or refuses."""

import time

import pytest

from search import tracking
from search.compile import CompiledSpace, config_hash, flatten
from search.errors import TrackingError
from search.space import parse_space
from search.tracking import Store
from search.trial import Outcome

SPACE = CompiledSpace(
    parse_space(
        {"architecture": {"depth": 1, "layers": {"filters": {"count": {"choice": [4, 8]}, "size": 3}}}}
    )
)


@pytest.fixture
def store(runs):
    return Store(f"sqlite:///{(runs / 'mlflow.db').resolve()}", runs)


def test_a_trial_run_is_written_and_read_back_as_it_ended(store):
    campaign = store.create("c", {"search.algo": "tpe"}, {"campaign.json": "{}"}, tags={})
    (config,) = SPACE.sample(1, seed=3)
    vals = SPACE.encode(config)
    run = campaign.start_trial(0, 1, config, vals, 123, "cpu:test", source="points p.yaml[0]")
    (running,) = campaign.trials()
    assert running.outcome == Outcome.RUNNING and running.source == "points p.yaml[0]"
    run.started("host:1", "cpu:x")
    run.log_epoch(1, {"val_acc": 0.5, "train_loss": 1.0})
    run.log_epoch(2, {"val_acc": 0.6, "train_loss": 0.9})
    run.finish(Outcome.OK, None, {"val_acc": 0.6, "loss": 0.4, "epochs_done": 2.0})
    (r,) = campaign.trials()
    assert (r.trial, r.attempt, r.outcome, r.loss) == (0, 1, Outcome.OK, pytest.approx(0.4))
    assert r.vals == vals and r.config_hash == config_hash(config) and r.name.startswith("t000 l1 f")
    assert r.params == {k: str(v) for k, v in flatten(config).items()}
    assert [m.value for m in campaign.metric_history(r.run_id, "val_acc")] == [0.5, 0.6]
    tags = campaign.client.get_run(r.run_id).data.tags
    assert tags["archsearch.worker"] == "host:1" and tags["archsearch.device"] == "cpu:x"
    assert campaign.read_text("architecture.json", r.run_id).startswith("{")


def test_a_trial_left_running_is_marked_killed_and_each_outcome_has_its_status(store):
    campaign = store.create("c", {}, {}, tags={})
    (config,) = SPACE.sample(1)
    vals = SPACE.encode(config)
    for trial, outcome in enumerate((Outcome.PRUNED, Outcome.INVALID, Outcome.FAILED, Outcome.KILLED)):
        campaign.start_trial(trial, 1, config, vals, 0, "cpu").finish(outcome, "why", {})
    campaign.start_trial(4, 1, config, vals, 0, "cpu")  # its driver died
    records = campaign.trials()
    campaign.mark_killed(records[-1], "the driver stopped")
    statuses = [campaign.client.get_run(r.run_id).info.status for r in campaign.trials()]
    assert statuses == ["FINISHED", "FAILED", "FAILED", "KILLED", "KILLED"]
    assert [r.outcome for r in campaign.trials()] == [
        Outcome.PRUNED,
        Outcome.INVALID,
        Outcome.FAILED,
        Outcome.KILLED,
        Outcome.KILLED,
    ]


def test_a_campaign_is_held_by_one_driver(store):
    campaign = store.create("c", {}, {}, tags={})
    campaign.acquire()
    try:
        with pytest.raises(TrackingError, match="being run by another archsearch process"):
            store.require("c").acquire()
    finally:
        campaign.release("FINISHED")
    store.require("c").acquire()  # released: free again


def test_an_unknown_campaign_names_the_known_ones(store):
    store.create("known", {}, {}, tags={})
    with pytest.raises(TrackingError, match="no campaign named 'nope'.*known campaigns: known"):
        store.require("nope")


def test_the_campaign_stops_with_a_clear_message_when_the_store_stays_away(monkeypatch, capsys):
    calls = []

    def down(*args):
        calls.append(time.monotonic())
        raise tracking.MlflowException("API request to http://x/api failed with exception Connection refused")

    monkeypatch.setattr(tracking, "BACKOFF", (0.05, 0.1))
    client = tracking.Patient(down, "http://x", patience=0.5)
    with pytest.raises(tracking.TrackingError, match=r"unreachable for \d+ s \(patience 0.5 s"):
        client.retry(down)
    assert len(calls) >= 4 and calls[-1] - calls[0] >= 0.45  # retried with back-off for the patience
    assert "retrying for up to 0.5 s" in capsys.readouterr().err
    n = len(calls)
    with pytest.raises(tracking.TrackingError):  # having given up, it does not wait again
        client.retry(down)
    assert len(calls) == n + 1


def test_requests_the_store_refuses_are_not_retried():
    from mlflow.exceptions import RestException

    calls = []

    def refuse(*args):
        calls.append(1)
        raise RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad value"})

    with pytest.raises(RestException):
        tracking.Patient(refuse, "http://x").retry(refuse)
    assert calls == [1]
