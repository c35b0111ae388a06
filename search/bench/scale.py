"""``archsearch bench scale``: what the platform itself costs as a campaign grows to thousands of
trials.

One real campaign through ``archsearch run``'s code path (the driver, the SQLite store, trials in
the driver's process) whose evaluator is the synthetic benchmark objective
(:mod:`search.bench.synthetic`: no training, a loss computed from the configuration), grown with
random search to each history size in turn. At each size:

- per trial, over the trials added since the size before (the evaluator returns at once): the
  platform's time per trial (the trials loop's wall time, and the wait for the writes still
  queued when it ends, less the evaluator's own: the most trials a second the platform can run),
  a random suggestion, a tell, MLflow's writes (calls and milliseconds, made in the background);
- the critical path: PACED more trials whose evaluator takes PACE seconds (sleeping, as a trial
  training on a device releases the interpreter), and the time from the end of one to the start
  of the next (the median): what a trial waits for, with the writes behind it;
- TPE: one suggestion on the campaign's history (the median of ``--repeats``), which a TPE
  campaign adds to each trial, and the tells that rebuild that history on a resume;
- the campaign: the driver killed with SIGKILL while its trials run, then ``archsearch run
  --resume`` in a process of its own: seconds to its first new trial (and those of a bare start
  of the command, imports only, for comparison); ``status``, ``leaderboard --top 20`` and
  ``report``, each timed in this process, and ``archsearch status`` and ``leaderboard`` as a user
  types them (processes of their own: MLflow's imports included); reading the top 5 for a warm
  start; the SQLite file.

- the MLflow UI (``archsearch ui`` and headless Chromium, where :mod:`search.bench.browser` can
  drive one): seconds from opening the campaign's link to its row, then to its trials expanded,
  and from opening its best-trials link to the best trial's row.

How each cost grows: the exponent of a log-log fit over the sizes (0: flat, 1: linear in the
history).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..options import positive_int
from ..text import table
from .harness import Benchmark, Timers, env_line, environment, write
from .overhead import MLFLOW_METHODS
from .suggest import sizes as parse_sizes
from .synthetic import LABEL, synthetic_trial

NAME = "scale"
TRIAL_LINE = re.compile(r"t\d+ \[\d+/\d+\]")  # the progress line of a trial that ended
AFTER_KILL = 20  # trials the killed driver is asked for beyond the size (it dies after 2 of them)
PACED = 30  # trials at each size whose evaluator takes PACE seconds: the critical path
PACE = 0.1

# A space of the size of pinto_cox's (depth 1 to 3, per-layer choices, the recipe), on digits at
# 28x28 so that every shape pass is a real one; every draw valid.
SCALE_SPACE = """\
name: scale
description: Small nets on digits at 28x28, for `archsearch bench scale` (a synthetic objective).
data:
  dataset: digits
  input_shape: [1, 28, 28]
architecture:
  depth: {choice: [1, 2, 3]}
  layers:
    filters: {count: {choice: [8, 16, 32, 64]}, size: {choice: [3, 5]}}
    activation: {choice: [relu, gelu]}
    pool:
      choice:
        - {kind: max, size: 2, stride: 2}
        - {kind: lp, order: {uniform: [1, 10]}, size: 2, stride: 2}
    norm:
      choice:
        - batch
        - {kind: divisive, size: {choice: [3, 5]}, remove_mean: {choice: [true, false]}}
    dropout: {uniform: [0.0, 0.3]}
    padding: same
  head: {pool: {choice: [avg, flatten]}, dropout: {uniform: [0.0, 0.5]}}
training:
  optimizer: adamw
  lr: {loguniform: [1e-4, 1e-1]}
  weight_decay: {loguniform: [1e-6, 1e-2]}
  epochs: 1
  batch_size: 64
search:
  algo: random
  trials: 100
  seed: 0
