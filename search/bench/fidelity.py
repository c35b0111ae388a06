"""``archsearch bench fidelity``: how well cheap evaluations of an architecture rank it as a longer
training does. On ``--archs`` valid architectures drawn from a space (with their drawn recipes),
each evaluated

- at the reference fidelity: trained ``--epochs`` epochs on ``--images`` training images;
- at each cheap fidelity of ``--cheap`` (``IMAGES:EPOCHS``, trained the same way on fewer images
  or epochs);
- screened (Pinto & Cox: random filters, a ridge read-out; ``training.mode: screen``) on the
  same images as the reference;

it reports the Spearman rank correlation of each cheap score with the reference accuracy over
the architectures, and what each costs against the reference. Screening is worth a cascade
(screen, then train the best) where it predicts (goal: Spearman >= 0.5).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
from typing import Any

import pandas as pd

from ..errors import UserError
from ..options import DATA_DIR, data_dir, positive_int
from ..outcome import Outcome
from ..settings import RUNS
from ..text import table
from .harness import (
    DEVICE,
    SETS,
    Benchmark,
    device_of,
    env_line,
    environment,
    space_option,
    valid_draws,
    write,
)

GOAL = 0.5  # Spearman of the screened score with the trained accuracy, at least, for a cascade


class Fidelity(Benchmark):
    name = "fidelity"
    help = "rank correlation of screening and short trainings with a longer training, over architectures"
    description = (
        "Architectures drawn from a space, each trained at a reference fidelity, at cheaper ones and "
        "screened (random filters, ridge read-out): the Spearman correlation of each cheap score with "
        "the reference accuracy, and its cost (goal for screening: >= 0.5)."
    )
    options = (space_option("spaces/pinto_cox.yaml"), DEVICE, DATA_DIR, SETS)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--archs", type=positive_int, default=40, help="architectures (default 40)")
        p.add_argument(
            "--images", type=positive_int, default=8000, help="reference training images (default 8000)"
        )
        p.add_argument(
            "--validation", type=positive_int, default=2000, help="images that score all (default 2000)"
        )
        p.add_argument("--epochs", type=positive_int, default=3, help="reference epochs (default 3)")
        p.add_argument(
            "--cheap",
            default="2000:1,8000:1",
            help="cheap trained fidelities as IMAGES:EPOCHS, comma-separated (default 2000:1,8000:1)",
        )
        p.add_argument("--seed", type=int, default=0, help="the draw of the architectures (default 0)")

    def run(self, args: argparse.Namespace) -> int:
        from ..data import load_data
        from ..settings import resolve

        cheap = parse_fidelities(args.cheap)
        device = device_of(args.device)
        env = environment(device)
        space = resolve(args.space, list(args.set or []), name="bench").space
        data = load_data(
            space.data["dataset"],
            input_shape=space.data["input_shape"],
            subset=args.images + args.validation,
            validation=args.validation,
            split_seed=space.data["split_seed"],
            cache_dir=RUNS / "data",
            data_dir=data_dir(args),
        ).to(device)
        configs = valid_configs(space, data, args.archs, args.seed, args.space)
        fidelities = {"reference": (args.images, args.epochs), **{f"{n}:{e}": (n, e) for n, e in cheap}}
        rows = []
        for i, config in enumerate(configs):
            row = evaluate_all(config, data, fidelities, space.constraints, seed=args.seed * 10_000 + i)
            rows.append(row)
            print(progress_line(i, len(configs), row), flush=True)
        results = {
            "benchmark": "fidelity",
            **env,
            "space": args.space,
            "overrides": list(args.set or []),
            "validation_images": args.validation,
            "fidelities": {k: {"images": n, "epochs": e} for k, (n, e) in fidelities.items()},
            "archs": rows,
            "correlations": correlations(rows, [*fidelities, "screen"]),
            "goal": GOAL,
        }
        show(results, env)
        write(results, self.out(args))
        return 0


def parse_fidelities(text: str) -> list[tuple[int, int]]:
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        images, _, epochs = item.partition(":")
        try:
            n, e = int(images), int(epochs)
        except ValueError:
            n = e = 0
        if n < 1 or e < 1:
            raise UserError(f"--cheap: {item!r} is not IMAGES:EPOCHS of two whole numbers >= 1 (2000:1)")
        out.append((n, e))
    return out


def valid_configs(space: Any, data: Any, n: int, seed: int, path: str) -> list[dict]:
    """The first ``n`` architectures (with their recipes) the space draws that fit the data."""
    found = [config for config, _ in valid_draws(space, data, n, seed, draws=20 * n)]
    if len(found) < n:
        raise UserError(f"{path}: only {len(found)} valid architectures among {20 * n} draws; lower --archs")
    return found


def evaluate_all(config: dict, data: Any, fidelities: dict, limits: Any, seed: int) -> dict:
    """One architecture at every fidelity and screened: its accuracy and seconds at each."""
    from ..compile import arch_name
    from ..evaluate import evaluate

    row: dict[str, Any] = {"name": arch_name(config["architecture"]), "config": config}
    for key, (images, epochs) in fidelities.items():
        trained = copy.deepcopy(config)
        trained["training"]["mode"], trained["training"]["epochs"] = "train", epochs
        part = dataclasses.replace(data, x_train=data.x_train[:images], y_train=data.y_train[:images])
        row[key] = outcome(evaluate(trained, part, seed=seed, limits=limits))
    screened = copy.deepcopy(config)
    screened["training"]["mode"] = "screen"
    row["screen"] = outcome(evaluate(screened, data, seed=seed, limits=limits))
    return row


def outcome(result: Any) -> dict:
    ok = result.outcome == Outcome.OK
    return {
        "val_acc": result.val_acc if ok else None,
        "seconds": result.train_seconds,
        "outcome": str(result.outcome),
        "reason": result.reason,
    }


def correlations(rows: list[dict], keys: list[str]) -> dict:
    """Spearman of each score with the reference accuracy, over the architectures that have both;
    and the median seconds of each, against the reference's."""
    reference = pd.Series([r["reference"]["val_acc"] for r in rows], dtype=float)
    ref_seconds = statistics.median(r["reference"]["seconds"] for r in rows)
    out = {}
    for key in keys:
        score = pd.Series([r[key]["val_acc"] for r in rows], dtype=float)
        both = reference.notna() & score.notna()
        seconds = statistics.median(r[key]["seconds"] for r in rows)
        out[key] = {
            "archs": int(both.sum()),
            "spearman": float(score[both].corr(reference[both], method="spearman"))
            if both.sum() > 2
            else None,
            "median_seconds": seconds,
            "cost_vs_reference": seconds / ref_seconds if ref_seconds else None,
            # where the reference's best architecture ranks by this score (1: first)
            "rank_of_reference_best": rank_of_best(score[both], reference[both]),
        }
    return out


