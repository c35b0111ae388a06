"""Campaigns end to end on digits: what MLflow holds, failures as results, determinism, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from models import Limits
from search import train as train_module
from search.campaign import open_store
from search.cli import main
from search.compile import flatten
from search.evaluate import evaluate
from search.run import launch
from search.settings import resolve
from search.trial import TrialResult
from tests.conftest import ROOT


def client_for(runs):
    return MlflowClient(tracking_uri=f"sqlite:///{(runs / 'mlflow.db').resolve()}")


def trial_runs(client, experiment_id):
    runs = client.search_runs([experiment_id], filter_string="tags.`archsearch.kind` = 'trial'")
    return sorted(
        runs, key=lambda r: (int(r.data.tags["archsearch.trial"]), int(r.data.tags["archsearch.attempt"]))
    )


def campaign_of(client, name):
    exp = client.get_experiment_by_name(name)
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.`archsearch.kind` = 'campaign'")
    return exp, parent


def artifacts(client, run_id):
    return {f.path for f in client.list_artifacts(run_id)}


def test_campaign_leaves_one_experiment_one_parent_and_a_child_per_trial(tiny, runs, capsys):
    code = main(["run", str(tiny), "--runs", str(runs), "--trials", "3", "--set", "training.epochs=2"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "campaign tiny started" in out and "3 trials ended" in out

    client = client_for(runs)
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    assert [e.name for e in experiments] == ["tiny"]
    exp, parent = campaign_of(client, "tiny")
    all_runs = client.search_runs([exp.experiment_id])
    children = trial_runs(client, exp.experiment_id)
    assert len(all_runs) == 4 and len(children) == 3

    # the campaign run: settings as params, files, best-so-far with step = trial number
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.algo"] == "tpe"
    assert parent.data.params["data.dataset"] == "digits"
    assert parent.data.tags["archsearch.trials"] == "3"
    assert {"space.yaml", "space.resolved.yaml", "campaign.json"} <= artifacts(client, parent.info.run_id)
    # written when the best improves (and at the end): a step function of the trial number
    best = client.get_metric_history(parent.info.run_id, "best_val_acc")
    assert best[0].step == 0 and best[-1].step == 2
    assert [m.value for m in best] == sorted(m.value for m in best)  # best so far never drops
    assert max(m.value for m in best) == max(c.data.metrics["val_acc"] for c in children)
    assert client.get_metric_history(parent.info.run_id, "trials_ended")[-1].value == 3

    for i, child in enumerate(children):
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["archsearch.trial"] == str(i)
        assert child.info.status == "FINISHED" and tags["archsearch.outcome"] == "ok"
        assert child.info.run_name.startswith(f"t{i:03d} l")
        for key in ("arch_hash", "config_hash", "git", "version.torch", "version.hyperopt", "version.mlflow"):
            assert tags[f"archsearch.{key}"]
        assert tags["archsearch.device"].startswith("cpu")
        path = client.download_artifacts(child.info.run_id, "architecture.json", str(runs))
        config = json.loads(Path(path).read_text())
        assert child.data.params == {k: str(v) for k, v in flatten(config).items()}
        assert artifacts(client, child.info.run_id) == {"architecture.json", "weights.pt"}
        history = client.get_metric_history(child.info.run_id, "val_acc")
        assert [m.step for m in history] == [1, 2]  # step = epoch
        assert len(client.get_metric_history(child.info.run_id, "train_loss")) == 2
        metrics = child.data.metrics
        assert metrics["val_acc"] == history[-1].value
        assert metrics["loss"] == pytest.approx(1 - metrics["val_acc"])
        for key in ("best_val_acc", "val_loss", "params", "macs", "train_seconds", "images_per_second"):
            assert metrics[key] > 0


def _trials_of(runs, name):
    client = client_for(runs)
    exp, _ = campaign_of(client, name)
    return [
        (r.data.tags["archsearch.config_hash"], r.data.metrics.get("val_acc"), r.data.metrics.get("val_loss"))
        for r in trial_runs(client, exp.experiment_id)
    ]


def test_same_seed_same_architectures_and_metrics(tiny, tmp_path, template_store):
    results = []
    for i in range(2):
        runs = tmp_path / f"runs{i}"
        runs.mkdir()
        (runs / "mlflow.db").write_bytes(template_store.read_bytes())
        assert main(["run", str(tiny), "--runs", str(runs), "--trials", "3", "--seed", "7", "-q"]) == 0
        results.append(_trials_of(runs, "tiny"))
    assert results[0] == results[1]
    assert len({h for h, _, _ in results[0]}) == 3


def test_a_different_seed_gives_other_architectures(tiny, tmp_path, template_store):
    hashes = []
    for seed in (1, 2):
        runs = tmp_path / f"runs{seed}"
        runs.mkdir()
        (runs / "mlflow.db").write_bytes(template_store.read_bytes())
        assert main(["run", str(tiny), "--runs", str(runs), "--trials", "2", "--seed", str(seed), "-q"]) == 0
        hashes.append([h for h, _, _ in _trials_of(runs, "tiny")])
    assert hashes[0] != hashes[1]


def _nan_model(build):
    def build_nan(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_hook(lambda module, inputs, output: output * float("nan"))
        return model

    return build_nan


def _broken_model(*args, **kwargs):
    raise RuntimeError("a forced failure")


def test_invalid_nan_and_exception_become_failed_trials_and_the_campaign_goes_on(tiny, runs, monkeypatch):
    calls = []
    real_build = train_module.build_model

    def faulty(config, data, **kwargs):
        n = len(calls)
        calls.append(n)
        monkeypatch.setattr(train_module, "build_model", real_build)
        if n == 0:
            kwargs["limits"] = Limits(max_params=10)  # refused by the shape pass, before training
        elif n == 1:
            monkeypatch.setattr(train_module, "build_model", _nan_model(real_build))
        elif n == 2:
            monkeypatch.setattr(train_module, "build_model", _broken_model)
        return evaluate(config, data, **kwargs)

    settings = resolve(str(tiny), ["search.trials=4"], runs=runs, quiet=True)
    assert launch(settings, open_store(runs, None), evaluate_fn=faulty) == 0

    client = client_for(runs)
    exp, parent = campaign_of(client, "tiny")
    children = trial_runs(client, exp.experiment_id)
    outcomes = [(r.info.status, r.data.tags["archsearch.outcome"]) for r in children]
    assert outcomes == [("FAILED", "invalid"), ("FAILED", "failed"), ("FAILED", "failed"), ("FINISHED", "ok")]
    reasons = [r.data.tags.get("archsearch.reason", "") for r in children]
    assert "max_params" in reasons[0] or "parameters" in reasons[0]
    assert reasons[1].startswith("diverged: the training loss became nan in epoch 1")
    assert reasons[2] == "RuntimeError: a forced failure"
    # the invalid trial never trained; the exception's traceback is kept; failed trials keep no weights
    assert client.get_metric_history(children[0].info.run_id, "val_acc") == []
    assert "traceback.txt" in artifacts(client, children[2].info.run_id)
    trace = client.download_artifacts(children[2].info.run_id, "traceback.txt", str(runs))
    assert "a forced failure" in Path(trace).read_text()
    assert "weights.pt" not in artifacts(client, children[1].info.run_id)
    assert parent.info.status == "FINISHED"


def test_ten_failures_in_a_row_stop_the_campaign(tiny, runs, capsys):
    def failing(config, data, **kwargs):
        return TrialResult("failed", reason="RuntimeError: always")

    settings = resolve(str(tiny), ["search.trials=30"], runs=runs, quiet=True)
    store = open_store(runs, None)
    with pytest.raises(Exception, match="10 trials failed in a row") as info:
        launch(settings, store, evaluate_fn=failing)
    assert "RuntimeError: always" in str(info.value)
    client = client_for(runs)
    exp, parent = campaign_of(client, "tiny")
    assert len(trial_runs(client, exp.experiment_id)) == 10
    assert parent.info.status == "FAILED"


def test_loss_threshold_and_time_budget_stop_early(tiny, runs, capsys):
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "50", "--loss-threshold", "0.99"]) == 0
    assert "<= threshold 0.99" in capsys.readouterr().out
    assert (
        main(
            [
                "run",
                str(tiny),
                "--runs",
                str(runs),
                "--name",
                "budget",
                "--trials",
                "50",
                "--time-budget",
                "0.001",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "time budget of 0.001 s spent" in out


# ---------------------------------------------------------------- interruption and resume


def _cli(*args):
    return [sys.executable, "-m", "search", *args]


def _wait_for(predicate, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _running_trial(runs, min_trial):
    """The run id of a RUNNING trial with number >= min_trial, if any."""
    if not (runs / "mlflow.db").exists():
        return None
    client = client_for(runs)
    exp = client.get_experiment_by_name("tiny")
    if exp is None:
        return None
    for r in client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'"):
        tags = r.data.tags
        if tags.get("archsearch.kind") == "trial" and int(tags["archsearch.trial"]) >= min_trial:
            time.sleep(0.5)  # well inside its training
            return r.info.run_id
    return None


@pytest.mark.slow
def test_sigkill_mid_trial_then_resume_finishes_without_repeating(tiny, runs, capsys):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        _cli("run", str(tiny), "--runs", str(runs), "--trials", "3", "--set", "training.epochs=60", "-q"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        killed_id = _wait_for(lambda: _running_trial(runs, 1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert main(["run", "--resume", "tiny", "--runs", str(runs), "-q"]) == 0

    client = client_for(runs)
    exp, parent = campaign_of(client, "tiny")
    children = trial_runs(client, exp.experiment_id)
    killed = client.get_run(killed_id)
    assert killed.info.status == "KILLED"
    assert killed.data.tags["archsearch.outcome"] == "killed"
    ended = [r for r in children if r.info.status in ("FINISHED", "FAILED")]
    assert len(ended) == 3
    assert [r.data.tags["archsearch.trial"] for r in ended] == ["0", "1", "2"]
    hashes = [r.data.tags["archsearch.config_hash"] for r in ended]
    assert len(set(hashes)) == 3  # nothing evaluated twice ...
    retry = [r for r in ended if r.data.tags["archsearch.trial"] == killed.data.tags["archsearch.trial"]]
    assert retry[0].data.tags["archsearch.config_hash"] == killed.data.tags["archsearch.config_hash"]
    assert retry[0].data.tags["archsearch.attempt"] == "2"  # ... but the killed one, re-run
    assert len(children) == 4 and parent.info.status == "FINISHED"


@pytest.mark.slow
def test_ctrl_c_ends_the_trial_as_killed_and_says_how_to_resume(tiny, runs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        _cli("run", str(tiny), "--runs", str(runs), "--trials", "2", "--set", "training.epochs=60"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = _wait_for(lambda: _running_trial(runs, 0))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "archsearch run --resume tiny --runs" in out
    client = client_for(runs)
    _, parent = campaign_of(client, "tiny")
    assert client.get_run(run_id).info.status == "KILLED"
    assert parent.info.status == "KILLED"


def test_a_second_driver_on_the_same_campaign_is_refused(tiny, runs, capsys):
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "1", "-q"]) == 0
    campaign = open_store(runs, None).require("tiny")
    campaign.acquire()  # another driver holds the campaign
    try:
        code = main(["run", "--resume", "tiny", "--runs", str(runs), "--trials", "2"])
    finally:
        campaign.release("FINISHED")
    err = capsys.readouterr().err
    assert code == 2
    assert "is being run by another archsearch process" in err
    assert len(err.strip().splitlines()) == 1


def test_rerunning_a_name_resumes_and_other_settings_are_refused(tiny, runs, capsys):
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "1", "-q"]) == 0
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "2", "-q"]) == 0
    client = client_for(runs)
    exp, _ = campaign_of(client, "tiny")
    assert len(trial_runs(client, exp.experiment_id)) == 2
    capsys.readouterr()
    assert main(["run", str(tiny), "--runs", str(runs), "--set", "training.epochs=3"]) == 2
    err = capsys.readouterr().err
    assert "already exists with other settings (training.epochs: 2 -> 3)" in err
    assert main(["run", "--resume", "tiny", "--runs", str(runs), "--set", "training.epochs=3"]) == 2
    assert "only the run limits" in capsys.readouterr().err


# ---------------------------------------------------------------- reading results


def test_status_and_leaderboard_show_values_not_indices(tiny, runs, capsys):
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "3", "-q"]) == 0
    capsys.readouterr()
    assert main(["status", "tiny", "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "campaign tiny: FINISHED" in out
    assert "trials: 3 of 3 ended (3 ok, 0 invalid, 0 failed); 0 running" in out
    assert "best: t00" in out

    assert main(["leaderboard", "tiny", "--runs", str(runs), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3
    assert [r["val_acc"] for r in rows] == sorted((r["val_acc"] for r in rows), reverse=True)
    for r in rows:
        assert r["l1.pool.kind"] in ("lp", "max")  # a value, never a choice index
        assert r["l1.norm.kind"] in ("batch", "none")
        assert r["l1.filters.count"] in (4, 8)
        assert r["depth"] in (1, 2)
    assert main(["leaderboard", "tiny", "--runs", str(runs), "--top", "1", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("trial,")
    assert main(["leaderboard", "tiny", "--runs", str(runs)]) == 0
    table = capsys.readouterr().out
    assert "val_acc" in table and "l1 f" in table


# ---------------------------------------------------------------- user errors: one line, exit code 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "nope"], "no campaign named 'nope'"),
        (["leaderboard", "nope"], "no campaign named 'nope'"),
        (["run", "--resume", "nope"], "no campaign named 'nope'"),
    ],
)
def test_unknown_campaign(runs, capsys, args, message):
    assert main([*args, "--runs", str(runs)]) == 2
    err = capsys.readouterr().err
    assert message in err and "known campaigns" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_space_file(tmp_path, runs, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("architecture:\n  depth: [1\n")
    assert main(["run", str(bad), "--runs", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "malformed YAML" in err and len(err.strip().splitlines()) == 1


def test_bad_override(tiny, runs, capsys):
    assert main(["run", str(tiny), "--runs", str(runs), "--set", "training.epochs=0"]) == 2
    err = capsys.readouterr().err
    assert "with --set: training.epochs: expected an integer >= 1" in err


def test_missing_dataset(tiny, runs, tmp_path, capsys):
    missing = tmp_path / "missing.npz"
    assert main(["run", str(tiny), "--runs", str(runs), "--dataset", f"npz:{missing}"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and len(err.strip().splitlines()) == 1
    assert client_for(runs).get_experiment_by_name("tiny") is None  # nothing half-created


def test_corrupt_dataset_file(tiny, runs, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    assert main(["run", str(tiny), "--runs", str(runs), "--dataset", f"npz:{corrupt}"]) == 2
    err = capsys.readouterr().err
    assert str(corrupt) in err and len(err.strip().splitlines()) == 1


def test_cuda_requested_without_a_gpu(tiny, runs, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["run", str(tiny), "--runs", str(runs), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


# ---------------------------------------------------------------- the MLflow UI


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_store_on_loopback(tiny, runs):
    import urllib.request

    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "1", "-q"]) == 0
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        _cli("ui", "--runs", str(runs), "--port", str(port)),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10"

    def experiments():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())["experiments"]
        except OSError:
            return None

    try:
        found = _wait_for(experiments, timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert "tiny" in [e["name"] for e in found]


def test_ui_without_a_store_says_how_to_start(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["ui", "--runs", str(tmp_path / "empty")]) == 2
    assert "no campaigns under" in capsys.readouterr().err


def test_a_store_mlflow_refuses_is_one_line(tmp_path, capsys):
    # a scheme no MLflow knows (a folder, the old file store, is refused only from MLflow 3.13 on)
    assert main(["status", "x", "--runs", str(tmp_path), "--tracking-uri", "nosuch://store"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archsearch: error: the tracking store refused a request:")
    assert len(err.strip().splitlines()) == 1
