"""``archsearch bench workers``: trials per hour of real campaigns with ``--workers`` 1 and 2 (one
torch thread per trial) on the CPU, and the speedup (goal: 2 workers >= 1.7x one on 2 cores); with
``--device cuda``, with ``--trials-per-gpu`` 1, 2 and 4 on one GPU, and its utilization
(nvidia-smi). One campaign per setting, timed whole (worker start-up included), so runs differ by a
few percent.

Each setting runs the same campaign (space, seed, random search: the same trials) through
``search.run.launch`` in a fresh temporary runs folder whose SQLite store is created before the
clock starts. The wall time is launch's: it includes loading the data, spawning the worker
processes (each imports torch and loads the dataset: seconds) and the tail where fewer trials than
workers are left, as a real campaign pays them.
"""

from __future__ import annotations

import argparse
import statistics

from ..errors import UserError
from ..options import DATA_DIR, data_dir, positive_int
from ..text import table
from .harness import (
    DEVICE,
    SETS,
    Benchmark,
    GpuSampler,
    default_dataset,
    device_of,
    env_line,
    environment,
    timed_campaign,
    write,
)

# On CPU, by default: spaces/quickstart.yaml on 10,000 Fashion-MNIST images, 2 epochs (trials of
# about 3 to 20 seconds on one thread), random search so that every run trains the same trials:
# about 110 s with one worker on a 2-core CPU and 55 to 60 s with two, 3 minutes in all. Without
# Fashion-MNIST: all of digits at 28x28, for about as many training images per trial.
CPU = {"space": "spaces/quickstart.yaml", "trials": 12, "epochs": 2, "subset": 10000, "digits_epochs": 15}
# With --device cuda: the default space for real campaigns, on all of Fashion-MNIST
GPU = {"space": "spaces/pinto_cox.yaml", "trials": 16, "epochs": 3}
# W workers on at least W cores give at least this share of W times the trials per hour of one
EFFICIENCY = 0.85


class Workers(Benchmark):
    name = "workers"
    help = "trials per hour with --workers 1 and 2 (goal >= 1.7x); --device cuda: 1, 2, 4 per GPU"
    description = (
        "Trials per hour of a real campaign with 1 and 2 worker processes of one thread each on the "
        "CPU, and the speedup; with --device cuda, with 1, 2 and 4 trials packed on one GPU, and the "
        "GPU's utilization. Random search: every setting trains the same trials."
    )
    options = (DEVICE, DATA_DIR, SETS)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--space",
            help=f"the space file (default {CPU['space']} on a {CPU['subset']:,}-image subset; "
            f"--device cuda: {GPU['space']})",
        )
        p.add_argument(
            "--trials",
            type=positive_int,
            help=f"trials of each campaign (default {CPU['trials']}, cuda {GPU['trials']})",
        )
        p.add_argument(
            "--epochs",
            type=positive_int,
            help=f"epochs per trial (default {CPU['epochs']}, digits {CPU['digits_epochs']}, cuda "
            f"{GPU['epochs']}; with --space: the space's)",
        )
        p.add_argument(
            "--dataset",
            help="the dataset (default fashion-mnist where its system copy is installed, else digits; "
            "with --space or --device cuda: the space's)",
        )
        p.add_argument(
            "--subset",
            type=positive_int,
            help="training images drawn (default 10000; with --space or cuda: the space's)",
        )
        p.add_argument(
            "--workers",
            type=positive_int,
            nargs="+",
            metavar="W",
            help="the numbers of worker processes to compare, the first the baseline (default 1 2)",
        )
        p.add_argument(
            "--trials-per-gpu",
            type=positive_int,
            nargs="+",
            metavar="K",
            help="--device cuda: the numbers of trials packed on the GPU to compare (default 1 2 4)",
        )

    def run(self, args: argparse.Namespace) -> int:
        from ..executor import cpu_count
        from ..settings import resolve

        gpu = args.device == "cuda"
        env = environment(device_of(args.device))
        if gpu and args.workers:
            raise UserError("--workers: with --device cuda, give --trials-per-gpu (trials packed on one GPU)")
        if not gpu and args.trials_per_gpu:
            raise UserError("--trials-per-gpu: only with --device cuda; on CPU give --workers")
        defaults = GPU if gpu else CPU
        space_path = args.space or defaults["space"]
        dataset = args.dataset or (None if gpu or args.space else default_dataset(data_dir(args)))
        overrides = settings_of(args, defaults, dataset)
        levels = list(dict.fromkeys((args.trials_per_gpu or [1, 2, 4]) if gpu else (args.workers or [1, 2])))
        resolved = resolve(space_path, overrides, name="bench")  # errors in the settings before any run
        space, epochs = resolved.space, (resolved.raw.get("training") or {}).get("epochs")
        print(
            f"bench workers: {space.name} ({space_path}) on {space.data['dataset']}, "
            f"{space.search['trials']} trials of {epochs} epochs, random search seed "
            f"{space.search['seed']} (the same trials in every run)"
            + ("" if gpu else ", 1 torch thread per trial"),
            flush=True,
        )
        campaigns = [campaign(level, gpu, space_path, overrides, args) for level in levels]
        speedups(campaigns, "trials_per_gpu" if gpu else "workers", gpu, cpu_count())
        results = {
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
            "cores": cpu_count(),  # this process may use (the goal is for up to as many workers)
            "efficiency_goal": None if gpu else EFFICIENCY,
            "campaigns": campaigns,
        }
        print(f"  on {env_line(env)}")
        (show_gpu if gpu else show_cpu)(results)
        write(results, self.out(args))
        return 0


