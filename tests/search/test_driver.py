"""The campaign loop with a fake executor and a fake record, in milliseconds: the stop rules, the
requeueing of killed trials, lost workers, the pruner, the plots; and Ctrl-C."""

import pytest

from search.compile import CompiledSpace
from search.driver import MAX_ATTEMPTS, MAX_FAILURES_IN_ROW, CampaignFailed, Interrupted, Interrupts, Loop
from search.executor import Event
from search.outcome import Outcome
from search.space import parse_space
from search.tracking import TrialRecord
from search.trial import TrialResult

RAW = {
    "architecture": {
        "depth": {"choice": [1, 2]},
        "layers": {"filters": {"count": {"choice": [4, 8, 16]}, "size": 3}, "padding": "same"},
    },
    "training": {"lr": {"loguniform": [1e-4, 1e-1]}, "epochs": 3},
    "search": {"algo": "random"},
}
SPACE = parse_space(RAW)
COMPILED = CompiledSpace(SPACE)


class Clock:
    """Time that passes only when a trial runs."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Run:
    def __init__(self, trial, attempt):
        self.trial, self.attempt, self.name = trial, attempt, f"t{trial:03d}"
        self.run_id = f"run{trial}.{attempt}"
        self.epochs, self.outcome, self.reason, self.where = [], None, None, None

    def started(self, where, device):
        self.where = where

    def log_epoch(self, epoch, metrics):
        self.epochs.append(epoch)

    def finish(self, outcome, reason, metrics, **files):
        self.outcome, self.reason = outcome, reason
        self.metrics = {**getattr(self, "metrics", {}), **metrics}  # as MLflow keeps the latest of each


class Record:
    """A campaign's record in memory: what it was given to start from, the runs the loop starts."""

    name = "fake"

    def __init__(self, records=()):
        self.records, self.runs, self.killed, self.progress = list(records), [], [], []
        self.restored = []

    def trials(self, params=True):
        return self.records

    def metric_histories(self, key, runs):
        return {}

    def mark_killed(self, record, reason):
        self.killed.append((record.trial, reason))

    def start_trial(self, trial, attempt, config, vals, seed, device, *, source=None):
        self.runs.append(Run(trial, attempt))
        self.runs[-1].config = config
        return self.runs[-1]

    def reopen_trial(self, record, config, offset):
        run = next((r for r in self.runs if r.run_id == record.run_id), None)
        if run is None:  # a run read back on resume
            run = Run(record.trial, record.attempt)
            self.runs.append(run)
        run.reopened = getattr(run, "reopened", []) + [offset]
        return run

    def restore(self, record, metrics, step):
        self.restored.append((record.trial, metrics, step))

    def log_progress(self, trial, best, ended, improved):
        self.progress.append((trial, ended, improved))

    def keep_alive(self):
        pass


class Display:
    def __init__(self):
        self.notes, self.lost = [], []

    def start(self, ended, total, best):
        pass

    def trial_start(self, trial, config, rung=None):
        pass

    def epoch(self, trial, epoch, epochs, metrics):
        pass

    def note(self, text):
        self.notes.append(text)

    def trial_lost(self, trial, reason):
        self.lost.append(trial)

    def trial_end(self, trial, result, is_best, best, rung=None):
        pass


class Executor:
    """Runs the jobs submitted, one per ``wait``, as ``script(trial, attempt)`` says: a list of
    events (kind, payload) for that attempt; each trial takes ``seconds`` of the clock."""

    def __init__(self, clock, script, seconds=10.0, capacity=1):
        self.clock, self.script, self.seconds, self.slots = clock, script, seconds, capacity
        self.jobs, self.attempts, self.stopped, self.cancelled, self.closed = [], {}, [], [], False

    def describe(self):
        return "in a test"

    def capacity(self):
        return self.slots

    def submit(self, job):
        self.jobs.append(job)

    def cancel(self, key):
        self.cancelled.append(key)
        self.jobs = [j for j in self.jobs if j.key != key]

    def stop(self, key):
        self.stopped.append(key)

    def wait(self, handle, timeout):
        job = self.jobs.pop(0)
        self.clock.now += self.seconds
        attempt = self.attempts[job.key] = self.attempts.get(job.key, 0) + 1
        for kind, payload in self.script(int(job.key), attempt):
            if kind == "epoch":
                epoch, metrics = payload
                handle(Event("epoch", job.key, epoch=epoch, metrics=metrics))
                if job.key in self.stopped:
                    return  # stopped: no more events
            elif kind == "lost":
                handle(Event("lost", job.key, reason=payload))
                if job.key not in self.cancelled:
                    self.jobs.insert(0, job)  # run again, as the executors do
                return
            else:
                handle(Event(kind, job.key, result=payload, where="host:1", device="cpu"))

    def close(self):
        self.closed = True


