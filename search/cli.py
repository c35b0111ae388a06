"""The ``archsearch`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .data import DATASETS
from .errors import UserError

if TYPE_CHECKING:
    from .space import Space

# Commands import what they need when they run: the worker processes of `run --workers`,
# which import this module again (multiprocessing's spawn re-imports the main script),
# need neither hyperopt nor the space compiler.


def _shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CxHxW such as 1x28x28, got {text!r}") from None
    if min(c, h, w) < 1:
        raise argparse.ArgumentTypeError(f"every size must be >= 1, got {text!r}")
    return c, h, w


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def check_runs(text: str) -> None:
    """Make the --runs folder, or refuse one that cannot be made (a file, under a file, no right)."""
    path = Path(text)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is under {existing}, which is a file"
        raise UserError(f"--runs {text}: {where}, not a folder; give a folder for the store and data")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--runs {text}: cannot create that folder ({e.strerror or e})") from None


def _choices(text: str, allowed: Sequence[str]) -> list[str]:
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in allowed]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(allowed)}, got {text!r}")
    return chosen


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def input_of(space: Space, shape: tuple[int, int, int] | None, classes: int | None) -> tuple[tuple, int]:
    """Input shape and class count: the flags, else the space's data block, else the dataset's own."""
    info = DATASETS.get(space.data["dataset"])
    shape = shape or space.data["input_shape"] or (info.input_shape if info else None)
    classes = classes or (info.n_classes if info else None)
    if shape is None or classes is None:
        raise UserError(
            f"{space.path}: the input shape and class count of {space.data['dataset']!r} are known "
            "only once it is loaded; give --input CxHxW and --classes N"
        )
    return tuple(shape), classes


# ---------------------------------------------------------------- sample


def cmd_sample(args: argparse.Namespace) -> int:
    from models import InvalidArchitecture, plan_model

    from .compile import CompiledSpace, arch_hash, arch_name, to_json
    from .space import load_space

    space = load_space(args.space)
    shape, classes = input_of(space, args.input, args.classes)
    compiled = CompiledSpace(space)
    records = []
    for config in compiled.sample(args.n, args.seed):
        arch = config["architecture"]
        record = {
            "arch": arch,
            "training": config["training"],
            "hash": arch_hash(arch),
            "name": arch_name(arch),
        }
        try:
            plan = plan_model(arch, shape, classes, space.constraints)
        except InvalidArchitecture as e:
            record.update(
                valid=False, reason=str(e), params=None, macs=None, output_shape=None, features=None
            )
            record["plan"] = None
        else:
            record.update(valid=True, reason=None, params=plan.params, macs=plan.macs)
            record.update(output_shape=list(plan.output_shape), features=plan.features, plan=plan)
        records.append(record)

    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "plan"} for r in records], indent=2))
        return 0
    searched = len(compiled.labels)
    depths = "/".join(map(str, space.depths))
    print(
        f"{space.path}: {space.name}: {searched} searched hyperparameters, depth {depths}; "
        f"input {'x'.join(map(str, shape))}, {classes} classes"
    )
    for i, r in enumerate(records, start=1):
        head = f"#{i:<3} {r['hash']}  {r['name']}"
        if r["valid"]:
            out = "x".join(map(str, r["output_shape"]))
            print(
                f"{head}  valid  params {r['params']:,}  MACs {_si(r['macs'])}  "
                f"output {out} ({r['features']:,} features)"
            )
        else:
            print(f"{head}  INVALID: {r['reason']}")
        if args.verbose:
            if r["plan"] is not None:
                print("\n".join("     " + line for line in r["plan"].table().splitlines()))
            print("\n".join("     " + line for line in to_json(r["training"], indent=2).splitlines()))
    return 0


# ---------------------------------------------------------------- run, status, leaderboard, ui


def _run_options(args: argparse.Namespace) -> dict:
    return {
        "device": args.device,
        "runs": Path(args.runs),
        "data_dir": Path(args.data_dir) if args.data_dir else None,
        "quiet": args.quiet,
        "workers": args.workers,
        "oversubscribe": args.oversubscribe,
        "trials_per_gpu": args.trials_per_gpu,
        "dask": args.dask,
        "threads": args.threads_per_trial,
        "warm_start": args.warm_start,
        "warm_top": args.warm_start_top,
        "points": args.points,
    }


def cmd_run(args: argparse.Namespace) -> int:
    from .campaign import open_store, resume_settings
    from .run import launch
    from .settings import CHANGEABLE, flag_overrides, resolve

    overrides = flag_overrides(vars(args)) + list(args.set or [])
    store = open_store(Path(args.runs), args.tracking_uri, args.tracking_patience)
    if args.resume:
        if args.space:
            raise UserError("give either a space file or --resume NAME, not both")
        limits = [o for o in overrides if o.partition("=")[0].strip() in CHANGEABLE]
        if len(limits) != len(overrides):
            other = [o for o in overrides if o not in limits]
            raise UserError(
                f"--resume keeps the campaign's settings; only the run limits and how trials run "
                f"({', '.join(CHANGEABLE)}) may change, got {' '.join(other)}"
            )
        settings = resume_settings(store, args.resume, overrides, **_run_options(args))
    elif args.space:
        settings = resolve(args.space, overrides, name=args.name, **_run_options(args))
    else:
        raise UserError("give a space file (archsearch run spaces/quickstart.yaml) or --resume NAME")
    return launch(settings, store)


def cmd_status(args: argparse.Namespace) -> int:
    from .campaign import open_store, runs_flag
    from .results import status_text

    campaign = open_store(Path(args.runs), args.tracking_uri).require(args.name)
    print(status_text(campaign, runs_flag(args.runs)))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    import pandas as pd

    from .campaign import open_store
    from .results import leaderboard, varying

    campaign = open_store(Path(args.runs), args.tracking_uri).require(args.name)
    df = leaderboard(campaign.trials(), top=args.top, include_failed=args.all)
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(df.to_json(orient="records", indent=2))
    elif df.empty:
        print(f"campaign {args.name}: no finished trials yet")
    else:
        with pd.option_context("display.max_columns", None, "display.width", 250, "display.precision", 4):
            print(varying(df).to_string(index=False))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .campaign import open_store
    from .report import NO_TRIALS, default_out, snapshot, write_report

    store = open_store(Path(args.runs), args.tracking_uri)
    snaps = [snapshot(store.require(name)) for name in args.names]
    out = Path(args.out) if args.out else default_out(Path(args.runs), args.names)
    files = write_report(snaps, out)
    for snap in snaps:
        if snap.board.empty:
            print(f"campaign {snap.name}: {NO_TRIALS} (the report says so, without plots of it)")
    pngs = [f.name for f in files if f.suffix == ".png"]
    print(f"report: {files[0]}" + (f" (with {', '.join(pngs)})" if pngs else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .campaign import open_store
    from .export import export_bundle

    campaign = open_store(Path(args.runs), args.tracking_uri).require(args.name)
    done = export_bundle(
        campaign,
        Path(args.out),
        trial=args.trial,
        run_id=args.run_id,
        force=args.force,
        cache_dir=Path(args.runs) / "data",
        data_dir=Path(args.data_dir) if args.data_dir else None,
        register_as=args.register,
    )
    check = done.check
    metrics = done.record.metrics
    score = (
        f"test_acc {metrics['test_acc']:.4f}"
        if "test_acc" in metrics
        else f"val_acc {metrics['val_acc']:.4f}"
    )
    which = (
        "the retrained model (train + validation images) of " if done.record.name.startswith("final ") else ""
    )
    print(
        f"exported {which}{done.record.name.removeprefix('final ')} (trial {done.record.trial}, run "
        f"{done.record.run_id}, {score}) to {done.out}: "
        f"{', '.join(done.files)}; {done.bytes / 1e6:.2f} MB in {done.seconds:.1f} s"
    )
    print(
        f"self-check on {check['batch']} validation images: TorchScript and ONNX Runtime match the torch "
        f"model within {check['torchscript_max_abs_diff']:.1e} and {check['onnx_max_abs_diff']:.1e} "
        f"(tolerance {check['tolerance']:g}), same predictions"
    )
    if done.registered:
        print(
            f"registered as {done.registered}: mlflow.pyfunc.load_model({done.registered!r}).predict(images)"
        )
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from .campaign import open_store, runs_flag
    from .retrain import retrain

    campaign = open_store(Path(args.runs), args.tracking_uri).require(args.name)
    finals = retrain(
        campaign,
        top=args.top,
        epochs=args.epochs,
        device=args.device,
        cache_dir=Path(args.runs) / "data",
        data_dir=Path(args.data_dir) if args.data_dir else None,
    )
    runs = runs_flag(args.runs)
    print(
        f"{len(finals)} final runs logged in campaign {args.name!r} (tag archsearch.kind=final); "
        f"`archsearch export {args.name}{runs} --out DIR` takes the retrained model of the best trial"
    )
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import subprocess

    from .settings import tracking_uri

    uri = tracking_uri(args.tracking_uri, Path(args.runs))
    if not uri.startswith("sqlite:"):
        print(f"campaigns are tracked on {uri}: open it in a browser (or point `mlflow ui` at its store)")
        return 0
    db = Path(args.runs) / "mlflow.db"
    if not db.exists():
        raise UserError(
            f"no campaigns under {args.runs}/ yet ({db} does not exist); start one with `archsearch run`"
        )
    from .campaign import open_store

    home = f"http://127.0.0.1:{args.port}"
    print(f"MLflow UI on {home} over {db} (Ctrl-C to stop)", flush=True)
    store = open_store(Path(args.runs), args.tracking_uri)
    for name in [args.name] if args.name else store.campaign_names():
        campaign = store.require(name)
        # the runs table (MLflow's experiment page opens on its GenAI overview otherwise)
        print(f"  {name}: {home}/#/experiments/{campaign.experiment_id}?workflowType=machine_learning")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
    # one worker and no background job runners: the UI answers in seconds instead of a minute
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0


# ---------------------------------------------------------------- data


def cmd_data(args: argparse.Namespace) -> int:
    from .data import dataset_table, fetch

    cache = Path(args.runs) / "data"
    if args.action == "list":
        rows = dataset_table(cache)
        table = [("dataset", "shape", "train / test", "where")]
        for r in rows:
            sizes = f"{r['train']:,} / {r['test']:,}" if isinstance(r["train"], int) else "-"
            where = r["where"] if isinstance(r["train"], int) else f"{r['where']}: {r['about']}"
            table.append((r["name"], r["shape"], sizes, where))
        widths = [max(len(row[i]) for row in table) for i in range(3)]
        for row in table:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3])
        return 0
    if not args.name:
        raise UserError("data get: which dataset? e.g. `archsearch data get fashion-mnist`")
    files = fetch(args.name, cache_dir=cache, data_dir=Path(args.data_dir) if args.data_dir else None)
    if not files:
        print(f"{args.name}: nothing to fetch (built in)")
    for f in files:
        print(f"{args.name}: verified {f}")
    return 0


# ---------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    run = {
        "layers": bench.bench_layers,
        "overhead": bench.bench_overhead,
        "evaluator": bench.bench_evaluator,
        "suggest": bench.bench_suggest,
        "workers": bench.bench_workers,
        "search": bench.bench_search,
    }[args.which]
    return run(args)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor

    if args.gpu and args.device == "cpu":
        raise UserError("--gpu checks the GPU; leave out --device cpu")
    return doctor(
        device="cuda" if args.gpu else args.device,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        out=Path(args.out) if args.out else None,
        quick=args.quick,
        steps=args.steps,
    )


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")

    parser = argparse.ArgumentParser(
        prog="archsearch",
        description="Architecture search over the Pinto & Cox model family.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "sample",
        parents=[common],
        help="validate a space and show sampled architectures",
        description="Validate a space file and print K architectures sampled from it at random, "
        "with parameters, MACs per image, output shape and validity for the input.",
    )
    p.add_argument("space", help="a space file, such as spaces/quickstart.yaml")
    p.add_argument("-n", type=_positive_int, default=5, help="how many architectures (default 5)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument(
        "--input",
        type=_shape,
        help="input shape CxHxW (default: the space's data.input_shape or the dataset's)",
    )
    p.add_argument("--classes", type=_positive_int, help="number of classes (default: the dataset's)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each plan and training recipe")
    p.set_defaults(func=cmd_sample)

    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--runs", default="runs", help="where the default MLflow store and data cache live (default runs)"
    )
    store.add_argument(
        "--tracking-uri",
        help="an MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else SQLite in RUNS/mlflow.db)",
    )

    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-dir", help="a folder holding the dataset's files (looked at before the cache)")
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train")

    p = sub.add_parser(
        "run",
        parents=[common, store, data, device],
        help="run (or resume) a search campaign",
        description="Run a search campaign over a space: suggest architectures with TPE (or at random), "
        "train and validate each, and record everything in MLflow. Running a campaign name that "
        "exists resumes it. Every setting comes from the space file; the flags below override it.",
    )
    p.add_argument("space", nargs="?", help="a space file, such as spaces/quickstart.yaml")
    p.add_argument("--resume", metavar="NAME", help="continue the campaign NAME with its own settings")
    p.add_argument("--name", help="campaign name (default: the space's name)")
    p.add_argument("--trials", type=_positive_int, help="trials to end before stopping (search.trials)")
    p.add_argument("--algo", choices=["tpe", "random"], help="search algorithm (search.algo; default tpe)")
    p.add_argument("--seed", type=int, help="campaign seed (search.seed)")
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="campaign seconds: start no trial that would end past them (by the median trial so far)",
    )
    p.add_argument("--loss-threshold", type=float, help="stop once a trial's loss (1 - val_acc) is <= this")
    p.add_argument(
        "--prune",
        choices=["none", "asha", "median"],
        help="stop unpromising trials early (search.pruning.rule): successive halving or the median rule",
    )
    p.add_argument(
        "--prune-min-epochs",
        type=_positive_int,
        metavar="N",
        help="no trial stops before epoch N; asha's first rung (search.pruning.min_epochs)",
    )
    p.add_argument(
        "--prune-reduction",
        type=int,
        metavar="R",
        help="asha: about 1 trial in R goes on at each rung (search.pruning.reduction, >= 2)",
    )
    p.add_argument(
        "--trial-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="stop a trial after this long: failed, with the reason timeout (search.trial_timeout)",
    )
    p.add_argument(
        "--tpe-startup", type=int, metavar="N", help="random trials before TPE (search.tpe.startup_trials)"
    )
    p.add_argument("--tpe-gamma", type=float, help="TPE's share of good trials (search.tpe.gamma)")
    p.add_argument("--tpe-candidates", type=_positive_int, metavar="N", help="candidates per suggestion")
    p.add_argument(
        "--dataset", help="dataset (data.dataset): digits, fashion-mnist, mnist, cifar10, npz:PATH, ..."
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a value of the space file by its key path, e.g. --set training.epochs=1 (repeatable)",
    )
    first = p.add_argument_group("configurations to evaluate before any suggestion, in order")
    first.add_argument(
        "--warm-start",
        metavar="NAME",
        help="re-evaluate the best trials of the campaign NAME first (its configurations, trained anew)",
    )
    first.add_argument(
        "--warm-start-top",
        type=_positive_int,
        default=5,
        metavar="K",
        help="how many of its best trials, by validation loss (default 5)",
    )
    first.add_argument(
        "--points",
        metavar="FILE",
        help="a YAML or JSON list of configurations ({architecture, training}, as in a trial's "
        "architecture.json, or `archsearch sample --json` records) to evaluate first",
    )
    where = p.add_argument_group("where trials run (default: one at a time, in this process)")
    where.add_argument(
        "--workers",
        type=_positive_int,
        metavar="W",
        help="run W trials at once in worker processes (on CPU the cores are split between them; "
        "with GPUs they take the GPUs round-robin); with --dask: at most W trials at once",
    )
    where.add_argument(
        "--trials-per-gpu",
        type=_positive_int,
        metavar="K",
        help="pack K trials on each GPU (default 1; on Dask each trial asks for 1/K of a GPU resource)",
    )
    where.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run trials on a Dask cluster, e.g. tcp://host:8786 (README: Running on several machines)",
    )
    where.add_argument(
        "--oversubscribe",
        action="store_true",
        help="start --workers W even when W is more than this machine's cores (GPUs x trials per GPU) "
        "or its free memory holds",
    )
    where.add_argument(
        "--threads-per-trial",
        type=_positive_int,
        metavar="N",
        help="torch CPU threads of each trial (default: the cores divided between the workers)",
    )
    p.add_argument(
        "--tracking-patience",
        type=_positive_float,
        default=300.0,
        metavar="SECONDS",
        help="how long the tracking store may stay unreachable, retried with back-off, before the "
        "campaign stops (default 300)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and the final summary")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "status",
        parents=[common, store],
        help="progress of a campaign",
        description="Trials ended, failed and running, the best so far, elapsed time and ETA.",
    )
    p.add_argument("name", help="campaign name")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "leaderboard",
        parents=[common, store],
        help="the best trials of a campaign",
        description="The best finished trials (by final validation accuracy) with their metrics and "
        "architecture values. The table shows the settings that differ between the rows listed; "
        "csv and json hold every column.",
    )
    p.add_argument("name", help="campaign name")
    p.add_argument("--top", type=_positive_int, default=10, help="how many trials (default 10)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--all", action="store_true", help="also list invalid and failed trials")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser(
        "report",
        parents=[common, store],
        help="plots and an HTML report of one campaign, or several side by side",
        description="Write report.html and its PNG plots: the best validation accuracy so far against "
        "the trial number (one curve per campaign: compare a TPE and a random campaign), each searched "
        "parameter against validation accuracy, accuracy against parameters and MACs with the Pareto "
        "front, and the top 20 of the leaderboard. Self-contained: the images sit next to the HTML, "
        "no JavaScript, nothing fetched. An existing folder is reused (its files overwritten).",
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="campaign name (two or more: compared)")
    p.add_argument("--out", help="folder to write (default RUNS/reports/NAME, NAME-vs-NAME2 for two)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "export",
        parents=[common, store, data],
        help="export a trial as a self-contained bundle (TorchScript, ONNX, weights, card)",
        description="Write the best finished trial of a campaign (or --trial N, or --run-id ID) to a "
        "folder: model.pt (TorchScript), model.onnx, weights.safetensors, architecture.json, "
        "metrics.json, preprocessing.json and MODEL.md. The export checks itself first: TorchScript "
        "and ONNX Runtime must match the torch model on validation images.",
    )
    p.add_argument("name", help="campaign name")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, help="export this trial number")
    which.add_argument("--run-id", help="export this MLflow run (a trial of the campaign)")
    p.add_argument("--out", required=True, help="the bundle's folder (must not hold files, unless --force)")
    p.add_argument("--force", action="store_true", help="replace the files of an existing --out")
    p.add_argument(
        "--register",
        metavar="MODEL",
        help="also register it in the MLflow Model Registry as MODEL (a pyfunc giving class probabilities)",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "retrain",
        parents=[common, store, data, device],
        help="train the best architectures again on training + validation data, test once",
        description="Train the best K finished trials (by validation loss) again with their recipe "
        "for longer, on training + validation images, evaluate each once on the test set, and log "
        "them as runs tagged final in the campaign's experiment. export then prefers them.",
    )
    p.add_argument("name", help="campaign name")
    p.add_argument("--top", type=_positive_int, default=3, help="how many trials (default 3)")
    p.add_argument("--epochs", type=_positive_int, help="epochs (default: twice the trial's)")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser(
        "ui",
        parents=[common, store],
        help="the MLflow UI over the campaigns, on 127.0.0.1",
        description="Start the MLflow UI over the default store, bound to 127.0.0.1.",
    )
    p.add_argument("name", nargs="?", help="print the link to this campaign's runs (default: every campaign)")
    p.add_argument("--port", type=_positive_int, default=5000, help="port (default 5000)")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser(
        "data",
        parents=[common],
        help="list datasets, or fetch and verify one into the cache",
        description="'list' shows the built-in datasets and where each is available; 'get NAME' "
        "fetches one into RUNS/data and verifies its checksums.",
    )
    p.add_argument("action", choices=["list", "get"])
    p.add_argument("name", nargs="?", help="dataset to fetch (get)")
    p.add_argument("--runs", default="runs", help="the cache is RUNS/data (default runs)")
    p.add_argument("--data-dir", help="a folder holding the dataset's files to verify and copy")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser(
        "bench",
        parents=[common, data],
        help="benchmarks (prints a table, writes JSON)",
        description="Benchmarks; each prints a table and writes runs/bench/WHICH.json. "
        "'layers': forward throughput of HT-L3-1st on 200x200 input, and the cost of lnorm relative "
        "to a convolution of the same feature map. 'overhead': a real campaign of short trials "
        "(SQLite store in a temporary folder), its wall time against the evaluator's own time. "
        "'evaluator': the evaluator against a bare torch loop training the same network on the same "
        "data. 'suggest': the time of one TPE (and random) suggestion after N recorded trials. "
        "'workers': trials per hour of a real campaign with 1 and 2 worker processes of one thread "
        "each on the CPU, and the speedup; with --device cuda, with 1, 2 and 4 trials packed on one "
        "GPU, and the GPU's utilization. 'search': search efficiency, in parts (--parts): 'tpe', TPE "
        "against random search, one campaign per seed each (--seeds), the median trials to a target "
        "validation accuracy (--target; by default the 0.95 quantile of every trial's, pooled) and the "
        "median best after N trials, on a cheap screened setting (FG11's screening space on 3,000 "
        "Fashion-MNIST images at 28x28, 2,000 of them to score, else digits); 'pruning', the same "
        "campaigns (random search, --pruning-algo) trained with ASHA early stopping and without, the "
        "training time to a target and the best accuracy; 'screen', models screened per "
        "hour of HT-L3-1st on 2,000 images of 200x200 (minutes on a CPU: not run unless asked).",
    )
    p.add_argument(
        "which",
        choices=["layers", "overhead", "evaluator", "suggest", "workers", "search"],
        help="the benchmark",
    )
    p.add_argument(
        "--space",
        help="space file (default: layers spaces/ht_l3_1st.yaml; overhead a built-in digits space; "
        "evaluator spaces/quickstart.yaml, its first valid draw; suggest spaces/pinto_cox.yaml; workers "
        "spaces/quickstart.yaml on a 10,000-image subset, with --device cuda spaces/pinto_cox.yaml; "
        "search: the space of parts tpe and pruning, default tpe spaces/fg11_screen.yaml at 28x28, "
        "pruning spaces/quickstart.yaml)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="overhead, evaluator, suggest, workers: override a value of the space (repeatable); "
        "search: of the campaigns of parts tpe and pruning, after the benchmark's own settings",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        help="layers: images per forward pass (default 16); evaluator: training batch size "
        "(default: the space's)",
    )
    p.add_argument(
        "--repeats",
        type=_positive_int,
        help="timed repeats, the median is kept (default: layers 5, evaluator 3, suggest 7)",
    )
    p.add_argument(
        "--trials",
        type=_positive_int,
        help="overhead: trials (default 20); workers: trials of each campaign (default 12, cuda 16); "
        "search: trials of each campaign (default: tpe 60, pruning 30)",
    )
    p.add_argument(
        "--epochs",
        type=_positive_int,
        help="overhead: epochs per trial (default: the space's, 2 in the built-in one); evaluator: "
        "(default 2, digits 100); workers: (default 2, cuda 3; with --space: the space's); search: of "
        "part pruning (default 27; with --space: the space's)",
    )
    p.add_argument(
        "--dataset",
        help="dataset; overhead: default the space's (digits in the built-in one); evaluator, workers: "
        "default fashion-mnist where its system copy is installed, else digits (workers --device "
        "cuda, or with --space: the space's); search: of parts tpe and pruning (default: tpe "
        "fashion-mnist where its system copy is installed, else digits, pruning digits; with --space: "
        "the space's); part screen uses fashion-mnist where installed, else digits",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        nargs="+",
        metavar="W",
        help="workers: the numbers of worker processes to compare, the first the baseline (default 1 2)",
    )
    p.add_argument(
        "--trials-per-gpu",
        type=_positive_int,
        nargs="+",
        metavar="K",
        help="workers --device cuda: the numbers of trials packed on the GPU to compare (default 1 2 4)",
    )
    p.add_argument(
        "--subset",
        type=_positive_int,
        help="evaluator, workers: training images drawn (default 10000; digits: all; workers with "
        "--space or --device cuda: the space's); search: images of part screen, a fifth of them to "
        "score (default 2000)",
    )
    p.add_argument("--sizes", default="100,1000", help="suggest: history sizes (default 100,1000)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="evaluator: draw of the space; suggest: losses; search: the first campaign seed (default 0)",
    )
    p.add_argument(
        "--parts",
        metavar="PART,...",
        help="search: which parts to run, of tpe, pruning, screen (default tpe,pruning)",
    )
    p.add_argument(
        "--seeds",
        type=_positive_int,
        help="search: campaigns of each algorithm (tpe) and of each setting (pruning), seeds --seed, "
        "--seed + 1, ... (default 5)",
    )
    p.add_argument(
        "--target",
        type=float,
        metavar="ACC",
        help="search: the validation accuracy part tpe counts trials to (default: the --target-quantile "
        "of all its trials' val_acc, pooled over both algorithms)",
    )
    p.add_argument(
        "--pruning-target",
        type=float,
        metavar="ACC",
        help="search: the validation accuracy part pruning measures the training time to (default: the "
        "--target-quantile of the final val_acc of all its finished trials, pooled over both settings)",
    )
    p.add_argument(
        "--pruning-algo",
        choices=["random", "tpe"],
        help="search: the algorithm of part pruning's campaigns (default random: both settings draw the "
        "same trials)",
    )
    p.add_argument(
        "--target-quantile",
        type=float,
        metavar="Q",
        help="search: the quantile that chooses the targets not given (default 0.95)",
    )
    p.add_argument(
        "--screen-models",
        type=_positive_int,
        metavar="K",
        help="search: models part screen screens (default 2; about a minute each on a 2-core CPU)",
    )
    p.add_argument("--profile", metavar="FILE", help="overhead: also write a cProfile of the campaign")
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="layers, overhead, evaluator, workers, search (default cpu)",
    )
    p.add_argument("--out", help="where to write the JSON results (default runs/bench/WHICH.json)")
    p.set_defaults(func=cmd_bench)

    from .doctor import STEPS

    p = sub.add_parser(
        "doctor",
        parents=[common, data, device],
        help="check that archsearch works here end to end, and how fast (--gpu: on the GPU)",
        description="The acceptance check of a machine: a short campaign of spaces/quickstart.yaml "
        "(2 trials packed on the GPU; on a CPU 2 workers), a retrain and an export of its best trial "
        "with the export's self-check, the evaluator against a bare torch loop, HT-L3-1st screened, "
        "and trials per hour with 1, 2 and 4 trials packed on the GPU (CPU: 1 and 2 workers). Prints "
        "a table, writes OUT/doctor.json and OUT/doctor.log, and exits with 1 when a step failed. "
        "Nothing is downloaded: give the Fashion-MNIST files with --data-dir on a machine without "
        "them (else the check runs on digits). About 5 minutes on one H100/H200.",
    )
    p.add_argument("--gpu", action="store_true", help="check the GPU: as --device cuda, and fail without one")
    p.add_argument("--out", help="folder for the results (default runs/doctor/YYYYMMDD-HHMMSS)")
    p.add_argument("--quick", action="store_true", help="every step at toy sizes (a minute or two on a CPU)")
    p.add_argument(
        "--steps",
        type=lambda text: _choices(text, STEPS),
        metavar="STEP,...",
        help=f"only these steps, of {', '.join(STEPS)} (default all; environment always runs)",
    )
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "runs", None) is not None:
            check_runs(args.runs)
        return args.func(args)
    except UserError as e:
        if args.debug:
            raise
        print(f"archsearch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("archsearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a command that stopped reading (| head)
        # what is still buffered would fail again when Python flushes stdout at exit
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if args.debug or not type(e).__module__.startswith("mlflow."):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        print(f"archsearch: error: the tracking store refused a request: {first}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
