"""Reading a campaign back: ``archsearch status`` and ``archsearch leaderboard``.

Everything comes from MLflow (the system of record); the leaderboard is a
pandas table whose architecture columns hold values (``32``, ``lp``,
``0.003``), never choice indices.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from .cost import accuracy_line
from .outcome import ENDED, Outcome, counts_text, outcome_counts
from .text import duration, plural
from .tracking import TAG, Campaign, TrialRecord

# Metric columns of the leaderboard, in order.
METRICS = ("val_acc", "best_val_acc", "val_loss", "params", "macs", "train_seconds", "images_per_second")
# The leaderboard's columns that are not settings of the trials.
NOT_PARAMS = ("trial", "outcome", "name", "rung", *METRICS, "source", "reason", "run_id")
# The outcomes a campaign's counts always show (pruned too when there are some).
SHOWN = (Outcome.OK, Outcome.INVALID, Outcome.FAILED)


# ---------------------------------------------------------------- the rules every reader shares


def latest_attempts(records: list[TrialRecord]) -> list[TrialRecord]:
    """One record per trial number: the last attempt."""
    latest: dict[int, TrialRecord] = {}
    for r in records:
        latest[r.trial] = r
    return [latest[t] for t in sorted(latest)]


def ranked(records: list[TrialRecord]) -> list[TrialRecord]:
    """The finished trials (the last attempt of each, ok, with a loss), the best first: the
    highest multi-fidelity rung reached (a trial that trained at a higher fidelity ranks above
    one that did not; one rung without multi-fidelity), then the lowest loss (1 - final val_acc),
    then the lowest trial number. Status, export, retrain, the final stage and warm start all
    take "the best" from here."""
    ok = [r for r in latest_attempts(records) if r.outcome == Outcome.OK and r.loss is not None]
    return sorted(ok, key=lambda r: (-r.metrics.get("rung", 0), r.loss, r.trial))


def best(records: list[TrialRecord]) -> TrialRecord | None:
    """The best finished trial (see :func:`ranked`), or None."""
    return next(iter(ranked(records)), None)


def run_status(run: Any) -> str:
    """A campaign run's status, STOPPED for a RUNNING run whose driver is gone."""
    status = run.info.status
    if status == "RUNNING" and not driver_alive(run.data.tags.get(TAG + "driver", "")):
        return "STOPPED"
    return status


def driver_alive(owner: str) -> bool:
    """Whether the driver named by a campaign's ``host:pid`` tag may still run (unknown: yes)."""
    host, _, pid = owner.rpartition(":")
    if not owner or not pid.isdigit():
        return False
    if host != socket.gethostname():
        return True  # another machine's driver: its heartbeat tells (archsearch.heartbeat)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def varying_params(df: pd.DataFrame, missing_differs: bool = True) -> list[str]:
    """The settings (the columns but NOT_PARAMS) whose values differ between the rows. With
    ``missing_differs``, a setting only some rows have (a layer of the deeper nets) differs
    between the rows that have it and those that do not; else only the values given count."""
    out = []
    for col in df.columns:
        if col in NOT_PARAMS:
            continue
        values = df[col] if missing_differs else df[col].dropna()
        if values.astype(str).nunique(dropna=False) > 1:
            out.append(col)
    return out


# ---------------------------------------------------------------- status


