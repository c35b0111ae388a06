"""Tracking: MLflow is the system of record of every campaign and trial.

One experiment per campaign (named like the campaign), one parent run for
the campaign, and one nested child run per trial::

    experiment "quickstart"
      run "quickstart"                     tags archsearch.kind=campaign
        params   search.*, data.*, constraints.*, space, overrides
        metrics  best_val_acc, best_loss, trials_ended (step = trial number)
        files    space.yaml (as written), space.resolved.yaml, campaign.json
      run "t003 l2 f16-32 k3-5 p2/max"     tags archsearch.kind=trial, archsearch.trial=3, ...
        params   depth, l1.filters.count, ..., training.lr  (the flattened config)
        metrics  train_loss, val_acc, val_loss, lr, epoch_seconds (step = epoch), then the
                 final val_acc, best_val_acc, loss, params, macs, train_seconds, images_per_second
        files    architecture.json, weights.pt (finished trials), traceback.txt (errors)

A trial run is created RUNNING when the trial starts and ends FINISHED (ok),
FAILED (invalid or failed; ``archsearch.reason`` says why) or KILLED
(interrupted). ``archsearch.vals`` keeps the hyperopt assignment, so a
campaign's search history can be rebuilt from MLflow alone (``--resume``).

All calls go through ``MlflowClient`` with explicit run ids (never the
fluent active-run stack) and batched writes: one ``log_batch`` per epoch.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import functools
import gc
import json
import logging
import os
import platform
import queue
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from .compile import arch_hash, arch_name, config_hash, flatten, to_json
from .errors import TrackingError, UserError, error_line
from .outcome import Outcome
from .settings import PATIENCE

TAG = "archsearch."
# the MLflow status a trial run ends with, by outcome
STATUS = {
    Outcome.OK: "FINISHED",
    Outcome.PRUNED: "FINISHED",
    Outcome.INVALID: "FAILED",
    Outcome.FAILED: "FAILED",
    Outcome.KILLED: "KILLED",
}
STALE_AFTER = 600.0  # seconds without a heartbeat after which another host's driver counts as gone
_BATCH = 100  # MLflow takes at most 100 params or tags per log_batch
_METRICS_PER_BATCH = 1000  # and at most 1,000 metrics
FLUSH_EVERY = 5.0  # seconds: per-epoch metrics are written at least this often while a trial runs
WRITES_AHEAD = 256  # tracking writes the driver may queue before it waits for the store
PROGRESS_EVERY = 30.0  # seconds: the campaign's best-so-far point is written at least this often
BACKOFF = (1.0, 30.0)  # seconds between retries of a call: first, then doubling up to the last
# MLflow's own retries of an HTTP call (7, for about 4 minutes, by default) would hide the
# outage from the patience above: fewer and shorter, the driver retries on top of them
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# and no "View run ... at" line per run on a server: the campaign prints where its results are
_QUIET_DEFAULTS = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


# ---------------------------------------------------------------- what every run records


@functools.cache
def git_revision() -> str:
    """The source tree's git commit (with ``-dirty`` for local changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


@functools.cache
def versions() -> dict[str, str]:
    import hyperopt
    import mlflow
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "hyperopt": hyperopt.__version__,
        "mlflow": mlflow.__version__,
    }


def provenance() -> dict[str, str]:
    """Tags that say how to reproduce a run: git revision and library versions."""
    tags = {TAG + "git": git_revision(), "mlflow.source.git.commit": git_revision()}
    tags.update({f"{TAG}version.{k}": v for k, v in versions().items()})
    return tags


def _params(values: dict[str, Any]) -> list[Param]:
    return [Param(k, _text(v)) for k, v in values.items()]


def _text(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (dict, list)):
        return to_json(value)
    return str(value)


def _chunks(items: list, n: int = _BATCH) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- the store


def transient(error: BaseException) -> bool:
    """An error of the connection to the store (worth retrying), not a refusal of the request."""
    import requests
    from mlflow.exceptions import RestException

    if isinstance(error, requests.exceptions.RequestException):
        return isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))
    if isinstance(error, RestException):  # the server answered: retry only "come back later"
        return (
            error.get_http_status_code() in (502, 503, 504) or error.error_code == "TEMPORARILY_UNAVAILABLE"
        )
    if isinstance(error, MlflowException):
        text = str(error)
        return text.startswith("API request to") or "database is locked" in text
    return isinstance(error, ConnectionError)


