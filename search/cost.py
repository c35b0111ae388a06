"""What a trial will cost, predicted before it starts.

A trial's training time is modelled as

    seconds = epochs x images x (a x MACs + b)

where MACs are the architecture's multiply-accumulates per image (from the dry shape pass),
``a`` the seconds per MAC of a training step on this device and ``b`` the seconds per image
that do not scale with MACs (data movement, normalization, pooling, the optimizer). Both are
fitted, non-negative, on the trials the campaign has run (relative least squares: a 10-second
trial counts as much as a 10-minute one); until two trials of different MACs have ended, ``b``
is taken as ``PRIOR_MACS`` worth of MACs. Nothing is predicted before the first trial ends.

The driver uses it to keep a configuration that would overrun ``search.max_trial_seconds`` or
the time left of ``search.time_budget`` from starting, and to keep time for the final stage;
each trial's run records what was predicted for it (``predicted_seconds``), so that how well
the prediction matches can be read back (:func:`accuracy`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

PRIOR_MACS = 1e6  # MACs a training step's per-image overhead is worth, until the trials say


@dataclass(frozen=True)
class Observation:
    macs: float  # per image
    images: float  # per epoch
    epochs: float
    seconds: float  # of training (and validation), all epochs


class CostModel:
    """Seconds of training predicted from MACs, images and epochs; learns from each ended trial."""

    def __init__(self) -> None:
        self.seen: list[Observation] = []
        self._fit: tuple[float, float] | None = None

    def observe(self, macs: float | None, images: float, epochs: float, seconds: float) -> None:
        """A trial that trained ``epochs`` epochs of ``images`` images in ``seconds``."""
        if macs is None or not (images > 0 and epochs > 0 and seconds > 0 and math.isfinite(seconds)):
            return
        self.seen.append(Observation(float(macs), float(images), float(epochs), float(seconds)))
        self._fit = None

    @property
    def ready(self) -> bool:
        return bool(self.seen)

    def coefficients(self) -> tuple[float, float]:
        """(a, b): seconds per MAC-image and per image, fitted on what was seen."""
        if self._fit is None:
            self._fit = _fit(self.seen)
        return self._fit

    def predict(self, macs: float | None, images: float, epochs: float) -> float | None:
        """Seconds of training, or None when nothing has been seen yet (or MACs are unknown)."""
        if not self.seen or macs is None:
            return None
        a, b = self.coefficients()
        return epochs * images * (a * macs + b)


def _fit(seen: list[Observation]) -> tuple[float, float]:
    """Non-negative (a, b) minimising the squared relative error over the observations."""
    rows = [(o.epochs * o.images * o.macs / o.seconds, o.epochs * o.images / o.seconds) for o in seen]
    if len({o.macs for o in seen}) >= 2:
        # normal equations of min sum (a x + b y - 1)^2
        sxx = sum(x * x for x, _ in rows)
        syy = sum(y * y for _, y in rows)
        sxy = sum(x * y for x, y in rows)
        sx, sy = sum(x for x, _ in rows), sum(y for _, y in rows)
        det = sxx * syy - sxy * sxy
        if det > 1e-12 * sxx * syy:
            a, b = (sx * syy - sy * sxy) / det, (sy * sxx - sx * sxy) / det
            if a >= 0 and b >= 0:
                return a, b
        # one of them is zero at the optimum: the better of the two one-term fits
        fits = [(sx / sxx, 0.0), (0.0, sy / syy)]
        return min(fits, key=lambda f: sum((f[0] * x + f[1] * y - 1) ** 2 for x, y in rows))
    # one MAC count seen: its time split as if the overhead were PRIOR_MACS worth of MACs
    z = [x + PRIOR_MACS * y for x, y in rows]
    c = sum(z) / sum(v * v for v in z)
    return c, c * PRIOR_MACS


def accuracy(pairs: list[tuple[float, float]]) -> dict[str, float] | None:
    """How predictions matched: (predicted, actual) seconds pairs -> the number of trials, the
    median ratio actual / predicted and the median absolute relative error; None without pairs."""
    pairs = [(p, a) for p, a in pairs if p > 0 and a > 0]
    if not pairs:
        return None
    return {
        "trials": float(len(pairs)),
        "median_ratio": statistics.median(a / p for p, a in pairs),
        "median_error": statistics.median(abs(a - p) / a for p, a in pairs),
    }


def accuracy_line(pairs: list[tuple[float, float]]) -> str | None:
    """How predictions matched, in one line for a summary (None without pairs)."""
    matched = accuracy(pairs)
    if matched is None:
        return None
    return (
        f"trial times predicted for {matched['trials']:.0f} trials: median actual/predicted "
        f"{matched['median_ratio']:.2f}, median error {100 * matched['median_error']:.0f}%"
    )
