"""``archsearch bench``: speed and search goals, measured (never asserted in tests).

One module per benchmark, each a sub-command with only its own options (``archsearch bench NAME
--help``), on a shared harness (``harness.py``: the command, the environment line, timers, the
GPU's and CPUs' counters, a campaign timed through the real code path, JSON):

- ``layers``: forward throughput of HT-L3-1st and the cost of lnorm;
- ``overhead``: a real campaign of short trials, its wall time against the evaluator's own time
  (goal: wall / compute <= 1.05), with where the rest goes;
- ``evaluator``: the evaluator against a bare hand-written torch loop (goal: <= 1.0);
- ``suggest``: the latency of one TPE (and random) suggestion after N recorded trials;
- ``scale``: the platform's own costs (per trial, resume, reads, the store) as a campaign of a
  synthetic objective grows to 10,000 trials, and how each grows;
- ``workers``: trials per hour with 1 and 2 worker processes (goal: >= 1.7x), or with 1, 2 and 4
  trials packed on one GPU;
- ``search``: TPE against random search, early stopping against none, screening throughput;
- ``fidelity``: the rank correlation of screening and of short trainings with a longer training,
  over architectures of a space (goal for screening: Spearman >= 0.5);
- ``value``: a campaign as the README recommends against a hand-written convnet at the same compute
  budget, each tested once (goal: the campaign's median test accuracy >= the reference's + 0.003).

Each prints a table and writes JSON (``runs/bench/NAME.json`` by default) that says which device
and library versions it ran on. Times are medians over repeats after a warm-up, and ratios are
measured inside one run so they compare like with like.
"""

from .evaluator import Evaluator
from .fidelity import Fidelity
from .harness import Benchmark
from .layers import Layers
from .overhead import Overhead
from .scale import Scale
from .search import Search
from .suggest import Suggest
from .value import Value
from .workers import Workers

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Layers(),
        Overhead(),
        Evaluator(),
        Suggest(),
        Scale(),
        Workers(),
        Search(),
        Fidelity(),
        Value(),
    )
}
