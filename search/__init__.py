"""archsearch: search spaces, campaigns and tracking for the Pinto & Cox model family.

The names below are imported when first used, so that a worker process, which needs only
the evaluator, does not pay for hyperopt and the space compiler when it starts.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CompiledSpace": "compile",
    "arch_hash": "compile",
    "arch_name": "compile",
    "flatten": "compile",
    "to_json": "compile",
    "UserError": "errors",
    "Space": "space",
    "SpaceError": "space",
    "load_space": "space",
    "parse_space": "space",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
