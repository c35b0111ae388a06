"""Run settings: a space file, its ``--set`` overrides and the run flags, resolved into one record.

Every setting of a campaign lives in the space file; the command line only
overrides it. ``--set training.epochs=1`` replaces one value by its key path
(the value is read as YAML, so ``--set 'training.lr={loguniform: [1e-4, 1e-2]}'``
works), and the run flags are shorthands for the same thing (``--trials 5``
is ``--set search.trials=5``). The result is validated exactly like a file.

The resolved space (the file with every override applied) is what the
campaign logs and what ``--resume`` reads back, so a campaign always knows
how it was configured.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .space import Space, SpaceError, load_space, parse_space, read_yaml

RUNS = Path("runs")  # where campaigns write by default: the MLflow store, the data cache, reports
PATIENCE = 300.0  # seconds a tracking store may stay unreachable before the campaign stops
WARM_TOP = 5  # trials of the --warm-start campaign run first, its best

# Settings a resumed campaign may change: how long it runs, not what it searches.
RUN_LIMITS = (
    "search.trials",
    "search.time_budget",
    "search.loss_threshold",
    "search.trial_timeout",
    "search.max_trial_seconds",
    "search.final",
)
# Settings of how trials run, not what they compute: may change on resume too.
EXECUTION = ("search.gpu",)
CHANGEABLE = RUN_LIMITS + EXECUTION


@dataclass(frozen=True)
class Shorthand:
    """A flag of ``archsearch run`` that sets one key of the space: ``--trials 5`` is
    ``--set search.trials=5``; its type comes from the key's spec in the schema."""

    key: str
    help: str
    metavar: str | None = None


