"""What a search space file may say: every block, its fields, their types and defaults.

This is the one place where the space format's defaults live. Each field is
a small spec (:class:`Num`, :class:`Flag`, :class:`Enum`, :class:`Text`,
:class:`Shape`), and blocks are either records of named fields
(:class:`Rec`) or a ``kind`` and the fields of that kind (:class:`Kinds`).
The kinds of activation, pooling, normalization and filter init are the
names of the model tables in ``models``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.names import HEAD_POOLS, INIT_NAMES, PADDINGS

from .datasets import check_dataset_name

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()


def _g(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Num:
    """A number: ``integer`` or real, within [low, high] (``*_open``: strict)."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False  # null (and an infinite value) mean "no bound"
    default: Any = REQUIRED

    def describe(self) -> str:
        what = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            lo, hi = "(" if self.low_open else "[", ")" if self.high_open else "]"
            what += f" in {lo}{_g(self.low)}, {_g(self.high)}{hi}"
        elif self.low is not None:
            what += f" {'>' if self.low_open else '>='} {_g(self.low)}"
        elif self.high is not None:
            what += f" {'<' if self.high_open else '<='} {_g(self.high)}"
        return what + (" or null" if self.nullable else "")

    def admits(self, x: float, open_end: bool = False) -> tuple[bool, bool]:
        """Whether x (approached but not reached if ``open_end``) is >= low and <= high."""
        ok_low = self.low is None or x > self.low or (x == self.low and (open_end or not self.low_open))
        ok_high = self.high is None or x < self.high or (x == self.high and (open_end or not self.high_open))
        return ok_low, ok_high


@dataclass(frozen=True)
class Flag:
    default: Any = REQUIRED

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Enum:
    options: tuple[str, ...]
    default: Any = REQUIRED

    def describe(self) -> str:
        return "one of " + ", ".join(self.options)


@dataclass(frozen=True)
class Text:
    default: Any = REQUIRED
    check: Any = None  # callable(str) -> None or the problem

    def describe(self) -> str:
        return "a string"


@dataclass(frozen=True)
class Shape:
    """A list of ``length`` positive integers, or null."""

    length: int = 3
    default: Any = None

    def describe(self) -> str:
        return f"a list of {self.length} positive integers or null"


@dataclass(frozen=True)
class Rec:
    """A block of named fields; omitted fields take their defaults."""

    fields: dict[str, Any]

    def describe(self) -> str:
        return "a mapping with keys " + ", ".join(self.fields)


@dataclass(frozen=True)
class Kinds:
    """A block with a ``kind`` and that kind's fields; a bare string is shorthand for the kind."""

    kinds: dict[str, dict[str, Any]]
    default: str | None = None  # the kind used when the block is omitted

    def describe(self) -> str:
        return "a kind (" + ", ".join(self.kinds) + ") or a mapping with a kind"


def _positive(default: Any = REQUIRED) -> Num:
    return Num(low=0, low_open=True, default=default)


def _fraction(default: float = 0.0) -> Num:
    return Num(low=0, high=1, high_open=True, default=default)


def _int(low: int = 1, default: Any = REQUIRED) -> Num:
    return Num(integer=True, low=low, default=default)


# ---------------------------------------------------------------- architecture

FILTERS = Rec(
    {
        "count": _int(),  # filters in the bank
        "size": _int(),  # pixels (size x size)
        "stride": _int(default=1),  # pixels
        "init": Enum(INIT_NAMES, default="kaiming_normal"),
        "trainable": Flag(True),  # false: filters stay as drawn (screening)
    }
)

ACTIVATION = Kinds(
    {
        "identity": {},
        "clip": {"min": Num(nullable=True, default=None), "max": Num(nullable=True, default=None)},
        "relu": {},
        "leaky_relu": {"slope": Num(low=0, high=1, default=0.01)},
        "gelu": {},
        "silu": {},
        "tanh": {},
    },
    default="relu",
)

_WINDOW = {"size": _int(), "stride": _int(default=2)}  # pixels
POOL = Kinds(
    {
        "lp": {"order": Num(low=1), **_WINDOW},  # order p: 1 box sum, 2 L2, 10 ~ max
        "max": dict(_WINDOW),
        "avg": dict(_WINDOW),
        "none": {},
    },
    default="none",
)

