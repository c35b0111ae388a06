"""The Pinto & Cox operations on NCHW tensors, as pure functions.

Each function implements the formula of the model family's reference
(fbcorr, clip, lpool, lnorm) with convolution and pooling primitives: no
Python loops over pixels or channels. ``padding="valid"`` is the original
family (every operation shrinks the map); ``padding="same"`` pads with zeros
so that a stride-1 operation keeps the map's size and a stride-s one gives
``ceil(n / s)``. :func:`out_size` is the one rule both the dry shape pass and
the operations follow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .names import PADDINGS

# Added to the divisor and to the threshold of lnorm, as in the original code.
LNORM_EPS = 1e-4


def out_size(n: int, size: int, stride: int = 1, padding: str = "valid") -> int:
    """Spatial size after a size x size window moved by ``stride`` over ``n`` pixels.

    Returns 0 or less when the window does not fit (``valid`` only).
    """
    if padding == "valid":
        return (n - size) // stride + 1 if n >= size else 0
    if padding == "same":
        return math.ceil(n / stride)
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


def _same_pads(n: int, size: int, stride: int) -> tuple[int, int]:
    total = max((math.ceil(n / stride) - 1) * stride + size - n, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, size: int, stride: int = 1, value: float = 0.0) -> torch.Tensor:
    """Pad the last two dims so a window op of ``size``/``stride`` gives ceil(n / stride)."""
    top, bottom = _same_pads(x.shape[-2], size, stride)
    left, right = _same_pads(x.shape[-1], size, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def _check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


def fbcorr(x: torch.Tensor, filters: torch.Tensor, stride: int = 1, padding: str = "valid") -> torch.Tensor:
    """Filter bank: correlate (B, C, H, W) with filters (K, C, f, f), no bias -> (B, K, H', W')."""
    _check_padding(padding)
    if padding == "same":
        x = pad_same(x, filters.shape[-1], stride)
    return F.conv2d(x, filters, stride=stride)


def clip(x: torch.Tensor, min_out: float | None = None, max_out: float | None = None) -> torch.Tensor:
    """Clip to [min_out, max_out]; None (or an infinite bound) means no bound."""
    lo = None if min_out is None or math.isinf(min_out) else min_out
    hi = None if max_out is None or math.isinf(max_out) else max_out
    if lo is None and hi is None:
        return x
    return torch.clamp(x, min=lo, max=hi)


def _box_sum(x: torch.Tensor, size: int, stride: int, padding: str) -> torch.Tensor:
    """Sum over size x size windows (zeros outside the map when padding is "same")."""
    if padding == "same":
        x = pad_same(x, size, stride)
    return F.avg_pool2d(x, size, stride=stride) * float(size * size)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision input (autocast) is computed in float32: powers and sums lose too much."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _safe_pow(s: torch.Tensor, exponent: float) -> torch.Tensor:
    """s ** exponent for s >= 0, exact in value, with a finite gradient everywhere.

    Where s is below ``tiny ** 0.8`` of its dtype (about 1e-30 in float32, and
    every denormal) the value is kept but not differentiated: there
    ``s ** (exponent - 1)`` would overflow, and times a zero input (lpool's
    |x|^p) make NaN. The true gradient there is negligible.
    """
    live = s > torch.finfo(s.dtype).tiny ** 0.8
    return torch.where(live, torch.where(live, s, 1.0).pow(exponent), s.clamp_min(0.0).detach().pow(exponent))


def lpool(x: torch.Tensor, order: float, size: int, stride: int = 2, padding: str = "valid") -> torch.Tensor:
    """Lp pooling: (sum over the size x size window of |x|^p)^(1/p), every stride-th position.

    Order 1 is the signed box sum of the original family (no absolute value);
    any other order uses |x|^p, so fractional orders are defined for negative
    input. Half-precision input is computed in float32, and the sum is scaled by each map's largest
    |x| (the p-norm is homogeneous), so large orders do not overflow.
    """
    _check_padding(padding)
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    dtype = x.dtype
    x = _at_least_float32(x)
    if order == 1:
        return _box_sum(x, size, stride, padding).to(dtype)
    a = x.abs()
    scale = a.amax(dim=(-2, -1), keepdim=True).detach().clamp_min(torch.finfo(a.dtype).tiny)
    s = _box_sum((a / scale).pow(order), size, stride, padding)
    return (_safe_pow(s, 1.0 / order) * scale).to(dtype)


def lnorm(
    x: torch.Tensor,
    size: int,
    remove_mean: bool = False,
    stretch: float = 1.0,
    threshold: float = 1.0,
    padding: str = "valid",
) -> torch.Tensor:
    """Divisive normalization over a size x size neighbourhood spanning all C channels.

    With N = size * size * C values in the neighbourhood of each position::

        num = x - mean_N(x)                           if remove_mean else x
        div = sqrt(sum_N(x^2) - sum_N(x)^2 / N)       if remove_mean else sqrt(sum_N(x^2))
        num, div = stretch * num, stretch * (div + eps)
        out = num / div where div >= threshold + eps, else num

    ``num`` is the value at the centre of the neighbourhood, so a "valid"
    lnorm crops (size - 1) pixels. With "same", positions near the border
    see fewer than N values and N counts only those.
    """
    _check_padding(padding)
    dtype = x.dtype
    x = _at_least_float32(x)
    channels, height, width = x.shape[-3:]
    sum1 = _box_sum(x.sum(dim=1, keepdim=True), size, 1, padding)  # (B, 1, H', W')
    sum2 = _box_sum((x * x).sum(dim=1, keepdim=True), size, 1, padding)
    if padding == "valid":
        top = (size - 1) // 2
        x = x[:, :, top : top + height - size + 1, top : top + width - size + 1]
        count = float(size * size * channels)
    else:
        ones = torch.ones((1, 1, height, width), dtype=x.dtype, device=x.device)
        count = _box_sum(ones, size, 1, padding) * channels
    if remove_mean:
        num = x - sum1 / count
        var = sum2 - sum1 * sum1 / count
    else:
        num = x
        var = sum2
    div = (_safe_pow(var.clamp_min(0.0), 0.5) + LNORM_EPS) * stretch
    div = torch.where(div < threshold + LNORM_EPS, torch.ones_like(div), div)
    return (num * stretch / div).to(dtype)
