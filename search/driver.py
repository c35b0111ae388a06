"""The driver: an ask/tell loop over hyperopt that runs one campaign, tracked in MLflow.

The loop keeps as many trials in flight as its executor runs at once (one inline, W worker
processes, the slots of a Dask cluster; see ``executor.py``) and asks for the next trial as
soon as any ends. It is the only writer to MLflow: it creates each trial's run before the
trial starts, logs the epochs the workers report, and ends the run with the result.

hyperopt has no ask/tell API; :class:`Search` provides one over its
internals (``Trials`` docs and ``tpe.suggest``/``rand.suggest``). Each
suggestion is seeded from the campaign seed and the trial number, so the
sequence depends only on the seed and the history: a resumed campaign,
whose history is rebuilt from MLflow, continues exactly where it stopped.

What TPE learns from: ok trials report ``loss = 1 - val_acc``; invalid and
failed trials report no loss, which hyperopt's TPE ranks with the worst, so
regions of invalid architectures stop being proposed. A suggestion that
repeats a configuration already evaluated (or in flight) is drawn again (up
to ``REDRAWS`` times) so that no budget goes to a known result. Trials in
flight count, while TPE suggests, as if they had the worst loss seen so far
(a constant liar), so that parallel workers spread out.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK, Domain, Trials, rand, tpe

from .compile import CompiledSpace, plain
from .errors import UserError
from .evaluate import TrialResult, error_line
from .prune import Pruner
from .tracking import ENDED, LEARNED, PROGRESS_EVERY, TAG, Campaign, TrackingError, TrialRecord, config_hash

MAX_FAILURES_IN_ROW = 10
MAX_ATTEMPTS = 3  # runs of a trial whose worker dies: the first and two retries
WAIT = 0.5  # seconds the loop waits for news from the workers before looking at the clock again
PLOTS_EVERY = 60.0  # seconds between refreshes of the campaign's plots while it runs
REDRAWS = 10  # suggestions drawn again when they repeat an evaluated configuration


class CampaignFailed(UserError):
    """The campaign cannot usefully go on (e.g. every trial fails)."""


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed derived from the campaign seed and stable keys (trial number, purpose, ...)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] & 0x7FFFFFFF)


def trial_seed(seed: int, trial: int) -> int:
    """The seed of a trial's weights, batch order and augmentation."""
    return derive_seed(seed, trial, 0)


# ---------------------------------------------------------------- ask / tell over hyperopt


class Search:
    """hyperopt's TPE (or random search) behind ``ask(trial)`` and ``tell(trial, vals, loss)``."""

    def __init__(self, compiled: CompiledSpace, settings: dict):
        self.compiled = compiled
        self.seed = settings["seed"]
        self.domain = Domain(lambda config: 0.0, compiled.expr)
        self.trials = Trials()
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

    def ask(
        self, trial: int, avoid: set[str] = frozenset(), pending: dict[int, dict] | None = None
    ) -> tuple[dict[str, list], dict]:
        """The assignment (hyperopt misc vals) and decoded config suggested for trial number ``trial``.

        ``avoid``: config hashes not to suggest again. ``pending``: the assignments of trials in
        flight, told to TPE for this suggestion only as if their loss were the worst seen so
        far (a constant liar), so that it looks elsewhere.
        """
        # TPE draws at random until it has startup_trials results; asking rand directly skips
        # building TPE's model for nothing (the draws are the same)
        algo = rand.suggest if len(self.trials.trials) < self.startup else self.algo
        lies = [t for t in (pending or {}) if algo is not rand.suggest]
        if lies:
            losses = [x for x in self.trials.losses() if x is not None]
            for t in lies:
                self.tell(t, pending[t], max(losses, default=1.0))
        try:
            for redraw in range(REDRAWS + 1):
                doc = algo([trial], self.domain, self.trials, derive_seed(self.seed, trial, 1, redraw))[0]
                vals = plain(doc["misc"]["vals"])
                config = self.compiled.decode(vals)
                if config_hash(config) not in avoid:
                    break
        finally:
            if lies:
                self.trials._dynamic_trials = [d for d in self.trials._dynamic_trials if d["tid"] not in lies]
                self.trials.refresh()
        return vals, config

    def tell(self, trial: int, vals: dict[str, list], loss: float | None) -> None:
        """Record a trial's result: a loss to learn from, or None (invalid, failed)."""
        idxs = {label: [trial] if v else [] for label, v in vals.items()}
        misc = {"tid": trial, "cmd": self.domain.cmd, "workdir": None, "idxs": idxs, "vals": vals}
        result = {"status": STATUS_OK, "loss": loss} if loss is not None else {"status": STATUS_FAIL}
        doc = self.trials.new_trial_docs([trial], [None], [result], [misc])[0]
        doc["state"] = JOB_STATE_DONE
        self.trials.insert_trial_docs([doc])
        self.trials.refresh()


