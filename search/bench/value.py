"""``archsearch bench value``: does a campaign pay for itself? At one compute budget B (wall-clock
seconds on one device, search and final training together), a campaign run as the README
recommends against a strong hand-written convnet trained for the whole budget, each tested once
on the test set, over several seeds.

- The reference (written here, not drawn from a space): three 3x3 convolutions of 32, 64 and 128
  filters, each with batch norm, ReLU and 2x2 max pooling, global average pooling and a linear
  classifier; AdamW (lr 2e-3, weight decay 5e-4), batches of 128, a cosine schedule, no
  augmentation, in the precision a campaign trains in on the device (bf16 autocast on a GPU and on
  a CPU that computes bf16 natively; float32 elsewhere). It trains on every training image (no
  validation split: nothing is chosen) for as many epochs as fit in B: planned from a probe of its
  speed, planned again after each epoch from the recent epochs' times, as a campaign's final
  training is (the probe and the data load count against B).
- The campaign: ``archsearch run SPACE --time-budget B --seed S`` in a process of its own, with
  the space's final stage (``search.final``) training its best architecture on every training
  image in the time it kept; its test accuracy is its ensemble's when the space averages its final
  models (``search.final.ensemble``), else the final run's of its best trial.

Goal: the campaign's median test accuracy at least the reference's + 0.3 points. The default
budget is 840 s on a CPU (three seeds of both arms in about 90 minutes) and 600 s on a GPU; the
default space is the README's recipe for the device: ``spaces/fashion_cpu.yaml`` on a CPU,
``spaces/fashion_gpu.yaml`` on a GPU.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..options import DATA_DIR, data_dir, positive_float, positive_int
from ..settings import RUNS
from ..text import duration, table
from .harness import DEVICE, SETS, Benchmark, device_of, env_line, environment, space_option, sync, write

GOAL = 0.003  # the campaign's median test accuracy over the reference's, at least
BUDGET = {"cpu": 840.0, "cuda": 600.0}  # seconds, by device
SPACE = {"cpu": "spaces/fashion_cpu.yaml", "cuda": "spaces/fashion_gpu.yaml"}  # the README's recipes
RECIPE = {"lr": 2e-3, "weight_decay": 5e-4, "batch_size": 128}
PROBE_STEPS = 30  # training steps timed (after 5 to warm up) to choose the reference's epochs


class Value(Benchmark):
    name = "value"
    help = "a campaign against a hand-written convnet at the same compute budget, tested once"
    description = (
        "At one budget B of wall-clock seconds, `archsearch run SPACE --time-budget B --seed S` "
        "(its final stage included) against a standard 3-layer convnet trained for the whole budget; "
        "the test accuracy of each, per seed and median (goal: the campaign's >= the reference's + "
        "0.003)."
    )
    options = (space_option(None, f"{SPACE['cpu']} on cpu, {SPACE['cuda']} on cuda"), DEVICE, DATA_DIR, SETS)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--budget",
            type=positive_float,
            help="seconds of each arm, per seed (default 840 on cpu, 600 on cuda)",
        )
        p.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 (default 3)")
        p.add_argument(
            "--arms",
            default="reference,campaign",
            help="which arms to run, comma-separated (default reference,campaign)",
        )

    def run(self, args: argparse.Namespace) -> int:
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        unknown = set(arms) - {"reference", "campaign"}
        if unknown or not arms:
            raise UserError(f"--arms: expected reference and/or campaign, got {args.arms!r}")
        device = device_of(args.device)
        env = environment(device)
        budget = args.budget or BUDGET[device.type]
        space = args.space or SPACE[device.type]
        sets = list(args.set or [])
        rows = []
        for seed in range(args.seeds):
            row: dict[str, Any] = {"seed": seed}
            if "reference" in arms:
                row["reference"] = reference(space, sets, budget, seed, device, data_dir(args))
            if "campaign" in arms:
                row["campaign"] = campaign(space, sets, budget, seed, args.device, data_dir(args))
            rows.append(row)
            show_row(row)
        results = {
            "benchmark": "value",
            **env,
            "space": space,
            "overrides": sets,
            "budget_seconds": budget,
            "seeds": rows,
            **summary(rows),
            "goal": GOAL,
        }
        show(results, env)
        write(results, self.out(args))
        return 0


# ---------------------------------------------------------------- the reference


class Reference(nn.Module):
    """The hand-written convnet: (conv 3x3, batch norm, ReLU, max pool 2) x 3 of 32, 64 and 128
    filters, global average pooling, a linear classifier."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        for width in (32, 64, 128):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def reference(
    space_path: str, sets: list[str], budget: float, seed: int, device: torch.device, folder: Path | None
) -> dict:
    """Train the reference for as many epochs as fit in ``budget`` seconds (its data load and
    speed probe included), test it once."""
    from ..train import amp_of, validate

    start = time.perf_counter()
    # the precision a campaign trains in on this device; float32 where that is fp16, which needs
    # loss scaling (a GPU without bf16)
    amp, scaled = amp_of(device)
    amp = None if scaled else amp
    data = whole_training_set(space_path, sets, folder)
    x, y = data.x_train.to(device), data.y_train.to(device)
    torch.manual_seed(seed)
    model = Reference(data.input_shape[0], data.n_classes).to(device, memory_format=torch.channels_last)
    step_seconds = probe(model, x, y, device, amp)
    steps_per_epoch = math.ceil(len(x) / RECIPE["batch_size"])
    test_seconds = step_seconds * len(data.x_test) / RECIPE["batch_size"] / 3  # forward only
    left = budget - (time.perf_counter() - start) - test_seconds
    epochs = max(1, int(left / (step_seconds * steps_per_epoch)))
    torch.manual_seed(seed)  # the probe's steps are discarded: a fresh model
    model = Reference(data.input_shape[0], data.n_classes).to(device, memory_format=torch.channels_last)
    train_seconds, epochs = fit(
        model, x, y, epochs, device, budget - (time.perf_counter() - start) - test_seconds, amp
    )
    test_acc, _ = validate(model, data.x_test.to(device), data.y_test.to(device), amp)
    return {
        "test_acc": test_acc,
        "epochs": epochs,
        "train_images": len(x),
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": train_seconds,
        "probe_step_seconds": step_seconds,
        "wall_seconds": time.perf_counter() - start,
    }