_DIVISIVE = {
    "size": _int(),  # neighbourhood, pixels (size x size x all channels)
    "remove_mean": Flag(False),
    "stretch": _positive(1.0),
    "threshold": _positive(1.0),
}
NORM = Kinds({"divisive": dict(_DIVISIVE), "batch": {}, "none": {}}, default="none")

INPUT_NORM = Kinds(
    {"divisive": {**_DIVISIVE, "padding": Enum(PADDINGS, default="valid")}, "none": {}},
    default="none",
)

LAYER = Rec(
    {
        "filters": FILTERS,
        "activation": ACTIVATION,
        "pool": POOL,
        "norm": NORM,
        "dropout": _fraction(),  # probability, after the normalization
        "padding": Enum(PADDINGS, default="valid"),  # valid: the original family
    }
)

HEAD = Rec(
    {
        "pool": Enum(HEAD_POOLS, default="flatten"),  # flatten: every feature to the classifier
        "hidden": _int(low=0, default=0),  # units of a hidden layer; 0: none
        "dropout": _fraction(),
    }
)

DEPTH = _int()
ARCHITECTURE_KEYS = ("depth", "input_norm", "layers", "head")

# ---------------------------------------------------------------- training recipe

_BETAS = {"beta1": _fraction(0.9), "beta2": _fraction(0.999)}
OPTIMIZER = Kinds(
    {
        "sgd": {"momentum": _fraction(0.9), "nesterov": Flag(True)},
        "adam": dict(_BETAS),
        "adamw": dict(_BETAS),
    },
    default="adamw",
)

SCHEDULE = Kinds(
    {
        "constant": {},
        "cosine": {"warmup_epochs": Num(low=0, default=0.0)},  # epochs of linear warm-up
        "step": {"every": _int(default=10), "gamma": Num(low=0, high=1, low_open=True, default=0.1)},
        "onecycle": {"pct_start": Num(low=0, high=1, low_open=True, high_open=True, default=0.25)},
    },
    default="cosine",
)

AUGMENTATION = Rec(
    {
        "hflip": Flag(False),  # random horizontal flips
        "translate": _int(low=0, default=0),  # random shifts, pixels
        "cutout": _int(low=0, default=0),  # side of a random erased square, pixels
    }
)

TRAINING = Rec(
    {
        # train: backprop, every recipe setting below; screen: filters stay random, a ridge
        # read-out is fitted on the features (search/screen.py); the settings below are unused
        "mode": Enum(("train", "screen"), default="train"),
        "optimizer": OPTIMIZER,
        "lr": _positive(1e-3),  # peak learning rate
        "weight_decay": Num(low=0, default=5e-4),
        "epochs": _int(default=10),
        "batch_size": _int(default=128),  # images
        "schedule": SCHEDULE,
        "label_smoothing": _fraction(),
        "augmentation": AUGMENTATION,
    }
)

# ---------------------------------------------------------------- fixed settings


DATA = Rec(
    {
        "dataset": Text(default="fashion-mnist", check=check_dataset_name),
        "input_shape": Shape(default=None),  # (C, H, W) images are resized to; null: as stored
        "subset": Num(integer=True, low=1, nullable=True, default=None),  # training images used
        # held out of the (subset of the) training set to rank trials: a fraction in (0, 1) or a
        # count of images >= 1 (whole; checked when the data is loaded)
        "validation": Num(low=0, low_open=True, default=0.1),
        "split_seed": Num(integer=True, low=0, default=0),  # seeds subset and validation draws only
    }
)

CONSTRAINTS = Rec(
    {
        "max_params": Num(integer=True, low=1, nullable=True, default=None),
        "max_features": Num(integer=True, low=1, nullable=True, default=None),  # classifier inputs
        "max_macs": Num(integer=True, low=1, nullable=True, default=None),  # per image
    }
)

# ---------------------------------------------------------------- how the campaign searches

TPE = Rec(
    {
        "startup_trials": _int(low=0, default=20),  # random trials before TPE models the history
        "gamma": Num(low=0, high=1, low_open=True, high_open=True, default=0.25),  # share of "good" trials
        "candidates": _int(default=24),  # draws scored per suggestion (expected improvement)
    }
)

