"""Parallel campaigns: worker processes, a real Dask cluster on loopback, a real tracking server.

Everything here starts real processes (workers, a Dask scheduler, ``mlflow server``) on
127.0.0.1 and kills some of them; the campaigns are the tiny space on digits.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from search import tracking
from search.cli import main
from tests.conftest import ROOT
from tests.search.test_end_to_end import campaign_of, client_for, trial_runs

pytestmark = pytest.mark.slow

ENDED = ("FINISHED", "FAILED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended with code {proc.returncode}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_records(runs: Path, name: str):
    client = client_for(runs)
    exp, _ = campaign_of(client, name)
    return trial_runs(client, exp.experiment_id)


def archsearch(*args: str, runs: Path, tiny: Path) -> list[str]:
    return ["run", str(tiny), "--runs", str(runs), *args]


# ---------------------------------------------------------------- worker processes on this machine


@pytest.mark.parametrize(
    ("workers", "gpus", "per_gpu", "expected"),
    [
        (4, ["0", "1"], 1, ["0", "1", "0", "1"]),  # round-robin
        (4, ["0", "1"], 2, ["0", "0", "1", "1"]),  # two trials packed on each GPU
        (3, ["2", "5"], 1, ["2", "5", "2"]),  # the GPUs CUDA_VISIBLE_DEVICES lists
        (2, [], 1, [None, None]),  # CPU
    ],
)
def test_workers_take_the_gpus_round_robin(workers, gpus, per_gpu, expected):
    from search.executor import assign_gpus

    assert assign_gpus(workers, gpus, per_gpu) == expected


def test_two_workers_train_two_trials_at_the_same_time(tiny, runs, capsys):
    # trials of a few seconds: longer than the workers' start-up may differ (each imports torch and
    # loads the data when its first trial comes), so that the first two trials overlap
    code = main(
        archsearch("--trials", "4", "--workers", "2", "--set", "training.epochs=40", runs=runs, tiny=tiny)
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "on 2 worker processes, 1 CPU thread each" in out
    children = run_records(runs, "tiny")
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.tags["archsearch.worker"] for c in children}) == 2  # two processes trained

    client = client_for(runs)

    def training(run):  # when the driver received its first and its last epoch
        stamps = [m.timestamp for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert len(stamps) == 40
        return min(stamps), max(stamps)

    (a0, a1), (b0, b1) = training(children[0]), training(children[1])
    assert a0 < b1 and b0 < a1  # their epochs interleave: both trained at once
    r0, r1 = children[0].info, children[1].info
    assert r0.start_time < r1.end_time and r1.start_time < r0.end_time  # and their runs overlap


def test_one_worker_gives_exactly_the_trials_of_a_serial_run(tiny, runs, capsys):
    common = ["--trials", "4", "--set", "training.epochs=2", "--set", "search.tpe.startup_trials=2"]
    assert main(archsearch(*common, "--name", "serial", runs=runs, tiny=tiny)) == 0
    assert main(archsearch(*common, "--name", "one-worker", "--workers", "1", runs=runs, tiny=tiny)) == 0
    capsys.readouterr()

    def trials(name):
        return [
            (c.data.tags["archsearch.trial"], c.data.tags["archsearch.vals"], c.data.metrics["val_acc"])
            for c in run_records(runs, name)
        ]

    serial, one = trials("serial"), trials("one-worker")
    assert len(serial) == 4
    assert one == serial  # same suggestions in the same order, and the same metrics


def spawn(args: list[str], cwd: Path) -> subprocess.Popen:
    """``archsearch ARGS`` in a process of its own, its output kept."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "search", *args]
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_a_worker_process_killed_mid_trial_is_replaced_and_the_trial_run_again(tiny, runs, tmp_path):
    args = archsearch("--trials", "4", "--workers", "2", "--set", "training.epochs=60", runs=runs, tiny=tiny)
    proc = spawn(args, tmp_path)
    try:
        victim = wait_until(lambda: _running_worker(runs, "tiny"), 180, "a trial running on a worker", proc)
        os.kill(victim[1], signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        stop(proc)
    assert proc.returncode == 0, out
    assert "lost: worker process" in out and "killed by SIGKILL" in out
    children = run_records(runs, "tiny")
    killed = [c for c in children if c.info.status == "KILLED"]
    ended = [c for c in children if c.info.status in ENDED]
    assert len(killed) == 1 and len(ended) == 4
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert killed[0].data.tags["archsearch.trial"] == victim[0]
    assert "killed by SIGKILL" in killed[0].data.tags["archsearch.reason"]
    retry = next(c for c in ended if c.data.tags["archsearch.trial"] == victim[0])
    assert retry.data.tags["archsearch.attempt"] == "2" and retry.info.status == "FINISHED"
    assert retry.data.tags["archsearch.config_hash"] == killed[0].data.tags["archsearch.config_hash"]


def _running_worker(runs: Path, name: str):
    """(trial, pid) of a trial that a worker has been training for a few epochs, or None."""
    try:
        children = run_records(runs, name)
    except Exception:  # the store or the campaign is not there yet
        return None
    client = client_for(runs)
    for c in children:
        worker = c.data.tags.get("archsearch.worker")
        if c.info.status == "RUNNING" and worker and client.get_metric_history(c.info.run_id, "val_acc"):
            return c.data.tags["archsearch.trial"], int(worker.rpartition(":")[2])
    return None


def suicide(config, data, **kwargs):
    """A trial whose worker dies every time (as an out-of-memory kill would)."""
    if config["training"]["lr"] > 0:
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_trial_whose_worker_always_dies_is_failed_after_three_attempts(tiny, runs, capsys):
    from search.campaign import open_store
    from search.run import launch
    from search.settings import resolve

    settings = resolve(str(tiny), ["search.trials=1"], workers=1, runs=runs, quiet=True)
    assert launch(settings, open_store(runs, None), evaluate_fn=suicide) == 0
    children = run_records(runs, "tiny")
    assert [c.info.status for c in children] == ["KILLED", "KILLED", "FAILED"]
    assert [c.data.tags["archsearch.attempt"] for c in children] == ["1", "2", "3"]
    last = children[-1].data.tags
    assert last["archsearch.outcome"] == "failed"
    assert "lost 3 times, so not run again" in last["archsearch.reason"]


def cuda_error_once(config, data, **kwargs):
    """The first trial (in any process) hits a CUDA error as a device-side assert gives; later
    trials train as usual. The trial's own error handling sees the error, as on a GPU."""
    from search import train
    from search.evaluate import evaluate

    mark = Path(os.environ["ARCHSEARCH_TEST_MARK"])
    if not mark.exists():
        mark.write_text(str(os.getpid()))

        def broken(*args, **kw):
            raise RuntimeError("CUDA error: device-side assert triggered\nCompile with TORCH_USE_CUDA_DSA")

        real, train.train = train.train, broken
        try:
            return evaluate(config, data, **kwargs)
        finally:
            train.train = real
    return evaluate(config, data, **kwargs)


def test_a_cuda_error_fails_the_trial_and_the_next_runs_in_a_fresh_worker(tiny, runs, tmp_path, monkeypatch):
    from search.campaign import open_store
    from search.run import launch
    from search.settings import resolve

    monkeypatch.setenv("ARCHSEARCH_TEST_MARK", str(tmp_path / "mark"))
    settings = resolve(str(tiny), ["search.trials=2"], workers=1, runs=runs, quiet=True)
    assert launch(settings, open_store(runs, None), evaluate_fn=cuda_error_once) == 0
    first, second = run_records(runs, "tiny")
    assert first.info.status == "FAILED" and second.info.status == "FINISHED"
    reason = first.data.tags["archsearch.reason"]
    assert reason.startswith("RuntimeError: CUDA error: device-side assert triggered")
    assert reason.endswith("(its worker process was replaced)")
    pid = int((tmp_path / "mark").read_text())
    assert first.data.tags["archsearch.worker"].endswith(f":{pid}")
    assert not second.data.tags["archsearch.worker"].endswith(f":{pid}")  # a fresh process
    assert second.data.tags["archsearch.attempt"] == "1"  # not a retry: nothing was lost


def test_a_cuda_error_inline_stops_the_campaign_with_a_line_that_says_to_resume(
    tiny, runs, tmp_path, monkeypatch, capsys
):
    from search.campaign import open_store
    from search.cli import main as cli
    from search.run import launch
    from search.settings import resolve

    monkeypatch.setenv("ARCHSEARCH_TEST_MARK", str(tmp_path / "mark"))
    settings = resolve(str(tiny), ["search.trials=2"], runs=runs, quiet=True)
    with pytest.raises(Exception) as caught:
        launch(settings, open_store(runs, None), evaluate_fn=cuda_error_once)
    message = str(caught.value)
    assert "trial 0 left the GPU of this process unusable (RuntimeError: CUDA error:" in message
    resume = f"archsearch run --resume tiny --runs {runs}"
    assert message.endswith(f"the campaign stopped: resume it with `{resume}`")
    (only,) = run_records(runs, "tiny")
    assert only.info.status == "FAILED"
    _, parent = campaign_of(client_for(runs), "tiny")
    assert parent.info.status == "KILLED"
    assert cli(["run", "--resume", "tiny", "--runs", str(runs), "-q"]) == 0  # the next trial runs
    assert [r.info.status for r in run_records(runs, "tiny")] == ["FAILED", "FINISHED"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--trials-per-gpu", "2"], "--trials-per-gpu packs trials on GPUs, and torch sees none here"),
        (["--workers", "0"], "--workers: expected a number >= 1"),
        (["--tracking-patience", "-5"], "--tracking-patience: expected a number > 0"),
        (["--dask", "tcp://127.0.0.1:1"], "--dask tcp://127.0.0.1:1: cannot reach a Dask scheduler there"),
    ],
)
def test_bad_parallel_settings_are_one_line_and_write_nothing(
    tiny, runs, capsys, monkeypatch, flags, message
):
    from search import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    try:
        code = main(archsearch(*flags, runs=runs, tiny=tiny))
    except SystemExit as e:  # argparse refuses the value itself
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert client_for(runs).get_experiment_by_name("tiny") is None


