"""The Pinto & Cox model family in torch: functional ops, modules, and the builder.

The names below are imported when first used, so that what needs only the names and limits of
``models.names`` (checking a space file, reading a campaign back) does not import torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .builder import InvalidArchitecture, Plan, SLMNet, build_model, plan_model
    from .ensemble import Ensemble
    from .layers import ACTIVATIONS, INITS, NORMS, POOLS
    from .names import Limits

_WHERE = {
    "ACTIVATIONS": "layers",
    "Ensemble": "ensemble",
    "INITS": "layers",
    "NORMS": "layers",
    "POOLS": "layers",
    "InvalidArchitecture": "builder",
    "Plan": "builder",
    "SLMNet": "builder",
    "build_model": "builder",
    "plan_model": "builder",
    "Limits": "names",
}

__all__ = [
    "ACTIVATIONS",
    "Ensemble",
    "INITS",
    "NORMS",
    "POOLS",
    "InvalidArchitecture",
    "Limits",
    "Plan",
    "SLMNet",
    "build_model",
    "plan_model",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # once
    return value
