"""Load a search space file and validate it into typed objects.

A space file is data: YAML read with a safe loader, where every value is
either fixed, a ``choice`` (of values, distributions or whole blocks), or a
distribution (``uniform``, ``loguniform``, ``quniform``, ``int``, ``normal``,
...). Validation follows :mod:`search.schema` and stops at the first problem
with one line that names the file, the key path and what was expected::

    spaces/x.yaml: architecture.layers[2].pool.order: expected a number >= 1
    or a distribution, got "ten"

The result, :class:`Space`, holds a tree of nodes (:class:`Fixed`,
:class:`Choice`, :class:`Dist`, :class:`Block`) per layer, ready for the
compiler (:mod:`search.compile`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from models.names import Limits

from . import schema as S
from .datasets import DATASETS
from .errors import UserError


class SpaceError(UserError, ValueError):
    """A problem with a space file, as one line: ``file: key.path: what is wrong``."""


# ---------------------------------------------------------------- nodes


@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class Dist:
    kind: str  # a key of schema.DISTRIBUTIONS
    args: tuple[float, ...]  # as written in the file (natural units)
    integer: bool  # the field takes integers: values are rounded to int


@dataclass(frozen=True)
class Choice:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Block:
    fields: dict[str, Node]


Node = Fixed | Dist | Choice | Block


@dataclass(frozen=True)
class Space:
    """A validated search space; ``layers[i]`` is layer i+1's tree (as many as the largest depth)."""

    path: str
    text: str
    name: str
    description: str
    data: dict[str, Any]
    depths: tuple[int, ...]
    input_norm: Node
    layers: tuple[Node, ...]
    head: Node
    training: Node
    constraints: Limits
    search: dict[str, Any]  # algo, trials, seed, time_budget, loss_threshold, tpe: {...}
    points: tuple[Point, ...] = ()  # search.points: configurations to evaluate first


@dataclass(frozen=True)
class Point:
    """One of ``search.points``: a configuration to evaluate first, as a space of one
    configuration (every node fixed); ``search.compile`` checks that the space contains it."""

    name: str
    space: Space


# ---------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """Safe loader that reads 1e-3 as a number (YAML 1.2) and refuses duplicate keys."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.MarkedYAMLError(
                problem=f"duplicate key {key!r} (first at line {seen[key] + 1})", problem_mark=mark
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely; a syntax error becomes one SpaceError line with its position."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise SpaceError(f"{source}: {where}malformed YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise SpaceError(f"{source}: malformed YAML: {e}") from None


