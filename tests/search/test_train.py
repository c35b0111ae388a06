"""The training evaluator's parts: learning-rate schedules, optimizers, augmentation, the timed step,
the precision it trains in."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import search.train
from search.cli import main
from search.errors import UserError
from search.settings import CPU_BF16
from search.train import amp_of, augment, lr_factor, make_optimizer, precision, step_seconds, train
from tests.conftest import ROOT

RECIPE = {  # a recipe's keys that a training step reads
    "optimizer": {"kind": "adamw", "beta1": 0.9, "beta2": 0.999},
    "lr": 1e-2,
    "weight_decay": 0.0,
    "batch_size": 50,
    "label_smoothing": 0.0,
    "augmentation": {"hflip": False, "translate": 0, "cutout": 0},
}


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


def test_a_step_is_timed_over_at_least_its_steps_and_seconds_and_at_most_an_epoch():
    calls = []

    class Counted(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            calls.append(len(x))
            return self.linear(x.flatten(1))

    data = SimpleNamespace(x_train=torch.randn(1000, 1, 2, 2), y_train=torch.randint(0, 3, (1000,)))
    recipe = {**RECIPE, "lr": 1e-3, "batch_size": 100}
    model = Counted()
    before = model.linear.weight.detach().clone()
    assert step_seconds(model, recipe, data, warmup=2, steps=3, seconds=0.0) > 0
    assert calls == [100] * (2 + 5)  # the steps checked in fives: 5 >= 3 timed
    assert not torch.equal(model.linear.weight, before)  # it trained the model given: thrown away after
    calls.clear()
    step_seconds(Counted(), recipe, data, warmup=2, steps=3, seconds=1e9)
    assert len(calls) == 2 + 10  # an epoch of 10 steps at most, whatever the seconds


def two_by_two(images: int) -> SimpleNamespace:
    """Random 2x2 images of 3 classes, ``images`` to train on and 20 to validate: a split's fields
    that training reads."""
    return SimpleNamespace(
        x_train=torch.randn(images, 1, 2, 2),
        y_train=torch.randint(0, 3, (images,)),
        x_val=torch.randn(20, 1, 2, 2),
        y_val=torch.randint(0, 3, (20,)),
    )


def test_training_planned_again_after_each_epoch_trains_the_new_epochs_on_a_rescaled_schedule():
    data = two_by_two(200)
    recipe = {**RECIPE, "schedule": {"kind": "cosine", "warmup_epochs": 0}, "epochs": 6}
    for plans in ([2, 2], [9] * 9, [9, 9, 1]):  # fewer, more, then stop at once (never below those done)
        seen = []

        def replan(seconds, plans=plans, seen=seen):
            seen.append(list(seconds))
            return plans[len(seconds) - 1]

        model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        history = train(model, recipe, data, replan=replan)
        assert len(history) == (3 if plans[-1] == 1 else plans[-1])
        assert seen[-1] == [h["fit_seconds"] for h in history]  # every epoch's seconds so far
        assert history[0]["lr"] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi / 6)))  # as planned
        if plans[-1] != 1:  # the cosine runs over the new total, to 0 at its last step
            assert history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
            assert history[1]["lr"] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 2 / plans[0])))


def test_a_cpu_trains_in_bf16_where_it_computes_bf16_natively_unless_told_not_to(monkeypatch):
    cpu = torch.device("cpu")
    for avx512_bf16, amx, native in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        for said in (None, "1", " 1 "):  # unset or 1: bf16 where native, never emulated
            if said is None:
                monkeypatch.delenv(CPU_BF16, raising=False)
            else:
                monkeypatch.setenv(CPU_BF16, said)
            assert amp_of(cpu) == (torch.bfloat16 if native else None, False)
            assert precision(cpu) == ("bf16 autocast" if native else "float32")
        monkeypatch.setenv(CPU_BF16, "0")
        assert amp_of(cpu) == (None, False) and precision(cpu) == "float32"
    # a torch without the checks: float32
    monkeypatch.delenv(CPU_BF16)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert amp_of(cpu) == (None, False)
    monkeypatch.setenv(CPU_BF16, "yes")
    with pytest.raises(UserError, match="ARCHSEARCH_CPU_BF16='yes': expected 0 .* or 1"):
        amp_of(cpu)


def test_a_bad_archsearch_cpu_bf16_stops_a_command_before_it_starts(monkeypatch, capsys):
    monkeypatch.setenv(CPU_BF16, "2")
    assert main(["sample", str(ROOT / "spaces/quickstart.yaml"), "-n", "1"]) == 2
    assert "archsearch: error: ARCHSEARCH_CPU_BF16='2': expected 0" in capsys.readouterr().err


@pytest.mark.parametrize("native", [True, False])
def test_on_a_cpu_training_runs_in_its_precision_and_validation_in_float32(native, monkeypatch):
    monkeypatch.setattr(search.train, "cpu_bf16", lambda: native)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(16, 3))
    seen = []
    model[0].register_forward_hook(lambda m, i, out: seen.append((m.training, out.dtype)))
    data = two_by_two(100)
    recipe = {**RECIPE, "schedule": {"kind": "cosine", "warmup_epochs": 0}, "epochs": 2}
    history = train(model, recipe, data)
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16 if native else torch.float32}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}  # as exported
    assert model[0].weight.dtype == torch.float32 and len(history) == 2