class Patient:
    """An MlflowClient that waits out a tracking store that is briefly unreachable.

    A call that fails for want of a connection is retried with back-off (1 s, doubling up to
    30 s) until the store has been unreachable for ``patience`` seconds; then it raises a
    TrackingError that says so, and later calls fail at once. Requests the store refuses
    (a bad value, a missing run) raise at once, as MLflow raises them.
    """

    def __init__(self, client: MlflowClient, uri: str, patience: float = PATIENCE):
        self.client, self.uri, self.patience = client, uri, patience
        self.gave_up = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr
        return functools.partial(self.retry, attr)

    def retry(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        since, delay = None, BACKOFF[0]
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as e:
                if not transient(e):
                    raise
                first = error_line(e, 300, typed=False)
                now = time.monotonic()
                if since is None:
                    since = now
                    if not self.gave_up:
                        print(
                            f"archsearch: tracking store {self.uri} unreachable ({first}); "
                            f"retrying for up to {self.patience:g} s",
                            file=sys.stderr,
                            flush=True,
                        )
                if self.gave_up or now - since >= self.patience:
                    self.gave_up = True
                    raise TrackingError(
                        f"tracking store {self.uri} was unreachable for {now - since:.0f} s "
                        f"(patience {self.patience:g} s; last error: {first}); nothing recorded is lost, "
                        "and trials that were running are run again by --resume"
                    ) from None
                time.sleep(min(delay, max(0.0, since + self.patience - now)))
                delay = min(2 * delay, BACKOFF[1])
                continue
            if since is not None:
                took = time.monotonic() - since
                print(
                    f"archsearch: tracking store {self.uri} answers again after {took:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            return result


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    """Write-ahead logging for SQLite stores: about half the cost of each write, and readers
    (``archsearch status``, the UI) never wait for the driver. Keep the store on a local disk."""
    if isinstance(connection, sqlite3.Connection):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


class Store:
    """A tracking store: the SQLite file under ``runs`` by default, or a tracking server."""

    def __init__(self, uri: str, runs: Path, patience: float = PATIENCE):
        for key, value in (_HTTP_DEFAULTS | _QUIET_DEFAULTS).items():
            os.environ.setdefault(key, value)
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not the store's migration chatter
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.uri = uri
        self.runs = Path(runs)
        self.local = uri.startswith("sqlite:")
        if self.local:
            try:
                self.runs.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"--runs {runs}: cannot create that folder ({e.strerror or e})") from None
            if not event.contains(Engine, "connect", _sqlite_pragmas):
                event.listen(Engine, "connect", _sqlite_pragmas)
        self.client = Patient(MlflowClient(tracking_uri=uri), uri, patience)

    @functools.cached_property
    def engine(self) -> Engine | None:
        """A SQL store's engine, for the reads of a whole campaign (None: a tracking server)."""
        return sql_engine(self.client.client)

    def where(self) -> str:
        return str(self.runs / "mlflow.db") if self.local and self.uri.endswith("mlflow.db") else self.uri

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (MlflowException, SQLAlchemyError) as e:  # the latter: a SQL store read directly
            raise TrackingError(
                f"tracking store {self.uri}: {what} failed: {error_line(e, 300, typed=False)}"
            ) from None

    def campaign_names(self) -> list[str]:
        exps = self._call("listing experiments", self.client.search_experiments, max_results=1000)
        return sorted(e.name for e in exps if (e.tags or {}).get(TAG + "campaign") == "1")

    def find(self, name: str) -> Campaign | None:
        exp = self._call("reading the experiment", self.client.get_experiment_by_name, name)
        if exp is None or exp.lifecycle_stage != "active":
            return None
        runs = self._call(
            "reading the campaign run",
            self.client.search_runs,
            [exp.experiment_id],
            filter_string=f"tags.`{TAG}kind` = 'campaign'",
            max_results=1,
        )
        if not runs:
            return None
        return Campaign(self, name, exp.experiment_id, runs[0].info.run_id)

    def require(self, name: str) -> Campaign:
        """The campaign of this name, or an error that lists the known ones."""
        found = self.find(name)
        if found is None:
            known = self.campaign_names()
            listed = ", ".join(known) if known else "none yet (start one with `archsearch run SPACE.yaml`)"
            raise TrackingError(f"no campaign named {name!r} in {self.where()}; known campaigns: {listed}")
        return found

    def create(
        self, name: str, settings_params: dict, files: dict[str, str], tags: dict[str, str]
    ) -> Campaign:
        """A new experiment and its campaign run (RUNNING), with settings as params and files as artifacts."""
        location = None
        if self.local:
            location = (self.runs / "artifacts" / name).resolve().as_uri()
        exp_id = self._call(
            "creating the experiment",
            self.client.create_experiment,
            name,
            artifact_location=location,
            tags={TAG + "campaign": "1"},
        )
        run = self._call(
            "creating the campaign run",
            self.client.create_run,
            exp_id,
            run_name=name,
            tags={TAG + "kind": "campaign", **provenance(), **tags},
        )
        campaign = Campaign(self, name, exp_id, run.info.run_id)
        for chunk in _chunks(_params(settings_params)):
            self.client.log_batch(campaign.run_id, params=chunk)
        for artifact, text in files.items():
            self.client.log_text(campaign.run_id, text, artifact)
        return campaign


# ---------------------------------------------------------------- writes off the critical path


class Writer:
    """A campaign's tracking writes, made in order by one thread, so that the next trial starts
    without waiting for the store (a trial's run costs about 40 ms of MLflow calls).

    ``submit`` queues a write and returns a Future of its result; at most WRITES_AHEAD writes
    wait, then ``submit`` waits too (a store slower than the trials slows the campaign, never
    its memory). ``flush`` waits until every queued write is made: reads flush first, and so
    does the end of a campaign run. A write that fails (the store unreachable for longer than
    its patience, or a request it refuses) stops the writer: the writes queued after it are not
    made, and every later ``submit`` or ``flush`` raises a TrackingError that says which write
    failed. A driver killed with SIGKILL loses the writes still queued (at most WRITES_AHEAD):
    its trial runs stay RUNNING or are missing, and ``--resume`` marks and runs them again.
    """

    def __init__(self, uri: str, ahead: int = WRITES_AHEAD):
        self.uri = uri
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._thread: threading.Thread | None = None
        self._error: TrackingError | None = None

    def submit(self, what: str, fn: Callable[[], Any]) -> Future:
        self._check()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="archsearch-tracking", daemon=True)
            self._thread.start()
        future: Future = Future()
        self._queue.put((what, fn, future))
        return future

    def flush(self) -> None:
        """Wait until every queued write is made (and raise if one failed)."""
        if self._thread is not None:
            self._queue.join()
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            what, fn, future = self._queue.get()
            try:
                if self._error is not None:
                    future.set_exception(self._error)
                    continue
                future.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - said to the driver at its next write or read
                if isinstance(e, TrackingError):
                    self._error = e
                else:
                    self._error = TrackingError(
                        f"tracking store {self.uri}: {what} failed: {error_line(e, 300, typed=False)}; "
                        "the writes after it were not made, and --resume runs their trials again"
                    )
                future.set_exception(self._error)
            finally:
                self._queue.task_done()


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