def load_space(path: str | Path) -> Space:
    """Read and validate a space file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"{source}: cannot read: {e}") from None
    return parse_space(read_yaml(text, source), source, text, Path(path).stem)


# ---------------------------------------------------------------- validation


def _got(raw: Any) -> str:
    """How a value appears in an error: scalars as JSON, containers by their shape."""
    if isinstance(raw, dict):
        return "a mapping with keys " + ", ".join(map(str, raw)) if raw else "an empty mapping"
    if isinstance(raw, list):
        return f"a list of {len(raw)} items" if raw else "an empty list"
    if raw is None:
        return "null"
    if isinstance(raw, float) and not math.isfinite(raw):
        return str(raw)
    return json.dumps(raw) if isinstance(raw, (str, bool, int, float)) else repr(raw)


def _is_number(raw: Any) -> bool:
    return isinstance(raw, (int, float)) and not isinstance(raw, bool)


class _Parser:
    """Turns raw YAML values into nodes, following schema specs; raises SpaceError."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, message: str) -> None:
        raise SpaceError(f"{self.source}: {path}: {message}")

    def expected(self, path: str, spec: Any, raw: Any, searchable: bool = True) -> None:
        alternative = " or a distribution" if searchable and isinstance(spec, S.Num) else ""
        alternative = alternative or (" or a choice" if searchable else "")
        self.fail(path, f"expected {spec.describe()}{alternative}, got {_got(raw)}")

    # -- any value: per_layer, choice, distribution, or a literal/block of this spec
    def node(
        self, raw: Any, spec: Any, path: str, searchable: bool = True, layer: tuple | None = None
    ) -> Node:
        if isinstance(raw, dict) and "per_layer" in raw:
            return self.per_layer(raw, spec, path, searchable, layer)
        special = [k for k in raw if k == "choice" or k in S.DISTRIBUTIONS] if isinstance(raw, dict) else []
        if special:
            if len(raw) != 1:
                self.fail(path, f"a {special[0]} takes no other keys, got {_got(raw)}")
            if not searchable:
                self.fail(path, f"this setting cannot be searched: expected {spec.describe()}")
            if special[0] == "choice":
                return self.choice(raw["choice"], spec, path + ".choice", layer)
            return self.dist(special[0], raw[special[0]], spec, f"{path}.{special[0]}")
        if isinstance(spec, S.Rec):
            return self.record(raw, spec, path, searchable, layer)
        if isinstance(spec, S.Kinds):
            return self.kinds(raw, spec, path, searchable, layer)
        return Fixed(self.literal(raw, spec, path, searchable))

    def per_layer(self, raw: dict, spec: Any, path: str, searchable: bool, layer: tuple | None) -> Node:
        if layer is None:
            self.fail(
                path, "per_layer is only allowed where architecture.layers is one mapping for all layers"
            )
        index, count = layer
        values = raw["per_layer"]
        if len(raw) != 1:
            self.fail(path, f"per_layer takes no other keys, got {_got(raw)}")
        if not isinstance(values, list) or len(values) < count:
            n = len(values) if isinstance(values, list) else 0
            self.fail(
                path + ".per_layer",
                f"expected a list with one value per layer (at least {count}, as depth can be {count}), "
                f"got {_got(values) if not isinstance(values, list) else f'{n} values'}",
            )
        return self.node(values[index], spec, f"{path}.per_layer[{index}]", searchable, layer)

    def choice(self, options: Any, spec: Any, path: str, layer: tuple | None) -> Choice:
        if not isinstance(options, list) or not options:
            self.fail(path, f"expected a non-empty list of options, got {_got(options)}")
        return Choice(tuple(self.node(o, spec, f"{path}[{i}]", True, layer) for i, o in enumerate(options)))

    def dist(self, kind: str, args: Any, spec: Any, path: str) -> Dist:
        names = S.DISTRIBUTIONS[kind]
        form = "[" + ", ".join(names) + "]"
        if not isinstance(spec, S.Num):
            self.fail(path, f"expected {spec.describe()}; {kind} is for numbers (use a choice)")
        if not isinstance(args, list) or len(args) != len(names) or not all(map(_is_number, args)):
            self.fail(path, f"expected {form} (numbers), got {_got(args)}")
        if not all(math.isfinite(a) for a in args):
            self.fail(path, f"expected finite numbers in {form}, got {_got(args)}")
        a = dict(zip(names, args, strict=False))
        shown = ", ".join(f"{k}={_g(v)}" for k, v in a.items())
        rules = []
        if "low" in a:
            rules.append(("low < high", a["low"] < a["high"]))
        if kind in ("loguniform", "qloguniform"):
            rules.append(("low > 0", a["low"] > 0))
        if "sigma" in a:
            rules.append(("sigma > 0", a["sigma"] > 0))
        if "q" in a:
            rules.append(("q > 0", a["q"] > 0))
        if kind == "int":
            rules.append(("low and high are integers", all(float(v).is_integer() for v in args)))
        for rule, ok in rules:
            if not ok:
                self.fail(path, f"`{rule}` must hold, but got ({shown})")
        integral_q = "q" in a and float(a["q"]).is_integer()
        if spec.integer and not (kind == "int" or integral_q):
            self.fail(
                path,
                f"expected {spec.describe()}: use int, a choice, or a q-distribution with an "
                f"integer q; {kind} gives fractions",
            )
        self.check_support(kind, a, spec, path, shown)
        return Dist(kind, tuple(float(v) for v in args), spec.integer)

    def check_support(self, kind: str, a: dict, spec: S.Num, path: str, shown: str) -> None:
        """Every value the distribution can give must be allowed by the field."""
        if kind in ("normal", "qnormal"):
            lo, lo_open, hi, hi_open = -math.inf, True, math.inf, True
        elif kind in ("lognormal", "qlognormal"):
            lo, lo_open, hi, hi_open = 0.0, kind == "lognormal", math.inf, True
        elif "q" in a:
            q = a["q"]
            lo, lo_open, hi, hi_open = round(a["low"] / q) * q, False, round(a["high"] / q) * q, False
        else:
            lo, lo_open, hi, hi_open = a["low"], False, a["high"], False
        if not (spec.admits(lo, lo_open)[0] and spec.admits(hi, hi_open)[1]):
            self.fail(path, f"{kind} ({shown}) can give values outside the allowed range: {spec.describe()}")

    def literal(self, raw: Any, spec: Any, path: str, searchable: bool) -> Any:
        if isinstance(spec, S.Num):
            if raw is None and spec.nullable:
                return None
            if not _is_number(raw) or math.isnan(raw):
                self.expected(path, spec, raw, searchable)
            if math.isinf(raw):
                if spec.nullable:  # an infinite bound is no bound
                    return None
                self.expected(path, spec, raw, searchable)
            if spec.integer and not float(raw).is_integer():
                self.expected(path, spec, raw, searchable)
            if not all(spec.admits(raw)):
                self.expected(path, spec, raw, searchable)
            return int(raw) if spec.integer else float(raw)
        if isinstance(spec, S.Flag):
            if not isinstance(raw, bool):
                self.expected(path, spec, raw, searchable)
            return raw
        if isinstance(spec, S.Enum):
            if raw not in spec.options or not isinstance(raw, str):
                self.expected(path, spec, raw, searchable)
            return raw
        if isinstance(spec, S.Text):
            if not isinstance(raw, str) or not raw:
                self.expected(path, spec, raw, False)
            problem = spec.check(raw) if spec.check else None
            if problem:
                self.fail(path, problem)
            return raw
        if isinstance(spec, S.Shape):
            if raw is None:
                return None
            ok = isinstance(raw, list) and len(raw) == spec.length
            if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in raw):
                self.expected(path, spec, raw, False)
            return list(raw)
        raise TypeError(f"unknown spec {spec!r}")

    def fields(
        self, raw: dict, specs: dict, path: str, searchable: bool, layer: tuple | None, skip: str = ""
    ) -> dict[str, Node]:
        """Validate the keys of one block against ``specs`` and fill in the defaults."""
        for key in raw:
            if key != skip and key not in specs:
                valid = ", ".join(k for k in ((skip,) if skip else ()) + tuple(specs))
                self.fail(f"{path}.{key}", f"unknown key; expected one of {valid or '(no keys)'}")
        out: dict[str, Node] = {}
        for key, spec in specs.items():
            where = f"{path}.{key}"
            if key in raw:
                out[key] = self.node(raw[key], spec, where, searchable, layer)
            elif isinstance(spec, S.Rec):
                out[key] = self.record({}, spec, where, searchable, layer)
            elif isinstance(spec, S.Kinds):
                if spec.default is None:
                    self.fail(where, f"required: expected {spec.describe()}")
                out[key] = self.kinds(spec.default, spec, where, searchable, layer)
            elif spec.default is S.REQUIRED:
                self.fail(where, f"required: expected {spec.describe()}")
            else:
                out[key] = Fixed(spec.default)
        return out

    def record(self, raw: Any, spec: S.Rec, path: str, searchable: bool, layer: tuple | None) -> Block:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.expected(path, spec, raw, searchable)
        return Block(self.fields(raw, spec.fields, path, searchable, layer))

    def kinds(self, raw: Any, spec: S.Kinds, path: str, searchable: bool, layer: tuple | None) -> Block:
        if isinstance(raw, str):
            raw = {"kind": raw}
        if not isinstance(raw, dict):
            self.expected(path, spec, raw, searchable)
        kind = raw.get("kind", spec.default)
        if isinstance(kind, dict):
            self.fail(path + ".kind", "to search over kinds, make the whole block a choice of blocks")
        if kind not in spec.kinds:
            if kind is None:
                self.fail(path + ".kind", "required: one of " + ", ".join(spec.kinds))
            self.fail(path + ".kind", f"expected one of {', '.join(spec.kinds)}, got {_got(kind)}")
        body = self.fields(raw, spec.kinds[kind], path, searchable, layer, skip="kind")
        return Block({"kind": Fixed(kind), **body})