# ---------------------------------------------------------------- the campaign loop


@dataclass
class State:
    """Where a campaign stands: what ended, what to re-run, the best so far."""

    ended: dict[int, str] = field(default_factory=dict)  # trial -> outcome
    seen: set[str] = field(default_factory=set)  # config hashes evaluated
    requeue: list[TrialRecord] = field(default_factory=list)  # killed trials, re-run first
    next_trial: int = 0
    best: dict[str, Any] | None = None  # trial, loss, val_acc, name
    failures_in_row: int = 0
    last_reason: str | None = None  # of the last trial that was not ok
    compute: float = 0.0  # device-seconds the ended trials trained (or screened) for
    durations: list[float] = field(default_factory=list)  # wall seconds of the trials this driver ran

    def end(self, trial: int, outcome: str, chash: str, loss: float | None, val_acc: Any, name: str) -> bool:
        """Count an ended trial (run now or read back); True when it is the new best."""
        self.ended[trial] = outcome
        self.seen.add(chash)
        if outcome == "ok" and (self.best is None or loss < self.best["loss"]):
            self.best = {"trial": trial, "loss": loss, "val_acc": val_acc, "name": name}
            return True
        return False

    def record(self, trial: int, outcome: str, chash: str, result: TrialResult, name: str) -> bool:
        """Count a trial this driver ran, and the failures in a row; True when it is the new best."""
        self.failures_in_row = self.failures_in_row + 1 if outcome == "failed" else 0
        self.last_reason = result.reason if outcome not in LEARNED else self.last_reason
        self.compute += result.train_seconds
        return self.end(trial, outcome, chash, result.loss, result.val_acc, name)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.ended.values() if o == outcome)


def rebuild(campaign: Campaign, search: Search, pruner: Pruner | None = None) -> State:
    """The state of a campaign from its MLflow runs; trials left RUNNING are marked KILLED.
    With early stopping on, the pruner gets the epochs of the ended trials back too."""
    state = State()
    records = campaign.trials()
    for r in records:
        state.compute += r.metrics.get("train_seconds", 0.0)
        if r.outcome in ENDED:
            state.end(r.trial, r.outcome, r.config_hash, r.loss, r.metrics.get("val_acc"), r.name)
            search.tell(r.trial, r.vals, r.loss if r.outcome in LEARNED else None)
            if pruner is not None and pruner.active and r.outcome in LEARNED:
                pruner.history(r.trial, [m.value for m in campaign.metric_history(r.run_id, "val_acc")])
    for r in records:
        if r.outcome == "running":  # its driver died (SIGKILL, power loss): nobody will end it
            campaign.mark_killed(r, "the driver stopped while this trial ran")
        if r.outcome in ("running", "killed") and r.trial not in state.ended:
            state.requeue = [q for q in state.requeue if q.trial != r.trial] + [r]
    state.next_trial = max((r.trial for r in records), default=-1) + 1
    return state


@dataclass
class Flight:
    """A trial in flight: its current attempt's run and what it was asked."""

    trial: int
    attempt: int
    vals: dict[str, list]
    config: dict
    run: Any  # TrialRun
    started: float = field(default_factory=time.monotonic)
    source: str | None = None  # --warm-start, --points
    history: list[dict[str, float]] = field(default_factory=list)  # the epochs reported so far


