"""The training evaluator (``training.mode: train``): build one architecture, train it with its
recipe by backprop, validate every epoch.

Data stays on the device as tensors; each epoch draws one permutation and slices batches from it,
so there is no DataLoader and no per-batch copy from the host. On CUDA the model runs in
channels_last under bf16 autocast (fp16 with loss scaling where bf16 is missing); on a CPU that
computes bf16 natively (AVX512-BF16 or AMX) it trains in channels_last under bf16 autocast too
(2.4x the images per second of float32 for a plain 3-conv network on 2 cores) and validates in
float32, elsewhere it runs in float32. A NaN/inf loss stops the trial at once on a CPU, within
``CHECK_EVERY_CUDA`` steps on a GPU ("diverged"); the rest of what ends a trial is the trial
contract's (``search.trial``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models import Limits, build_model

from .data import Data
from .outcome import Outcome
from .settings import cpu_bf16_allowed
from .trial import (
    Diverged,
    TrialResult,
    cpu_state,
    deadline_check,
    failures,
    planned,
    release_memory,
    seeded,
)

CHECK_EVERY_CUDA = 20  # steps between finiteness checks on a GPU (each one waits for the GPU)
EVAL_BATCH = 1024  # images per forward pass when validating


# ---------------------------------------------------------------- the recipe's parts


def make_optimizer(recipe: dict, params: Any) -> torch.optim.Optimizer:
    opt, lr, wd = recipe["optimizer"], recipe["lr"], recipe["weight_decay"]
    if opt["kind"] == "sgd":
        nesterov = opt["nesterov"] and opt["momentum"] > 0
        return torch.optim.SGD(params, lr=lr, momentum=opt["momentum"], nesterov=nesterov, weight_decay=wd)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[opt["kind"]]
    return cls(params, lr=lr, betas=(opt["beta1"], opt["beta2"]), weight_decay=wd)


def lr_factor(schedule: dict, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate at optimizer step ``s``, as a multiple of the peak ``lr``."""
    total = max(1, epochs * steps_per_epoch)
    kind = schedule["kind"]
    if kind == "constant":
        return lambda s: 1.0
    if kind == "step":
        every, gamma = schedule["every"] * steps_per_epoch, schedule["gamma"]
        return lambda s: gamma ** (s // every)
    if kind == "cosine":
        warm = min(total - 1, round(schedule["warmup_epochs"] * steps_per_epoch))

        def cosine(s: int) -> float:
            if s < warm:
                return (s + 1) / (warm + 1)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm))))

        return cosine
    if kind == "onecycle":  # linear up to the peak, then cosine down to lr/1e4
        up = max(1, round(schedule["pct_start"] * total))

        def onecycle(s: int) -> float:
            if s < up:
                return 0.04 + 0.96 * s / up
            return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - up) / max(1, total - up))))

        return onecycle
    raise ValueError(f"unknown schedule {kind!r}")


