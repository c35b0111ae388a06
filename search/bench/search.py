"""``archsearch bench search``: how fast a campaign finds good architectures, in parts (``--parts``,
default ``tpe,pruning``: about 25 minutes on a 2-core CPU). Every campaign runs its trials in this
process (no workers), so that the results do not depend on timing, and the JSON keeps every seed's
numbers.

- ``tpe``: TPE against random search, one campaign per seed each (``--seeds``, 5) of ``--trials``
  (60) screened trials: the median number of trials to a target validation accuracy (``--target``;
  by default the 0.95 quantile of every trial's, pooled over both algorithms; a seed that never
  reaches it counts as N + 1), the same at other quantiles, and the median best after N trials
  (goal: TPE / random <= 0.6 in trials to the target).
- ``pruning``: random-search campaigns (``--pruning-algo tpe`` for TPE) trained with ASHA early
  stopping and without: the training seconds to a target and of the whole campaign, and the best
  accuracy (goal: the same best within 0.003 for at most half the campaign's training time).
- ``screen``: models screened per hour of HT-L3-1st on 2,000 images of 200x200, against the 2011
  reference of about 15,000 models in a week of GPU time.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..options import DATA_DIR, data_dir, positive_int
from ..text import table
from .harness import (
    DEVICE,
    SETS,
    Benchmark,
    default_dataset,
    device_of,
    env_line,
    environment,
    timed_campaign,
    write,
)

# Part "tpe": TPE against random search on a cheap setting: FG11's screening space
# (spaces/fg11_screen.yaml, its choice lists, depth 2 or 3: random filters and a ridge read-out, no
# backprop) on Fashion-MNIST as stored (28x28, "same" padding so that every draw fits), 3,000
# images, 1,000 to fit the read-out and 2,000 to score it: 1 to 2 s a trial on two CPU cores,
# about 20 minutes for 2 x 5 campaigns of 60 trials. The 2,000 images to score keep the noise of a
# score (about 0.8 points) below the spread of the good architectures; with 500 (1.6 points) the
# best trials differ by chance more than by architecture, and both algorithms reach a high target
# by luck. Screened digits (the fallback without Fashion-MNIST) are too easy to tell the
# algorithms apart: most models score 0.98 to 0.99 on 400 images.
TPE = {
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
# Part "pruning": campaigns trained 27 epochs on digits as stored (8x8), with ASHA (rungs at epochs
# 3 and 9, a third of the epochs each time: about one trial in 3 goes on past epoch 3, one in 9
# past epoch 9) and without early stopping: about 5 minutes in all. Random search by default, so
# that both settings draw the same trials and differ only by the stopping (with TPE, what a stopped
# trial reports changes the later suggestions, and the best of two different sequences of trials
# differs by chance about as much as by early stopping); --pruning-algo tpe for TPE.
PRUNING = {
    "space": "spaces/quickstart.yaml",
    "dataset": "digits",
    "trials": 30,
    "epochs": 27,
    "startup_trials": 10,
    "algo": "random",
    # the stop at chance off in both: they differ by ASHA alone
    "overrides": ["search.pruning.min_epochs=3", "search.pruning.reduction=3", "search.pruning.at_chance=0"],
}
# Per dataset: (images drawn, held out of them to score each trial), as data.subset and
# data.validation; digits: all 1,438 training images, 400 to score (finer steps of accuracy than
# its default 144, and finer than the 0.003 the pruning goal tolerates).
DATA: dict[str, tuple[int | None, int]] = {"fashion-mnist": (3000, 2000), "digits": (None, 400)}
# Part "screen": FG11's screening setting (Pinto & Cox 2011): HT-L3-1st-sized models on 2,000
# images of 200x200, 1,600 to fit the read-out and 400 to score it.
SCREEN = {"space": "spaces/ht_l3_1st.yaml", "images": 2000, "models": 2}
PARTS = ("tpe", "pruning", "screen")
DEFAULT_PARTS = "tpe,pruning"
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


class Search(Benchmark):
    name = "search"
    help = "TPE against random (trials to a target), ASHA against none (compute); --parts screen: models/hour"
    description = (
        "Search efficiency, in parts (--parts): 'tpe', TPE against random search, one campaign per seed "
        "each (--seeds), the median trials to a target validation accuracy (--target; by default the "
        "0.95 quantile of every trial's, pooled) and the median best after N trials, on a cheap "
        "screened setting (FG11's screening space on 3,000 Fashion-MNIST images at 28x28, 2,000 of them "
        "to score, else digits); 'pruning', the same campaigns (random search, --pruning-algo) trained "
        "with ASHA early stopping and without, the training time to a target and the best accuracy; "
        "'screen', models screened per hour of HT-L3-1st on 2,000 images of 200x200 (minutes on a CPU: "
        "not run unless asked)."
    )
    options = (DEVICE, DATA_DIR, SETS)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--parts",
            default=DEFAULT_PARTS,
            metavar="PART,...",
            help=f"of {', '.join(PARTS)} (default {DEFAULT_PARTS})",
        )
        p.add_argument(
            "--space",
            help=f"the space of parts tpe and pruning (default tpe {TPE['space']} at 28x28, pruning "
            f"{PRUNING['space']})",
        )
        p.add_argument(
            "--seeds",
            type=positive_int,
            default=5,
            help="campaigns of each algorithm (tpe) and of each setting (pruning), seeds --seed, "
            "--seed + 1, ... (default 5)",
        )
        p.add_argument(
            "--seed", type=int, default=0, help="the first campaign seed, and screen's (default 0)"
        )
        p.add_argument(
            "--trials",
            type=positive_int,
            help=f"trials of each campaign (default: tpe {TPE['trials']}, pruning {PRUNING['trials']})",
        )
        p.add_argument(
            "--epochs",
            type=positive_int,
            help=f"epochs of part pruning (default {PRUNING['epochs']}; with --space: the space's)",
        )
        p.add_argument(
            "--dataset",
            help="of parts tpe and pruning (default: tpe fashion-mnist where its system copy is installed, "
            "else digits, pruning digits; with --space: the space's)",
        )
        p.add_argument(
            "--subset",
            type=positive_int,
            help=f"images of part screen, a fifth of them to score (default {SCREEN['images']})",
        )
        p.add_argument(
            "--target",
            type=float,
            metavar="ACC",
            help="the validation accuracy part tpe counts trials to (default: the --target-quantile of all "
            "its trials' val_acc, pooled over both algorithms)",
        )
        p.add_argument(
            "--pruning-target",
            type=float,
            metavar="ACC",
            help="the validation accuracy part pruning measures the training time to (default: the "
            "--target-quantile of the final val_acc of all its finished trials, pooled over both settings)",
        )
        p.add_argument(
            "--pruning-algo",
            choices=["random", "tpe"],
            default=PRUNING["algo"],
            help="the algorithm of part pruning's campaigns (default random: both settings draw the same "
            "trials)",
        )
        p.add_argument(
            "--target-quantile",
            type=float,
            default=TARGET_QUANTILE,
            metavar="Q",
            help=f"the quantile that chooses the targets not given (default {TARGET_QUANTILE})",
        )
        p.add_argument(
            "--screen-models",
            type=positive_int,
            default=SCREEN["models"],
            metavar="K",
            help=f"models part screen screens (default {SCREEN['models']}; about a minute each on a "
            "2-core CPU)",
        )

    def run(self, args: argparse.Namespace) -> int:
        parts = parts_of(args.parts)
        # wrong numbers before any campaign runs
        fraction(args.target, "--target")
        fraction(args.pruning_target, "--pruning-target")
        if not 0 < args.target_quantile < 1:
            raise UserError(
                f"--target-quantile: expected a number between 0 and 1, got {args.target_quantile:g}"
            )
        device = device_of(args.device)
        env = environment(device)
        seeds = list(range(args.seed, args.seed + args.seeds))
        started = time.perf_counter()
        print(
            f"bench search: parts {', '.join(parts)} on {env_line(env)}; inline trials (no workers)",
            flush=True,
        )
        results: dict = {"benchmark": "search", **env, "parts": parts, "seeds": seeds}
        if "pruning" in parts:
            # one-off: torch's lazy imports (the first optimizer imports torch._dynamo, seconds), which
            # the first trained trial of a process would count as training time
            torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
        if "tpe" in parts:
            results["tpe"] = tpe_part(args, seeds, device.type)
        if "pruning" in parts:
            results["pruning"] = pruning_part(args, seeds, device.type)
        if "screen" in parts:
            results["screen"] = screen_part(args, device.type)
        results["wall_seconds"] = time.perf_counter() - started
        print(f"  bench search: {results['wall_seconds']:.0f} s in all")
        write(results, self.out(args))
        return 0


# ---------------------------------------------------------------- the figures of a set of campaigns


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
    values = sorted(a for a in accuracies if a is not None)
    if not values:
        raise UserError("bench search: no trial gave an accuracy to choose a target from")
    if not 0 < quantile < 1:
        raise UserError(f"--target-quantile: expected a number between 0 and 1, got {quantile}")
    return values[max(0, math.ceil(quantile * len(values)) - 1)]


def median_or_none(values: Sequence[float | None]) -> float | None:
    """The median, where None stands for "never" (larger than any number); None when the median
    itself is never."""
    ranked = [math.inf if v is None else v for v in values]
    if not ranked:
        return None
    m = statistics.median(ranked)
    return None if math.isinf(m) else m


def pooled_target(
    runs: dict, args: argparse.Namespace, value: Any, flag: str, what: str, of: str = ""
) -> tuple[float, str, float | None]:
    """The target accuracy: given with ``flag``, else a quantile of the trials of every run in
    ``runs``; with the text saying how it was chosen, and the quantile (None when given)."""
    given = fraction(value, flag)
    if given is not None:
        return given, f"given ({flag})", None
    pooled = [a for rows in runs.values() for r in rows for a in r["val_acc"]]
    quantile = args.target_quantile
    counted = sum(a is not None for a in pooled)
    rule = f"auto: the {quantile:g} quantile (nearest rank) of {of}all {counted} {what}"
    return choose_target(pooled, quantile), rule, quantile


# ---------------------------------------------------------------- running the campaigns


def parts_of(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or any(p not in PARTS for p in parts):
        raise UserError(f"--parts: expected a comma-separated list of {', '.join(PARTS)}, got {text!r}")
    return list(dict.fromkeys(parts))


def fraction(value: float | None, option: str) -> float | None:
    if value is not None and not 0 < value <= 1:
        raise UserError(f"{option}: expected a validation accuracy in (0, 1], got {value:g}")
    return value


def overrides_of(args: argparse.Namespace, defaults: dict, seed: int, extra: list[str]) -> list[str]:
    """A campaign of part tpe or pruning: the benchmark's settings, then the user's --set."""
    dataset = args.dataset or (None if args.space else defaults["dataset"] or default_dataset(data_dir(args)))
    overrides = [
        f"search.trials={args.trials or defaults['trials']}",
        f"search.seed={seed}",
        f"search.tpe.startup_trials={defaults['startup_trials']}",
    ]
    if dataset:
        overrides.append(f"data.dataset={dataset}")
    if dataset in DATA:
        subset, validation = DATA[dataset]
        overrides += [f"data.subset={'null' if subset is None else subset}", f"data.validation={validation}"]
    if not args.space:
        overrides += defaults.get("space_overrides", [])
    return overrides + defaults["overrides"] + extra + list(args.set or [])


def campaign(
    space_path: str, overrides: list[str], name: str, device: str, data_dir: Path | None = None
) -> dict:
    """One campaign (inline, in a fresh runs folder): its trials in trial order, each trial's final
    val_acc (None unless it ended ok: stopped early, invalid or failed trials have no finished
    model), the seconds and epochs it trained."""
    row = timed_campaign(space_path, overrides, name, device=device, data_dir=data_dir)
    trials = sorted(row["per_trial"], key=lambda t: t["trial"])
    return {
        "wall_seconds": row["wall_seconds"],
        "outcomes": row["outcomes"],
        "outcome": [t["outcome"] for t in trials],
        "val_acc": [t["val_acc"] if t["outcome"] == "ok" else None for t in trials],
        "train_seconds": [t["train_seconds"] or 0.0 for t in trials],
        "epochs": [int(t["epochs_done"] or 0) for t in trials],
    }


def run_campaigns(
    args: argparse.Namespace,
    space_path: str,
    settings: dict[str, Callable[[int], list[str]]],
    seeds: list[int],
    device: str,
) -> dict[str, list[dict]]:
    """One campaign per seed of each setting (its overrides, by seed), seed by seed, each said."""
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    for seed in seeds:
        for name, overrides_for in settings.items():
            overrides = overrides_for(seed)
            r = campaign(space_path, overrides, f"bench-search-{name}-{seed}", device, data_dir(args))
            runs[name].append({"seed": seed, "overrides": overrides, **r})
            outcomes = ", ".join(f"{v} {k}" for k, v in r["outcomes"].items())
            print(
                f"  {name} seed {seed}: {len(r['val_acc'])} trials ({outcomes}) in "
                f"{r['wall_seconds']:.1f} s, "
                f"{sum(r['train_seconds']):.1f} s screening or training, {sum(r['epochs'])} epochs, "
                f"best val_acc {acc(best_after(r['val_acc'], len(r['val_acc'])))}",
                flush=True,
            )
    return runs


def header(title: str, space_path: str, overrides: list[str], seeds: list[int]) -> Any:
    """Say what a part runs (and find errors in its settings before any campaign)."""
    from ..settings import resolve

    settings = resolve(space_path, overrides, name="bench")
    space = settings.space
    training = settings.raw.get("training") or {}
    what = (
        "screened"
        if training.get("mode", "train") == "screen"
        else f"trained {training.get('epochs')} epochs"
    )
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


def seeds_label(seeds: list[int]) -> str:
    """How a table's column names the seeds it lists: ``seeds 0..4``, ``seed 0``."""
    return f"seeds {seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"