def run_campaign(
    campaign: Campaign,
    compiled: CompiledSpace,
    executor: Any,
    settings: dict,
    *,
    make_job: Callable[[int, dict], Any],
    device_tag: str,
    progress: Any,
    interrupts: Interrupts | None = None,
    points: list[tuple[dict, dict, str]] = (),
    plan: Callable[[dict], TrialResult] | None = None,
) -> tuple[State, str]:
    """Run trials until a stop condition holds; returns the final state and why it stopped.

    Keeps as many trials in flight as the executor can run (one with the inline executor),
    asking for a new one as soon as any ends. Trials in flight are told to TPE as if they
    had the worst loss seen so far (a constant liar), so that parallel workers do not all
    explore the same neighbourhood; each lie is replaced by the real result when it comes.

    ``points`` (vals, config, source): configurations to evaluate before any suggestion, in
    order (``--warm-start``, ``--points``); those already evaluated (a resumed campaign) are
    skipped. They are told to TPE like any trial.

    ``plan``: a configuration's planned result (its params and MACs, from the dry shape pass),
    for trials stopped early, whose worker never returns one.
    """
    interrupts = interrupts or Interrupts()
    plots = Plots()
    search = Search(compiled, settings)
    pruner = Pruner(settings["pruning"])
    state = rebuild(campaign, search, pruner)
    budget, threshold, seed = settings["time_budget"], settings["loss_threshold"], settings["seed"]
    start = time.monotonic()
    enough = f"{settings['trials']} trials ended"
    flights: dict[str, Flight] = {}
    progress.start(len(state.ended), settings["trials"], state.best)

    def stop_starting() -> str | None:
        """Why no new trial may start (None: one may)."""
        if len(state.ended) + len(flights) >= settings["trials"]:
            return enough
        if budget is not None:
            left = budget - (time.monotonic() - start)
            if left <= 0:
                return f"time budget of {budget:g} s spent"
            # a trial started now would end past the budget: start none, let those in flight end
            typical = statistics.median(state.durations) if state.durations else None
            if typical is not None and left < typical:
                return (
                    f"time budget of {budget:g} s: {left:.0f} s left, less than a trial takes "
                    f"(median {typical:.0f} s), so no new trial started"
                )
        if threshold is not None and state.best is not None and state.best["loss"] <= threshold:
            return f"loss {state.best['loss']:.4f} <= threshold {threshold:g}"
        return None

    given = list(points)  # still to evaluate

    def next_point() -> tuple[dict, dict, str] | None:
        while given:
            vals, config, source = given.pop(0)
            if config_hash(config) not in state.seen | {config_hash(f.config) for f in flights.values()}:
                return vals, config, source
        return None

    def launch_next() -> None:
        # a killed trial's configuration first, then the given points, else a new suggestion
        tags = {}
        point = None if state.requeue else next_point()
        if state.requeue:
            killed = state.requeue.pop(0)
            trial, attempt, vals = killed.trial, killed.attempt + 1, killed.vals
            config = compiled.decode(vals)
            if killed.source:
                tags[TAG + "source"] = killed.source
        elif point is not None:
            trial, attempt = state.next_trial, 1
            state.next_trial += 1
            vals, config, tags[TAG + "source"] = point
        else:
            trial, attempt = state.next_trial, 1
            state.next_trial += 1
            pending = {f.trial: f.vals for f in flights.values()}
            avoid = state.seen | {config_hash(f.config) for f in flights.values()}
            vals, config = search.ask(trial, avoid, pending)
        # the child run exists (RUNNING) before the trial starts
        run = campaign.start_trial(
            trial, attempt, config, vals, trial_seed(seed, trial), device_tag, extra_tags=tags
        )
        flights[str(trial)] = Flight(trial, attempt, vals, config, run, source=tags.get(TAG + "source"))
        progress.trial_start(trial, config)
        executor.submit(make_job(trial, config))

    def handle(event: Any) -> None:
        flight = flights.get(event.key)
        if flight is None:
            return
        if event.kind == "started":
            flight.run.set_tags({TAG + "worker": event.where, TAG + "device": event.device})
        elif event.kind == "epoch":
            flight.run.log_epoch(event.epoch, event.metrics)
            flight.history.append(dict(event.metrics))
            epochs = flight.config["training"]["epochs"]
            progress.epoch(flight.trial, event.epoch, epochs, event.metrics)
            if pruner.active and "val_acc" in event.metrics:
                why = pruner.report(flight.trial, event.epoch, event.metrics["val_acc"], epochs)
                if why is not None:
                    executor.stop(str(flight.trial))
                    size = plan(flight.config) if plan is not None else None
                    ended(flight, pruned(flight.history, why, size))
        elif event.kind == "lost":
            lost(flight, event.reason)
        elif event.kind == "done":
            ended(flight, event.result)

    def lost(flight: Flight, reason: str) -> None:
        """A worker died running this trial: run it again (a new attempt), or give up."""
        if flight.attempt >= MAX_ATTEMPTS:
            executor.cancel(str(flight.trial))
            why = f"{reason}; lost {MAX_ATTEMPTS} times, so not run again"
            ended(flight, TrialResult("failed", reason=why))
            return
        flight.run.finish("killed", reason, {})
        progress.trial_lost(flight.trial, reason)
        flight.attempt += 1
        flight.run = campaign.start_trial(
            flight.trial,
            flight.attempt,
            flight.config,
            flight.vals,
            trial_seed(seed, flight.trial),
            device_tag,
            extra_tags={TAG + "source": flight.source} if flight.source else None,
        )

    def ended(flight: Flight, result: TrialResult) -> None:
        del flights[str(flight.trial)]
        if result.outcome != "invalid":  # an invalid trial takes no time to say so
            state.durations.append(time.monotonic() - flight.started)
        flight.run.finish(
            result.outcome,
            result.reason,
            result.metrics(),
            state_dict=result.state_dict,
            traceback=result.traceback,
        )
        search.tell(flight.trial, flight.vals, result.loss if result.outcome in LEARNED else None)
        is_best = state.record(
            flight.trial, result.outcome, config_hash(flight.config), result, flight.run.name
        )
        best = {"best_val_acc": state.best["val_acc"], "best_loss": state.best["loss"]} if state.best else {}
        best["compute_seconds"] = state.compute
        campaign.log_progress(flight.trial, best, len(state.ended), improved=is_best)
        progress.trial_end(flight.trial, result, is_best, state.best)
        plots.after_trial(campaign)

    told = None  # the reason to start no more trials (other than enough), once said
    try:
        while True:
            interrupts.check()
            if state.failures_in_row >= MAX_FAILURES_IN_ROW:
                raise CampaignFailed(
                    f"campaign {campaign.name!r}: {MAX_FAILURES_IN_ROW} trials failed in a row, so it "
                    f"stopped (last reason: {state.last_reason}); see the failed runs' archsearch.reason "
                    "in MLflow"
                )
            why = stop_starting()
            while why is None and len(flights) < executor.capacity():
                launch_next()
                why = stop_starting()
            if why is not None and flights and why not in (told, enough):
                progress.note(f"{why}; waiting for the {len(flights)} running")
                told = why
            if not flights:
                return plots.finish(campaign, state, why or "nothing left to run")
            executor.wait(handle, timeout=WAIT)
            campaign.heartbeat(at_most_every=PROGRESS_EVERY)  # long trials keep the campaign alive
    except BaseException as e:
        # Ctrl-C or a campaign that fails: the trials in flight end KILLED (a resume runs them
        # again); when the tracking store is gone they stay RUNNING, and a resume marks them
        if not isinstance(e, TrackingError):
            executor.close()
            reason = "interrupted (Ctrl-C or SIGTERM)" if isinstance(e, KeyboardInterrupt) else error_line(e)
            for flight in flights.values():
                with contextlib.suppress(Exception):
                    flight.run.finish("killed", reason, {})
        raise
    finally:
        executor.close()


