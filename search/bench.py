"""``archsearch bench``: speed goals, measured (never asserted in tests).

- ``layers``: forward throughput of HT-L3-1st and the cost of lnorm;
- ``overhead``: a real campaign of short trials through ``search.run.launch``, its wall time
  against the evaluator's own time (goal: wall / compute <= 1.05), with where the rest goes;
- ``evaluator``: ``search.evaluate.evaluate`` against a bare hand-written torch loop training the
  same network on the same tensors (goal: evaluator / bare <= 1.0);
- ``suggest``: the latency of one TPE (and random) suggestion after 100 and 1,000 recorded trials;
- ``workers``: trials per hour of real campaigns with ``--workers`` 1 and 2 (one torch thread per
  trial) on the CPU, and the speedup (goal: 2 workers >= 1.7x one on 2 cores); with ``--device
  cuda``, with ``--trials-per-gpu`` 1, 2 and 4 on one GPU, and its utilization (nvidia-smi). One
  campaign per setting, timed whole (worker start-up included), so runs differ by a few percent;
- ``search``: search efficiency, in parts (``--parts``, default ``tpe,pruning``: about 25 minutes
  on a 2-core CPU). ``tpe``: TPE against random search, one campaign per seed each (``--seeds``,
  5) of ``--trials`` (60) screened trials (FG11's screening space at 28x28 on 3,000 Fashion-MNIST
  images, 2,000 of them to score; else digits): the median number of trials to a target
  validation accuracy (``--target``; by default the 0.95 quantile of every trial's, pooled over
  both algorithms; a seed that never reaches it counts as N + 1), the same at other quantiles, and
  the median best after N trials (goal: TPE / random <= 0.6 in trials to the target).
  ``pruning``: random-search campaigns (``--pruning-algo tpe`` for TPE) trained (quickstart on
  digits, 27 epochs, 30 trials) with ASHA early stopping (rungs at epochs 3 and 9) and without:
  the training seconds to a target and of the whole campaign, and the best accuracy (goal: the
  same best within 0.003 for at most half the campaign's training time). ``screen``: models
  screened per hour of HT-L3-1st on 2,000 images of 200x200 (1,600 to fit, 400 to score; about a
  minute a model on 2 CPU cores), against the 2011 reference of about 15,000 models in a week of
  GPU time (89 an hour). Every campaign runs its trials in this process (no workers), so that the
  results do not depend on timing, and the JSON keeps every seed's numbers.

Each prints a table and writes JSON (``runs/bench/WHICH.json`` by default) that says which device
and library versions it ran on. Times are medians over repeats after a warm-up, and ratios are
measured inside one run so they compare like with like.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import functools
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models import build_model
from models import functional as fn

from .compile import CompiledSpace, arch_name
from .errors import UserError
from .space import input_of, load_space
from .text import si as _si


def _median_seconds(run, repeats: int, device: torch.device) -> float:
    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    once()  # warm-up
    return statistics.median(once() for _ in range(repeats))


def bench_layers(args: argparse.Namespace) -> int:
    device = _device(args.device)
    args.space = args.space or "spaces/ht_l3_1st.yaml"
    args.batch = args.batch or 16
    args.repeats = args.repeats or 5
    space = load_space(args.space)
    shape, classes = input_of(space, None, None)
    arch = CompiledSpace(space).sample(1)[0]["architecture"]
    model = build_model(arch, shape, classes).to(device).eval()

    results: dict = {
        "benchmark": "layers",
        "space": str(args.space),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch": args.batch,
        "input_shape": list(shape),
    }
    x = torch.randn(args.batch, *shape, device=device)
    rows = []
    for layout in ("contiguous", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        m, xi = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
        with torch.inference_mode():
            seconds = _median_seconds(lambda m=m, xi=xi: m(xi), args.repeats, device)
        results[f"forward_images_per_s_{layout}"] = args.batch / seconds
        rows.append(
            (f"forward ({layout})", f"{seconds * 1e3:.1f} ms", f"{args.batch / seconds:.1f} images/s")
        )

    # lnorm where it runs in the model, against convolutions of the same map (C -> C, "same"
    # padding): a 3x3 one, and one as large as the lnorm's neighbourhood
    results["lnorm"] = []
    model, feature = model.to(memory_format=torch.contiguous_format), x
    with torch.inference_mode():
        for name, stage in model.features.named_children():
            norm, inp = stage[-1], stage[:-1](feature)
            c, a = inp.shape[1], norm.size
            row = {"layer": name, "input": "x".join(map(str, inp.shape[1:])), "size": a}
            row["lnorm_ms"] = 1e3 * _median_seconds(lambda n=norm, i=inp: n(i), args.repeats, device)
            for key, k in (("conv3x3_ms", 3), ("conv_same_size_ms", a)):
                w = torch.randn(c, c, k, k, device=device)
                conv = lambda i=inp, w=w: fn.fbcorr(i, w, 1, "same")  # noqa: E731
                row[key] = 1e3 * _median_seconds(conv, args.repeats, device)
            results["lnorm"].append(row)
            rows.append(
                (
                    f"{name}.norm {a}x{a} on {row['input']}",
                    f"{row['lnorm_ms']:.2f} ms",
                    f"{row['lnorm_ms'] / row['conv3x3_ms']:.2f}x conv 3x3, "
                    f"{row['lnorm_ms'] / row['conv_same_size_ms']:.3f}x conv {a}x{a}",
                )
            )
            feature = norm(inp)  # the stage's output, without running it again

    print(
        f"bench layers: {space.name} on {results['device']} ({results['threads']} threads), "
        f"batch {args.batch}"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]}")
    print("  (conv: a convolution from C to C channels on the same map, 'same' padding)")
    _write(results, _out(args))
    return 0


# ---------------------------------------------------------------- shared helpers


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _environment(device: torch.device | None) -> dict:
    """Where and with what a benchmark ran: device, threads, library versions."""
    from .tracking import versions

    env: dict = {"device": "cpu (hyperopt runs in Python)" if device is None else _device_text(device)}
    env["threads"] = torch.get_num_threads()
    env["cpus"] = os.cpu_count()
    env["platform"] = platform.platform(terse=True)
    env["load_average"] = round(os.getloadavg()[0], 2)  # at the start: other work on the machine
    env.update(versions())
    return env


def _device_text(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()}"


def _env_line(env: dict) -> str:
    busy = " (other work may compete: expect noise)" if env["load_average"] > 1.0 else ""
    return (
        f"{env['device']}, {env['threads']} threads of {env['cpus']} CPUs, load {env['load_average']}{busy}; "
        f"python {env['python']}, torch {env['torch']}, hyperopt {env['hyperopt']}, mlflow {env['mlflow']}"
    )


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(max(map(len, rows)))]
    for r in rows:
        cells = [f"{r[0]:<{widths[0]}}"] + [f"{c:>{widths[i + 1]}}" for i, c in enumerate(r[1:])]
        print("  " + "  ".join(cells).rstrip())


def _write(results: dict, out: str) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


def _out(args: argparse.Namespace) -> str:
    return args.out or f"runs/bench/{args.which}.json"


# ---------------------------------------------------------------- overhead

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


class _Timers:
    """Count calls of patched functions and sum their time (outermost calls only, per key)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._depth: dict[str, int] = {}
        self._undo: list[tuple[Any, str, Any, bool]] = []

    def wrap(self, key: str, fn: Callable, group: str) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth.get(group):  # nested in a call of its group already counted
                return fn(*args, **kwargs)
            self._depth[group] = 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
                self.calls[key] = self.calls.get(key, 0) + 1
                self._depth[group] = 0

        return timed

    def patch(self, owner: Any, attr: str, key: str, group: str | None = None) -> None:
        """Replace ``owner.attr`` (a module's function, a class's method, an instance's method).

        Calls nested in another call of the same ``group`` (default: the key) are not counted:
        MlflowClient.log_text calls log_artifact, for instance.
        """
        own = vars(owner)
        self._undo.append((owner, attr, own.get(attr), attr in own))
        setattr(owner, attr, self.wrap(key, getattr(owner, attr), group or key))

    def restore(self) -> None:
        for owner, attr, original, had in reversed(self._undo):
            if had:
                setattr(owner, attr, original)
            else:
                delattr(owner, attr)
        self._undo.clear()

    def get(self, key: str) -> float:
        return self.seconds.get(key, 0.0)


