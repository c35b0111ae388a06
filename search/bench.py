"""``archsearch bench layers``: forward throughput of HT-L3-1st and the cost of lnorm.

Prints a table and writes JSON. Times are medians over ``--repeats`` after a
warm-up, measured in one run so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from models import build_model
from models import functional as fn

from .cli import input_of
from .compile import CompiledSpace
from .errors import UserError
from .space import load_space


def _median_seconds(run, repeats: int, device: torch.device) -> float:
    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    once()  # warm-up
    return statistics.median(once() for _ in range(repeats))


def bench_layers(args: argparse.Namespace) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    space = load_space(args.space)
    shape, classes = input_of(space, None, None)
    arch = CompiledSpace(space).sample(1)[0]["architecture"]
    model = build_model(arch, shape, classes).to(device).eval()

    results: dict = {
        "benchmark": "layers",
        "space": str(args.space),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch": args.batch,
        "input_shape": list(shape),
    }
    x = torch.randn(args.batch, *shape, device=device)
    rows = []
    for layout in ("contiguous", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        m, xi = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
        with torch.inference_mode():
            seconds = _median_seconds(lambda m=m, xi=xi: m(xi), args.repeats, device)
        results[f"forward_images_per_s_{layout}"] = args.batch / seconds
        rows.append(
            (f"forward ({layout})", f"{seconds * 1e3:.1f} ms", f"{args.batch / seconds:.1f} images/s")
        )

    # lnorm where it runs in the model, against convolutions of the same map (C -> C, "same"
    # padding): a 3x3 one, and one as large as the lnorm's neighbourhood
    results["lnorm"] = []
    model, feature = model.to(memory_format=torch.contiguous_format), x
    with torch.inference_mode():
        for name, stage in model.features.named_children():
            norm, inp = stage[-1], stage[:-1](feature)
            c, a = inp.shape[1], norm.size
            row = {"layer": name, "input": "x".join(map(str, inp.shape[1:])), "size": a}
            row["lnorm_ms"] = 1e3 * _median_seconds(lambda n=norm, i=inp: n(i), args.repeats, device)
            for key, k in (("conv3x3_ms", 3), ("conv_same_size_ms", a)):
                w = torch.randn(c, c, k, k, device=device)
                conv = lambda i=inp, w=w: fn.fbcorr(i, w, 1, "same")  # noqa: E731
                row[key] = 1e3 * _median_seconds(conv, args.repeats, device)
            results["lnorm"].append(row)
            rows.append(
                (
                    f"{name}.norm {a}x{a} on {row['input']}",
                    f"{row['lnorm_ms']:.2f} ms",
                    f"{row['lnorm_ms'] / row['conv3x3_ms']:.2f}x conv 3x3, "
                    f"{row['lnorm_ms'] / row['conv_same_size_ms']:.3f}x conv {a}x{a}",
                )
            )
            feature = norm(inp)  # the stage's output, without running it again

    print(
        f"bench layers: {space.name} on {results['device']} ({results['threads']} threads), "
        f"batch {args.batch}"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]}")
    print("  (conv: a convolution from C to C channels on the same map, 'same' padding)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