"""

# Per-trial parts of the loop, timed by patching (the MLflow client's calls apart, by method:
# overhead's MLFLOW_METHODS).
PARTS = (
    ("driver", "Loop", "run", "trials loop"),
    ("suggest", "Search", "ask", "ask"),
    ("suggest", "Search", "tell", "tell"),
    ("tracking", "Campaign", "start_trial", "start_trial"),
    ("tracking", "TrialRun", "finish", "finish"),
    ("tracking", "Campaign", "log_progress", "log_progress"),
    ("tracking", "Campaign", "trials", "history read"),
    ("tracking", "Campaign", "release", "queued writes drained"),
)


class Scale(Benchmark):
    name = "scale"
    help = "the platform's own costs as a campaign grows to 10,000 trials (a synthetic objective)"
    description = (
        "A real campaign through archsearch run's code path, with a synthetic objective instead of "
        "training, grown to each history size: per-trial platform time, suggestions, tells and MLflow "
        "writes; resume after SIGKILL, status, leaderboard, report, warm start and the store's size; "
        "how each grows."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--sizes", default="100,1000,3000,10000", help="history sizes (default 100,1000,3000,10000)"
        )
        p.add_argument(
            "--repeats", type=positive_int, default=5, help="timed TPE asks at each size (default 5)"
        )
        p.add_argument(
            "--keep", metavar="DIR", help="keep the campaign's runs folder here (default: removed)"
        )

    def run(self, args: argparse.Namespace) -> int:
        history_sizes = parse_sizes(args.sizes)
        env = environment(None)
        with contextlib.ExitStack() as stack:
            if args.keep:
                runs = Path(args.keep)
                if runs.exists() and any(runs.iterdir()):
                    raise UserError(f"--keep {runs}: not an empty folder")
            else:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="archsearch-scale-"))
                runs = Path(tmp) / "runs"
            runs.mkdir(parents=True, exist_ok=True)
            space_path = runs.parent / "scale.yaml" if not args.keep else runs / "scale.yaml"
            space_path.write_text(SCALE_SPACE)
            bare, bare_read = bare_start(), bare_start(READ_IMPORTS)
            measured = [measure_size(runs, space_path, n, args.repeats) for n in grown(history_sizes)]
        results = {
            "benchmark": "scale",
            **env,
            "objective": LABEL,
            "space": "built-in scale (digits at 28x28)",
            "bare_start_seconds": bare,
            "bare_read_start_seconds": bare_read,
            "sizes": measured,
            "growth": growth(measured),
        }
        show(results, env)
        write(results, self.out(args))
        return 0


def grown(history_sizes: list[int]) -> list[int]:
    """The sizes, each at least the one before plus the trials a killed driver adds."""
    out: list[int] = []
    for n in history_sizes:
        out.append(max(n, out[-1] + PACED + AFTER_KILL + 2) if out else n)
    return out


# ---------------------------------------------------------------- one size


def measure_size(runs: Path, space_path: Path, size: int, repeats: int) -> dict:
    """Grow the campaign to ``size`` trials and measure everything at that size."""
    from ..campaign import open_store

    store = open_store(runs, None)
    before = trial_count(store) if store.find(NAME) is not None else 0
    per_trial = grow(store, runs, space_path, size, before)
    out: dict[str, Any] = {"history": size, "added": size - before, **per_trial}
    paced = grow(store, runs, space_path, size + PACED, size, pace=PACE)
    out["critical_path_ms"] = paced["gap_ms"]
    out["critical_path_ms_p90"] = paced["gap_ms_p90"]
    out["tpe"] = tpe_at(store, repeats)
    out["resume"] = killed_and_resumed(runs, size + PACED)
    out["commands"] = commands(runs, store)
    out["ui"] = ui_at(runs, store)
    out["sqlite_mb"] = (runs / "mlflow.db").stat().st_size / 2**20
    out["trials_after"] = trial_count(store)  # the killed and resumed drivers' too
    return out


def trial_count(store: Any) -> int:
    """The campaign's trials (numbers), each counted once however many attempts it took: a driver
    killed while a trial ran leaves one, which the resume runs again."""
    return len({r.trial for r in store.require(NAME).trials(params=False)})


def grow(store: Any, runs: Path, space_path: Path, size: int, before: int, pace: float = 0.0) -> dict:
    """The campaign grown from ``before`` to ``size`` trials through ``search.run.launch`` (random
    search, the synthetic objective taking ``pace`` seconds more), its loop's parts timed per
    trial, and the gaps between one evaluation's end and the next one's start."""
    from .. import driver, run, suggest, tracking
    from ..campaign import resume_settings
    from ..settings import resolve

    owners = {"driver": driver, "suggest": suggest, "tracking": tracking}
    overrides = [f"search.trials={size}"]
    options = {"runs": runs, "quiet": True, "device": "cpu"}
    if before:
        settings = resume_settings(store, NAME, overrides, **options)
    else:
        settings = resolve(str(space_path), overrides, name=NAME, **options)
    evaluator = {"seconds": 0.0, "ended": None}
    gaps: list[float] = []

    def timed(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        if evaluator["ended"] is not None:
            gaps.append(t - evaluator["ended"])
        try:
            result = synthetic_trial(*a, **kw)
            time.sleep(pace)
            return result
        finally:
            evaluator["ended"] = time.perf_counter()
            evaluator["seconds"] += evaluator["ended"] - t

    timers = Timers()
    for module, cls, attr, key in PARTS:
        timers.patch(getattr(owners[module], cls), attr, key)
    for method in MLFLOW_METHODS:
        timers.patch(store.client, method, f"mlflow.{method}", group="mlflow")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = run.launch(settings, store, evaluate_fn=timed)
    finally:
        timers.restore()
    if code != 0:
        raise UserError(f"bench scale: growing the campaign to {size} trials ended with exit code {code}")
    n = size - before
    if n <= 0:
        raise UserError(f"bench scale: the campaign had {before} trials already, not fewer than {size}")
    loop = timers.get("trials loop") + timers.get("queued writes drained") - timers.get("history read")
    writes = {k.removeprefix("mlflow."): v for k, v in timers.calls.items() if k.startswith("mlflow.")}
    return {
        "platform_ms_per_trial": 1e3 * (loop - evaluator["seconds"]) / n,
        "evaluator_ms_per_trial": 1e3 * evaluator["seconds"] / n,
        "gap_ms": 1e3 * statistics.median(gaps) if gaps else None,
        "gap_ms_p90": 1e3 * statistics.quantiles(gaps, n=10)[-1] if len(gaps) >= 2 else None,
        "random_ask_ms": 1e3 * timers.get("ask") / max(1, timers.calls.get("ask", 0)),
        "tell_ms": 1e3 * timers.get("tell") / max(1, timers.calls.get("tell", 0)),
        "tracking_ms_per_trial": 1e3
        * sum(timers.get(k) for k in ("start_trial", "finish", "log_progress"))
        / n,
        "mlflow_calls_per_trial": sum(writes.values()) / n,
        "mlflow_ms_per_trial": 1e3 * sum(timers.get(f"mlflow.{k}") for k in writes) / n,
        "mlflow_calls": writes,
    }


def tpe_at(store: Any, repeats: int) -> dict:
    """TPE on the campaign's history: the tells that rebuild it, then one suggestion (median)."""
    from ..campaign import load_campaign
    from ..compile import CompiledSpace
    from ..suggest import Search

    campaign = store.require(NAME)
    records = campaign.trials()
    space, _ = load_campaign(campaign, store.runs / "data", None)
    search = Search(CompiledSpace(space), {**space.search, "algo": "tpe"})
    t = time.perf_counter()
    for r in records:
        search.tell(r.trial, r.vals, r.loss if r.outcome.learned else None)
    told = time.perf_counter() - t
    first = max(r.trial for r in records) + 1
    search.ask(first)  # warm-up
    asks = []
    for k in range(1, repeats + 1):
        t = time.perf_counter()
        search.ask(first + k)
        asks.append(time.perf_counter() - t)
    return {
        "ask_ms": 1e3 * statistics.median(asks),
        "ask_ms_runs": [1e3 * a for a in asks],
        "rebuild_ms": 1e3 * told,
    }


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "search.bench.synthetic_run", *args]


