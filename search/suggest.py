"""Proposing trials: hyperopt's TPE (or random search) behind ``ask`` and ``tell``, and the seeds.

hyperopt has no ask/tell API; :class:`Search` provides one over its internals, and this is the
only module that touches them (``Trials`` documents, ``tpe.suggest`` / ``rand.suggest``):

- ``tell`` inserts a finished document (``JOB_STATE_DONE``) with the trial's assignment
  (misc vals) and result, and appends it to the ``Trials`` view TPE reads (what
  ``Trials.refresh`` would do, without its pass over the whole history);
- ``ask`` calls the algorithm for one new trial id and decodes the document it returns; trials
  in flight are inserted as if they had the worst loss seen so far (a constant liar), for that
  suggestion only, and taken off the end of the history afterwards.

Each suggestion is seeded from the campaign seed and the trial number, so the sequence depends
only on the seed and the history: a resumed campaign, whose history is rebuilt from MLflow,
continues exactly where it stopped.

What TPE learns from: ok and pruned trials report ``loss = 1 - val_acc``; invalid and failed
trials report no loss, which TPE ranks with the worst, so regions of invalid architectures stop
being proposed. A suggestion that repeats a configuration already evaluated (or in flight) is
drawn again (up to ``REDRAWS`` times) so that no budget goes to a known result.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK, Domain, Trials, rand, tpe

from .compile import CompiledSpace, config_hash, plain

REDRAWS = 10  # suggestions drawn again when they repeat an evaluated configuration


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed derived from the campaign seed and stable keys (trial number, purpose, ...)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] & 0x7FFFFFFF)


def trial_seed(seed: int, trial: int) -> int:
    """The seed of a trial's weights, batch order and augmentation."""
    return derive_seed(seed, trial, 0)


class Search:
    """hyperopt's TPE (or random search) behind ``ask(trial)`` and ``tell(trial, vals, loss)``."""

    def __init__(self, compiled: CompiledSpace, settings: dict):
        self.compiled = compiled
        self.seed = settings["seed"]
        self.domain = Domain(lambda config: 0.0, compiled.expr)
        self.trials = Trials()
        self.told: set[int] = set()  # trials whose result the history holds
        self.startup = 0
        if settings["algo"] == "random":
            self.algo: Callable = rand.suggest
        else:
            self.startup = settings["tpe"]["startup_trials"]
            t = settings["tpe"]
            self.algo = partial(
                tpe.suggest,
                n_startup_jobs=t["startup_trials"],
                gamma=t["gamma"],
                n_EI_candidates=t["candidates"],
            )

    def share_history(self, other: Search) -> None:
        """Read and write ``other``'s history from now on (one history, two algorithms)."""
        self.trials, self.told = other.trials, other.told

    def ask(
        self, trial: int, avoid: set[str] = frozenset(), pending: dict[int, dict] | None = None
    ) -> tuple[dict[str, list], dict]:
        """The assignment (hyperopt misc vals) and decoded config suggested for trial number ``trial``.

        ``avoid``: config hashes not to suggest again. ``pending``: the assignments of trials in
        flight, told to TPE for this suggestion only as if their loss were the worst seen so
        far (a constant liar), so that it looks elsewhere; those whose result the history holds
        already (a multi-fidelity trial at a higher rung) are not told again.
        """
        # TPE draws at random until it has startup_trials results; asking rand directly skips
        # building TPE's model for nothing (the draws are the same)
        algo = rand.suggest if len(self.trials.trials) < self.startup else self.algo
        lies = [t for t in (pending or {}) if algo is not rand.suggest and t not in self.told]
        if lies:
            losses = [x for x in self.trials.losses() if x is not None]
            for t in lies:
                self._insert(t, pending[t], max(losses, default=1.0))
        try:
            for redraw in range(REDRAWS + 1):
                doc = algo([trial], self.domain, self.trials, derive_seed(self.seed, trial, 1, redraw))[0]
                vals = plain(doc["misc"]["vals"])
                config = self.compiled.decode(vals)
                if config_hash(config) not in avoid:
                    break
        finally:
            if lies:  # the last documents inserted: taken off the end again
                del self.trials._dynamic_trials[-len(lies) :]
                del self.trials._trials[-len(lies) :]
        return vals, config

    def tell(self, trial: int, vals: dict[str, list], loss: float | None) -> None:
        """Record a trial's result: a loss to learn from, or None (invalid, failed)."""
        self._insert(trial, vals, loss)
        self.told.add(trial)

    def _insert(self, trial: int, vals: dict[str, list], loss: float | None) -> None:
        idxs = {label: [trial] if v else [] for label, v in vals.items()}
        misc = {"tid": trial, "cmd": self.domain.cmd, "workdir": None, "idxs": idxs, "vals": vals}
        result = {"status": STATUS_OK, "loss": loss} if loss is not None else {"status": STATUS_FAIL}
        doc = self.trials.new_trial_docs([trial], [None], [result], [misc])[0]
        doc["state"] = JOB_STATE_DONE
        self.trials.insert_trial_docs([doc])  # stores a copy
        # what refresh() would add (a done document, no experiment key), without its pass over
        # the whole history: constant time per trial
        self.trials._trials.append(self.trials._dynamic_trials[-1])
        self.trials._ids.add(trial)
