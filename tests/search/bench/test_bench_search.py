"""``archsearch bench search``: the figures of TPE against random and of early stopping, from stubbed
campaigns; every part on tiny settings.

Smoke tests only: the numbers are measured by running the benchmarks, never asserted here.
"""

import statistics

import pytest

from search.bench import search as search_module
from search.bench.search import best_after, choose_target, median_or_none, trials_to_target
from search.cli import main
from search.errors import UserError
from tests.search.bench.common import ENVIRONMENT, bench, positive


def test_trials_to_target_counts_trials_in_order():
    assert trials_to_target([0.5, 0.9, 0.95], 0.9) == 2  # the first reaching it (>=), 1-based
    assert trials_to_target([0.95, 0.99], 0.9) == 1
    assert trials_to_target([None, 0.5, 0.91], 0.9) == 3  # an invalid trial counts as a trial
    assert trials_to_target([0.5, None], 0.9) is None
    assert trials_to_target([], 0.9) is None
    assert trials_to_target([394 / 400], 0.985) == 1  # equal, whatever the float rounding


def test_best_after_the_first_n_trials():
    assert best_after([0.5, 0.9, 0.95], 2) == 0.9
    assert best_after([0.5, 0.9, 0.95], 10) == 0.95
    assert best_after([None, None, 0.7], 2) is None
    assert best_after([None, 0.6], 2) == 0.6


def test_choose_target_is_a_nearest_rank_quantile():
    values = [i / 100 for i in range(1, 101)]  # 0.01 .. 1.00
    assert choose_target(values, 0.95) == 0.95  # 95 of the 100 at or below it, 6 reach it
    assert choose_target(values, 0.5) == 0.5
    assert choose_target([0.3, None, 0.1, 0.2], 0.9) == 0.3  # None (no accuracy) left out
    assert choose_target([0.7], 0.95) == 0.7
    with pytest.raises(UserError):
        choose_target([None], 0.95)
    with pytest.raises(UserError):
        choose_target([0.5], 1.0)


def test_median_or_none_treats_none_as_never():
    assert median_or_none([1.0, 3.0, None]) == 3.0  # never: larger than any number
    assert median_or_none([1.0, None]) is None  # the median falls among the nevers
    assert median_or_none([None, None, 2.0]) is None
    assert median_or_none([2.0, 4.0]) == 3.0
    assert median_or_none([]) is None


def fake_search_campaigns(monkeypatch, results):
    """Stub the campaigns of `bench search`: ``results[(algo or rule, seed)]`` is what one returns."""
    calls = []

    def campaign(space_path, overrides, name, device, data_dir=None):
        calls.append(overrides)
        keys = dict(o.split("=", 1) for o in overrides)
        which = keys["search.pruning.rule"] if "search.pruning.rule" in keys else keys["search.algo"]
        val_acc, train_seconds, epochs = results[(which, int(keys["search.seed"]))]
        outcome = ["ok" if a is not None else "pruned" for a in val_acc]
        return {
            "wall_seconds": 1.0,
            "outcomes": {k: outcome.count(k) for k in set(outcome)},
            "outcome": outcome,
            "val_acc": val_acc,
            "train_seconds": train_seconds,
            "epochs": epochs,
        }

    monkeypatch.setattr(search_module, "campaign", campaign)
    return calls


def test_search_tpe_against_random_medians_and_ratio(tmp_path, monkeypatch, capsys):
    ones = [1.0] * 4
    acc = {
        ("tpe", 0): [0.5, 0.9, 0.6, 0.7],  # 2 trials to 0.9
        ("tpe", 1): [0.95, 0.5, 0.5, 0.5],  # 1
        ("tpe", 2): [0.5, 0.5, 0.5, 0.5],  # never: counted as 5
        ("random", 0): [0.5, 0.5, 0.5, 0.91],  # 4
        ("random", 1): [0.5, 0.5, 0.92, 0.5],  # 3
        ("random", 2): [None, 0.5, 0.5, 0.5],  # never: 5
    }
    calls = fake_search_campaigns(monkeypatch, {k: (v, ones, [1] * 4) for k, v in acc.items()})
    args = ["search", "--parts", "tpe", "--seeds", "3", "--trials", "4", "--target", "0.9"]
    r = bench(tmp_path, *args, "--dataset", "digits", "--set", "search.tpe.gamma=0.3")
    assert len(calls) == 6 and all("search.trials=4" in c and "training.mode=screen" in c for c in calls)
    assert all(c[-1] == "search.tpe.gamma=0.3" for c in calls)  # --set comes last
    t = r["tpe"]
    assert r["parts"] == ["tpe"] and "pruning" not in r
    assert t["target"] == 0.9 and t["target_quantile"] is None and t["not_reached_counts_as"] == 5
    assert [x["trials_to_target"] for x in t["runs"]["tpe"]] == [2, 1, 5]
    assert [x["reached"] for x in t["runs"]["random"]] == [True, True, False]
    assert [x["seed"] for x in t["runs"]["random"]] == [0, 1, 2]
    assert t["median_trials_to_target"] == {"tpe": 2, "random": 4}
    assert t["reached"] == {"tpe": 2, "random": 2}
    assert t["ratio"] == 0.5 and t["goal"] == 0.6 and t["goal_met"] is True
    assert t["median_best_after_n"] == {"tpe": 0.9, "random": 0.91}
    assert t["median_best_after"]["4"] == {"tpe": 0.9, "random": 0.91}
    sweep = t["ratio_by_target_quantile"]  # the ratio at other targets: the pooled quantiles
    assert list(sweep) == ["0.8", "0.9", "0.95", "0.98", "0.99"]
    assert sweep["0.99"] == {"target": 0.95, "tpe": 5, "random": 5, "ratio": 1.0}  # only tpe seed 1
    assert sweep["0.9"] == {"target": 0.91, "tpe": 5, "random": 4, "ratio": 1.25}
    out = capsys.readouterr().out
    assert "5*" in out and "counted as 5" in out and "meets the goal" in out