def whole_training_set(space_path: str, sets: list[str], folder: Path | None) -> Any:
    """The space's dataset (after ``--set``): every training image (data.subset does not apply),
    validation images included, as the campaign's final stage trains on."""
    from ..retrain import final_data
    from ..settings import resolve

    space = resolve(space_path, sets, name="bench").space
    return final_data(space, RUNS / "data", folder)


def probe(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: torch.dtype | None
) -> float:
    """Seconds of one training step of the reference: the mean of PROBE_STEPS steps after 5 to
    warm up (the weights it leaves are thrown away)."""
    opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    bs = RECIPE["batch_size"]
    model.train()
    for i in range(5 + PROBE_STEPS):
        if i == 5:
            sync(device)
            start = time.perf_counter()
        idx = torch.randint(0, len(x), (bs,), device=device)
        loss = _loss(model, x[idx], y[idx], device, amp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return (time.perf_counter() - start) / PROBE_STEPS


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    device: torch.device,
    seconds: float,
    amp: torch.dtype | None,
) -> tuple[float, int]:
    """The standard recipe: AdamW, a cosine schedule over every step, shuffled batches; the
    epochs planned from the probe, planned again after each epoch from the recent epochs' times
    (:func:`search.retrain.filling`, as a campaign's final training is) so that training ends
    within ``seconds`` (the cosine then runs over the new total). Returns (seconds, epochs)."""
    from ..retrain import filling

    replan = filling(time.monotonic() + seconds, 0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    bs = RECIPE["batch_size"]
    steps = math.ceil(len(x) / bs)
    plan = {"total": epochs * steps}
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, plan["total"]) / plan["total"]))
    )
    sync(device)
    start = time.perf_counter()
    model.train()
    epoch, times = 0, []
    while epoch < epochs:
        began = time.perf_counter()
        perm = torch.randperm(len(x), device=device)
        for i in range(0, len(x) - 1, bs):  # a last batch of one image is left out (batch norm)
            idx = perm[i : i + bs]
            loss = _loss(model, x[idx], y[idx], device, amp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        epoch += 1
        sync(device)
        times.append(time.perf_counter() - began)
        epochs = replan(times)  # the measured speed replaces the probe's
        plan["total"] = epochs * steps
    sync(device)
    return time.perf_counter() - start, epochs


def _loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: torch.dtype | None
) -> torch.Tensor:
    """The cross-entropy of a batch, under autocast to ``amp`` where it is not None."""
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        return F.cross_entropy(model(x), y)


# ---------------------------------------------------------------- the campaign