def each(values: Sequence[Any], fmt: Callable[[Any], str]) -> str:
    return " ".join(fmt(v) for v in values)


def acc(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


# ---------------------------------------------------------------- part tpe


def tpe_part(args: argparse.Namespace, seeds: list[int], device: str) -> dict:
    """TPE and random search, one campaign per seed each; trials to the target."""
    space_path = args.space or TPE["space"]
    n = args.trials or TPE["trials"]
    started = time.perf_counter()

    def overrides_for(algo: str) -> Callable[[int], list[str]]:
        return lambda seed: overrides_of(args, TPE, seed, [f"search.algo={algo}"])

    title = "part 1, TPE against random search"
    settings = header(title, space_path, overrides_for("tpe")(seeds[0]), seeds)
    runs = run_campaigns(args, space_path, {a: overrides_for(a) for a in ("tpe", "random")}, seeds, device)
    target, rule, quantile = pooled_target(
        runs, args, args.target, "--target", "trials' val_acc pooled over every run of both algorithms"
    )
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
        **tpe_figures(runs, n, target),
        "ratio_by_target_quantile": target_sweep(runs, n),
        "wall_seconds": time.perf_counter() - started,
    }
    show_tpe(out)
    return out


def tpe_figures(runs: dict[str, list[dict]], n: int, target: float) -> dict:
    """Each run's trials to the target (not reached: n + 1) and best after n trials; the medians per
    algorithm, the median best after 10, 20, ... trials, and the ratio TPE / random."""
    medians_trials, medians_best, reached = {}, {}, {}
    for algo, rows in runs.items():
        for r in rows:
            k = trials_to_target(r["val_acc"], target)
            r["reached"] = k is not None
            r["trials_to_target"] = k if k is not None else n + 1
            r["best_after_n"] = best_after(r["val_acc"], n)
        medians_trials[algo] = statistics.median(r["trials_to_target"] for r in rows)
        known = [r["best_after_n"] for r in rows if r["best_after_n"] is not None]
        medians_best[algo] = statistics.median(known) if known else None
        reached[algo] = sum(r["reached"] for r in rows)
    curve = {}
    for k in sorted({*range(10, n, 10), n}):
        bests = {
            algo: [b for r in rows if (b := best_after(r["val_acc"], k)) is not None]
            for algo, rows in runs.items()
        }
        curve[str(k)] = {algo: statistics.median(b) if b else None for algo, b in bests.items()}
    ratio = medians_trials["tpe"] / medians_trials["random"]
    return {
        "reached": reached,
        "median_trials_to_target": medians_trials,
        "median_best_after_n": medians_best,
        "median_best_after": curve,
        "ratio": ratio,
        "goal": TPE_GOAL,
        "goal_met": ratio <= TPE_GOAL,
    }


