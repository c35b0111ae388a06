"""Early stopping of trials: asynchronous successive halving (ASHA) or the median rule.

The driver reports every epoch's validation accuracy of every trial here and
stops a trial when its rule says so. A stopped trial is recorded as
``pruned`` with the epoch it reached, and TPE learns from its loss at that
epoch like any other.

- ``asha``: rungs at ``min_epochs * reduction**k`` epochs, below the
  trial's last epoch. A trial reaching a rung goes on
  only if its accuracy there is among the best ``n // reduction`` of the
  ``n`` trials that reached that rung so far (itself included), so that
  about one in ``reduction`` trials goes on to the next rung; while fewer
  than ``reduction`` trials have reached a rung, every one goes on.
- ``median``: from ``min_epochs`` on, a trial stops when its best accuracy
  so far is below the median of the other trials' best accuracies up to the
  same epoch, once at least ``min_trials`` of them got that far.

No rule stops a trial before ``min_epochs``, or at its last epoch (it has
finished by then).

Whatever the rule (``none`` included), a trial still at chance after its first epoch stops
there: its validation accuracy at most ``at_chance`` times 1 / classes (0.15 for ten classes,
by default). One epoch of any model that learns lifts it well above that; one that has not
moved would spend the rest of its epochs learning nothing (a too-high learning rate, a dead
activation), and successive halving lets the first ``reduction`` trials through its rung
whatever their accuracy.
"""

from __future__ import annotations

import statistics
from collections import defaultdict


def rungs_of(settings: dict, epochs: int) -> list[int]:
    """The ASHA rungs (epochs) of a trial that trains ``epochs`` epochs."""
    out, r = [], settings["min_epochs"]
    while r < epochs:
        out.append(r)
        r *= settings["reduction"]
    return out


class Pruner:
    """Decides, epoch by epoch, whether a trial should stop; ``settings`` is ``search.pruning``."""

    def __init__(self, settings: dict, classes: int | None = None):
        self.settings = settings
        self.rule = settings["rule"]
        factor = settings.get("at_chance", 0.0)
        self.chance_cut = factor / classes if classes and factor else None  # val_acc at chance
        self.at_rung: dict[int, list[float]] = defaultdict(list)  # asha: epoch -> accuracies there
        self.best_by_epoch: dict[int, dict[int, float]] = defaultdict(dict)  # median: epoch -> trial -> best

    @property
    def active(self) -> bool:
        """A rule that compares trials is on (its peers' histories are needed)."""
        return self.rule != "none"

    @property
    def watching(self) -> bool:
        """Some trial may be stopped: a rule, or the stop at chance."""
        return self.active or self.chance_cut is not None

    def at_chance(self, acc: float | None) -> str | None:
        """Why a validation accuracy counts as at chance (None: it does not, or the stop is off)."""
        if self.chance_cut is None or acc is None or acc > self.chance_cut:
            return None
        factor = self.settings["at_chance"]
        return f"at chance: val_acc {acc:.4f} <= {factor:g} x chance ({self.chance_cut:.4f})"

    def history(self, trial: int, accuracies: list[float]) -> None:
        """What an ended trial (read back on resume) reached at each epoch, for the rules' peers."""
        best = -1.0
        for epoch, acc in enumerate(accuracies, start=1):
            best = max(best, acc)
            self.best_by_epoch[epoch][trial] = best
            if self.rule == "asha" and epoch in rungs_of(self.settings, len(accuracies) + 1):
                self.at_rung[epoch].append(acc)

    def report(self, trial: int, epoch: int, acc: float, epochs: int) -> str | None:
        """Record one epoch of a running trial; the reason to stop it now, or None to go on."""
        best = max(acc, self.best_by_epoch[epoch - 1].get(trial, -1.0) if epoch > 1 else -1.0)
        others = [v for t, v in self.best_by_epoch[epoch].items() if t != trial]
        self.best_by_epoch[epoch][trial] = best
        chance = self.at_chance(acc) if epoch == 1 and epochs > 1 else None
        if chance is not None:
            return chance.replace("at chance", "at chance after epoch 1", 1)
        if not self.active or epoch < self.settings["min_epochs"] or epoch >= epochs:
            return None
        if self.rule == "asha":
            if epoch not in rungs_of(self.settings, epochs):
                return None
            values = self.at_rung[epoch]
            values.append(acc)
            if len(values) < self.settings["reduction"]:
                return None  # too few to judge by
            keep = len(values) // self.settings["reduction"]
            cut = sorted(values, reverse=True)[keep - 1]
            if acc < cut:
                return (
                    f"asha at epoch {epoch}: val_acc {acc:.4f} is not in the top {keep} of the "
                    f"{len(values)} trials at this rung (cut {cut:.4f})"
                )
            return None
        if len(others) >= self.settings["min_trials"]:
            median = statistics.median(others)
            if best < median:
                return (
                    f"median at epoch {epoch}: best val_acc {best:.4f} is below the median "
                    f"{median:.4f} of {len(others)} trials"
                )
        return None