def rank_of_best(score: pd.Series, reference: pd.Series) -> int | None:
    if reference.empty:
        return None
    return int(score.rank(ascending=False, method="min")[reference.idxmax()])


def progress_line(i: int, n: int, row: dict) -> str:
    scores = "  ".join(
        f"{k} {v['val_acc']:.4f}" if v["val_acc"] is not None else f"{k} {v['outcome']}"
        for k, v in row.items()
        if isinstance(v, dict) and "val_acc" in v
    )
    return f"[{i + 1}/{n}] {row['name']}: {scores}"


def show(r: dict, env: dict) -> None:
    fid = r["fidelities"]["reference"]
    print(
        f"bench fidelity: {len(r['archs'])} architectures of {r['space']}, against training "
        f"{fid['epochs']} epochs on {fid['images']:,} images (scored on {r['validation_images']:,})"
    )
    print(f"  on {env_line(env)}")
    rows = [("score", "archs", "Spearman", "median s", "cost", "reference best ranks")]
    for key, c in r["correlations"].items():
        if key == "reference":
            continue
        rows.append(
            (
                "screened (random filters, ridge)" if key == "screen" else f"trained {key} (images:epochs)",
                str(c["archs"]),
                f"{c['spearman']:.3f}" if c["spearman"] is not None else "-",
                f"{c['median_seconds']:.1f}",
                f"{c['cost_vs_reference']:.2f}x" if c["cost_vs_reference"] else "-",
                str(c["rank_of_reference_best"]) if c["rank_of_reference_best"] is not None else "-",
            )
        )
    print(table(rows))
    rho = r["correlations"]["screen"]["spearman"]
    if rho is not None:
        verdict = "predicts" if rho >= r["goal"] else "does not predict"
        print(
            f"  screening {verdict} the trained ranking (Spearman {rho:.3f}; a cascade needs >= {r['goal']})"
        )
