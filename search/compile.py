"""Compile a Space once into a hyperopt expression; decode samples into plain configs.

Labels are stable dotted paths: ``depth``, ``l0.norm.size`` (the input
normalization), ``l2.pool.order`` (layer 2), ``head.hidden``,
``training.lr``. When the options of a choice of blocks hold the same field
with different distributions, the later ones are told apart by the
option's kind (``l1.pool.size@max``); a value nested directly in a choice
gets its option's index (``l1.pool.order@3``).

A decoded sample is a config, plain values only (never choice indices)::

    {"architecture": {"input_norm": {...}, "layers": [{...}, ...], "head": {...}},
     "training": {...}}

with a canonical JSON form (:func:`to_json`) and a short hash of the
architecture (:func:`arch_hash`); :func:`flatten` gives the dotted
``{label: value}`` view used for tracking.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hyperopt import hp, pyll, space_eval
from hyperopt.pyll import scope

from .space import Block, Choice, Dist, Fixed, Node, Space


class _Labels:
    """Hands out hyperopt nodes by label; an equal node asked again under a label gets the same one."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[Node, Any]] = {}

    def get(self, label: str, node: Node, make: Callable[[str], Any], alt: str) -> Any:
        while label in self.nodes:
            known, expr = self.nodes[label]
            if known == node:
                return expr
            if not alt or label.endswith("@" + alt):
                raise ValueError(f"two different definitions for the label {label!r}")
            label = f"{label}@{alt}"
        expr = make(label)
        self.nodes[label] = (node, expr)
        return expr


def _dist(label: str, d: Dist) -> Any:
    a = d.args
    if d.kind == "int":  # every integer in [low, high] equally likely
        expr = hp.quniform(label, a[0] - 0.4999, a[1] + 0.4999, 1)
    elif d.kind in ("loguniform", "qloguniform"):  # bounds given in natural units
        expr = getattr(hp, d.kind)(label, math.log(a[0]), math.log(a[1]), *a[2:])
    else:
        expr = getattr(hp, d.kind)(label, *a)
    return scope.int(expr) if d.integer else scope.float(expr)


def _alt_names(choice: Choice) -> list[str]:
    """How options of a choice of blocks are told apart: their kinds when distinct, else indices."""
    kinds = [
        o.fields["kind"].value if isinstance(o, Block) and isinstance(o.fields.get("kind"), Fixed) else None
        for o in choice.options
    ]
    if None not in kinds and len(set(kinds)) == len(kinds):
        return [str(k) for k in kinds]
    return [str(i) for i in range(len(kinds))]


def _compile(node: Node, label: str, labels: _Labels, alt: str = "") -> Any:
    if isinstance(node, Fixed):
        return node.value
    if isinstance(node, Block):
        return {k: _compile(v, f"{label}.{k}", labels, alt) for k, v in node.fields.items()}
    if isinstance(node, Dist):
        return labels.get(label, node, lambda lab: _dist(lab, node), alt)

    def choice(lab: str) -> Any:
        names = _alt_names(node)
        options = [
            _compile(o, lab, labels, names[i]) if isinstance(o, Block) else _compile(o, f"{lab}@{i}", labels)
            for i, o in enumerate(node.options)
        ]
        return hp.choice(lab, options)

    return labels.get(label, node, choice, alt)


def layer_label(index: int) -> str:
    """Label prefix of a layer: l0 is the input normalization, l1 the first filter layer."""
    return f"l{index}"


class CompiledSpace:
    """A Space compiled into one hyperopt expression (``expr``), with decoding helpers."""

    def __init__(self, space: Space):
        self.space = space
        labels = _Labels()
        layers = [_compile(n, layer_label(i + 1), labels) for i, n in enumerate(space.layers)]
        if len(space.depths) == 1:
            stack = layers[: space.depths[0]]
        else:
            stack = hp.choice("depth", [layers[:d] for d in space.depths])
        self.expr = {
            "architecture": {
                "input_norm": _compile(space.input_norm, "l0.norm", labels),
                "layers": stack,
                "head": _compile(space.head, "head", labels),
            },
            "training": _compile(space.training, "training", labels),
        }
        self.labels: list[str] = (["depth"] if len(space.depths) > 1 else []) + list(labels.nodes)

    def sample(self, n: int, seed: int = 0) -> list[dict]:
        """``n`` configs drawn at random (the same seed gives the same configs)."""
        rng = np.random.default_rng(seed)
        return [plain(pyll.stochastic.sample(self.expr, rng=rng)) for _ in range(n)]

    def decode(self, assignment: dict[str, Any]) -> dict:
        """The config of a hyperopt assignment {label: value}, as in a trial's misc vals.

        Choice labels carry option indices there; the config holds the chosen values.
        """
        values = {}
        for label, value in assignment.items():
            if isinstance(value, (list, tuple)):  # misc vals: [value], or [] where inactive
                if not value:
                    continue
                value = value[0]
            values[label] = value
        return plain(space_eval(self.expr, values))


def plain(value: Any) -> Any:
    """Plain Python values: lists for tuples, int/float for NumPy scalars."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json(value: Any, indent: int | None = None) -> str:
    """The canonical JSON form: sorted keys, no spaces (unless ``indent``), no NaN."""
    separators = (",", ":") if indent is None else (",", ": ")
    return json.dumps(value, sort_keys=True, separators=separators, indent=indent, allow_nan=False)


def arch_hash(arch: dict) -> str:
    """A short, stable hash of an architecture dict (10 hex digits)."""
    return hashlib.sha256(to_json(arch).encode()).hexdigest()[:10]


def flatten(config: dict) -> dict[str, Any]:
    """The dotted view of a config: {"depth": 3, "l1.filters.count": 64, "training.lr": ...}."""
    arch = config["architecture"]
    out: dict[str, Any] = {"depth": len(arch["layers"])}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{prefix}.{k}")
        else:
            out[prefix] = value

    walk(arch["input_norm"], "l0.norm")
    for i, layer in enumerate(arch["layers"], start=1):
        walk(layer, layer_label(i))
    walk(arch["head"], "head")
    walk(config["training"], "training")
    return out


def arch_name(arch: dict) -> str:
    """A short name that says what a network is: ``l3 f64-128-256 k3-5-5 p1/1/10``."""
    layers = arch["layers"]

    def pool(layer: dict) -> str:
        p = layer["pool"]
        return f"{p['order']:.3g}" if p["kind"] == "lp" else p["kind"]

    return " ".join(
        [
            f"l{len(layers)}",
            "f" + "-".join(str(layer["filters"]["count"]) for layer in layers),
            "k" + "-".join(str(layer["filters"]["size"]) for layer in layers),
            "p" + "/".join(pool(layer) for layer in layers),
        ]
    )