def target_sweep(runs: dict[str, list[dict]], n: int) -> dict[str, dict]:
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


def show_tpe(out: dict) -> None:
    n, runs, label = out["trials"], out["runs"], seeds_label(out["seeds"])
    print(f"  target val_acc {out['target']:.4f}: {out['target_rule']}")
    rows = [
        (
            "algorithm",
            f"trials to target, {label}",
            "median",
            "reached",
            f"best val_acc after {n} trials, {label}",
            "median",
        )
    ]
    for algo, algo_runs in runs.items():
        rows.append(
            (
                algo,
                each(algo_runs, lambda r: f"{r['trials_to_target']}" + ("" if r["reached"] else "*")),
                f"{out['median_trials_to_target'][algo]:g}",
                f"{out['reached'][algo]}/{len(algo_runs)}",
                each(algo_runs, lambda r: acc(r["best_after_n"])),
                acc(out["median_best_after_n"][algo]),
            )
        )
    print(table(rows))
    print(
        f"  (*: the target not reached in {n} trials, counted as {n + 1}; trials counted in trial order, "
        "an invalid or failed one included)"
    )
    curve = out["median_best_after"]
    print(
        "  median best val_acc, TPE / random, after "
        + "; ".join(f"{k} trials {acc(v['tpe'])} / {acc(v['random'])}" for k, v in curve.items())
    )
    print(
        "  TPE / random, median trials to other targets (quantile: target, trials): "
        + "; ".join(
            f"{q}: {v['target']:.4f}, {v['tpe']:g} / {v['random']:g} = {v['ratio']:.2f}"
            for q, v in out["ratio_by_target_quantile"].items()
        )
    )
    medians, verdict = out["median_trials_to_target"], "meets" if out["goal_met"] else "misses"
    print(
        f"  TPE / random, median trials to the target: {medians['tpe']:g} / {medians['random']:g} = "
        f"{out['ratio']:.2f} ({verdict} the goal <= {TPE_GOAL}); wall {out['wall_seconds']:.0f} s",
        flush=True,
    )