# ---------------------------------------------------------------- a campaign


@dataclass(frozen=True)
class TrialRecord:
    """One trial run as read back from MLflow."""

    run_id: str
    trial: int
    attempt: int
    outcome: Outcome
    reason: str | None
    vals: dict[str, list]  # the hyperopt assignment
    config_hash: str
    loss: float | None
    metrics: dict[str, float]
    params: dict[str, str]
    name: str
    start_time: float | None  # seconds since the epoch
    end_time: float | None
    source: str | None = None  # where a given configuration came from (--warm-start, --points)


class Campaign:
    """The parent run of a campaign and its trial runs."""

    def __init__(self, store: Store, name: str, experiment_id: str, run_id: str):
        self.store, self.name, self.experiment_id, self.run_id = store, name, experiment_id, run_id
        self.client = store.client
        self._lock_file: Any = None
        self._progress: tuple | None = None  # the latest best-so-far point not yet written
        self._progress_at = time.monotonic()  # the last heartbeat (best-so-far writes carry one)
        self.writer: Writer | None = None  # None: each write is made before the call returns

    # -- how writes are made
    def write_behind(self) -> None:
        """Make this campaign's writes from now on in the background (:class:`Writer`), until
        :meth:`release`; reads through this object wait for them first."""
        if self.writer is None:
            self.writer = Writer(self.store.uri)
            atexit.register(self._drain)

    def _write(self, what: str, fn: Callable[[], Any]) -> Future:
        if self.writer is not None:
            return self.writer.submit(what, fn)
        return _done(fn())

    def flush(self) -> None:
        """Wait for the writes queued so far (raising TrackingError if one failed)."""
        if self.writer is not None:
            self.writer.flush()

    def _drain(self) -> None:
        with contextlib.suppress(Exception):  # at exit: what can still be written is
            self.flush()

    # -- reading
    def run(self) -> Any:
        self.flush()
        return self.client.get_run(self.run_id)

    def read_text(self, artifact: str, run_id: str | None = None) -> str:
        """A text file of the campaign run (or of one of its runs)."""
        return self._read(artifact, run_id, lambda path: path.read_text(encoding="utf-8"))

    def read_weights(self, run_id: str) -> dict[str, Any]:
        """The trained state_dict of one of its runs (``weights.pt``), on the CPU."""
        import torch

        return self._read(
            "weights.pt", run_id, lambda p: torch.load(p, map_location="cpu", weights_only=True)
        )

    def _read(self, artifact: str, run_id: str | None, read: Callable[[Path], Any]) -> Any:
        self.flush()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                return read(Path(self.client.download_artifacts(run_id or self.run_id, artifact, tmp)))
            except (MlflowException, OSError) as e:
                raise TrackingError(f"campaign {self.name!r}: cannot read {artifact}: {e}") from None

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """One metric of a run, every step, in order of step."""
        self.flush()
        history = self.store._call("reading a metric", self.client.get_metric_history, run_id, key)
        return sorted(history, key=lambda m: (m.step, m.timestamp))

    def metric_histories(self, key: str, runs: list[str]) -> dict[str, list[float]]:
        """One metric of each of ``runs``, every step's value in order of step (a run without
        it: absent). On a SQL store one query for them all (per-run calls took ~3 ms each)."""
        self.flush()
        engine = self.store.engine
        if engine is None:
            return {r: values for r in runs if (values := [m.value for m in self.metric_history(r, key)])}
        return self.store._call("reading a metric", sql_metric_histories, engine, key, runs)

    def trials(self, kind: str = "trial", params: bool = True) -> list[TrialRecord]:
        """Every trial run (``kind`` final: the retrained ones), in order of trial number, then
        attempt. Without ``params`` the records may come without their params (on a SQL store,
        a third of the read at 10,000 trials): for reads that need none, or only those of the
        rows they show (:meth:`with_params`)."""
        self.flush()
        engine = self.store.engine
        if engine is not None:
            out = self.store._call("reading trials", sql_trials, engine, self.experiment_id, kind, params)
            return sorted(out, key=lambda t: (t.trial, t.attempt))
        out, token = [], None
        while True:
            page = self.store._call(
                "reading trials",
                self.client.search_runs,
                [self.experiment_id],
                filter_string=f"tags.`{TAG}kind` = '{kind}'",
                max_results=1000,
                page_token=token,
            )
            out.extend(_record(r) for r in page)
            token = page.token
            if not token:
                break
        return sorted(out, key=lambda t: (t.trial, t.attempt))

    def with_params(self, records: list[TrialRecord]) -> list[TrialRecord]:
        """``records`` (read by :meth:`trials` without params) with their params."""
        engine = self.store.engine
        if engine is None:  # search_runs reads them with everything else
            return records
        ids = [r.run_id for r in records]
        read = self.store._call("reading params", sql_params, engine, ids)
        return [dataclasses.replace(r, params=read.get(r.run_id, {})) for r in records]

    # -- the driver's lock
    def acquire(self) -> None:
        """Refuse a second driver: a lock file on this machine, a heartbeat tag for other machines."""
        lock_dir = self.store.runs / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        handle = open(lock_dir / f"{self.name}.lock", "a+")  # noqa: SIM115 - held until the process ends
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise TrackingError(
                f"campaign {self.name!r} is being run by another archsearch process on this machine; "
                "wait for it to end or stop it (Ctrl-C) before resuming"
            ) from None
        run = self.run()
        tags = run.data.tags
        owner = tags.get(TAG + "driver")
        if owner and run.info.status == "RUNNING":
            host, _, pid = owner.rpartition(":")
            seen = float(tags.get(TAG + "heartbeat", "0"))
            age = time.time() - seen
            if host != socket.gethostname() and age < STALE_AFTER:
                handle.close()
                raise TrackingError(
                    f"campaign {self.name!r} is being run by a driver on {host} (pid {pid}, "
                    f"last heard {age:.0f} s ago); it counts as gone after {STALE_AFTER:.0f} s without news"
                )
        self._lock_file = handle
        self.client.log_batch(
            self.run_id, tags=[RunTag(TAG + "driver", f"{socket.gethostname()}:{os.getpid()}")]
        )
        self.heartbeat()
        self.client.update_run(self.run_id, status="RUNNING")

    def keep_alive(self) -> None:
        """A heartbeat while trials run, at most every PROGRESS_EVERY seconds."""
        self.heartbeat(at_most_every=PROGRESS_EVERY)

    def heartbeat(self, at_most_every: float = 0.0) -> None:
        """Tell other machines this driver is alive (a tag with the time), at most so often."""
        if time.monotonic() - self._progress_at >= at_most_every:
            stamp = f"{time.time():.0f}"
            self._write("a heartbeat", lambda: self.client.set_tag(self.run_id, TAG + "heartbeat", stamp))
            self._progress_at = time.monotonic()

    def release(self, status: str) -> None:
        """End the campaign run (FINISHED, FAILED or KILLED), once every queued write is made, and
        drop the lock."""
        failed = None
        try:
            try:
                self._write_progress()
                self.flush()
            except TrackingError as e:  # a queued write failed: the campaign run still ends
                failed = e
            self.writer = None
            self.client.log_batch(self.run_id, tags=[RunTag(TAG + "driver", "")])
            self.client.set_terminated(self.run_id, status)
        finally:
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
        if failed is not None:
            raise failed

    # -- writing
    def set_tags(self, tags: dict[str, Any]) -> None:
        items = [RunTag(k, _text(v)) for k, v in tags.items()]
        for chunk in _chunks(items):
            self._write(
                "tagging the campaign", functools.partial(self.client.log_batch, self.run_id, tags=chunk)
            )

    def log_progress(self, trial: int, best: dict[str, float], ended: int, improved: bool) -> None:
        """Best-so-far metrics with step = trial number, and a heartbeat.

        Written when the best improves, else at most every PROGRESS_EVERY seconds (and when
        the campaign run ends), so that short trials do not pay a write each.
        """
        self._progress = (trial, best, ended)
        if improved or time.monotonic() - self._progress_at >= PROGRESS_EVERY:
            self._write_progress()

    def _write_progress(self) -> None:
        if self._progress is None:
            return
        trial, best, ended = self._progress
        ts = _now_ms()
        metrics = [Metric(k, v, ts, trial) for k, v in best.items()]
        metrics.append(Metric("trials_ended", ended, ts, trial))
        tags = [RunTag(TAG + "heartbeat", f"{time.time():.0f}")]
        write = functools.partial(self.client.log_batch, self.run_id, metrics=metrics, tags=tags)
        self._write("the best so far", write)
        self._progress, self._progress_at = None, time.monotonic()

    def mark_killed(self, record: TrialRecord, reason: str) -> None:
        """A trial left RUNNING by a driver that died: KILLED, with why."""

        def write() -> None:
            self.client.log_batch(
                record.run_id,
                tags=[RunTag(TAG + "outcome", Outcome.KILLED), RunTag(TAG + "reason", reason)],
            )
            self.client.set_terminated(record.run_id, "KILLED")

        self._write(f"marking {record.name} killed", write)

    def start_trial(
        self,
        trial: int,
        attempt: int,
        config: dict,
        vals: dict,
        seed: int,
        device: str,
        kind: str = "trial",
        extra_tags: dict[str, str] | None = None,
        *,
        source: str | None = None,
        later: tuple[str, ...] = (),
    ) -> TrialRun:
        """A RUNNING child run with the flattened config as params (``kind`` final: a retrained
        trial); ``source``: where a given configuration came from (``--warm-start``, ``--points``);
        ``later``: params not known yet, logged once they are (:meth:`TrialRun.log_param`)."""
        arch = config["architecture"]
        tags = {
            "mlflow.parentRunId": self.run_id,
            TAG + "kind": kind,
            TAG + "trial": str(trial),
            TAG + "attempt": str(attempt),
            TAG + "outcome": Outcome.RUNNING,
            TAG + "arch_hash": arch_hash(arch),
            TAG + "config_hash": config_hash(config),
            TAG + "vals": to_json(vals),
            TAG + "seed": str(seed),
            TAG + "device": device,
            **provenance(),
            **({TAG + "source": source} if source else {}),
            **(extra_tags or {}),
        }
        name = f"t{trial:03d} {arch_name(arch)}" + (f" (retry {attempt})" if attempt > 1 else "")
        name = name if kind == "trial" else f"{kind} {name}"
        known = _params({k: v for k, v in flatten(config).items() if k not in later})
        return self._start(trial, name, tags, known, config)

    def start_ensemble(
        self, trial: int, attempt: int, name: str, params: dict[str, Any], config: dict
    ) -> TrialRun:
        """A RUNNING child run of kind ensemble: final models averaged, ``params`` saying which;
        ``trial``: its best member's; ``config``: its members' (its architecture.json)."""
        tags = {
            "mlflow.parentRunId": self.run_id,
            TAG + "kind": "ensemble",
            TAG + "trial": str(trial),
            TAG + "attempt": str(attempt),
            TAG + "outcome": Outcome.RUNNING,
            **provenance(),
        }
        return self._start(trial, name, tags, _params(params), config)

    def _start(
        self, trial: int, name: str, tags: dict[str, str], params: list[Param], config: dict
    ) -> TrialRun:
        def create() -> Any:
            run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            for chunk in _chunks(params):
                self.client.log_batch(run.info.run_id, params=chunk)
            return run

        return TrialRun(self, self._write(f"creating {name}", create), trial, name, config)

    def reopen_trial(self, record: Any, config: dict, offset: int) -> TrialRun:
        """A trial's run, RUNNING again: a multi-fidelity promotion trains it at the next rung, its
        epochs logged from step ``offset`` + 1 (``record``: what ``run_id`` and ``name`` it has)."""

        def reopen() -> Any:
            self.client.log_batch(record.run_id, tags=[RunTag(TAG + "outcome", Outcome.RUNNING)])
            self.client.update_run(record.run_id, status="RUNNING")
            return self.client.get_run(record.run_id)

        run = self._write(f"reopening {record.name}", reopen)
        return TrialRun(self, run, record.trial, record.name, config, offset)

    def restore(self, record: TrialRecord, metrics: dict[str, float], step: int) -> None:
        """A trial whose promotion was interrupted (its run left RUNNING or KILLED): ok again, with
        the metrics of the rung it ended (logged at ``step``, past the interrupted rung's epochs)."""
        ts = _now_ms()

        def write() -> None:
            self.client.log_batch(
                record.run_id,
                metrics=[Metric(k, v, ts, step) for k, v in metrics.items()],
                tags=[RunTag(TAG + "outcome", Outcome.OK)],
            )
            if record.reason:
                self.client.delete_tag(record.run_id, TAG + "reason")
            self.client.set_terminated(record.run_id, "FINISHED")

        self._write(f"restoring {record.name}", write)


