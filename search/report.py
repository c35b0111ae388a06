"""Plots and the HTML report of campaigns: ``archsearch report`` and the campaign run's ``plots/``.

Three figures, drawn with matplotlib's Agg renderer (no display, no pyplot state):

- ``best_so_far.png``: the best validation accuracy so far against the trial number, one
  curve per campaign (a TPE and a random campaign side by side), each trial's own accuracy
  as faint dots and failed or invalid trials as crosses along the bottom;
- ``params.png``: one small panel per searched parameter that varies across the finished
  trials, its value against the validation accuracy (numbers as a scatter, choices as a
  box with the trials as dots), the best trial as a star;
- ``pareto.png``: validation accuracy against parameters and against MACs per image (log
  scale), with the Pareto front (the best accuracy for at most so many parameters / MACs)
  as a step line and its trials labelled with their numbers.

``write_report`` puts them in a folder with ``report.html`` (a header per campaign, the
images by relative path, the top of the leaderboard as a table; no JavaScript, nothing
fetched from the network). ``log_plots`` renders the figures of one campaign and logs them
as artifacts of its campaign run under ``plots/``; it never raises (a plot must never
break a campaign). Everything is read from MLflow: one read of the trials per campaign.
"""

from __future__ import annotations

import html
import logging
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .errors import UserError
from .outcome import Outcome, counts_text, outcome_counts
from .results import SHOWN, latest_attempts, leaderboard, run_status, varying, varying_params
from .text import si
from .tracking import TAG, Campaign, TrialRecord

log = logging.getLogger(__name__)

TOP = 20  # leaderboard rows in the report
DPI = 90
NO_TRIALS = "no finished trials yet"
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


# ---------------------------------------------------------------- what a report shows of a campaign


@dataclass
class Snapshot:
    """One campaign as the plots and the report show it, read from MLflow once."""

    name: str
    status: str  # FINISHED, RUNNING, KILLED, FAILED, or STOPPED (a RUNNING run whose driver is gone)
    params: dict[str, str]  # the campaign run's params: search.algo, search.seed, data.dataset, ...
    planned: int  # trials asked for
    ended: list[TrialRecord]  # the last attempt of each ended trial (ok, pruned, invalid, failed), by number
    running: int
    board: pd.DataFrame  # every ok trial, best first (results.leaderboard)

    @property
    def algo(self) -> str:
        return self.params.get("search.algo", "?")

    @property
    def seed(self) -> str:
        return self.params.get("search.seed", "?")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.algo}, seed {self.seed})"

    @property
    def best(self) -> pd.Series | None:
        return None if self.board.empty else self.board.iloc[0]


def snapshot(campaign: Campaign) -> Snapshot:
    """Read a campaign for plotting: its run, and its trials once."""
    run = campaign.run()
    records = campaign.trials()
    return Snapshot(
        name=campaign.name,
        status=run_status(run),
        params=dict(run.data.params),
        planned=int(run.data.tags.get(TAG + "trials", "0") or 0),
        ended=[r for r in latest_attempts(records) if r.outcome.ended],
        running=sum(1 for r in records if r.outcome == Outcome.RUNNING),
        board=leaderboard(records),
    )


# ---------------------------------------------------------------- figures


