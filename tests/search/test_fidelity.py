"""Multi-fidelity search: the rungs, the promotions, the model TPE suggests from, a hopeless trial,
one run per trial, and resume in the middle of a bracket; with a fake executor, in milliseconds,
and one campaign on digits."""

import dataclasses

import pytest
import torch

from search.cli import main
from search.compile import CompiledSpace
from search.data import load_data
from search.driver import Loop, State
from search.errors import UserError
from search.fidelity import MIN_IMAGES, Ladder, Rung, offset, rungs_of
from search.outcome import Outcome
from search.space import SpaceError, parse_space
from search.trial import TrialResult
from tests.search.test_driver import RAW, Clock, Display, Executor, Job, Record, record_of
from tests.search.test_end_to_end import campaign_of, client_for, trial_runs

FIDELITY = {"rungs": 2, "reduction": 3}
IMAGES = 900  # the trials' training images: rungs of 300 x 1, 900 x 1 and 900 x 3


def space(**search):
    raw = {**RAW, "search": {**RAW["search"], "fidelity": FIDELITY, **search}}
    return parse_space(raw)


class RungExecutor(Executor):
    """Runs each job as ``score(trial, epochs, images)`` says (a validation accuracy), and keeps
    what each job was asked: (trial, epochs, images)."""

    def __init__(self, clock, score, capacity=1):
        super().__init__(clock, None, 10.0, capacity)
        self.score, self.asked, self.modes = score, [], []

    def wait(self, handle, timeout):
        job = self.jobs.pop(0)
        trial, epochs = int(job.key), job.config["training"]["epochs"]
        self.asked.append((trial, epochs, job.images))
        self.modes.append(job.config["training"].get("mode", "train"))
        self.clock.now += epochs * (job.images or IMAGES) / 100
        acc = self.score(trial, epochs, job.images)
        for epoch in range(1, epochs + 1):
            handle(Event("epoch", job.key, epoch=epoch, metrics={"val_acc": acc, "epoch_seconds": 1.0}))
        history = [{"val_acc": acc}] * epochs
        result = TrialResult.from_history(history, train_seconds=float(epochs), macs=1000 * (trial + 1))
        handle(Event("done", job.key, result=result, where="host:1", device="cpu"))


from search.executor import Event  # noqa: E402


def rung_loop(score, record=None, capacity=1, fidelity=FIDELITY, **search):
    s = space(fidelity=fidelity, **search)
    clock = Clock()
    executor = RungExecutor(clock, score, capacity)
    record = record or Record()
    the_loop = Loop(
        record,
        CompiledSpace(s),
        executor,
        s.search,
        make_job=Job,
        device_tag="cpu",
        progress=Display(),
        images=IMAGES,
        classes=10,
        clock=clock,
    )
    return the_loop, record, executor


QUALITY = [0, 7, 5, 3, 1, 8, 6, 4, 2, 9, 10, 11]  # of trial 0, 1, ...: higher is better


def by_trial(trial, epochs, images):
    """A trial's validation accuracy: its quality, plus what a higher fidelity adds to all alike."""
    return 0.3 + 0.02 * QUALITY[trial] + 0.1 * epochs + (0.05 if images is None else 0.0)


# ---------------------------------------------------------------- rungs and promotions


def test_each_rung_costs_one_reduction_of_the_next_fewer_epochs_first_then_fewer_images():
    assert rungs_of(FIDELITY, 8000, 3) == [Rung(0, 2667, 1), Rung(1, 8000, 1), Rung(2, 8000, 3)]
    assert rungs_of({"rungs": 3, "reduction": 2}, 8000, 8) == [
        Rung(0, 8000, 1), Rung(1, 8000, 2), Rung(2, 8000, 4), Rung(3, 8000, 8)
    ]  # fmt: skip
    assert rungs_of({"rungs": 0, "reduction": 3}, 8000, 3) == [Rung(0, 8000, 3)]
    assert [offset(rungs_of(FIDELITY, 8000, 3), k) for k in range(3)] == [0, 1, 2]
    with pytest.raises(UserError, match=f"fewer than {MIN_IMAGES}; use fewer rungs"):
        rungs_of({"rungs": 3, "reduction": 3}, 1000, 1)


