"""``archsearch bench overhead``: a real campaign of short trials through ``search.run.launch``,
its wall time against the evaluator's own time (goal: wall / compute <= 1.05), and where the rest
goes: one-off costs (imports, the store's migrations, the data) apart from the per-trial ones
(MLflow calls, suggestions, files)."""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..compile import arch_name
from ..errors import UserError
from ..options import DATA_DIR, data_dir, positive_int
from ..text import table
from .harness import DEVICE, SETS, Benchmark, Timers, device_of, env_line, environment, sync, write

GOAL = 1.05  # wall / compute, at most

# The campaign `bench overhead` runs by default: small nets on digits resized to 28x28 (the size
# of the MNIST family), every draw valid, trials of about 0.5 to 2 seconds on two CPU cores.
OVERHEAD_SPACE = """\
name: bench_overhead
description: Small nets on scikit-learn's digits at 28x28, for `archsearch bench overhead`.
data:
  dataset: digits
  input_shape: [1, 28, 28]
architecture:
  depth: {choice: [1, 2]}
  layers:
    filters: {count: {choice: [32, 64]}, size: 3}
    activation: relu
    pool:
      choice:
        - {kind: max, size: 2, stride: 2}
        - {kind: lp, order: 2, size: 2, stride: 2}
    norm: {choice: [batch, none]}
    padding: same
  head: {pool: flatten}
training:
  optimizer: adamw
  lr: {loguniform: [1e-3, 1e-2]}
  epochs: 2
  batch_size: 32
  schedule: cosine
search:
  trials: 20
  seed: 0
"""

# The MLflow client's calls, counted and timed.
MLFLOW_METHODS = (
    "create_experiment",
    "create_run",
    "log_batch",
    "log_text",
    "log_artifact",
    "set_tag",
    "set_terminated",
    "update_run",
    "search_runs",
    "search_experiments",
    "get_experiment_by_name",
    "get_run",
    "download_artifacts",
)
ONE_OFF = {  # the parts of launch before and after the trials, by timer
    "data_load": ("data load",),
    "campaign_create": ("campaign create",),
    "lock_tags_release": ("campaign lock", "campaign tags", "campaign release"),
}


class Overhead(Benchmark):
    name = "overhead"
    help = "a real 20-trial campaign on digits: wall time against the evaluator's own (goal <= 1.05)"
    description = (
        "A real campaign of short trials (a SQLite store in a temporary folder) through archsearch run's "
        "code path, its wall time against the evaluator's own time, and where the rest goes."
    )
    options = (DEVICE, DATA_DIR, SETS)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--space", help="the space file (default: a built-in space of small nets on digits)")
        p.add_argument("--trials", type=positive_int, default=20, help="trials (default 20)")
        p.add_argument(
            "--epochs", type=positive_int, help="epochs per trial (default: the space's, 2 built in)"
        )
        p.add_argument("--dataset", help="the dataset (default: the space's, digits built in)")
        p.add_argument("--profile", metavar="FILE", help="also write a cProfile of the campaign")

    def run(self, args: argparse.Namespace) -> int:
        device = device_of(args.device)
        env = environment(device)
        overrides = [f"search.trials={args.trials}"]
        if args.epochs:
            overrides.append(f"training.epochs={args.epochs}")
        if args.dataset:
            overrides.append(f"data.dataset={args.dataset}")
        overrides += list(args.set or [])
        profiler = cProfile.Profile() if args.profile else None
        measured = measure(args, device, overrides, profiler)
        results = {
            "benchmark": "overhead",
            **env,
            "space": args.space or "built-in bench_overhead (digits)",
            "overrides": overrides,
            **summarize(**measured),
        }
        show(results, env)
        if profiler is not None:
            profiler.dump_stats(args.profile)
            print(
                f"  profile of the campaign: {args.profile} (python -m pstats {args.profile}); profiling "
                "slows Python code more than torch's kernels: take the ratios from a run without --profile"
            )
        write(results, self.out(args))
        return 0