def _figure(width: float, height: float) -> Figure:
    """A figure of its own (no pyplot, no global state), drawn by Agg; margins set by hand:
    an automatic layout costs more than the drawing."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _best_curve(snap: Snapshot) -> tuple[list[int], list[float], list[int], list[float], list[int]]:
    """Trial numbers and best-so-far accuracy (from the first ok trial), each ok trial's own
    accuracy, and the numbers of invalid or failed trials."""
    xs, best, ok_x, ok_y, bad = [], [], [], [], []
    current = None
    for r in snap.ended:
        acc = r.metrics.get("val_acc") if r.outcome == Outcome.OK else None
        if acc is not None and np.isfinite(acc):
            ok_x.append(r.trial)
            ok_y.append(acc)
            current = acc if current is None else max(current, acc)
        elif r.outcome != Outcome.OK:
            bad.append(r.trial)
        if current is not None:
            xs.append(r.trial)
            best.append(current)
    return xs, best, ok_x, ok_y, bad


def plot_best_so_far(snaps: Sequence[Snapshot], path: Path) -> Path | None:
    """Best validation accuracy so far against the trial number, one curve per campaign
    (None when no campaign has a finished trial)."""
    curves = [(s, _best_curve(s)) for s in snaps]
    if not any(c[0] for _, c in curves):
        return None
    fig = _figure(7.5, 4.2)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.12, top=0.92)
    ax = fig.add_subplot()
    for i, (snap, (xs, best, ok_x, ok_y, bad)) in enumerate(curves):
        color = _COLORS[i % len(_COLORS)]
        if not xs:
            ax.plot([], [], color=color, label=f"{snap.label}: {NO_TRIALS}")
            continue
        best_now = f"{best[-1]:.4f}"
        ax.step(xs, best, where="post", color=color, lw=2, label=f"{snap.label}: best {best_now}")
        ax.scatter(ok_x, ok_y, s=14, color=color, alpha=0.35, lw=0)
        if bad:
            ax.scatter(bad, [0.01] * len(bad), marker="x", s=16, color=color, alpha=0.6,
                       transform=ax.get_xaxis_transform())  # fmt: skip
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    title = "best validation accuracy so far (dots: each trial; x: invalid or failed)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _category_key(v: Any) -> tuple:
    return (0, float(v), "") if _is_number(v) else (1, 0.0, str(v))


def _num(v: float) -> str:
    return f"{v:.3g}"


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    """Two to four round values inside [lo, hi] (the ends when there are no round ones)."""
    locator = LogLocator(numticks=4) if log else MaxNLocator(3)
    ticks = [t for t in locator.tick_values(lo, hi) if lo <= t <= hi]
    return ticks if len(ticks) >= 2 else [lo, hi]


def _log_x(ax: Any, lo: float, hi: float) -> None:
    """A log-scale x axis for values in [lo, hi] with labelled ticks: the powers of ten, or, within
    less than two decades (which may hold none), 1, 2 and 5 times them (else the ends)."""
    ax.set_xscale("log")
    if hi < 100 * lo:
        ticks = [t for t in LogLocator(subs=(1.0, 2.0, 5.0)).tick_values(lo, hi) if lo <= t <= hi]
        ax.xaxis.set_major_locator(FixedLocator(ticks if len(ticks) >= 2 else [lo, hi]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


# the panels of plot_params, in inches: cell size, the plot box inside a cell, the margins
_CELL_W, _CELL_H = 2.4, 1.8
_BOX = (0.12, 2.3, 0.3, 1.45)  # left, right, top, bottom of the plot box within its cell
_MARGIN_L, _MARGIN_T = 0.55, 0.45


def plot_params(snap: Snapshot, path: Path, columns: int = 5) -> Path | None:
    """Each searched parameter that varies against validation accuracy, one small panel each
    (None when there is no finished trial or no parameter varies).

    Numbers are a scatter (log x when they span a factor of 20 or more), choices a box per
    value with the trials as jittered dots; y is the validation accuracy, on the same scale
    in every panel; the best trial is a red star. The panels are drawn on one canvas (one
    Axes in inches, not one Axes per panel): 50 panels draw in a fraction of a second
    instead of several seconds. It is one long function on purpose: every panel adds to the
    same few collections, in one pass, and reads best in one place.
    """
    board = snap.board
    # the settings with more than one value among the trials that have them
    names = varying_params(board, missing_differs=False) if not board.empty else []
    if not names:
        return None
    cols = min(columns, len(names))
    rows = -(-len(names) // cols)
    width, height = _MARGIN_L + cols * _CELL_W + 0.1, _MARGIN_T + rows * _CELL_H
    fig = _figure(width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # inches from the top left

    acc_all = board["val_acc"].dropna().to_numpy(dtype=float)
    lo, hi = float(acc_all.min()), float(acc_all.max())
    pad = max(hi - lo, 0.02) * 0.08
    lo, hi = lo - pad, hi + pad
    yticks = _ticks(lo, hi, log=False)
    rng = np.random.default_rng(0)  # the same jitter every time
    best_trial = int(board["trial"].iloc[0])

    points, stars, frames, boxes, lines, grid = [], [], [], [], [], []
    texts: list[tuple[float, float, str, dict]] = []
    small = {"fontsize": 6.5, "color": "0.25"}
    for i, name in enumerate(names):
        r, c = divmod(i, cols)
        x0, y0 = _MARGIN_L + c * _CELL_W, _MARGIN_T + r * _CELL_H
        left, right, top, bottom = x0 + _BOX[0], x0 + _BOX[1], y0 + _BOX[2], y0 + _BOX[3]

        def to_x(u: np.ndarray | float, left: float = left, right: float = right) -> Any:
            return left + (right - left) * (0.05 + 0.9 * np.asarray(u))

        def to_y(a: np.ndarray | float, top: float = top, bottom: float = bottom) -> Any:
            return bottom - (bottom - top) * (np.asarray(a) - lo) / (hi - lo)

        frames.append(Rectangle((left, top), right - left, bottom - top))
        for t in yticks:
            grid.append([(left, to_y(t)), (right, to_y(t))])
            if c == 0:
                texts.append((left - 0.05, to_y(t), _num(t), {"ha": "right", "va": "center", **small}))
        if c == 0:
            label = {"ha": "center", "va": "center", "rotation": 90, "fontsize": 7.5}
            texts.append((left - 0.42, (top + bottom) / 2, "val_acc", label))
        texts.append(
            ((left + right) / 2, top - 0.06, name, {"ha": "center", "va": "bottom", "fontsize": 7.5})
        )

        part = board[["trial", "val_acc", name]].dropna()
        values, acc = part[name].tolist(), part["val_acc"].to_numpy(dtype=float)
        best = (part["trial"] == best_trial).to_numpy()
        if all(_is_number(v) for v in values):
            v = np.asarray(values, dtype=float)
            log = bool(v.min() > 0 and v.max() / v.min() >= 20)
            t = np.log10(v) if log else v
            tlo, thi = float(t.min()), float(t.max())
            u = (t - tlo) / (thi - tlo)
            few = sorted(set(v.tolist()))
            ticks = few if len(few) <= 5 and not log else _ticks(float(v.min()), float(v.max()), log)
            for tick in ticks:
                tu = ((np.log10(tick) if log else tick) - tlo) / (thi - tlo)
                texts.append((to_x(tu), bottom + 0.05, _num(tick), {"ha": "center", "va": "top", **small}))
            if log:
                texts.append((right, bottom + 0.2, "log", {"ha": "right", "va": "top", **small}))
        else:
            cats = sorted(set(values), key=_category_key)
            index = {cat: k for k, cat in enumerate(cats)}
            pos = np.array([index[v] for v in values], dtype=float)
            k = len(cats)
            u = (pos + 0.5) / k + rng.uniform(-0.15, 0.15, len(pos)) / k
            for j, cat in enumerate(cats):
                group = acc[pos == j]
                cx, half = to_x((j + 0.5) / k), 0.3 * (right - left) / k
                q1, med, q3 = np.percentile(group, [25, 50, 75])
                boxes.append(Rectangle((cx - half, to_y(q3)), 2 * half, to_y(q1) - to_y(q3)))
                lines.append([(cx - half, to_y(med)), (cx + half, to_y(med))])
                text = str(cat) if len(str(cat)) <= 9 else str(cat)[:8] + "…"
                texts.append((cx, bottom + 0.05, text, {"ha": "center", "va": "top", **small}))
        xy = np.column_stack([to_x(u), to_y(acc)])
        points.append(xy)
        stars.append(xy[best])

    ax.add_collection(LineCollection(grid, colors="0.9", linewidths=0.6, zorder=1))
    ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor="0.6", linewidth=0.8, zorder=2))
    ax.add_collection(PatchCollection(boxes, facecolor="0.93", edgecolor="0.55", linewidth=0.8, zorder=2))
    ax.add_collection(LineCollection(lines, colors="0.3", linewidths=1.2, zorder=3))
    xy = np.concatenate(points)
    ax.scatter(xy[:, 0], xy[:, 1], s=11, color=_COLORS[0], alpha=0.6, lw=0, zorder=4)
    star = np.concatenate(stars)
    ax.scatter(star[:, 0], star[:, 1], marker="*", s=60, color=_COLORS[1], zorder=5)
    for x, y, text, style in texts:
        ax.text(x, y, text, **style)
    title = f"{snap.label}: searched parameters against validation accuracy (star: best trial)"
    ax.text(width / 2, 0.12, title, ha="center", va="top", fontsize=9)
    return _save(fig, path)


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points with the highest y for at most their x (sorted by x): for each,
    no other point has x <= its x and a y >= its y (the first in order wins ties)."""
    order = np.lexsort((-y, x))  # by x, the best y first at equal x
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.asarray(front, dtype=int)