class TrialRun:
    """One trial's child run while it runs.

    Per-epoch metrics are written at once when the last write is FLUSH_EVERY seconds old,
    else buffered until then or the end of the trial: long epochs show up live, short
    trials pay one write instead of one per epoch. Its writes go through its campaign's
    (in the background once the campaign writes behind), in the order they are made.
    """

    def __init__(self, campaign: Campaign, run: Future, trial: int, name: str, config: dict, offset: int = 0):
        self.campaign, self.client = campaign, campaign.client
        self._run = run  # the MLflow run, once created (a Future: writes may be queued)
        self.trial, self.name, self.config = trial, name, config
        self.offset = offset  # the step of epoch 1, less one: a multi-fidelity rung's epochs go on
        self._pending: list[Metric] = []
        self._flushed_at = time.monotonic()
        self._last: dict[str, float] = {}  # the last epoch's metrics, not logged again at the end

    @property
    def run_id(self) -> str:
        """The run's id (waits for the run to be created)."""
        return self._run.result().info.run_id

    @functools.cached_property
    def artifacts(self) -> Any:
        """Where its files go; looked up once, not per file (mlflow-artifacts:/ URIs resolve
        against the client's server)."""
        return get_artifact_repository(self._run.result().info.artifact_uri, tracking_uri=self.client.uri)

    def _write(self, what: str, fn: Callable[[], Any]) -> None:
        self.campaign._write(f"{what} of {self.name}", fn)

    def started(self, where: str, device: str) -> None:
        """Where the trial runs: the worker (host:pid) and its device."""
        tags = [RunTag(TAG + "worker", where), RunTag(TAG + "device", device)]
        self._write("the worker", lambda: self.client.log_batch(self.run_id, tags=tags))

    def log_param(self, key: str, value: Any) -> None:
        """A param held back when the run started (``later``), once known (a param is logged once)."""
        params = _params({key: value})
        self._write(f"param {key}", lambda: self.client.log_batch(self.run_id, params=params))

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        ts = _now_ms()
        self._pending += [Metric(k, float(v), ts, self.offset + epoch) for k, v in metrics.items()]
        self._last = dict(metrics)
        if time.monotonic() - self._flushed_at >= FLUSH_EVERY:
            self._flush()

    def _flush(self, tags: list[RunTag] | None = None) -> None:
        metrics, self._pending = self._pending, []
        if not metrics and not tags:
            return

        def write() -> None:
            for i in range(0, max(len(metrics), 1), _METRICS_PER_BATCH):
                last = i + _METRICS_PER_BATCH >= len(metrics)
                self.client.log_batch(
                    self.run_id,
                    metrics=metrics[i : i + _METRICS_PER_BATCH],
                    tags=(tags or []) if last else [],
                )

        self._write("metrics", write)
        self._flushed_at = time.monotonic()

    def recording(self, body: Callable[[], Any]) -> tuple[Any, Exception | None]:
        """``body()`` and no error; if it raises, this run recorded FAILED and (None, the error);
        if it is interrupted (Ctrl-C, SIGTERM), this run recorded KILLED and the interrupt raised."""
        try:
            return body(), None
        except KeyboardInterrupt:
            self.finish(Outcome.KILLED, "interrupted (Ctrl-C or SIGTERM)", {})
            raise
        except Exception as e:
            self.finish(Outcome.FAILED, error_line(e), {})
            return None, e

    def finish(self, outcome: Outcome, reason: str | None, metrics: dict[str, float], **extra: Any) -> None:
        """Final metrics, outcome tags and files, then the run's end status."""
        ts = _now_ms()
        step = self.offset + int(metrics.get("epochs_done", 0))
        self._pending += [Metric(k, v, ts, step) for k, v in metrics.items() if self._last.get(k) != v]
        tags = [RunTag(TAG + "outcome", outcome)]
        if reason:
            tags.append(RunTag(TAG + "reason", reason[:5000]))
        self._flush(tags)
        files = {"architecture.json": to_json(self.config, indent=2)}
        if extra.get("traceback"):
            files["traceback.txt"] = extra["traceback"]
        state_dict = extra.get("state_dict")

        def write() -> None:
            import torch

            with tempfile.TemporaryDirectory() as tmp:
                for name, text in files.items():
                    (Path(tmp) / name).write_text(text, encoding="utf-8")
                if state_dict is not None:
                    torch.save(state_dict, Path(tmp) / "weights.pt")
                self.client.retry(self.artifacts.log_artifacts, tmp)
            self.client.set_terminated(self.run_id, STATUS[outcome])

        self._write("files and status", write)