def timed_evaluator(stats: dict, device: torch.device) -> Callable[..., Any]:
    """The evaluator, timing its own work apart from the driver's callbacks (its tracking)."""
    from ..evaluate import evaluate

    def timed_evaluate(config: dict, data: Any, *, on_epoch: Callable | None = None, **kw: Any) -> Any:
        spent = [0.0]

        def callback(epoch: int, metrics: dict) -> None:  # the driver's tracking, not the evaluator's
            t = time.perf_counter()
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            spent[0] += time.perf_counter() - t

        sync(device)
        start = time.perf_counter()
        result = evaluate(config, data, on_epoch=callback, **kw)
        sync(device)
        own = time.perf_counter() - start - spent[0]
        stats["evaluator"] += own
        stats["callbacks"] += spent[0]
        stats["trial_seconds"].append(own)
        stats["per_trial"].append(
            {"name": arch_name(config["architecture"]), "outcome": str(result.outcome), "seconds": own}
        )
        stats["outcomes"][str(result.outcome)] = stats["outcomes"].get(str(result.outcome), 0) + 1
        return result

    return timed_evaluate


def measure(args: argparse.Namespace, device: torch.device, overrides: list[str], profiler: Any) -> dict:
    """The campaign, its parts timed; the evaluator's own time apart."""
    from .. import data, driver, run, suggest, tracking
    from ..settings import resolve

    stats: dict = {"evaluator": 0.0, "callbacks": 0.0, "outcomes": {}, "trial_seconds": [], "per_trial": []}
    with tempfile.TemporaryDirectory(prefix="archsearch-bench-") as tmp:
        runs = Path(tmp) / "runs"
        space_path = args.space or str(Path(tmp) / "bench_overhead.yaml")
        if not args.space:
            Path(space_path).write_text(OVERHEAD_SPACE)
        settings = resolve(
            space_path,
            overrides,
            name="bench-overhead",
            device=args.device,
            runs=runs,
            quiet=True,
            data_dir=data_dir(args),
        )
        # one-off, before launch: torch's lazy imports (the first optimizer imports torch._dynamo,
        # seconds), which the first trial of any process pays; not what this benchmark is about
        t = time.perf_counter()
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
        warmup = time.perf_counter() - t
        t = time.perf_counter()  # one-off: the SQLite store and its schema migrations
        store = tracking.Store(f"sqlite:///{(runs / 'mlflow.db').resolve()}", runs)
        store.find(settings.name)
        store_open = time.perf_counter() - t

        timers = Timers()
        for method in MLFLOW_METHODS:
            timers.patch(store.client, method, f"mlflow.{method}", group="mlflow")
        for owner, attr, key in (
            (data, "load_data", "data load"),
            (driver.Loop, "run", "trials loop"),
            (tracking.Store, "create", "campaign create"),
            (tracking.Campaign, "acquire", "campaign lock"),
            (tracking.Campaign, "release", "campaign release"),
            (tracking.Campaign, "set_tags", "campaign tags"),
            (tracking.Campaign, "trials", "history read"),
            (tracking.Campaign, "start_trial", "start_trial"),
            (tracking.TrialRun, "log_epoch", "log_epoch"),
            (tracking.TrialRun, "finish", "finish"),
            (tracking.Campaign, "log_progress", "log_progress"),
            (suggest.Search, "ask", "ask"),
            (suggest.Search, "tell", "tell"),
        ):
            timers.patch(owner, attr, key)
        try:
            sync(device)
            start = time.perf_counter()
            with contextlib.ExitStack() as stack:
                if profiler is not None:
                    stack.callback(profiler.disable)
                    profiler.enable()
                with contextlib.redirect_stdout(io.StringIO()):  # its summary names a folder about to go
                    code = run.launch(settings, store, evaluate_fn=timed_evaluator(stats, device))
            sync(device)
            wall = time.perf_counter() - start
        finally:
            timers.restore()
    if code != 0:
        raise UserError(f"bench overhead: the campaign ended with exit code {code}")
    return {"stats": stats, "timers": timers, "wall": wall, "warmup": warmup, "store_open": store_open}