class Job:
    def __init__(self, trial, config, images=None):
        self.key, self.config, self.images = str(trial), config, images


def ok(acc=0.5):
    return [("done", TrialResult(Outcome.OK, val_acc=acc, train_seconds=1.0))]


def loop(script, record=None, seconds=10.0, capacity=1, loop_args=None, **search):
    clock = Clock()
    settings = {**SPACE.search, **search}
    executor = Executor(clock, script, seconds, capacity)
    record = record or Record()
    display = Display()
    drawn = []
    the_loop = Loop(
        record,
        COMPILED,
        executor,
        settings,
        make_job=Job,
        device_tag="cpu",
        progress=display,
        plots=lambda: drawn.append(clock()),
        clock=clock,
        **(loop_args or {}),
    )
    return the_loop, record, executor, display, drawn


def test_it_stops_once_the_trials_asked_for_have_ended():
    the_loop, record, executor, _, _ = loop(lambda trial, attempt: ok(), trials=5)
    state, why = the_loop.run()
    assert why == "5 trials ended"
    assert [r.trial for r in record.runs] == [0, 1, 2, 3, 4]
    assert all(r.outcome == Outcome.OK for r in record.runs)
    assert set(state.ended.values()) == {Outcome.OK} and state.compute == 5.0
    assert executor.closed


def test_no_trial_starts_that_would_end_past_the_time_budget():
    # trials of 10 s and a budget of 35 s: after 3 trials 5 s are left, less than the median trial
    the_loop, record, _, _, _ = loop(lambda trial, attempt: ok(), trials=50, time_budget=35.0)
    _, why = the_loop.run()
    assert len(record.runs) == 3
    assert why == (
        "time budget of 35 s: 5 s left, less than a trial takes (median 10 s), so no new trial started"
    )
    # a budget spent by the first trial
    the_loop, record, _, _, _ = loop(lambda trial, attempt: ok(), seconds=40.0, trials=50, time_budget=35.0)
    assert the_loop.run()[1] == "time budget of 35 s spent" and len(record.runs) == 1


def test_the_loss_threshold_stops_the_campaign_and_trials_in_flight_end():
    accuracies = [0.5, 0.6, 0.95, 0.7, 0.8]
    the_loop, record, _, display, _ = loop(
        lambda trial, attempt: ok(accuracies[trial]), capacity=2, trials=50, loss_threshold=0.1
    )
    state, why = the_loop.run()
    assert why == "loss 0.0500 <= threshold 0.1"
    # trial 2 reached it while trial 3 ran: no trial started after, trial 3 ended
    assert [r.trial for r in record.runs] == [0, 1, 2, 3] and state.best["trial"] == 2
    assert display.notes == ["loss 0.0500 <= threshold 0.1; waiting for the 1 running"]


def test_ten_failures_in_a_row_stop_the_campaign_with_the_last_reason():
    def script(trial, attempt):
        if trial == 0:
            return ok()
        return [("done", TrialResult(Outcome.FAILED, reason=f"RuntimeError: no {trial}"))]

    the_loop, record, _, _, _ = loop(script, trials=50)
    with pytest.raises(CampaignFailed, match=f"{MAX_FAILURES_IN_ROW} trials failed in a row") as info:
        the_loop.run()
    assert "last reason: RuntimeError: no 10" in str(info.value)
    assert len(record.runs) == 1 + MAX_FAILURES_IN_ROW


def test_an_invalid_or_ok_trial_resets_the_failures_in_a_row():
    def script(trial, attempt):
        if trial % 5 == 4:
            return [("done", TrialResult(Outcome.INVALID, reason="too small"))]
        return [("done", TrialResult(Outcome.FAILED, reason="RuntimeError"))]

    the_loop, record, _, _, _ = loop(script, trials=30)
    state, why = the_loop.run()  # never ten failures in a row
    assert why == "30 trials ended" and state.failures_in_row == 0


def record_of(trial, outcome, vals, attempt=1, loss=None):
    return TrialRecord(
        run_id=f"run{trial}.{attempt}",
        trial=trial,
        attempt=attempt,
        outcome=outcome,
        reason=None,
        vals=vals,
        config_hash=f"hash{trial}",
        loss=loss,
        metrics={} if loss is None else {"val_acc": 1 - loss, "train_seconds": 2.0},
        params={},
        name=f"t{trial:03d}",
        start_time=None,
        end_time=None,
    )


