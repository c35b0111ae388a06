"""Reading a campaign back: ``archsearch status`` and ``archsearch leaderboard``.

Everything comes from MLflow (the system of record); the leaderboard is a
pandas table whose architecture columns hold values (``32``, ``lp``,
``0.003``), never choice indices.
"""

from __future__ import annotations

import os
import socket
import time

import pandas as pd

from .progress import duration
from .tracking import ENDED, TAG, Campaign, TrialRecord

# Metric columns of the leaderboard, in order.
METRICS = ("val_acc", "best_val_acc", "val_loss", "params", "macs", "train_seconds", "images_per_second")


def status_text(campaign: Campaign, runs_flag: str = "") -> str:
    """Progress of a campaign: trials by outcome, best so far, elapsed, ETA."""
    run = campaign.run()
    tags = run.data.tags
    records = campaign.trials()
    latest = latest_attempts(records)
    ended = [r for r in latest if r.outcome in ENDED]
    by = {o: sum(1 for r in ended if r.outcome == o) for o in ENDED}
    running = [r for r in records if r.outcome == "running"]
    killed = sum(1 for r in records if r.outcome == "killed")
    total = int(tags.get(TAG + "trials", "0") or 0)
    status = run.info.status
    if status == "RUNNING" and not driver_alive(tags.get(TAG + "driver", "")):
        resume = f"archsearch run --resume {campaign.name}{runs_flag}"
        status = f"STOPPED (its driver is gone; continue with `{resume}`)"

    lines = [f"campaign {campaign.name}: {status}"]
    parts = [f"{by[o]} {o}" for o in ENDED if o != "pruned" or by[o]]
    lines.append(f"trials: {len(ended)} of {total} ended ({', '.join(parts)}); {len(running)} running")
    if killed:
        pending = {r.trial for r in records if r.outcome == "killed"} - {r.trial for r in ended}
        lines.append(
            f"killed attempts: {killed}"
            + (f", {len(pending)} to re-run first on resume" if pending else ", all re-run since")
        )
    for r in running:
        lines.append(
            f"  running: {r.name} (started {duration(time.time() - (r.start_time or time.time()))} ago)"
        )
    ok = [r for r in ended if r.outcome == "ok" and r.loss is not None]
    if ok:
        best = min(ok, key=lambda r: (r.loss, r.trial))
        lines.append(
            f"best: {best.name}  val_acc {best.metrics.get('val_acc', float('nan')):.4f}  "
            f"val_loss {best.metrics.get('val_loss', float('nan')):.4f}"
        )
    else:
        lines.append("best: none yet")
    durations = [r.end_time - r.start_time for r in ended if r.start_time and r.end_time]
    compute = sum(durations)
    start = run.info.start_time / 1000
    end = run.info.end_time / 1000 if run.info.end_time and run.info.status != "RUNNING" else time.time()
    lines.append(f"elapsed: {duration(end - start)} since the start; {duration(compute)} in trials")
    remaining = max(0, total - len(ended))
    if remaining and durations:
        lines.append(f"ETA: {duration(compute / len(durations) * remaining)} for {remaining} more trials")
    failures = [r for r in ended if r.outcome != "ok"][-3:]
    for r in failures:
        lines.append(f"  {r.outcome}: t{r.trial:03d} {r.reason}")
    return "\n".join(lines)


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


def latest_attempts(records: list[TrialRecord]) -> list[TrialRecord]:
    """One record per trial number: the last attempt."""
    latest: dict[int, TrialRecord] = {}
    for r in records:
        latest[r.trial] = r
    return [latest[t] for t in sorted(latest)]


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def leaderboard(
    records: list[TrialRecord], top: int | None = 10, include_failed: bool = False
) -> pd.DataFrame:
    """The best of a campaign's trials (highest final validation accuracy first) with their config values."""
    rows = []
    for r in latest_attempts(records):
        if r.outcome != "ok" and not (include_failed and r.outcome in ENDED):
            continue
        row: dict[str, object] = {"trial": r.trial, "outcome": r.outcome, "name": r.name.partition(" ")[2]}
        row.update({m: r.metrics.get(m) for m in METRICS})
        row.update({k: _value(v) for k, v in sorted(r.params.items())})
        row["source"] = r.source
        row["reason"] = r.reason
        row["run_id"] = r.run_id
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["trial", "outcome", "name", *METRICS])
    df = pd.DataFrame(rows)
    head = ["trial", "outcome", "name", *METRICS]
    params = sorted(c for c in df.columns if c not in (*head, "source", "reason", "run_id"))
    df = df[[*head, *params, "source", "reason", "run_id"]]  # deeper nets' layers sorted in, not appended
    df = df.sort_values(["val_acc", "trial"], ascending=[False, True], na_position="last", kind="stable")
    if top is not None:
        df = df.head(top)
    for col in ("params", "macs"):
        df[col] = df[col].astype("Int64")
    return df.reset_index(drop=True)


def varying(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard's key columns and the config columns whose values differ between rows."""
    keep = ["trial", "name", *METRICS]
    fixed = set(keep) | {"outcome", "source", "reason", "run_id"}
    # a setting only some rows have (a layer of the deeper nets) differs between the rows that
    # have it and those that do not: a missing value is a value here
    params = [c for c in df.columns if c not in fixed and df[c].astype(str).nunique(dropna=False) > 1]
    cols = [c for c in keep if c in df.columns] + params
    if "source" in df.columns and df["source"].notna().any():
        cols.append("source")  # given first: --warm-start, --points
    if (df["outcome"] != "ok").any():
        cols += ["outcome", "reason"]
    view = df[cols].copy()
    for col, digits in (("train_seconds", 2), ("images_per_second", 0)):
        view[col] = view[col].round(digits)
    for col in view.columns:
        values = view[col].dropna()
        if pd.api.types.is_float_dtype(view[col]) and len(values) and (values == values.round()).all():
            view[col] = view[col].astype("Int64")  # 16, not 16.0, where a missing layer made floats
    return view.astype(object).where(view.notna(), "-")  # a layer a trial does not have: "-"