def test_a_trial_is_promoted_when_it_is_in_the_best_one_in_reduction_of_its_rung():
    ladder = Ladder(rungs_of(FIDELITY, 900, 3), 3)
    for trial, loss in enumerate([0.5, 0.4]):
        ladder.record(trial, 0, loss, promotable=True)
    assert ladder.due() == []  # two results: none is in the best third yet
    ladder.record(2, 0, 0.6, promotable=True)
    assert ladder.due() == [(1, 1)]
    assert ladder.due(busy={1}) == []
    ladder.started(1, 1)
    assert ladder.due() == []  # promoted once
    for trial, loss in [(3, 0.1), (4, 0.9), (5, 0.2)]:
        ladder.record(trial, 0, loss, promotable=trial != 3)  # 3 was at chance: never promoted
    assert ladder.due() == [(5, 1)]  # the best two of six: 3 (not promotable) and 5
    ladder.record(1, 1, 0.3, promotable=True)
    assert ladder.reached(1) == 1 and ladder.reached(4) == 0 and ladder.reached(9) == -1
    ladder.started(5, 1)
    assert ladder.due() == []
    ladder.interrupted(5, 1)  # its promotion stopped (Ctrl-C): due again
    assert ladder.due() == [(5, 1)]
    assert ladder.counts() == [6, 1, 0]


def test_the_model_is_the_highest_rung_with_enough_results():
    ladder = Ladder(rungs_of(FIDELITY, 900, 3), 3)
    for trial in range(5):
        ladder.record(trial, 0, 0.5, promotable=True)
    ladder.record(0, 1, 0.4, promotable=True)
    ladder.record(1, 1, None, promotable=False)  # failed there: no result to model
    assert ladder.model_rung(2) == 0
    ladder.record(2, 1, 0.3, promotable=True)
    assert ladder.model_rung(2) == 1 and ladder.model_rung(6) == 0


def test_successive_halving_promotes_the_best_and_trains_each_rung_at_its_fidelity():
    the_loop, record, executor = rung_loop(by_trial, trials=9)
    state, why = the_loop.run()
    assert why == "9 trials ended"
    fidelities = [(1, 300), (1, None), (3, None)]
    at = {k: [t for t, e, i in executor.asked if (e, i) == f] for k, f in enumerate(fidelities)}
    assert at[0] == list(range(9))  # every configuration starts at the cheapest rung
    # asynchronous successive halving: a trial goes on as soon as it is in the best third of its
    # rung (t1 after 3 results, t5 after 6, t6 after 9; t5 is the best of those 3 at rung 1)
    assert at[1] == [1, 5, 6] and at[2] == [5]
    assert executor.asked.index((1, 1, None)) == 3  # promoted at once, before a fourth trial starts
    # one run per trial: promotions reopen it, their epochs after the rungs below
    assert [r.trial for r in record.runs] == list(range(9))
    reopened = {r.trial: r.reopened for r in record.runs if hasattr(r, "reopened")}
    assert reopened == {1: [1], 5: [1, 2], 6: [1]}
    top = record.runs[5]
    assert top.outcome == Outcome.OK and top.metrics["rung"] == 2 and top.metrics["rung_epochs"] == 3
    assert top.metrics["rung0_loss"] == pytest.approx(1 - by_trial(5, 1, 300))
    assert top.metrics["rung2_val_acc"] == pytest.approx(by_trial(5, 3, None))
    assert record.runs[0].metrics["rung"] == 0 and record.runs[0].metrics["rung_images"] == 300
    # the best is the best of the highest rung reached
    assert state.best["trial"] == 5 and state.best["rung"] == 2
    assert state.ended == dict.fromkeys(range(9), Outcome.OK)


def test_the_best_is_the_best_of_the_highest_rung_reached():
    state = State()
    state.end(0, Outcome.OK, "a", 0.05, 0.95, "t000", rung=0)
    state.end(1, Outcome.OK, "b", 0.20, 0.80, "t001", rung=1)
    assert state.end(2, Outcome.OK, "c", 0.01, 0.99, "t002", rung=0) is False  # a cheap score
    assert state.best["trial"] == 1
    assert state.end(3, Outcome.OK, "d", 0.15, 0.85, "t003", rung=1) is True


def test_tpe_suggests_from_the_highest_rung_with_enough_results_and_learns_every_rung():
    tpe = {"startup_trials": 2, "gamma": 0.25, "candidates": 24}
    the_loop, _, _ = rung_loop(by_trial, trials=12, algo="tpe", tpe=tpe)
    asked = []

    def spy(model, k):
        ask = model.ask
        model.ask = lambda *a, **kw: asked.append(k) or ask(*a, **kw)

    for k, model in enumerate(the_loop.models):
        spy(model, k)
    the_loop.run()
    counts = the_loop.ladder.counts()
    assert [len(m.told) for m in the_loop.models] == counts  # each rung's model learned its results
    assert counts[0] == 12 and counts[1] >= 2
    # rung 0's model until another rung has startup_trials results, then the highest such one
    assert asked[:3] == [0, 0, 0] and asked[-1] == max(k for k, n in enumerate(counts) if n >= 2) > 0