def settings_of(args: argparse.Namespace, defaults: dict, dataset: str | None) -> list[str]:
    """The benchmark's settings as overrides: trials, epochs, dataset, random search (the same trials
    in every run), then the user's --set."""
    overrides = [f"search.trials={args.trials or defaults['trials']}", "search.algo=random"]
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


def campaign(level: int, gpu: bool, space_path: str, overrides: list[str], args: argparse.Namespace) -> dict:
    """One setting's campaign: ``level`` trials packed on one GPU, or worker processes of one thread
    each on the CPU."""
    from ..executor import visible_gpus

    if gpu:
        gpu_id = (visible_gpus() or [None])[0]
        sampler = GpuSampler(gpu_id, every=0.5)
        row = timed_campaign(
            space_path,
            overrides,
            f"bench-workers-gpu{level}",
            sampler=sampler,
            device="cuda",
            workers=level,
            trials_per_gpu=level,
            data_dir=data_dir(args),
        )
        row = {
            "trials_per_gpu": level,
            "workers": level,
            "gpu": gpu_id,
            **row,
            "gpu_usage": sampler.summary(),
        }
    else:
        row = timed_campaign(
            space_path,
            overrides,
            f"bench-workers-{level}",
            device="cpu",
            workers=level,
            threads=1,
            data_dir=data_dir(args),
        )
        row = {"workers": level, "threads_per_trial": 1, **row}
    row["busy"] = row["trial_seconds_sum"] / (level * row["wall_seconds"])  # the share of wall in trial runs
    print(
        f"  {'trials per GPU' if gpu else 'workers'} {level}: {row['trials']} trials in "
        f"{row['wall_seconds']:.1f} s",
        flush=True,
    )
    return row


