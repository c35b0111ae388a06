"""The command line: ``archsearch sample`` output, and user errors as one line with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import main
from tests.conftest import ROOT
from tests.search.test_end_to_end import client_for


def run(*args, cwd=ROOT):
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).with_name("archsearch")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "search"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_ht_l3_1st_has_25600_features():
    result = run("sample", "spaces/ht_l3_1st.yaml", "--input", "1x200x200", "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert len(records) == 5
    first = records[0]
    assert set(first) >= {"arch", "hash", "valid", "reason", "params", "macs", "output_shape"}
    assert first["output_shape"] == [256, 10, 10]
    assert first["features"] == 25_600
    assert first["valid"] is True and first["reason"] is None
    assert first["arch"]["layers"][2]["pool"]["order"] == 10.0


def test_sample_json_reports_invalid_architectures(capsys):
    assert main(["sample", "spaces/ht_l3_1st.yaml", "--input", "1x100x100", "-n", "1", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["valid"] is False
    assert "below 1x1" in record["reason"]
    assert record["params"] is None and record["output_shape"] is None


def test_sample_text_and_seed(capsys):
    assert main(["sample", "spaces/pinto_cox.yaml", "-n", "3", "--seed", "4", "-v"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", "spaces/pinto_cox.yaml", "-n", "3", "--seed", "4", "-v"]) == 0
    assert capsys.readouterr().out == first
    assert "input 1x28x28, 10 classes" in first
    assert sum(line.startswith("#") for line in first.splitlines()) == 3
    assert "head.out" in first  # -v prints each plan


def test_bad_space_is_one_line_and_exit_code_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("architecture: {depth: 1, layers: {filters: {count: 8, size: 3, colour: red}}}\n")
    result = run("sample", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"archsearch: error: {bad}: architecture.layers.filters.colour: unknown key; "
        "expected one of count, size, stride, init, trainable"
    ]


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("architecture: [\n")
    result = run("sample", str(bad), "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "malformed YAML" in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["sample", "missing.yaml"], "missing.yaml: no such file"),
        (["sample", "spaces/quickstart.yaml", "--input", "28x28"], "expected CxHxW"),
        (["sample", "spaces/quickstart.yaml", "-n", "0"], "expected a number >= 1"),
    ],
)
def test_user_errors_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        sys.exit(main(args))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_path_datasets_need_the_input_shape(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text(
        "data: {dataset: 'npz:/data/x.npz'}\n"
        "architecture: {depth: 1, layers: {filters: {count: 8, size: 3}}}\n"
    )
    assert main(["sample", str(space)]) == 2
    assert "give --input CxHxW and --classes N" in capsys.readouterr().err
    assert main(["sample", str(space), "--input", "3x32x32", "--classes", "5", "-n", "1"]) == 0
    assert "input 3x32x32, 5 classes" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_layers_writes_its_json(tmp_path, capsys):
    out = tmp_path / "layers.json"
    assert main(["bench", "layers", "--batch", "1", "--repeats", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["input_shape"] == [1, 200, 200]
    assert results["forward_images_per_s_channels_last"] > 0
    assert [r["layer"] for r in results["lnorm"]] == ["l0", "l1", "l2", "l3"]
    assert [r["input"] for r in results["lnorm"]] == ["1x200x200", "64x92x92", "128x40x40", "256x12x12"]
    assert "images/s" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "architecture: {depth: 1, layers: {filters: {count: 8, size: 3}}}\nextra: 1\n",
            "extra: unknown key",
        ),
        (
            "architecture: {depth: {choice: []}, layers: {filters: {count: 8, size: 3}}}\n",
            "architecture.depth.choice: expected a non-empty list of options",
        ),
        (
            "architecture: {depth: 1, layers: {filters: {count: 8, size: 3}}}\n"
            "training: {lr: {uniform: [1, 0.1]}}\n",
            "training.lr.uniform: `low < high` must hold, but got (low=1, high=0.1)",
        ),
        (
            "architecture: {depth: 1, layers: {filters: {count: eight, size: 3}}}\n",
            'architecture.layers.filters.count: expected an integer >= 1 or a distribution, got "eight"',
        ),
        (
            "architecture: {depth: 1, layers: {filters: {count: 8, size: -5}}}\n",
            "architecture.layers.filters.size: expected an integer >= 1 or a distribution, got -5",
        ),
        ("architecture: {depth: 1, layers: [\n", "malformed YAML"),
    ],
)
def test_bad_space_files_through_the_cli(tmp_path, capsys, text, message):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    assert main(["sample", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"archsearch: error: {path}: ") and message in line


def test_data_list_shows_every_dataset_and_where_it_is(tmp_path, capsys):
    assert main(["data", "list", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "fashion-mnist", "mnist", "cifar10", "imagefolder:PATH", "npz:PATH"):
        assert f"\n{name} " in out
    assert "built in" in out
    assert "not downloaded (archsearch data get cifar10)" in out


def test_data_get_verifies_and_fails_in_one_line(tmp_path, capsys, monkeypatch):
    import dataclasses

    from search import data

    assert main(["data", "get", "digits", "--runs", str(tmp_path)]) == 0
    assert "nothing to fetch (built in)" in capsys.readouterr().out
    monkeypatch.setitem(
        data.REMOTES, "mnist", dataclasses.replace(data.REMOTES["mnist"], url="http://127.0.0.1:9/")
    )
    assert main(["data", "get", "mnist", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archsearch: error: mnist:") and len(err.strip().splitlines()) == 1
    assert not any((tmp_path / "data").rglob("*"))  # nothing partial left behind


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "100000"], "--workers 100000: this machine runs at most "),
        (["--workers", "100000", "--oversubscribe", "--device", "cuda"], "--device cuda: torch sees no CUDA"),
    ],
)
def test_more_workers_than_the_machine_runs_is_refused_before_anything_starts(
    tiny, runs, capsys, monkeypatch, flags, message
):
    import search.executor

    def never(*args, **kwargs):
        raise AssertionError("no worker process may start")

    monkeypatch.setattr(search.executor.Processes, "__init__", never)
    assert main(["run", str(tiny), "--runs", str(runs), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    if "--oversubscribe" not in flags:
        assert "use --workers " in err and "or add --oversubscribe to start 100000 anyway" in err
    assert client_for(runs).get_experiment_by_name("tiny") is None  # no campaign was created


def test_the_worker_limit_counts_cores_gpus_and_memory(monkeypatch):
    from search import executor

    monkeypatch.setattr(executor, "cpu_count", lambda: 2)
    monkeypatch.setattr(executor, "visible_gpus", lambda: ["0", "1"])
    monkeypatch.setattr(executor, "available_memory", lambda: 64 << 30)
    assert executor.worker_limit("cpu") == (2, "2 CPU cores")
    assert executor.worker_limit("cuda", 4) == (8, "2 GPUs x 4 trials per GPU")
    monkeypatch.setattr(executor, "available_memory", lambda: 1 << 30)
    assert executor.worker_limit("cuda", 4) == (2, "1.0 GiB of free memory, at ~350 MB a worker")


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ("/etc/passwd", "--runs /etc/passwd: is a file, not a folder"),
        ("/etc/passwd/x", "--runs /etc/passwd/x: is under /etc/passwd, which is a file, not a folder"),
        ("/proc/x", "--runs /proc/x: cannot create"),
    ],
)
@pytest.mark.parametrize("command", [["status", "qs"], ["run", "spaces/quickstart.yaml"], ["data", "list"]])
def test_a_runs_folder_that_cannot_be_one_is_a_line_and_exit_code_2(
    capsys, monkeypatch, runs, message, command
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main([*command, "--runs", runs]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_output_into_a_pipe_that_closed_ends_quietly(capsys, monkeypatch):
    """`archsearch ... | head -3`: the reader is gone; the command ends with code 0, no traceback."""
    import io
    import os

    class Closed(io.TextIOBase):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            return os.open(os.devnull, os.O_WRONLY)

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["sample", str(ROOT / "spaces" / "quickstart.yaml"), "-n", "3"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_output_into_a_real_pipe_that_closes_early_ends_quietly():
    """Far more output than a pipe holds, read by `head -1`: the command ends with 0, nothing on
    stderr."""
    script = Path(sys.executable).with_name("archsearch")
    command = f"{script} sample spaces/pinto_cox.yaml -n 1000 | head -1; exit ${{PIPESTATUS[0]}}"
    if not script.exists():
        command = command.replace(str(script), f"{sys.executable} -m search")
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("spaces/pinto_cox.yaml: pinto_cox: ")


def test_the_commands_that_read_a_campaign_back_import_neither_torch_nor_hyperopt(tmp_path):
    """status, leaderboard and --help answer without the 3 s of importing torch and hyperopt."""
    from search.compile import CompiledSpace
    from search.outcome import Outcome
    from search.space import parse_space
    from search.tracking import Store

    layers = {"filters": {"count": 4, "size": 3}}
    space = CompiledSpace(parse_space({"architecture": {"depth": 1, "layers": layers}}))
    (config,) = space.sample(1)
    campaign = Store(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path).create("c", {}, {}, tags={})
    trial = campaign.start_trial(0, 1, config, space.encode(config), 0, "cpu")
    trial.finish(Outcome.OK, None, {"val_acc": 0.5, "loss": 0.5})
    code = (
        "import sys; from search.cli import main\n"
        "for args in (['status', 'c'], ['leaderboard', 'c']):\n"
        f"    assert main([*args, '--runs', {str(tmp_path)!r}]) == 0\n"
        "print(sorted({'torch', 'hyperopt'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "val_acc 0.5000" in done.stdout and "t000" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
    helped = run("--help")
    assert helped.returncode == 0 and "leaderboard" in helped.stdout
