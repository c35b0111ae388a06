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
from .outcome import Outcome
from .text import duration


class Progress:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None, parallel: int = 1):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty()
        self.parallel = max(1, parallel)  # trials at once, for the ETA
        self.total = 0
        self.ended = 0
        self.best: dict | None = None
        self.trial_durations: list[float] = []
        self.running: dict[int, tuple[str, float]] = {}  # trial -> (name, start)
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
        mean = sum(self.trial_durations) / len(self.trial_durations)
        return mean * max(0, self.total - self.ended) / self.parallel

    def _best_text(self) -> str:
        if not self.best:
            return "best: none yet"
        return f"best val_acc {self.best['val_acc']:.4f} (t{self.best['trial']:03d})"

    def _head(self, trial: int) -> str:
        """``trial 3/20 t002``, or ``2/20 ended, 3 running | t004`` when several trials run."""
        if len(self.running) > 1:
            return f"{self.ended}/{self.total} ended, {len(self.running)} running | t{trial:03d}"
        return f"trial {self.ended + 1}/{self.total} t{trial:03d}"

    # -- events from the driver
    def start(self, ended: int, total: int, best: dict | None) -> None:
        self.ended, self.total, self.best = ended, total, best
        if ended:
            self._line(f"resuming: {ended} of {total} trials already ended; {self._best_text()}")

    def trial_start(self, trial: int, config: dict, rung: Any = None) -> None:
        """A trial starts (at ``rung``, a :class:`search.fidelity.Rung`, in a multi-fidelity campaign)."""
        name = arch_name(config["architecture"])
        if rung is not None:
            name += f" @ rung {rung.index} ({rung.text()})"
        self.running[trial] = (name, time.monotonic())
        self._redraw(f"{self._head(trial)} {self.running[trial][0]} | {self._best_text()}")

    def epoch(self, trial: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        eta = self.eta()
        acc = f" val_acc {metrics['val_acc']:.4f}" if "val_acc" in metrics else ""
        self._redraw(
            f"{self._head(trial)} epoch {epoch}/{epochs}{acc} | {self._best_text()}"
            + (f" | ETA {duration(eta)}" if eta is not None else "")
        )

    def note(self, text: str) -> None:
        """A line about the campaign as a whole (why no more trials start, say)."""
        self._line(text)

    def trial_lost(self, trial: int, reason: str) -> None:
        name, _ = self.running.get(trial, ("", 0.0))
        self._line(f"t{trial:03d} {name}  lost: {reason}; running it again")

    def trial_end(self, trial: int, result: Any, is_best: bool, best: dict | None, rung: Any = None) -> None:
        """A trial ends (a rung of it, in a multi-fidelity campaign: a promotion is not counted
        again, nor timed for the ETA)."""
        name, t0 = self.running.pop(trial, ("", time.monotonic()))
        took = time.monotonic() - t0
        again = rung is not None and rung.index > 0
        self.ended += not again
        self.best = best
        if result.outcome == Outcome.OK:
            if not again:
                self.trial_durations.append(took)
            what = f"val_acc {result.val_acc:.4f}" + ("  * best" if is_best else "")
        else:
            what = f"{result.outcome}: {result.reason}"
        self._status = ""
        self._line(f"t{trial:03d} [{self.ended}/{self.total}] {name}  {duration(took)}  {what}")

    def finish(self, text: str) -> None:
        if self.live:
            self.stream.write("\r\033[K")
        print(text, file=self.stream, flush=True)
