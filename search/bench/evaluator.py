"""``archsearch bench evaluator``: ``search.evaluate.evaluate`` against a bare hand-written torch
loop training the same network on the same tensors with the same recipe (goal: evaluator / bare
<= 1.0). The two alternate over ``--repeats``, the bare loop in contiguous memory and in
channels_last, and the evaluator is compared with the faster."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from models import build_model

from ..compile import arch_name
from ..errors import UserError
from ..options import DATA_DIR, data_dir, positive_int
from ..outcome import Outcome
from ..settings import RUNS
from ..text import si, table
from .harness import (
    DEVICE,
    SETS,
    Benchmark,
    default_dataset,
    device_of,
    env_line,
    environment,
    space_option,
    sync,
    valid_draws,
    write,
)

GOAL = 1.0  # evaluator / the faster bare loop, at most
VARIANTS = ("evaluator", "bare_contiguous", "bare_channels_last")


class Evaluator(Benchmark):
    name = "evaluator"
    help = "the evaluator against a bare torch loop: same net, data and recipe (goal <= 1.0)"
    description = (
        "search.evaluate.evaluate against a bare hand-written torch loop training the first valid "
        "draw of a space on the same data, with the same recipe (constant learning rate, no "
        "augmentation), alternating over --repeats."
    )
    options = (space_option("spaces/quickstart.yaml"), DEVICE, DATA_DIR, SETS)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--dataset",
            help="the dataset (default fashion-mnist where its system copy is installed, else digits)",
        )
        p.add_argument(
            "--subset", type=positive_int, help="training images drawn (default 10000; digits: all)"
        )
        p.add_argument("--epochs", type=positive_int, help="epochs (default 2; digits 100)")
        p.add_argument("--batch", type=positive_int, help="training batch size (default: the space's)")
        p.add_argument("--repeats", type=positive_int, default=3, help="timed repeats of each (default 3)")
        p.add_argument("--seed", type=int, default=0, help="the draw of the space (default 0)")

    def run(self, args: argparse.Namespace) -> int:
        from ..data import load_data
        from ..settings import resolve

        device = device_of(args.device)
        env = environment(device)
        space = resolve(args.space, list(args.set or []), name="bench").space
        dataset = args.dataset or default_dataset(data_dir(args))
        t = time.perf_counter()
        data = load_data(
            dataset,
            input_shape=space.data["input_shape"],
            subset=args.subset or (None if dataset == "digits" else 10000),
            validation=space.data["validation"],
            split_seed=space.data["split_seed"],
            cache_dir=RUNS / "data",
            data_dir=data_dir(args),
        ).to(device)
        load_seconds = time.perf_counter() - t
        config, plan = first_valid(space, data, args.seed, args.space)
        recipe = config["training"]
        recipe["epochs"] = args.epochs or (100 if dataset == "digits" else 2)  # seconds per measurement
        if args.batch:
            recipe["batch_size"] = args.batch
        times, accs, train_only = alternate(config, data, space.constraints, args.seed, args.repeats)
        results = {
            "benchmark": "evaluator",
            **env,
            "space": args.space,
            "sample_seed": args.seed,
            "arch": config["architecture"],
            "name": arch_name(config["architecture"]),
            "params": plan.params,
            "macs": plan.macs,
            "recipe": recipe,
            "dataset": dataset,
            "n_train": len(data.y_train),
            "n_val": len(data.y_val),
            "data_load_seconds": load_seconds,
            **ratios(times, accs, train_only),
        }
        show(results, env)
        write(results, self.out(args))
        return 0


def first_valid(space: Any, data: Any, seed: int, space_path: str) -> tuple[dict, Any]:
    """The first valid architecture the space draws for this data, with the same work on both
    sides: constant learning rate (the evaluator still steps its scheduler), no augmentation,
    no label smoothing."""
    for config, plan in valid_draws(space, data, 1, seed, draws=50):
        config = copy.deepcopy(config)
        recipe = config["training"]
        recipe["schedule"] = {"kind": "constant"}
        recipe["augmentation"] = {"hflip": False, "translate": 0, "cutout": 0}
        recipe["label_smoothing"] = 0.0
        return config, plan
    raise UserError(f"{space_path}: no valid architecture among 50 draws for {data.name}")


def bare_train(
    arch: dict, recipe: dict, data: Any, limits: Any, seed: int, memory_format: torch.memory_format
) -> float:
    """The hand-written reference: build, then permute, slice, forward, loss, backward, step."""
    from ..train import amp_of, make_optimizer

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
        val_acc = correct.item() / max(1, len(data.x_val))
    return val_acc


def alternate(
    config: dict, data: Any, limits: Any, seed: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, float], list[float]]:
    """Each variant's seconds per repeat (the order rotated every repeat), its last accuracy, and
    the evaluator's own training time (train_seconds)."""
    from ..evaluate import evaluate

    device = data.x_train.device

    def timed(run: Callable[[], Any]) -> tuple[float, Any]:
        sync(device)
        start = time.perf_counter()
        out = run()
        sync(device)
        return time.perf_counter() - start, out

    def run_evaluator(cfg: dict, d: Any) -> tuple[float, float, float]:
        seconds, result = timed(lambda: evaluate(cfg, d, seed=seed, limits=limits))
        if result.outcome != Outcome.OK:
            raise UserError(f"bench evaluator: the trial ended {result.outcome}: {result.reason}")
        return seconds, result.val_acc, result.train_seconds

    def run_bare(fmt: torch.memory_format) -> Callable[[dict, Any], tuple[float, float, None]]:
        def bare(cfg: dict, d: Any) -> tuple[float, float, None]:
            seconds, acc = timed(
                lambda: bare_train(cfg["architecture"], cfg["training"], d, limits, seed, fmt)
            )
            return seconds, acc, None

        return bare

    variants = dict(
        zip(
            VARIANTS,
            (run_evaluator, run_bare(torch.contiguous_format), run_bare(torch.channels_last)),
            strict=True,
        )
    )
    # warm-up: one short epoch of each (allocator, kernels' first calls)
    small = dataclasses.replace(data, x_train=data.x_train[:512], y_train=data.y_train[:512])
    warm = {**config, "training": {**config["training"], "epochs": 1}}
    for run in variants.values():
        run(warm, small)
    times: dict[str, list[float]] = {k: [] for k in variants}
    accs: dict[str, float] = {}
    train_only: list[float] = []
    for rep in range(repeats):
        for name in VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]:  # rotate the order each repeat
            seconds, accs[name], trained = variants[name](config, data)
            times[name].append(seconds)
            if trained is not None:
                train_only.append(trained)
    return times, accs, train_only


