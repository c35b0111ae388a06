"""The errors users see as one line (``archsearch: error: ...``), exit code 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad input, a missing file, an impossible request."""


class TrackingError(UserError):
    """The tracking store cannot be used as asked (unknown campaign, unreachable, busy)."""


def error_line(e: BaseException, limit: int = 500, *, typed: bool = True) -> str:
    """An exception as one line of at most ``limit`` characters: ``ValueError: what went wrong``
    (``typed``), else its message alone (its type's name when it has none)."""
    if typed:
        return f"{type(e).__name__}: {e}".splitlines()[0][:limit]
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]
