"""Reading a campaign back: the one "best" every reader takes, which settings vary, a driver that
is gone, the leaderboard."""

import os
import socket
from types import SimpleNamespace

import pandas as pd

from search.outcome import Outcome
from search.results import (
    METRICS,
    best,
    best_filter,
    driver_alive,
    latest_attempts,
    leaderboard,
    ranked,
    run_status,
    varying,
    varying_params,
)
from search.tracking import TrialRecord


def record(trial, outcome, loss=None, attempt=1, params=None):
    metrics = {} if loss is None else {"val_acc": 1 - loss, "loss": loss}
    return TrialRecord(
        run_id=f"r{trial}.{attempt}",
        trial=trial,
        attempt=attempt,
        outcome=Outcome(outcome),
        reason=None if outcome == "ok" else "why",
        vals={},
        config_hash=f"h{trial}",
        loss=loss,
        metrics=metrics,
        params=params or {"depth": "1", "training.lr": "0.01"},
        name=f"t{trial:03d} l1 f8 k3 pmax",
        start_time=None,
        end_time=None,
    )


RECORDS = [
    record(0, "ok", 0.30),
    record(1, "killed", attempt=1),
    record(1, "ok", 0.20, attempt=2),  # the last attempt of trial 1 counts
    record(2, "failed"),
    record(3, "ok", 0.20),  # as good as trial 1: the lower number first
    record(4, "pruned", 0.10),  # stopped early: never the best
    record(5, "running"),
]


def test_the_best_is_the_lowest_loss_of_the_finished_trials_then_the_lowest_number():
    assert [r.trial for r in latest_attempts(RECORDS)] == [0, 1, 2, 3, 4, 5]
    assert latest_attempts(RECORDS)[1].attempt == 2
    assert [r.trial for r in ranked(RECORDS)] == [1, 3, 0]
    assert best(RECORDS).trial == 1 and best(RECORDS).attempt == 2
    assert best([record(0, "failed"), record(1, "pruned", 0.1)]) is None


def test_the_leaderboard_lists_finished_trials_by_accuracy_with_their_settings():
    df = leaderboard(RECORDS, top=None)
    assert list(df["trial"]) == [1, 3, 0] and list(df["outcome"]) == ["ok"] * 3
    assert list(df["depth"]) == [1, 1, 1] and df["training.lr"].iloc[0] == 0.01  # values, not text
    assert list(leaderboard(RECORDS, top=1)["trial"]) == [1]
    everything = leaderboard(RECORDS, top=None, include_failed=True)
    assert sorted(everything["outcome"]) == ["failed", "ok", "ok", "ok", "pruned"]  # not killed or running
    assert leaderboard([record(0, "failed")]).empty


def test_the_leaderboard_table_keeps_the_layers_only_some_rows_have():
    """One- and two-layer trials: l2.* is there for some rows and missing (shown "-") for the
    others, which is a difference, even where the two-layer rows agree."""
    rows = [
        {"trial": 0, "depth": 1, "l1.filters.count": 8},
        {"trial": 1, "depth": 2, "l1.filters.count": 8, "l2.filters.count": 16},
        {"trial": 2, "depth": 2, "l1.filters.count": 8, "l2.filters.count": 16},
    ]
    common = {"outcome": "ok", "name": "-", **{m: 0.5 for m in METRICS}, "source": None, "reason": None}
    df = pd.DataFrame([{**common, **r} for r in rows])
    view = varying(df)
    assert "l2.filters.count" in view.columns and "depth" in view.columns
    assert "l1.filters.count" not in view.columns  # the same in every row
    assert list(view["l2.filters.count"]) == ["-", 16, 16]
    # a metric no trial measured (an evaluator without a speed): "-", not an error
    view = varying(pd.DataFrame([{**common, **r, "images_per_second": None} for r in rows]))
    assert list(view["images_per_second"]) == ["-", "-", "-"]


def test_which_settings_vary_with_and_without_counting_a_missing_value():
    df = pd.DataFrame(
        [
            {"trial": 0, "val_acc": 0.5, "source": "points p[0]", "depth": 1, "l2.size": None, "lr": 0.1},
            {"trial": 1, "val_acc": 0.6, "source": "points p[1]", "depth": 2, "l2.size": 3, "lr": 0.1},
            {"trial": 2, "val_acc": 0.7, "source": None, "depth": 2, "l2.size": 3, "lr": 0.1},
        ]
    )
    assert varying_params(df) == ["depth", "l2.size"]  # never the metrics or the source
    assert varying_params(df, missing_differs=False) == ["depth"]  # one value where it is given


def test_a_running_campaign_whose_driver_is_gone_is_stopped():
    def run(status, driver):
        return SimpleNamespace(
            info=SimpleNamespace(status=status), data=SimpleNamespace(tags={"archsearch.driver": driver})
        )

    here = socket.gethostname()
    assert run_status(run("RUNNING", f"{here}:{os.getpid()}")) == "RUNNING"
    assert run_status(run("RUNNING", f"{here}:999999999")) == "STOPPED"  # no such process
    assert run_status(run("RUNNING", "")) == "STOPPED"
    assert run_status(run("FINISHED", "")) == "FINISHED"
    assert driver_alive("other-host:12")  # another machine's driver: its heartbeat tells


def test_the_best_trials_filter_holds_the_top_ones_by_val_acc_in_mlflow_search(runs):
    from search.compile import CompiledSpace
    from search.space import parse_space
    from search.tracking import Store

    space = CompiledSpace(
        parse_space({"architecture": {"depth": 1, "layers": {"filters": {"count": 4, "size": 3}}}})
    )
    store = Store(f"sqlite:///{(runs / 'mlflow.db').resolve()}", runs)
    campaign = store.create("c", {}, {}, tags={})
    (config,) = space.sample(1)
    accs = [0.5, 0.91234567, 0.7, 0.91234561, 0.2, float("nan")]
    for trial, acc in enumerate(accs):
        run = campaign.start_trial(trial, 1, config, space.encode(config), 0, "cpu")
        run.finish(Outcome.OK, None, {"val_acc": acc, "loss": 1 - acc})
    final = campaign.start_trial(1, 1, config, space.encode(config), 0, "cpu", kind="final")
    final.finish(Outcome.OK, None, {"val_acc": 0.99})  # never among the trials
    records = campaign.trials()
    assert best_filter([]) is None and best_filter(records[-1:]) is None  # no number yet
    for top, expected in ((2, {1, 3}), (3, {1, 3, 2}), (10, {0, 1, 2, 3, 4})):
        found = store.client.search_runs([campaign.experiment_id], best_filter(records, top))
        assert {int(r.data.tags["archsearch.trial"]) for r in found} == expected