def campaign(
    space_path: str, sets: list[str], budget: float, seed: int, device: str, folder: Path | None
) -> dict:
    """``archsearch run`` as a user types it, in a process of its own and a fresh runs folder;
    its final run's test accuracy, what it found, and where its time went."""
    from ..campaign import open_store
    from ..results import best

    name = f"value-{seed}"
    with tempfile.TemporaryDirectory(prefix="archsearch-value-") as tmp:
        runs = Path(tmp) / "runs"
        command = [sys.executable, "-m", "search", "run", space_path, "--time-budget", f"{budget:g}"]
        command += ["--seed", str(seed), "--name", name, "--runs", str(runs), "--device", device]
        command += [a for s in sets for a in ("--set", s)]
        command += ["--data-dir", str(folder)] if folder else []
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise UserError(
                f"bench value: `{' '.join(command[1:])}` failed: {said[-1] if said else done.returncode}"
            )
        record = open_store(runs, None).require(name)
        trials, finals = record.trials(), [r for r in record.trials("final") if r.outcome == "ok"]
        ensembles = [r for r in record.trials("ensemble") if r.outcome == "ok"]
    if not finals:
        ended_why = next(
            (line for line in done.stdout.splitlines() if line.startswith(f"campaign {name}:")), None
        )
        why = f"it said: {ended_why}" if ended_why else "is search.final.top set?"
        raise UserError(f"bench value: campaign {name} logged no final run ({why})")
    final = finals[0]  # of the best trial
    tested = ensembles[-1] if ensembles else final
    ended = [r for r in trials if r.outcome.ended]
    # from the first trial's start to the last one's end (a multi-fidelity trial's run spans its rungs)
    timed = [r for r in ended if r.start_time and r.end_time]
    search_seconds = max(r.end_time for r in timed) - min(r.start_time for r in timed) if timed else 0.0
    top = best(trials)
    return {
        "test_acc": tested.metrics["test_acc"],
        "architecture": " + ".join(f.name.removeprefix("final ") for f in (finals if ensembles else [final])),
        "final_models": [
            {"name": f.name.removeprefix("final "), "test_acc": f.metrics["test_acc"]} for f in finals
        ],
        "final_epochs": sum(int(f.metrics.get("epochs_done", 0)) for f in finals),
        "final_seconds": sum(f.metrics.get("train_seconds", 0.0) for f in finals),
        "trials": len(ended),
        "outcomes": {str(o): sum(1 for r in ended if r.outcome == o) for o in {r.outcome for r in ended}},
        "best_val_acc": top.metrics.get("val_acc") if top is not None else None,
        "search_seconds": search_seconds,
        "wall_seconds": wall,
        "summary": done.stdout.strip().splitlines()[-6:],
    }


# ---------------------------------------------------------------- what it says


def summary(rows: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for arm in ("reference", "campaign"):
        accs = [r[arm]["test_acc"] for r in rows if arm in r]
        if accs:
            out[f"{arm}_median_test_acc"] = statistics.median(accs)
    if "reference_median_test_acc" in out and "campaign_median_test_acc" in out:
        out["gain"] = out["campaign_median_test_acc"] - out["reference_median_test_acc"]
        out["meets_goal"] = out["gain"] >= GOAL
    return out


def show_row(row: dict) -> None:
    parts = [f"seed {row['seed']}:"]
    if "reference" in row:
        r = row["reference"]
        parts.append(
            f"reference test_acc {r['test_acc']:.4f} ({r['epochs']} epochs, {duration(r['wall_seconds'])})"
        )
    if "campaign" in row:
        c = row["campaign"]
        parts.append(
            f"campaign test_acc {c['test_acc']:.4f} ({c['architecture']}, {c['trials']} trials, "
            f"{duration(c['wall_seconds'])})"
        )
    print("  ".join(parts), flush=True)


def show(r: dict, env: dict) -> None:
    print(
        f"bench value: {r['space']} against the reference convnet, budget {r['budget_seconds']:g} s per arm"
    )
    print(f"  on {env_line(env)}")
    rows = [("seed", "reference", "epochs", "campaign", "found", "trials", "search", "final", "wall")]
    for row in r["seeds"]:
        ref, cam = row.get("reference"), row.get("campaign")
        rows.append(
            (
                str(row["seed"]),
                f"{ref['test_acc']:.4f}" if ref else "-",
                str(ref["epochs"]) if ref else "-",
                f"{cam['test_acc']:.4f}" if cam else "-",
                cam["architecture"] if cam else "-",
                str(cam["trials"]) if cam else "-",
                duration(cam["search_seconds"]) if cam else "-",
                f"{duration(cam['final_seconds'])} ({cam['final_epochs']} ep)" if cam else "-",
                duration(cam["wall_seconds"]) if cam else "-",
            )
        )
    print(table(rows, align="r" * 4 + "l" + "r" * 4))
    if "gain" in r:
        verdict = "meets" if r["meets_goal"] else "misses"
        print(
            f"  median test_acc: campaign {r['campaign_median_test_acc']:.4f}, reference "
            f"{r['reference_median_test_acc']:.4f}: {100 * r['gain']:+.2f} points ({verdict} the goal "
            f">= {100 * GOAL:+.1f})"
        )
