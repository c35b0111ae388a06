"""The ``archsearch`` command line: a table of commands (:data:`COMMANDS`), each a small class that
declares its options beside what it does.

Options several commands take (``--runs``, ``--tracking-uri``, ``--data-dir``, ``--device``,
``--debug``) are declared once in ``search.options``; the benchmarks are sub-commands of
``bench``, one per module of ``search.bench``. Errors a user can fix end as one line and exit
code 2 (a traceback only with ``--debug``).

Commands import what they need when they run: the worker processes of ``run --workers``, which
import this module again (multiprocessing's spawn re-imports the main script), need neither
hyperopt nor MLflow.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import schema
from .errors import UserError, error_line
from .options import (
    DATA_DIR,
    DEVICE,
    RUNS_DIR,
    STORE,
    TRACKING_PATIENCE,
    Command,
    data_dir,
    positive_float,
    positive_int,
    shape,
    some_of,
)
from .settings import RUNS, SHORTHANDS, WARM_TOP, cpu_bf16_allowed
from .space import Space
from .text import si, table


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


def store_of(args: argparse.Namespace) -> Any:
    """The tracking store (``search.tracking.Store``) of ``--runs`` and ``--tracking-uri``."""
    from .campaign import open_store

    return open_store(Path(args.runs), args.tracking_uri)


# ---------------------------------------------------------------- a space


class Sample(Command):
    name = "sample"
    help = "validate a space and show sampled architectures"
    description = (
        "Validate a space file and print K architectures sampled from it at random, with parameters, "
        "MACs per image, output shape and validity for the input."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("space", help="a space file, such as spaces/quickstart.yaml")
        p.add_argument("-n", type=positive_int, default=5, help="how many architectures (default 5)")
        p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
        p.add_argument(
            "--input",
            type=shape,
            help="input shape CxHxW (default: the space's data.input_shape or the dataset's)",
        )
        p.add_argument("--classes", type=positive_int, help="number of classes (default: the dataset's)")
        p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
        p.add_argument(
            "-v", "--verbose", action="store_true", help="also print each plan and training recipe"
        )

    def run(self, args: argparse.Namespace) -> int:
        from .compile import CompiledSpace
        from .space import input_of, load_space

        space = load_space(args.space)
        shape_, classes = input_of(space, args.input, args.classes)
        compiled = CompiledSpace(space)
        records = [
            self.record(config, shape_, classes, space) for config in compiled.sample(args.n, args.seed)
        ]
        if args.json:
            print(json.dumps([{k: v for k, v in r.items() if k != "plan"} for r in records], indent=2))
            return 0
        depths = "/".join(map(str, space.depths))
        print(
            f"{space.path}: {space.name}: {len(compiled.labels)} searched hyperparameters, depth {depths}; "
            f"input {'x'.join(map(str, shape_))}, {classes} classes"
        )
        for i, r in enumerate(records, start=1):
            self.show(i, r, args.verbose)
        return 0

    @staticmethod
    def record(config: dict, shape_: tuple, classes: int, space: Space) -> dict:
        """One sampled configuration as `sample --json` lists it (and its plan, for -v)."""
        from models import InvalidArchitecture, plan_model

        from .compile import arch_hash, arch_name

        arch = config["architecture"]
        record = {
            "arch": arch,
            "training": config["training"],
            "hash": arch_hash(arch),
            "name": arch_name(arch),
        }
        try:
            plan = plan_model(arch, shape_, classes, space.constraints)
        except InvalidArchitecture as e:
            none = dict.fromkeys(("params", "macs", "output_shape", "features", "plan"))
            return {**record, "valid": False, "reason": str(e), **none}
        return {
            **record,
            "valid": True,
            "reason": None,
            "params": plan.params,
            "macs": plan.macs,
            "output_shape": list(plan.output_shape),
            "features": plan.features,
            "plan": plan,
        }

    @staticmethod
    def show(i: int, r: dict, verbose: bool) -> None:
        from .compile import to_json

        head = f"#{i:<3} {r['hash']}  {r['name']}"
        if r["valid"]:
            out = "x".join(map(str, r["output_shape"]))
            print(
                f"{head}  valid  params {r['params']:,}  MACs {si(r['macs'])}  "
                f"output {out} ({r['features']:,} features)"
            )
        else:
            print(f"{head}  INVALID: {r['reason']}")
        if verbose:
            if r["plan"] is not None:
                print("\n".join("     " + line for line in r["plan"].table().splitlines()))
            print("\n".join("     " + line for line in to_json(r["training"], indent=2).splitlines()))


# ---------------------------------------------------------------- a campaign


def shorthand_type(key: str) -> dict:
    """The argparse type (or choices) of a run shorthand, from its key's spec in the schema."""
    spec = schema.spec_at(key)
    if isinstance(spec, schema.Enum):
        return {"choices": list(spec.options)}
    if isinstance(spec, schema.Num) and spec.integer:
        return {"type": positive_int if (spec.low or 0) >= 1 else int}
    if isinstance(spec, schema.Num):
        return {"type": positive_float if spec.low == 0 and spec.low_open else float}
    return {}


