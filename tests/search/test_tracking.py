"""Tracking on MLflow: a campaign and its trial runs written and read back as TrialRecords, the
driver's lock, a killed trial, and a store that goes away or refuses."""

import threading
import time

import pytest

from search import tracking
from search.compile import CompiledSpace, config_hash, flatten
from search.errors import TrackingError
from search.outcome import Outcome
from search.space import parse_space
from search.tracking import Store

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


def test_a_sql_store_is_read_directly_and_gives_the_records_search_runs_gives(store, monkeypatch):
    campaign = store.create("c", {}, {}, tags={})
    other = store.create("other", {}, {}, tags={})  # another campaign's runs are not read
    configs = SPACE.sample(6, seed=1)
    for trial, (config, outcome) in enumerate(
        zip(configs, (Outcome.OK, Outcome.PRUNED, Outcome.FAILED, Outcome.OK, Outcome.KILLED), strict=False)
    ):
        run = campaign.start_trial(trial, 1 + trial % 2, config, SPACE.encode(config), trial, "cpu")
        run.log_epoch(1, {"val_acc": 0.1 * trial, "train_loss": float("nan")})
        run.finish(outcome, "why" if outcome != Outcome.OK else None, {"loss": 1 - 0.1 * trial})
        other.start_trial(trial, 1, config, SPACE.encode(config), 0, "cpu").finish(Outcome.OK, None, {})
    campaign.start_trial(5, 1, configs[5], SPACE.encode(configs[5]), 0, "cpu", source="points p.yaml[1]")
    gone = campaign.start_trial(6, 1, configs[0], SPACE.encode(configs[0]), 0, "cpu")
    campaign.client.delete_run(gone.run_id)  # deleted runs are not read
    final = campaign.start_trial(3, 1, configs[3], SPACE.encode(configs[3]), 0, "cpu", kind="final")
    final.finish(Outcome.OK, None, {"test_acc": 0.9})

    def same(r):  # NaN != NaN: compare metrics as text
        return {**r.__dict__, "metrics": {k: repr(v) for k, v in r.metrics.items()}}

    assert store.engine is not None
    direct = {kind: campaign.trials(kind) for kind in ("trial", "final")}
    bare = campaign.trials(params=False)  # what status reads
    assert [r.params for r in bare] == [{}] * 6
    monkeypatch.setattr(tracking, "SQL_IDS", 2)  # params read 2 runs a query
    assert [same(r) for r in campaign.with_params(bare)] == [same(r) for r in direct["trial"]]
    shown = campaign.with_params([bare[3], bare[0]])  # the rows a leaderboard shows, in its order
    assert [same(r) for r in shown] == [same(direct["trial"][3]), same(direct["trial"][0])]
    monkeypatch.setattr(store, "engine", None)  # the tracking server's path: search_runs, in pages
    paged = {kind: campaign.trials(kind) for kind in ("trial", "final")}
    assert [same(r) for r in campaign.with_params(campaign.trials(params=False))] == [
        same(r) for r in paged["trial"]
    ]

    assert [same(r) for r in direct["trial"]] == [same(r) for r in paged["trial"]]
    assert [same(r) for r in direct["final"]] == [same(r) for r in paged["final"]]
    assert [r.trial for r in direct["trial"]] == [0, 1, 2, 3, 4, 5] and len(direct["final"]) == 1
    assert direct["trial"][-1].outcome == Outcome.RUNNING and direct["trial"][0].params


def test_the_histories_of_a_metric_are_read_at_once_as_each_run_gives_its_own(store, monkeypatch):
    campaign = store.create("c", {}, {}, tags={})
    configs = SPACE.sample(4, seed=2)
    ids = []
    for trial, accs in enumerate(([0.5, 0.6, 0.55], [float("nan"), 0.2], [], [0.7])):
        run = campaign.start_trial(trial, 1, configs[trial], SPACE.encode(configs[trial]), 0, "cpu")
        for epoch, acc in enumerate(accs, start=1):
            run.log_epoch(epoch, {"val_acc": acc, "train_loss": 1.0})
        run.finish(Outcome.OK, None, {})
        ids.append(run.run_id)
    monkeypatch.setattr(tracking, "SQL_IDS", 3)  # the runs in two queries
    direct = campaign.metric_histories("val_acc", ids[::-1])
    monkeypatch.setattr(store, "engine", None)  # a tracking server: one call a run
    each = campaign.metric_histories("val_acc", ids[::-1])
    assert {k: repr(v) for k, v in direct.items()} == {k: repr(v) for k, v in each.items()}
    assert direct[ids[0]] == [0.5, 0.6, 0.55] and repr(direct[ids[1]]) == "[nan, 0.2]"
    assert ids[2] not in direct and direct[ids[3]] == [0.7]


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


