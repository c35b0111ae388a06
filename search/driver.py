"""The campaign loop: keep trials in flight, record each one, stop when a rule says so.

:class:`Loop` keeps as many trials in flight as its executor runs at once (one inline, W worker
processes, the slots of a Dask cluster: ``executor.py``) and starts the next as soon as any
ends: a killed trial's configuration first (requeued), then the given points (``--warm-start``,
``--points``), then a suggestion (``suggest.py``); in a multi-fidelity campaign
(``fidelity.py``) a promotion to a higher rung comes before any new configuration. It is the
only writer of the campaign's
record: it starts each trial's run before the trial starts, logs the epochs the workers report,
asks the pruner whether to stop a trial, and ends the run with the result.

The record is whatever implements :class:`Recorder` (``search.tracking.Campaign``: MLflow), the
display whatever implements :class:`Display` (``search.progress.Progress``); the plots are a
callback, drawn at most every ``PLOTS_EVERY`` seconds. The stop rules, the requeueing of killed
trials and the retries of lost workers are methods, each testable with a fake executor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from .compile import CompiledSpace, config_hash
from .cost import CostModel
from .errors import TrackingError, UserError, error_line
from .executor import Event, Executor, Job
from .fidelity import Ladder, Rung, offset, rungs_of
from .outcome import Outcome
from .prune import Pruner
from .suggest import Search, trial_seed
from .trial import TrialResult

MAX_FAILURES_IN_ROW = 10
MAX_ATTEMPTS = 3  # runs of a trial whose worker dies: the first and two retries
MAX_REFUSED = 3  # configurations in a row too long for the time left: then no more start
WAIT = 0.5  # seconds the loop waits for news from the workers before looking at the clock again
PLOTS_EVERY = 60.0  # seconds between refreshes of the campaign's plots while it runs


class CampaignFailed(UserError):
    """The campaign cannot usefully go on (e.g. every trial fails)."""


# ---------------------------------------------------------------- what the loop talks to


class TrialRun(Protocol):
    """One trial's record while it runs (``search.tracking.TrialRun``)."""

    name: str
    run_id: str

    def started(self, where: str, device: str) -> None: ...
    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def finish(
        self, outcome: Outcome, reason: str | None, metrics: dict[str, float], **files: Any
    ) -> None: ...


class Recorder(Protocol):
    """A campaign's record, as the loop reads and writes it (``search.tracking.Campaign``)."""

    name: str

    def trials(self, params: bool = True) -> list[Any]: ...  # every trial run read back: TrialRecord
    def metric_histories(self, key: str, runs: list[str]) -> dict[str, list[float]]: ...
    def mark_killed(self, record: Any, reason: str) -> None: ...
    def start_trial(
        self,
        trial: int,
        attempt: int,
        config: dict,
        vals: dict,
        seed: int,
        device: str,
        *,
        source: str | None,
    ) -> TrialRun: ...
    def reopen_trial(self, record: Any, config: dict, offset: int) -> TrialRun: ...
    def restore(self, record: Any, metrics: dict[str, float], step: int) -> None: ...
    def log_progress(self, trial: int, best: dict[str, float], ended: int, improved: bool) -> None: ...
    def keep_alive(self) -> None: ...


