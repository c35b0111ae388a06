"""What the benchmarks' tests share: run one through the command line and read its JSON."""

import json

from search.cli import main

ENVIRONMENT = {"device", "threads", "cpus", "load_average", "python", "torch", "hyperopt", "mlflow"}


def bench(tmp_path, *args):
    out = tmp_path / "bench.json"
    assert main(["bench", *args, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def positive(*values):
    return all(isinstance(v, (int, float)) and v > 0 for v in values)
