"""Proposing trials: hyperopt's TPE (or random search) behind ``ask`` and ``tell``, and the seeds.

hyperopt has no ask/tell API; :class:`Search` provides one over its internals, and this is the
only module that touches them (``Trials`` documents, ``tpe.suggest`` / ``rand.suggest``):

- ``tell`` inserts a finished document (``JOB_STATE_DONE``) with the trial's assignment
  (misc vals) and result, and appends it to the ``Trials`` view TPE reads (what
  ``Trials.refresh`` would do, without its pass over the whole history);
- ``ask`` calls the algorithm for one new trial id and decodes the assignment it returns; trials
  in flight are told as if they had the worst loss seen so far (a constant liar), for that
  suggestion only.
- TPE's suggestion is ``tpe.suggest``'s, step for step, except for what it rebuilds on every
  call: its model's graph (built once) and its observations, which it gathers from every
  document (each parameter's trial ids and values, in order of id: 0.7 s of a 1 s suggestion
  after 10,000 trials). :class:`Observations` keeps them as results come in; a test pins that
  the suggestions are ``tpe.suggest``'s.

Each suggestion is seeded from the campaign seed and the trial number, so the sequence depends
only on the seed and the history: a resumed campaign, whose history is rebuilt from MLflow,
continues exactly where it stopped.

What TPE learns from: ok and pruned trials report ``loss = 1 - val_acc``; invalid and failed
trials report no loss, which TPE ranks with the worst, so regions of invalid architectures stop
being proposed. A suggestion that repeats a configuration already evaluated (or in flight) is
drawn again (up to ``REDRAWS`` times) so that no budget goes to a known result.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

import numpy as np
from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK, Domain, Trials, pyll, rand, tpe
from hyperopt.base import miscs_update_idxs_vals

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
        self.observed = Observations(list(self.domain.params))
        self.startup = 0
        self.tpe: dict | None = None
        if settings["algo"] != "random":
            self.tpe = settings["tpe"]
            self.startup = self.tpe["startup_trials"]
        self._posterior: tuple | None = None  # TPE's model, as a graph of hyperopt's: built once

    def share_history(self, other: Search) -> None:
        """Read and write ``other``'s history from now on (one history, two algorithms)."""
        self.trials, self.told, self.observed = other.trials, other.told, other.observed

    def ask(
        self, trial: int, avoid: set[str] = frozenset(), pending: dict[int, dict] | None = None
    ) -> tuple[dict[str, list], dict]:
        """The assignment (hyperopt misc vals) and decoded config suggested for trial number ``trial``.

        ``avoid``: config hashes not to suggest again. ``pending``: the assignments of trials in
        flight, told to TPE for this suggestion only as if their loss were the worst seen so
        far (a constant liar), so that it looks elsewhere; those whose result the history holds
        already (a multi-fidelity trial at a higher rung) are not told again.
        """
        return self.prepare(avoid, pending)(trial)

    def prepare(
        self, avoid: set[str] = frozenset(), pending: dict[int, dict] | None = None, apart: bool = False
    ) -> Callable[[int], tuple[dict[str, list], dict]]:
        """:meth:`ask` in two steps: what the suggestion is made from, taken now, and a function
        that makes it for a trial number. ``apart``: the function may run in another thread
        while results are told here (it works on a copy of the history)."""
        # TPE draws at random until it has startup_trials results; asking rand directly skips
        # building TPE's model for nothing (the draws are the same)
        random = self.tpe is None or len(self.trials.trials) < self.startup
        observed = self.observed
        lies = [t for t in (pending or {}) if not random and t not in self.told]
        if lies or (apart and not random):
            worst = max(observed.learned(), default=1.0)
            observed = observed.copy()
            for t in lies:
                observed.add(t, pending[t], worst)
        if not random and self._posterior is None:
            prior = tpe._default_prior_weight
            self._posterior = tpe.build_posterior_wrapper(self.domain, prior, self.tpe["gamma"])
        avoid = set(avoid)

        def suggest(trial: int) -> tuple[dict[str, list], dict]:
            for redraw in range(REDRAWS + 1):
                seed = derive_seed(self.seed, trial, 1, redraw)
                if random:
                    vals = plain(rand.suggest([trial], self.domain, self.trials, seed)[0]["misc"]["vals"])
                else:
                    vals = plain(self.suggest_tpe(trial, seed, observed))
                config = self.compiled.decode(vals)
                if config_hash(config) not in avoid:
                    break
            return vals, config

        return suggest

    def suggest_tpe(self, trial: int, seed: int, observed: Observations) -> dict[str, list]:
        """``tpe.suggest``'s assignment for trial ``trial`` (hyperopt 0.3), from ``observed``."""
        assert self.tpe is not None
        if len(observed.tids) < self.startup:
            return rand.suggest([trial], self.domain, self.trials, seed)[0]["misc"]["vals"]
        domain = self.domain
        assert self._posterior is not None  # built by prepare(), in the thread that tells
        obs, obs_loss, posterior = self._posterior
        fake_0 = max(max(observed.tids), trial) + 2
        fake_ids = list(range(fake_0, fake_0 + self.tpe["candidates"]))
        given = observed.copy()  # hyperopt's to use as it likes
        memo = {
            domain.s_new_ids: fake_ids,
            domain.s_rng: np.random.default_rng(seed),
            obs_loss["idxs"]: given.tids,
            obs_loss["vals"]: given.losses,
            obs["idxs"]: given.idxs,
            obs["vals"]: given.vals,
        }
        idxs, vals = pyll.rec_eval(posterior, memo=memo, print_node_on_error=False)
        for label, param in domain.params.items():  # hyperopt's offset of randint(low, high)
            if param.name == "randint" and len(param.pos_args) == 2:
                vals[label] = [v + param.pos_args[0].obj for v in vals[label]]
        misc = {"tid": trial, "cmd": domain.cmd, "workdir": domain.workdir}
        miscs_update_idxs_vals([misc], idxs, vals, idxs_map={fake_ids[0]: trial}, assert_all_vals_used=False)
        return misc["vals"]

    def tell(self, trial: int, vals: dict[str, list], loss: float | None) -> None:
        """Record a trial's result: a loss to learn from, or None (invalid, failed)."""
        self._insert(trial, vals, loss)
        self.observed.add(trial, vals, loss)
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