def plot_pareto(snap: Snapshot, path: Path) -> Path | None:
    """Validation accuracy against parameters and against MACs (log x) with the Pareto fronts
    (None when no finished trial has those figures)."""
    board = snap.board
    if board.empty:
        return None
    panels = []
    for col, label in (("params", "parameters"), ("macs", "MACs per image")):
        part = board[["trial", "val_acc", col]].dropna()
        part = part[part[col] > 0]
        if len(part):
            panels.append((col, label, part))
    if not panels:
        return None
    fig = _figure(5.2 * len(panels), 4.2)
    fig.subplots_adjust(left=0.7 / (5.2 * len(panels)), right=0.98, bottom=0.12, top=0.9, wspace=0.22)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (col, label, part) in zip(axes, panels, strict=True):
        x = part[col].to_numpy(dtype=float)
        y = part["val_acc"].to_numpy(dtype=float)
        trials = part["trial"].to_numpy()
        front = pareto_front(x, y)
        ax.scatter(x, y, s=14, color="0.6", alpha=0.7, lw=0, label="trials")
        fx, fy = list(x[front]), list(y[front])
        ax.step([*fx, x.max()], [*fy, fy[-1]], where="post", color=_COLORS[1], lw=1.5, label="Pareto front")
        ax.scatter(fx, fy, s=22, color=_COLORS[1], zorder=3)
        for i in front:
            ax.annotate(f"t{trials[i]:03d}", (x[i], y[i]), xytext=(3, -9), textcoords="offset points",
                        fontsize=7, color=_COLORS[1])  # fmt: skip
        _log_x(ax, float(x.min()), float(x.max()))
        ax.set_xlabel(f"{label} (log scale)")
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{snap.label}: accuracy against size and cost", fontsize=9)
    return _save(fig, path)


