"""What ``archsearch run`` shows while it works.

On a terminal: one line per ended trial, and a live status line below them
(trial i/N, epoch, best so far, ETA) redrawn in place. When the output is not
a terminal (CI logs, files), only the per-trial lines are written, so logs
stay readable. ``--quiet`` shows nothing but errors and the final summary.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from .compile import arch_name


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


class Progress:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty()
        self.total = 0
        self.ended = 0
        self.best: dict | None = None
        self.trial_durations: list[float] = []
        self._trial: int | None = None
        self._name = ""
        self._t0 = 0.0
        self._status = ""

    # -- output
    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.live:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        if self.live and self._status:
            self.stream.write(self._status)
        self.stream.flush()

    def _redraw(self, status: str) -> None:
        self._status = status
        if self.live:
            self.stream.write("\r\033[K" + status)
            self.stream.flush()

    def eta(self) -> float | None:
        if not self.trial_durations:
            return None
        return sum(self.trial_durations) / len(self.trial_durations) * max(0, self.total - self.ended)

    def _best_text(self) -> str:
        if not self.best:
            return "best: none yet"
        return f"best val_acc {self.best['val_acc']:.4f} (t{self.best['trial']:03d})"

    # -- events from the driver
    def start(self, ended: int, total: int, best: dict | None) -> None:
        self.ended, self.total, self.best = ended, total, best
        if ended:
            self._line(f"resuming: {ended} of {total} trials already ended; {self._best_text()}")

    def trial_start(self, trial: int, config: dict) -> None:
        self._trial, self._name, self._t0 = trial, arch_name(config["architecture"]), time.monotonic()
        self._redraw(f"trial {self.ended + 1}/{self.total} t{trial:03d} {self._name} | {self._best_text()}")

    def epoch(self, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        eta = self.eta()
        self._redraw(
            f"trial {self.ended + 1}/{self.total} t{self._trial:03d} epoch {epoch}/{epochs} "
            f"val_acc {metrics['val_acc']:.4f} | {self._best_text()}"
            + (f" | ETA {duration(eta)}" if eta is not None else "")
        )

    def trial_end(self, trial: int, result: Any, is_best: bool, best: dict | None) -> None:
        took = time.monotonic() - self._t0
        self.ended += 1
        self.best = best
        if result.outcome == "ok":
            self.trial_durations.append(took)
            what = f"val_acc {result.val_acc:.4f}" + ("  * best" if is_best else "")
        else:
            what = f"{result.outcome}: {result.reason}"
        self._status = ""
        self._line(f"t{trial:03d} [{self.ended}/{self.total}] {self._name}  {duration(took)}  {what}")

    def finish(self, text: str) -> None:
        if self.live:
            self.stream.write("\r\033[K")
        print(text, file=self.stream, flush=True)