def test_a_resumed_campaign_runs_its_killed_trials_first_and_repeats_nothing():
    vals = [COMPILED.encode(c) for c in COMPILED.sample(3, seed=1)]
    before = [
        record_of(0, Outcome.OK, vals[0], loss=0.3),
        record_of(1, Outcome.RUNNING, vals[1]),  # its driver died
        record_of(2, Outcome.KILLED, vals[2], attempt=2),  # Ctrl-C
    ]
    the_loop, record, _, _, _ = loop(lambda trial, attempt: ok(), Record(before), trials=4)
    assert record.killed == [(1, "the driver stopped while this trial ran")]
    state, why = the_loop.run()
    # the killed ones first, as new attempts, then a new trial: four trials ended, none twice
    assert [(r.trial, r.attempt) for r in record.runs] == [(1, 2), (2, 3), (3, 1)]
    assert sorted(state.ended) == [0, 1, 2, 3] and state.compute == 2.0 + 3 * 1.0
    assert why == "4 trials ended"


def test_a_lost_worker_runs_the_trial_again_and_gives_up_after_three_attempts():
    def script(trial, attempt):
        if trial == 0 and attempt < 3:
            return [("lost", f"worker {attempt} killed")]
        if trial == 1:
            return [("lost", "worker always killed")]
        return ok()

    the_loop, record, executor, display, _ = loop(script, trials=2)
    state, _ = the_loop.run()
    runs = [(r.trial, r.attempt, r.outcome) for r in record.runs]
    assert runs == [
        (0, 1, Outcome.KILLED),
        (0, 2, Outcome.KILLED),
        (0, 3, Outcome.OK),
        (1, 1, Outcome.KILLED),
        (1, 2, Outcome.KILLED),
        (1, 3, Outcome.FAILED),
    ]
    assert record.runs[-1].reason == f"worker always killed; lost {MAX_ATTEMPTS} times, so not run again"
    assert executor.cancelled == ["1"] and display.lost == [0, 0, 1, 1]
    assert state.ended == {0: Outcome.OK, 1: Outcome.FAILED}


def test_the_pruner_stops_a_trial_that_is_not_among_the_best_at_its_rung():
    accuracies = {0: 0.8, 1: 0.9, 2: 0.1}  # asha, reduction 2: at epoch 1, trial 2 is not in the top half

    def script(trial, attempt):
        epochs = [("epoch", (e, {"val_acc": accuracies[trial], "epoch_seconds": 1.0})) for e in (1, 2, 3)]
        history = [{"val_acc": accuracies[trial]}] * 3
        return [*epochs, ("done", TrialResult.from_history(history, train_seconds=3.0))]

    pruning = {"rule": "asha", "min_epochs": 1, "reduction": 2, "min_trials": 5}
    the_loop, record, executor, _, _ = loop(script, trials=3, pruning=pruning)
    state, _ = the_loop.run()
    assert executor.stopped == ["2"]
    assert [r.outcome for r in record.runs] == [Outcome.OK, Outcome.OK, Outcome.PRUNED]
    assert record.runs[2].epochs == [1] and record.runs[2].reason.startswith("asha at epoch 1")
    assert state.compute == 3.0 + 3.0 + 1.0  # the pruned trial's epoch_seconds


def test_given_points_run_first_in_order_and_a_known_one_is_skipped():
    configs = COMPILED.sample(3, seed=4)
    points = [(COMPILED.encode(c), c, f"points p[{i}]") for i, c in enumerate([*configs, configs[0]])]
    the_loop, record, _, _, _ = loop(lambda trial, attempt: ok(), trials=4)
    the_loop.given = list(points)
    started = []
    real = the_loop.campaign.start_trial
    the_loop.campaign.start_trial = lambda *a, source=None: started.append((a[2], source)) or real(*a)
    the_loop.run()
    assert [s for _, s in started] == ["points p[0]", "points p[1]", "points p[2]", None]  # p[3] repeats p[0]
    assert [c for c, _ in started[:3]] == configs


def test_plots_are_drawn_at_most_every_minute_and_once_at_the_end():
    the_loop, _, _, _, drawn = loop(lambda trial, attempt: ok(), seconds=25.0, trials=6)
    the_loop.run()
    # trials end at 25, 50, ... 150 s: drawn at 75 and 150 (a minute after the last drawing)
    assert drawn == [1075.0, 1150.0]
    the_loop, _, _, _, drawn = loop(lambda trial, attempt: ok(), seconds=5.0, trials=3)
    the_loop.run()
    assert drawn == []  # a campaign shorter than a minute leaves the plots to `archsearch report`


