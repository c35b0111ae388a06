"""Multi-fidelity search: successive halving over data size and epochs, with TPE on top (BOHB).

With ``search.fidelity.rungs: R`` (0: off), a configuration is first trained cheaply and only
the best go on to train longer:

- **Rungs.** Rung R is a trial's own fidelity: all the campaign's training images (``data.subset``
  less the validation images) for ``training.epochs``. Each rung below costs 1/``reduction`` of
  the one above it (cost = images x epochs): fewer epochs first, down to one, then fewer images
  (the first ones of one fixed random order, so a rung's images include the rung's below). The
  validation images are the same at every rung. Each rung is a complete training, its
  learning-rate schedule fitted to its epochs; a promoted trial trains again from scratch at the
  larger fidelity.
- **Screening first** (``screen: true``, a cascade): a rung below the trained ones screens each
  configuration as Pinto & Cox did (its filters as drawn, a ridge read-out fitted on its
  features: ``search/screen.py``) on all the trials' training images; only the best 1 in
  ``reduction`` of the screened are trained. ``archsearch bench fidelity`` measures how well
  screening ranks architectures as training does.
- **Promotions** (asynchronous successive halving, as ASHA): whenever a trial may start, a trial
  that ended rung k goes on to rung k+1 if it is among the best ``n // reduction`` of the ``n``
  trials that ended rung k so far, the highest rungs first; otherwise a new configuration starts
  at rung 0. A trial at chance at a rung (``search.pruning.at_chance``) or one that failed there
  is never promoted. ``search.trials`` counts configurations: once that many have started,
  promotions go on until none is due.
- **The model** (as BOHB): every rung has its own TPE history, told each result at that rung;
  new configurations are suggested from the highest rung with at least ``search.tpe.
  startup_trials`` results (rung 0 before that). Invalid and failed configurations are told to
  every rung, so that no model proposes them again.
- **The best** is the best trial of the highest rung reached: a trial that got further ranks
  above one that did not (``search.results.ranked``), for the final stage and export alike.

One trial is one MLflow run, whatever its rungs: a promotion reopens it, its epochs continue
the step count of the rungs before, and its metrics ``rung``, ``rung_images``, ``rung_epochs``
and ``rung<k>_loss`` / ``rung<k>_val_acc`` / ``rung<k>_seconds`` say what each rung gave.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import UserError
from .text import plural

MIN_IMAGES = 200  # training images of the cheapest rung, at least


@dataclass(frozen=True)
class Rung:
    """One fidelity: training images and epochs, trained or screened."""

    index: int
    images: int
    epochs: int
    mode: str = "train"  # train | screen (random filters, a ridge read-out)

    def text(self) -> str:
        if self.mode == "screen":
            return f"screened on {self.images:,} images"
        return f"{self.images:,} images x {plural(self.epochs, 'epoch')}"


def rungs_of(fidelity: dict, images: int, epochs: int) -> list[Rung]:
    """The rungs of a campaign whose trials train ``epochs`` epochs on ``images`` images, the
    cheapest first (a screening rung first with ``screen``); one rung (the trial's own) when
    multi-fidelity is off."""
    top, reduction = fidelity["rungs"], fidelity["reduction"]
    screen = fidelity.get("screen", False)
    out: list[Rung] = [Rung(0, images, 1, "screen")] if screen else []
    for k in range(top + 1):
        cost = images * epochs / reduction ** (top - k)
        if cost >= images:
            out.append(Rung(len(out), images, max(1, min(epochs, round(cost / images)))))
        else:
            out.append(Rung(len(out), min(images, round(cost)), 1))
    if top and out[screen].images < MIN_IMAGES:
        raise UserError(
            f"search.fidelity: its cheapest rung would train on {out[screen].images:,} images (of "
            f"{images:,} x {plural(epochs, 'epoch')} at the top, each rung 1/{reduction} of the next), "
            f"fewer than {MIN_IMAGES}; use fewer rungs, a smaller reduction, or more training images"
        )
    seen = [(r.images, r.epochs, r.mode) for r in out]
    if len(set(seen)) < len(seen):
        raise UserError(
            f"search.fidelity: rungs {', '.join(r.text() for r in out)} repeat a fidelity; use fewer rungs"
        )
    return out


def offset(rungs: list[Rung], rung: int) -> int:
    """The step of a trial run's first epoch at ``rung``, less one: the epochs of the rungs below."""
    return sum(r.epochs for r in rungs[:rung])


@dataclass
class Ladder:
    """The results at each rung and the promotions: which trial goes on next."""

    rungs: list[Rung]
    reduction: int
    # per rung: trial -> (loss or None, whether it may be promoted)
    results: list[dict[int, tuple[float | None, bool]]] = field(default_factory=list)
    promoted: list[set[int]] = field(default_factory=list)  # per rung k: trials started at k + 1

    def __post_init__(self) -> None:
        self.results = [{} for _ in self.rungs]
        self.promoted = [set() for _ in self.rungs]

    @property
    def on(self) -> bool:
        return len(self.rungs) > 1

    @property
    def top(self) -> int:
        return len(self.rungs) - 1

    def record(self, trial: int, rung: int, loss: float | None, promotable: bool) -> None:
        """A trial ended ``rung`` with ``loss`` (None: failed there)."""
        self.results[rung][trial] = (loss, promotable and loss is not None)

    def started(self, trial: int, rung: int) -> None:
        """A trial's promotion to ``rung`` started."""
        if rung:
            self.promoted[rung - 1].add(trial)

    def interrupted(self, trial: int, rung: int) -> None:
        """A trial's promotion to ``rung`` stopped before it ended: it may be promoted again."""
        if rung:
            self.promoted[rung - 1].discard(trial)

    def reached(self, trial: int) -> int:
        """The highest rung a trial ended (-1: none)."""
        return max((k for k, r in enumerate(self.results) if trial in r), default=-1)

    def due(self, busy: set[int] = frozenset()) -> list[tuple[int, int]]:
        """The promotions due now, the first to start first: (trial, rung to train at). A trial
        in ``busy`` (in flight) is skipped."""
        out = []
        for k in reversed(range(self.top)):
            ranked = sorted(self.results[k].items(), key=lambda item: (_key(item[1][0]), item[0]))
            for trial, (_, promotable) in ranked[: len(ranked) // self.reduction]:
                if promotable and trial not in self.promoted[k] and trial not in busy:
                    out.append((trial, k + 1))
        return out

    def model_rung(self, enough: int) -> int:
        """The rung whose results TPE models: the highest with at least ``enough`` losses."""
        counts = [sum(loss is not None for loss, _ in r.values()) for r in self.results]
        return max((k for k, n in enumerate(counts) if n >= max(1, enough)), default=0)

    def counts(self) -> list[int]:
        """Trials that ended each rung."""
        return [len(r) for r in self.results]


def _key(loss: float | None) -> float:
    return math.inf if loss is None else loss
