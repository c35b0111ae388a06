"""The final models of a campaign averaged: ``search.final.ensemble`` and ``archsearch retrain
--ensemble``.

The members are final runs (each trained on training + validation images and tested once);
the ensemble is the mean of their class probabilities (:class:`models.Ensemble`). It is tested
once on the test set and logged as a run tagged ``ensemble`` in the campaign's experiment: its
params name the members (``members``: trial numbers, best first; ``member_runs``: their final
runs), its ``architecture.json`` holds their configurations, and its weights are the members'
own. ``status`` reports it and ``export`` takes it before any single model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from models import Ensemble, build_model

from .data import Data
from .outcome import Outcome
from .text import plural
from .tracking import Campaign, TrialRecord
from .train import amp_of, validate

MEMBERS, MEMBER_RUNS = "members", "member_runs"  # its params: trial numbers, final run ids


class Member(Protocol):
    """A final model (:class:`search.retrain.Final`) as an ensemble needs it."""

    trial: int
    name: str
    run_id: str
    test_acc: float


@dataclass
class Averaged:
    """An ensemble as tested."""

    run_id: str
    trials: list[int]  # its members' trial numbers, best first
    test_acc: float
    test_loss: float

    @property
    def name(self) -> str:
        return ensemble_name(self.trials)


def ensemble_name(trials: list[int]) -> str:
    return "ensemble " + " + ".join(f"t{t:03d}" for t in trials)


def member_runs(record: TrialRecord) -> list[str]:
    """The final runs an ensemble run averages (empty: not an ensemble run)."""
    return [r for r in record.params.get(MEMBER_RUNS, "").split(",") if r]


def read_ensemble(
    campaign: Campaign, record: TrialRecord, input_shape: tuple, classes: int
) -> tuple[Ensemble, dict]:
    """An ensemble run's model, on the CPU in eval mode, and its configuration (architecture.json:
    its members' trials, final runs, names and configs)."""
    config = json.loads(campaign.read_text("architecture.json", record.run_id))
    return averaged_model(campaign, config, input_shape, classes).eval(), config


def averaged_model(campaign: Campaign, config: dict, input_shape: tuple, classes: int) -> Ensemble:
    """The members of an ensemble's ``config``, built and given their final runs' weights."""
    nets = []
    for member in config["members"]:
        net = build_model(member["config"]["architecture"], input_shape, classes)
        net.load_state_dict(campaign.read_weights(member["run_id"]))
        nets.append(net)
    return Ensemble(nets)


def ensemble_stage(
    campaign: Campaign, finals: Sequence[Member], data: Data, dev: torch.device, say: Any = print
) -> Averaged | None:
    """The final models in ``finals`` (best trial first) averaged, tested once on ``data``'s test
    set and logged; None when fewer than two finished (said) or its test failed (recorded). An
    ensemble of the same final runs that ended OK before (a resumed campaign) is kept; one left
    RUNNING by a driver that died is marked KILLED and made again."""
    if len(finals) < 2:
        say(f"ensemble: {plural(len(finals), 'final model')} finished, it needs two; none made")
        return None
    runs = [f.run_id for f in finals]
    trials = [f.trial for f in finals]
    before = campaign.trials("ensemble")
    for r in before:
        if r.outcome == Outcome.RUNNING:
            campaign.mark_killed(r, "the driver stopped while this ensemble was tested")
    kept = [r for r in before if r.outcome == Outcome.OK and member_runs(r) == runs]
    if kept:
        m = kept[-1].metrics
        out = Averaged(
            kept[-1].run_id, trials, m.get("test_acc", float("nan")), m.get("test_loss", float("nan"))
        )
        say(f"{out.name}: tested before this run, kept (test_acc {out.test_acc:.4f})")
        return out
    config = {
        "members": [
            {
                "trial": f.trial,
                "run_id": f.run_id,
                "name": f.name,
                "config": json.loads(campaign.read_text("architecture.json", f.run_id)),
            }
            for f in finals
        ]
    }
    params = {MEMBERS: ",".join(map(str, trials)), MEMBER_RUNS: ",".join(runs)}
    attempt = 1 + sum(1 for r in before if r.trial == trials[0])
    run = campaign.start_ensemble(trials[0], attempt, ensemble_name(trials), params, config)
    t0 = time.perf_counter()

    def test() -> tuple[float, float]:
        model = averaged_model(campaign, config, data.input_shape, data.n_classes)
        model = model.to(dev, memory_format=torch.channels_last)
        return validate(model, data.x_test, data.y_test, amp_of(dev)[0])  # once

    tested, error = run.recording(test)
    if error is not None:
        say(f"{ensemble_name(trials)}: failed: {error}")
        return None
    test_acc, test_loss = tested
    seconds, best_alone = time.perf_counter() - t0, max(f.test_acc for f in finals)
    metrics = {"test_acc": test_acc, "test_loss": test_loss, "best_member_test_acc": best_alone}
    metrics.update(test_seconds=seconds, train_images=float(len(data.x_train)))  # its members'
    run.finish(Outcome.OK, None, metrics)
    out = Averaged(run.run_id, trials, test_acc, test_loss)
    say(
        f"{out.name}: the mean of {len(finals)} final models' probabilities, test_acc {test_acc:.4f} "
        f"(the best alone {best_alone:.4f}), {seconds:.1f} s"
    )
    return out