def test_ctrl_c_ends_the_trials_in_flight_as_killed():
    interrupts = Interrupts()

    def script(trial, attempt):
        interrupts(2, None)  # Ctrl-C while the first trial runs
        return [("epoch", (1, {"val_acc": 0.5}))]

    the_loop, record, executor, _, _ = loop(script, trials=3, capacity=2)
    the_loop.interrupts = interrupts
    with pytest.raises(Interrupted):
        the_loop.run()
    assert [(r.trial, r.outcome, r.reason) for r in record.runs] == [
        (0, Outcome.KILLED, "interrupted (Ctrl-C or SIGTERM)"),
        (1, Outcome.KILLED, "interrupted (Ctrl-C or SIGTERM)"),
    ]
    assert executor.closed


def test_a_state_counts_what_ended_and_the_best():
    the_loop, *_ = loop(lambda trial, attempt: ok(), trials=1)
    state = the_loop.state
    assert state.end(0, Outcome.OK, "a", 0.4, 0.6, "t000") is True
    assert state.end(1, Outcome.OK, "b", 0.5, 0.5, "t001") is False
    assert state.record(2, "c", TrialResult(Outcome.FAILED, reason="x"), "t002") is False
    assert state.best["trial"] == 0 and state.failures_in_row == 1 and state.last_reason == "x"
    assert state.seen == {"a", "b", "c"}


def test_a_first_signal_is_noted_and_a_second_one_raised():
    interrupts = Interrupts()
    interrupts(2, None)  # noted, acted on where the driver chooses
    assert interrupts.should_stop()
    with pytest.raises(Interrupted):
        interrupts.check()
    with pytest.raises(Interrupted):
        interrupts(2, None)


# ---------------------------------------------------------------- stop at chance, cost, the final's time


def test_a_trial_at_chance_after_its_first_epoch_stops_there_whatever_the_rule():
    accuracies = {0: 0.8, 1: 0.11, 2: 0.7}  # 10 classes: 0.11 <= 1.5 x chance (0.15)

    def script(trial, attempt):
        epochs = [("epoch", (e, {"val_acc": accuracies[trial], "epoch_seconds": 1.0})) for e in (1, 2, 3)]
        history = [{"val_acc": accuracies[trial]}] * 3
        return [*epochs, ("done", TrialResult.from_history(history, train_seconds=3.0))]

    the_loop, record, executor, _, _ = loop(script, trials=3, loop_args={"classes": 10})
    assert the_loop.settings["pruning"]["rule"] == "none"
    state, _ = the_loop.run()
    assert executor.stopped == ["1"]
    assert [r.outcome for r in record.runs] == [Outcome.OK, Outcome.PRUNED, Outcome.OK]
    assert record.runs[1].epochs == [1] and record.runs[1].reason.startswith("at chance after epoch 1")
    # off with at_chance 0
    pruning = {**SPACE.search["pruning"], "at_chance": 0}
    the_loop, record, executor, _, _ = loop(script, trials=3, pruning=pruning, loop_args={"classes": 10})
    the_loop.run()
    assert executor.stopped == [] and {r.outcome for r in record.runs} == {Outcome.OK}


def sized(config):
    """MACs that grow with the filters of the first layer: 4 -> 4e6 ... 16 -> 16e6."""
    return TrialResult(
        Outcome.OK, params=100, macs=config["architecture"]["layers"][0]["filters"]["count"] * 1e6
    )


def timed(clock, the_loop):
    """A script whose trials train for a time proportional to their MACs (1 s per 1e6, 3 epochs)."""

    def script(trial, attempt):
        config = the_loop.flights[str(trial)].config
        seconds = sized(config).macs / 1e6
        history = [{"val_acc": 0.5}] * 3
        return [("done", TrialResult.from_history(history, train_seconds=seconds, macs=sized(config).macs))]

    return script


def test_a_configuration_predicted_to_take_longer_than_max_trial_seconds_is_not_started():
    args = {"plan": sized, "images": 1000}
    the_loop, record, executor, _, _ = loop(None, trials=12, max_trial_seconds=10.0, loop_args=args)
    executor.script = timed(executor.clock, the_loop)
    submitted = []
    real = executor.submit
    executor.submit = lambda job: submitted.append(job.key) or real(job)
    state, _ = the_loop.run()
    refused = [r for r in record.runs if r.outcome == Outcome.INVALID]
    assert refused, "some configuration has 16 filters, predicted to take 16 s"
    for r in refused:
        assert "over search.max_trial_seconds 10" in r.reason and str(r.trial) not in submitted
        assert sized(r.config).macs > 10e6
    ran = [r for r in record.runs if r.outcome == Outcome.OK]
    assert len(ran) == len(submitted) and len(ran) + len(refused) == 12
    # the first trial is never refused: nothing is predicted before one has ended
    assert record.runs[0].outcome == Outcome.OK