class Display(Protocol):
    """What the campaign shows while it runs (``search.progress.Progress``)."""

    def start(self, ended: int, total: int, best: dict | None) -> None: ...
    def trial_start(self, trial: int, config: dict, rung: Rung | None = None) -> None: ...
    def epoch(self, trial: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None: ...
    def note(self, text: str) -> None: ...
    def trial_lost(self, trial: int, reason: str) -> None: ...
    def trial_end(
        self, trial: int, result: TrialResult, is_best: bool, best: dict | None, rung: Rung | None = None
    ) -> None: ...


# ---------------------------------------------------------------- where a campaign stands


@dataclass
class State:
    """Where a campaign stands: what ended, what to re-run, the best so far."""

    ended: dict[int, Outcome] = field(default_factory=dict)  # trial -> outcome (at its highest rung)
    seen: set[str] = field(default_factory=set)  # config hashes evaluated
    requeue: list[Any] = field(default_factory=list)  # killed trials (TrialRecord), re-run first
    next_trial: int = 0
    best: dict[str, Any] | None = None  # trial, loss, val_acc, name, macs, rung
    failures_in_row: int = 0
    last_reason: str | None = None  # of the last trial that was not ok
    compute: float = 0.0  # device-seconds the ended trials trained (or screened) for
    durations: list[float] = field(default_factory=list)  # wall seconds of the trials this driver ran
    predictions: list[tuple[float, float]] = field(default_factory=list)  # (predicted, actual) seconds
    records: dict[int, Any] = field(default_factory=dict)  # trial -> its run (to reopen on promotion)

    def end(
        self,
        trial: int,
        outcome: Outcome,
        chash: str,
        loss: float | None,
        val_acc: Any,
        name: str,
        macs: float | None = None,
        rung: int = 0,
    ) -> bool:
        """Count an ended trial (run now or read back); True when it is the new best: the lowest
        loss of the highest rung reached (a trial that got further ranks above)."""
        self.ended[trial] = outcome
        self.seen.add(chash)
        best = self.best
        if outcome == Outcome.OK and (best is None or (rung, -loss) > (best["rung"], -best["loss"])):
            self.best = {
                "trial": trial, "loss": loss, "val_acc": val_acc, "name": name, "macs": macs, "rung": rung
            }  # fmt: skip
            return True
        return False

    def record(self, trial: int, chash: str, result: TrialResult, name: str, rung: int = 0) -> bool:
        """Count a trial this driver ran, and the failures in a row; True when it is the new best."""
        self.failures_in_row = self.failures_in_row + 1 if result.outcome == Outcome.FAILED else 0
        self.last_reason = result.reason if not result.outcome.learned else self.last_reason
        self.compute += result.train_seconds
        return self.end(trial, result.outcome, chash, result.loss, result.val_acc, name, result.macs, rung)


def rebuild(
    campaign: Recorder,
    models: list[Search],
    ladder: Ladder,
    pruner: Pruner,
    cost: Callable[[int], CostModel],
    images: int,
) -> State:
    """The state of a campaign from its record; trials left RUNNING are marked KILLED.
    With early stopping on, the pruner gets the epochs of the ended trials back too, and the
    cost model of each trial's rung (``cost(rung)``) the time it trained for. In a multi-fidelity
    campaign each rung's model and results get what the trials gave there, and a trial whose
    promotion was interrupted is ok again at the rung it ended (it may be promoted again)."""
    state = State()
    records = campaign.trials(params=False)
    histories = campaign.metric_histories("val_acc", [r.run_id for r in records]) if pruner.active else {}
    for r in records:
        m = r.metrics
        state.compute += m.get("train_seconds", 0.0)
        rung = int(m.get("rung", 0)) if ladder.on else 0
        if ladder.on and "rung" in m and r.outcome in (Outcome.RUNNING, Outcome.KILLED):
            r = interrupted(campaign, r, ladder.rungs, rung)
            m = r.metrics  # the rung it ended, not the interrupted one's partial epochs
        if r.outcome.ended:
            acc, macs = m.get("val_acc"), m.get("macs")
            state.end(r.trial, r.outcome, r.config_hash, r.loss, acc, r.name, macs, rung)
            state.records[r.trial] = r
            tell(models, ladder, r.trial, r.vals, r.outcome, r.loss, rung, below=m)
            if pruner.active and r.outcome.learned:
                pruner.history(r.trial, histories.get(r.run_id, []))
            if r.outcome.learned:
                seconds = m.get("train_seconds", 0.0)
                at = cost(rung)  # the cost model of the rung it ended (screened or trained)
                at.observe(m.get("macs"), m.get("rung_images", images), m.get("epochs_done", 0.0), seconds)
                if "predicted_seconds" in m and r.outcome == Outcome.OK:  # all its epochs: comparable
                    state.predictions.append((m["predicted_seconds"], seconds))
    for r in records:
        if r.outcome == Outcome.RUNNING and r.trial not in state.ended:  # its driver died unseen
            campaign.mark_killed(r, "the driver stopped while this trial ran")
        if r.outcome in (Outcome.RUNNING, Outcome.KILLED) and r.trial not in state.ended:
            state.requeue = [q for q in state.requeue if q.trial != r.trial] + [r]
    state.next_trial = max((r.trial for r in records), default=-1) + 1
    return state


def interrupted(campaign: Recorder, r: Any, rungs: list[Rung], rung: int) -> Any:
    """A trial whose promotion past ``rung`` was interrupted: ok again at ``rung``, with its
    metrics there (read back as ended)."""
    m = dict(r.metrics)
    restored = {"loss": m.get(f"rung{rung}_loss"), "val_acc": m.get(f"rung{rung}_val_acc")}
    restored = {k: v for k, v in restored.items() if v is not None}
    campaign.restore(r, restored, offset(rungs, rung + 2))
    m.update(restored)
    return dataclasses.replace(r, outcome=Outcome.OK, loss=restored.get("loss"), metrics=m, reason=None)


def tell(
    models: list[Search],
    ladder: Ladder,
    trial: int,
    vals: dict,
    outcome: Outcome,
    loss: float | None,
    rung: int,
    below: dict[str, float] | None = None,
) -> None:
    """A trial's result at one rung, to that rung's model and results (only ok ones may be
    promoted), and, for a trial read back, what it gave at the rungs below (``below``: its
    metrics, with ``rung<k>_loss``). An invalid or failed configuration is a failure at every
    rung: no model proposes it again."""
    for k in range(rung) if below is not None else ():
        models[k].tell(trial, vals, below.get(f"rung{k}_loss"))
        ladder.record(trial, k, below.get(f"rung{k}_loss"), promotable=True)
        ladder.started(trial, k + 1)
    learned = loss if outcome.learned else None
    for model in models if learned is None and rung == 0 else models[rung : rung + 1]:
        model.tell(trial, vals, learned)
    if ladder.on:
        ladder.record(trial, rung, learned, promotable=outcome == Outcome.OK)


def rung_metrics(rung: Rung, result: TrialResult) -> dict[str, float]:
    """What a trial run logs of a rung it ended: which rung, its fidelity, and its results under
    names of their own (``rung1_loss``), which the next rungs do not overwrite."""
    out = {"rung": rung.index, "rung_images": rung.images, "rung_epochs": rung.epochs}
    out[f"rung{rung.index}_seconds"] = result.train_seconds
    if result.loss is not None:
        out[f"rung{rung.index}_loss"] = result.loss
        out[f"rung{rung.index}_val_acc"] = result.val_acc
    return out


@dataclass
class Flight:
    """A trial in flight: its current attempt's run and what it was asked."""

    trial: int
    attempt: int
    vals: dict[str, list]
    config: dict
    run: TrialRun
    started: float
    source: str | None = None  # --warm-start, --points
    history: list[dict[str, float]] = field(default_factory=list)  # the epochs reported so far
    predicted: float | None = None  # seconds of training predicted before it started
    rung: Rung | None = None  # the fidelity it trains at (multi-fidelity campaigns)
    losses: int = 0  # times a worker died running it


@dataclass(frozen=True)
class Ahead:
    """A suggestion being made in a thread: for which trial number, by which model."""

    trial: int
    model: Search
    future: Future


@dataclass(frozen=True)
class Ran:
    """A trial's run, as a promotion reopens it."""

    run: TrialRun
    trial: int
    attempt: int
    vals: dict[str, list]
    source: str | None

    @property
    def run_id(self) -> str:  # asked when a promotion reopens it, not when the trial ends: the
        return self.run.run_id  # run may still be being written

    @property
    def name(self) -> str:
        return self.run.name


class Plots:
    """Calls ``draw`` (the campaign run's plots) at most every PLOTS_EVERY seconds while trials
    end, and once more at the end of a campaign that ran that long. A campaign shorter than that
    draws none (a plot set costs about a second on a CPU); `archsearch report` draws them at any
    time."""

    def __init__(self, draw: Callable[[], None] | None, clock: Callable[[], float]):
        self.draw, self.clock = draw, clock
        self.started = self.drawn_at = clock()
        self.stale = False

    def after_trial(self) -> None:
        self.stale = True
        if self.clock() - self.drawn_at >= PLOTS_EVERY:
            self._draw()

    def finish(self) -> None:
        if self.stale and self.clock() - self.started >= PLOTS_EVERY:
            self._draw()

    def _draw(self) -> None:
        if self.draw is not None:
            self.draw()
        self.drawn_at, self.stale = self.clock(), False


# ---------------------------------------------------------------- the loop


class Loop:
    """One campaign's trials, from where its record stands to a stop rule.

    ``make_job(trial, config)`` turns a configuration into the executor's :class:`Job`.
    ``points`` (vals, config, source): configurations to evaluate before any suggestion, in
    order; those already evaluated (a resumed campaign) are skipped. ``plan(config)``: a
    configuration's planned result (params and MACs, from the dry shape pass), for the trials
    the pruner stops, whose worker never returns one, and for the predicted cost of each trial
    (``search.cost``), which keeps a configuration that would overrun ``max_trial_seconds`` or
    the time left from starting. ``images``: the training images of a trial; ``final_images``:
    of a final training, whose time (``search.final``) is kept out of the search's budget.
    ``classes``: for the stop at chance. ``plots``: draws the campaign's plots. ``started``: when
    the campaign's time budget began, on ``clock`` (default: now).
    """

    def __init__(
        self,
        campaign: Recorder,
        compiled: CompiledSpace,
        executor: Executor,
        settings: dict,
        *,
        make_job: Callable[[int, dict], Job],
        device_tag: str,
        progress: Display,
        interrupts: Interrupts | None = None,
        points: Sequence[tuple[dict, dict, str]] = (),
        plan: Callable[[dict], TrialResult] | None = None,
        plots: Callable[[], None] | None = None,
        images: int = 0,
        final_images: int = 0,
        classes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ):
        self.campaign, self.executor, self.settings = campaign, executor, settings
        self.compiled, self.make_job, self.plan = compiled, make_job, plan
        self.device_tag, self.progress, self.clock = device_tag, progress, clock
        self.interrupts = interrupts or Interrupts()
        self.pruner = Pruner(settings["pruning"], classes)
        self.cost = CostModel()  # of training
        self.screen_cost = CostModel()  # of a screening rung (search.fidelity.screen)
        self.images, self.final_images = images, final_images or images
        fidelity = settings.get("fidelity", {"rungs": 0})
        epochs = compiled.space.training.fields["epochs"]
        on = fidelity["rungs"] or fidelity.get("screen")
        rungs = rungs_of(fidelity, images, epochs.value) if on else []
        self.ladder = Ladder(rungs, fidelity.get("reduction", 2))
        self.models = [Search(compiled, settings) for _ in rungs or [None]]  # TPE's history per rung
        cost = lambda k: self.cost_at(self.ladder.rungs[k] if self.ladder.on else None)  # noqa: E731
        self.state = rebuild(campaign, self.models, self.ladder, self.pruner, cost, images)
        self.refused = 0  # configurations in a row not started for want of time
        self.given = list(points)  # still to evaluate
        self.flights: dict[str, Flight] = {}
        self.plots = Plots(plots, clock)
        self.started = clock() if started is None else started  # the time budget counts from it
        self.enough = f"{settings['trials']} trial{'s' * (settings['trials'] != 1)} ended"
        self.ahead: Ahead | None = None  # the next suggestion, made while the trials run
        self.asker: ThreadPoolExecutor | None = None

    def run(self) -> tuple[State, str]:
        """Run trials until a stop rule holds; the final state and why it stopped."""
        state, flights = self.state, self.flights
        self.progress.start(len(state.ended), self.settings["trials"], state.best)
        told = None  # the reason to start no more trials (other than enough), once said
        try:
            while True:
                self.interrupts.check()
                self.check_failures()
                # start trials while a slot is free and no rule says stop
                why = self.why_not_start()
                while why is None and len(flights) < self.executor.capacity():
                    why = self.launch_next() or self.why_not_start()
                if why is not None and flights and why not in (told, self.enough):
                    self.progress.note(f"{why}; waiting for the {len(flights)} running")
                    told = why
                if not flights:
                    self.plots.finish()
                    return state, why or "nothing left to run"
                self.ask_ahead()
                # wait for news: epochs, ended trials, lost workers
                self.executor.wait(self.handle, timeout=WAIT)
                self.campaign.keep_alive()  # long trials keep the campaign alive
        except BaseException as e:
            self.abandon(e)
            raise
        finally:
            if self.asker is not None:
                self.asker.shutdown(cancel_futures=True)
            self.executor.close()

    # -- stop rules

    def why_not_start(self) -> str | None:
        """Why no trial may start (None: one may): the time budget, the loss threshold. (Enough
        trials stops new configurations only: :meth:`launch_next`.)"""
        return self.budget_spent() or self.threshold_reached()

    def enough_trials(self) -> str | None:
        """Why no new configuration may start: ``search.trials`` of them ended or in flight."""
        if len(self.state.ended.keys() | {f.trial for f in self.flights.values()}) >= self.settings["trials"]:
            return self.enough
        return None

    def budget_spent(self) -> str | None:
        """The time budget: spent (less the time kept for the final stage), too little left for
        the configurations suggested (by their predicted time), or, before any prediction, for a
        typical trial (the median so far); those in flight end."""
        budget = self.settings["time_budget"]
        if budget is None:
            return None
        left = self.time_left()
        kept = f", {self.reserve():.0f} s of it kept for the final stage" if self.reserve() else ""
        if left <= 0:
            return f"time budget of {budget:g} s spent{kept}"
        if self.refused >= MAX_REFUSED:
            return (
                f"time budget of {budget:g} s{kept}: {left:.0f} s left, too little for the last "
                f"{MAX_REFUSED} configurations suggested (by their predicted time), so no new trial started"
            )
        durations = self.state.durations
        typical = statistics.median(durations) if durations else None
        if typical is not None and left < typical and not self.cost.ready:
            return (
                f"time budget of {budget:g} s{kept}: {left:.0f} s left, less than a trial takes "
                f"(median {typical:.0f} s), so no new trial started"
            )
        return None

    def time_left(self) -> float:
        """Seconds of the time budget left for trials: the budget, less the time passed and the
        time kept for the final stage."""
        return self.settings["time_budget"] - (self.clock() - self.started) - self.reserve()

    def reserve(self) -> float:
        """Seconds kept for the final stage: its share of the budget (``final.epochs`` null), else
        the predicted time of training the best trial so far for ``final.epochs``, ``top`` times."""
        final, budget = self.settings["final"], self.settings["time_budget"]
        if not final["top"] or budget is None:
            return 0.0
        if final["epochs"] is None:
            return final["share"] * budget
        best = self.state.best
        each = self.cost.predict(best.get("macs"), self.final_images, final["epochs"]) if best else None
        return final["top"] * each if each is not None else 0.0

    def too_dear(self, predicted: float | None, count: bool = True) -> str | None:
        """Why a configuration predicted to train ``predicted`` seconds must not start (None: it
        may): over ``max_trial_seconds``, or more than the time budget has left (``count``: one
        more such refusal in a row)."""
        if predicted is None:
            return None
        limit = self.settings["max_trial_seconds"]
        if limit is not None and predicted > limit:
            return (
                f"predicted to train {predicted:.0f} s, over search.max_trial_seconds {limit:g}; not started"
            )
        if self.settings["time_budget"] is not None and predicted > self.time_left():
            self.refused += count
            return (
                f"predicted to train {predicted:.0f} s, more than the {max(0.0, self.time_left()):.0f} s "
                "left of the time budget; not started"
            )
        return None

    def predict(self, config: dict, size: TrialResult | None, rung: Rung | None = None) -> float | None:
        """Seconds of training predicted for a configuration of planned ``size`` (at ``rung``'s
        fidelity, or its own), None when not yet predictable."""
        cost = self.cost_at(rung)
        if size is None or not cost.ready:
            return None
        recipe = config["training"]
        epochs = rung.epochs if rung is not None else recipe["epochs"]
        epochs = 1 if recipe.get("mode") == "screen" else epochs
        return cost.predict(size.macs, rung.images if rung is not None else self.images, epochs)

    def cost_at(self, rung: Rung | None) -> CostModel:
        """The cost model of a rung: screening's own, else training's."""
        return self.screen_cost if rung is not None and rung.mode == "screen" else self.cost

    def threshold_reached(self) -> str | None:
        threshold, best = self.settings["loss_threshold"], self.state.best
        if threshold is not None and best is not None and best["loss"] <= threshold:
            return f"loss {best['loss']:.4f} <= threshold {threshold:g}"
        return None

    def check_failures(self) -> None:
        """Stop the campaign once MAX_FAILURES_IN_ROW trials failed in a row."""
        if self.state.failures_in_row >= MAX_FAILURES_IN_ROW:
            raise CampaignFailed(
                f"campaign {self.campaign.name!r}: {MAX_FAILURES_IN_ROW} trials failed in a row, so it "
                f"stopped (last reason: {self.state.last_reason}); see the failed runs' archsearch.reason "
                "in MLflow"
            )

    # -- starting trials

    def launch_next(self) -> str | None:
        """Start one trial: a killed trial's configuration first, then a promotion to a higher
        rung (multi-fidelity), then the given points, else a new suggestion; its run exists
        (RUNNING) before it starts. Why none may start (None: one did): enough trials."""
        state, source = self.state, None
        enough = self.enough_trials()
        if not (state.requeue and not enough) and self.promote():
            return None
        if enough:
            return enough
        rung = self.ladder.rungs[0] if self.ladder.on else None
        point = None if state.requeue else self.next_point()
        if state.requeue:
            killed = state.requeue.pop(0)
            trial, attempt, vals, source = killed.trial, killed.attempt + 1, killed.vals, killed.source
            config = self.compiled.decode(vals)
        else:
            trial, attempt = state.next_trial, 1
            state.next_trial += 1
            if point is not None:
                vals, config, source = point
            else:
                pending = {f.trial: f.vals for f in self.flights.values()}
                vals, config = self.take_ahead(trial) or self.model().ask(trial, self.taken(), pending)
        size = self.plan(config) if self.plan is not None else None
        predicted = self.predict(config, size, rung)
        refused = None if attempt > 1 else self.too_dear(predicted)
        run = self.start_run(trial, attempt, config, vals, source)
        flight = Flight(trial, attempt, vals, config, run, self.clock(), source)
        flight.predicted, flight.rung = predicted, rung
        self.flights[str(trial)] = flight
        self.progress.trial_start(trial, config, rung)
        if refused is not None:
            self.ended(flight, TrialResult(Outcome.INVALID, reason=refused, macs=size and size.macs))
            return None
        self.refused = 0
        self.executor.submit(self.job(trial, config, rung))
        return None

    def ask_ahead(self) -> None:
        """With two or more trials at once and every slot busy, make the next new trial's
        suggestion in a thread while they run (those in flight told as lies, as always), so that
        a slot that frees up gets its trial without waiting for TPE (0.3 s after 10,000 trials).
        Not when the next trial is a killed one run again, a given point, or none at all."""
        capacity = self.executor.capacity()
        if self.ahead is not None or capacity < 2 or len(self.flights) < capacity:
            return
        if self.state.requeue or self.given or self.enough_trials() or self.why_not_start():
            return
        model, trial = self.model(), self.state.next_trial
        suggest = model.prepare(self.taken(), {f.trial: f.vals for f in self.flights.values()}, apart=True)
        if self.asker is None:
            self.asker = ThreadPoolExecutor(1, thread_name_prefix="archsearch-ask")
        self.ahead = Ahead(trial, model, self.asker.submit(suggest, trial))

    def take_ahead(self, trial: int) -> tuple[dict, dict] | None:
        """The suggestion made ahead for ``trial`` (waiting for it if need be), unless it was made
        for another trial number or model, or its configuration has been run since (None: ask)."""
        ahead, self.ahead = self.ahead, None
        if ahead is None:
            return None
        vals, config = ahead.future.result()
        if ahead.trial != trial or ahead.model is not self.model() or config_hash(config) in self.taken():
            return None
        return vals, config

    def promote(self) -> bool:
        """Start the first promotion due whose predicted time fits; False when none does."""
        busy = {f.trial for f in self.flights.values()}
        for trial, index in self.ladder.due(busy) if self.ladder.on else ():
            record, rung = self.state.records[trial], self.ladder.rungs[index]
            config = self.compiled.decode(record.vals)
            size = self.plan(config) if self.plan is not None else None
            predicted = self.predict(config, size, rung)
            if self.too_dear(predicted, count=False) is not None:
                continue  # kept for later: a cheaper one may fit, or the rung's results change
            run = self.campaign.reopen_trial(record, config, offset(self.ladder.rungs, index))
            flight = Flight(trial, record.attempt, record.vals, config, run, self.clock(), record.source)
            flight.predicted, flight.rung = predicted, rung
            self.ladder.started(trial, index)
            self.flights[str(trial)] = flight
            self.progress.trial_start(trial, config, rung)
            self.executor.submit(self.job(trial, config, rung))
            return True
        return False

    def model(self) -> Search:
        """The model new configurations are suggested from: the highest rung's with enough
        results (BOHB's rule; the only one without multi-fidelity)."""
        enough = self.settings["tpe"]["startup_trials"] if self.settings["algo"] == "tpe" else 1
        return self.models[self.ladder.model_rung(enough)]

    def job(self, trial: int, config: dict, rung: Rung | None) -> Job:
        """The executor's job of a trial: at ``rung``'s epochs and images, or its own."""
        if rung is None:
            return self.make_job(trial, config)
        training = {**config["training"], "epochs": rung.epochs}
        if rung.mode == "screen":
            training["mode"] = "screen"
        images = rung.images if rung.images < self.images else None
        return self.make_job(trial, {**config, "training": training}, images=images)

    def next_point(self) -> tuple[dict, dict, str] | None:
        """The next given configuration not yet evaluated (nor in flight)."""
        while self.given:
            vals, config, source = self.given.pop(0)
            if config_hash(config) not in self.taken():
                return vals, config, source
        return None

    def taken(self) -> set[str]:
        """The hashes of the configurations evaluated or in flight: not to be run again."""
        return self.state.seen | {config_hash(f.config) for f in self.flights.values()}

    def start_run(self, trial: int, attempt: int, config: dict, vals: dict, source: str | None) -> TrialRun:
        seed = trial_seed(self.settings["seed"], trial)
        return self.campaign.start_trial(trial, attempt, config, vals, seed, self.device_tag, source=source)

    # -- news from the executor

    def handle(self, event: Event) -> None:
        flight = self.flights.get(event.key)
        if flight is None:
            return
        if event.kind == "started":
            flight.run.started(event.where, event.device)
        elif event.kind == "epoch":
            self.epoch(flight, event.epoch, event.metrics)
        elif event.kind == "lost":
            self.lost(flight, event.reason)
        elif event.kind == "done":
            self.ended(flight, event.result)

    def epoch(self, flight: Flight, epoch: int, metrics: dict[str, float]) -> None:
        """Log one epoch of a trial, and stop the trial when the pruner says so."""
        flight.run.log_epoch(epoch, metrics)
        flight.history.append(dict(metrics))
        epochs = flight.rung.epochs if flight.rung is not None else flight.config["training"]["epochs"]
        self.progress.epoch(flight.trial, epoch, epochs, metrics)
        if not self.pruner.watching or "val_acc" not in metrics:
            return
        why = self.pruner.report(flight.trial, epoch, metrics["val_acc"], epochs)
        if why is not None:
            self.executor.stop(str(flight.trial))
            size = self.plan(flight.config) if self.plan is not None else None
            self.ended(flight, pruned(flight.history, why, size))

    def lost(self, flight: Flight, reason: str) -> None:
        """A worker died running this trial: run it again (a new attempt; a promotion in the
        same run), or give up."""
        flight.losses += 1
        if (flight.losses if self.promoted(flight) else flight.attempt) >= MAX_ATTEMPTS:
            self.executor.cancel(str(flight.trial))
            why = f"{reason}; lost {MAX_ATTEMPTS} times, so not run again"
            self.ended(flight, TrialResult(Outcome.FAILED, reason=why))
            return
        self.progress.trial_lost(flight.trial, reason)
        flight.history = []
        if self.promoted(flight):
            return  # its run holds the rungs below: the executor runs it again in that run
        flight.run.finish(Outcome.KILLED, reason, {})
        flight.attempt += 1
        flight.run = self.start_run(flight.trial, flight.attempt, flight.config, flight.vals, flight.source)

    def ended(self, flight: Flight, result: TrialResult) -> None:
        """Record an ended trial, tell it to the search, count it, show it."""
        state = self.state
        del self.flights[str(flight.trial)]
        if result.outcome != Outcome.INVALID:  # an invalid trial takes no time to say so
            state.durations.append(self.clock() - flight.started)
        rung = flight.rung
        if rung is not None and rung.index < self.ladder.top and result.outcome == Outcome.OK:
            at_chance = self.pruner.at_chance(result.val_acc)
            if at_chance is not None:  # never promoted: said, so that it is not taken for a good one
                result.outcome, result.reason = Outcome.PRUNED, f"{at_chance} at rung {rung.index}"
        metrics = result.metrics()
        if flight.predicted is not None:
            metrics["predicted_seconds"] = flight.predicted
        if rung is not None:
            metrics.update(rung_metrics(rung, result))
        images = rung.images if rung is not None else self.images
        if result.outcome.learned:
            self.cost_at(rung).observe(result.macs, images, len(result.history), result.train_seconds)
            if flight.predicted is not None and result.outcome == Outcome.OK:  # a pruned one stopped early
                state.predictions.append((flight.predicted, result.train_seconds))
        flight.run.finish(
            result.outcome,
            result.reason,
            metrics,
            state_dict=result.state_dict,
            traceback=result.traceback,
        )
        index = rung.index if rung is not None else 0
        tell(self.models, self.ladder, flight.trial, flight.vals, result.outcome, result.loss, index)
        ran = Ran(flight.run, flight.trial, flight.attempt, flight.vals, flight.source)
        state.records[flight.trial] = ran
        is_best = state.record(flight.trial, config_hash(flight.config), result, flight.run.name, index)
        best = {"best_val_acc": state.best["val_acc"], "best_loss": state.best["loss"]} if state.best else {}
        best["compute_seconds"] = state.compute
        self.campaign.log_progress(flight.trial, best, len(state.ended), improved=is_best)
        self.progress.trial_end(flight.trial, result, is_best, state.best, rung)
        self.plots.after_trial()

    def promoted(self, flight: Flight) -> bool:
        """Whether a flight is a promotion (a trial at a rung above the first)."""
        return flight.rung is not None and flight.rung.index > 0

    def abandon(self, error: BaseException) -> None:
        """Ctrl-C or a campaign that fails: the trials in flight end KILLED (a resume runs them
        again); when the tracking store is gone they stay RUNNING, and a resume marks them."""
        if isinstance(error, TrackingError):
            return
        self.executor.close()
        reason = (
            "interrupted (Ctrl-C or SIGTERM)" if isinstance(error, KeyboardInterrupt) else error_line(error)
        )
        for flight in self.flights.values():
            with contextlib.suppress(Exception):
                flight.run.finish(Outcome.KILLED, reason, {})


def pruned(history: list[dict[str, float]], why: str, size: TrialResult | None = None) -> TrialResult:
    """The result of a trial stopped early, from the epochs it reported (and its params and
    MACs from ``size``, its planned result)."""
    return TrialResult.from_history(
        history,
        Outcome.PRUNED,
        reason=why,
        train_seconds=sum(h.get("epoch_seconds", 0.0) for h in history),
        params=size.params if size is not None else None,
        macs=size.macs if size is not None else None,
    )


# ---------------------------------------------------------------- Ctrl-C


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
