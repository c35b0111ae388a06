"""Modules of the model family and the name-keyed tables the builder picks from.

Every module is built from ``(channels, padding, **params)``, where
``params`` are the values of its block in the architecture dict (less
``kind``), and knows without being built what it does to a (C, H, W) shape
and how many parameters and multiply-accumulates it costs. That lets the
builder check an architecture (the dry shape pass) before allocating a
single weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from . import functional as fn

Shape = tuple[int, int, int]  # (C, H, W)


class Op(nn.Module):
    """Base of the table entries: shape, parameter and MAC rules for one image."""

    @staticmethod
    def out_shape(shape: Shape, padding: str, **params) -> Shape:
        return shape

    @staticmethod
    def n_params(shape: Shape, **params) -> int:
        return 0

    @staticmethod
    def n_macs(shape: Shape, out: Shape, **params) -> int:
        return 0


# ---------------------------------------------------------------- filter bank


def random_uniform_zm_un(weight: torch.Tensor) -> None:
    """SLM's random filters: uniform on [0, 1), then zero-mean and unit L2 norm per filter."""
    with torch.no_grad():
        weight.uniform_(0.0, 1.0)
        weight -= weight.mean(dim=(1, 2, 3), keepdim=True)
        weight /= weight.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


INITS: dict[str, Callable[[torch.Tensor], object]] = {
    "random_uniform_zm_un": random_uniform_zm_un,
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, a=math.sqrt(5)),
    "xavier_uniform": nn.init.xavier_uniform_,
    "orthogonal": nn.init.orthogonal_,
}


class FBCorr(Op):
    """Filter bank: ``count`` filters of size x size x C_in, no bias."""

    def __init__(
        self,
        channels: int,
        padding: str,
        count: int,
        size: int,
        stride: int = 1,
        init: str = "kaiming_normal",
        trainable: bool = True,
    ):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.empty(count, channels, size, size))
        pick(INITS, init, "filter init")(self.weight)
        self.weight.requires_grad_(trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fn.fbcorr(x, self.weight, self.stride, self.padding)

    @staticmethod
    def out_shape(shape: Shape, padding: str, count: int, size: int, stride: int = 1, **_) -> Shape:
        _, h, w = shape
        return count, fn.out_size(h, size, stride, padding), fn.out_size(w, size, stride, padding)

    @staticmethod
    def n_params(shape: Shape, count: int, size: int, **_) -> int:
        return count * shape[0] * size * size

    @staticmethod
    def n_macs(shape: Shape, out: Shape, count: int, size: int, **_) -> int:
        return count * shape[0] * size * size * out[1] * out[2]


# ---------------------------------------------------------------- activations


class Clip(Op):
    """SLM's activation: clip to [min, max]; null means unbounded (min 0 is a ReLU)."""

    def __init__(self, channels: int, padding: str, min: float | None, max: float | None):
        super().__init__()
        self.min_out, self.max_out = min, max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fn.clip(x, self.min_out, self.max_out)


def _plain_activation(module: type[nn.Module]) -> type[Op]:
    """An Op around a parameter-free torch activation."""

    class Activation(Op):
        def __init__(self, channels: int, padding: str, **params):
            super().__init__()
            self.act = module(**params)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(x)

    Activation.__name__ = module.__name__
    return Activation


class LeakyReLU(Op):
    def __init__(self, channels: int, padding: str, slope: float):
        super().__init__()
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x)


Identity = _plain_activation(nn.Identity)

ACTIVATIONS: dict[str, type[Op]] = {
    "identity": Identity,
    "clip": Clip,
    "relu": _plain_activation(nn.ReLU),
    "leaky_relu": LeakyReLU,
    "gelu": _plain_activation(nn.GELU),
    "silu": _plain_activation(nn.SiLU),
    "tanh": _plain_activation(nn.Tanh),
}


# ---------------------------------------------------------------- pooling


class _WindowOp(Op):
    """A size x size window moved by ``stride``: settings and shape rule shared by the pools."""

    def __init__(self, channels: int, padding: str, size: int, stride: int = 2):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    @staticmethod
    def out_shape(shape: Shape, padding: str, size: int, stride: int = 2, **_) -> Shape:
        c, h, w = shape
        return c, fn.out_size(h, size, stride, padding), fn.out_size(w, size, stride, padding)


class LPool(_WindowOp):
    """SLM's Lp pooling (order 1: box sum, 2: L2, large: towards max)."""

    def __init__(self, channels: int, padding: str, order: float, size: int, stride: int = 2):
        super().__init__(channels, padding, size, stride)
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fn.lpool(x, self.order, self.size, self.stride, self.padding)


class MaxPool(_WindowOp):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "same":
            x = fn.pad_same(x, self.size, self.stride, value=-math.inf)
        return nn.functional.max_pool2d(x, self.size, self.stride)


class AvgPool(_WindowOp):
    """Average over the window; with "same" padding, over the pixels inside the map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "valid":
            return nn.functional.avg_pool2d(x, self.size, self.stride)
        ones = torch.ones_like(x[:1, :1])
        total = nn.functional.avg_pool2d(fn.pad_same(x, self.size, self.stride), self.size, self.stride)
        inside = nn.functional.avg_pool2d(fn.pad_same(ones, self.size, self.stride), self.size, self.stride)
        return total / inside


POOLS: dict[str, type[Op]] = {
    "lp": LPool,
    "max": MaxPool,
    "avg": AvgPool,
    "none": Identity,
}


# ---------------------------------------------------------------- normalization


class LNorm(Op):
    """SLM's divisive normalization over a size x size x C neighbourhood."""

    def __init__(
        self,
        channels: int,
        padding: str,
        size: int,
        remove_mean: bool = False,
        stretch: float = 1.0,
        threshold: float = 1.0,
    ):
        super().__init__()
        self.size, self.remove_mean, self.padding = size, remove_mean, padding
        self.stretch, self.threshold = stretch, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fn.lnorm(x, self.size, self.remove_mean, self.stretch, self.threshold, self.padding)

    @staticmethod
    def out_shape(shape: Shape, padding: str, size: int, **_) -> Shape:
        c, h, w = shape
        return c, fn.out_size(h, size, 1, padding), fn.out_size(w, size, 1, padding)


class BatchNorm(Op):
    def __init__(self, channels: int, padding: str):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)

    @staticmethod
    def n_params(shape: Shape, **_) -> int:
        return 2 * shape[0]


NORMS: dict[str, type[Op]] = {
    "divisive": LNorm,
    "batch": BatchNorm,
    "none": Identity,
}


# ---------------------------------------------------------------- tables


def pick(table: dict, name: str, what: str):
    """``table[name]``, or a ValueError that lists the valid names."""
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(sorted(table))
        raise ValueError(f"unknown {what} {name!r}; valid: {valid}") from None
