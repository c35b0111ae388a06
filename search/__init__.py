"""archsearch: search spaces, campaigns and tracking for the Pinto & Cox model family.

The map. A trial flows through the stages below in order, one module (or a few) per stage; a
module imports only from its own stage or those below it, never from one above, and no import
leads back to where it started (tests/search/test_layout.py checks both against this list)::

    0 base        errors.py    the one-line errors users see; error_line
                  text.py      durations, SI counts, aligned tables
    1 declare     datasets.py  the datasets a space can name
                  schema.py    what a space file may say: blocks, fields, defaults
                  space.py     load and validate a space file into typed nodes
                  settings.py  --set overrides and run flags -> resolved settings; RUNS, PATIENCE
                  compile.py   the space -> one hyperopt expression; decoding, hashes
    2 data        data.py      fetch, verify, split: tensors in memory
    3 propose     suggest.py   hyperopt ask/tell (the one home of its internals), seeds
                  prune.py     early stopping: ASHA, the median rule, the stop at chance
                  fidelity.py  multi-fidelity: rungs of data size and epochs, promotions (BOHB)
                  cost.py      a trial's training time, predicted before it starts
    4 one trial   outcome.py   how a trial ended (Outcome) and how outcomes count: no torch
                  trial.py     the contract: TrialResult, what evaluators share
                  train.py     the training evaluator (backprop)
                  screen.py    the screening evaluator (random filters, ridge read-out)
                  evaluate.py  the evaluators by training.mode
    5 where       executor.py  the Executor protocol: inline, worker processes
                  cluster.py   a Dask cluster
    6 the loop    driver.py    the campaign loop (Loop): stop rules, requeueing, retries
    7 record      tracking.py  MLflow: the campaign run and a child run per trial
    8 read back   campaign.py  a campaign as stored: its store, settings, space and data
                  results.py   the best trial, status, leaderboard
                  report.py    plots and the HTML report
                  export.py    a trial as a bundle: TorchScript, ONNX, safetensors, card
                  ensemble.py  final models averaged in probability, tested once, logged
                  retrain.py   the best trials on all training data, tested once; search.final
    9 front ends  progress.py  what `archsearch run` shows
                  run.py       `archsearch run`: open or resume a campaign, run the loop
                  options.py   the commands' shared options and value types
                  cli.py       the command line: a table of commands
                  doctor.py    `archsearch doctor`: the acceptance check of a machine
                  bench/       `archsearch bench`: one module per benchmark, a shared harness

The names below are imported when first used, so that a worker process, which needs only
the evaluator, does not pay for hyperopt and the space compiler when it starts.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CompiledSpace": "compile",
    "arch_hash": "compile",
    "arch_name": "compile",
    "flatten": "compile",
    "to_json": "compile",
    "UserError": "errors",
    "Space": "space",
    "SpaceError": "space",
    "load_space": "space",
    "parse_space": "space",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