# Parts of the driver timed by `bench overhead`: (module or class, attribute, label).
_MLFLOW_METHODS = (
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


def bench_overhead(args: argparse.Namespace) -> int:
    """A real campaign through ``search.run.launch``; its wall time against the evaluator's own."""
    from . import campaign, driver, run, suggest, tracking
    from .evaluate import evaluate
    from .settings import resolve

    device = _device(args.device)
    env = _environment(device)
    overrides = [f"search.trials={args.trials or 20}"]
    if args.epochs:
        overrides.append(f"training.epochs={args.epochs}")
    if args.dataset:
        overrides.append(f"data.dataset={args.dataset}")
    overrides += list(args.set or [])

    stats: dict = {"evaluator": 0.0, "callbacks": 0.0, "outcomes": {}, "trial_seconds": [], "per_trial": []}

    def timed_evaluate(config: dict, data: Any, *, on_epoch: Callable | None = None, **kw: Any) -> Any:
        spent = [0.0]

        def callback(epoch: int, metrics: dict) -> None:  # the driver's tracking, not the evaluator's
            t = time.perf_counter()
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            spent[0] += time.perf_counter() - t

        _sync(device)
        start = time.perf_counter()
        result = evaluate(config, data, on_epoch=callback, **kw)
        _sync(device)
        total = time.perf_counter() - start
        stats["evaluator"] += total - spent[0]
        stats["callbacks"] += spent[0]
        stats["trial_seconds"].append(total - spent[0])
        stats["per_trial"].append(
            {
                "name": arch_name(config["architecture"]),
                "outcome": result.outcome,
                "seconds": total - spent[0],
            }
        )
        stats["outcomes"][result.outcome] = stats["outcomes"].get(result.outcome, 0) + 1
        return result

    with tempfile.TemporaryDirectory(prefix="archsearch-bench-") as tmp:
        runs = Path(tmp) / "runs"
        if args.space:
            space_path = args.space
        else:
            space_path = str(Path(tmp) / "bench_overhead.yaml")
            Path(space_path).write_text(OVERHEAD_SPACE)
        settings = resolve(
            space_path, overrides, name="bench-overhead", device=args.device, runs=runs, quiet=True
        )

        # one-off, before launch: torch's lazy imports (the first optimizer imports torch._dynamo,
        # seconds), which the first trial of any process pays; not what this benchmark is about
        t = time.perf_counter()
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
        warmup_seconds = time.perf_counter() - t

        t = time.perf_counter()  # one-off: the SQLite store and its schema migrations
        store = tracking.Store(f"sqlite:///{(runs / 'mlflow.db').resolve()}", runs)
        store.find(settings.name)
        store_seconds = time.perf_counter() - t

        timers = _Timers()
        for method in _MLFLOW_METHODS:
            timers.patch(store.client, method, f"mlflow.{method}", group="mlflow")
        for owner, attr, key in (
            (campaign, "load_data", "data load"),
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
        profiler = cProfile.Profile() if args.profile else None
        try:
            _sync(device)
            start = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            with contextlib.redirect_stdout(io.StringIO()):  # its summary names a folder about to go
                code = run.launch(settings, store, evaluate_fn=timed_evaluate)
            if profiler is not None:
                profiler.disable()
            _sync(device)
            wall = time.perf_counter() - start
        finally:
            timers.restore()
        if code != 0:
            raise UserError(f"bench overhead: the campaign ended with exit code {code}")

    n = sum(stats["outcomes"].values())
    compute = stats["evaluator"]
    loop = timers.get("trials loop")
    one_off = wall - loop
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
    mlflow_calls = {k.removeprefix("mlflow."): v for k, v in timers.calls.items() if k.startswith("mlflow.")}
    mlflow_seconds = {
        k.removeprefix("mlflow."): v for k, v in timers.seconds.items() if k.startswith("mlflow.")
    }
    if n == 0 or compute <= 0:
        raise UserError("bench overhead: no trial was evaluated")
    results: dict = {
        "benchmark": "overhead",
        **env,
        "space": args.space or "built-in bench_overhead (digits)",
        "overrides": overrides,
        "trials": n,
        "outcomes": stats["outcomes"],
        "torch_import_seconds": warmup_seconds,
        "store_open_seconds": store_seconds,
        "wall_seconds": wall,
        "compute_seconds": compute,
        "ratio": wall / compute,
        "loop_ratio": loop / compute,
        "goal": 1.05,
        "one_off_seconds": {
            "data_load": timers.get("data load"),
            "campaign_create": timers.get("campaign create"),
            "lock_tags_release": timers.get("campaign lock")
            + timers.get("campaign tags")
            + timers.get("campaign release"),
            "other": one_off
            - timers.get("data load")
            - timers.get("campaign create")
            - timers.get("campaign lock")
            - timers.get("campaign tags")
            - timers.get("campaign release"),
        },
        "loop_seconds": loop,
        "loop_breakdown_seconds": in_loop,
        "evaluator_seconds_per_trial": {
            "median": statistics.median(stats["trial_seconds"]),
            "min": min(stats["trial_seconds"]),
            "max": max(stats["trial_seconds"]),
        },
        "per_trial": stats["per_trial"],
        "mlflow_calls": mlflow_calls,
        "mlflow_seconds": mlflow_seconds,
        "mlflow_calls_per_trial": sum(mlflow_calls.values()) / max(1, n),
    }

    per = results["evaluator_seconds_per_trial"]
    print(
        f"bench overhead: {n} trials ({', '.join(f'{v} {k}' for k, v in stats['outcomes'].items())}) "
        f"on {_env_line(env)}"
    )
    print(f"  evaluator per trial: median {per['median']:.2f} s (min {per['min']:.2f}, max {per['max']:.2f})")

    def row(label: str, seconds: float, per_trial: bool = False) -> tuple[str, ...]:
        share = f"{100 * seconds / wall:.1f}% of wall"
        each = f"{1e3 * seconds / max(1, n):.1f} ms/trial" if per_trial else ""
        return (label, f"{seconds:.3f} s", each, share)

    rows = [
        ("before launch: torch lazy imports", f"{warmup_seconds:.3f} s", "", "(not in wall)"),
        ("before launch: store open + migrations", f"{store_seconds:.3f} s", "", "(not in wall)"),
    ]
    rows.append(row("launch, wall", wall))
    for key, label in (
        ("data_load", "  data load"),
        ("campaign_create", "  campaign create (params, 3 files)"),
        ("lock_tags_release", "  lock, tags, release"),
        ("other", "  other one-off"),
    ):
        rows.append(row(label, results["one_off_seconds"][key]))
    rows.append(row("  trials loop (run_campaign)", loop, True))
    rows.append(row("    evaluator, own time (compute)", compute, True))
    for label, seconds in in_loop.items():
        rows.append(row(f"    {label}", seconds, True))
    _print_table(rows)
    calls = ", ".join(
        f"{k} {v / max(1, n):.1f} ({1e3 * mlflow_seconds[k] / v:.1f} ms each)"
        for k, v in sorted(mlflow_calls.items(), key=lambda kv: -mlflow_seconds[kv[0]])
    )
    print(
        f"  MLflow client calls (all calls of the campaign / trials): "
        f"{results['mlflow_calls_per_trial']:.1f} per trial: {calls}"
    )
    verdict = "meets" if results["ratio"] <= results["goal"] else "misses"
    print(
        f"  wall / compute = {results['ratio']:.3f} ({verdict} the goal <= {results['goal']}); "
        f"trials loop / compute = {results['loop_ratio']:.3f}"
    )
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(
            f"  profile of the campaign: {args.profile} (python -m pstats {args.profile}); profiling slows "
            "Python code more than torch's kernels: take the ratios from a run without --profile"
        )
    _write(results, _out(args))
    return 0


# ---------------------------------------------------------------- evaluator


def _data_dir(args: argparse.Namespace) -> Path | None:
    """--data-dir, where the benchmarks read the dataset's files (None: the cache, the system copy)."""
    return Path(args.data_dir) if getattr(args, "data_dir", None) else None


def _default_dataset(data_dir: Path | None = None) -> str:
    """fashion-mnist where its files are at hand (``data_dir``, the system copy), else digits."""
    from .data import REMOTES, SYSTEM_DIR, _has_all

    if data_dir is not None:
        return "fashion-mnist" if _has_all(data_dir, REMOTES["fashion-mnist"]) else "digits"
    return "fashion-mnist" if (Path(SYSTEM_DIR) / "fashion-mnist").is_dir() else "digits"


def _bare_train(
    arch: dict, recipe: dict, data: Any, limits: Any, seed: int, memory_format: torch.memory_format
) -> float:
    """The hand-written reference: build, then permute, slice, forward, loss, backward, step."""
    from .train import amp_of, make_optimizer

    device = data.x_train.device
    amp, scaled = amp_of(device)
    torch.manual_seed(seed)
    model = build_model(arch, data.input_shape, data.n_classes, limits=limits, seed=seed)
    model = model.to(device, memory_format=memory_format)
    opt = make_optimizer(recipe, model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=scaled)
    x, y, bs = data.x_train, data.y_train, recipe["batch_size"]
    n, val_acc = len(x), 0.0
    for _ in range(recipe["epochs"]):
        model.train()
        perm = torch.randperm(n, device=device)
        for i in range(0, n - 1, bs):  # a last batch of one image is left out (batch norm)
            idx = perm[i : i + bs]
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        model.eval()  # validate: accuracy and mean loss, as the evaluator does
        correct = torch.zeros((), dtype=torch.long, device=device)
        val_loss = torch.zeros((), device=device)
        with torch.no_grad():
            for i in range(0, len(data.x_val), 1024):
                xv, yv = data.x_val[i : i + 1024], data.y_val[i : i + 1024]
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    out = model(xv).float()
                val_loss += F.cross_entropy(out, yv, reduction="sum")
                correct += (out.argmax(1) == yv).sum()
        val_acc, _ = correct.item() / max(1, len(data.x_val)), val_loss.item() / max(1, len(data.x_val))
    return val_acc


def bench_evaluator(args: argparse.Namespace) -> int:
    """search.evaluate.evaluate against a bare torch loop: same net, data, recipe and epochs."""
    import copy

    from models import InvalidArchitecture, plan_model

    from .data import load_data
    from .evaluate import evaluate
    from .settings import resolve

    device = _device(args.device)
    env = _environment(device)
    space_path = args.space or "spaces/quickstart.yaml"
    space = resolve(space_path, list(args.set or []), name="bench").space
    dataset = args.dataset or _default_dataset(_data_dir(args))
    subset = args.subset or (None if dataset == "digits" else 10000)
    t = time.perf_counter()
    data = load_data(
        dataset,
        input_shape=space.data["input_shape"],
        subset=subset,
        validation=space.data["validation"],
        split_seed=space.data["split_seed"],
        cache_dir=Path("runs/data"),
        data_dir=_data_dir(args),
    ).to(device)
    load_seconds = time.perf_counter() - t

    # the first valid architecture the space draws for this data
    for config in CompiledSpace(space).sample(50, seed=args.seed):
        try:
            plan = plan_model(config["architecture"], data.input_shape, data.n_classes, space.constraints)
        except InvalidArchitecture:
            continue
        break
    else:
        raise UserError(f"{space_path}: no valid architecture among 50 draws for {dataset}")
    config = copy.deepcopy(config)
    recipe = config["training"]
    # the same work on both sides: constant learning rate (the evaluator still steps its scheduler),
    # no augmentation, no label smoothing
    recipe["schedule"] = {"kind": "constant"}
    recipe["augmentation"] = {"hflip": False, "translate": 0, "cutout": 0}
    recipe["label_smoothing"] = 0.0
    recipe["epochs"] = args.epochs or (100 if dataset == "digits" else 2)  # seconds per measurement
    if args.batch:
        recipe["batch_size"] = args.batch
    arch, seed, limits = config["architecture"], args.seed, space.constraints

    def run_evaluator(cfg: dict, d: Any) -> tuple[float, float, float]:
        _sync(device)
        start = time.perf_counter()
        result = evaluate(cfg, d, seed=seed, limits=limits)
        _sync(device)
        if result.outcome != "ok":
            raise UserError(f"bench evaluator: the trial ended {result.outcome}: {result.reason}")
        return time.perf_counter() - start, result.train_seconds, result.val_acc

    def run_bare(fmt: torch.memory_format, r: dict, d: Any) -> tuple[float, float]:
        _sync(device)
        start = time.perf_counter()
        acc = _bare_train(arch, r, d, limits, seed, fmt)
        _sync(device)
        return time.perf_counter() - start, acc

    variants = {
        "evaluator": lambda cfg, d: run_evaluator(cfg, d),
        "bare_contiguous": lambda cfg, d: run_bare(torch.contiguous_format, cfg["training"], d),
        "bare_channels_last": lambda cfg, d: run_bare(torch.channels_last, cfg["training"], d),
    }
    # warm-up: one short epoch of each (allocator, kernels' first calls)
    small = dataclasses.replace(data, x_train=data.x_train[:512], y_train=data.y_train[:512])
    warm = {**config, "training": {**recipe, "epochs": 1}}
    for fn_ in variants.values():
        fn_(warm, small)

    times: dict[str, list[float]] = {k: [] for k in variants}
    accs: dict[str, float] = {}
    train_only: list[float] = []
    names = list(variants)
    for rep in range(args.repeats or 3):
        for name in names[rep % 3 :] + names[: rep % 3]:  # rotate the order each repeat
            out = variants[name](config, data)
            times[name].append(out[0])
            accs[name] = out[-1]
            if name == "evaluator":
                train_only.append(out[1])

    med = {k: statistics.median(v) for k, v in times.items()}
    bare = min(med["bare_contiguous"], med["bare_channels_last"])
    # the same ratio within each repeat (runs close in time share the machine's state)
    paired = [
        e / min(c, cl)
        for e, c, cl in zip(
            times["evaluator"], times["bare_contiguous"], times["bare_channels_last"], strict=True
        )
    ]
    results: dict = {
        "benchmark": "evaluator",
        **env,
        "space": space_path,
        "sample_seed": seed,
        "arch": arch,
        "name": arch_name(arch),
        "params": plan.params,
        "macs": plan.macs,
        "recipe": recipe,
        "dataset": dataset,
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "data_load_seconds": load_seconds,
        "repeats": len(times["evaluator"]),
        "seconds": times,
        "median_seconds": med,
        "evaluator_train_median_seconds": statistics.median(train_only),
        "val_acc": accs,
        "bare_best": min(("bare_contiguous", "bare_channels_last"), key=med.__getitem__),
        "ratio": med["evaluator"] / bare,
        "train_ratio": statistics.median(train_only) / bare,
        "ratio_paired": statistics.median(paired),
        "ratios_per_repeat": paired,
        "goal": 1.0,
    }
    images = len(data.y_train) * recipe["epochs"]
    print(
        f"bench evaluator: {arch_name(arch)} ({plan.params:,} params, {_si(plan.macs)} MACs/image) from "
        f"{space_path}, {dataset} {len(data.y_train):,} train / {len(data.y_val):,} val, "
        f"{recipe['epochs']} epochs of batch {recipe['batch_size']}, {recipe['optimizer']['kind']}"
    )
    print(f"  on {_env_line(env)}; medians of {results['repeats']} runs, order rotated")
    rows = [("", "median", "images/s", "runs", "val_acc")]
    for name, label in (
        ("evaluator", "search.evaluate.evaluate"),
        ("bare_contiguous", "bare loop, contiguous"),
        ("bare_channels_last", "bare loop, channels_last"),
    ):
        rows.append(
            (
                label,
                f"{med[name]:.2f} s",
                f"{images / med[name]:,.0f}",
                " ".join(f"{s:.2f}" for s in times[name]),
                f"{accs[name]:.4f}",
            )
        )
    _print_table(rows)
    verdict = "meets" if results["ratio"] <= results["goal"] else "misses"
    print(
        f"  evaluator / faster bare loop ({results['bare_best'].removeprefix('bare_')}) = "
        f"{results['ratio']:.3f} ({verdict} the goal <= 1.0); its train() part alone: "
        f"{results['train_ratio']:.3f}; paired within each repeat: median {results['ratio_paired']:.3f} "
        f"({', '.join(f'{r:.3f}' for r in paired)})"
    )
    _write(results, _out(args))
    return 0


# ---------------------------------------------------------------- suggest


def bench_suggest(args: argparse.Namespace) -> int:
    """Time of one suggestion (Search.ask) after N recorded trials, TPE and random."""
    import numpy as np

    from .settings import resolve
    from .suggest import Search

    env = _environment(None)
    space_path = args.space or "spaces/pinto_cox.yaml"
    space = resolve(space_path, list(args.set or []), name="bench").space
    compiled = CompiledSpace(space)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        raise UserError(f"--sizes: expected numbers such as 100,1000, got {args.sizes!r}") from None
    if not sizes or sizes[0] < 1:
        raise UserError(f"--sizes: expected numbers >= 1, got {args.sizes!r}")
    repeats = args.repeats or 7
    settings = dict(space.search)
    tpe_search = Search(compiled, {**settings, "algo": "tpe"})
    rand_search = Search(compiled, {**settings, "algo": "random"})
    rand_search.trials = tpe_search.trials  # one history; random draws fill it fast
    rng = np.random.default_rng(args.seed)

    def timed_asks(search: Search, first: int) -> list[float]:
        search.ask(first)  # warm-up
        out = []
        for k in range(1, repeats + 1):
            t = time.perf_counter()
            search.ask(first + k)  # asks leave the history as it was
            out.append(time.perf_counter() - t)
        return out

    rows = [("history", "TPE ask", "random ask", "tell", "fill")]
    measured = []
    recorded, fill_seconds, tells = 0, 0.0, []
    for size in sizes:
        t = time.perf_counter()
        while recorded < size:
            vals, _ = rand_search.ask(recorded)
            t_tell = time.perf_counter()
            tpe_search.tell(recorded, vals, float(rng.uniform(0.1, 0.9)))
            tells.append(time.perf_counter() - t_tell)
            recorded += 1
        fill_seconds += time.perf_counter() - t
        tpe_times = timed_asks(tpe_search, size + 1)
        rand_times = timed_asks(rand_search, size + 1 + repeats + 1)
        entry = {
            "history": size,
            "tpe_ms": 1e3 * statistics.median(tpe_times),
            "random_ms": 1e3 * statistics.median(rand_times),
            "tell_ms": 1e3 * statistics.mean(tells[-10:]),
            "tpe_ms_runs": [1e3 * s for s in tpe_times],
            "random_ms_runs": [1e3 * s for s in rand_times],
            "fill_seconds": fill_seconds,
        }
        measured.append(entry)
        rows.append(
            (
                f"{size:,} trials",
                f"{entry['tpe_ms']:.1f} ms",
                f"{entry['random_ms']:.2f} ms",
                f"{entry['tell_ms']:.2f} ms",
                f"{fill_seconds:.1f} s",
            )
        )

    results = {
        "benchmark": "suggest",
        **env,
        "space": space_path,
        "hyperparameters": len(compiled.labels),
        "tpe": settings["tpe"],
        "repeats": repeats,
        "sizes": measured,
    }
    t = settings["tpe"]
    print(
        f"bench suggest: {space.name} ({len(compiled.labels)} hyperparameters), TPE with "
        f"{t['candidates']} candidates, gamma {t['gamma']}, {t['startup_trials']} startup trials; "
        f"history of random configs with random losses"
    )
    print(f"  on {_env_line(env)}; median of {repeats} asks after one warm-up")
    _print_table(rows)
    print(
        "  (ask: Search.ask, one suggestion, decoded; tell: Search.tell, mean of the last 10 of the fill; "
        "fill: recording the history so far, random asks and tells)"
    )
    _write(results, _out(args))
    return 0


# ---------------------------------------------------------------- workers

# `bench workers` on CPU, by default: spaces/quickstart.yaml on 10,000 Fashion-MNIST images, 2 epochs
# (trials of about 3 to 20 seconds on one thread), random search so that every run trains the same
# trials: about 110 s with one worker on a 2-core CPU and 55 to 60 s with two, 3 minutes in all.
# Without Fashion-MNIST: all of digits at 28x28, for about as many training images per trial.
WORKERS_CPU = {
    "space": "spaces/quickstart.yaml",
    "trials": 12,
    "epochs": 2,
    "subset": 10000,
    "digits_epochs": 15,
}
# `bench workers --device cuda`: the default space for real campaigns, on all of Fashion-MNIST
WORKERS_GPU = {"space": "spaces/pinto_cox.yaml", "trials": 16, "epochs": 3}
# W workers on at least W cores give at least this share of W times the trials per hour of one
WORKERS_EFFICIENCY = 0.85
GPU_QUERY = ("nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits")


def parse_gpu_query(text: str) -> list[tuple[float | None, float | None]]:
    """The lines of ``nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits``
    as (utilization %, memory used MiB), one per GPU listed. A value nvidia-smi cannot tell
    (``[N/A]``, ``[Not Supported]``) is None; a line that is not two fields, one of them a number, is
    left out."""
    out: list[tuple[float | None, float | None]] = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2:
            continue
        values: list[float | None] = []
        for f in fields:
            try:
                values.append(float(f))
            except ValueError:
                values.append(None)
        if values != [None, None]:
            out.append((values[0], values[1]))
    return out


class GpuSampler:
    """One GPU's utilization and memory, sampled with nvidia-smi every ``every`` seconds in a
    background thread between ``start`` and ``stop`` (or over a ``with`` block).

    Never raises for want of nvidia-smi: when it is missing the sampler takes no samples, when
    it fails the sampler stops (keeping the samples it took), ``error`` says why, and
    :meth:`summary` has None where no sample gives a number.
    ``gpu``: nvidia-smi's ``-i`` (an index or UUID); None: the first GPU it lists.
    """

    def __init__(self, gpu: str | None = None, every: float = 0.5, command: Sequence[str] = GPU_QUERY):
        self.every = every
        self.command = [*command, *(["-i", gpu] if gpu is not None else [])]
        self.samples: list[tuple[float, float | None, float | None]] = []  # (seconds, util %, MiB)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()

    def __enter__(self) -> GpuSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        exe = shutil.which(self.command[0])
        if exe is None:
            self.error = f"{self.command[0]} not found on PATH"
            return
        self.command[0] = exe
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="archsearch-gpu-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while self.sample() and not self._stop.wait(self.every):
            pass

    def sample(self) -> bool:
        """Take one sample; False when nvidia-smi fails (the sampler then stops)."""
        at = time.monotonic() - self._t0
        try:
            done = subprocess.run(
                self.command, capture_output=True, text=True, timeout=max(5.0, 4 * self.every), check=False
            )
        except (OSError, subprocess.SubprocessError) as e:
            self.error = f"{Path(self.command[0]).name}: {e}"
            return False
        lines = parse_gpu_query(done.stdout) if done.returncode == 0 else []
        if not lines:
            said = (done.stderr or done.stdout).strip().splitlines()
            self.error = f"{Path(self.command[0]).name} exited with code {done.returncode}" + (
                f": {said[0][:200]}" if said else ""
            )
            return False
        self.samples.append((at, *lines[0]))
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def summary(self) -> dict:
        """Mean and max utilization (%), the first and the peak memory used (MiB); None: not known."""
        util = [u for _, u, _ in self.samples if u is not None]
        mem = [m for _, _, m in self.samples if m is not None]
        return {
            "samples": len(self.samples),
            "utilization_mean": statistics.fmean(util) if util else None,
            "utilization_max": max(util) if util else None,
            "memory_first_mib": mem[0] if mem else None,
            "memory_peak_mib": max(mem) if mem else None,
            "sampler_error": self.error,
        }


def _cpu_seconds() -> dict[str, float | None]:
    """CPU time so far: this process, its reaped children (the workers, once joined), and the
    whole machine (busy and stolen by the hypervisor, from /proc/stat; None elsewhere)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    out: dict[str, float | None] = {
        "driver": me.ru_utime + me.ru_stime,
        "workers": kids.ru_utime + kids.ru_stime,
        "machine": None,
        "steal": None,
    }
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
        out["machine"] = (user + nice + system + irq + softirq) / tick
        out["steal"] = steal / tick
    return out


def _timed_campaign(
    space_path: str, overrides: list[str], name: str, sampler: GpuSampler | None = None, **run: Any
) -> dict:
    """One campaign through ``search.run.launch`` in a fresh runs folder, timed from launch to its
    return (worker start-up and data loading included), with its trials as MLflow recorded them."""
    from . import tracking
    from .run import launch
    from .settings import resolve

    with tempfile.TemporaryDirectory(prefix="archsearch-bench-") as tmp:
        runs = Path(tmp) / "runs"
        settings = resolve(space_path, overrides, name=name, runs=runs, quiet=True, **run)
        # before the clock: the SQLite store and its schema migrations (seconds, once per store)
        store = tracking.Store(f"sqlite:///{(runs / 'mlflow.db').resolve()}", runs)
        store.find(settings.name)
        load = os.getloadavg()[0]
        cpu0 = _cpu_seconds()
        began = time.time()  # MLflow's clock, for the trials' start times
        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            if sampler is not None:
                stack.enter_context(sampler)
            with contextlib.redirect_stdout(io.StringIO()):  # its summary names a folder about to go
                code = launch(settings, store)
        wall = time.perf_counter() - start
        cpu1 = _cpu_seconds()
        if code != 0:
            raise UserError(f"bench workers: campaign {name} ended with exit code {code}")
        records = store.require(settings.name).trials()

    ended = [r for r in records if r.outcome.ended and r.start_time and r.end_time]
    if not ended:
        raise UserError(f"bench workers: campaign {name} ended no trial")
    ended.sort(key=lambda r: r.start_time)
    seconds = [r.end_time - r.start_time for r in ended]
    train = [r.metrics["train_seconds"] for r in ended if r.metrics.get("train_seconds")]
    # time a trial's run spent outside the evaluator's training: the first trial of each worker
    # waits for its process to start and load the data; the others show the per-trial overhead
    workers = run.get("workers") or 1
    first: list[float] = []
    rest: list[float] = []
    for i, r in enumerate(ended):
        if r.metrics.get("train_seconds") is not None:  # ok trials (an invalid one never trains)
            (first if i < workers else rest).append(r.end_time - r.start_time - r.metrics["train_seconds"])
    cpu = {k: (cpu1[k] - cpu0[k]) if cpu0[k] is not None and cpu1[k] is not None else None for k in cpu0}
    other = None
    if cpu["machine"] is not None:
        other = max(0.0, cpu["machine"] - cpu["driver"] - cpu["workers"])
    outcomes: dict[str, int] = {}
    for r in ended:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    return {
        "trials": len(ended),
        "outcomes": outcomes,
        "wall_seconds": wall,
        "trials_per_hour": 3600 * len(ended) / wall,
        "trial_seconds_mean": statistics.fmean(seconds),
        "train_seconds_mean": statistics.fmean(train) if train else None,
        "trial_seconds_sum": sum(seconds),
        # launch's start to the first trial run's: the driver's data load, the store's campaign
        "first_trial_after_seconds": ended[0].start_time - began,
        "first_trials_outside_training_seconds": statistics.fmean(first) if first else None,
        "other_trials_outside_training_seconds": statistics.median(rest) if rest else None,
        "per_trial": [
            {
                "trial": r.trial,
                "name": r.name,
                "outcome": r.outcome,
                "seconds": r.end_time - r.start_time,
                "train_seconds": r.metrics.get("train_seconds"),
                "val_acc": r.metrics.get("val_acc"),
                "epochs_done": r.metrics.get("epochs_done"),
                "start_offset_seconds": r.start_time - began,
            }
            for r in ended
        ],
        "load_average_before": round(load, 2),
        "cpu_seconds": {
            "driver": cpu["driver"],
            "workers": cpu["workers"],
            "machine": cpu["machine"],
            "other_processes": other,
            "steal": cpu["steal"],
        },
    }


def _workers_overrides(args: argparse.Namespace, defaults: dict, dataset: str | None) -> list[str]:
    """The benchmark's settings as overrides: trials, epochs, dataset, random search (the same trials
    in every run), then the user's --set."""
    overrides = [
        f"search.trials={args.trials or defaults['trials']}",
        "search.algo=random",
    ]
    builtin_digits = not args.space and "subset" in defaults and dataset == "digits"
    if args.epochs or not args.space:
        epochs = args.epochs or defaults["digits_epochs" if builtin_digits else "epochs"]
        overrides.append(f"training.epochs={epochs}")
    if dataset:
        overrides.append(f"data.dataset={dataset}")
    if args.subset:
        overrides.append(f"data.subset={args.subset}")
    elif builtin_digits:  # all of its training images, at the MNIST family's size
        overrides += ["data.subset=null", "data.input_shape=[1, 28, 28]"]
    elif not args.space and "subset" in defaults:  # the built-in CPU setting
        overrides.append(f"data.subset={defaults['subset']}")
    return overrides + list(args.set or [])


def bench_workers(args: argparse.Namespace) -> int:
    """Trials per hour of a real campaign with 1, 2, ... worker processes (CPU), or with 1, 2, 4
    trials packed on one GPU (``--device cuda``), and the speedup over the first setting.

    Each setting runs the same campaign (space, seed, random search: the same trials) through
    ``search.run.launch`` in a fresh temporary runs folder whose SQLite store is created before the
    clock starts. The wall time is launch's: it includes loading the data, spawning the worker
    processes (each imports torch and loads the dataset: seconds) and the tail where fewer trials
    than workers are left, as a real campaign pays them. On CPU every trial gets one torch thread
    whatever the number of workers, so that the speedup measures running trials side by side.
    """
    from .executor import cpu_count, visible_gpus
    from .settings import resolve

    gpu = args.device == "cuda"
    env = _environment(_device(args.device))
    if gpu and args.workers:
        raise UserError("--workers: with --device cuda, give --trials-per-gpu (trials packed on one GPU)")
    if not gpu and args.trials_per_gpu:
        raise UserError("--trials-per-gpu: only with --device cuda; on CPU give --workers")
    defaults = WORKERS_GPU if gpu else WORKERS_CPU
    space_path = args.space or defaults["space"]
    dataset = args.dataset or (None if gpu or args.space else _default_dataset(_data_dir(args)))
    overrides = _workers_overrides(args, defaults, dataset)
    levels = list(dict.fromkeys((args.trials_per_gpu or [1, 2, 4]) if gpu else (args.workers or [1, 2])))
    resolved = resolve(space_path, overrides, name="bench")  # errors in the settings before any run
    space, epochs = resolved.space, (resolved.raw.get("training") or {}).get("epochs")

    header = (
        f"bench workers: {space.name} ({space_path}) on {space.data['dataset']}, "
        f"{space.search['trials']} trials of {epochs} epochs, random search seed "
        f"{space.search['seed']} (the same trials in every run)"
        + ("" if gpu else ", 1 torch thread per trial")
    )
    print(header, flush=True)
    campaigns = []
    for level in levels:
        if gpu:
            gpu_id = (visible_gpus() or [None])[0]
            sampler = GpuSampler(gpu_id, every=0.5)
            row = _timed_campaign(
                space_path,
                overrides,
                f"bench-workers-gpu{level}",
                sampler=sampler,
                device="cuda",
                workers=level,
                trials_per_gpu=level,
                data_dir=_data_dir(args),
            )
            row = {
                "trials_per_gpu": level,
                "workers": level,
                "gpu": gpu_id,
                **row,
                "gpu_usage": sampler.summary(),
            }
        else:
            row = _timed_campaign(
                space_path,
                overrides,
                f"bench-workers-{level}",
                device="cpu",
                workers=level,
                threads=1,
                data_dir=_data_dir(args),
            )
            row = {"workers": level, "threads_per_trial": 1, **row}
        # the share of the run's wall time the workers spent in trial runs
        row["busy"] = row["trial_seconds_sum"] / (level * row["wall_seconds"])
        campaigns.append(row)
        print(
            f"  {'trials per GPU' if gpu else 'workers'} {level}: {row['trials']} trials in "
            f"{row['wall_seconds']:.1f} s",
            flush=True,
        )
    base, cores = campaigns[0], cpu_count()
    key = "trials_per_gpu" if gpu else "workers"
    for row in campaigns:
        row["speedup"] = row["trials_per_hour"] / base["trials_per_hour"]
        row["goal"], row["goal_met"] = None, None
        if not gpu and base[key] < row[key] <= cores:
            row["goal"] = WORKERS_EFFICIENCY * row[key] / base[key]
            row["goal_met"] = row["speedup"] >= row["goal"]
        # where the speedup comes from (exactly, when both ended as many trials): the ratio of
        # trials at once x the ratio of busy shares (start-up, tail, driver) x how much faster
        # the same trials ran (contention between trials, or the machine's speed drifting)
        row["busy_ratio"] = row["busy"] / base["busy"]
        row["trial_speed_ratio"] = base["trial_seconds_sum"] / row["trial_seconds_sum"]
        row["train_time_ratio_median"] = _paired_train_ratio(row, base)

    results: dict = {
        "benchmark": "workers",
        **env,
        "mode": "gpu packing" if gpu else "cpu workers",
        "space": space_path,
        "dataset": space.data["dataset"],
        "overrides": overrides,
        "trials": space.search["trials"],
        "epochs": epochs,
        "levels": levels,
        "threads_per_trial": None if gpu else 1,  # cuda: the executor's default, cores / workers
        "cores": cores,  # this process may use (the goal is for up to as many workers)
        "efficiency_goal": None if gpu else WORKERS_EFFICIENCY,
        "campaigns": campaigns,
    }

    print(f"  on {_env_line(env)}")
    if gpu:
        rows = [
            (
                "trials/GPU",
                "trials",
                "wall",
                "trials/hour",
                "trial s",
                "busy",
                "speedup",
                "GPU util mean",
                "max",
                "peak mem",
            )
        ]
        for r in campaigns:
            u = r["gpu_usage"]
            known = u["utilization_mean"] is not None
            rows.append(
                (
                    str(r["trials_per_gpu"]),
                    _trials_text(r),
                    f"{r['wall_seconds']:.1f} s",
                    f"{r['trials_per_hour']:.0f}",
                    f"{r['trial_seconds_mean']:.1f}",
                    f"{100 * r['busy']:.0f}%",
                    f"{r['speedup']:.2f}x",
                    f"{u['utilization_mean']:.0f}%" if known else "n/a",
                    f"{u['utilization_max']:.0f}%" if u["utilization_max"] is not None else "n/a",
                    f"{u['memory_peak_mib']:,.0f} MiB" if u["memory_peak_mib"] is not None else "n/a",
                )
            )
        _print_table(rows)
        _print_startup(campaigns, "trials_per_gpu")
        errors = {r["gpu_usage"]["sampler_error"] for r in campaigns} - {None}
        print(
            "  (trial s: mean of the trial runs' MLflow start to end; GPU: nvidia-smi every 0.5 s over "
            "the whole run, worker start-up included"
            + (f"; n/a: {'; '.join(sorted(errors))}" if errors else "")
            + ")"
        )
    else:
        rows = [
            (
                "workers",
                "trials",
                "wall",
                "trials/hour",
                "speedup",
                "goal",
                "trial s",
                "train s",
                "x first",
                "busy",
                "others/steal",
            )
        ]
        for r in campaigns:
            other, steal = r["cpu_seconds"]["other_processes"], r["cpu_seconds"]["steal"]
            goal = "" if r["goal"] is None else f">= {r['goal']:.2f}x {'met' if r['goal_met'] else 'MISSED'}"
            ratio = r["train_time_ratio_median"]
            rows.append(
                (
                    str(r["workers"]),
                    _trials_text(r),
                    f"{r['wall_seconds']:.1f} s",
                    f"{r['trials_per_hour']:.0f}",
                    f"{r['speedup']:.2f}x",
                    goal,
                    f"{r['trial_seconds_mean']:.2f}",
                    f"{r['train_seconds_mean']:.2f}" if r["train_seconds_mean"] else "n/a",
                    f"{ratio:.2f}" if ratio is not None else "n/a",
                    f"{100 * r['busy']:.0f}%",
                    f"{other:.1f}/{steal:.1f} s" if other is not None and steal is not None else "n/a",
                )
            )
        _print_table(rows)
        print(
            "  (1 torch thread per trial; trial s: mean of the trial runs' MLflow start to end, worker "
            "start-up included in the first ones; train s: the evaluator's training and validation; "
            "x first: median over the same trials of train s against the first run's; busy: trial time "
            "/ (workers x wall); others/steal: CPU seconds taken during the run by other processes of "
            "this machine and by the hypervisor for other machines: noise)"
        )
        _print_startup(campaigns, "workers")
        judged = [r for r in campaigns if r["goal"] is not None]
        for r in judged:
            verdict = "meets" if r["goal_met"] else "misses"
            print(
                f"  {r['workers']} workers: {r['speedup']:.2f}x the trials/hour of {base['workers']} "
                f"({verdict} the goal >= {r['goal']:.2f}x: {WORKERS_EFFICIENCY:.0%} of linear while workers "
                f"<= {cores} cores) = {r['workers'] / base['workers']:g} at once x {r['busy_ratio']:.2f} "
                f"busy share x {r['trial_speed_ratio']:.2f} trial speed (the same trials' run time)"
            )
        for r in campaigns:
            stolen = r["cpu_seconds"]["steal"]
            if stolen is not None and stolen > 0.02 * cores * r["wall_seconds"]:
                print(
                    f"  note: with {r['workers']} workers the hypervisor took {stolen:.1f} CPU seconds "
                    f"({100 * stolen / (cores * r['wall_seconds']):.0f}% of the CPUs) for other machines; "
                    "the trial speed drifts with it: run again to compare"
                )
        if not judged:
            print(f"  (no goal: it is for more workers than the first setting, up to {cores} cores)")
    _write(results, _out(args))
    return 0


def _paired_train_ratio(row: dict, base: dict) -> float | None:
    """The median over the trials both runs trained of train seconds here / in ``base``."""
    first = {t["trial"]: t["train_seconds"] for t in base["per_trial"] if t["train_seconds"]}
    ratios = [
        t["train_seconds"] / first[t["trial"]]
        for t in row["per_trial"]
        if t["train_seconds"] and t["trial"] in first
    ]
    return statistics.median(ratios) if ratios else None


def _print_startup(campaigns: list[dict], key: str) -> None:
    """One line: the time trial runs spent outside training, the first of each worker and the rest."""

    def seconds(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f} s"

    parts = [
        f"{r[key]}: {seconds(r['first_trials_outside_training_seconds'])} first, "
        f"{seconds(r['other_trials_outside_training_seconds'])} others"
        for r in campaigns
    ]
    print(
        f"  trial run time outside training ({key.replace('_', ' ')}: the first trial of each worker, which "
        f"waits for its process to start, import torch and load the data; the median of the others): "
        f"{'; '.join(parts)}"
    )


def _trials_text(row: dict) -> str:
    bad = {k: v for k, v in row["outcomes"].items() if k != "ok"}
    return f"{row['trials']}" + (f" ({', '.join(f'{v} {k}' for k, v in bad.items())})" if bad else "")


# ---------------------------------------------------------------- search

# `bench search`, part "tpe": TPE against random search on a cheap setting: FG11's screening
# space (spaces/fg11_screen.yaml, its choice lists, depth 2 or 3: random filters and a ridge
# read-out, no backprop) on Fashion-MNIST as stored (28x28, "same" padding so that every draw
# fits), 3,000 images, 1,000 to fit the read-out and 2,000 to score it: 1 to 2 s a trial on two
# CPU cores, about 20 minutes for 2 x 5 campaigns of 60 trials. The 2,000 images to score keep
# the noise of a score (about 0.8 points) below the spread of the good architectures; with 500
# (1.6 points) the best trials differ by chance more than by architecture, and both algorithms
# reach a high target by luck. Screened digits (the fallback without Fashion-MNIST) are too easy
# to tell the algorithms apart: most models score 0.98 to 0.99 on 400 images.
SEARCH_TPE = {
    "space": "spaces/fg11_screen.yaml",
    "dataset": None,  # fashion-mnist where its system copy is installed, else digits
    "trials": 60,
    "startup_trials": 10,
    "overrides": ["training.mode=screen"],
    # of the default space only (not with --space)
    "space_overrides": [
        "data.input_shape=[1,28,28]",
        "architecture.input_norm.padding=same",
        "architecture.layers.padding=same",
    ],
}
# part "pruning": campaigns trained 27 epochs on digits as stored (8x8), with ASHA (rungs at epochs
# 3 and 9, a third of the epochs each time: about one trial in 3 goes on past epoch 3, one in 9
# past epoch 9) and without early stopping: about 5 minutes in all. Random search by default, so
# that both settings draw the same trials and differ only by the stopping (with TPE, what a stopped
# trial reports changes the later suggestions, and the best of two different sequences of trials
# differs by chance about as much as by early stopping); --pruning-algo tpe for TPE.
SEARCH_PRUNING = {
    "space": "spaces/quickstart.yaml",
    "dataset": "digits",
    "trials": 30,
    "epochs": 27,
    "startup_trials": 10,
    "algo": "random",
    "overrides": ["search.pruning.min_epochs=3", "search.pruning.reduction=3"],
}
# per dataset: (images drawn, held out of them to score each trial), as data.subset and
# data.validation; digits: all 1,438 training images, 400 to score (finer steps of accuracy than
# its default 144, and finer than the 0.003 the pruning goal tolerates)
SEARCH_DATA: dict[str, tuple[int | None, int]] = {"fashion-mnist": (3000, 2000), "digits": (None, 400)}
# part "screen": FG11's screening setting (Pinto & Cox 2011): HT-L3-1st-sized models on 2,000
# images of 200x200, 1,600 to fit the read-out and 400 to score it
SEARCH_SCREEN = {"space": "spaces/ht_l3_1st.yaml", "images": 2000, "models": 2}
SEARCH_PARTS = ("tpe", "pruning", "screen")
SEARCH_DEFAULT_PARTS = "tpe,pruning"
TARGET_QUANTILE = 0.95  # the automatic target: this quantile of every trial's val_acc, pooled
# part tpe also reports the ratio at these quantiles: how much the verdict depends on the target
SWEEP_QUANTILES = (0.8, 0.9, 0.95, 0.98, 0.99)
TPE_GOAL = 0.6  # median trials to the target, TPE / random, at most
# the goal: a campaign with early stopping ends with the same best val_acc (median over seeds, within
# the tolerance) as one without, having trained at most this share of its time (median over seeds)
PRUNING_COMPUTE_GOAL = 0.5
PRUNING_ACCURACY_TOLERANCE = 0.003  # median best val_acc with early stopping >= without minus this
# FG11 (Pinto & Cox 2011): about 15,000 models screened in a week of GPU time
FG11_MODELS = 15000
FG11_MODELS_PER_HOUR = FG11_MODELS / (7 * 24)


def trials_to_target(accuracies: Sequence[float | None], target: float) -> int | None:
    """How many trials, in trial order, a campaign ran up to and including the first whose val_acc
    reaches ``target`` (>=); None when none does. Trials without an accuracy (invalid, failed,
    stopped early) count as trials that did not reach it."""
    for i, acc in enumerate(accuracies):
        if acc is not None and acc >= target - 1e-9:
            return i + 1
    return None


def best_after(accuracies: Sequence[float | None], n: int) -> float | None:
    """The best val_acc among the first ``n`` trials; None when none of them has one."""
    known = [a for a in accuracies[:n] if a is not None]
    return max(known) if known else None


def choose_target(accuracies: Sequence[float | None], quantile: float = TARGET_QUANTILE) -> float:
    """The ``quantile`` of the accuracies given (those that are not None), by nearest rank: the
    smallest value with at least that share of the values at or below it, so that at least
    ``1 - quantile`` of them reach it (more when several are equal to it)."""
    import math

    values = sorted(a for a in accuracies if a is not None)
    if not values:
        raise UserError("bench search: no trial gave an accuracy to choose a target from")
    if not 0 < quantile < 1:
        raise UserError(f"--target-quantile: expected a number between 0 and 1, got {quantile}")
    return values[max(0, math.ceil(quantile * len(values)) - 1)]


def median_or_none(values: Sequence[float | None]) -> float | None:
    """The median, where None stands for "never" (larger than any number); None when the median
    itself is never."""
    import math

    ranked = [math.inf if v is None else v for v in values]
    if not ranked:
        return None
    m = statistics.median(ranked)
    return None if math.isinf(m) else m


def _search_parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in SEARCH_PARTS]
    if not parts or unknown:
        raise UserError(
            f"--parts: expected a comma-separated list of {', '.join(SEARCH_PARTS)}, got {text!r}"
        )
    return list(dict.fromkeys(parts))


