"""``archsearch doctor``: does archsearch work on this machine, end to end, and how fast?

The acceptance check of a machine, above all of a GPU (``--gpu``). Each step runs what a user
would type, in this process, in a folder of its own, and reads back what it recorded:

1. ``environment``  the libraries archsearch needs and their versions, the device and the
                    precision training runs in there;
2. ``campaign``     ``archsearch run spaces/quickstart.yaml``, 2 trials packed on the GPU
                    (``--trials-per-gpu 2``; on a CPU ``--workers 2``): every trial ends, none
                    is left running, one at least is ok;
3. ``retrain``      ``archsearch retrain`` of its best trial, tested once;
4. ``export``       ``archsearch export`` of it, with its self-check (TorchScript and ONNX
                    Runtime against torch);
5. ``evaluator``    ``archsearch bench evaluator``: the evaluator against a bare torch loop;
6. ``screen``       ``archsearch bench search --parts screen``: HT-L3-1st screened, models/hour;
7. ``packing``      ``archsearch bench workers``: trials per hour with 1, 2 and 4 trials packed
                    on the GPU, its utilization and peak memory (on a CPU: 1 and 2 workers).

It prints one table, writes ``OUT/doctor.json`` (every figure) and ``OUT/doctor.log`` (what each
step printed), and exits with 1 when a step failed (0 when all passed). A step that misses a
speed goal has not failed: the table says so. Nothing is downloaded: the data comes from
``--data-dir`` (the Fashion-MNIST files), the system copy or the cache, else the check runs on
``digits`` and says so. The full sizes take about 5 minutes on one H100/H200; ``--quick`` runs
every step at toy sizes (a minute or two on a CPU).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import UserError, error_line
from .outcome import Outcome, outcome_counts
from .settings import RUNS
from .text import table

ROOT = Path(__file__).resolve().parent.parent  # the project: spaces/ lives here

# sizes of the steps: "full" fits in about 5 minutes on one H100/H200; "quick" runs every step
# at toy sizes on a CPU (the test suite runs it)
SIZES = {
    "full": {
        "trials": 12,  # of the campaign (quickstart: 2 epochs of 9,000 images each)
        "campaign_set": [],
        "retrain_epochs": 2,
        "evaluator": ["--repeats", "3", "--epochs", "3"],
        "screen": ["--screen-models", "3"],  # 2,000 images of 200x200, 400 to score
        "packing": ["--trials", "12", "--epochs", "2"],  # quickstart on 10,000 images
    },
    "quick": {
        "trials": 3,
        "campaign_set": ["--set", "data.subset=600", "--set", "training.epochs=1"],
        "retrain_epochs": 1,
        "evaluator": ["--repeats", "1", "--epochs", "1", "--subset", "500"],
        "screen": ["--screen-models", "1", "--subset", "40"],
        "packing": ["--trials", "2", "--epochs", "1", "--subset", "500"],
    },
}
STEPS = ("environment", "campaign", "retrain", "export", "evaluator", "screen", "packing")


def needed() -> list[str]:
    """The distributions archsearch needs: pyproject.toml's dependencies (else the installed
    package's), with the extras they ask for (``dask[distributed]``: dask and distributed)."""
    try:
        deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    except (OSError, KeyError):
        deps = [d for d in importlib.metadata.requires("archsearch") or [] if "extra ==" not in d]
    names = []
    for dep in deps:
        match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", dep)
        if match:
            names.append(match[1])
            names += [extra.strip() for extra in (match[2] or "").split(",") if extra.strip()]
    return names


class StepFailed(Exception):
    """A step did not do what it must (the message says what)."""