class Run(Command):
    name = "run"
    help = "run (or resume) a search campaign"
    description = (
        "Run a search campaign over a space: suggest architectures with TPE (or at random), train and "
        "validate each, and record everything in MLflow. Running a campaign name that exists resumes "
        "it. Every setting comes from the space file; the flags below override it."
    )
    options = (*STORE, DATA_DIR, DEVICE)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("space", nargs="?", help="a space file, such as spaces/quickstart.yaml")
        p.add_argument("--resume", metavar="NAME", help="continue the campaign NAME with its own settings")
        p.add_argument("--name", help="campaign name (default: the space's name)")
        for flag, s in SHORTHANDS.items():
            default = schema.spec_at(s.key).default
            said = "" if default in (None, schema.REQUIRED) else f", which defaults to {default}"
            p.add_argument(
                "--" + flag.replace("_", "-"),
                metavar=s.metavar,
                help=f"{s.help} ({s.key}{said})",
                **shorthand_type(s.key),
            )
        p.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override a value of the space file by its key path, e.g. --set training.epochs=1 "
            "(repeatable)",
        )
        first = p.add_argument_group("configurations to evaluate before any suggestion, in order")
        first.add_argument(
            "--warm-start",
            metavar="NAME",
            help="re-evaluate the best trials of the campaign NAME first (its configurations, trained anew)",
        )
        first.add_argument(
            "--warm-start-top",
            type=positive_int,
            default=WARM_TOP,
            metavar="K",
            help=f"how many of its best trials, by validation loss (default {WARM_TOP})",
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
            type=positive_int,
            metavar="W",
            help="run W trials at once in worker processes (on CPU the cores are split between them; "
            "with GPUs they take the GPUs round-robin); with --dask: at most W trials at once",
        )
        where.add_argument(
            "--trials-per-gpu",
            type=positive_int,
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
            type=positive_int,
            metavar="N",
            help="torch CPU threads of each trial (default: the cores divided between the workers)",
        )
        TRACKING_PATIENCE.add(p)
        p.add_argument("-q", "--quiet", action="store_true", help="print only errors and the final summary")

    def run(self, args: argparse.Namespace) -> int:
        from .campaign import open_store, resume_settings
        from .run import launch
        from .settings import CHANGEABLE, changeable, flag_overrides, resolve

        overrides = flag_overrides(vars(args)) + list(args.set or [])
        store = open_store(Path(args.runs), args.tracking_uri, args.tracking_patience)
        options = {
            "device": args.device,
            "runs": Path(args.runs),
            "data_dir": data_dir(args),
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
        if args.resume:
            if args.space:
                raise UserError("give either a space file or --resume NAME, not both")
            other = [o for o in overrides if not changeable(o.partition("=")[0].strip())]
            if other:
                raise UserError(
                    f"--resume keeps the campaign's settings; only the run limits and how trials run "
                    f"({', '.join(CHANGEABLE)}) may change, got {' '.join(other)}"
                )
            settings = resume_settings(store, args.resume, overrides, **options)
        elif args.space:
            settings = resolve(args.space, overrides, name=args.name, **options)
        else:
            raise UserError("give a space file (archsearch run spaces/quickstart.yaml) or --resume NAME")
        return launch(settings, store, started=getattr(args, "started", None))


class Status(Command):
    name = "status"
    help = "progress of a campaign"
    description = "Trials ended, failed and running, the best so far, elapsed time and ETA."
    options = STORE

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("name", help="campaign name")

    def run(self, args: argparse.Namespace) -> int:
        from .campaign import runs_flag
        from .results import status_text

        print(status_text(store_of(args).require(args.name), runs_flag(args.runs)))
        return 0


class Leaderboard(Command):
    name = "leaderboard"
    help = "the best trials of a campaign"
    description = (
        "The best finished trials (by final validation accuracy) with their metrics and architecture "
        "values. The table shows the settings that differ between the rows listed; csv and json hold "
        "every column."
    )
    options = STORE

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("name", help="campaign name")
        p.add_argument("--top", type=positive_int, default=10, help="how many trials (default 10)")
        p.add_argument("--format", choices=["table", "csv", "json"], default="table")
        p.add_argument("--all", action="store_true", help="also list invalid and failed trials")

    def run(self, args: argparse.Namespace) -> int:
        import pandas as pd

        from .results import campaign_board, varying

        df = campaign_board(store_of(args).require(args.name), args.top, include_failed=args.all)
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


class Report(Command):
    name = "report"
    help = "plots and an HTML report of one campaign, or several side by side"
    description = (
        "Write report.html and its PNG plots: the best validation accuracy so far against the trial "
        "number (one curve per campaign: compare a TPE and a random campaign), each searched parameter "
        "against validation accuracy, accuracy against parameters and MACs with the Pareto front, and "
        "the top 20 of the leaderboard. Self-contained: the images sit next to the HTML, no JavaScript, "
        "nothing fetched. An existing folder is reused (its files overwritten)."
    )
    options = STORE

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("names", nargs="+", metavar="NAME", help="campaign name (two or more: compared)")
        p.add_argument("--out", help="folder to write (default RUNS/reports/NAME, NAME-vs-NAME2 for two)")

    def run(self, args: argparse.Namespace) -> int:
        from .report import NO_TRIALS, default_out, snapshot, write_report

        store = store_of(args)
        snaps = [snapshot(store.require(name)) for name in args.names]
        out = Path(args.out) if args.out else default_out(Path(args.runs), args.names)
        files = write_report(snaps, out)
        for snap in snaps:
            if snap.board.empty:
                print(f"campaign {snap.name}: {NO_TRIALS} (the report says so, without plots of it)")
        pngs = [f.name for f in files if f.suffix == ".png"]
        print(f"report: {files[0]}" + (f" (with {', '.join(pngs)})" if pngs else ""))
        return 0


# ---------------------------------------------------------------- the best models


class Export(Command):
    name = "export"
    help = "export a trial as a self-contained bundle (TorchScript, ONNX, weights, card)"
    description = (
        "Write the best model of a campaign to a folder: its ensemble of final models when it has "
        "one (search.final.ensemble, retrain --ensemble), else the best finished trial, retrained when "
        "it was (or --trial N, or --run-id ID): "
        "model.pt (TorchScript), model.onnx, weights.safetensors, architecture.json, metrics.json, "
        "preprocessing.json and MODEL.md. The export checks itself first: TorchScript and ONNX Runtime "
        "must match the torch model on validation images."
    )
    options = (*STORE, DATA_DIR)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("name", help="campaign name")
        which = p.add_mutually_exclusive_group()
        which.add_argument("--trial", type=int, help="export this trial number")
        which.add_argument(
            "--run-id", help="export this MLflow run (a trial, final or ensemble run of the campaign)"
        )
        p.add_argument(
            "--out", required=True, help="the bundle's folder (must not hold files, unless --force)"
        )
        p.add_argument("--force", action="store_true", help="replace the files of an existing --out")
        p.add_argument(
            "--register",
            metavar="MODEL",
            help="also register it in the MLflow Model Registry as MODEL (a pyfunc giving class "
            "probabilities)",
        )

    def run(self, args: argparse.Namespace) -> int:
        from .export import export_bundle

        done = export_bundle(
            store_of(args).require(args.name),
            Path(args.out),
            trial=args.trial,
            run_id=args.run_id,
            force=args.force,
            cache_dir=Path(args.runs) / "data",
            data_dir=data_dir(args),
            register_as=args.register,
        )
        check, record = done.check, done.record
        metrics = record.metrics
        score = (
            f"test_acc {metrics['test_acc']:.4f}"
            if "test_acc" in metrics
            else f"val_acc {metrics['val_acc']:.4f}"
        )
        ensemble = record.name.startswith("ensemble ")
        which = "the " if ensemble else ""
        if record.name.startswith("final "):
            which = "the retrained model (train + validation images) of "
        print(
            f"exported {which}{record.name.removeprefix('final ')} ("
            + ("the mean of its models' probabilities; " if ensemble else f"trial {record.trial}, ")
            + f"run {record.run_id}, {score}) to {done.out}: "
            f"{', '.join(done.files)}; {done.bytes / 1e6:.2f} MB in {done.seconds:.1f} s"
        )
        print(
            f"self-check on {check['batch']} validation images: TorchScript and ONNX Runtime match the torch "
            f"model within {check['torchscript_max_abs_diff']:.1e} and {check['onnx_max_abs_diff']:.1e} "
            f"(tolerance {check['tolerance']:g}), same predictions"
        )
        if done.registered:
            print(
                f"registered as {done.registered}: "
                f"mlflow.pyfunc.load_model({done.registered!r}).predict(images)"
            )
        return 0


class Retrain(Command):
    name = "retrain"
    help = "train the best architectures again on training + validation data, test once"
    description = (
        "Train the best K finished trials (by validation loss) again with their recipe for longer, on "
        "training + validation images, evaluate each once on the test set, and log them as runs tagged "
        "final in the campaign's experiment. export then prefers them."
    )
    options = (*STORE, DATA_DIR, DEVICE)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("name", help="campaign name")
        p.add_argument("--top", type=positive_int, default=3, help="how many trials (default 3)")
        p.add_argument("--epochs", type=positive_int, help="epochs (default: twice the trial's)")
        p.add_argument(
            "--ensemble",
            action="store_true",
            help="also test the retrained models averaged (the mean of their probabilities) and log "
            "it as an ensemble run, which export then takes (needs --top 2 or more)",
        )

    def run(self, args: argparse.Namespace) -> int:
        from .campaign import runs_flag
        from .retrain import retrain

        if args.ensemble and args.top < 2:
            raise UserError(
                "--ensemble averages the retrained models of --top trials; "
                f"give --top 2 or more, not {args.top}"
            )
        finals, averaged = retrain(
            store_of(args).require(args.name),
            top=args.top,
            epochs=args.epochs,
            device=args.device,
            cache_dir=Path(args.runs) / "data",
            data_dir=data_dir(args),
            ensemble=args.ensemble,
        )
        which = "the ensemble" if averaged is not None else "the retrained model of the best trial"
        print(
            f"{len(finals)} final runs logged in campaign {args.name!r} (tag archsearch.kind=final)"
            + (" and their ensemble (tag archsearch.kind=ensemble)" if averaged is not None else "")
            + f"; `archsearch export {args.name}{runs_flag(args.runs)} --out DIR` takes {which}"
        )
        return 0


# ---------------------------------------------------------------- the MLflow UI, data


BEST_SHOWN = 20  # trials in the UI link to a campaign's best


def runs_page(home: str, experiment_id: str, search: str = "", order: str = "attributes.start_time") -> str:
    """The MLflow UI's runs table of an experiment, filtered by ``search``, in descending ``order``
    (these settings of the page are read from its link on /runs only)."""
    import urllib.parse

    query = {
        "workflowType": "machine_learning",
        "searchFilter": search,
        "orderByKey": order,
        "orderByAsc": "false",
    }
    return f"{home}/#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query)}"


class Ui(Command):
    name = "ui"
    help = "the MLflow UI over the campaigns, on 127.0.0.1"
    description = "Start the MLflow UI over the default store, bound to 127.0.0.1."
    options = STORE

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "name", nargs="?", help="print the link to this campaign's runs (default: every campaign)"
        )
        p.add_argument("--port", type=positive_int, default=5000, help="port (default 5000)")

    def run(self, args: argparse.Namespace) -> int:
        import subprocess

        from .results import best_filter
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
        home = f"http://127.0.0.1:{args.port}"
        print(f"MLflow UI on {home} over {db} (Ctrl-C to stop)", flush=True)
        store = store_of(args)
        for name in [args.name] if args.name else store.campaign_names():
            campaign = store.require(name)
            # the runs table (MLflow's experiment page opens on its GenAI overview otherwise), with
            # its filter and order in the link (else the UI shows the last ones used there)
            print(f"  {name}: {runs_page(home, campaign.experiment_id)}", flush=True)
            best = best_filter(campaign.trials(params=False), BEST_SHOWN)
            if best is not None:
                link = runs_page(home, campaign.experiment_id, best, "metrics.`val_acc`")
                print(f"    its {BEST_SHOWN} best trials: {link}", flush=True)
        command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
        command += ["--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
        # one worker and no background job runners: the UI answers in seconds instead of a minute
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        try:
            return subprocess.call(command, env=env)
        except KeyboardInterrupt:
            return 0


class Data(Command):
    name = "data"
    help = "list datasets, or fetch and verify one into the cache"
    description = (
        "'list' shows the built-in datasets and where each is available; 'get NAME' fetches one into "
        "RUNS/data and verifies its checksums."
    )
    options = (RUNS_DIR.changed(help=f"the cache is RUNS/data (default {RUNS})"),)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("action", choices=["list", "get"])
        p.add_argument("name", nargs="?", help="dataset to fetch (get)")
        DATA_DIR.add(p, help="a folder holding the dataset's files to verify and copy")

    def run(self, args: argparse.Namespace) -> int:
        from .data import dataset_table, fetch

        cache = Path(args.runs) / "data"
        if args.action == "list":
            rows = [("dataset", "shape", "train / test", "where")]
            for r in dataset_table(cache):
                known = isinstance(r["train"], int)
                sizes = f"{r['train']:,} / {r['test']:,}" if known else "-"
                rows.append(
                    (r["name"], r["shape"], sizes, r["where"] if known else f"{r['where']}: {r['about']}")
                )
            print(table(rows, align="l", indent=""))
            return 0
        if not args.name:
            raise UserError("data get: which dataset? e.g. `archsearch data get fashion-mnist`")
        files = fetch(args.name, cache_dir=cache, data_dir=data_dir(args))
        if not files:
            print(f"{args.name}: nothing to fetch (built in)")
        for f in files:
            print(f"{args.name}: verified {f}")
        return 0


# ---------------------------------------------------------------- measuring


class Bench(Command):
    name = "bench"
    help = "benchmarks (prints a table, writes JSON)"
    description = (
        "Benchmarks, one sub-command each, with only its own options; each prints a table and writes "
        f"{RUNS}/bench/NAME.json (`archsearch bench NAME --help` says what it measures)."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from .bench import BENCHMARKS

        which = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
        for benchmark in BENCHMARKS.values():
            benchmark.add_to(which)


class Doctor(Command):
    name = "doctor"
    help = "check that archsearch works here end to end, and how fast (--gpu: on the GPU)"
    description = (
        "The acceptance check of a machine: a short campaign of spaces/quickstart.yaml (2 trials packed "
        "on the GPU; on a CPU 2 workers), a retrain and an export of its best trial with the export's "
        "self-check, the evaluator against a bare torch loop, HT-L3-1st screened, and trials per hour "
        "with 1, 2 and 4 trials packed on the GPU (CPU: 1 and 2 workers). Prints a table, writes "
        "OUT/doctor.json and OUT/doctor.log, and exits with 1 when a step failed. Nothing is downloaded: "
        "give the Fashion-MNIST files with --data-dir on a machine without them (else the check runs on "
        "digits). About 5 minutes on one H100/H200."
    )
    options = (DATA_DIR, DEVICE)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from .doctor import STEPS

        p.add_argument(
            "--gpu", action="store_true", help="check the GPU: as --device cuda, and fail without one"
        )
        p.add_argument("--out", help=f"folder for the results (default {RUNS}/doctor/YYYYMMDD-HHMMSS)")
        p.add_argument(
            "--quick", action="store_true", help="every step at toy sizes (a minute or two on a CPU)"
        )
        p.add_argument(
            "--steps",
            type=some_of(STEPS),
            metavar="STEP,...",
            help=f"only these steps, of {', '.join(STEPS)} (default all; environment always runs)",
        )

    def run(self, args: argparse.Namespace) -> int:
        from .doctor import doctor

        if args.gpu and args.device == "cpu":
            raise UserError("--gpu checks the GPU; leave out --device cpu")
        return doctor(
            main,
            device="cuda" if args.gpu else args.device,
            data_dir=data_dir(args),
            out=Path(args.out) if args.out else None,
            quick=args.quick,
            steps=args.steps,
        )


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Sample(),
        Run(),
        Status(),
        Leaderboard(),
        Report(),
        Export(),
        Retrain(),
        Ui(),
        Data(),
        Bench(),
        Doctor(),
    )
}