# ---------------------------------------------------------------- the report


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "campaign"


def default_out(runs: Path, names: Sequence[str]) -> Path:
    """Where ``archsearch report`` writes by default: RUNS/reports/NAME (NAME-vs-NAME2 for two)."""
    return Path(runs) / "reports" / "-vs-".join(_slug(n) for n in names)


def _plots(snaps: Sequence[Snapshot], out: Path) -> dict[str, Path | None]:
    """Every figure of these campaigns into ``out``: key "best" and "params:NAME", "pareto:NAME"."""
    written: dict[str, Path | None] = {"best": plot_best_so_far(snaps, out / "best_so_far.png")}
    used: set[str] = set()
    for i, snap in enumerate(snaps):
        suffix = ""
        if len(snaps) > 1:
            suffix = f"-{_slug(snap.name)}"
            suffix = suffix if suffix not in used else f"{suffix}-{i + 1}"  # a/b and a_b
            used.add(suffix)
        written[f"params:{snap.name}"] = plot_params(snap, out / f"params{suffix}.png")
        written[f"pareto:{snap.name}"] = plot_pareto(snap, out / f"pareto{suffix}.png")
    return written


def _cell(col: str, v: Any) -> str:
    if isinstance(v, float | np.floating):
        if col in ("val_acc", "best_val_acc", "val_loss"):
            return f"{v:.4f}"
        return f"{v:,.0f}" if col == "images_per_second" else f"{v:.4g}"
    if isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) and col in ("params", "macs"):
        return f"{v:,}"
    return str(v)


