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

with a canonical JSON form (:func:`to_json`) and short hashes of the
architecture (:func:`arch_hash`) and of the whole config (:func:`config_hash`);
:func:`flatten` gives the dotted ``{label: value}`` view used for tracking. hyperopt is
imported where a space is compiled, sampled or decoded, not by those helpers, which the commands
that read a campaign back use without it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .space import Block, Choice, Dist, Fixed, Node, Point, Space, SpaceError


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
    from hyperopt import hp
    from hyperopt.pyll import scope

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
        from hyperopt import hp

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


class OutsideSpace(ValueError):
    """A config the space cannot produce (a value out of range, a key it does not have)."""


def _label_of(nodes: dict, label: str, node: Node, alt: str) -> str:
    """The label the compiler gave ``node`` first asked as ``label`` (see _Labels.get)."""
    while label in nodes and nodes[label][0] != node:
        label = f"{label}@{alt}"
    return label


def _in_support(d: Dist, v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return False
    if d.integer and v != int(v):
        return False
    if d.kind in ("normal", "qnormal"):
        return True
    if d.kind in ("lognormal", "qlognormal"):
        return v > 0
    low, high = d.args[0], d.args[1]
    return low - 1e-9 * abs(low) <= v <= high + 1e-9 * abs(high)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return a == b or math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _encode(node: Node, label: str, value: Any, path: str, nodes: dict, out: dict, alt: str = "") -> None:
    """Fill ``out`` with the assignment {label: value or option index} that gives ``value``."""
    if isinstance(node, Fixed):
        if not _same(node.value, value):
            raise OutsideSpace(f"{path}: {value!r}, where the space fixes {node.value!r}")
        return
    if isinstance(node, Block):
        if not isinstance(value, dict):
            raise OutsideSpace(f"{path}: expected a mapping, got {value!r}")
        extra, missing = set(value) - set(node.fields), set(node.fields) - set(value)
        if extra or missing:
            what = f"unknown keys {sorted(extra)}" if extra else f"missing keys {sorted(missing)}"
            raise OutsideSpace(f"{path}: {what}")
        for k, child in node.fields.items():
            _encode(child, f"{label}.{k}", value[k], f"{path}.{k}", nodes, out, alt)
        return
    lab = _label_of(nodes, label, node, alt)
    if isinstance(node, Dist):
        if not _in_support(node, value):
            raise OutsideSpace(f"{path}: {value!r} is outside {node.kind} {list(node.args)}")
        out[lab] = value
        return
    names, reasons = _alt_names(node), []
    for i, option in enumerate(node.options):
        trial: dict = {}
        try:
            if isinstance(option, Block):
                _encode(option, lab, value, path, nodes, trial, names[i])
            else:
                _encode(option, f"{lab}@{i}", value, path, nodes, trial)
        except OutsideSpace as e:
            reasons.append(str(e))
            continue
        out[lab] = i
        out.update(trial)
        return
    raise OutsideSpace(f"{path}: none of the choice's {len(node.options)} options fits ({reasons[0]})")


class CompiledSpace:
    """A Space compiled into one hyperopt expression (``expr``), with decoding helpers."""

    def __init__(self, space: Space):
        from hyperopt import hp

        self.space = space
        labels = _Labels()
        self._nodes = labels.nodes
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
        self.points = [self._point(i, point) for i, point in enumerate(space.points)]

    def _point(self, index: int, point: Point) -> tuple[dict, dict, str]:
        """(vals, config, source) of one of ``search.points``; SpaceError if the space cannot
        produce it."""
        config = CompiledSpace(point.space).sample(1)[0]  # every node fixed: the one configuration
        try:
            vals = self.encode(config)
        except OutsideSpace as e:
            raise SpaceError(
                f"{self.space.path}: search.points[{index}] ({point.name}): not a configuration of the "
                f"space: {e}"
            ) from None
        return vals, self.decode(vals), f"space point {point.name}"

    def sample(self, n: int, seed: int = 0) -> list[dict]:
        """``n`` configs drawn at random (the same seed gives the same configs)."""
        from hyperopt import pyll

        rng = np.random.default_rng(seed)
        return [plain(pyll.stochastic.sample(self.expr, rng=rng)) for _ in range(n)]

    def decode(self, assignment: dict[str, Any]) -> dict:
        """The config of a hyperopt assignment {label: value}, as in a trial's misc vals.

        Choice labels carry option indices there; the config holds the chosen values.
        """
        from hyperopt import space_eval

        values = {}
        for label, value in assignment.items():
            if isinstance(value, (list, tuple)):  # misc vals: [value], or [] where inactive
                if not value:
                    continue
                value = value[0]
            values[label] = value
        return plain(space_eval(self.expr, values))

    def encode(self, config: dict) -> dict[str, list]:
        """The hyperopt assignment (misc vals: {label: [value]}, [] where inactive) that decodes to
        ``config``; OutsideSpace names the first key path the space cannot produce."""
        if not isinstance(config, dict) or set(config) != {"architecture", "training"}:
            raise OutsideSpace("expected a mapping with exactly the keys architecture and training")
        arch, out = config["architecture"], {}
        if not isinstance(arch, dict) or set(arch) != {"input_norm", "layers", "head"}:
            raise OutsideSpace("architecture: expected exactly the keys input_norm, layers and head")
        layers = arch["layers"]
        if not isinstance(layers, list) or len(layers) not in self.space.depths:
            got = len(layers) if isinstance(layers, list) else layers
            raise OutsideSpace(
                f"architecture.layers: depth {got}, where the space allows {list(self.space.depths)}"
            )
        if len(self.space.depths) > 1:
            out["depth"] = self.space.depths.index(len(layers))
        _encode(
            self.space.input_norm, "l0.norm", arch["input_norm"], "architecture.input_norm", self._nodes, out
        )
        for i, layer in enumerate(layers):
            where = f"architecture.layers[{i}]"
            _encode(self.space.layers[i], layer_label(i + 1), layer, where, self._nodes, out)
        _encode(self.space.head, "head", arch["head"], "architecture.head", self._nodes, out)
        _encode(self.space.training, "training", config["training"], "training", self._nodes, out)
        return {label: [plain(out[label])] if label in out else [] for label in self.labels}


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


def config_hash(config: dict) -> str:
    """A short hash of a whole config (architecture and recipe): equal configs, equal hashes."""
    return arch_hash(config)


def flatten(config: dict) -> dict[str, Any]:
    """The dotted view of a config: {"depth": 3, "l1.filters.count": 64, "training.lr": ...}."""
    arch = config["architecture"]
    out: dict[str, Any] = {"depth": len(arch["layers"])}
    out.update(dotted(arch["input_norm"], "l0.norm"))
    for i, layer in enumerate(arch["layers"], start=1):
        out.update(dotted(layer, layer_label(i)))
    out.update(dotted(arch["head"], "head"))
    out.update(dotted(config["training"], "training"))
    return out


def dotted(value: Any, prefix: str) -> dict[str, Any]:
    """Nested settings under ``prefix``, one dotted key per leaf: {"training.augmentation.hflip": True}."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {key: leaf for k, v in value.items() for key, leaf in dotted(v, f"{prefix}.{k}").items()}


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
