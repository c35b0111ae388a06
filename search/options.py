"""What the command line's commands share: the :class:`Command` they are, the options several of
them take (declared once, as objects, their defaults taken from the modules that own them), and
the types of values those options read.

The commands themselves are in ``search.cli`` (``archsearch run``, ``status``, ...) and in
``search.bench`` (one per benchmark, ``archsearch bench NAME``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .settings import PATIENCE, RUNS

# ---------------------------------------------------------------- value types


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def shape(text: str) -> tuple[int, int, int]:
    """CxHxW, such as 1x28x28."""
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CxHxW such as 1x28x28, got {text!r}") from None
    if min(c, h, w) < 1:
        raise argparse.ArgumentTypeError(f"every size must be >= 1, got {text!r}")
    return c, h, w


def some_of(allowed: Sequence[str]) -> Any:
    """A type reading a comma-separated list of some of ``allowed`` (``campaign,export``)."""

    def read(text: str) -> list[str]:
        chosen = [t.strip() for t in text.split(",") if t.strip()]
        if not chosen or any(t not in allowed for t in chosen):
            raise argparse.ArgumentTypeError(f"expected some of {', '.join(allowed)}, got {text!r}")
        return chosen

    return read


def data_dir(args: argparse.Namespace) -> Path | None:
    """--data-dir, where a command reads the dataset's files (None: the cache, the system copy)."""
    return Path(args.data_dir) if getattr(args, "data_dir", None) else None


# ---------------------------------------------------------------- options several commands take


@dataclass(frozen=True)
class Option:
    """An option declared once and added to every command that takes it."""

    flags: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def add(self, parser: argparse.ArgumentParser | Any, **changes: Any) -> None:
        parser.add_argument(*self.flags, **{**self.settings, **changes})

    def changed(self, **changes: Any) -> Option:
        """The same option with some settings changed (its help, say)."""
        return Option(self.flags, {**self.settings, **changes})


DEBUG = Option(("--debug",), {"action": "store_true", "help": "show tracebacks of errors"})
RUNS_DIR = Option(
    ("--runs",),
    {"default": str(RUNS), "help": f"where the default MLflow store and data cache live (default {RUNS})"},
)
TRACKING_URI = Option(
    ("--tracking-uri",),
    {"help": "an MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else SQLite in RUNS/mlflow.db)"},
)
TRACKING_PATIENCE = Option(
    ("--tracking-patience",),
    {
        "type": positive_float,
        "default": PATIENCE,
        "metavar": "SECONDS",
        "help": "how long the tracking store may stay unreachable, retried with back-off, before the "
        f"campaign stops (default {PATIENCE:g})",
    },
)
DATA_DIR = Option(
    ("--data-dir",), {"help": "a folder holding the dataset's files (looked at before the cache)"}
)
DEVICE = Option(
    ("--device",), {"choices": ["auto", "cpu", "cuda"], "default": "auto", "help": "where to train"}
)
STORE = (RUNS_DIR, TRACKING_URI)  # every command that reads or writes campaigns


# ---------------------------------------------------------------- a command


class Command:
    """One command: its name, help and options (the shared ones in ``options``, its own in
    :meth:`add_arguments`), and what it does (:meth:`run`, which returns the exit code)."""

    name: ClassVar[str]
    help: ClassVar[str]
    description: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """This command's own options."""

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def add_to(self, commands: Any) -> argparse.ArgumentParser:
        """This command as a sub-command of ``commands`` (what ``add_subparsers`` returned)."""
        parser = commands.add_parser(self.name, help=self.help, description=self.description)
        DEBUG.add(parser)
        for option in self.options:
            option.add(parser)
        self.add_arguments(parser)
        parser.set_defaults(command=self)
        return parser