# The shorthands, by the flag's name (``time_budget``: --time-budget), in the order --help lists them.
SHORTHANDS = {
    "trials": Shorthand("search.trials", "trials to end before stopping"),
    "algo": Shorthand("search.algo", "search algorithm"),
    "seed": Shorthand("search.seed", "campaign seed"),
    "time_budget": Shorthand(
        "search.time_budget",
        "campaign seconds, final stage included: start no trial that would end past them (by its "
        "predicted time)",
        "SECONDS",
    ),
    "loss_threshold": Shorthand("search.loss_threshold", "stop once a trial's loss (1 - val_acc) is <= this"),
    "trial_timeout": Shorthand(
        "search.trial_timeout", "stop a trial after this long: failed, with the reason timeout", "SECONDS"
    ),
    "tpe_startup": Shorthand("search.tpe.startup_trials", "random trials before TPE", "N"),
    "tpe_gamma": Shorthand("search.tpe.gamma", "TPE's share of good trials"),
    "tpe_candidates": Shorthand("search.tpe.candidates", "candidates TPE scores per suggestion", "N"),
    "dataset": Shorthand("data.dataset", "dataset: digits, fashion-mnist, mnist, cifar10, npz:PATH, ..."),
    "prune": Shorthand(
        "search.pruning.rule", "stop unpromising trials early: successive halving or the median rule"
    ),
    "prune_min_epochs": Shorthand(
        "search.pruning.min_epochs", "no trial stops before epoch N; asha's first rung", "N"
    ),
    "prune_reduction": Shorthand(
        "search.pruning.reduction", "asha: about 1 trial in R goes on at each rung", "R"
    ),
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")


@dataclass(frozen=True)
class Settings:
    """Everything a campaign needs to run, resolved."""

    name: str  # the campaign: one MLflow experiment of this name
    space: Space  # validated, overrides applied
    raw: dict  # the resolved space file as plain data (what --resume reads back)
    overrides: tuple[str, ...]  # KEY=VALUE as given, in order
    device: str = "auto"  # cpu | cuda | auto (CUDA when there is one)
    runs: Path = RUNS  # default MLflow store and data cache
    data_dir: Path | None = None  # where to look for dataset files before the cache
    quiet: bool = False
    workers: int | None = None  # --workers: trials at once in worker processes (None: in this process)
    oversubscribe: bool = False  # --oversubscribe: more worker processes than the machine runs well
    trials_per_gpu: int | None = None  # --trials-per-gpu
    dask: str | None = None  # --dask: a Dask scheduler's address
    threads: int | None = None  # --threads-per-trial: torch CPU threads of each trial
    warm_start: str | None = None  # --warm-start: a campaign whose best trials run first
    warm_top: int = WARM_TOP  # --warm-start-top: how many of them
    points: str | None = None  # --points: a file of configurations to run first

    @property
    def search(self) -> dict[str, Any]:
        return self.space.search

    @property
    def cache_dir(self) -> Path:
        return self.runs / "data"

    def resolved_yaml(self) -> str:
        return yaml.safe_dump(self.raw, sort_keys=False, default_flow_style=None, width=100)

    def identity(self) -> dict:
        return identity(self.raw)


def changeable(key: str) -> bool:
    """Whether a resumed campaign may change this key path (``search.final.top`` too)."""
    return any(key == k or key.startswith(k + ".") for k in CHANGEABLE)


def identity(raw: dict) -> dict:
    """A resolved space without its run limits: what must match to resume a campaign."""
    raw = copy.deepcopy(raw)
    for key in CHANGEABLE:
        section, _, leaf = key.partition(".")
        if isinstance(raw.get(section), dict):
            raw[section].pop(leaf, None)
    raw.pop("description", None)
    return raw


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Key paths where two plain values differ: ``training.epochs: 2 -> 3``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            where = f"{path}.{key}" if path else str(key)
            out += differences(a.get(key), b.get(key), where)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UserError(
            f"campaign name {name!r}: use letters, digits, '_', '.' and '-' (at most 100, "
            "starting with a letter or digit)"
        )
    return name


def flag_overrides(values: dict[str, Any]) -> list[str]:
    """``--trials 5`` and friends as KEY=VALUE overrides (flags left unset give none)."""
    out = []
    for flag, shorthand in SHORTHANDS.items():
        value = values.get(flag)
        if value is not None:
            out.append(f"{shorthand.key}={_yaml_scalar(value)}")
    return out


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def apply_overrides(raw: Any, overrides: list[str] | tuple[str, ...]) -> dict:
    """A copy of ``raw`` with each KEY=VALUE applied in order; a malformed one is a SpaceError."""
    raw = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpaceError(f"--set {item}: expected KEY=VALUE, such as training.epochs=1")
        value = read_yaml(text, f"--set {key}") if text.strip() else None
        _set_path(raw, key, value, item)
    return raw


def _set_path(raw: dict, key: str, value: Any, item: str) -> None:
    steps: list[str | int] = []
    for part in key.split("."):
        m = _STEP.match(part)
        if not m:
            raise SpaceError(
                f"--set {item}: bad key path {key!r}; expected names joined by dots, "
                "with [i] for list items (architecture.layers[0].pool.order)"
            )
        steps.append(m.group(1))
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    node: Any = raw
    for i, step in enumerate(steps[:-1]):
        here = ".".join(map(str, steps[: i + 1]))
        nxt = node[step] if _has(node, step) else None
        if isinstance(nxt, str) and isinstance(steps[i + 1], str):
            nxt = {"kind": nxt}  # `optimizer: sgd` is shorthand for {kind: sgd}
        elif nxt is None and isinstance(steps[i + 1], str):
            nxt = {}
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise SpaceError(f"--set {item}: {here}: no such list item (the list has {size})")
        elif not isinstance(node, dict):
            raise SpaceError(f"--set {item}: {here}: cannot set a key inside a {type(node).__name__}")
        if not isinstance(nxt, (dict, list)):
            raise SpaceError(f"--set {item}: {here} is {nxt!r}, not a mapping or a list")
        node[step] = nxt
        node = nxt
    last = steps[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise SpaceError(f"--set {item}: {key}: no such list item")
    elif not isinstance(node, dict):
        raise SpaceError(f"--set {item}: {key}: cannot set a key inside a {type(node).__name__}")
    node[last] = value


def _has(node: Any, step: str | int) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and step < len(node)


def resolve(
    space_path: str,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    name: str | None = None,
    base_raw: dict | None = None,
    **run: Any,
) -> Settings:
    """Read a space file (or a stored resolved space, ``base_raw``), apply overrides, validate."""
    if base_raw is None:
        space = load_space(space_path)  # the file alone must be valid: errors point at it
        base_raw = read_yaml(space.text, space_path)
    raw = apply_overrides(base_raw, overrides)
    source = f"{space_path} with --set" if overrides else space_path
    stem = Path(space_path).stem
    text = yaml.safe_dump(raw, sort_keys=False)
    space = dataclasses.replace(parse_space(raw, source, text, stem), path=space_path)
    if "name" not in raw:
        raw = {"name": space.name, **raw}
    return Settings(
        name=check_name(name or space.name),
        space=space,
        raw=raw,
        overrides=tuple(overrides),
        **run,
    )


CPU_BF16 = "ARCHSEARCH_CPU_BF16"  # 0: train in float32 on a CPU even where it computes bf16 natively


def cpu_bf16_allowed() -> bool:
    """``ARCHSEARCH_CPU_BF16``: unset or 1, training on a CPU that computes bf16 natively runs under
    bf16 autocast (:func:`search.train.cpu_bf16`); 0, in float32."""
    said = os.environ.get(CPU_BF16, "").strip()
    if said not in ("", "0", "1"):
        raise UserError(f"{CPU_BF16}={said!r}: expected 0 (float32 on a CPU) or 1 (bf16 where native)")
    return said != "0"


def tracking_uri(flag: str | None, runs: Path) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else a SQLite store under ``runs``."""
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(runs / 'mlflow.db').resolve()}"