def _record(run: Any) -> TrialRecord:
    info, data = run.info, run.data
    return _record_of(
        info.run_id, info.run_name, info.status, info.start_time, info.end_time,
        data.tags, dict(data.metrics), dict(data.params),
    )  # fmt: skip


def _record_of(
    run_id: str,
    name: str | None,
    status: str,
    start_ms: int | None,
    end_ms: int | None,
    tags: dict[str, str],
    metrics: dict[str, float],
    params: dict[str, str],
) -> TrialRecord:
    outcome = Outcome(tags.get(TAG + "outcome", Outcome.RUNNING))
    if status == "RUNNING":
        outcome = Outcome.RUNNING
    elif status == RunStatus.to_string(RunStatus.KILLED):
        outcome = Outcome.KILLED
    return TrialRecord(
        run_id=run_id,
        trial=int(tags.get(TAG + "trial", "-1")),
        attempt=int(tags.get(TAG + "attempt", "1")),
        outcome=outcome,
        reason=tags.get(TAG + "reason"),
        vals=json.loads(tags.get(TAG + "vals", "{}")),
        config_hash=tags.get(TAG + "config_hash", ""),
        loss=metrics.get("loss"),
        metrics=metrics,
        params=params,
        name=name or "",
        start_time=start_ms / 1000 if start_ms else None,
        end_time=end_ms / 1000 if end_ms else None,
        source=tags.get(TAG + "source"),
    )


