"""The evaluator: build one sampled architecture, train it with its recipe, validate every epoch.

One call, one trial: :func:`evaluate` takes a decoded config (plain values),
the in-memory data and a seed, and always returns a :class:`TrialResult`.
Trials that go wrong are results, not crashes:

- ``invalid``: the dry shape pass (or a budget) refused the architecture, before any training;
- ``failed``: out of memory (memory released), a NaN/inf loss ("diverged", stopped at
  once on CPU, within ``CHECK_EVERY_CUDA`` steps on a GPU), or any other exception
  (reason and traceback kept).

Ctrl-C (KeyboardInterrupt) is not caught: the driver ends the trial as killed.

Data stays on the device as tensors; each epoch draws one permutation and
slices batches from it, so there is no DataLoader and no per-batch copy from
the host. On CUDA the model runs in channels_last under bf16 autocast (fp16
with loss scaling where bf16 is missing); on CPU in float32, channels_last.
"""

from __future__ import annotations

import contextlib
import gc
import math
import platform
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models import InvalidArchitecture, Limits, build_model, plan_model

from .data import Data
from .errors import UserError

CHECK_EVERY_CUDA = 20  # steps between finiteness checks on a GPU (each one waits for the GPU)
EVAL_BATCH = 1024  # images per forward pass when validating
TIMEOUT = "timeout"  # the reason of a trial stopped by search.trial_timeout (filter on it in MLflow)


@dataclass
class TrialResult:
    """What one trial produced. ``loss`` (1 - final val_acc) is what the search minimizes."""

    outcome: str  # ok | invalid | failed
    reason: str | None = None  # why it is not ok, one line
    traceback: str | None = None  # of an unexpected exception
    val_acc: float | None = None  # after the last epoch (the weights kept are those)
    val_loss: float | None = None
    best_val_acc: float | None = None  # over epochs
    best_val_loss: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    train_seconds: float = 0.0  # training and validation, without building the model
    images_per_second: float | None = None  # training images per second of training
    params: int | None = None
    macs: int | None = None  # per image
    device: str = "cpu"
    state_dict: dict[str, torch.Tensor] | None = None  # on the CPU; finished trials only
    extra: dict[str, float] = field(default_factory=dict)  # metrics of one evaluator (screening: features)
    device_error: bool = False  # a CUDA error that leaves this process unable to use its GPU

    @property
    def loss(self) -> float | None:
        return None if self.val_acc is None else 1.0 - self.val_acc

    def metrics(self) -> dict[str, float]:
        """The final metrics, by the names every trial run uses."""
        out = {
            "val_acc": self.val_acc,
            "val_loss": self.val_loss,
            "best_val_acc": self.best_val_acc,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "loss": self.loss,
            "train_seconds": self.train_seconds,
            "images_per_second": self.images_per_second,
            "params": self.params,
            "macs": self.macs,
            "epochs_done": len(self.history),
            **self.extra,
        }
        return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}


class DeviceFailed(UserError):
    """The GPU of this process failed (a CUDA error other than out of memory); nothing more can
    run on it here."""


def is_device_error(e: BaseException) -> bool:
    """A CUDA error other than out of memory (a device-side assert, an illegal address): after
    it every CUDA call of the process fails, so the process must be replaced."""
    if "out of memory" in str(e):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)  # torch >= 2.8
    if accelerator_error is not None and isinstance(e, accelerator_error):
        return True
    return isinstance(e, RuntimeError) and str(e).startswith("CUDA error")


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class TrialTimeout(RuntimeError):
    """The trial ran past its time limit (``search.trial_timeout``)."""


def deadline_check(timeout: float | None) -> Callable[[], None]:
    """A function that raises TrialTimeout once ``timeout`` seconds have passed (None: never)."""
    if timeout is None:
        return lambda: None
    deadline = time.monotonic() + timeout

    def check() -> None:
        if time.monotonic() > deadline:
            raise TrialTimeout(f"past the trial timeout of {timeout:g} s")

    return check


def resolve_device(name: str) -> torch.device:
    """cpu, cuda, or auto (CUDA when there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: torch sees no CUDA device here; use --device cpu or auto")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """How a trial's run names its device: ``cuda:NVIDIA H100 80GB HBM3``, ``cpu:x86_64 x2 threads``."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


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


def _amp(device: torch.device) -> tuple[torch.dtype | None, bool]:
    """Autocast dtype (None: float32) and whether the loss needs scaling."""
    if device.type != "cuda":
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