def _g(x: float) -> str:
    return f"{x:g}"


def parse_space(raw: Any, source: str = "<space>", text: str = "", stem: str = "space") -> Space:
    """Validate a space given as plain data (as read from YAML)."""
    p = _Parser(source)
    if not isinstance(raw, dict):
        raise SpaceError(
            f"{source}: expected a mapping of {', '.join(S.TOP_KEYS)} at the top, got {_got(raw)}"
        )
    for key in raw:
        if key not in S.TOP_KEYS:
            p.fail(str(key), f"unknown key; expected one of {', '.join(S.TOP_KEYS)}")
    if "architecture" not in raw:
        p.fail("architecture", "required: the layers to search")
    name = p.literal(raw.get("name", stem), S.Text(), "name", False)
    description = raw.get("description", "")
    if not isinstance(description, str):
        p.fail("description", f"expected a string, got {_got(description)}")
    data = _plain(p.record(raw.get("data"), S.DATA, "data", False, None))
    limits = _plain(p.record(raw.get("constraints"), S.CONSTRAINTS, "constraints", False, None))
    raw_search, points_raw, final_training = _search_parts(raw.get("search"))
    search = _plain(p.record(raw_search, S.SEARCH, "search", False, None))
    search["final"]["training"] = _final_training(p, final_training)
    if search["fidelity"]["rungs"] and search["pruning"]["rule"] != "none":
        p.fail(
            "search.fidelity.rungs",
            f"multi-fidelity rungs and search.pruning.rule {search['pruning']['rule']} both stop trials "
            "early, and epochs at different rungs do not compare; use one (search.pruning.rule: none)",
        )
    if search["final"]["ensemble"] and search["final"]["top"] < 2:
        p.fail(
            "search.final.ensemble",
            f"averages the final models of the best search.final.top trials; top is "
            f"{search['final']['top']}, give it 2 or more",
        )
    training = p.record(raw.get("training"), S.TRAINING, "training", True, None)
    mode = training.fields["mode"]
    if search["fidelity"]["screen"] and isinstance(mode, Fixed) and mode.value == "screen":
        p.fail(
            "search.fidelity.screen",
            "a screening rung is for trials that train; these screen already (training.mode: screen)",
        )
    fidelity = search["fidelity"]
    if (fidelity["rungs"] or fidelity["screen"]) and not isinstance(training.fields["epochs"], Fixed):
        p.fail(
            "training.epochs",
            "multi-fidelity rungs (search.fidelity) choose the epochs of each rung from the trials' "
            "own; give training.epochs one value",
        )

    arch = raw["architecture"]
    if not isinstance(arch, dict):
        p.fail(
            "architecture", f"expected a mapping with keys {', '.join(S.ARCHITECTURE_KEYS)}, got {_got(arch)}"
        )
    for key in arch:
        if key not in S.ARCHITECTURE_KEYS:
            p.fail(f"architecture.{key}", f"unknown key; expected one of {', '.join(S.ARCHITECTURE_KEYS)}")
    for key in ("depth", "layers"):
        if key not in arch:
            p.fail(f"architecture.{key}", "required")
    depths = _depths(p, p.node(arch["depth"], S.DEPTH, "architecture.depth"))
    layers = _layers(p, arch["layers"], max(depths))
    input_norm = p.node(arch.get("input_norm", "none"), S.INPUT_NORM, "architecture.input_norm")
    head = p.node(arch.get("head"), S.HEAD, "architecture.head")
    return Space(
        source,
        text,
        name,
        description,
        data,
        depths,
        input_norm,
        layers,
        head,
        training,
        Limits(**limits),
        search,
        _points(p, points_raw, raw),
    )