def test_a_trial_at_chance_at_its_first_rung_is_pruned_there_and_never_promoted():
    the_loop, record, executor = rung_loop(lambda t, e, i: 0.1 if t < 3 else by_trial(t, e, i), trials=3)
    state, _ = the_loop.run()
    assert [(t, i) for t, _, i in executor.asked] == [(0, 300), (1, 300), (2, 300)]
    assert state.ended == dict.fromkeys(range(3), Outcome.PRUNED)
    assert all(r.reason.startswith("at chance: val_acc 0.1000") and r.reason.endswith("at rung 0")
               for r in record.runs)  # fmt: skip


def test_a_campaign_resumed_in_the_middle_of_a_bracket_repeats_nothing():
    s = space()
    compiled = CompiledSpace(s)
    vals = [compiled.encode(c) for c in compiled.sample(4, seed=1)]

    def at_rung0(trial, outcome, loss, attempt=1):
        r = record_of(trial, outcome, vals[trial], attempt=attempt, loss=loss)
        metrics = {**r.metrics, "rung": 0, "rung_images": 300, "rung0_loss": loss, "rung0_val_acc": 1 - loss}
        return dataclasses.replace(r, metrics=metrics)

    interrupted = at_rung0(2, Outcome.RUNNING, 0.1)  # its promotion to rung 1 was running: driver killed
    partial = {**interrupted.metrics, "val_acc": 0.5}  # the partial rung's epochs overwrote it
    interrupted = dataclasses.replace(interrupted, loss=0.5, metrics=partial)
    before = [
        at_rung0(0, Outcome.OK, 0.3),
        at_rung0(1, Outcome.OK, 0.2),
        interrupted,
        record_of(3, Outcome.KILLED, vals[3]),  # killed at rung 0: run again first
    ]
    the_loop, record, executor = rung_loop(by_trial, Record(before), trials=4)
    # the interrupted one is ok again at rung 0, with its rung-0 metrics, past the partial epochs
    assert record.restored == [(2, {"loss": 0.1, "val_acc": 0.9}, offset(the_loop.ladder.rungs, 2))]
    assert record.killed == [] and the_loop.state.ended[2] == Outcome.OK
    assert the_loop.state.best == {**the_loop.state.best, "trial": 2, "loss": 0.1, "val_acc": 0.9}
    state, why = the_loop.run()
    # the killed trial first (a new attempt), then the promotion due (trial 2, in its own run)
    assert executor.asked == [(3, 1, 300), (2, 1, None)]
    assert [(r.trial, r.attempt) for r in record.runs] == [(3, 2), (2, 1)]
    assert record.runs[1].reopened == [1]
    assert why == "4 trials ended" and sorted(state.ended) == [0, 1, 2, 3]


def test_a_screening_cascade_screens_every_configuration_and_trains_the_best():
    cascade = {"rungs": 0, "reduction": 3, "screen": True}
    assert rungs_of({**cascade, "rungs": 1}, 8000, 3) == [
        Rung(0, 8000, 1, "screen"), Rung(1, 8000, 1), Rung(2, 8000, 3)
    ]  # fmt: skip
    the_loop, record, executor = rung_loop(by_trial, trials=6, fidelity=cascade)
    the_loop.run()
    # screened first, on all the trials' images; the best 1 in 3 trained, at the trials' fidelity
    assert [(t, m) for (t, _, _), m in zip(executor.asked, executor.modes, strict=True)] == [
        (0, "screen"), (1, "screen"), (2, "screen"), (1, "train"), (3, "screen"), (4, "screen"),
        (5, "screen"), (5, "train")
    ]  # fmt: skip
    assert executor.asked[3] == (1, 3, None)
    # screening's time is not training's: each has its own cost model
    assert len(the_loop.screen_cost.seen) == 6 and len(the_loop.cost.seen) == 2
    assert record.runs[1].metrics["rung"] == 1 and "rung0_val_acc" in record.runs[1].metrics


