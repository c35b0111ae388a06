"""The screening evaluator (``training.mode: screen``): random filters and a linear read-out.

This is how Pinto & Cox screened thousands of models: the network's filters
stay as drawn (SLM.md's initialization, seeded by the trial), features are
extracted once in inference mode, standardized, and only a linear classifier
is fitted on them; the score is its validation accuracy.

The classifier is ridge regression on one-hot targets, solved in closed form
on the device through the eigendecomposition of the Gram matrix of the smaller
side (images or features), so that the whole regularization path costs one
decomposition. The ridge strength is chosen among ``LAMBDAS`` (times the mean
eigenvalue) by exact leave-one-out accuracy on the training images, never on
the validation images that score the trial. A temperature fitted on the same
leave-one-out scores turns the scores into probabilities, so ``val_loss`` is a
cross-entropy like a trained trial's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from models import InvalidArchitecture, Limits, build_model

from .data import Data
from .outcome import Outcome
from .trial import TrialResult, cpu_state, deadline_check, failures, planned, release_memory

SCREEN_BATCH = 256  # images per forward pass when extracting features on a GPU
SCREEN_BATCH_CPU = 16  # and on a CPU, where large batches only cost memory
SLICE = 4 << 20  # float64 values (32 MB) of the centered features held at a time by a ridge fit
MAX_GRAM = 12_000  # the smaller of images and features a ridge fit may decompose (memory: its square)
LAMBDAS = tuple(10.0 ** (k / 2) for k in range(-8, 5))  # 1e-4 .. 1e2, times the mean eigenvalue
TEMPERATURES = tuple(10.0 ** (k / 10) for k in range(-20, 21))  # 0.01 .. 100


@torch.inference_mode()
def extract(
    model: nn.Module, x: torch.Tensor, batch: int | None = None, check: Callable[[], None] | None = None
) -> torch.Tensor:
    """The flattened features of the network's body (its head's pooling, no classifier), float32;
    ``check`` is called before each batch (to stop on time or on Ctrl-C)."""
    batch = batch or (SCREEN_BATCH if x.device.type == "cuda" else SCREEN_BATCH_CPU)
    model.eval()
    pool = model.head.body[0]  # flatten, or global average / max pooling
    out = []
    for i in range(0, len(x), batch):
        if check is not None:
            check()
        out.append(pool(model.features(x[i : i + batch])).flatten(1).float())
    return torch.cat(out) if out else torch.zeros((0, 0), device=x.device)


def moments(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The training features' mean and std; a constant feature's std is inf (it scales to zero)."""
    mean, std = train.mean(0), train.std(0)
    std = torch.where(std > 1e-6 * std.max().clamp_min(1e-30), std, torch.full_like(std, math.inf))
    return mean, std


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Features scaled by the training features' mean and std."""
    mean, std = moments(train)
    return [(t - mean) / std for t in (train, *others)]