def environment_vars() -> dict[str, str]:
    """The benchmark's own package first on the path of the processes it starts."""
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


RESUME_IMPORTS = "import search.bench.synthetic_run, mlflow, torch"
# what `archsearch status` imports before it reads: MLflow's client and its SQL store
READ_IMPORTS = "import search.cli, search.results, search.campaign, mlflow.store.tracking.sqlalchemy_store"


def bare_start(code: str = RESUME_IMPORTS) -> float:
    """Seconds of starting a process and importing what ``code`` imports, nothing run: by default
    what a resume imports."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=environment_vars())
    return time.perf_counter() - t


def killed_and_resumed(runs: Path, size: int) -> dict:
    """A driver resumed to ``size + AFTER_KILL`` trials, SIGKILLed after its second new trial
    ended (its next one running), then resumed to that many again: seconds from each start to its
    first new trial."""
    target = ["run", "--resume", NAME, "--runs", str(runs), "--trials", str(size + AFTER_KILL)]
    first, _ = timed_process(command(*target), kill_after=2)
    resumed, code = timed_process(command(*target), kill_after=None)
    if code != 0:
        raise UserError(f"bench scale: the resume after SIGKILL at {size} trials ended with exit code {code}")
    return {"first_trial_seconds": resumed, "before_kill_first_trial_seconds": first}


def timed_process(cmd: list[str], kill_after: int | None) -> tuple[float, int]:
    """Seconds from the start of ``cmd`` (a campaign's driver) to its first trial's progress line,
    and its exit code; SIGKILLed once ``kill_after`` trials ended."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment_vars()
    )
    first, ended, said = None, 0, []
    assert proc.stdout is not None
    for line in proc.stdout:
        said.append(line)
        if TRIAL_LINE.match(line):  # a trial's progress line: it ended
            ended += 1
            if first is None:
                first = time.perf_counter() - start
            if kill_after is not None and ended >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
    proc.stdout.close()
    code = proc.wait()
    if first is None:
        raise UserError(f"bench scale: `{' '.join(cmd[2:])}` ran no trial: {''.join(said[-5:]).strip()}")
    return first, code