def summarize(stats: dict, timers: Timers, wall: float, warmup: float, store_open: float) -> dict:
    """The figures of a measured campaign: the ratio, the one-off and the per-trial costs."""
    n = sum(stats["outcomes"].values())
    compute, loop = stats["evaluator"], timers.get("trials loop")
    if n == 0 or compute <= 0:
        raise UserError("bench overhead: no trial was evaluated")
    one_off = {key: sum(timers.get(t) for t in names) for key, names in ONE_OFF.items()}
    one_off["other"] = wall - loop - sum(one_off.values())
    in_loop = {
        "start_trial": timers.get("start_trial"),
        "log_epoch (on_epoch)": stats["callbacks"],
        "finish": timers.get("finish"),
        "log_progress": timers.get("log_progress"),
        "ask (suggest)": timers.get("ask"),
        "tell": timers.get("tell"),
        "history read": timers.get("history read"),
    }
    in_loop["other (driver, progress)"] = loop - compute - sum(in_loop.values())
    calls = {k.removeprefix("mlflow."): v for k, v in timers.calls.items() if k.startswith("mlflow.")}
    seconds = {k.removeprefix("mlflow."): v for k, v in timers.seconds.items() if k.startswith("mlflow.")}
    return {
        "trials": n,
        "outcomes": stats["outcomes"],
        "torch_import_seconds": warmup,
        "store_open_seconds": store_open,
        "wall_seconds": wall,
        "compute_seconds": compute,
        "ratio": wall / compute,
        "loop_ratio": loop / compute,
        "goal": GOAL,
        "one_off_seconds": one_off,
        "loop_seconds": loop,
        "loop_breakdown_seconds": in_loop,
        "evaluator_seconds_per_trial": {
            "median": statistics.median(stats["trial_seconds"]),
            "min": min(stats["trial_seconds"]),
            "max": max(stats["trial_seconds"]),
        },
        "per_trial": stats["per_trial"],
        "mlflow_calls": calls,
        "mlflow_seconds": seconds,
        "mlflow_calls_per_trial": sum(calls.values()) / n,
    }


def show(r: dict, env: dict) -> None:
    """The table: one-off costs, the trials loop and its parts, MLflow's calls, the ratio."""
    n, wall, per = r["trials"], r["wall_seconds"], r["evaluator_seconds_per_trial"]
    print(
        f"bench overhead: {n} trials ({', '.join(f'{v} {k}' for k, v in r['outcomes'].items())}) "
        f"on {env_line(env)}"
    )
    print(f"  evaluator per trial: median {per['median']:.2f} s (min {per['min']:.2f}, max {per['max']:.2f})")

    def row(label: str, seconds: float, per_trial: bool = False) -> tuple[str, ...]:
        each = f"{1e3 * seconds / n:.1f} ms/trial" if per_trial else ""
        return (label, f"{seconds:.3f} s", each, f"{100 * seconds / wall:.1f}% of wall")

    rows = [
        ("before launch: torch lazy imports", f"{r['torch_import_seconds']:.3f} s", "", "(not in wall)"),
        ("before launch: store open + migrations", f"{r['store_open_seconds']:.3f} s", "", "(not in wall)"),
        row("launch, wall", wall),
    ]
    labels = {
        "data_load": "  data load",
        "campaign_create": "  campaign create (params, 3 files)",
        "lock_tags_release": "  lock, tags, release",
        "other": "  other one-off",
    }
    rows += [row(label, r["one_off_seconds"][key]) for key, label in labels.items()]
    rows.append(row("  trials loop (Loop.run)", r["loop_seconds"], True))
    rows.append(row("    evaluator, own time (compute)", r["compute_seconds"], True))
    rows += [row(f"    {label}", seconds, True) for label, seconds in r["loop_breakdown_seconds"].items()]
    print(table(rows))
    calls, seconds = r["mlflow_calls"], r["mlflow_seconds"]
    listed = ", ".join(
        f"{k} {v / n:.1f} ({1e3 * seconds[k] / v:.1f} ms each)"
        for k, v in sorted(calls.items(), key=lambda kv: -seconds[kv[0]])
    )
    print(
        "  MLflow client calls (all calls of the campaign / trials): "
        f"{r['mlflow_calls_per_trial']:.1f} per trial: {listed}"
    )
    verdict = "meets" if r["ratio"] <= r["goal"] else "misses"
    print(
        f"  wall / compute = {r['ratio']:.3f} ({verdict} the goal <= {r['goal']}); "
        f"trials loop / compute = {r['loop_ratio']:.3f}"
    )