def _search_parts(raw: Any) -> tuple[Any, Any, Any]:
    """The ``search`` block without what is checked apart: its ``points`` and its
    ``final.training`` (None where not given)."""
    if not isinstance(raw, dict):
        return raw, None, None
    points, final = raw.get("points"), raw.get("final")
    raw = {k: v for k, v in raw.items() if k != "points"}
    if not isinstance(final, dict):
        return raw, points, None
    raw["final"] = {k: v for k, v in final.items() if k != "training"}
    return raw, points, final.get("training")


def _final_training(p: _Parser, raw: Any) -> dict[str, Any]:
    """``search.final.training``: recipe settings the final models train with in place of their
    trials' (fixed values, checked as ``training``'s), the keys given only; {} when none."""
    path = "search.final.training"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        p.fail(path, f"expected a mapping of training settings ({{label_smoothing: 0.1}}), got {_got(raw)}")
    if "mode" in raw:
        p.fail(f"{path}.mode", "a final model trains as its trial did; the mode cannot change here")
    if "epochs" in raw:
        p.fail(f"{path}.epochs", "the final stage chooses the epochs: give search.final.epochs")
    full = _plain(p.record(raw, S.TRAINING, path, False, None))
    # the keys given; augmentation's one by one, a block with a kind (optimizer, schedule) whole
    out = {k: full[k] for k in raw}
    if isinstance(raw.get("augmentation"), dict):
        out["augmentation"] = {k: full["augmentation"][k] for k in raw["augmentation"]}
    return out