# the tags a TrialRecord is made of: the direct read below reads these and no others
RECORD_TAGS = tuple(
    TAG + k for k in ("trial", "attempt", "outcome", "reason", "vals", "config_hash", "source")
)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Without the cycle collector: a read of 10,000 runs makes millions of objects and no cycle,
    and the collector's passes over them took half its time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def sql_engine(client: MlflowClient) -> Engine | None:
    """The SQLAlchemy engine of a SQL tracking store (SQLite, PostgreSQL, ...), None for a
    tracking server: the store MLflow's client writes through, so reads share its connections."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store.engine if isinstance(store, SqlAlchemyStore) else None


def sql_trials(engine: Engine, experiment_id: str, kind: str, params: bool = True) -> list[TrialRecord]:
    """The runs of one kind, read straight from a SQL store's tables: four queries (three
    without ``params``), the run columns and the tags a record needs, and no ORM objects.
    ``search_runs`` builds every run's entity with all its tags (about 3 ms a run: 30 s for
    10,000 trials); this takes a few milliseconds per hundred. Records equal ``search_runs``'s
    (a test pins it)."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy import select

    runs, tags = SqlRun.__table__, SqlTag.__table__
    param_table, metrics = SqlParam.__table__, SqlLatestMetric.__table__
    ids = (
        select(tags.c.run_uuid)
        .join(runs, runs.c.run_uuid == tags.c.run_uuid)
        .where(
            tags.c.key == TAG + "kind",
            tags.c.value == kind,
            runs.c.experiment_id == int(experiment_id),
            runs.c.lifecycle_stage == "active",
        )
    )
    cols = (runs.c.run_uuid, runs.c.name, runs.c.status, runs.c.start_time, runs.c.end_time)
    with engine.connect() as conn, _no_gc():
        head = conn.execute(select(*cols).where(runs.c.run_uuid.in_(ids))).all()
        by_run: dict[str, tuple[dict, dict, dict]] = {row[0]: ({}, {}, {}) for row in head}
        queries = [
            select(tags.c.run_uuid, tags.c.key, tags.c.value).where(
                tags.c.run_uuid.in_(ids), tags.c.key.in_(RECORD_TAGS)
            ),
            select(metrics.c.run_uuid, metrics.c.key, metrics.c.value, metrics.c.is_nan).where(
                metrics.c.run_uuid.in_(ids)
            ),
        ]
        if params:
            queries.append(
                select(param_table.c.run_uuid, param_table.c.key, param_table.c.value).where(
                    param_table.c.run_uuid.in_(ids)
                )
            )
        for slot, query in enumerate(queries):
            for row in conn.execute(query).all():
                into = by_run.get(row[0])
                if into is None:  # a run that started between the queries: not in this read
                    continue
                into[slot][row[1]] = float("nan") if slot == 1 and row[3] else row[2]
    return [_record_of(*row, *by_run[row[0]]) for row in head]