def speedups(campaigns: list[dict], key: str, gpu: bool, cores: int) -> None:
    """Each setting's speedup over the first, its goal (CPU, up to as many workers as cores), and
    where the speedup comes from (exactly, when both ended as many trials): the ratio of trials at
    once x the ratio of busy shares (start-up, tail, driver) x how much faster the same trials ran
    (contention between trials, or the machine's speed drifting)."""
    base = campaigns[0]
    for row in campaigns:
        row["speedup"] = row["trials_per_hour"] / base["trials_per_hour"]
        row["goal"], row["goal_met"] = None, None
        if not gpu and base[key] < row[key] <= cores:
            row["goal"] = EFFICIENCY * row[key] / base[key]
            row["goal_met"] = row["speedup"] >= row["goal"]
        row["busy_ratio"] = row["busy"] / base["busy"]
        row["trial_speed_ratio"] = base["trial_seconds_sum"] / row["trial_seconds_sum"]
        row["train_time_ratio_median"] = paired_train_ratio(row, base)


def paired_train_ratio(row: dict, base: dict) -> float | None:
    """The median over the trials both runs trained of train seconds here / in ``base``."""
    first = {t["trial"]: t["train_seconds"] for t in base["per_trial"] if t["train_seconds"]}
    ratios = [
        t["train_seconds"] / first[t["trial"]]
        for t in row["per_trial"]
        if t["train_seconds"] and t["trial"] in first
    ]
    return statistics.median(ratios) if ratios else None


def show_gpu(results: dict) -> None:
    header = (
        "trials/GPU",
        "trials",
        "wall",
        "trials/hour",
        "trial s",
        "busy",
        "speedup",
        "GPU util mean",
        "max",
    )
    rows = [(*header, "peak mem")]
    for r in results["campaigns"]:
        u = r["gpu_usage"]

        def known(value: float | None, fmt: str) -> str:
            return "n/a" if value is None else fmt.format(value)

        rows.append(
            (
                str(r["trials_per_gpu"]),
                trials_text(r),
                f"{r['wall_seconds']:.1f} s",
                f"{r['trials_per_hour']:.0f}",
                f"{r['trial_seconds_mean']:.1f}",
                f"{100 * r['busy']:.0f}%",
                f"{r['speedup']:.2f}x",
                known(u["utilization_mean"], "{:.0f}%"),
                known(u["utilization_max"], "{:.0f}%"),
                known(u["memory_peak_mib"], "{:,.0f} MiB"),
            )
        )
    print(table(rows))
    print_startup(results["campaigns"], "trials_per_gpu")
    errors = {r["gpu_usage"]["sampler_error"] for r in results["campaigns"]} - {None}
    print(
        "  (trial s: mean of the trial runs' MLflow start to end; GPU: nvidia-smi every 0.5 s over "
        "the whole run, worker start-up included"
        + (f"; n/a: {'; '.join(sorted(errors))}" if errors else "")
        + ")"
    )


def show_cpu(results: dict) -> None:
    campaigns, cores = results["campaigns"], results["cores"]
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
                trials_text(r),
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
    print(table(rows))
    print(
        "  (1 torch thread per trial; trial s: mean of the trial runs' MLflow start to end, worker "
        "start-up included in the first ones; train s: the evaluator's training and validation; "
        "x first: median over the same trials of train s against the first run's; busy: trial time "
        "/ (workers x wall); others/steal: CPU seconds taken during the run by other processes of "
        "this machine and by the hypervisor for other machines: noise)"
    )
    print_startup(campaigns, "workers")
    base, judged = campaigns[0], [r for r in campaigns if r["goal"] is not None]
    for r in judged:
        verdict = "meets" if r["goal_met"] else "misses"
        print(
            f"  {r['workers']} workers: {r['speedup']:.2f}x the trials/hour of {base['workers']} "
            f"({verdict} the goal >= {r['goal']:.2f}x: {EFFICIENCY:.0%} of linear while workers "
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


def print_startup(campaigns: list[dict], key: str) -> None:
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


def trials_text(row: dict) -> str:
    bad = {k: v for k, v in row["outcomes"].items() if k != "ok"}
    return f"{row['trials']}" + (f" ({', '.join(f'{v} {k}' for k, v in bad.items())})" if bad else "")