def _points(p: _Parser, raw: Any, space_raw: dict) -> tuple[Point, ...]:
    """``search.points``, each parsed as a space of its own (:func:`_point`)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        p.fail("search.points", f"expected a list of configurations, got {_got(raw)}")
    out = [_point(p, i, item, space_raw) for i, item in enumerate(raw)]
    names = [pt.name for pt in out]
    for name in names:
        if names.count(name) > 1:
            p.fail("search.points", f"two points are named {name!r}")
    return tuple(out)


def _point(p: _Parser, i: int, item: Any, space_raw: dict) -> Point:
    """One of ``search.points``: its values over the space's (:func:`_inherit`), so that a point
    gives what the space searches and may leave out what it fixes (``padding: same``); the
    result must be one configuration."""
    path = f"search.points[{i}]"
    if not isinstance(item, dict) or "architecture" not in item:
        p.fail(path, f"expected a mapping with keys {', '.join(S.POINT_KEYS)}, got {_got(item)}")
    for key in item:
        if key not in S.POINT_KEYS:
            p.fail(f"{path}.{key}", f"unknown key; expected one of {', '.join(S.POINT_KEYS)}")
    name = item.get("name", str(i))
    if not isinstance(name, str) or not name:
        p.fail(f"{path}.name", f"expected a string, got {_got(name)}")
    arch, training = item["architecture"], item.get("training") or {}
    if not isinstance(arch, dict) or not isinstance(arch.get("layers"), list):
        p.fail(f"{path}.architecture", f"expected a mapping with layers as a list, got {_got(arch)}")
    if not isinstance(training, dict):
        p.fail(f"{path}.training", f"expected a mapping, got {_got(training)}")
    base = space_raw.get("architecture") if isinstance(space_raw.get("architecture"), dict) else {}
    template = base.get("layers")
    layers = [_inherit(_layer_template(template, j), layer) for j, layer in enumerate(arch["layers"])]
    arch = {**arch, "depth": len(layers), "layers": layers}
    for key in ("input_norm", "head"):
        if key in base:
            arch[key] = _inherit(base[key], arch.get(key, _MISSING))
    base_training = space_raw.get("training") if isinstance(space_raw.get("training"), dict) else {}
    one = {"data": space_raw.get("data"), "architecture": arch, "training": _inherit(base_training, training)}
    space = parse_space(one, f"{p.source}: {path}")
    searched = _searched(space)
    if searched:
        where = "training" if searched.startswith("training") else "architecture"
        p.fail(
            f"{path}.{searched}",
            f"the point must give a value here (the space searches it; give it in the point's {where})",
        )
    return Point(name, space)


_MISSING = object()


def _inherit(space: Any, given: Any) -> Any:
    """A point's value with the space's filling what it leaves out: key by key in mappings (into
    a block of the same kind), the space's whole value where the point gives none."""
    if given is _MISSING:
        return space
    if not (isinstance(space, dict) and isinstance(given, dict)) or space.get("kind") != given.get("kind"):
        return given
    if "choice" in space or "per_layer" in space or any(k in S.DISTRIBUTIONS for k in space):
        return given
    out = dict(given)
    for key, value in space.items():
        out[key] = _inherit(value, given.get(key, _MISSING))
    return out