# ---------------------------------------------------------------- part pruning


def pruning_part(args: argparse.Namespace, seeds: list[int], device: str) -> dict:
    """The same campaigns (random search, or TPE), trained, with ASHA and without early stopping."""
    space_path = args.space or PRUNING["space"]
    algo, n = args.pruning_algo, args.trials or PRUNING["trials"]
    epochs = args.epochs or (None if args.space else PRUNING["epochs"])
    started = time.perf_counter()

    def overrides_for(rule: str) -> Callable[[int], list[str]]:
        extra = [f"search.algo={algo}", f"search.pruning.rule={rule}"] + (
            [f"training.epochs={epochs}"] if epochs else []
        )
        return lambda seed: overrides_of(args, PRUNING, seed, extra)

    title = f"part 2, {'TPE' if algo == 'tpe' else 'random search'} with and without early stopping"
    settings = header(title, space_path, overrides_for("asha")(seeds[0]), seeds)
    runs = run_campaigns(
        args, space_path, {rule: overrides_for(rule) for rule in ("asha", "none")}, seeds, device
    )
    target, rule_text, quantile = pooled_target(
        runs,
        args,
        args.pruning_target,
        "--pruning-target",
        "trials that finished, pooled over both settings' runs",
        of="the final val_acc of ",
    )
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
        **pruning_figures(runs, n, target),
        "wall_seconds": time.perf_counter() - started,
    }
    show_pruning(out)
    return out