def status_text(campaign: Campaign, runs_flag: str = "") -> str:
    """Progress of a campaign: trials by outcome, best so far, elapsed, ETA."""
    run = campaign.run()
    tags = run.data.tags
    records = campaign.trials(params=False)
    ended = [r for r in latest_attempts(records) if r.outcome.ended]
    running = [r for r in records if r.outcome == Outcome.RUNNING]
    killed = sum(1 for r in records if r.outcome == Outcome.KILLED)
    total = int(tags.get(TAG + "trials", "0") or 0)
    status = run_status(run)
    if status == "STOPPED":
        resume = f"archsearch run --resume {campaign.name}{runs_flag}"
        status = f"STOPPED (its driver is gone; continue with `{resume}`)"

    lines = [f"campaign {campaign.name}: {status}"]
    counts = counts_text(outcome_counts(r.outcome for r in ended), always=SHOWN)
    lines.append(f"trials: {len(ended)} of {total} ended ({counts}); {len(running)} running")
    if killed:
        pending = {r.trial for r in records if r.outcome == Outcome.KILLED} - {r.trial for r in ended}
        lines.append(
            f"killed attempts: {killed}"
            + (f", {len(pending)} to re-run first on resume" if pending else ", all re-run since")
        )
    for r in running:
        lines.append(
            f"  running: {r.name} (started {duration(time.time() - (r.start_time or time.time()))} ago)"
        )
    rungs = rungs_line(ended)
    if rungs:
        lines.append(rungs)
    top = best(records)
    if top is not None:
        lines.append(
            f"best: {top.name}  val_acc {top.metrics.get('val_acc', float('nan')):.4f}  "
            f"val_loss {top.metrics.get('val_loss', float('nan')):.4f}"
            + (f"  at rung {top.metrics['rung']:.0f}" if "rung" in top.metrics else "")
        )
    else:
        lines.append("best: none yet")
    for f in (r for r in campaign.trials("final") if r.outcome == Outcome.OK):
        m = f.metrics
        lines.append(
            f"final: {f.name.removeprefix('final ')}  test_acc {m.get('test_acc', float('nan')):.4f} "
            f"({plural(m.get('epochs_done', 0), 'epoch')} on training + validation images)"
        )
    for e in [r for r in campaign.trials("ensemble") if r.outcome == Outcome.OK][-1:]:  # the latest
        lines.append(
            f"{e.name}: test_acc {e.metrics.get('test_acc', float('nan')):.4f} (the mean of "
            f"{plural(e.params.get('members', '').count(',') + 1, 'final model')}' probabilities)"
        )
    predicted = accuracy_line(
        [
            (r.metrics["predicted_seconds"], r.metrics.get("train_seconds", 0.0))
            for r in ended
            if r.outcome == Outcome.OK and "predicted_seconds" in r.metrics  # pruned ones stopped early
        ]
    )
    if predicted:
        lines.append(predicted)
    durations = [r.end_time - r.start_time for r in ended if r.start_time and r.end_time]
    compute = sum(durations)
    start = run.info.start_time / 1000
    end = run.info.end_time / 1000 if run.info.end_time and run.info.status != "RUNNING" else time.time()
    lines.append(f"elapsed: {duration(end - start)} since the start; {duration(compute)} in trials")
    remaining = max(0, total - len(ended))
    if remaining and durations and run.info.status == "RUNNING":
        lines.append(f"ETA: {duration(compute / len(durations) * remaining)} for {remaining} more trials")
    failures = [r for r in ended if r.outcome != Outcome.OK][-3:]
    for r in failures:
        lines.append(f"  {r.outcome}: t{r.trial:03d} {r.reason}")
    return "\n".join(lines)


def rungs_line(ended: list[TrialRecord]) -> str | None:
    """How many trials ended each multi-fidelity rung, at what fidelity (None: one rung)."""
    reached = [r for r in ended if "rung" in r.metrics]
    if not reached:
        return None
    parts = []
    for k in range(int(max(r.metrics["rung"] for r in reached)) + 1):
        here = [r for r in reached if r.metrics["rung"] >= k]
        at = next((r.metrics for r in here if r.metrics["rung"] == k and "rung_images" in r.metrics), None)
        fidelity = f" ({at['rung_images']:,.0f} images x {at['rung_epochs']:.0f})" if at else ""
        parts.append(f"{len(here)} at rung {k}{fidelity}")
    return "rungs (trials that ended each; images x epochs): " + ", ".join(parts)