def pruned(history: list[dict[str, float]], why: str, size: TrialResult | None = None) -> TrialResult:
    """The result of a trial stopped early, from the epochs it reported (and its params and
    MACs from ``size``, its planned result)."""
    last = history[-1]
    best = max(range(len(history)), key=lambda i: history[i]["val_acc"])
    return TrialResult(
        "pruned",
        reason=why,
        val_acc=last["val_acc"],
        val_loss=last.get("val_loss"),
        best_val_acc=history[best]["val_acc"],
        best_val_loss=history[best].get("val_loss"),
        best_epoch=best + 1,
        history=history,
        train_seconds=sum(h.get("epoch_seconds", 0.0) for h in history),
        params=size.params if size is not None else None,
        macs=size.macs if size is not None else None,
    )


class Plots:
    """Keeps the campaign run's plots/ artifacts fresh: at most every PLOTS_EVERY seconds while
    trials end, and once more at the end. A campaign shorter than that draws none (a plot
    set costs about a second on a CPU); `archsearch report` draws them at any time."""

    def __init__(self) -> None:
        self.started = self.drawn_at = time.monotonic()
        self.stale = False

    def after_trial(self, campaign: Campaign) -> None:
        self.stale = True
        if time.monotonic() - self.drawn_at >= PLOTS_EVERY:
            self.draw(campaign)

    def finish(self, campaign: Campaign, state: State, why: str) -> tuple[State, str]:
        if self.stale and time.monotonic() - self.started >= PLOTS_EVERY:
            self.draw(campaign)
        return state, why

    def draw(self, campaign: Campaign) -> None:
        from .report import log_plots  # matplotlib only when there is something to draw

        log_plots(campaign)
        self.drawn_at, self.stale = time.monotonic(), False


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised where the driver can end things cleanly."""


class Interrupts:
    """Ctrl-C and SIGTERM, noted by the signal handler and acted on where the driver chooses.

    A KeyboardInterrupt raised wherever the signal lands can be swallowed (by a finalizer
    running inside MLflow's database code, say), so the handler only sets ``pending``: the
    training loop stops at its next step (``should_stop``) and the driver between steps.
    A second signal is raised at once, wherever it lands.
    """

    def __init__(self) -> None:
        self.pending = False
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise Interrupted()
        self.pending = True

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def should_stop(self) -> bool:
        return self.pending

    def check(self) -> None:
        if self.pending:
            raise Interrupted()
