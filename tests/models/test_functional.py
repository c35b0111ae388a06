"""The family's operations against direct NumPy implementations of the SLM.md formulas."""

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from models import functional as fn

EPS = 1e-4  # the original's epsilon on divisor and threshold


def same_pad(x: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad H and W the TensorFlow "SAME" way: output ceil(n / stride), extra pixel after."""
    pads = []
    for n in x.shape[-2:]:
        total = max((math.ceil(n / stride) - 1) * stride + size - n, 0)
        pads.append((total // 2, total - total // 2))
    inside = np.pad(np.ones(x.shape[-2:]), pads)
    return np.pad(x, [(0, 0), (0, 0), *pads]), inside


def ref_lpool(x, order, size, stride, padding):
    if padding == "same":
        x, _ = same_pad(x, size, stride)
    win = sliding_window_view(x, (size, size), axis=(2, 3))[:, :, ::stride, ::stride]
    if order == 1:
        return win.sum(axis=(-2, -1))
    return (np.abs(win) ** order).sum(axis=(-2, -1)) ** (1.0 / order)


def ref_lnorm(x, size, remove_mean, stretch, threshold, padding):
    _, c, h, w = x.shape
    if padding == "valid":
        top = (size - 1) // 2
        center = x[:, :, top : top + h - size + 1, top : top + w - size + 1]
        padded, inside = x, np.ones((h, w))
    else:
        center = x
        padded, inside = same_pad(x, size, 1)
    win = sliding_window_view(padded, (size, size), axis=(2, 3))  # (B, C, H', W', a, a)
    s1 = win.sum(axis=(1, 4, 5))[:, None]
    s2 = (win**2).sum(axis=(1, 4, 5))[:, None]
    n = sliding_window_view(inside, (size, size)).sum(axis=(-2, -1)) * c
    if remove_mean:
        num = center - s1 / n
        div = np.sqrt(np.maximum(s2 - s1**2 / n, 0))
    else:
        num = center
        div = np.sqrt(s2)
    num = num * stretch
    div = (div + EPS) * stretch
    return np.where(div < threshold + EPS, num, num / div), div < threshold + EPS


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("order", [1, 2, 10, 2.7])
@pytest.mark.parametrize("size,stride", [(3, 2), (5, 1), (2, 2), (4, 3)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_lpool_matches_numpy(order, size, stride, padding):
    x = randn(2, 3, 13, 11)  # negative values included
    got = fn.lpool(torch.from_numpy(x), order, size, stride, padding).numpy()
    want = ref_lpool(x, order, size, stride, padding)
    assert got.shape == want.shape
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)


def test_lpool_order_1_is_signed_box_sum():
    x = -np.ones((1, 1, 4, 4))
    got = fn.lpool(torch.from_numpy(x), 1, 2, 2).numpy()
    np.testing.assert_allclose(got, -4 * np.ones((1, 1, 2, 2)))


def test_lpool_large_order_does_not_overflow():
    x = randn(1, 2, 9, 9) * 1e5  # |x|^10 ~ 1e50 overflows float32
    got = fn.lpool(torch.from_numpy(x).float(), 10, 3, 2).double().numpy()
    np.testing.assert_allclose(got, ref_lpool(x, 10, 3, 2, "valid"), rtol=1e-4)


def test_lpool_matches_torch_lp_pool_on_nonnegative_input():
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    torch_ref = torch.nn.functional.lp_pool2d(x, 2, 3, stride=2)
    torch.testing.assert_close(fn.lpool(x, 2, 3, 2), torch_ref)


@pytest.mark.parametrize("size", [3, 5, 4])
@pytest.mark.parametrize("remove_mean", [False, True])
@pytest.mark.parametrize("stretch", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("threshold", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_lnorm_matches_numpy(size, remove_mean, stretch, threshold, padding):
    x = randn(2, 3, 12, 10, seed=size) * 0.6
    got = fn.lnorm(torch.from_numpy(x), size, remove_mean, stretch, threshold, padding).numpy()
    want, _ = ref_lnorm(x, size, remove_mean, stretch, threshold, padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_lnorm_threshold_triggers_only_where_divisor_is_small():
    # half the image near zero: there the divisor falls below the threshold and becomes 1
    x = randn(1, 4, 16, 16)
    x[:, :, :, :8] *= 1e-3
    got = fn.lnorm(torch.from_numpy(x), 3, stretch=1.0, threshold=1.0).numpy()
    want, clamped = ref_lnorm(x, 3, False, 1.0, 1.0, "valid")
    assert 0 < clamped.mean() < 1  # both branches are exercised
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    # where the divisor became 1, the output is the (stretched, here x1) centre value itself
    centre = x[:, :, 1:-1, 1:-1]
    mask = np.broadcast_to(clamped, got.shape)
    np.testing.assert_allclose(got[mask], centre[mask])
    assert not np.allclose(got[~mask], centre[~mask])


def test_lnorm_without_threshold_gives_unit_norm_neighbourhoods():
    x = randn(1, 2, 3, 3)
    out = fn.lnorm(torch.from_numpy(x), 3, threshold=1e-9).numpy()
    centre = x[:, :, 1, 1]
    np.testing.assert_allclose(out[:, :, 0, 0], centre / (np.sqrt((x**2).sum()) + EPS))


def test_fbcorr_is_correlation_without_flip():
    x = randn(1, 2, 6, 7)
    f = randn(3, 2, 3, 3, seed=1)
    got = fn.fbcorr(torch.from_numpy(x), torch.from_numpy(f)).numpy()
    win = sliding_window_view(x, (3, 3), axis=(2, 3))  # (1, 2, 4, 5, 3, 3)
    want = np.einsum("bchwij,kcij->bkhw", win, f)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    same = fn.fbcorr(torch.from_numpy(x), torch.from_numpy(f), stride=2, padding="same")
    assert same.shape[-2:] == (3, 4)


def test_clip_bounds():
    x = torch.linspace(-3, 3, 13)
    assert torch.equal(fn.clip(x), x)
    assert torch.equal(fn.clip(x, min_out=0.0), x.clamp(min=0))
    assert torch.equal(fn.clip(x, max_out=1.0), x.clamp(max=1))
    assert torch.equal(fn.clip(x, -math.inf, math.inf), x)
    assert fn.clip(x, 0.0, 1.0).tolist() == x.clamp(0, 1).tolist()


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("n,size,stride", [(28, 3, 2), (28, 7, 1), (5, 5, 2), (4, 5, 1), (13, 4, 3)])
def test_out_size_is_what_the_ops_give(n, size, stride, padding):
    x = torch.randn(1, 2, n, n)
    expected = fn.out_size(n, size, stride, padding)
    if expected < 1:
        assert padding == "valid" and n < size
        return
    assert fn.lpool(x, 2, size, stride, padding).shape[-1] == expected
    assert fn.fbcorr(x, torch.randn(1, 2, size, size), stride, padding).shape[-1] == expected
    assert fn.lnorm(x, size, padding=padding).shape[-1] == fn.out_size(n, size, 1, padding)


def test_gradients_are_finite_on_all_zero_windows():
    # after a ReLU whole windows are 0: sqrt and 1/p powers must not give NaN gradients
    x = torch.randn(2, 3, 10, 10).clamp_min(0)
    x[:, :, :5] = 0
    x.requires_grad_(True)
    for order in (1, 2, 10, 1.5):
        y = fn.lnorm(fn.lpool(x, order, 3, 2), 3, remove_mean=True, threshold=0.5)
        (grad,) = torch.autograd.grad(y.sum(), x)
        assert torch.isfinite(grad).all(), order


def test_bad_padding_is_refused():
    with pytest.raises(ValueError, match="padding"):
        fn.lpool(torch.zeros(1, 1, 4, 4), 2, 2, padding="full")
    with pytest.raises(ValueError, match="order"):
        fn.lpool(torch.zeros(1, 1, 4, 4), 0.5, 2)


def test_lpool_gradient_is_finite_where_a_window_is_nearly_zero():
    # A value 4e-5 of the map's largest: |x/max|^10 sums to a denormal, whose
    # 1/10th power has an overflowing derivative; zeros beside it used to give 0 * inf = NaN.
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1.0
    x[0, 0, 2, 2] = 4e-5
    x.requires_grad_(True)
    y = fn.lpool(x, 10.0, 2, 2)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert y[0, 0, 1, 1].item() == pytest.approx(4e-5, rel=5e-2)  # the value itself is kept