class Ridge:
    """Multi-output ridge regression of one-hot targets, its strength chosen by leave-one-out.

    With X = U S V^T (from the eigendecomposition of X X^T or X^T X, whichever is smaller),
    the hat matrix is 1 1^T / n (the intercept) + U diag(s^2 / (s^2 + lam)) U^T. Residuals and
    the hat matrix's diagonal are computed from lam / (s^2 + lam), never as differences of
    near-equal numbers, so that leave-one-out stays exact when the fit nearly interpolates.

    The Gram matrix is formed in float64 from features centered again in float64 (in slices,
    so the float32 features are never copied whole): centering leaves the direction of the
    intercept (1 / sqrt(n)) with no variance, and in float32 that direction keeps an
    eigenvalue of ~1e-9 of the largest, enough to count as part of X's span. It must not: its
    leverage, 1/n, is the intercept's, and counting it twice makes every image's
    leave-one-out leverage 1, so that a fit that nearly interpolates finds even a random
    label from the others'. Eigenvalues below ``max(n, d) * eps(float64)`` of the largest,
    the rounding of the Gram's own arithmetic, are X's null space.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int):
        self.n, self.d = x.shape
        if min(self.n, self.d) > MAX_GRAM:
            raise InvalidArchitecture(
                f"screening fits a ridge over min(images, features) = {min(self.n, self.d):,} > "
                f"{MAX_GRAM:,}; use fewer images (data.subset) or fewer features (constraints.max_features)"
            )
        self.x = x  # float32: at 2,000 images of 100,000 features, doubles would take 1.6 GB more
        self.y = y
        targets = F.one_hot(y, n_classes).double()
        self.offset = targets.mean(0)
        self.t = targets - self.offset
        dual = self.d >= self.n  # decompose X X^T (n x n) when there are fewer images than features
        self.mean = x.mean(0, dtype=torch.float64)  # ~0: the features come standardized
        evals, evecs = torch.linalg.eigh(self._gram(dual))
        tol = max(self.n, self.d) * torch.finfo(torch.float64).eps
        keep = evals > tol * evals.max().clamp_min(1e-300)  # the rank of X
        self.evals = evals[keep]
        evecs = evecs[:, keep]
        self.dual = dual
        if dual:
            self.u = evecs  # n x r, orthonormal columns
        else:  # U = Xc V / s, a slice of rows at a time
            step = max(1, SLICE // self.d)
            rows = [self._centered(rows=slice(i, i + step)) @ evecs for i in range(0, self.n, step)]
            self.u = torch.cat(rows) / self.evals.sqrt()
        self.v = None if dual else evecs  # d x r; in the dual, X^T U / s (never formed)
        self.ut = self.u.T @ self.t
        self.outside = self.t - self.u @ self.ut  # the targets' part no strength can fit
        # the features are centered on the training mean, so the model has an intercept, which
        # leave-one-out must refit too: it adds 1/n to the hat matrix's diagonal. Without it a
        # held-out image is (minus) the sum of the others, and a near-interpolating fit finds
        # its label from theirs, even a random one.
        self.leverage_rest = (1 - (self.u**2).sum(1) - 1 / self.n).clamp_min(0.0)
        self.scale = float(self.evals.mean()) if len(self.evals) else 1.0

    def _centered(self, rows: slice = slice(None), cols: slice = slice(None)) -> torch.Tensor:
        """A block of X, centered on the training mean, in float64."""
        return self.x[rows, cols].double() - self.mean[cols]

    def _gram(self, dual: bool) -> torch.Tensor:
        """Xc Xc^T (dual) or Xc^T Xc of the centered X, in float64, a slice of ~32 MB at a time."""
        size = min(self.n, self.d)
        gram = torch.zeros((size, size), dtype=torch.float64, device=self.x.device)
        step = max(1, SLICE // size)
        for k in range(0, self.d if dual else self.n, step):
            if dual:
                xc = self._centered(cols=slice(k, k + step))
                gram.addmm_(xc, xc.T)
            else:
                xc = self._centered(rows=slice(k, k + step))
                gram.addmm_(xc.T, xc)
        return gram

    def loo(self, lam: float) -> torch.Tensor:
        """Leave-one-out scores of every training image, for strength ``lam``."""
        rest = lam / (self.evals + lam)  # 1 - the hat matrix's eigenvalues
        residual = self.outside + self.u @ (rest[:, None] * self.ut)
        one_minus_h = self.leverage_rest + (self.u**2) @ rest
        return self.t - residual / one_minus_h.clamp_min(1e-300)[:, None] + self.offset

    def choose(self) -> tuple[float, torch.Tensor]:
        """The strength with the best leave-one-out accuracy (ties: the strongest) and its scores."""
        best: tuple[float, float, torch.Tensor] | None = None
        for rel in LAMBDAS:
            scores = self.loo(rel * self.scale)
            acc = float((scores.argmax(1) == self.y).double().mean())
            if best is None or acc >= best[0]:
                best = (acc, rel * self.scale, scores)
        assert best is not None
        return best[1], best[2]

    def weights(self, lam: float) -> torch.Tensor:
        """W (d x classes, float32) such that x @ W + offset are the scores: V diag(s / (s^2 + lam)) U^T t."""
        if self.dual:  # V = X^T U / s: W = X^T U diag(1 / (s^2 + lam)) U^T t
            alpha = self.u @ (self.ut / (self.evals + lam)[:, None])
            return self.x.T @ alpha.float()
        s = self.evals.sqrt()
        return (self.v @ ((s / (self.evals + lam))[:, None] * self.ut)).float()


def temperature(scores: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature that makes ``softmax(scores / T)`` the best-calibrated (least cross-entropy)."""
    losses = [float(F.cross_entropy(scores / t, y)) for t in TEMPERATURES]
    return TEMPERATURES[min(range(len(losses)), key=losses.__getitem__)]


def screen_trial(
    config: dict,
    data: Data,
    *,
    seed: int,
    limits: Limits | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    timeout: float | None = None,
) -> TrialResult:
    """Screen one architecture: random filters, features, ridge read-out, validation accuracy.

    The weights kept are the random filters and, when the head has no hidden layer, the ridge
    read-out folded into its classifier (with the standardization), so that an exported model
    predicts as the screening did."""
    arch = config["architecture"]
    device = data.x_train.device
    result = planned(arch, data, limits)
    if result.outcome != Outcome.OK:
        return result
    t0 = time.perf_counter()
    with failures(result):
        model = build_model(arch, data.input_shape, data.n_classes, limits=limits, seed=seed)
        model = model.to(device, memory_format=torch.channels_last)
        check_time = deadline_check(timeout)

        def check() -> None:
            if should_stop is not None and should_stop():
                raise KeyboardInterrupt("stopped")
            check_time()

        raw = extract(model, data.x_train, check=check)
        train, val = standardize(raw, extract(model, data.x_val, check=check))
        ridge = Ridge(train, data.y_train, data.n_classes)
        lam, loo = ridge.choose()
        w = ridge.weights(lam)
        temp = temperature(loo, data.y_train)
        val_scores = (val @ w).double() + ridge.offset
        train_scores = (train @ w).double() + ridge.offset
        record = {
            "train_loss": float(F.cross_entropy(train_scores / temp, data.y_train)),
            "val_acc": float((val_scores.argmax(1) == data.y_val).double().mean()),
            "val_loss": float(F.cross_entropy(val_scores / temp, data.y_val)),
            "loo_acc": float((loo.argmax(1) == data.y_train).double().mean()),
        }
    seconds = time.perf_counter() - t0
    if result.outcome != Outcome.OK:
        result.train_seconds = seconds
        release_memory(device)
        return result
    record["epoch_seconds"] = seconds
    if on_epoch is not None:
        on_epoch(1, record)
    screened = TrialResult.from_history(
        [record],
        train_seconds=seconds,
        images_per_second=(len(data.x_train) + len(data.x_val)) / max(seconds, 1e-9),
        params=result.params,
        macs=result.macs,
        device=result.device,
        extra={"features": float(train.shape[1]), "ridge_lambda": lam, "loo_acc": record["loo_acc"]},
    )
    classifier = model.head.body[-1]
    if classifier.in_features == train.shape[1]:  # no hidden layer: the read-out is the classifier
        mean, std = (m.double() for m in moments(raw))
        with torch.no_grad():
            classifier.weight.copy_((w.double() / std[:, None]).T.float())
            classifier.bias.copy_((ridge.offset - (mean / std) @ w.double()).float())
        screened.state_dict = cpu_state(model)
    return screened