def _layer_template(template: Any, index: int) -> Any:
    """The space's raw spec of layer ``index``: its entry of a list, or the one mapping for all
    layers with each ``per_layer`` resolved to this layer's value."""
    if isinstance(template, list):
        return template[index] if index < len(template) else _MISSING
    if not isinstance(template, dict):
        return _MISSING

    def pick(value: Any) -> Any:
        if isinstance(value, dict) and "per_layer" in value:
            values = value["per_layer"]
            return values[index] if isinstance(values, list) and index < len(values) else _MISSING
        if isinstance(value, dict):
            return {k: v for k, v in ((k, pick(v)) for k, v in value.items()) if v is not _MISSING}
        return value

    return pick(template)


def _searched(space: Space) -> str | None:
    """The key path of the first searched value of a space (None: it is one configuration)."""

    def first(node: Node, path: str) -> str | None:
        if isinstance(node, Fixed):
            return None
        if isinstance(node, Block):
            for key, child in node.fields.items():
                found = first(child, f"{path}.{key}")
                if found:
                    return found
            return None
        return path

    if len(space.depths) != 1:
        return "architecture.depth"
    parts = [(space.input_norm, "architecture.input_norm")]
    parts += [(layer, f"architecture.layers[{i}]") for i, layer in enumerate(space.layers)]
    parts += [(space.head, "architecture.head"), (space.training, "training")]
    for node, path in parts:
        found = first(node, path)
        if found:
            return found
    return None


def _depths(p: _Parser, node: Node) -> tuple[int, ...]:
    """The depths a space allows: a number, a choice of numbers, or an int range."""
    if isinstance(node, Fixed):
        return (node.value,)
    if isinstance(node, Choice) and all(isinstance(o, Fixed) for o in node.options):
        values = tuple(o.value for o in node.options)
        if len(set(values)) != len(values):
            p.fail("architecture.depth.choice", f"lists a depth twice: {list(values)}")
        return values
    if isinstance(node, Dist) and node.kind == "int":
        return tuple(range(int(node.args[0]), int(node.args[1]) + 1))
    p.fail("architecture.depth", "expected a number, a choice of numbers, or an int range")
    raise AssertionError


def _layers(p: _Parser, raw: Any, count: int) -> tuple[Node, ...]:
    """One tree per layer: a mapping is the spec of every layer (per_layer picks by layer)."""
    path = "architecture.layers"
    if isinstance(raw, dict):
        return tuple(p.node(raw, S.LAYER, path, True, (i, count)) for i in range(count))
    if isinstance(raw, list):
        if len(raw) < count:
            p.fail(path, f"expected at least {count} layers (depth can be {count}), got {len(raw)}")
        return tuple(p.node(r, S.LAYER, f"{path}[{i}]") for i, r in enumerate(raw))[:count]
    p.fail(path, f"expected a mapping (the spec of every layer) or a list (one per layer), got {_got(raw)}")
    raise AssertionError


def _plain(block: Block) -> dict[str, Any]:
    """The values of a block made only of fixed values (nested blocks as dicts)."""
    return {k: _plain(v) if isinstance(v, Block) else v.value for k, v in block.fields.items()}


def input_of(space: Space, shape: tuple[int, int, int] | None, classes: int | None) -> tuple[tuple, int]:
    """Input shape and class count: those given, else the space's data block, else the dataset's own."""
    info = DATASETS.get(space.data["dataset"])
    shape = shape or space.data["input_shape"] or (info.input_shape if info else None)
    classes = classes or (info.n_classes if info else None)
    if shape is None or classes is None:
        raise UserError(
            f"{space.path}: the input shape and class count of {space.data['dataset']!r} are known "
            "only once it is loaded; give --input CxHxW and --classes N"
        )
    return tuple(shape), classes