def _fraction(value: float | None, option: str) -> float | None:
    if value is not None and not 0 < value <= 1:
        raise UserError(f"{option}: expected a validation accuracy in (0, 1], got {value:g}")
    return value


def _search_overrides(args: argparse.Namespace, defaults: dict, seed: int, extra: list[str]) -> list[str]:
    """A campaign of part tpe or pruning: the benchmark's settings, then the user's --set."""
    dataset = args.dataset or (
        None if args.space else defaults["dataset"] or _default_dataset(_data_dir(args))
    )
    overrides = [
        f"search.trials={args.trials or defaults['trials']}",
        f"search.seed={seed}",
        f"search.tpe.startup_trials={defaults['startup_trials']}",
    ]
    if dataset:
        overrides.append(f"data.dataset={dataset}")
    if dataset in SEARCH_DATA:
        subset, validation = SEARCH_DATA[dataset]
        overrides += [f"data.subset={'null' if subset is None else subset}", f"data.validation={validation}"]
    if not args.space:
        overrides += defaults.get("space_overrides", [])
    return overrides + defaults["overrides"] + extra + list(args.set or [])


def _search_campaign(
    space_path: str, overrides: list[str], name: str, device: str, data_dir: Path | None = None
) -> dict:
    """One campaign of `bench search` (inline, in a fresh runs folder): its trials in trial order,
    each trial's final val_acc (None unless it ended ok: stopped early, invalid or failed
    trials have no finished model), the seconds and epochs it trained."""
    row = _timed_campaign(space_path, overrides, name, device=device, data_dir=data_dir)
    trials = sorted(row["per_trial"], key=lambda t: t["trial"])
    return {
        "wall_seconds": row["wall_seconds"],
        "outcomes": row["outcomes"],
        "outcome": [t["outcome"] for t in trials],
        "val_acc": [t["val_acc"] if t["outcome"] == "ok" else None for t in trials],
        "train_seconds": [t["train_seconds"] or 0.0 for t in trials],
        "epochs": [int(t["epochs_done"] or 0) for t in trials],
    }


