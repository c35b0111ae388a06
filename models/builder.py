"""One builder for the whole family: a dry shape pass, then the torch model.

``plan_model`` walks an architecture dict (plain values, as the search space
compiler decodes them) through the shape, parameter and MAC rules of the
layer tables, without allocating anything, and raises
:class:`InvalidArchitecture` when a map shrinks below 1x1 or a limit is
exceeded. ``build_model`` runs that pass first, then builds the network with
its weights drawn from an explicit seed.

The architecture dict::

    {"input_norm": {"kind": "divisive", "size": 9, ...},          # layer 0
     "layers": [{"filters": {"count": 64, "size": 3, ...},         # layer 1, 2, ...
                 "activation": {"kind": "clip", "min": 0.0, "max": None},
                 "pool": {"kind": "lp", "order": 1.0, "size": 7, "stride": 2},
                 "norm": {"kind": "divisive", "size": 5, ...},
                 "dropout": 0.0, "padding": "valid"}, ...],
     "head": {"pool": "flatten", "hidden": 0, "dropout": 0.0}}
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from .layers import ACTIVATIONS, NORMS, POOLS, FBCorr, Shape, pick
from .names import HEAD_POOLS, Limits


class InvalidArchitecture(ValueError):
    """An architecture that cannot be built for this input: the message says why."""


@dataclass(frozen=True)
class Step:
    """One operation of the plan: its name (``l2.pool``), output shape and costs per image."""

    name: str
    kind: str
    out_shape: Shape
    params: int
    macs: int


@dataclass
class Plan:
    """What the dry shape pass found: shapes after every step, and the totals."""

    input_shape: Shape
    n_classes: int
    steps: list[Step] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(s.params for s in self.steps)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image of the convolutions and linear layers."""
        return sum(s.macs for s in self.steps)

    @property
    def output_shape(self) -> Shape:
        """Shape of the last feature map, before the classifier head."""
        return next(s.out_shape for s in reversed(self.steps) if not s.name.startswith("head"))

    @property
    def features(self) -> int:
        """Number of inputs to the head's classifier."""
        return next(s.out_shape[0] for s in self.steps if s.name == "head.pool")

    def layer_shapes(self) -> dict[str, Shape]:
        """Feature-map shape after each layer: {"input": ..., "l0": ..., "l1": ..., ...}."""
        shapes = {"input": self.input_shape}
        for s in self.steps:
            if not s.name.startswith("head"):
                shapes[s.name.split(".")[0]] = s.out_shape
        return shapes

    def table(self) -> str:
        """The plan as a text table, one row per step."""
        rows = [("step", "kind", "output", "params", "MACs")]
        for s in self.steps:
            shape = "x".join(map(str, s.out_shape))
            rows.append((s.name, s.kind, shape, f"{s.params:,}", f"{s.macs:,}"))
        rows.append(("total", "", "", f"{self.params:,}", f"{self.macs:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        align = ["<", "<", ">", ">", ">"]
        lines = ("  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths, strict=True)) for r in rows)
        return "\n".join(line.rstrip() for line in lines)


def _split(block: dict, where: str) -> tuple[str, dict]:
    if not isinstance(block, dict) or "kind" not in block:
        raise ValueError(f"{where}: expected a mapping with a 'kind', got {block!r}")
    params = dict(block)
    return params.pop("kind"), params


def _ops(arch: dict):
    """Yield (name, kind, op class, params, padding) for every operation, input to head."""
    kind, params = _split(arch["input_norm"], "input_norm")
    params = dict(params)
    padding = params.pop("padding", "valid")
    yield "l0.norm", kind, pick(NORMS, kind, "normalization"), params, padding
    for i, layer in enumerate(arch["layers"], start=1):
        padding = layer.get("padding", "valid")
        yield f"l{i}.filters", "fbcorr", FBCorr, layer["filters"], padding
        for slot, table, what in (
            ("activation", ACTIVATIONS, "activation"),
            ("pool", POOLS, "pooling"),
            ("norm", NORMS, "normalization"),
        ):
            kind, params = _split(layer[slot], f"l{i}.{slot}")
            yield f"l{i}.{slot}", kind, pick(table, kind, what), params, padding


def plan_model(arch: dict, input_shape: Shape, n_classes: int, limits: Limits | None = None) -> Plan:
    """The dry shape pass: shapes, parameters and MACs, without building anything.

    Raises InvalidArchitecture when a feature map shrinks below 1x1 or a limit is exceeded.
    """
    plan = Plan(tuple(input_shape), n_classes)
    shape = plan.input_shape
    for name, kind, op, params, padding in _ops(arch):
        try:
            out = op.out_shape(shape, padding, **params)
            cost = op.n_params(shape, **params), op.n_macs(shape, out, **params)
        except TypeError as e:
            raise ValueError(f"{name}: bad parameters {params!r} for {kind!r}: {e}") from None
        if out[1] < 1 or out[2] < 1:
            h, w = shape[1:]
            raise InvalidArchitecture(
                f"{name} ({kind}) shrinks the {h}x{w} feature map below 1x1 "
                f"(padding {padding!r}, parameters {_brief(params)})"
            )
        plan.steps.append(Step(name, kind, out, *cost))
        shape = out
    _plan_head(plan, arch["head"], shape, n_classes)
    _check_limits(plan, limits or Limits())
    return plan


def _plan_head(plan: Plan, head: dict, shape: Shape, n_classes: int) -> None:
    pool = pick({p: p for p in HEAD_POOLS}, head.get("pool", "flatten"), "head pool")
    features = shape[0] * shape[1] * shape[2] if pool == "flatten" else shape[0]
    plan.steps.append(Step("head.pool", pool, (features, 1, 1), 0, 0))
    width = features
    for name, units in (("head.hidden", head.get("hidden", 0)), ("head.out", n_classes)):
        if units:
            plan.steps.append(Step(name, "linear", (units, 1, 1), width * units + units, width * units))
            width = units


def _check_limits(plan: Plan, limits: Limits) -> None:
    for value, limit, what in (
        (plan.params, limits.max_params, "parameters exceed max_params"),
        (plan.features, limits.max_features, "features exceed max_features"),
        (plan.macs, limits.max_macs, "MACs per image exceed max_macs"),
    ):
        if limit is not None and value > limit:
            raise InvalidArchitecture(f"{value:,} {what} = {limit:,}")


def _brief(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "none"


class Head(nn.Module):
    """Global pooling or flattening, an optional hidden layer, then the linear classifier."""

    def __init__(self, shape: Shape, n_classes: int, pool: str, hidden: int, dropout: float):
        super().__init__()
        features = shape[0] * shape[1] * shape[2] if pool == "flatten" else shape[0]
        pools = {"flatten": nn.Identity(), "avg": nn.AdaptiveAvgPool2d(1), "max": nn.AdaptiveMaxPool2d(1)}
        body: list[nn.Module] = [pools[pool], nn.Flatten()]
        if hidden:
            body += [nn.Linear(features, hidden), nn.ReLU()]
            features = hidden
        if dropout:
            body.append(nn.Dropout(dropout))
        body.append(nn.Linear(features, n_classes))
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SLMNet(nn.Module):
    """A network of the family: ``features`` (l0, l1, ...) then ``head``."""

    def __init__(self, features: nn.Sequential, head: Head, plan: Plan):
        super().__init__()
        self.features = features
        self.head = head
        self.plan = plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, n_classes)
        return self.head(self.features(x))


def build_model(
    arch: dict,
    input_shape: Shape,
    n_classes: int,
    *,
    limits: Limits | None = None,
    seed: int = 0,
) -> SLMNet:
    """Check ``arch`` with the dry shape pass, then build it with weights drawn from ``seed``.

    The weights are drawn on the CPU, from the CPU generator seeded with ``seed`` and
    restored afterwards; no other generator is touched (``torch.manual_seed`` would seed every
    GPU's too, even one CUDA has not started yet), so that a trial's batch order,
    augmentation and dropout depend on its own seeding, not on the builder's.
    """
    plan = plan_model(arch, input_shape, n_classes, limits)
    stages: dict[str, list[nn.Module]] = OrderedDict()
    shape = plan.input_shape
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        for (name, _, op, params, padding), step in zip(_ops(arch), plan.steps, strict=False):
            stages.setdefault(name.split(".")[0], []).append(op(shape[0], padding, **params))
            shape = step.out_shape
        for i, layer in enumerate(arch["layers"], start=1):
            if layer.get("dropout", 0.0):
                stages[f"l{i}"].append(nn.Dropout(layer["dropout"]))
        features = nn.Sequential(OrderedDict((k, nn.Sequential(*v)) for k, v in stages.items()))
        head = arch["head"]
        head_module = Head(
            shape, n_classes, head.get("pool", "flatten"), head.get("hidden", 0), head.get("dropout", 0.0)
        )
    return SLMNet(features, head_module, plan)