@torch.no_grad()
def validate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: torch.dtype | None
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over a whole split, in large batches."""
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


def train(
    model: nn.Module,
    recipe: dict,
    data: Data,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    check_time: Callable[[], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` (on the data's device) for ``recipe["epochs"]``; returns the per-epoch history.

    Randomness (batch order, augmentation, dropout) comes from the global torch RNG,
    which the caller seeds (:func:`seeded`); the batch order is drawn on the CPU, so a seed
    gives the same batches on a CPU and a GPU. Raises Diverged on a NaN/inf loss, and
    KeyboardInterrupt at the first step after ``should_stop()`` turns true (Ctrl-C);
    ``check_time`` raises TrialTimeout at the step after the trial's time is up.
    """
    device = data.x_train.device
    amp, scaled = _amp(device)
    n, bs, epochs = len(data.x_train), recipe["batch_size"], recipe["epochs"]
    steps = max(1, n // bs if n % bs < 2 else n // bs + 1)  # a last batch of 1 would upset batch norm
    opt = make_optimizer(recipe, model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(recipe["schedule"], epochs, steps))
    scaler = torch.amp.GradScaler(device.type, enabled=scaled)
    aug = recipe["augmentation"]
    augmenting = aug["hflip"] or aug["translate"] or aug["cutout"]
    check_every = 1 if device.type == "cpu" else CHECK_EVERY_CUDA
    smoothing = recipe["label_smoothing"]
    history = []
    for epoch in range(1, epochs + 1):
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
            x, y = data.x_train[idx], data.y_train[idx]  # (B, C, H, W), (B,)
            if augmenting:
                x = augment(x, aug)
            # forward, backward, update
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            loss_sum += loss.detach() * len(idx)
            checking = (step + 1) % check_every == 0 or step == steps - 1
            if checking and not torch.isfinite(loss_sum):
                raise Diverged(f"diverged: the training loss became {loss_sum.item()} in epoch {epoch}")
        # validate
        record = {"train_loss": loss_sum.item() / n}
        if len(data.x_val):  # none when training on train + validation (retrain)
            record["val_acc"], record["val_loss"] = validate(model, data.x_val, data.y_val, amp)
        record.update(lr=opt.param_groups[0]["lr"], epoch_seconds=time.perf_counter() - t0)
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
    return history


# ---------------------------------------------------------------- one trial


def evaluate(
    config: dict,
    data: Data,
    *,
    seed: int,
    limits: Limits | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    timeout: float | None = None,
) -> TrialResult:
    """Build, train and validate one config on ``data`` (already on its device); in screening
    mode (``training.mode: screen``), leave its filters random and fit a linear read-out.
    Past ``timeout`` seconds the trial stops, failed with the reason ``timeout``."""
    arch, recipe = config["architecture"], config["training"]
    if recipe.get("mode") == "screen":
        from .screen import screen

        return screen(
            config,
            data,
            seed=seed,
            limits=limits,
            on_epoch=on_epoch,
            should_stop=should_stop,
            timeout=timeout,
        )
    device = data.x_train.device
    result = planned(arch, data, limits)
    if result.outcome != "ok":
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
    if result.outcome != "ok":
        del model
        release_memory(device)
        return result

    last = history[-1]
    best = max(range(len(history)), key=lambda i: history[i]["val_acc"])
    result.history = history
    result.val_acc, result.val_loss = last["val_acc"], last["val_loss"]
    result.best_val_acc, result.best_val_loss = history[best]["val_acc"], history[best]["val_loss"]
    result.best_epoch = best + 1
    result.images_per_second = len(data.x_train) * len(history) / max(result.train_seconds, 1e-9)
    result.state_dict = cpu_state(model)
    return result


def planned(arch: dict, data: Data, limits: Limits | None) -> TrialResult:
    """A trial's result to fill, with its size from the dry shape pass (or invalid, with why)."""
    result = TrialResult("ok", device=str(data.x_train.device))
    try:
        plan = plan_model(arch, data.input_shape, data.n_classes, limits)
    except InvalidArchitecture as e:
        result.outcome, result.reason = "invalid", str(e)
        return result
    result.params, result.macs = plan.params, plan.macs
    return result


@contextlib.contextmanager
def failures(result: TrialResult) -> Iterator[None]:
    """Errors of a trial's work, recorded in ``result`` as its outcome (Ctrl-C passes through)."""
    try:
        yield
    except InvalidArchitecture as e:  # found late (screening's read-out)
        result.outcome, result.reason = "invalid", str(e)
    except Diverged as e:
        result.outcome, result.reason = "failed", str(e)
    except TrialTimeout:
        result.outcome, result.reason = "failed", TIMEOUT
    except torch.OutOfMemoryError as e:
        result.outcome, result.reason = "failed", f"out of memory: {str(e).splitlines()[0][:200]}"
    except Exception as e:  # any other error is this trial's failure, not the campaign's
        result.outcome, result.reason = "failed", error_line(e)
        result.traceback = traceback.format_exc()
        result.device_error = is_device_error(e)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The global torch RNGs (the CPU's and the trial's GPU's) seeded for one trial (batch
    order, augmentation, dropout), and restored afterwards; the weights come from the seed
    given to ``build_model``."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the CPU, to keep or save."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def error_line(e: BaseException) -> str:
    """An exception as the one-line reason of a failed trial."""
    return f"{type(e).__name__}: {e}".splitlines()[0][:500]


def release_memory(device: torch.device, collect: bool = True) -> None:
    """Free what a trial left: with ``collect``, its tensors held in reference cycles (a failed
    trial's traceback holds its frames; a full collection takes ~0.3 s in a process that has
    imported torch and MLflow, too much after every trial), then the GPU's cached blocks. Never
    raises: after a CUDA error the device refuses every call, and the failure is recorded."""
    if collect:
        gc.collect()
    if device.type == "cuda":
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()