def _seeds_label(seeds: list[int]) -> str:
    """How a table's column names the seeds it lists: ``seeds 0..4``, ``seed 0``."""
    return f"seeds {seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"


def _seeds_text(values: Sequence[Any], fmt: Callable[[Any], str]) -> str:
    return " ".join(fmt(v) for v in values)


def _acc(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _search_tpe(args: argparse.Namespace, seeds: list[int], device: str) -> dict:
    """Part tpe: TPE and random search, one campaign per seed each; trials to the target."""
    space_path = args.space or SEARCH_TPE["space"]
    n = args.trials or SEARCH_TPE["trials"]
    started = time.perf_counter()
    runs: dict[str, list[dict]] = {"tpe": [], "random": []}
    settings = _search_header(  # errors in the settings before any run
        "part 1, TPE against random search",
        space_path,
        _search_overrides(args, SEARCH_TPE, seeds[0], ["search.algo=tpe"]),
        seeds,
    )
    for seed in seeds:
        for algo in ("tpe", "random"):
            overrides = _search_overrides(args, SEARCH_TPE, seed, [f"search.algo={algo}"])
            r = _search_campaign(
                space_path, overrides, f"bench-search-{algo}-{seed}", device, _data_dir(args)
            )
            runs[algo].append({"seed": seed, "overrides": overrides, **r})
            trained = sum(r["train_seconds"])
            print(
                f"  {algo} seed {seed}: {len(r['val_acc'])} trials in {r['wall_seconds']:.1f} s "
                f"({trained:.1f} s screening or training), best val_acc {_acc(best_after(r['val_acc'], n))}",
                flush=True,
            )

    target, rule, quantile = _pooled_target(
        runs, args, args.target, "--target", "trials' val_acc pooled over every run of both algorithms"
    )
    medians_trials, medians_best, reached = {}, {}, {}
    for algo, rows in runs.items():
        for r in rows:
            k = trials_to_target(r["val_acc"], target)
            r["reached"] = k is not None
            r["trials_to_target"] = k if k is not None else n + 1  # not reached: counted as N + 1
            r["best_after_n"] = best_after(r["val_acc"], n)
        medians_trials[algo] = statistics.median(r["trials_to_target"] for r in rows)
        known = [r["best_after_n"] for r in rows if r["best_after_n"] is not None]
        medians_best[algo] = statistics.median(known) if known else None
        reached[algo] = sum(r["reached"] for r in rows)
    checkpoints = sorted({*range(10, n, 10), n})
    curve = {
        str(k): {
            algo: statistics.median(b for r in rows if (b := best_after(r["val_acc"], k)) is not None)
            if any(best_after(r["val_acc"], k) is not None for r in rows)
            else None
            for algo, rows in runs.items()
        }
        for k in checkpoints
    }
    ratio = medians_trials["tpe"] / medians_trials["random"]
    sweep = _target_sweep(runs, n)
    out = {
        "space": space_path,
        "dataset": settings.space.data["dataset"],
        "trials": n,
        "seeds": seeds,
        "startup_trials": settings.space.search["tpe"]["startup_trials"],
        "target": target,
        "target_rule": rule,
        "target_quantile": quantile,
        "not_reached_counts_as": n + 1,
        "runs": runs,
        "reached": reached,
        "median_trials_to_target": medians_trials,
        "median_best_after_n": medians_best,
        "median_best_after": curve,
        "ratio": ratio,
        "ratio_by_target_quantile": sweep,
        "goal": TPE_GOAL,
        "goal_met": ratio <= TPE_GOAL,
        "wall_seconds": time.perf_counter() - started,
    }

    print(f"  target val_acc {target:.4f}: {rule}")
    seeds_label = _seeds_label(seeds)
    rows_ = [
        (
            "algorithm",
            f"trials to target, {seeds_label}",
            "median",
            "reached",
            f"best val_acc after {n} trials, {seeds_label}",
            "median",
        )
    ]
    for algo, rows in runs.items():
        rows_.append(
            (
                algo,
                _seeds_text(rows, lambda r: f"{r['trials_to_target']}" + ("" if r["reached"] else "*")),
                f"{medians_trials[algo]:g}",
                f"{reached[algo]}/{len(rows)}",
                _seeds_text(rows, lambda r: _acc(r["best_after_n"])),
                _acc(medians_best[algo]),
            )
        )
    _print_table(rows_)
    print(
        f"  (*: the target not reached in {n} trials, counted as {n + 1}; trials counted in trial order, "
        "an invalid or failed one included)"
    )
    print(
        "  median best val_acc, TPE / random, after "
        + "; ".join(f"{k} trials {_acc(v['tpe'])} / {_acc(v['random'])}" for k, v in curve.items())
    )
    print(
        "  TPE / random, median trials to other targets (quantile: target, trials): "
        + "; ".join(
            f"{q}: {v['target']:.4f}, {v['tpe']:g} / {v['random']:g} = {v['ratio']:.2f}"
            for q, v in sweep.items()
        )
    )
    verdict = "meets" if out["goal_met"] else "misses"
    print(
        f"  TPE / random, median trials to the target: {medians_trials['tpe']:g} / "
        f"{medians_trials['random']:g} = {ratio:.2f} ({verdict} the goal <= {TPE_GOAL}); wall "
        f"{out['wall_seconds']:.0f} s",
        flush=True,
    )
    return out


def _target_sweep(runs: dict[str, list[dict]], n: int) -> dict[str, dict]:
    """Median trials to the target, per algorithm, and their ratio, with the target chosen at each
    of SWEEP_QUANTILES of the pooled val_acc (not reached: counted as n + 1)."""
    pooled = [a for rows in runs.values() for r in rows for a in r["val_acc"]]
    out = {}
    for q in SWEEP_QUANTILES:
        target = choose_target(pooled, q)
        medians = {
            algo: statistics.median(trials_to_target(r["val_acc"], target) or n + 1 for r in rows)
            for algo, rows in runs.items()
        }
        out[f"{q:g}"] = {"target": target, **medians, "ratio": medians["tpe"] / medians["random"]}
    return out


def _search_header(title: str, space_path: str, overrides: list[str], seeds: list[int]) -> Any:
    from .settings import resolve

    settings = resolve(space_path, overrides, name="bench")
    space = settings.space
    training = settings.raw.get("training") or {}
    mode = training.get("mode", "train")
    what = "screened" if mode == "screen" else f"trained {training.get('epochs')} epochs"
    shape, subset = space.data.get("input_shape"), space.data.get("subset")
    size = f" at {'x'.join(map(str, shape))}" if shape else ""
    startup = (
        f", TPE startup {space.search['tpe']['startup_trials']} trials"
        if space.search["algo"] == "tpe"
        else ""
    )
    print(
        f"bench search, {title}: {space.name} ({space_path}) {what} on {space.data['dataset']}, "
        f"{'all' if subset is None else f'{subset:,}'} training images "
        f"({space.data['validation']:g} held out to score){size}, {space.search['trials']} "
        f"trials per campaign, {len(seeds)} seeds{startup}; overrides: {' '.join(overrides)}",
        flush=True,
    )
    return settings


def _search_pruning(args: argparse.Namespace, seeds: list[int], device: str) -> dict:
    """Part pruning: the same campaigns (random search, or TPE), trained, with ASHA and without
    early stopping."""
    space_path = args.space or SEARCH_PRUNING["space"]
    algo = args.pruning_algo or SEARCH_PRUNING["algo"]
    n = args.trials or SEARCH_PRUNING["trials"]
    epochs = args.epochs or (None if args.space else SEARCH_PRUNING["epochs"])
    started = time.perf_counter()
    rules = ("asha", "none")
    runs: dict[str, list[dict]] = {rule: [] for rule in rules}

    def overrides_for(seed: int, rule: str) -> list[str]:
        extra = [f"search.algo={algo}", f"search.pruning.rule={rule}"]
        if epochs:
            extra.append(f"training.epochs={epochs}")
        return _search_overrides(args, SEARCH_PRUNING, seed, extra)

    settings = _search_header(  # errors in the settings before any run
        f"part 2, {'TPE' if algo == 'tpe' else 'random search'} with and without early stopping",
        space_path,
        overrides_for(seeds[0], "asha"),
        seeds,
    )
    for seed in seeds:
        for rule in rules:
            overrides = overrides_for(seed, rule)
            r = _search_campaign(
                space_path, overrides, f"bench-search-{rule}-{seed}", device, _data_dir(args)
            )
            runs[rule].append({"seed": seed, "overrides": overrides, **r})
            print(
                f"  {rule} seed {seed}: {len(r['val_acc'])} trials "
                f"({', '.join(f'{v} {k}' for k, v in r['outcomes'].items())}) in {r['wall_seconds']:.1f} s, "
                f"{sum(r['train_seconds']):.1f} s training, {sum(r['epochs'])} epochs, best val_acc "
                f"{_acc(best_after(r['val_acc'], n))}",
                flush=True,
            )

    target, rule_text, quantile = _pooled_target(
        runs,
        args,
        args.pruning_target,
        "--pruning-target",
        "trials that finished, pooled over both settings' runs",
        of="the final val_acc of ",
    )
    summary: dict[str, dict] = {}
    for rule, rows in runs.items():
        for r in rows:
            k = trials_to_target(r["val_acc"], target)
            r["trials_to_target"] = k
            r["compute_to_target_seconds"] = None if k is None else sum(r["train_seconds"][:k])
            r["epochs_to_target"] = None if k is None else sum(r["epochs"][:k])
            r["best_val_acc"] = best_after(r["val_acc"], n)
            r["compute_seconds"] = sum(r["train_seconds"])
            r["epochs_total"] = sum(r["epochs"])
            r["pruned"] = r["outcomes"].get("pruned", 0)
        best = [r["best_val_acc"] for r in rows if r["best_val_acc"] is not None]
        summary[rule] = {
            "reached": sum(r["trials_to_target"] is not None for r in rows),
            "median_compute_to_target_seconds": median_or_none(
                [r["compute_to_target_seconds"] for r in rows]
            ),
            "median_epochs_to_target": median_or_none([r["epochs_to_target"] for r in rows]),
            "median_trials_to_target": median_or_none([r["trials_to_target"] for r in rows]),
            "median_best_val_acc": statistics.median(best) if best else None,
            "median_compute_seconds": statistics.median(r["compute_seconds"] for r in rows),
            "median_epochs_total": statistics.median(r["epochs_total"] for r in rows),
            "median_pruned": statistics.median(r["pruned"] for r in rows),
        }
    a, b = summary["asha"], summary["none"]

    def ratio(key: str) -> float | None:
        if a[key] is None or not b[key]:
            return None
        return a[key] / b[key]

    to_target_ratio = ratio("median_compute_to_target_seconds")
    compute_ratio = ratio("median_compute_seconds")
    gap = (
        a["median_best_val_acc"] - b["median_best_val_acc"]
        if a["median_best_val_acc"] is not None and b["median_best_val_acc"] is not None
        else None
    )
    compute_met = compute_ratio is not None and compute_ratio <= PRUNING_COMPUTE_GOAL
    accuracy_met = gap is not None and gap >= -PRUNING_ACCURACY_TOLERANCE - 1e-12
    out = {
        "space": space_path,
        "dataset": settings.space.data["dataset"],
        "trials": n,
        "epochs": (settings.raw.get("training") or {}).get("epochs"),
        "algo": algo,
        "seeds": seeds,
        "startup_trials": settings.space.search["tpe"]["startup_trials"],
        "pruning": settings.space.search["pruning"],
        "target": target,
        "target_rule": rule_text,
        "target_quantile": quantile,
        "not_reached": "None per seed; a median over seeds that is past the last seed reaching the "
        "target is None",
        "runs": runs,
        "summary": summary,
        "compute_to_target_ratio": to_target_ratio,
        "epochs_to_target_ratio": ratio("median_epochs_to_target"),
        "compute_ratio": compute_ratio,
        "epochs_ratio": ratio("median_epochs_total"),
        "best_val_acc_gap": gap,
        "goal": {
            "compute_ratio_at_most": PRUNING_COMPUTE_GOAL,
            "best_val_acc_gap_at_least": -PRUNING_ACCURACY_TOLERANCE,
        },
        "compute_goal_met": compute_met,
        "accuracy_goal_met": accuracy_met,
        "goal_met": compute_met and accuracy_met,
        "wall_seconds": time.perf_counter() - started,
    }

    def seconds(v: float | None) -> str:
        return "never" if v is None else f"{v:.1f}"

    print(f"  target val_acc {target:.4f}: {rule_text}")
    seeds_label = _seeds_label(seeds)
    rows_ = [
        (
            "early stopping",
            f"training s to target, {seeds_label}",
            "median",
            "epochs",
            "reached",
            f"best val_acc, {seeds_label}",
            "median",
            "training s, all",
            "epochs, all",
            "pruned",
        )
    ]
    for rule, rows in runs.items():
        s = summary[rule]
        rows_.append(
            (
                rule,
                _seeds_text(rows, lambda r: seconds(r["compute_to_target_seconds"])),
                seconds(s["median_compute_to_target_seconds"]),
                seconds(s["median_epochs_to_target"]).removesuffix(".0"),
                f"{s['reached']}/{len(rows)}",
                _seeds_text(rows, lambda r: _acc(r["best_val_acc"])),
                _acc(s["median_best_val_acc"]),
                f"{s['median_compute_seconds']:.1f}",
                f"{s['median_epochs_total']:g}",
                f"{s['median_pruned']:g}",
            )
        )
    _print_table(rows_)
    print(
        f"  (training s: the trials' train_seconds summed in trial order up to the first finished trial "
        f"reaching the target, never: not reached in {n} trials; epochs: the same in epochs trained; "
        "best val_acc: of the trials that finished (a stopped trial keeps no model); all, pruned: "
        "medians over seeds of the whole campaign)"
    )

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    print(
        f"  asha / none: training s of the whole campaign {pct(compute_ratio)} ("
        f"{'meets' if compute_met else 'misses'} the goal <= {PRUNING_COMPUTE_GOAL}; epochs "
        f"{pct(out['epochs_ratio'])}), to the target {pct(to_target_ratio)} (epochs "
        f"{pct(out['epochs_to_target_ratio'])}); best val_acc asha - none "
        f"{'n/a' if gap is None else f'{gap:+.4f}'} ({'meets' if accuracy_met else 'misses'} the goal "
        f">= -{PRUNING_ACCURACY_TOLERANCE}); wall {out['wall_seconds']:.0f} s",
        flush=True,
    )
    return out


def _search_screen(args: argparse.Namespace, device: str) -> dict:
    """Part screen: models per hour of FG11's screening, HT-L3-1st on 200x200 images."""
    space_path = SEARCH_SCREEN["space"]
    models = args.screen_models or SEARCH_SCREEN["models"]
    dataset = _default_dataset(_data_dir(args))
    images = args.subset or SEARCH_SCREEN["images"]
    overrides = [
        "training.mode=screen",
        f"data.dataset={dataset}",
        f"search.trials={models}",
        "search.algo=random",
        f"search.seed={args.seed}",
    ]
    if dataset == "digits" and not args.subset:  # no Fashion-MNIST: all 1,438 digits, 400 to score
        overrides += ["data.subset=null", f"data.validation={SEARCH_DATA['digits'][1]}"]
    else:
        overrides += [f"data.subset={images}", f"data.validation={max(1, images // 5)}"]
    from .settings import resolve

    space = resolve(space_path, overrides, name="bench").space
    shape = "x".join(map(str, space.data["input_shape"]))
    print(
        f"bench search, part 3, screening throughput: {space.name} ({space_path}) screened on {dataset}, "
        f"{space.data['subset'] or 'all'} images at {shape} ({space.data['validation']:g} to score), "
        f"{models} model{'s' if models > 1 else ''} on {device}",
        flush=True,
    )
    row = _timed_campaign(
        space_path, overrides, "bench-search-screen", device=device, data_dir=_data_dir(args)
    )
    trials = sorted(row["per_trial"], key=lambda t: t["trial"])
    ok = [t for t in trials if t["outcome"] == "ok" and t["train_seconds"]]
    if not ok:
        raise UserError(f"bench search: no model was screened ({row['outcomes']})")
    per_model = statistics.median(t["train_seconds"] for t in ok)
    out = {
        "space": space_path,
        "dataset": dataset,
        "overrides": overrides,
        "device": device,
        "images": space.data["subset"],
        "scored": space.data["validation"],
        "input_shape": list(space.data["input_shape"]),
        "models": row["trials"],
        "outcomes": row["outcomes"],
        "per_model": [
            {
                "trial": t["trial"],
                "name": t["name"],
                "outcome": t["outcome"],
                "screen_seconds": t["train_seconds"],
                "run_seconds": t["seconds"],
                "val_acc": t["val_acc"],
            }
            for t in trials
        ],
        "seconds_per_model": per_model,
        "models_per_hour": 3600 / per_model,
        "wall_seconds": row["wall_seconds"],
        "models_per_hour_wall": row["trials_per_hour"],
        "first_trial_after_seconds": row["first_trial_after_seconds"],
        "reference_2011": {
            "models": FG11_MODELS,
            "gpu_hours": 7 * 24,
            "models_per_hour": FG11_MODELS_PER_HOUR,
            "source": "Pinto & Cox, FG 2011: about 15,000 models screened in a week of GPU time",
        },
        "versus_2011": (3600 / per_model) / FG11_MODELS_PER_HOUR,
    }
    rows = [("model", "screening s", "trial run s", "val_acc")]
    for t in out["per_model"]:
        rows.append(
            (
                t["name"],
                "n/a" if not t["screen_seconds"] else f"{t['screen_seconds']:.1f}",
                f"{t['run_seconds']:.1f}",
                _acc(t["val_acc"]),
            )
        )
    _print_table(rows)
    print(
        f"  {per_model:.1f} s per model (median of the screening times: features of every image, "
        f"ridge fit, scoring) = {out['models_per_hour']:.1f} models/hour; with the whole campaign "
        f"(data load {out['first_trial_after_seconds']:.1f} s, tracking): {out['models_per_hour_wall']:.1f} "
        f"models/hour over {out['wall_seconds']:.0f} s"
    )
    print(
        f"  2011 reference: about {FG11_MODELS:,} models in a week of GPU time = "
        f"{FG11_MODELS_PER_HOUR:.0f} models/hour; here {out['versus_2011']:.2f}x that on {device}",
        flush=True,
    )
    return out


def _pooled_target(
    runs: dict, args: argparse.Namespace, value: Any, flag: str, what: str, of: str = ""
) -> tuple[float, str, float | None]:
    """The target accuracy: given with ``flag``, else a quantile of the trials of every run in
    ``runs``; with the text saying how it was chosen, and the quantile (None when given)."""
    given = _fraction(value, flag)
    if given is not None:
        return given, f"given ({flag})", None
    pooled = [a for rows in runs.values() for r in rows for a in r["val_acc"]]
    quantile = args.target_quantile or TARGET_QUANTILE
    counted = sum(a is not None for a in pooled)
    rule = f"auto: the {quantile:g} quantile (nearest rank) of {of}all {counted} {what}"
    return choose_target(pooled, quantile), rule, quantile


def bench_search(args: argparse.Namespace) -> int:
    """Search efficiency: TPE against random search (trials to a target accuracy), early stopping
    against none (training time to the target, best accuracy), and screening throughput."""
    parts = _search_parts(args.parts or SEARCH_DEFAULT_PARTS)
    # wrong numbers before any campaign runs
    _fraction(args.target, "--target")
    _fraction(args.pruning_target, "--pruning-target")
    if args.target_quantile is not None and not 0 < args.target_quantile < 1:
        raise UserError(f"--target-quantile: expected a number between 0 and 1, got {args.target_quantile:g}")
    device = _device(args.device)
    env = _environment(device)
    n_seeds = args.seeds or 5
    seeds = list(range(args.seed, args.seed + n_seeds))
    started = time.perf_counter()
    print(
        f"bench search: parts {', '.join(parts)} on {_env_line(env)}; inline trials (no workers)", flush=True
    )
    results: dict = {"benchmark": "search", **env, "parts": parts, "seeds": seeds}
    if "pruning" in parts:
        # one-off: torch's lazy imports (the first optimizer imports torch._dynamo, seconds), which
        # the first trained trial of a process would count as training time
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    if "tpe" in parts:
        results["tpe"] = _search_tpe(args, seeds, device.type)
    if "pruning" in parts:
        results["pruning"] = _search_pruning(args, seeds, device.type)
    if "screen" in parts:
        results["screen"] = _search_screen(args, device.type)
    results["wall_seconds"] = time.perf_counter() - started
    print(f"  bench search: {results['wall_seconds']:.0f} s in all")
    _write(results, _out(args))
    return 0