PRUNING = Rec(
    {
        "rule": Enum(("none", "asha", "median"), default="none"),  # early stopping of trials
        "min_epochs": _int(default=1),  # no trial stops before this epoch (asha: the first rung)
        "reduction": _int(low=2, default=3),  # asha: about 1 in this many trials goes on at each rung
        "min_trials": _int(default=5),  # median: trials that reached an epoch before it judges there
        # whatever the rule (none included): a trial whose val_acc after its first epoch is at most
        # this many times chance (1 / classes) stops there, pruned; 0: never
        "at_chance": Num(low=0, default=1.5),
    }
)

FINAL = Rec(
    {
        # the best `top` trials (by validation loss) are trained again once the search ends, on
        # training + validation images of the whole training set (data.subset does not apply),
        # tested once and logged as `final` runs; 0: no final stage (`archsearch retrain` later)
        "top": _int(low=0, default=0),
        # epochs of each final training; null: as many as fit in the time kept for it (with a
        # time budget), else twice the trial's
        "epochs": Num(integer=True, low=1, nullable=True, default=None),
        # the part of search.time_budget kept for the final stage when epochs is null
        "share": Num(low=0, high=1, low_open=True, high_open=True, default=0.5),
        # with top >= 2: the final models averaged (the mean of their class probabilities) are
        # tested once too and logged as an `ensemble` run, which status reports and export takes
        "ensemble": Flag(False),
    }
)

FIDELITY = Rec(
    {
        # multi-fidelity search (search/fidelity.py): rungs of lower fidelity (fewer epochs, then
        # fewer training images) below each trial's own; a configuration starts at the cheapest and
        # the best 1 in `reduction` at a rung go on to the next (successive halving); 0: off
        "rungs": _int(low=0, default=0),
        "reduction": _int(low=2, default=3),  # each rung costs 1/reduction of the next
        # a rung below the trained ones that screens every configuration (random filters, a ridge
        # read-out: search/screen.py) on the trials' training images: the best 1 in `reduction` of
        # the screened go on to be trained (a screening cascade)
        "screen": Flag(default=False),
    }
)

SEARCH = Rec(
    {
        "algo": Enum(("tpe", "random"), default="tpe"),
        "trials": _int(default=20),  # trials that end (ok, invalid or failed) before the campaign stops
        "seed": Num(integer=True, low=0, default=0),  # the suggestion sequence and every trial's seed
        "time_budget": Num(low=0, low_open=True, nullable=True, default=None),  # seconds; null: none
        "loss_threshold": Num(nullable=True, default=None),  # stop once a loss (1 - val_acc) is <= this
        # seconds one trial may take (training and validation); past it the trial stops and is
        # recorded as failed with the reason "timeout"; null: no limit
        "trial_timeout": Num(low=0, low_open=True, nullable=True, default=None),
        # seconds a trial is predicted to take (search/cost.py, from its MACs, images and epochs,
        # calibrated on the trials so far): a configuration predicted to take longer is not
        # started (recorded invalid); null: no limit
        "max_trial_seconds": Num(low=0, low_open=True, nullable=True, default=None),
        # the share of a GPU one trial needs: 0 (default) runs anywhere, 1 asks a Dask cluster for a
        # whole GPU resource per trial, 0.5 lets two trials share one (locally: --trials-per-gpu 2)
        "gpu": Num(low=0, high=1, default=0),
        "tpe": TPE,
        "pruning": PRUNING,
        "final": FINAL,
        "fidelity": FIDELITY,
    }
)

# search.points: configurations to evaluate first, each a mapping of `architecture` (complete, in
# the space file's notation, with layers as a list) and `training` (keys the space searches; the
# others take the space's values), with an optional `name`. Checked by search.space.
POINT_KEYS = ("name", "architecture", "training")

TOP_KEYS = ("name", "description", "data", "architecture", "training", "constraints", "search")

# Distribution keys and their arguments, in the order a file gives them.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "qloguniform": ("low", "high", "q"),
    "int": ("low", "high"),
    "normal": ("mu", "sigma"),
    "lognormal": ("mu", "sigma"),
    "qnormal": ("mu", "sigma", "q"),
    "qlognormal": ("mu", "sigma", "q"),
}

SECTIONS = {"data": DATA, "training": TRAINING, "constraints": CONSTRAINTS, "search": SEARCH}


def spec_at(key: str) -> Any:
    """The spec of a setting by its dotted key path (``search.tpe.gamma``): blocks of named
    fields only (the searched architecture is not reachable this way)."""
    section, *rest = key.split(".")
    spec = SECTIONS[section]
    for name in rest:
        spec = spec.fields[name]
    return spec