# ---------------------------------------------------------------- leaderboard


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def leaderboard(
    records: list[TrialRecord],
    top: int | None = None,
    include_failed: bool = False,
    with_params: Callable[[list[TrialRecord]], list[TrialRecord]] | None = None,
) -> pd.DataFrame:
    """A campaign's trials (highest final validation accuracy first, the best ``top``; None: all)
    with their config values; in a multi-fidelity campaign, the highest rung first, with a
    ``rung`` column. ``with_params``: the rows shown with their params, for records read
    without (``Campaign.with_params``)."""
    shown = [
        r
        for r in latest_attempts(records)
        if r.outcome == Outcome.OK or (include_failed and r.outcome in ENDED)
    ]
    shown = sorted(shown, key=_board_order)[:top]  # only the rows shown are built: fast at 10,000
    if with_params is not None:
        shown = with_params(shown)
    rows = []
    for r in shown:
        row: dict[str, object] = {
            "trial": r.trial,
            "outcome": r.outcome.value,
            "name": r.name.partition(" ")[2],
        }
        row["rung"] = r.metrics.get("rung")
        row.update({m: r.metrics.get(m) for m in METRICS})
        row.update({k: _value(v) for k, v in sorted(r.params.items())})
        row["source"] = r.source
        row["reason"] = r.reason
        row["run_id"] = r.run_id
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["trial", "outcome", "name", *METRICS])
    df = pd.DataFrame(rows)
    rungs = df["rung"].notna().any()
    head = ["trial", "outcome", "name", *(["rung"] if rungs else []), *METRICS]
    params = sorted(c for c in df.columns if c not in NOT_PARAMS)
    df = df[[*head, *params, "source", "reason", "run_id"]]  # deeper nets' layers sorted in, not appended
    if rungs:
        df["rung"] = df["rung"].astype("Int64")
    for col in ("params", "macs"):
        df[col] = df[col].astype("Int64")
    return df.reset_index(drop=True)


def campaign_board(campaign: Campaign, top: int | None, include_failed: bool = False) -> pd.DataFrame:
    """A campaign's :func:`leaderboard`, read as ``archsearch leaderboard`` reads it: its trials
    without their params, then the params of the rows shown."""
    records = campaign.trials(params=False)
    return leaderboard(records, top, include_failed, with_params=campaign.with_params)


def best_filter(records: list[TrialRecord], top: int = 20) -> str | None:
    """An MLflow search filter that holds a campaign's ``top`` trials of the highest final
    val_acc and any better one to come (None: no trial has one yet). Sorted by val_acc, it is the
    UI's view of the best trials: a narrow filter keeps MLflow's sort by a metric fast, which over
    every trial of a large campaign is not (6 s at 10,000 trials on SQLite)."""
    accs = [r.metrics.get("val_acc") for r in records]
    accs = sorted((a for a in accs if a is not None and math.isfinite(a)), reverse=True)[:top]
    if not accs:
        return None
    floor = math.floor(accs[-1] * 1e6) / 1e6  # written with 6 decimals: never above the last kept
    return f"tags.`{TAG}kind` = 'trial' and metrics.val_acc >= {floor:.6f}"


def _board_order(r: TrialRecord) -> tuple:
    """The leaderboard's order: the highest rung first, then the highest final val_acc, then the
    lowest trial number; a trial without a rung or a val_acc after those with one."""

    def missing(v: float | None) -> bool:
        return v is None or v != v  # None or NaN

    rung, acc = r.metrics.get("rung"), r.metrics.get("val_acc")
    return (missing(rung), -(rung or 0), missing(acc), -(acc or 0), r.trial)


def varying(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard's key columns and the config columns whose values differ between rows."""
    keep = ["trial", "name", "rung", *METRICS]
    cols = [c for c in keep if c in df.columns] + varying_params(df)
    if "source" in df.columns and df["source"].notna().any():
        cols.append("source")  # given first: --warm-start, --points
    if (df["outcome"] != Outcome.OK).any():
        cols += ["outcome", "reason"]
    view = df[cols].copy()
    for col, digits in (("train_seconds", 2), ("images_per_second", 0)):
        view[col] = pd.to_numeric(view[col]).round(digits)  # a column of None (never measured): NaN
    for col in view.columns:
        values = view[col].dropna()
        if pd.api.types.is_float_dtype(view[col]) and len(values) and (values == values.round()).all():
            view[col] = view[col].astype("Int64")  # 16, not 16.0, where a missing layer made floats
    return view.astype(object).where(view.notna(), "-")  # a layer a trial does not have: "-"