def test_configurations_that_cannot_end_within_the_time_left_are_not_started():
    # trials of 10 s (all of 5e6 MACs: each predicted to take 10 s) and a budget of 35 s: after
    # three trials 5 s are left, and the next three configurations are refused without running
    def script(trial, attempt):
        return [("done", TrialResult.from_history([{"val_acc": 0.5}] * 3, train_seconds=10.0, macs=5e6))]

    args = {"plan": lambda config: TrialResult(Outcome.OK, macs=5e6), "images": 1000}
    the_loop, record, executor, _, _ = loop(script, trials=50, time_budget=35.0, loop_args=args)
    _, why = the_loop.run()
    assert [r.outcome for r in record.runs] == [Outcome.OK] * 3 + [Outcome.INVALID] * 3
    assert record.runs[3].reason == (
        "predicted to train 10 s, more than the 5 s left of the time budget; not started"
    )
    assert why == (
        "time budget of 35 s: 5 s left, too little for the last 3 configurations suggested (by their "
        "predicted time), so no new trial started"
    )
    assert the_loop.state.predictions == [(10.0, 10.0), (10.0, 10.0)]  # the 2nd and 3rd trials'


def test_the_time_kept_for_the_final_stage_is_not_spent_on_trials():
    final = {"top": 1, "epochs": None, "share": 0.5}
    the_loop, record, _, _, _ = loop(lambda t, a: ok(), trials=50, time_budget=100.0, final=final)
    _, why = the_loop.run()
    assert len(record.runs) == 5  # 10 s each: 50 s of the 100 are kept
    assert why == "time budget of 100 s spent, 50 s of it kept for the final stage"
    # with fixed final epochs, what is kept is the best trial's predicted time at full size
    final = {"top": 2, "epochs": 4, "share": 0.5}
    args = {"plan": sized, "images": 1000, "final_images": 2000}
    the_loop, record, executor, _, _ = loop(None, trials=50, time_budget=1000.0, final=final, loop_args=args)
    executor.script = timed(executor.clock, the_loop)
    the_loop.run()
    best = the_loop.state.best
    each = the_loop.cost.predict(best["macs"], 2000, 4)
    assert the_loop.reserve() == pytest.approx(2 * each) and each == pytest.approx(
        best["macs"] / 1e6 / 3 * 4 * 2
    )


def test_with_every_slot_busy_the_next_suggestion_is_made_while_the_trials_run(monkeypatch):
    from search import suggest

    made = []  # (trial, the trials in flight told as lies, made in a thread)
    prepare = suggest.Search.prepare

    def spy(self, avoid=frozenset(), pending=None, apart=False):
        made_from = sorted(pending or {})
        make = prepare(self, avoid, pending, apart)

        def suggest_for(trial):
            made.append((trial, made_from, apart))
            return make(trial)

        return suggest_for

    monkeypatch.setattr(suggest.Search, "prepare", spy)
    TPE = {**SPACE.search["tpe"], "startup_trials": 4}  # TPE's model from the fifth trial on
    accuracies = [0.1 + 0.05 * (t % 7) for t in range(12)]
    the_loop, record, executor, _, _ = loop(
        lambda trial, attempt: ok(accuracies[trial]), capacity=2, trials=12, algo="tpe", tpe=TPE
    )
    _, why = the_loop.run()
    assert why == "12 trials ended" and [r.trial for r in record.runs] == list(range(12))
    ahead = [(trial, lies) for trial, lies, apart in made if apart]
    # from the third trial on, each is suggested while the two before it run
    assert ahead == [(t, [t - 2, t - 1]) for t in range(2, 12)]
    assert len({repr(r.config) for r in record.runs}) == 12  # nothing suggested twice
    assert the_loop.asker is not None and the_loop.ahead is None

    made.clear()  # one at a time: asked when a trial ends, never ahead
    the_loop, _, _, _, _ = loop(lambda trial, attempt: ok(accuracies[trial]), trials=6, algo="tpe", tpe=TPE)
    the_loop.run()
    assert [trial for trial, _, apart in made] == list(range(6)) and not any(apart for *_, apart in made)