def test_search_pruning_compute_to_target(tmp_path, monkeypatch, capsys):
    runs = {
        # asha: None = stopped early (no finished model)
        ("asha", 0): ([0.8, None, 0.9, None], [1.0, 0.2, 1.0, 0.2], [9, 1, 9, 1]),  # 2.2 s, 19 epochs
        ("asha", 1): ([0.9, None, None, 0.7], [1.0, 0.2, 0.2, 1.0], [9, 1, 1, 9]),  # 1.0 s, 9 epochs
        ("none", 0): ([0.8, 0.85, 0.9, 0.7], [1.0] * 4, [9] * 4),  # 3.0 s
        ("none", 1): ([0.7, 0.9, 0.6, 0.6], [1.0] * 4, [9] * 4),  # 2.0 s
    }
    calls = fake_search_campaigns(monkeypatch, runs)
    args = ["search", "--parts", "pruning", "--seeds", "2", "--trials", "4", "--pruning-target", "0.9"]
    r = bench(tmp_path, *args, "--epochs", "9")
    # random search by default: both settings draw the same trials
    assert all("training.epochs=9" in c and "search.algo=random" in c for c in calls)
    assert {c[c.index("search.algo=random") + 1] for c in calls} == {
        "search.pruning.rule=asha",
        "search.pruning.rule=none",
    }
    p = r["pruning"]
    assert [x["compute_to_target_seconds"] for x in p["runs"]["asha"]] == pytest.approx([2.2, 1.0])
    assert [x["epochs_to_target"] for x in p["runs"]["asha"]] == [19, 9]
    assert [x["pruned"] for x in p["runs"]["asha"]] == [2, 2]
    a, n = p["summary"]["asha"], p["summary"]["none"]
    assert a["median_compute_to_target_seconds"] == pytest.approx(1.6)
    assert n["median_compute_to_target_seconds"] == pytest.approx(2.5)
    assert a["median_best_val_acc"] == n["median_best_val_acc"] == 0.9
    assert p["compute_to_target_ratio"] == pytest.approx(1.6 / 2.5)
    assert p["compute_ratio"] == pytest.approx(2.4 / 4.0)  # medians of the whole campaigns
    assert p["best_val_acc_gap"] == 0.0 and p["accuracy_goal_met"] is True
    assert p["compute_goal_met"] is False and p["goal_met"] is False
    assert "misses the goal <= 0.5" in capsys.readouterr().out
    assert p["algo"] == "random"
    calls.clear()
    assert bench(tmp_path, *args, "--pruning-algo", "tpe")["pruning"]["algo"] == "tpe"
    assert calls and all("search.algo=tpe" in c for c in calls)

    # the goal is on the whole campaign's training time, not the time to the target (which the
    # position of the first trial reaching it decides)
    fake_search_campaigns(
        monkeypatch,
        {
            ("asha", 0): ([0.9, None, None, None], [1.0, 0.1, 0.1, 0.1], [9, 1, 1, 1]),
            ("none", 0): ([0.9, 0.8, 0.8, 0.8], [1.0] * 4, [9] * 4),
        },
    )
    one = ["search", "--parts", "pruning", "--seeds", "1", "--trials", "4", "--pruning-target", "0.9"]
    p = bench(tmp_path, *one)["pruning"]
    assert p["compute_to_target_ratio"] == 1.0 and p["compute_ratio"] == pytest.approx(1.3 / 4)
    assert p["compute_goal_met"] is True and p["goal_met"] is True