SQL_IDS = 500  # run ids per query: well under any SQL engine's limit on bound values


def sql_params(engine: Engine, runs: list[str]) -> dict[str, dict[str, str]]:
    """The params of each of ``runs``, read straight from a SQL store's table."""
    from mlflow.store.tracking.dbmodels.models import SqlParam
    from sqlalchemy import select

    table = SqlParam.__table__
    out: dict[str, dict[str, str]] = {r: {} for r in runs}
    with engine.connect() as conn:
        for some in _chunks(runs, SQL_IDS):
            query = select(table.c.run_uuid, table.c.key, table.c.value).where(table.c.run_uuid.in_(some))
            for run, key, value in conn.execute(query).all():
                out[run][key] = value
    return out


def sql_metric_histories(engine: Engine, key: str, runs: list[str]) -> dict[str, list[float]]:
    """One metric's values of each of ``runs`` in order of step (then of time, as
    :meth:`Campaign.metric_history` orders them), read straight from a SQL store's table."""
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import select

    table = SqlMetric.__table__
    out: dict[str, list[float]] = {}
    with engine.connect() as conn, _no_gc():
        for some in _chunks(runs, SQL_IDS):
            query = (
                select(table.c.run_uuid, table.c.value, table.c.is_nan)
                .where(table.c.key == key, table.c.run_uuid.in_(some))
                .order_by(table.c.run_uuid, table.c.step, table.c.timestamp)
            )
            for run, value, is_nan in conn.execute(query).all():
                out.setdefault(run, []).append(float("nan") if is_nan else value)
    return out
