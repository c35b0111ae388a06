"""``archsearch bench layers``: forward throughput of HT-L3-1st, and what divisive normalization
costs against a convolution of the same feature map."""

from __future__ import annotations

import argparse

import torch

from models import build_model
from models import functional as fn

from ..compile import CompiledSpace
from ..options import positive_int
from ..space import input_of, load_space
from ..text import table
from .harness import DEVICE, Benchmark, device_of, env_line, environment, median_seconds, space_option, write


class Layers(Benchmark):
    name = "layers"
    help = "HT-L3-1st forward images/s on 200x200; lnorm against convolutions"
    description = (
        "Forward throughput of a space's first draw (HT-L3-1st on 200x200 input by default), contiguous "
        "and channels_last, and the cost of each lnorm relative to a convolution of the same feature "
        "map (C to C channels, 'same' padding): a 3x3 one and one as large as its neighbourhood."
    )
    options = (space_option("spaces/ht_l3_1st.yaml"), DEVICE)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--batch", type=positive_int, default=16, help="images per forward pass (default 16)")
        p.add_argument(
            "--repeats", type=positive_int, default=5, help="timed repeats, the median kept (default 5)"
        )

    def run(self, args: argparse.Namespace) -> int:
        device = device_of(args.device)
        env = environment(device)
        space = load_space(args.space)
        shape, classes = input_of(space, None, None)
        arch = CompiledSpace(space).sample(1)[0]["architecture"]
        model = build_model(arch, shape, classes).to(device).eval()
        results: dict = {"benchmark": "layers", **env, "space": str(args.space), "batch": args.batch}
        results["input_shape"] = list(shape)
        x = torch.randn(args.batch, *shape, device=device)
        rows = self.forward(model, x, args.repeats, results)
        rows += self.lnorm(model, x, args.repeats, results)
        print(f"bench layers: {space.name} on {env_line(env)}, batch {args.batch}")
        print(table(rows, align="lrl"))
        print("  (conv: a convolution from C to C channels on the same map, 'same' padding)")
        write(results, self.out(args))
        return 0

    @staticmethod
    def forward(model: torch.nn.Module, x: torch.Tensor, repeats: int, results: dict) -> list[tuple]:
        """Forward images/s in each memory layout."""
        rows = []
        for layout in ("contiguous", "channels_last"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            m, xi = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
            with torch.inference_mode():
                seconds = median_seconds(lambda m=m, xi=xi: m(xi), repeats, x.device)
            results[f"forward_images_per_s_{layout}"] = len(x) / seconds
            rows.append(
                (f"forward ({layout})", f"{seconds * 1e3:.1f} ms", f"{len(x) / seconds:.1f} images/s")
            )
        return rows

    @staticmethod
    def lnorm(model: torch.nn.Module, x: torch.Tensor, repeats: int, results: dict) -> list[tuple]:
        """Each lnorm where it runs in the model, against convolutions of the same map (C -> C,
        "same" padding): a 3x3 one, and one as large as the lnorm's neighbourhood."""
        results["lnorm"], rows, device = [], [], x.device
        model, feature = model.to(memory_format=torch.contiguous_format), x
        with torch.inference_mode():
            for name, stage in model.features.named_children():
                norm, inp = stage[-1], stage[:-1](feature)
                c, a = inp.shape[1], norm.size
                row = {"layer": name, "input": "x".join(map(str, inp.shape[1:])), "size": a}
                row["lnorm_ms"] = 1e3 * median_seconds(lambda n=norm, i=inp: n(i), repeats, device)
                for key, k in (("conv3x3_ms", 3), ("conv_same_size_ms", a)):
                    w = torch.randn(c, c, k, k, device=device)
                    conv = lambda i=inp, w=w: fn.fbcorr(i, w, 1, "same")  # noqa: E731
                    row[key] = 1e3 * median_seconds(conv, repeats, device)
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
        return rows
