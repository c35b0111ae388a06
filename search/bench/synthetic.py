"""A benchmark objective: a trial's result computed from its configuration in microseconds, with
no training, so that what a campaign of thousands of trials costs is the platform's own time
(suggestions, tracking, reads back). ``bench scale`` and the long-campaign test pass it to
``search.run.launch`` as the evaluator; it is never a ``training.mode`` and nothing outside the
benchmarks offers it.

``python -m search.bench.synthetic_run run ...`` is ``archsearch run`` with it
(:mod:`search.bench.synthetic_run`).

The loss is a smooth function of the learning rate, the depth and the filter counts plus a small
deterministic jitter from the configuration's hash, so that TPE has something to learn and the
same configuration always scores the same. Each epoch of ``training.epochs`` is reported as a
real trial reports it (the driver logs it), so the tracking writes per trial are a real trial's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..compile import config_hash
from ..data import Data
from ..outcome import Outcome
from ..trial import TrialResult, planned

LABEL = "synthetic benchmark objective (no training)"


def synthetic_loss(config: dict) -> float:
    """The objective's loss of a configuration, in [0.05, 0.8] (never at chance): best near
    lr = 3e-3, with more filters and fewer layers, plus a jitter of at most 0.02 from its hash."""
    arch, recipe = config["architecture"], config["training"]
    lr = math.log10(recipe["lr"]) + 2.5
    filters = sum(math.log2(layer["filters"]["count"]) for layer in arch["layers"]) / len(arch["layers"])
    jitter = int(config_hash(config)[:8], 16) / 16**8
    loss = 0.15 + 0.08 * lr * lr + 0.02 * len(arch["layers"]) - 0.01 * filters + 0.02 * jitter
    return min(0.8, max(0.05, loss))


def synthetic_trial(
    config: dict,
    data: Data,
    *,
    seed: int,
    limits: Any = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    timeout: float | None = None,
) -> TrialResult:
    """The trial contract's evaluator (``search.trial.Evaluator``) for the synthetic objective:
    the shape pass as a real trial has it (invalid architectures stay invalid), then one
    reported epoch per ``training.epochs`` reaching :func:`synthetic_loss` at the last."""
    result = planned(config["architecture"], data, limits)
    if result.outcome != Outcome.OK:
        return result
    loss, epochs = synthetic_loss(config), config["training"]["epochs"]
    history = []
    for epoch in range(1, epochs + 1):
        if should_stop is not None and should_stop():
            raise KeyboardInterrupt("stopped")
        at = min(0.8, loss * (1 + 0.5 * (epochs - epoch) / epochs))  # falling to its final value
        record = {
            "train_loss": at,
            "val_acc": 1.0 - at,
            "val_loss": at,
            "fit_seconds": 0.0,
            "epoch_seconds": 0.0,
        }
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
    return TrialResult.from_history(
        history,
        train_seconds=0.0,
        images_per_second=None,
        params=result.params,
        macs=result.macs,
        device=result.device,
    )
