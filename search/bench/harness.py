"""What every benchmark shares: its command and options, where and with what it ran, timers, the
GPU's and CPUs' own counters, a campaign timed through the real code path, and its JSON.

A benchmark is a :class:`Benchmark`: a sub-command of ``archsearch bench`` with only its own
options (plus ``--out``, and ``--device``, ``--data-dir``, ``--space`` and ``--set`` where it
takes them), that prints a table and writes ``runs/bench/NAME.json``.
"""

from __future__ import annotations

import argparse
import contextlib
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

from ..errors import UserError
from ..options import Command, Option
from ..settings import RUNS

# ---------------------------------------------------------------- the command


class Benchmark(Command):
    """A sub-command of ``archsearch bench``: prints a table, writes JSON to ``--out``."""

    def add_to(self, commands: Any) -> argparse.ArgumentParser:
        parser = super().add_to(commands)
        parser.add_argument(
            "--out", help=f"where to write the JSON results (default {RUNS}/bench/{self.name}.json)"
        )
        return parser

    def out(self, args: argparse.Namespace) -> str:
        return args.out or str(RUNS / "bench" / f"{self.name}.json")


DEVICE = Option(
    ("--device",), {"choices": ["cpu", "cuda"], "default": "cpu", "help": "where to run (default cpu)"}
)
SETS = Option(
    ("--set",),
    {"action": "append", "metavar": "KEY=VALUE", "help": "override a value of the space (repeatable)"},
)


def space_option(default: str | None, said: str | None = None) -> Option:
    """``--space``; ``said``: how the help gives a default chosen later (``default`` None)."""
    return Option(("--space",), {"default": default, "help": f"the space file (default {said or default})"})


def default_dataset(data_dir: Path | None = None) -> str:
    """fashion-mnist where its files are at hand (``data_dir``, the system copy), else digits."""
    from ..data import REMOTES, SYSTEM_DIR, _has_all

    if data_dir is not None:
        return "fashion-mnist" if _has_all(data_dir, REMOTES["fashion-mnist"]) else "digits"
    return "fashion-mnist" if (Path(SYSTEM_DIR) / "fashion-mnist").is_dir() else "digits"


def valid_draws(space: Any, data: Any, n: int, seed: int, draws: int) -> list[tuple[dict, Any]]:
    """The first ``n`` configurations among ``draws`` drawn (seeded) from a space whose
    architecture fits the data and its constraints, each with its plan (params, MACs); fewer
    when the draws hold fewer."""
    from models import InvalidArchitecture, plan_model

    from ..compile import CompiledSpace

    out = []
    for config in CompiledSpace(space).sample(draws, seed=seed):
        try:
            plan = plan_model(config["architecture"], data.input_shape, data.n_classes, space.constraints)
        except InvalidArchitecture:
            continue
        out.append((config, plan))
        if len(out) == n:
            break
    return out


# ---------------------------------------------------------------- where and with what it ran


def device_of(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device | None) -> dict:
    """Where and with what a benchmark ran: device, threads, library versions."""
    from ..tracking import versions

    env: dict = {"device": "cpu (hyperopt runs in Python)" if device is None else _device_text(device)}
    if device is not None:
        from ..train import precision

        env["precision"] = precision(device)  # the campaign's training's (and bench value's reference's)
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


def env_line(env: dict) -> str:
    busy = " (other work may compete: expect noise)" if env["load_average"] > 1.0 else ""
    trained = f" (training in {env['precision']})" if "precision" in env else ""
    return (
        f"{env['device']}{trained}, {env['threads']} threads of {env['cpus']} CPUs, "
        f"load {env['load_average']}{busy}; "
        f"python {env['python']}, torch {env['torch']}, hyperopt {env['hyperopt']}, mlflow {env['mlflow']}"
    )


def write(results: dict, out: str) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


# ---------------------------------------------------------------- timers


