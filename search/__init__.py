"""archsearch: search spaces, campaigns and tracking for the Pinto & Cox model family."""

from .compile import CompiledSpace, arch_hash, arch_name, flatten, to_json
from .errors import UserError
from .space import Space, SpaceError, load_space, parse_space

__all__ = [
    "CompiledSpace",
    "Space",
    "SpaceError",
    "UserError",
    "arch_hash",
    "arch_name",
    "flatten",
    "load_space",
    "parse_space",
    "to_json",
]