def test_a_campaign_writing_behind_starts_the_next_trial_before_the_store_has_written_the_last(store):
    campaign = store.create("c", {}, {}, tags={})
    campaign.write_behind()
    gate, real = threading.Event(), campaign.client.client.create_run
    campaign.client.client.create_run = lambda *a, **kw: gate.wait(10) and real(*a, **kw)
    (config,) = SPACE.sample(1)
    run = campaign.start_trial(0, 1, config, SPACE.encode(config), 0, "cpu")  # returns: not yet written
    run.started("host:1", "cpu")
    run.log_epoch(1, {"val_acc": 0.5})
    run.finish(Outcome.OK, None, {"val_acc": 0.5, "loss": 0.5, "epochs_done": 1.0})
    assert not campaign.writer._queue.empty()  # the creation still waits for the store
    gate.set()
    (r,) = campaign.trials()  # a read waits for the queued writes, made in order
    assert (r.outcome, r.loss, r.run_id) == (Outcome.OK, 0.5, run.run_id)
    assert campaign.client.get_run(r.run_id).data.tags["archsearch.worker"] == "host:1"
    assert campaign.read_text("architecture.json", r.run_id).startswith("{")
    campaign.release("FINISHED")  # flushes, and writes directly from then on
    assert campaign.writer is None and campaign.client.get_run(campaign.run_id).info.status == "FINISHED"


def test_a_write_the_store_refuses_stops_the_writer_and_the_campaign_hears_of_it(store):
    campaign = store.create("c", {}, {}, tags={})
    campaign.write_behind()
    configs = SPACE.sample(2, seed=0)
    runs = [campaign.start_trial(t, 1, c, SPACE.encode(c), 0, "cpu") for t, c in enumerate(configs)]
    refuse = tracking.MlflowException("INVALID_PARAMETER_VALUE: no")
    campaign.client.client.set_terminated = lambda *a, **kw: (_ for _ in ()).throw(refuse)
    runs[0].finish(Outcome.OK, None, {"loss": 0.5})
    runs[1].finish(Outcome.OK, None, {"loss": 0.4})
    said = r"files and status of t000 .* failed: .*no; the writes after it were not made"
    with pytest.raises(tracking.TrackingError, match=said):
        campaign.flush()
    with pytest.raises(tracking.TrackingError):  # every later write or read says it again
        campaign.set_tags({"x": 1})
    del campaign.client.client.set_terminated
    tags = campaign.client.get_run(runs[1].run_id).data.tags
    assert tags["archsearch.outcome"] == Outcome.RUNNING  # t001's end was not written: resume re-runs it
    with pytest.raises(tracking.TrackingError, match=said):  # the campaign run ends all the same
        campaign.release("FAILED")
    assert campaign.client.get_run(campaign.run_id).info.status == "FAILED" and campaign.writer is None


def test_the_writer_holds_at_most_so_many_writes_before_the_driver_waits():
    writer = tracking.Writer("sqlite://", ahead=2)
    gate, made = threading.Event(), []
    writer.submit("first", lambda: gate.wait(10))  # taken by the thread, which waits
    time.sleep(0.1)
    for i in range(2):
        writer.submit(f"w{i}", lambda i=i: made.append(i))
    third = threading.Thread(target=writer.submit, args=("w2", lambda: made.append(2)))
    third.start()
    third.join(0.3)
    assert third.is_alive() and made == []  # the queue is full: the third waits
    gate.set()
    third.join(5)
    writer.flush()
    assert made == [0, 1, 2]