def median_seconds(run: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """The median time of ``run`` over ``repeats`` calls after one warm-up (the GPU synchronized)."""

    def once() -> float:
        sync(device)
        start = time.perf_counter()
        run()
        sync(device)
        return time.perf_counter() - start

    once()  # warm-up
    return statistics.median(once() for _ in range(repeats))


class Timers:
    """Count calls of patched functions and sum their time (outermost calls only, per group)."""

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


# ---------------------------------------------------------------- the GPU's and the CPUs' counters

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


def cpu_seconds() -> dict[str, float | None]:
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


# ---------------------------------------------------------------- a campaign, timed


def timed_campaign(
    space_path: str, overrides: list[str], name: str, sampler: GpuSampler | None = None, **run: Any
) -> dict:
    """One campaign through ``search.run.launch`` in a fresh runs folder, timed from launch to its
    return (worker start-up and data loading included), with its trials as MLflow recorded them."""
    from ..run import launch
    from ..settings import resolve
    from ..tracking import Store

    with tempfile.TemporaryDirectory(prefix="archsearch-bench-") as tmp:
        runs = Path(tmp) / "runs"
        settings = resolve(space_path, overrides, name=name, runs=runs, quiet=True, **run)
        # before the clock: the SQLite store and its schema migrations (seconds, once per store)
        store = Store(f"sqlite:///{(runs / 'mlflow.db').resolve()}", runs)
        store.find(settings.name)
        load = os.getloadavg()[0]
        cpu0 = cpu_seconds()
        began = time.time()  # MLflow's clock, for the trials' start times
        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            if sampler is not None:
                stack.enter_context(sampler)
            with contextlib.redirect_stdout(io.StringIO()):  # its summary names a folder about to go
                code = launch(settings, store)
        wall = time.perf_counter() - start
        cpu1 = cpu_seconds()
        if code != 0:
            raise UserError(f"bench: campaign {name} ended with exit code {code}")
        records = store.require(settings.name).trials()
    ended = sorted(
        (r for r in records if r.outcome.ended and r.start_time and r.end_time), key=lambda r: r.start_time
    )
    if not ended:
        raise UserError(f"bench: campaign {name} ended no trial")
    cpu = {k: (cpu1[k] - cpu0[k]) if cpu0[k] is not None and cpu1[k] is not None else None for k in cpu0}
    return {
        **_trial_figures(ended, began, wall, run.get("workers") or 1),
        "load_average_before": round(load, 2),
        "cpu_seconds": {
            **cpu,
            "other_processes": None
            if cpu["machine"] is None
            else max(0.0, cpu["machine"] - cpu["driver"] - cpu["workers"]),
        },
    }


def _trial_figures(ended: list, began: float, wall: float, workers: int) -> dict:
    """What a timed campaign's trials (in order of start) say of its speed."""
    from ..outcome import outcome_counts

    seconds = [r.end_time - r.start_time for r in ended]
    train = [r.metrics["train_seconds"] for r in ended if r.metrics.get("train_seconds")]
    # time a trial's run spent outside the evaluator's training: the first trial of each worker
    # waits for its process to start and load the data; the others show the per-trial overhead
    first: list[float] = []
    rest: list[float] = []
    for i, r in enumerate(ended):
        if r.metrics.get("train_seconds") is not None:  # ok trials (an invalid one never trains)
            (first if i < workers else rest).append(r.end_time - r.start_time - r.metrics["train_seconds"])
    return {
        "trials": len(ended),
        "outcomes": {str(o): n for o, n in outcome_counts(r.outcome for r in ended).items()},
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
                "outcome": str(r.outcome),
                "seconds": r.end_time - r.start_time,
                "train_seconds": r.metrics.get("train_seconds"),
                "val_acc": r.metrics.get("val_acc"),
                "epochs_done": r.metrics.get("epochs_done"),
                "start_offset_seconds": r.start_time - began,
            }
            for r in ended
        ],
    }
