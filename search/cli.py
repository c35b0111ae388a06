"""The ``archsearch`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from models import InvalidArchitecture, plan_model

from .compile import CompiledSpace, arch_hash, arch_name, to_json
from .data import DATASETS
from .errors import UserError
from .space import Space, load_space


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


# ---------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_layers

    return bench_layers(args)


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

    p = sub.add_parser(
        "bench",
        parents=[common],
        help="benchmarks (prints a table, writes JSON)",
        description="Benchmarks. 'layers': forward throughput of HT-L3-1st on 200x200 input, "
        "and the cost of lnorm relative to a convolution of the same feature map.",
    )
    p.add_argument("which", choices=["layers"], help="the benchmark to run")
    p.add_argument("--space", default="spaces/ht_l3_1st.yaml", help="space pinning the model to time")
    p.add_argument("--batch", type=_positive_int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--repeats", type=_positive_int, default=5, help="timed repeats; the median is kept")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to time (default cpu)")
    p.add_argument("--out", default="runs/bench/layers.json", help="where to write the JSON results")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