def commands(runs: Path, store: Any) -> dict:
    """Seconds of what the commands that read a campaign back do, each in this process (imports
    done) with a store of its own: ``status``, ``leaderboard --top 20`` (its table printed),
    ``report``, and the top 5 read for ``--warm-start``; then ``archsearch status`` and
    ``archsearch leaderboard --top 20`` as a user types them, each a process of its own."""
    from ..campaign import open_store
    from ..compile import CompiledSpace
    from ..report import snapshot, write_report
    from ..results import campaign_board, status_text, varying
    from ..run import given_points
    from ..settings import resolve

    space_file = runs / "scale-warm.yaml"
    space_file.write_text(SCALE_SPACE)
    warm = resolve(str(space_file), name="warm", runs=runs, quiet=True, warm_start=NAME, warm_top=5)
    with tempfile.TemporaryDirectory(prefix="archsearch-scale-report-") as tmp:
        parts = {
            "status": lambda s: status_text(s.require(NAME)),
            "leaderboard_top20": lambda s: varying(campaign_board(s.require(NAME), 20)).to_string(),
            "report": lambda s: write_report([snapshot(s.require(NAME))], Path(tmp) / "report"),
            "warm_start_top5": lambda s: given_points(warm, s, CompiledSpace(warm.space)),
        }
        out = {}
        for key, part in parts.items():
            t = time.perf_counter()
            part(open_store(runs, None))
            out[key] = time.perf_counter() - t
    typed = {"status_command": ["status", NAME], "leaderboard_command": ["leaderboard", NAME, "--top", "20"]}
    for key, args in typed.items():
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "search", *args, "--runs", str(runs)],
            capture_output=True, text=True, env=environment_vars(),
        )  # fmt: skip
        out[key] = time.perf_counter() - t
        if done.returncode != 0:
            said = done.stderr.strip()[-300:]
            raise UserError(f"bench scale: `archsearch {' '.join(args)}` failed: {said}")
    return out