class Observations:
    """What TPE fits its model to, in the form ``tpe.suggest`` gathers from every document on
    every call: one result per trial id (the lowest loss told for it; none counts as infinite),
    in order of id, and each parameter's ids and values where the trial has one. Kept as results
    come in: a tell costs a few list insertions, not a pass over the history."""

    def __init__(self, keys: list[str]):
        self.tids: list[int] = []
        self.losses: list[float] = []
        self.idxs: dict[str, list[int]] = {k: [] for k in keys}
        self.vals: dict[str, list] = {k: [] for k in keys}

    def add(self, tid: int, vals: dict[str, list], loss: float | None) -> None:
        loss = float("inf") if loss is None else float(loss)
        i = bisect_left(self.tids, tid)
        if i < len(self.tids) and self.tids[i] == tid:
            if loss > self.losses[i]:  # tpe.suggest keeps the best result of a trial id (the last of equals)
                return
            self._remove(i)
        self.tids.insert(i, tid)
        self.losses.insert(i, loss)
        for key, ids in self.idxs.items():
            if vals[key]:
                j = bisect_left(ids, tid)
                ids.insert(j, tid)
                self.vals[key][j:j] = vals[key]

    def _remove(self, i: int) -> None:
        tid = self.tids.pop(i)
        del self.losses[i]
        for key, ids in self.idxs.items():
            j = bisect_left(ids, tid)
            if j < len(ids) and ids[j] == tid:
                del ids[j], self.vals[key][j]

    def learned(self) -> list[float]:
        """The finite losses told."""
        return [x for x in self.losses if x != float("inf")]

    def copy(self) -> Observations:
        out = Observations([])
        out.tids, out.losses = list(self.tids), list(self.losses)
        out.idxs = {k: list(v) for k, v in self.idxs.items()}
        out.vals = {k: list(v) for k, v in self.vals.items()}
        return out
