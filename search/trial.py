"""The trial contract: how a trial ends, what it gives back, and what every evaluator shares.

An evaluator (``search.evaluate.EVALUATORS``, chosen by ``training.mode``) takes a decoded
config (plain values), the data already on its device and a seed, and always returns a
:class:`TrialResult`. Trials that go wrong are results, not crashes:

- ``invalid``: the dry shape pass (or a budget) refused the architecture, before any training;
- ``failed``: out of memory (memory released), a NaN/inf loss ("diverged"), a timeout, or any
  other exception (reason and traceback kept).

Ctrl-C (KeyboardInterrupt) is not caught: the driver ends the trial as killed. The helpers
below are what the evaluators share: the planned result with its size (:func:`planned`), the
errors that end a trial (:func:`failures`), its seeded randomness (:func:`seeded`), its time
limit (:func:`deadline_check`), its device, and what it leaves behind (:func:`release_memory`).
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
from typing import Any, Protocol

import torch
from torch import nn

from models import InvalidArchitecture, Limits, plan_model

from .data import Data
from .errors import UserError, error_line
from .outcome import Outcome

TIMEOUT = "timeout"  # the reason of a trial stopped by search.trial_timeout (filter on it in MLflow)


@dataclass
class TrialResult:
    """What one trial produced. ``loss`` (1 - final val_acc) is what the search minimizes."""

    outcome: Outcome
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

    def __post_init__(self) -> None:
        self.outcome = Outcome(self.outcome)

    @classmethod
    def from_history(
        cls, history: list[dict[str, float]], outcome: Outcome = Outcome.OK, **fields: Any
    ) -> TrialResult:
        """The result of the epochs a trial reported: the last epoch's metrics, the best epoch
        (by validation accuracy) and the history itself; ``fields`` fill the rest."""
        last = history[-1]
        best = max(range(len(history)), key=lambda i: history[i]["val_acc"])
        return cls(
            outcome,
            val_acc=last["val_acc"],
            val_loss=last.get("val_loss"),
            best_val_acc=history[best]["val_acc"],
            best_val_loss=history[best].get("val_loss"),
            best_epoch=best + 1,
            history=history,
            **fields,
        )

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


class Evaluator(Protocol):
    """What every evaluator of ``search.evaluate.EVALUATORS`` is called with."""

    def __call__(
        self,
        config: dict,
        data: Data,
        *,
        seed: int,
        limits: Limits | None = None,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        timeout: float | None = None,
    ) -> TrialResult: ...


# ---------------------------------------------------------------- what ends a trial


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class TrialTimeout(RuntimeError):
    """The trial ran past its time limit (``search.trial_timeout``)."""


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


def deadline_check(timeout: float | None) -> Callable[[], None]:
    """A function that raises TrialTimeout once ``timeout`` seconds have passed (None: never)."""
    if timeout is None:
        return lambda: None
    deadline = time.monotonic() + timeout

    def check() -> None:
        if time.monotonic() > deadline:
            raise TrialTimeout(f"past the trial timeout of {timeout:g} s")

    return check


def planned(arch: dict, data: Data, limits: Limits | None) -> TrialResult:
    """A trial's result to fill, with its size from the dry shape pass (or invalid, with why)."""
    result = TrialResult(Outcome.OK, device=str(data.x_train.device))
    try:
        plan = plan_model(arch, data.input_shape, data.n_classes, limits)
    except InvalidArchitecture as e:
        result.outcome, result.reason = Outcome.INVALID, str(e)
        return result
    result.params, result.macs = plan.params, plan.macs
    return result


@contextlib.contextmanager
def failures(result: TrialResult) -> Iterator[None]:
    """Errors of a trial's work, recorded in ``result`` as its outcome (Ctrl-C passes through)."""
    try:
        yield
    except InvalidArchitecture as e:  # found late (screening's read-out)
        result.outcome, result.reason = Outcome.INVALID, str(e)
    except Diverged as e:
        result.outcome, result.reason = Outcome.FAILED, str(e)
    except TrialTimeout:
        result.outcome, result.reason = Outcome.FAILED, TIMEOUT
    except torch.OutOfMemoryError as e:
        result.outcome, result.reason = Outcome.FAILED, f"out of memory: {error_line(e, 200, typed=False)}"
    except Exception as e:  # any other error is this trial's failure, not the campaign's
        result.outcome, result.reason = Outcome.FAILED, error_line(e)
        result.traceback = traceback.format_exc()
        result.device_error = is_device_error(e)


# ---------------------------------------------------------------- its randomness, device and memory


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The global torch RNGs (the CPU's and the trial's GPU's) seeded for one trial (batch
    order, augmentation, dropout), and restored afterwards; the weights come from the seed
    given to ``build_model``."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


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


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the CPU, to keep or save."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


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