def pruning_figures(runs: dict[str, list[dict]], n: int, target: float) -> dict:
    """Each run's training to the target and in all; the medians per setting; asha / none."""
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
        return None if a[key] is None or not b[key] else a[key] / b[key]

    known = a["median_best_val_acc"] is not None and b["median_best_val_acc"] is not None
    gap = a["median_best_val_acc"] - b["median_best_val_acc"] if known else None
    compute_ratio = ratio("median_compute_seconds")
    compute_met = compute_ratio is not None and compute_ratio <= PRUNING_COMPUTE_GOAL
    accuracy_met = gap is not None and gap >= -PRUNING_ACCURACY_TOLERANCE - 1e-12
    return {
        "summary": summary,
        "compute_to_target_ratio": ratio("median_compute_to_target_seconds"),
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
    }


def show_pruning(out: dict) -> None:
    def seconds(v: float | None) -> str:
        return "never" if v is None else f"{v:.1f}"

    def ratio(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    n, label = out["trials"], seeds_label(out["seeds"])
    print(f"  target val_acc {out['target']:.4f}: {out['target_rule']}")
    rows = [
        (
            "early stopping",
            f"training s to target, {label}",
            "median",
            "epochs",
            "reached",
            f"best val_acc, {label}",
            "median",
            "training s, all",
            "epochs, all",
            "pruned",
        )
    ]
    for rule, rule_runs in out["runs"].items():
        s = out["summary"][rule]
        rows.append(
            (
                rule,
                each(rule_runs, lambda r: seconds(r["compute_to_target_seconds"])),
                seconds(s["median_compute_to_target_seconds"]),
                seconds(s["median_epochs_to_target"]).removesuffix(".0"),
                f"{s['reached']}/{len(rule_runs)}",
                each(rule_runs, lambda r: acc(r["best_val_acc"])),
                acc(s["median_best_val_acc"]),
                f"{s['median_compute_seconds']:.1f}",
                f"{s['median_epochs_total']:g}",
                f"{s['median_pruned']:g}",
            )
        )
    print(table(rows))
    print(
        f"  (training s: the trials' train_seconds summed in trial order up to the first finished trial "
        f"reaching the target, never: not reached in {n} trials; epochs: the same in epochs trained; "
        "best val_acc: of the trials that finished (a stopped trial keeps no model); all, pruned: "
        "medians over seeds of the whole campaign)"
    )
    gap = out["best_val_acc_gap"]
    print(
        f"  asha / none: training s of the whole campaign {ratio(out['compute_ratio'])} ("
        f"{'meets' if out['compute_goal_met'] else 'misses'} the goal <= {PRUNING_COMPUTE_GOAL}; epochs "
        f"{ratio(out['epochs_ratio'])}), to the target {ratio(out['compute_to_target_ratio'])} (epochs "
        f"{ratio(out['epochs_to_target_ratio'])}); best val_acc asha - none "
        f"{'n/a' if gap is None else f'{gap:+.4f}'} ({'meets' if out['accuracy_goal_met'] else 'misses'} "
        f"the goal >= -{PRUNING_ACCURACY_TOLERANCE}); wall {out['wall_seconds']:.0f} s",
        flush=True,
    )


# ---------------------------------------------------------------- part screen


def screen_part(args: argparse.Namespace, device: str) -> dict:
    """Models per hour of FG11's screening, HT-L3-1st on 200x200 images."""
    from ..settings import resolve

    dataset = default_dataset(data_dir(args))
    images = args.subset or SCREEN["images"]
    overrides = [
        "training.mode=screen",
        f"data.dataset={dataset}",
        f"search.trials={args.screen_models}",
        "search.algo=random",
        f"search.seed={args.seed}",
    ]
    if dataset == "digits" and not args.subset:  # no Fashion-MNIST: all 1,438 digits, 400 to score
        overrides += ["data.subset=null", f"data.validation={DATA['digits'][1]}"]
    else:
        overrides += [f"data.subset={images}", f"data.validation={max(1, images // 5)}"]
    space = resolve(SCREEN["space"], overrides, name="bench").space
    models = f"{args.screen_models} model{'s' if args.screen_models > 1 else ''}"
    print(
        f"bench search, part 3, screening throughput: {space.name} ({SCREEN['space']}) screened on "
        f"{dataset}, "
        f"{space.data['subset'] or 'all'} images at {'x'.join(map(str, space.data['input_shape']))} "
        f"({space.data['validation']:g} to score), {models} on {device}",
        flush=True,
    )
    row = timed_campaign(
        SCREEN["space"], overrides, "bench-search-screen", device=device, data_dir=data_dir(args)
    )
    trials = sorted(row["per_trial"], key=lambda t: t["trial"])
    ok = [t for t in trials if t["outcome"] == "ok" and t["train_seconds"]]
    if not ok:
        raise UserError(f"bench search: no model was screened ({row['outcomes']})")
    per_model = statistics.median(t["train_seconds"] for t in ok)
    out = {
        "space": SCREEN["space"],
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
    show_screen(out)
    return out


def show_screen(out: dict) -> None:
    rows = [("model", "screening s", "trial run s", "val_acc")]
    for t in out["per_model"]:
        screened = "n/a" if not t["screen_seconds"] else f"{t['screen_seconds']:.1f}"
        rows.append((t["name"], screened, f"{t['run_seconds']:.1f}", acc(t["val_acc"])))
    print(table(rows))
    print(
        f"  {out['seconds_per_model']:.1f} s per model (median of the screening times: features of every "
        f"image, ridge fit, scoring) = {out['models_per_hour']:.1f} models/hour; with the whole campaign "
        f"(data load {out['first_trial_after_seconds']:.1f} s, tracking): {out['models_per_hour_wall']:.1f} "
        f"models/hour over {out['wall_seconds']:.0f} s"
    )
    print(
        f"  2011 reference: about {FG11_MODELS:,} models in a week of GPU time = "
        f"{FG11_MODELS_PER_HOUR:.0f} models/hour; here {out['versus_2011']:.2f}x that on {out['device']}",
        flush=True,
    )