# ---------------------------------------------------------------- a Dask cluster on loopback


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two single-threaded workers (each with a nanny) on 127.0.0.1."""
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    assert dask, "the dask command comes with dask[distributed]"
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    logs = tmp_path / "dask"
    logs.mkdir()
    common = {"cwd": tmp_path, "env": env, "stderr": subprocess.STDOUT}
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=open(logs / "scheduler.log", "w"),  # noqa: SIM115 - closed with the process
        **common,
    )
    workers = [
        subprocess.Popen(
            [dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
            stdout=open(logs / f"worker{i}.log", "w"),  # noqa: SIM115
            **common,
        )
        for i in range(2)
    ]
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    yield address
    stop(*workers, scheduler)


def test_a_dask_campaign_survives_a_worker_killed_mid_trial(tiny, runs, tmp_path, dask_cluster):
    args = archsearch(
        "--trials", "6", "--dask", dask_cluster, "--set", "training.epochs=60", runs=runs, tiny=tiny
    )
    proc = spawn(args, tmp_path)
    try:
        victim = wait_until(
            lambda: _running_worker(runs, "tiny"), 180, "a trial running on a Dask worker", proc
        )
        os.kill(victim[1], signal.SIGKILL)  # the worker process; its nanny starts a new one
        out, _ = proc.communicate(timeout=400)
    finally:
        stop(proc)
    assert proc.returncode == 0, out
    assert "on the Dask cluster" in out and "lost: worker" in out
    children = run_records(runs, "tiny")
    ended = [c for c in children if c.info.status in ENDED]
    killed = [c for c in children if c.info.status == "KILLED"]
    assert len(ended) == 6 and sorted(int(c.data.tags["archsearch.trial"]) for c in ended) == list(range(6))
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert [c.data.tags["archsearch.trial"] for c in killed] == [victim[0]]
    # each architecture evaluated once, apart from the retried one
    hashes = [c.data.tags["archsearch.config_hash"] for c in children]
    assert len(set(hashes)) == 6 and len(hashes) == 7
    assert killed[0].data.tags["archsearch.config_hash"] in {
        c.data.tags["archsearch.config_hash"] for c in ended
    }
    assert all(c.data.tags["archsearch.worker"] for c in ended)


# ---------------------------------------------------------------- a tracking server on loopback


@pytest.fixture
def mlflow_server(tmp_path, template_store):
    """``mlflow server`` on loopback over a SQLite store, behind a TCP relay the test can cut."""
    db = tmp_path / "server.db"
    shutil.copy(template_store, db)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{db}",
            "--artifacts-destination", str(tmp_path / "server-artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),  # noqa: SIM115
    )  # fmt: skip
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/health"), 180, "mlflow server", server)
        relay = Relay(port)
        yield relay
        relay.close()
    finally:
        stop(server)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Relay:
    """A TCP relay to a local port that acts as a server gone away while ``cut`` is set: new
    connections are closed at once, and so is a kept-alive one when its next request comes
    (never forwarded, so a retry cannot duplicate it). Requests under way complete."""

    def __init__(self, target: int):
        self.target = target
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut.is_set():
                conn.close()  # as a server that is down would
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b, requests in ((conn, upstream, True), (upstream, conn, False)):
                threading.Thread(target=self._pipe, args=(a, b, requests), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, requests: bool) -> None:
        try:
            while data := a.recv(65536):
                if requests and self.cut.is_set():
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.open = False
        self.listener.close()


def test_per_epoch_metrics_reach_a_tracking_server_while_trials_train(tiny, runs, monkeypatch, mlflow_server):
    monkeypatch.setattr(tracking, "FLUSH_EVERY", 0.0)  # write each epoch as it comes
    client = MlflowClient(tracking_uri=mlflow_server.url)
    seen: dict[str, int] = {}  # run id -> fewest epochs seen in it while it was RUNNING
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                exp = client.get_experiment_by_name("tiny")
                runs_now = client.search_runs([exp.experiment_id]) if exp else []
            except Exception:
                runs_now = []
            for r in runs_now:
                if r.info.status == "RUNNING" and r.data.tags.get("archsearch.kind") == "trial":
                    epochs = len(client.get_metric_history(r.info.run_id, "val_acc"))
                    if epochs:
                        seen[r.info.run_id] = min(seen.get(r.info.run_id, epochs), epochs)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    args = [
        "--trials",
        "4",
        "--workers",
        "2",
        "--set",
        "training.epochs=40",
        "--tracking-uri",
        mlflow_server.url,
    ]
    try:
        assert main(archsearch(*args, runs=runs, tiny=tiny)) == 0
    finally:
        done.set()
        watcher.join()
    exp = client.get_experiment_by_name("tiny")
    children = [
        r for r in client.search_runs([exp.experiment_id]) if r.data.tags["archsearch.kind"] == "trial"
    ]
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    assert seen, "no trial showed per-epoch metrics while it ran"
    assert any(epochs < 40 for epochs in seen.values()), seen  # seen mid-trial, not only at the end


def test_a_tracking_server_that_goes_away_briefly_loses_nothing(
    tiny, runs, mlflow_server, capfd, monkeypatch
):
    monkeypatch.setattr(tracking, "BACKOFF", (0.2, 1.0))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the driver's own retries, not MLflow's
    direct = MlflowClient(tracking_uri=f"http://127.0.0.1:{mlflow_server.target}")  # not through the relay

    def first_trial_ended():
        exp = direct.get_experiment_by_name("tiny")
        return exp and direct.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")

    def outage():  # once trials end and get written, the server is away for 4 s
        wait_until(first_trial_ended, 120, "a finished trial")
        mlflow_server.cut.set()
        time.sleep(4)
        mlflow_server.cut.clear()

    saboteur = threading.Thread(target=outage, daemon=True)
    saboteur.start()
    args = [
        "--trials",
        "8",
        "--workers",
        "2",
        "--set",
        "training.epochs=30",
        "--tracking-uri",
        mlflow_server.url,
    ]
    try:
        code = main(archsearch(*args, runs=runs, tiny=tiny))
    finally:
        saboteur.join(timeout=10)
        mlflow_server.cut.clear()
    err = capfd.readouterr().err
    assert code == 0, err
    assert "unreachable" in err and "answers again after" in err
    exp = direct.get_experiment_by_name("tiny")
    children = [
        r for r in direct.search_runs([exp.experiment_id]) if r.data.tags["archsearch.kind"] == "trial"
    ]
    assert sorted(int(r.data.tags["archsearch.trial"]) for r in children) == list(range(8))
    assert all(r.info.status == "FINISHED" for r in children)
    assert all(len(direct.get_metric_history(r.info.run_id, "val_acc")) == 30 for r in children)