class Doctor:
    """The steps of one check, their shared state (the device, the data, the campaign's folder)
    and their results."""

    def __init__(
        self, device: str, data_dir: Path | None, out: Path, quick: bool, main: Callable[[list], int]
    ):
        self.device, self.data_dir, self.out, self.main = device, data_dir, out, main
        self.size = SIZES["quick" if quick else "full"]
        self.runs = out / "runs"
        self.log = io.StringIO()
        self.results: dict[str, dict] = {}
        self.dataset = "fashion-mnist"

    # ------------------------------------------------------------ running the CLI

    def cli(self, *argv: str) -> None:
        """``archsearch ARGV`` in this process, its output kept for the log; fails the step
        with the last line it printed when it does not end with code 0."""
        out = io.StringIO()
        self.log.write(f"\n$ archsearch {' '.join(argv)}\n")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = self.main(list(argv))
        self.log.write(out.getvalue())
        if code != 0:
            said = [line for line in out.getvalue().splitlines() if line.strip()]
            raise StepFailed(f"`archsearch {argv[0]}` ended with code {code}: {said[-1] if said else ''}")

    def data_flags(self) -> list[str]:
        return ["--data-dir", str(self.data_dir)] if self.data_dir and self.dataset != "digits" else []

    def bench(self, which: str, *argv: str) -> dict:
        path = self.out / f"bench-{which}.json"
        device = "cuda" if self.device == "cuda" else "cpu"
        self.cli("bench", which, "--device", device, "--out", str(path), *self.data_flags(), *argv)
        return json.loads(path.read_text())

    def campaign(self) -> Any:
        from .campaign import open_store

        return open_store(self.runs, None).require("doctor")

    # ------------------------------------------------------------ the steps

    def environment(self) -> dict:
        missing = []
        versions = {"python": platform.python_version()}
        for name in needed():
            try:
                versions[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                missing.append(name)
        if missing:
            raise StepFailed(
                f"missing: {', '.join(missing)}; install them (README, GPU: a wheelhouse for a machine "
                "with no network)"
            )
        import torch

        from .bench.harness import default_dataset
        from .train import precision
        from .trial import device_name, resolve_device

        dev = resolve_device(self.device)
        self.device = dev.type
        self.dataset = default_dataset(self.data_dir)
        found = {"device": device_name(dev), "dataset": self.dataset, "versions": versions}
        found["precision"] = precision(dev)  # of training there
        if dev.type == "cuda":
            props = torch.cuda.get_device_properties(dev)
            found["gpu_memory_gib"] = props.total_memory / 2**30
            found["cuda"] = torch.version.cuda
        return found

    def run_campaign(self) -> dict:
        packed = ["--trials-per-gpu", "2"] if self.device == "cuda" else ["--workers", "2"]
        dataset = ["--dataset", "digits"] if self.dataset == "digits" else []
        t0 = time.perf_counter()
        self.cli(
            "run", str(ROOT / "spaces" / "quickstart.yaml"), "--name", "doctor", "--runs", str(self.runs),
            "--device", self.device, "--trials", str(self.size["trials"]), "-q",
            *packed, *dataset, *self.data_flags(), *self.size["campaign_set"],
        )  # fmt: skip
        wall = time.perf_counter() - t0
        from .results import best, latest_attempts

        trials = latest_attempts(self.campaign().trials(params=False))
        ended = [r for r in trials if r.outcome.ended]
        counts = {str(o): n for o, n in outcome_counts(r.outcome for r in trials).items()}
        if counts.get("running"):
            raise StepFailed(f"{counts['running']} trials were left RUNNING")
        if len(ended) != self.size["trials"]:
            raise StepFailed(f"{len(ended)} of {self.size['trials']} trials ended ({counts})")
        top = best(trials)
        if top is None:
            reasons = sorted({r.reason or "" for r in ended})
            raise StepFailed(f"no trial ended ok ({counts}; reasons: {'; '.join(reasons)[:300]})")
        return {
            "packing": " ".join(packed),
            "trials": len(ended),
            "outcomes": counts,
            "best": top.name,
            "best_val_acc": top.metrics["val_acc"],
            "wall_seconds": wall,
            "trials_per_hour": 3600 * len(ended) / wall,
        }

    def retrain(self) -> dict:
        epochs = str(self.size["retrain_epochs"])
        self.cli(
            "retrain", "doctor", "--runs", str(self.runs), "--top", "1", "--epochs", epochs,
            "--device", self.device, *self.data_flags(),
        )  # fmt: skip
        finals = [r for r in self.campaign().trials("final") if r.outcome == Outcome.OK]
        if not finals:
            raise StepFailed("no retrained model was recorded")
        final = finals[-1]
        return {
            "trial": final.trial,
            "epochs": int(final.metrics.get("epochs_done", 0)),
            "test_acc": final.metrics["test_acc"],
            "train_seconds": final.metrics.get("train_seconds"),
        }

    def export(self) -> dict:
        bundle = self.out / "export"
        self.cli("export", "doctor", "--runs", str(self.runs), "--out", str(bundle), *self.data_flags())
        metrics = json.loads((bundle / "metrics.json").read_text())
        check = metrics["self_check"]
        return {
            "folder": str(bundle),
            "files": sorted(p.name for p in bundle.iterdir()),
            "torchscript_max_abs_diff": check["torchscript_max_abs_diff"],
            "onnx_max_abs_diff": check["onnx_max_abs_diff"],
            "tolerance": check["tolerance"],
        }

    def evaluator(self) -> dict:
        found = self.bench("evaluator", "--space", str(ROOT / "spaces" / "quickstart.yaml"),
                           "--dataset", self.dataset, *self.size["evaluator"])  # fmt: skip
        return {
            "ratio": found["ratio"],
            "ratio_paired": found["ratio_paired"],
            "goal": found["goal"],
            "goal_met": found["ratio"] <= found["goal"],
            "network": found["name"],
            "median_seconds": found["median_seconds"],
        }

    def screen(self) -> dict:
        found = self.bench("search", "--parts", "screen", *self.size["screen"])["screen"]
        return {
            "models": found["models"],
            "outcomes": found["outcomes"],
            "images": found["images"],
            "seconds_per_model": found["seconds_per_model"],
            "models_per_hour": found["models_per_hour"],
            "versus_2011": found["versus_2011"],
        }

    def packing(self) -> dict:
        levels = ["--trials-per-gpu", "1", "2", "4"] if self.device == "cuda" else ["--workers", "1", "2"]
        found = self.bench("workers", "--space", str(ROOT / "spaces" / "quickstart.yaml"),
                           "--dataset", self.dataset, *levels, *self.size["packing"])  # fmt: skip
        rows = []
        for c in found["campaigns"]:
            usage = c.get("gpu_usage") or {}
            rows.append(
                {
                    "at_once": c.get("trials_per_gpu") or c["workers"],
                    "trials": c["trials"],
                    "trials_per_hour": c["trials_per_hour"],
                    "speedup": c["speedup"],
                    "gpu_utilization_mean": usage.get("utilization_mean"),
                    "gpu_memory_peak_mib": usage.get("memory_peak_mib"),
                }
            )
        return {"mode": found["mode"], "levels": rows}

    # ------------------------------------------------------------ the check

    def steps(self) -> dict[str, Callable[[], dict]]:
        return {
            "environment": self.environment,
            "campaign": self.run_campaign,
            "retrain": self.retrain,
            "export": self.export,
            "evaluator": self.evaluator,
            "screen": self.screen,
            "packing": self.packing,
        }

    def run(self, only: list[str], say: Callable[[str], None]) -> bool:
        """Run the steps (``only`` of them, in their order); True when every one passed."""
        needs = {"retrain": "campaign", "export": "campaign"}
        for name, step in self.steps().items():
            if name not in only and name != "environment":
                continue
            t0 = time.perf_counter()
            need = needs.get(name)
            if need and self.results.get(need, {}).get("status") != "ok":
                self.results[name] = {"status": "skipped", "error": f"needs step {need}"}
                say(f"  {name}: skipped (needs step {need})")
                continue
            if self.results.get("environment", {}).get("status") == "failed":
                self.results[name] = {"status": "skipped", "error": "needs step environment"}
                continue
            say(f"  {name} ...")
            try:
                figures = step()
            except (StepFailed, UserError) as e:
                self.results[name] = {"status": "failed", "error": str(e)}
            except Exception as e:  # a bug or a broken library: the check goes on, the step failed
                self.results[name] = {"status": "failed", "error": error_line(e)}
                self.log.write(f"\n{name}: {error_line(e)}\n")
            else:
                self.results[name] = {"status": "ok", **figures}
            self.results[name]["seconds"] = time.perf_counter() - t0
        return all(r["status"] == "ok" for r in self.results.values())


def figures_text(name: str, r: dict) -> str:
    """One step's figures, in a line of the table."""
    if r["status"] != "ok":
        return r.get("error", "")
    if name == "environment":
        v = r["versions"]
        return (
            f"{r['device']} (training in {r['precision']}); torch {v['torch']}, hyperopt {v['hyperopt']}, "
            f"mlflow {v['mlflow']}, dask {v['dask']}; data {r['dataset']}"
        )
    if name == "campaign":
        counts = ", ".join(f"{n} {o}" for o, n in r["outcomes"].items())
        return (
            f"{r['trials']} trials ({counts}), {r['packing']}: {r['trials_per_hour']:,.0f} trials/hour; "
            f"best {r['best']} val_acc {r['best_val_acc']:.4f}"
        )
    if name == "retrain":
        epochs = f"{r['epochs']} epoch{'s' * (r['epochs'] != 1)}"
        return f"t{r['trial']:03d}, {epochs}: test_acc {r['test_acc']:.4f}"
    if name == "export":
        return (
            f"self-check: TorchScript {r['torchscript_max_abs_diff']:.1e}, ONNX {r['onnx_max_abs_diff']:.1e} "
            f"(tolerance {r['tolerance']:g}); {len(r['files'])} files"
        )
    if name == "evaluator":
        met = "meets" if r["goal_met"] else "MISSES"
        return f"evaluator / bare loop {r['ratio']:.3f} ({met} the goal <= {r['goal']:g}), {r['network']}"
    if name == "screen":
        return (
            f"HT-L3-1st on {r['images']:,} images: {r['seconds_per_model']:.1f} s per model, "
            f"{r['models_per_hour']:,.0f} models/hour ({r['versus_2011']:.1f}x the 2011 screening)"
        )
    if name == "packing":
        parts = []
        for row in r["levels"]:
            text = f"{row['at_once']}: {row['trials_per_hour']:,.0f}/h ({row['speedup']:.2f}x"
            if row["gpu_utilization_mean"] is not None:
                text += f", GPU {row['gpu_utilization_mean']:.0f}%"
            if row["gpu_memory_peak_mib"] is not None:
                text += f", {row['gpu_memory_peak_mib']:,.0f} MiB"
            parts.append(text + ")")
        return ("trials per GPU " if r["mode"] == "gpu packing" else "workers ") + "; ".join(parts)
    return ""


def doctor(
    main: Callable[[list], int],
    *,
    device: str = "auto",
    data_dir: Path | None = None,
    out: Path | None = None,
    quick: bool = False,
    steps: list[str] | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Run the check; returns the exit code (0: every step passed, 1: one failed). ``main``: the
    command line's, which runs each step's command in this process."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir}: not a folder")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--gpu: torch sees no CUDA device here (torch.cuda.is_available() is False)")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(out or RUNS / "doctor" / stamp).absolute()
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out}: holds files already; give an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    check = Doctor(device, Path(data_dir).absolute() if data_dir else None, out, quick, main)
    only = list(steps or STEPS)
    say(f"archsearch doctor: {'quick' if quick else 'full'} check, steps {', '.join(only)}; results in {out}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="archsearch-doctor-") as cwd, contextlib.chdir(cwd):
        # the benchmarks read spaces/ and keep a data cache in ./runs: here, a folder of the check's own
        os.symlink(ROOT / "spaces", Path(cwd) / "spaces")
        passed = check.run(only, say)
    wall = time.perf_counter() - t0
    report = {
        "check": "doctor",
        "quick": quick,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "passed": passed,
        "wall_seconds": wall,
        "steps": check.results,
    }
    (out / "doctor.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "doctor.log").write_text(check.log.getvalue())
    rows = [("step", "result", "seconds", "figures")]
    for name, r in check.results.items():
        seconds = f"{r['seconds']:.1f}" if "seconds" in r else ""
        rows.append((name, r["status"], seconds, figures_text(name, r)))
    say(table(rows, align="llrl", indent=""))
    failed = [n for n, r in check.results.items() if r["status"] != "ok"]
    verdict = "every step passed" if not failed else f"FAILED: {', '.join(failed)}"
    say(f"archsearch doctor: {verdict} in {wall:.0f} s; {out / 'doctor.json'}, {out / 'doctor.log'}")
    return 0 if not failed else 1
