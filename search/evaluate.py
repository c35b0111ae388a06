"""Evaluate one trial: the evaluator of its ``training.mode``, chosen by name from a table.

- ``train``: backprop with the trial's recipe, validated every epoch (``search.train``);
- ``screen``: random filters, features extracted once, a ridge read-out (``search.screen``), as
  Pinto & Cox screened.

Every evaluator keeps the trial contract (``search.trial.Evaluator``): it takes a decoded config,
the data on its device and a seed, and always returns a ``TrialResult``. A third evaluator is
one more entry in :data:`EVALUATORS` and one more choice of ``training.mode`` in the schema.
"""

from __future__ import annotations

from typing import Any

from .data import Data
from .screen import screen_trial
from .train import train_trial
from .trial import Evaluator, TrialResult

EVALUATORS: dict[str, Evaluator] = {"train": train_trial, "screen": screen_trial}


def evaluate(config: dict, data: Data, **options: Any) -> TrialResult:
    """Run one trial with the evaluator of its ``training.mode``; ``options``: the contract's
    ``seed``, ``limits``, ``on_epoch``, ``should_stop``, ``timeout``."""
    return EVALUATORS[config["training"].get("mode", "train")](config, data, **options)