def ratios(times: dict[str, list[float]], accs: dict[str, float], train_only: list[float]) -> dict:
    """The medians and the ratio of the evaluator to the faster bare loop, also paired within
    each repeat (runs close in time share the machine's state)."""
    med = {k: statistics.median(v) for k, v in times.items()}
    bare = min(med["bare_contiguous"], med["bare_channels_last"])
    paired = [e / min(c, cl) for e, c, cl in zip(*(times[k] for k in VARIANTS), strict=True)]
    return {
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
        "goal": GOAL,
    }


def show(r: dict, env: dict) -> None:
    recipe, med, times = r["recipe"], r["median_seconds"], r["seconds"]
    print(
        f"bench evaluator: {r['name']} ({r['params']:,} params, {si(r['macs'])} MACs/image) from "
        f"{r['space']}, {r['dataset']} {r['n_train']:,} train / {r['n_val']:,} val, "
        f"{recipe['epochs']} epochs of batch {recipe['batch_size']}, {recipe['optimizer']['kind']}"
    )
    print(f"  on {env_line(env)}; medians of {r['repeats']} runs, order rotated")
    images = r["n_train"] * recipe["epochs"]
    rows = [("", "median", "images/s", "runs", "val_acc")]
    for name, label in zip(
        VARIANTS,
        ("search.evaluate.evaluate", "bare loop, contiguous", "bare loop, channels_last"),
        strict=True,
    ):
        runs = " ".join(f"{s:.2f}" for s in times[name])
        rows.append(
            (label, f"{med[name]:.2f} s", f"{images / med[name]:,.0f}", runs, f"{r['val_acc'][name]:.4f}")
        )
    print(table(rows))
    verdict = "meets" if r["ratio"] <= r["goal"] else "misses"
    print(
        f"  evaluator / faster bare loop ({r['bare_best'].removeprefix('bare_')}) = "
        f"{r['ratio']:.3f} ({verdict} the goal <= 1.0); its train() part alone: "
        f"{r['train_ratio']:.3f}; paired within each repeat: median {r['ratio_paired']:.3f} "
        f"({', '.join(f'{x:.3f}' for x in r['ratios_per_repeat'])})"
    )
