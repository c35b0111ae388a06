"""How archsearch writes figures for people: durations, large numbers, aligned tables."""

from __future__ import annotations

from collections.abc import Sequence


def duration(seconds: float | None) -> str:
    """``4.2s``, ``42s``, ``3m05s``, ``2h07m``."""
    if seconds is None:
        return "?"
    if seconds < 9.95:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def plural(n: float, noun: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{n:g} {noun}{'s' * (n != 1)}"


def si(v: float) -> str:
    """A count with an SI suffix and 3 significant digits: ``4.21M`` MACs, ``56.3k`` params."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def table(rows: Sequence[Sequence[object]], align: str = "lr", indent: str = "  ") -> str:
    """Rows of cells as aligned text, one line each. ``align`` gives each column's side, ``l``
    (names) or ``r`` (figures), its last letter for the columns past it: by default the first
    column flush left, the others flush right. A row may have fewer cells than the widest."""
    cells = [[str(c) for c in row] for row in rows]
    width = max(map(len, cells), default=0)
    widths = [max(len(r[i]) for r in cells if len(r) > i) for i in range(width)]
    sides = (align + align[-1] * width)[:width]
    lines = []
    for row in cells:
        text = "  ".join(
            c.ljust(widths[i]) if sides[i] == "l" else c.rjust(widths[i]) for i, c in enumerate(row)
        )
        lines.append(indent + text.rstrip())
    return "\n".join(lines)
