"""``python -m search.bench.synthetic_run run ...``: ``archsearch run``'s command line, every flag
as documented, with the synthetic benchmark objective (:mod:`search.bench.synthetic`) as the
evaluator: a campaign of thousands of trials in a process of its own, which ``bench scale`` and
the long-campaign test kill and resume. Nothing imports this module: it only starts processes.
"""

from __future__ import annotations

import sys
from functools import partial

from .. import cli, run
from .synthetic import synthetic_trial


def main(argv: list[str] | None = None) -> int:
    run.launch = partial(run.launch, evaluate_fn=synthetic_trial)  # this process only
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
