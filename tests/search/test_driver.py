"""The ask/tell driver over hyperopt: seeded suggestions, TPE learning, no repeats; the progress display."""

import io
import math

import pytest

from search.compile import CompiledSpace
from search.driver import Search, derive_seed, trial_seed
from search.evaluate import TrialResult
from search.progress import Progress, duration
from search.space import parse_space
from search.tracking import config_hash

RAW = {
    "architecture": {
        "depth": {"choice": [1, 2]},
        "layers": {"filters": {"count": {"choice": [4, 8, 16]}, "size": 3}, "padding": "same"},
    },
    "training": {"lr": {"loguniform": [1e-4, 1e-1]}},
}
SETTINGS = {"algo": "tpe", "seed": 0, "tpe": {"startup_trials": 5, "gamma": 0.25, "candidates": 24}}


def compiled(raw=RAW):
    return CompiledSpace(parse_space(raw))


def run(search, n, loss):
    """Ask and tell n trials with a loss computed from the config; the configs in order."""
    configs = []
    for trial in range(n):
        vals, config = search.ask(trial)
        search.tell(trial, vals, loss(config))
        configs.append(config)
    return configs


def lr_loss(config):
    return abs(math.log10(config["training"]["lr"]) + 2)  # best at lr = 0.01


def test_the_same_seed_gives_the_same_suggestions():
    a = run(Search(compiled(), SETTINGS), 12, lr_loss)
    b = run(Search(compiled(), SETTINGS), 12, lr_loss)
    c = run(Search(compiled(), {**SETTINGS, "seed": 1}), 12, lr_loss)
    assert a == b
    assert a != c


def test_suggestions_are_values_and_decode_from_the_vals():
    search = Search(compiled(), SETTINGS)
    vals, config = search.ask(0)
    assert compiled().decode(vals) == config
    assert config["architecture"]["layers"][0]["filters"]["count"] in (4, 8, 16)
    assert all(isinstance(v, list) for v in vals.values())


def test_tpe_learns_from_told_losses():
    # after the random start-up, TPE proposes learning rates near the best one more often than random search
    def near(configs):
        return sum(lr_loss(c) < 0.25 for c in configs[10:])  # random: 1 in 6

    tpe = run(Search(compiled(), {**SETTINGS, "tpe": {**SETTINGS["tpe"], "startup_trials": 10}}), 40, lr_loss)
    rand = run(Search(compiled(), {**SETTINGS, "algo": "random"}), 40, lr_loss)
    assert near(tpe) > near(rand)


def test_a_repeat_of_an_evaluated_configuration_is_drawn_again():
    small = {  # two configurations in all
        "architecture": {"depth": 1, "layers": {"filters": {"count": {"choice": [4, 8]}, "size": 3}}},
    }
    search = Search(compiled(small), {**SETTINGS, "algo": "random"})
    vals, first = search.ask(0)
    search.tell(0, vals, 0.5)
    _, second = search.ask(1, avoid={config_hash(first)})
    assert second != first


def test_trials_in_flight_are_told_as_the_worst_loss_so_far_and_only_while_asking():
    search = Search(compiled(), {**SETTINGS, "tpe": {**SETTINGS["tpe"], "startup_trials": 10}})
    run(search, 30, lr_loss)
    docs = list(search.trials.trials)
    best = min(docs, key=lambda d: d["result"]["loss"])
    in_flight = {100 + i: best["misc"]["vals"] for i in range(6)}  # six workers on the best point

    def distance(asks):
        return sum(lr_loss(config) for _, config in asks) / len(asks)

    alone = [search.ask(200 + i) for i in range(20)]
    crowded = [search.ask(200 + i, pending=in_flight) for i in range(20)]
    assert search.trials.trials == docs  # the lies are gone once the suggestion is made
    # TPE reads the crowded best point as bad, so it proposes farther from it
    assert distance(crowded) > distance(alone)


def test_trials_in_flight_change_nothing_during_the_random_start_up():
    search = Search(compiled(), SETTINGS)
    vals, _ = search.ask(0)
    assert search.ask(1, pending={0: vals}) == search.ask(1)


def test_failed_trials_are_told_without_a_loss():
    search = Search(compiled(), SETTINGS)
    vals, _ = search.ask(0)
    search.tell(0, vals, None)
    (doc,) = search.trials.trials
    assert doc["result"] == {"status": "fail"}
    assert search.trials.losses() == [None]


def test_seeds_are_derived_stably_per_trial():
    assert trial_seed(0, 3) == trial_seed(0, 3)
    assert len({trial_seed(0, t) for t in range(100)}) == 100
    assert trial_seed(0, 3) != trial_seed(1, 3)
    assert 0 <= derive_seed(123, 4, 5) < 2**31


# ---------------------------------------------------------------- progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


CONFIG = {"architecture": {"layers": [{"filters": {"count": 8, "size": 3}, "pool": {"kind": "max"}}]}}


def test_progress_on_a_terminal_redraws_a_status_line():
    out = Terminal()
    p = Progress(stream=out)
    p.start(0, 2, None)
    p.trial_start(0, CONFIG)
    p.epoch(0, 1, 2, {"val_acc": 0.5})
    p.trial_end(0, TrialResult("ok", val_acc=0.5), True, {"trial": 0, "val_acc": 0.5, "loss": 0.5})
    text = out.getvalue()
    assert "\r\x1b[K" in text
    assert "trial 1/2 t000 epoch 1/2 val_acc 0.5000" in text
    assert "t000 [1/2] l1 f8 k3 pmax" in text and "* best" in text


def test_progress_off_a_terminal_writes_plain_lines_and_quiet_writes_none():
    out = io.StringIO()
    p = Progress(stream=out)
    p.start(0, 1, None)
    p.trial_start(0, CONFIG)
    p.epoch(0, 1, 2, {"val_acc": 0.5})
    p.trial_end(0, TrialResult("failed", reason="diverged: nan"), False, None)
    assert out.getvalue() == "t000 [1/1] l1 f8 k3 pmax  0.0s  failed: diverged: nan\n"
    quiet = io.StringIO()
    q = Progress(quiet=True, stream=quiet)
    q.trial_start(0, CONFIG)
    q.trial_end(0, TrialResult("ok", val_acc=0.5), True, None)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize(("seconds", "text"), [(4.24, "4.2s"), (42, "42s"), (185, "3m05s"), (7620, "2h07m")])
def test_durations(seconds, text):
    assert duration(seconds) == text


def test_a_first_signal_is_noted_and_a_second_one_raised():
    from search.driver import Interrupted, Interrupts

    interrupts = Interrupts()
    interrupts(2, None)  # noted, acted on where the driver chooses
    assert interrupts.should_stop()
    with pytest.raises(Interrupted):
        interrupts.check()
    with pytest.raises(Interrupted):
        interrupts(2, None)
