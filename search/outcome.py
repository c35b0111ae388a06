"""How a trial ended, or that it has not (:class:`Outcome`), and how outcomes are counted: what
every stage that reads trials back shares, without the trial's own machinery (torch)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Outcome(StrEnum):
    """How a trial ended, or that it has not: its run's ``archsearch.outcome`` tag."""

    OK = "ok"  # trained (or screened) and validated: a loss TPE learns from
    PRUNED = "pruned"  # stopped early by the pruning rule: its loss at that epoch is learned from too
    INVALID = "invalid"  # refused by the shape pass (or a budget) before any training
    FAILED = "failed"  # out of memory, a NaN loss, an exception, a timeout: the reason is kept
    KILLED = "killed"  # interrupted (Ctrl-C, a lost worker, a driver that died): run again on resume
    RUNNING = "running"  # not over (or its driver died unseen: a resume marks it killed)

    @property
    def ended(self) -> bool:
        """Over for good: never run again."""
        return self in ENDED

    @property
    def learned(self) -> bool:
        """Its loss is told to TPE (the others are told as failures)."""
        return self in LEARNED


ENDED = (Outcome.OK, Outcome.PRUNED, Outcome.INVALID, Outcome.FAILED)
LEARNED = (Outcome.OK, Outcome.PRUNED)


def outcome_counts(outcomes: Iterable[str]) -> dict[Outcome, int]:
    """How many trials ended each way, in the order of :class:`Outcome` (those seen only)."""
    seen = [Outcome(o) for o in outcomes]
    return {o: seen.count(o) for o in Outcome if o in seen}


def counts_text(counts: dict[Outcome, int], always: Iterable[Outcome] = ()) -> str:
    """``3 ok, 1 pruned, 0 failed``: the outcomes counted, and those in ``always`` even at 0."""
    shown = set(always) | {o for o, n in counts.items() if n}
    return ", ".join(f"{counts.get(o, 0)} {o}" for o in Outcome if o in shown)
