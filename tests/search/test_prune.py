"""Early stopping: the rules on their own, then campaigns that prune (in this process and in workers)."""

import pytest

from search.cli import main
from search.prune import Pruner, rungs_of
from tests.search.test_end_to_end import campaign_of, client_for, trial_runs

ASHA = {"rule": "asha", "min_epochs": 2, "reduction": 3, "min_trials": 5}
MEDIAN = {"rule": "median", "min_epochs": 2, "reduction": 3, "min_trials": 2}


def test_asha_rungs_grow_by_the_reduction_factor_below_the_last_epoch():
    assert rungs_of(ASHA, 20) == [2, 6, 18]
    assert rungs_of(ASHA, 18) == [2, 6]
    assert rungs_of({**ASHA, "min_epochs": 1, "reduction": 2}, 9) == [1, 2, 4, 8]


def test_asha_keeps_about_one_in_reduction_at_each_rung():
    p = Pruner(ASHA)
    assert p.report(0, 1, 0.1, 10) is None  # before min_epochs: never
    assert p.report(0, 2, 0.5, 10) is None  # fewer than 3 at the rung: goes on
    assert p.report(1, 2, 0.4, 10) is None
    assert "not in the top 1 of the 3" in p.report(2, 2, 0.3, 10)
    assert p.report(3, 2, 0.9, 10) is None  # the best so far goes on
    assert p.report(4, 3, 0.0, 10) is None  # not a rung
    assert p.report(5, 10, 0.0, 10) is None  # the last epoch: it has finished


def test_the_median_rule_compares_with_the_best_so_far_of_others_at_the_same_epoch():
    p = Pruner(MEDIAN)
    for trial, accs in enumerate([[0.5, 0.6, 0.7], [0.4, 0.5, 0.6]]):
        for epoch, acc in enumerate(accs, start=1):
            assert p.report(trial, epoch, acc, 5) is None  # fewer than 2 others
    assert p.report(2, 1, 0.1, 5) is None  # epoch 1 < min_epochs
    assert "below the median 0.5500 of 2 trials" in p.report(2, 2, 0.45, 5)
    p.history(9, [0.9, 0.95])  # an ended trial read back on resume counts too
    assert p.report(3, 2, 0.58, 5) is None  # others at epoch 2: 0.6, 0.5, 0.45, 0.95: median 0.55
    assert "below the median 0.5800 of 5 trials" in p.report(4, 2, 0.5, 5)


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["inline", "workers"])
def test_a_campaign_with_asha_records_pruned_trials_at_their_epoch(tiny, runs, capsys, workers):
    args = ["run", str(tiny), "--runs", str(runs), "--trials", "10", "--set", "training.epochs=9"]
    args += ["--prune", "asha", "--prune-min-epochs", "2", "--prune-reduction", "2", *workers]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "pruned" in out
    client = client_for(runs)
    exp, _ = campaign_of(client, "tiny")
    children = trial_runs(client, exp.experiment_id)
    assert len(children) == 10 and not [c for c in children if c.info.status == "RUNNING"]
    pruned = [c for c in children if c.data.tags["archsearch.outcome"] == "pruned"]
    assert pruned
    for c in pruned:
        reached = int(c.data.metrics["epochs_done"])
        if c.data.tags["archsearch.reason"].startswith("at chance after epoch 1"):
            assert reached == 1  # the stop at chance, whatever the rule
            continue
        assert reached >= 2  # never before the minimum epoch
        assert reached in rungs_of({"min_epochs": 2, "reduction": 2}, 9)  # at a rung: 2 or 4 or 8
        assert c.info.status == "FINISHED"
        assert c.data.tags["archsearch.reason"].startswith(f"asha at epoch {reached}")
        history = client.get_metric_history(c.info.run_id, "val_acc")
        assert max(m.step for m in history) >= reached  # its epochs up to there are logged
        assert c.data.metrics["loss"] == pytest.approx(1 - c.data.metrics["val_acc"])  # what TPE was told
        assert c.data.metrics["params"] > 0 and c.data.metrics["macs"] > 0  # its size, as a finished one's
    for c in children:
        if c.data.tags["archsearch.outcome"] == "ok":
            assert c.data.metrics["epochs_done"] == 9

    # resuming reads the pruned trials back as ended: nothing is run again
    assert main(["run", "--resume", "tiny", "--runs", str(runs)]) == 0
    assert "10 trials ended" in capsys.readouterr().out
    assert len(trial_runs(client, exp.experiment_id)) == 10


def test_a_trial_at_chance_after_its_first_epoch_stops_whatever_the_rule():
    none = {"rule": "none", "min_epochs": 1, "reduction": 3, "min_trials": 5, "at_chance": 1.5}
    p = Pruner(none, classes=10)
    assert p.watching and not p.active
    assert p.report(0, 1, 0.12, 5) == "at chance after epoch 1: val_acc 0.1200 <= 1.5 x chance (0.1500)"
    assert p.report(1, 1, 0.16, 5) is None  # above it
    assert p.report(2, 2, 0.1, 5) is None  # judged after the first epoch only
    assert p.report(3, 1, 0.1, 1) is None  # a one-epoch trial has ended anyway
    # asha's first trials at a rung go on, but not one at chance
    p = Pruner({**ASHA, "min_epochs": 1, "at_chance": 1.5}, classes=10)
    assert p.report(0, 1, 0.1, 10).startswith("at chance")
    # off: at_chance 0, or no class count
    assert not Pruner({**none, "at_chance": 0}, classes=10).watching
    assert not Pruner(none).watching
