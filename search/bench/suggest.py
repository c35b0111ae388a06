"""``archsearch bench suggest``: the time of one TPE (and one random) suggestion, and of one tell,
after N recorded trials (random configurations with random losses)."""

from __future__ import annotations

import argparse
import statistics
import time

from ..compile import CompiledSpace
from ..errors import UserError
from ..options import positive_int
from ..text import table
from .harness import SETS, Benchmark, env_line, environment, space_option, write


def sizes(text: str) -> list[int]:
    """--sizes: history sizes such as 100,1000, in increasing order."""
    try:
        out = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise UserError(f"--sizes: expected numbers such as 100,1000, got {text!r}") from None
    if not out or out[0] < 1:
        raise UserError(f"--sizes: expected numbers >= 1, got {text!r}")
    return out


class Suggest(Benchmark):
    name = "suggest"
    help = "one TPE / random suggestion after 100 and 1,000 recorded trials on pinto_cox"
    description = (
        "The latency of one suggestion (Search.ask, decoded) with TPE and at random, and of one tell, "
        "after N recorded trials of random configurations with random losses."
    )
    options = (space_option("spaces/pinto_cox.yaml"), SETS)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--sizes", default="100,1000", help="history sizes (default 100,1000)")
        p.add_argument(
            "--repeats", type=positive_int, default=7, help="timed asks, the median kept (default 7)"
        )
        p.add_argument("--seed", type=int, default=0, help="seed of the random losses (default 0)")

    def run(self, args: argparse.Namespace) -> int:
        import numpy as np

        from ..settings import resolve
        from ..suggest import Search

        env = environment(None)
        history_sizes = sizes(args.sizes)
        space = resolve(args.space, list(args.set or []), name="bench").space
        compiled, settings = CompiledSpace(space), dict(space.search)
        tpe_search = Search(compiled, {**settings, "algo": "tpe"})
        rand_search = Search(compiled, {**settings, "algo": "random"})
        rand_search.share_history(tpe_search)  # one history; random draws fill it fast
        rng = np.random.default_rng(args.seed)

        def timed_asks(search: Search, first: int) -> list[float]:
            search.ask(first)  # warm-up
            out = []
            for k in range(1, args.repeats + 1):
                t = time.perf_counter()
                search.ask(first + k)  # asks leave the history as it was
                out.append(time.perf_counter() - t)
            return out

        measured, recorded, fill_seconds, tells = [], 0, 0.0, []
        for size in history_sizes:
            t = time.perf_counter()
            while recorded < size:
                vals, _ = rand_search.ask(recorded)
                t_tell = time.perf_counter()
                tpe_search.tell(recorded, vals, float(rng.uniform(0.1, 0.9)))
                tells.append(time.perf_counter() - t_tell)
                recorded += 1
            fill_seconds += time.perf_counter() - t
            tpe_times = timed_asks(tpe_search, size + 1)
            rand_times = timed_asks(rand_search, size + 1 + args.repeats + 1)
            measured.append(
                {
                    "history": size,
                    "tpe_ms": 1e3 * statistics.median(tpe_times),
                    "random_ms": 1e3 * statistics.median(rand_times),
                    "tell_ms": 1e3 * statistics.mean(tells[-10:]),
                    "tpe_ms_runs": [1e3 * s for s in tpe_times],
                    "random_ms_runs": [1e3 * s for s in rand_times],
                    "fill_seconds": fill_seconds,
                }
            )
        results = {
            "benchmark": "suggest",
            **env,
            "space": args.space,
            "hyperparameters": len(compiled.labels),
            "tpe": settings["tpe"],
            "repeats": args.repeats,
            "sizes": measured,
        }
        show(results, space.name, env)
        write(results, self.out(args))
        return 0


def show(r: dict, name: str, env: dict) -> None:
    t = r["tpe"]
    print(
        f"bench suggest: {name} ({r['hyperparameters']} hyperparameters), TPE with {t['candidates']} "
        f"candidates, gamma {t['gamma']}, {t['startup_trials']} startup trials; history of random "
        "configs with random losses"
    )
    print(f"  on {env_line(env)}; median of {r['repeats']} asks after one warm-up")
    rows = [("history", "TPE ask", "random ask", "tell", "fill")]
    for e in r["sizes"]:
        rows.append(
            (
                f"{e['history']:,} trials",
                f"{e['tpe_ms']:.1f} ms",
                f"{e['random_ms']:.2f} ms",
                f"{e['tell_ms']:.2f} ms",
                f"{e['fill_seconds']:.1f} s",
            )
        )
    print(table(rows))
    print(
        "  (ask: Search.ask, one suggestion, decoded; tell: Search.tell, mean of the last 10 of the fill; "
        "fill: recording the history so far, random asks and tells)"
    )
