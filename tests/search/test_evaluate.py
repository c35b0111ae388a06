"""The evaluator's parts: schedules, augmentation, results, and one real trial on digits."""

import math

import pytest
import torch

from search.compile import CompiledSpace
from search.data import load_data
from search.evaluate import evaluate
from search.space import parse_space
from search.train import augment, lr_factor, make_optimizer
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


def test_schedules_start_peak_and_end_where_documented():
    steps, epochs = 10, 4
    total = steps * epochs
    cosine = lr_factor({"kind": "cosine", "warmup_epochs": 1}, epochs, steps)
    assert cosine(0) == pytest.approx(1 / 11)
    assert cosine(10) == pytest.approx(1.0)
    assert cosine(total) == pytest.approx(0.0, abs=1e-9)
    assert all(cosine(s) >= cosine(s + 1) for s in range(10, total))
    step = lr_factor({"kind": "step", "every": 2, "gamma": 0.1}, epochs, steps)
    assert [step(s) for s in (0, 19, 20, 39)] == pytest.approx([1, 1, 0.1, 0.1])
    one = lr_factor({"kind": "onecycle", "pct_start": 0.25}, epochs, steps)
    assert one(0) == pytest.approx(0.04) and one(10) == pytest.approx(1.0)
    assert one(total) == pytest.approx(1e-4)
    assert lr_factor({"kind": "constant"}, epochs, steps)(25) == 1.0


def test_optimizers_follow_the_recipe():
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer(
        {"optimizer": {"kind": "sgd", "momentum": 0.8, "nesterov": True}, "lr": 0.1, "weight_decay": 0.01},
        params,
    )
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.8
    adamw = make_optimizer(
        {"optimizer": {"kind": "adamw", "beta1": 0.8, "beta2": 0.9}, "lr": 0.1, "weight_decay": 0.0}, params
    )
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.8, 0.9)


def test_augmentation_keeps_shapes_and_does_what_it_says():
    torch.manual_seed(0)
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    none = {"hflip": False, "translate": 0, "cutout": 0}
    assert torch.equal(augment(x, none), x)
    flipped = augment(x, {**none, "hflip": True})
    for i in range(2):  # each image is itself or its mirror
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    shifted = augment(x, {**none, "translate": 2})
    assert shifted.shape == x.shape
    for i in range(2):  # a shifted image holds a window of the original, zeros elsewhere
        values = set(shifted[i].flatten().tolist()) - {0.0}
        assert values <= set(x[i].flatten().tolist())
    cut = augment(x, {**none, "cutout": 2})
    holes = (cut == 0).sum(dim=(1, 2, 3))
    assert ((holes >= 1) & (holes <= 4)).all()


def test_a_trial_trains_validates_every_epoch_and_keeps_weights(digits):
    seen = []
    result = evaluate(config(), digits, seed=0, on_epoch=lambda e, m: seen.append((e, m)))
    assert result.outcome == "ok" and result.reason is None
    assert [e for e, _ in seen] == [1, 2] and len(result.history) == 2
    assert set(seen[0][1]) == {"train_loss", "val_acc", "val_loss", "lr", "epoch_seconds"}
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
        return [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in result.history]

    assert untimed(a) == untimed(b)
    assert untimed(a) != untimed(c)


def test_a_huge_learning_rate_diverges_and_is_stopped(digits):
    result = evaluate(config(lr=1e12, optimizer={"kind": "sgd"}), digits, seed=0)
    assert result.outcome == "failed"
    assert result.reason.startswith("diverged: the training loss became")
    assert result.state_dict is None and result.val_acc is None and result.loss is None


def test_metrics_leave_out_what_is_unknown():
    assert TrialResult("invalid", reason="too big", params=None).metrics() == {
        "train_seconds": 0.0,
        "epochs_done": 0.0,
    }


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
