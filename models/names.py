"""What an architecture dict may name and the limits it must respect, without torch: what a
space file is checked against (``search.schema``) in commands that build no model."""

from __future__ import annotations

from dataclasses import dataclass

INIT_NAMES = ("random_uniform_zm_un", "kaiming_normal", "kaiming_uniform", "xavier_uniform", "orthogonal")
PADDINGS = ("valid", "same")
HEAD_POOLS = ("flatten", "avg", "max")


@dataclass(frozen=True)
class Limits:
    """Budgets an architecture must respect; None means no limit."""

    max_params: int | None = None
    max_features: int | None = None  # inputs to the classifier head
    max_macs: int | None = None  # multiply-accumulates per image