def _table(df: pd.DataFrame) -> str:
    view = varying(df)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in view.columns)
    rows = []
    for _, row in view.iterrows():
        cells = "".join(
            f'<td class="{"num" if _is_number(v) else "txt"}">{html.escape(_cell(c, v))}</td>'
            for c, v in row.items()
        )
        rows.append(f"<tr>{cells}</tr>")
    return f'<table class="board"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _header(snap: Snapshot) -> str:
    p = snap.params
    dataset = p.get("data.dataset", "?")
    if "dataset.n_train" in p:
        dataset += f" ({int(p['dataset.n_train']):,} train / {int(p.get('dataset.n_val', 0)):,} validation)"
    counts = counts_text(outcome_counts(r.outcome for r in snap.ended), always=SHOWN)
    trials = f"{len(snap.ended)} of {snap.planned} ended: {counts}; {snap.running} running"
    best = snap.best
    if best is None:
        best_text = NO_TRIALS
    else:
        best_text = f"t{int(best['trial']):03d} {best['name']}: val_acc {best['val_acc']:.4f}"
        if pd.notna(best["params"]):
            best_text += f", {int(best['params']):,} params, {int(best['macs']):,} MACs"
    rows = [
        ("campaign", snap.name),
        ("status", snap.status),
        ("trials", trials),
        ("best trial", best_text),
        ("dataset", dataset),
        ("search", f"{snap.algo}, seed {snap.seed}"),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="head">{body}</table>'


def _img(path: Path | None, alt: str) -> str:
    if path is None:
        return ""
    return f'<p><img src="{html.escape(path.name)}" alt="{html.escape(alt)}"></p>'


_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; }
table.head th { text-align: left; padding: 2px 1em 2px 0; color: #555; font-weight: normal; }
table.board th, table.board td { border: 1px solid #ddd; padding: 2px 6px; white-space: nowrap; }
table.board th { background: #f3f3f3; } td.num { text-align: right; }
.empty { color: #a33; font-weight: bold; } img { max-width: 100%; }
.board-wrap { overflow-x: auto; } .note { color: #777; font-size: 0.85em; }
"""


def _html(snaps: Sequence[Snapshot], written: dict[str, Path | None]) -> str:
    names = " vs ".join(s.name for s in snaps)
    when = datetime.now().astimezone().isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>archsearch report: {html.escape(names)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>archsearch report: {html.escape(names)}</h1>",
        f'<p class="note">written {when} from MLflow; <code>archsearch report</code> refreshes it</p>',
    ]
    if len(snaps) > 1:
        parts.append("<h2>Best so far</h2>")
        parts.append(_img(written["best"], "best validation accuracy so far against trial number"))
    for snap in snaps:
        if len(snaps) > 1:
            parts.append(f"<h2>{html.escape(snap.name)}</h2>")
        parts.append(_header(snap))
        if snap.board.empty:
            parts.append(f'<p class="empty">{NO_TRIALS}: nothing to plot or rank.</p>')
            continue
        if len(snaps) == 1:
            parts.append(_img(written["best"], "best validation accuracy so far against trial number"))
        parts.append("<h3>Parameters against accuracy</h3>")
        params_png = written[f"params:{snap.name}"]
        if params_png is None:
            parts.append('<p class="note">no searched parameter varies across the finished trials yet</p>')
        parts.append(_img(params_png, "each searched parameter against validation accuracy"))
        parts.append("<h3>Accuracy against parameters and MACs</h3>")
        parts.append(_img(written[f"pareto:{snap.name}"], "validation accuracy against params and MACs"))
        shown = min(TOP, len(snap.board))
        parts.append(f"<h3>Leaderboard (top {shown} of {len(snap.board)} finished trials)</h3>")
        parts.append(f'<div class="board-wrap">{_table(snap.board.head(TOP))}</div>')
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def write_report(campaigns: Sequence[Campaign | Snapshot], out: Path) -> list[Path]:
    """Write ``report.html`` and its PNG files into ``out`` (created or reused; files are
    overwritten) for these campaigns (or their snapshots, already read); returns the files
    written, report.html first. Campaigns without a finished trial get a message, no plots."""
    if not campaigns:
        raise UserError("report: which campaign? e.g. `archsearch report quickstart`")
    names = [c.name for c in campaigns]
    if len(set(names)) != len(names):
        raise UserError(f"report: campaign named more than once: {' '.join(names)}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"report: cannot create {out}: {e.strerror or e}") from None
    snaps = [c if isinstance(c, Snapshot) else snapshot(c) for c in campaigns]
    written = _plots(snaps, out)
    page = out / "report.html"
    page.write_text(_html(snaps, written), encoding="utf-8")
    return [page, *(p for p in written.values() if p is not None)]


def log_plots(campaign: Campaign) -> None:
    """Render the figures of a campaign and log them as its campaign run's ``plots/``
    artifacts (replacing those of the last call). Never raises: a problem is a warning."""
    t0 = time.perf_counter()
    try:
        snap = snapshot(campaign)
        if snap.board.empty:
            return  # nothing to draw yet
        with tempfile.TemporaryDirectory(prefix="archsearch-plots-") as tmp:
            _plots([snap], Path(tmp))
            campaign.client.log_artifacts(campaign.run_id, tmp, "plots")
    except Exception as e:  # a plot must never break a campaign
        log.warning("campaign %s: could not log its plots: %s: %s", campaign.name, type(e).__name__, e)
        return
    log.debug("campaign %s: plots logged in %.2f s", campaign.name, time.perf_counter() - t0)