def ui_at(runs: Path, store: Any) -> dict:
    """The UI's pages of the campaign, timed in headless Chromium ({"skipped": why} where it cannot
    be driven here)."""
    from . import browser

    why = browser.missing()
    if why is not None:
        return {"skipped": why}
    campaign = store.require(NAME)
    scored = [r for r in campaign.trials(params=False) if math.isfinite(r.metrics.get("val_acc", math.nan))]
    top = max(scored, key=lambda r: r.metrics["val_acc"])
    return browser.page_seconds(runs, NAME, campaign.run_id, top.run_id, env=environment_vars())


# ---------------------------------------------------------------- what it says


def figures(row: dict) -> dict[str, float]:
    """The costs of one size whose growth is fitted, by name."""
    return {
        "platform ms/trial": row["platform_ms_per_trial"],
        "critical path ms": row["critical_path_ms"],
        "random ask ms": row["random_ask_ms"],
        "tell ms": row["tell_ms"],
        "tracking ms/trial": row["tracking_ms_per_trial"],
        "MLflow ms/trial": row["mlflow_ms_per_trial"],
        "TPE ask ms": row["tpe"]["ask_ms"],
        "history rebuild ms": row["tpe"]["rebuild_ms"],
        "resume s": row["resume"]["first_trial_seconds"],
        "status s": row["commands"]["status"],
        "leaderboard s": row["commands"]["leaderboard_top20"],
        "status command s": row["commands"].get("status_command"),
        "leaderboard command s": row["commands"].get("leaderboard_command"),
        "report s": row["commands"]["report"],
        "warm start s": row["commands"]["warm_start_top5"],
        "UI campaign row s": row["ui"].get("campaign_row_seconds"),
        "UI trials expanded s": row["ui"].get("trials_expanded_seconds"),
        "UI best trials s": row["ui"].get("best_trials_seconds"),
        "SQLite MB": row["sqlite_mb"],
    }


def growth(rows: list[dict]) -> dict[str, float | None]:
    """Each cost's exponent k in cost ~ history^k, by least squares on the logs (None: fewer than
    two sizes, or a cost not above zero)."""
    if len(rows) < 2:
        return {k: None for k in figures(rows[0])} if rows else {}
    xs = [math.log(r["history"]) for r in rows]
    out: dict[str, float | None] = {}
    for key in figures(rows[0]):
        values = [figures(r)[key] for r in rows]
        if None in values or min(values) <= 0:
            out[key] = None
            continue
        ys = [math.log(v) for v in values]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        den = sum((x - mx) ** 2 for x in xs)
        out[key] = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None
    return out


def show(r: dict, env: dict) -> None:
    print(f"bench scale: one campaign grown with random search, {r['objective']}, on {env_line(env)}")
    rows = [("cost", *(f"{s['history']:,}" for s in r["sizes"]), "growth")]
    for key in figures(r["sizes"][0]):
        k = r["growth"].get(key)
        fitted = "-" if k is None else f"n^{k:.2f}"
        cells = (figures(s)[key] for s in r["sizes"])
        rows.append((key, *("-" if v is None else f"{v:.3g}" for v in cells), fitted))
    print(table(rows))
    print(
        f"  (resume s: a driver SIGKILLed while its trials ran, then `run --resume` in a process of its own, "
        "to its first new trial; a bare start of that process, imports only: "
        f"{r['bare_start_seconds']:.1f} s. "
        "status, leaderboard --top 20, report: in this process; the status and leaderboard commands: "
        "each `archsearch ...` a process of its own, whose bare start (imports of MLflow's client and "
        f"SQL store, nothing read) takes {r.get('bare_read_start_seconds', math.nan):.1f} s. "
        "tracking: a trial's run started, finished (its files too) and the campaign's progress, "
        "as the driver waits for them; MLflow: "
        f"the client's calls, in the background, per trial. critical path: {PACED} trials of "
        f"{PACE:g} s at each size, from the end of one to the start of the next, median. UI: "
        "`archsearch ui` in headless Chromium, each link opened afresh)"
    )
    skipped = {s["ui"]["skipped"] for s in r["sizes"] if "skipped" in s["ui"]}
    for why in skipped:
        print(f"  (the UI was not measured: {why})")