def augment(x: torch.Tensor, aug: dict) -> torch.Tensor:
    """Random flips, shifts and cutout of a batch (N, C, H, W), on its device, in one pass each."""
    n, _, h, w = x.shape
    dev = x.device
    if aug["hflip"]:
        flip = torch.rand(n, device=dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    t = aug["translate"]
    if t:
        padded = F.pad(x, (t, t, t, t))  # zeros: the mean of standardized data
        dy = torch.randint(0, 2 * t + 1, (n,), device=dev)
        dx = torch.randint(0, 2 * t + 1, (n,), device=dev)
        rows = (torch.arange(h, device=dev)[None, :] + dy[:, None])[:, None, :, None]  # (N, 1, H, 1)
        cols = (torch.arange(w, device=dev)[None, :] + dx[:, None])[:, None, None, :]  # (N, 1, 1, W)
        batch = torch.arange(n, device=dev)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    s = aug["cutout"]
    if s:
        cy = torch.randint(0, h, (n, 1, 1), device=dev)
        cx = torch.randint(0, w, (n, 1, 1), device=dev)
        yy = torch.arange(h, device=dev)[None, :, None]
        xx = torch.arange(w, device=dev)[None, None, :]
        hole = ((yy - cy).abs() * 2 < s) & ((xx - cx).abs() * 2 < s)  # (N, H, W)
        x = x.masked_fill(hole[:, None], 0.0)
    return x


def amp_of(device: torch.device) -> tuple[torch.dtype | None, bool]:
    """Autocast dtype (None: float32) and whether the loss needs scaling."""
    if device.type == "cpu":
        return (torch.bfloat16 if cpu_bf16() else None), False
    if device.type != "cuda":
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


@torch.no_grad()
def validate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: torch.dtype | None
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over a whole split, in large batches, under autocast to
    ``amp`` on a GPU; on a CPU in float32 always, as an exported model computes (bf16 there only
    speeds training, where the backward pass costs twice the forward)."""
    if x.device.type == "cpu":
        amp = None
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(x), EVAL_BATCH):
        xb, yb = x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]
        with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
            out = model(xb).float()
        loss += F.cross_entropy(out, yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    n = max(1, len(x))
    return correct.item() / n, loss.item() / n


# ---------------------------------------------------------------- training


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: a last batch of one image joins the one before (it would
    upset batch norm)."""
    return max(1, images // batch_size if images % batch_size < 2 else images // batch_size + 1)


def fit_step(
    model: nn.Module,
    recipe: dict,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: torch.Tensor,
    y: torch.Tensor,
    amp: torch.dtype | None,
) -> torch.Tensor:
    """One training step of a recipe on one batch (N, C, H, W), (N,): augment, forward,
    backward, update; the batch's mean loss (on the device: reading it would wait for it)."""
    aug = recipe["augmentation"]
    if aug["hflip"] or aug["translate"] or aug["cutout"]:
        x = augment(x, aug)
    with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
        loss = F.cross_entropy(model(x), y, label_smoothing=recipe["label_smoothing"])
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss


def precision(device: torch.device) -> str:
    """How training runs on ``device``, in words: ``bf16 autocast``, ``fp16 autocast, loss
    scaled`` or ``float32``."""
    amp, scaled = amp_of(device)
    if amp is None:
        return "float32"
    return "fp16 autocast, loss scaled" if scaled else "bf16 autocast"


def cpu_bf16() -> bool:
    """Whether training on this CPU runs under bf16 autocast: where it computes bfloat16 natively
    (AVX512-BF16 or AMX instructions), unless ``ARCHSEARCH_CPU_BF16=0``
    (:func:`search.settings.cpu_bf16_allowed`). Elsewhere bf16 is emulated, slower than float32."""
    if not cpu_bf16_allowed():
        return False
    native = [getattr(torch.cpu, f"_is_{name}_supported", None) for name in ("avx512_bf16", "amx_tile")]
    return any(check is not None and check() for check in native)


def step_seconds(
    model: nn.Module, recipe: dict, data: Data, *, warmup: int = 5, steps: int = 20, seconds: float = 2.0
) -> float:
    """Seconds of one training step of ``recipe`` on ``data`` (on its device), measured: the mean
    of at least ``steps`` steps and ``seconds`` seconds (at most one epoch's), after ``warmup``
    steps. It trains ``model``: give it one to throw away. Global RNG state is consumed."""
    device = data.x_train.device
    amp, scaled = amp_of(device)
    n, bs = len(data.x_train), recipe["batch_size"]
    opt = make_optimizer(recipe, model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=scaled)
    model.train()
    most = max(steps, steps_per_epoch(n, bs))
    timed, start = 0, 0.0
    for i in range(warmup + most):
        if i == warmup:
            _wait(device)
            start = time.perf_counter()
        idx = torch.randint(0, n, (min(bs, n),), device=device)
        fit_step(model, recipe, opt, scaler, data.x_train[idx], data.y_train[idx], amp)
        timed = i + 1 - warmup
        if timed >= steps and timed % 5 == 0:
            _wait(device)
            if time.perf_counter() - start >= seconds:
                break
    _wait(device)
    return (time.perf_counter() - start) / max(1, timed)


def _wait(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU runs ahead of the host)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(
    model: nn.Module,
    recipe: dict,
    data: Data,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    check_time: Callable[[], None] | None = None,
    replan: Callable[[list[float]], int] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` (on the data's device) for ``recipe["epochs"]``; returns the per-epoch history.

    ``replan``: called after each epoch with the seconds of training of every epoch so far,
    returns the epochs to train in all (the epochs done: stop now), which replace the plan; the
    schedule is stretched or shrunk to the new total from the next step on.

    Randomness (batch order, augmentation, dropout) comes from the global torch RNG,
    which the caller seeds (:func:`seeded`); the batch order is drawn on the CPU, so a seed
    gives the same batches on a CPU and a GPU. Raises Diverged on a NaN/inf loss, and
    KeyboardInterrupt at the first step after ``should_stop()`` turns true (Ctrl-C);
    ``check_time`` raises TrialTimeout at the step after the trial's time is up.
    """
    device = data.x_train.device
    amp, scaled = amp_of(device)
    n, bs, epochs = len(data.x_train), recipe["batch_size"], recipe["epochs"]
    steps = steps_per_epoch(n, bs)
    opt = make_optimizer(recipe, model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(recipe["schedule"], epochs, steps))
    scaler = torch.amp.GradScaler(device.type, enabled=scaled)
    check_every = 1 if device.type == "cpu" else CHECK_EVERY_CUDA
    history: list[dict[str, float]] = []
    epoch = 0
    while epoch < epochs:
        epoch += 1
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n).to(device)  # from the CPU generator: the same order on any device
        loss_sum = torch.zeros((), device=device)
        for step in range(steps):
            if should_stop is not None and should_stop():
                raise KeyboardInterrupt("stopped")
            if check_time is not None:
                check_time()
            idx = perm[step * bs : (step + 1) * bs if step < steps - 1 else n]
            loss = fit_step(model, recipe, opt, scaler, data.x_train[idx], data.y_train[idx], amp)
            sched.step()
            loss_sum += loss.detach() * len(idx)
            checking = (step + 1) % check_every == 0 or step == steps - 1
            if checking and not torch.isfinite(loss_sum):
                raise Diverged(f"diverged: the training loss became {loss_sum.item()} in epoch {epoch}")
        # validate
        record = {"train_loss": loss_sum.item() / n, "fit_seconds": time.perf_counter() - t0}  # no validation
        if len(data.x_val):  # none when training on train + validation (retrain)
            record["val_acc"], record["val_loss"] = validate(model, data.x_val, data.y_val, amp)
        record.update(lr=opt.param_groups[0]["lr"], epoch_seconds=time.perf_counter() - t0)
        history.append(record)
        if replan is not None:
            planned = max(epoch, replan([h["fit_seconds"] for h in history]))
            if planned != epochs:
                epochs = planned
                sched.lr_lambdas[0] = lr_factor(recipe["schedule"], epochs, steps)
        if on_epoch is not None:
            on_epoch(epoch, record)
    return history


# ---------------------------------------------------------------- one trial


def train_trial(
    config: dict,
    data: Data,
    *,
    seed: int,
    limits: Limits | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    timeout: float | None = None,
) -> TrialResult:
    """Build, train and validate one config on ``data`` (already on its device); past
    ``timeout`` seconds the trial stops, failed with the reason ``timeout``."""
    arch, recipe = config["architecture"], config["training"]
    device = data.x_train.device
    result = planned(arch, data, limits)
    if result.outcome != Outcome.OK:
        return result
    model = None
    with failures(result), seeded(seed, device):
        model = build_model(arch, data.input_shape, data.n_classes, limits=limits, seed=seed)
        model = model.to(device, memory_format=torch.channels_last)
        t0 = time.perf_counter()
        try:
            history = train(model, recipe, data, on_epoch, should_stop, deadline_check(timeout))
        finally:
            result.train_seconds = time.perf_counter() - t0
    if result.outcome != Outcome.OK:
        del model
        release_memory(device)
        return result
    return TrialResult.from_history(
        history,
        train_seconds=result.train_seconds,
        images_per_second=len(data.x_train) * len(history) / max(result.train_seconds, 1e-9),
        params=result.params,
        macs=result.macs,
        device=result.device,
        state_dict=cpu_state(model),
    )
