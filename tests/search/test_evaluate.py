"""Evaluating a trial: the evaluator of its mode, from the table; real trials on digits."""

import math

import pytest
import torch

from search import evaluate as evaluate_module
from search.compile import CompiledSpace
from search.data import load_data
from search.evaluate import EVALUATORS, evaluate
from search.outcome import Outcome
from search.space import parse_space
from search.trial import TrialResult

SPACE = {
    "data": {"dataset": "digits"},
    "architecture": {"depth": 1, "layers": {"filters": {"count": 4, "size": 3}, "padding": "same"}},
    "training": {"epochs": 2, "batch_size": 64, "schedule": "constant"},
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_data("digits", cache_dir=tmp_path_factory.mktemp("cache"))


def config(**training):
    raw = {**SPACE, "training": {**SPACE["training"], **training}}
    return CompiledSpace(parse_space(raw)).sample(1)[0]


def test_a_trial_trains_validates_every_epoch_and_keeps_weights(digits):
    seen = []
    result = evaluate(config(), digits, seed=0, on_epoch=lambda e, m: seen.append((e, m)))
    assert result.outcome == "ok" and result.reason is None
    assert [e for e, _ in seen] == [1, 2] and len(result.history) == 2
    assert set(seen[0][1]) == {"train_loss", "val_acc", "val_loss", "lr", "epoch_seconds", "fit_seconds"}
    assert result.val_acc == result.history[-1]["val_acc"] > 0.3  # well above chance (0.1)
    assert result.best_val_acc == max(h["val_acc"] for h in result.history)
    assert result.loss == pytest.approx(1 - result.val_acc)
    assert result.params > 0 and result.macs > 0 and result.images_per_second > 0
    assert result.device == "cpu"
    assert result.state_dict and all(t.device.type == "cpu" for t in result.state_dict.values())
    metrics = result.metrics()
    assert metrics["epochs_done"] == 2 and all(math.isfinite(v) for v in metrics.values())


def test_the_same_seed_gives_the_same_metrics_and_another_seed_others(digits):
    a = evaluate(config(), digits, seed=1)
    b = evaluate(config(), digits, seed=1)
    c = evaluate(config(), digits, seed=2)

    def untimed(result):
        timed = ("epoch_seconds", "fit_seconds")
        return [{k: v for k, v in h.items() if k not in timed} for h in result.history]

    assert untimed(a) == untimed(b)
    assert untimed(a) != untimed(c)


def test_a_huge_learning_rate_diverges_and_is_stopped(digits):
    result = evaluate(config(lr=1e12, optimizer={"kind": "sgd"}), digits, seed=0)
    assert result.outcome == "failed"
    assert result.reason.startswith("diverged: the training loss became")
    assert result.state_dict is None and result.val_acc is None and result.loss is None


def test_a_stop_request_ends_training_at_the_next_step(digits):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(KeyboardInterrupt):
        evaluate(config(), digits, seed=0, should_stop=should_stop)
    assert len(calls) == 4


def test_out_of_memory_is_a_failed_trial_with_the_reason(digits, monkeypatch):
    from search import train as train_module

    def too_big(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore details")

    monkeypatch.setattr(train_module, "build_model", too_big)
    result = evaluate(config(), digits, seed=0)
    assert result.outcome == "failed"
    assert result.reason == "out of memory: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert result.traceback is None and result.state_dict is None


def test_the_evaluator_is_chosen_by_the_mode_from_a_table(digits, monkeypatch):
    assert set(EVALUATORS) == {"train", "screen"}
    calls = []

    def third(config, data, **options):
        calls.append((config["training"]["mode"], sorted(options)))
        return TrialResult(Outcome.OK, val_acc=0.5)

    monkeypatch.setitem(evaluate_module.EVALUATORS, "train", third)
    result = evaluate(config(), digits, seed=1, limits=None, timeout=None)
    assert calls == [("train", ["limits", "seed", "timeout"])] and result.val_acc == 0.5