@pytest.mark.parametrize(
    "args",
    [
        ["--parts", "tpe,fast"],
        ["--target", "85"],  # a percentage, not an accuracy
        ["--pruning-target", "0"],
        ["--target-quantile", "1"],
    ],
)
def test_search_usage_errors_before_any_campaign(tmp_path, monkeypatch, capsys, args):
    monkeypatch.setattr(search_module, "campaign", lambda *a, **k: pytest.fail("a campaign ran"))
    assert main(["bench", "search", *args, "--out", str(tmp_path / "x.json")]) == 2
    assert args[0] in capsys.readouterr().err


@pytest.mark.slow
def test_search(tmp_path, capsys):
    # every part on tiny settings: 2 seeds of 4 trials on digits as stored (8x8), TPE after 2 of
    # them; 2 epochs; one HT-L3-1st screened on 30 images of 200x200
    r = bench(
        tmp_path,
        "search",
        "--parts",
        "tpe,pruning,screen",
        "--seeds",
        "2",
        "--trials",
        "4",
        "--epochs",
        "2",
        "--dataset",
        "digits",
        "--set",
        "search.tpe.startup_trials=2",
        "--set",
        "search.pruning.min_epochs=1",
        "--set",
        "search.pruning.reduction=2",
        "--subset",
        "30",
        "--screen-models",
        "1",
    )
    assert r["benchmark"] == "search" and set(r) >= ENVIRONMENT | {"parts", "seeds", "wall_seconds"}
    assert r["parts"] == ["tpe", "pruning", "screen"] and r["seeds"] == [0, 1]

    t = r["tpe"]
    pooled = [a for rows in t["runs"].values() for x in rows for a in x["val_acc"] if a is not None]
    assert t["target"] == choose_target(pooled, 0.95) and t["target_quantile"] == 0.95
    assert t["startup_trials"] == 2 and t["trials"] == 4 and t["not_reached_counts_as"] == 5
    for algo in ("tpe", "random"):
        rows = t["runs"][algo]
        assert [x["seed"] for x in rows] == [0, 1]
        for x in rows:
            assert len(x["val_acc"]) == 4 and "training.mode=screen" in x["overrides"]
            assert f"search.algo={algo}" in x["overrides"]
            assert 1 <= x["trials_to_target"] <= 5 and x["reached"] == (x["trials_to_target"] <= 4)
            assert x["best_after_n"] == best_after(x["val_acc"], 4)
        assert t["median_trials_to_target"][algo] == statistics.median(x["trials_to_target"] for x in rows)
    assert t["ratio"] == pytest.approx(
        t["median_trials_to_target"]["tpe"] / t["median_trials_to_target"]["random"]
    )
    assert t["goal_met"] == (t["ratio"] <= 0.6)

    p = r["pruning"]
    assert p["epochs"] == 2 and p["pruning"]["rule"] == "asha" and p["pruning"]["reduction"] == 2
    for rule in ("asha", "none"):
        rows = p["runs"][rule]
        assert [x["seed"] for x in rows] == [0, 1]
        for x in rows:
            assert len(x["val_acc"]) == len(x["train_seconds"]) == len(x["epochs"]) == 4
            assert positive(x["compute_seconds"]) and x["compute_seconds"] == pytest.approx(
                sum(x["train_seconds"])
            )
            if x["trials_to_target"] is not None:
                assert 0 < x["compute_to_target_seconds"] <= x["compute_seconds"]
        s = p["summary"][rule]
        assert set(s) >= {"median_compute_to_target_seconds", "median_best_val_acc", "median_compute_seconds"}
    assert all(x["epochs_total"] == 8 and x["pruned"] == 0 for x in p["runs"]["none"])  # 4 trials x 2
    assert p["compute_ratio"] == pytest.approx(
        p["summary"]["asha"]["median_compute_seconds"] / p["summary"]["none"]["median_compute_seconds"]
    )
    assert p["best_val_acc_gap"] == pytest.approx(
        p["summary"]["asha"]["median_best_val_acc"] - p["summary"]["none"]["median_best_val_acc"]
    )
    assert set(p["goal"]) == {"compute_ratio_at_most", "best_val_acc_gap_at_least"}

    sc = r["screen"]
    assert (
        sc["models"] == 1 and sc["images"] == 30 and sc["scored"] == 6 and sc["input_shape"] == [1, 200, 200]
    )
    assert positive(sc["seconds_per_model"]) and sc["models_per_hour"] == pytest.approx(
        3600 / sc["seconds_per_model"]
    )
    assert sc["reference_2011"]["models_per_hour"] == pytest.approx(15000 / 168)
    out = capsys.readouterr().out
    assert "TPE / random" in out and "asha / none" in out and "2011 reference" in out