def test_a_promotion_whose_worker_dies_runs_again_in_the_same_run():
    the_loop, record, executor = rung_loop(by_trial, trials=3)
    wait = executor.wait
    lost = []

    def wait_losing_once(handle, timeout):
        job = executor.jobs[0]
        if job.images is None and not lost:  # the first promotion: its worker dies
            lost.append(job.key)
            handle(Event("lost", job.key, reason="worker killed"))
            return  # the executor keeps the job, and runs it again
        wait(handle, timeout)

    executor.wait = wait_losing_once
    state, _ = the_loop.run()
    assert lost == ["1"] and executor.asked[-1] == (1, 1, None)
    assert [(r.trial, r.attempt) for r in record.runs] == [(0, 1), (1, 1), (2, 1)]  # no new run
    assert record.runs[1].outcome == Outcome.OK and record.runs[1].metrics["rung"] == 1
    assert state.ended[1] == Outcome.OK


def test_multi_fidelity_refuses_a_searched_epoch_count_and_a_pruning_rule():
    with pytest.raises(SpaceError, match="training.epochs: multi-fidelity rungs"):
        parse_space({**RAW, "training": {"epochs": {"choice": [2, 3]}}, "search": {"fidelity": FIDELITY}})
    with pytest.raises(SpaceError, match="search.fidelity.rungs: .* asha both stop trials early"):
        parse_space({**RAW, "search": {"fidelity": FIDELITY, "pruning": {"rule": "asha"}}})
    with pytest.raises(SpaceError, match="search.fidelity.screen: .* these screen already"):
        parse_space({**RAW, "training": {"mode": "screen"}, "search": {"fidelity": {"screen": True}}})


def test_a_rung_trains_on_the_first_images_of_one_fixed_order(tmp_path):
    data = load_data("digits", cache_dir=tmp_path)
    small, large = data.head(300), data.head(900)
    assert len(small.y_train) == 300 and len(large.y_train) == 900
    rows = {tuple(x.flatten().tolist()) for x in large.x_train}
    assert all(tuple(x.flatten().tolist()) in rows for x in small.x_train)  # nested
    assert torch.equal(data.head(300).x_train, small.x_train)  # the same every time
    assert small.x_val is data.x_val and data.head(None) is data and data.head(10**6) is data
    assert len(set(small.y_train.tolist())) == 10  # a random order, not the stored one


# ---------------------------------------------------------------- end to end


def test_a_multi_fidelity_campaign_on_digits_keeps_one_run_per_trial(tiny, runs, capsys):
    args = ["run", str(tiny), "--runs", str(runs), "--trials", "6", "--algo", "random"]
    args += ["--set", "search.fidelity={rungs: 1, reduction: 3}"]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "@ rung 1 (1,294 images x 2 epochs)" in out
    client = client_for(runs)
    exp, parent = campaign_of(client, "tiny")
    children = trial_runs(client, exp.experiment_id)
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)
    rung = {int(c.data.tags["archsearch.trial"]): int(c.data.metrics["rung"]) for c in children}
    assert sorted(rung.values()) == [0, 0, 0, 0, 1, 1]
    promoted = next(c for c in children if c.data.metrics["rung"] == 1)
    steps = [m.step for m in client.get_metric_history(promoted.info.run_id, "val_acc")]
    assert steps == [1, 2, 3]  # rung 0's epoch, then rung 1's two
    assert promoted.data.metrics["rung_images"] == 1294 and "rung0_val_acc" in promoted.data.metrics

    assert main(["status", "tiny", "--runs", str(runs)]) == 0
    status = capsys.readouterr().out
    assert (
        "rungs (trials that ended each; images x epochs): 6 at rung 0 (863 images x 1), 2 at rung 1" in status
    )
    assert "at rung 1" in status.split("best:")[1].splitlines()[0]
    assert main(["leaderboard", "tiny", "--runs", str(runs)]) == 0
    board = capsys.readouterr().out
    assert " rung " in board.splitlines()[0]


def test_a_screening_cascade_on_digits(tiny, runs, capsys):
    args = ["run", str(tiny), "--runs", str(runs), "--trials", "6", "--algo", "random"]
    args += ["--set", "search.fidelity={screen: true}"]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.count("@ rung 0 (screened on 1,294 images)") == 6
    assert out.count("@ rung 1 (1,294 images x 2 epochs)") == 2
    client = client_for(runs)
    exp, _ = campaign_of(client, "tiny")
    children = trial_runs(client, exp.experiment_id)
    trained = [c for c in children if c.data.metrics["rung"] == 1]
    assert len(children) == 6 and len(trained) == 2
    for c in trained:  # screened, then trained for 2 epochs: its epochs go on from the screening's
        assert [m.step for m in client.get_metric_history(c.info.run_id, "val_acc")] == [1, 2, 3]
        assert c.data.metrics["epochs_done"] == 2 and c.data.tags["archsearch.outcome"] == "ok"