# ---------------------------------------------------------------- main


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser. Given the arguments, the options of the command they name
    only (the others' names and help): ``bench``'s options import every benchmark, and with
    them torch and hyperopt, which ``status`` (say) does without."""
    parser = argparse.ArgumentParser(
        prog="archsearch", description="Architecture search over the Pinto & Cox model family."
    )
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    named = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    for command in COMMANDS.values():
        if argv is None or command.name == named:
            command.add_to(commands)
        else:
            commands.add_parser(command.name, help=command.help, description=command.description)
    return parser


class _Console(logging.StreamHandler):
    """Records of some levels, written to whatever ``sys.stdout`` (notes) or ``sys.stderr``
    (warnings) is when they come."""

    def __init__(self, warnings: bool):
        super().__init__()
        self.warnings = warnings
        self.addFilter(lambda record: (record.levelno >= logging.WARNING) == warnings)
        self.setFormatter(logging.Formatter("archsearch: %(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr if self.warnings else sys.stdout

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(args: argparse.Namespace) -> None:
    """archsearch's own messages, once: notes (a download) on stdout, beside the command's output,
    unless ``--quiet``; warnings (a plot that could not be drawn) on stderr; with ``--debug``, its
    debug messages too."""
    logger = logging.getLogger("search")
    if not any(isinstance(h, _Console) for h in logger.handlers):
        logger.addHandler(_Console(warnings=False))
        logger.addHandler(_Console(warnings=True))
    quiet = getattr(args, "quiet", False)
    logger.setLevel(logging.DEBUG if args.debug else logging.WARNING if quiet else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()  # a campaign's time budget counts from here
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    args.started = started
    configure_logging(args)
    try:
        if getattr(args, "runs", None) is not None:
            check_runs(args.runs)
        cpu_bf16_allowed()  # a bad ARCHSEARCH_CPU_BF16 stops here, not in every trial
        code = args.command.run(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
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
        print(
            f"archsearch: error: the tracking store refused a request: {error_line(e, 300, typed=False)}",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
