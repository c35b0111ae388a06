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

import fcntl
import functools
import json
import logging
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .compile import arch_hash, arch_name, config_hash, flatten, to_json
from .errors import TrackingError, UserError, error_line
from .settings import PATIENCE
from .trial import Outcome

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

    def where(self) -> str:
        return str(self.runs / "mlflow.db") if self.local and self.uri.endswith("mlflow.db") else self.uri

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MlflowException as e:
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

    # -- reading
    def run(self) -> Any:
        return self.client.get_run(self.run_id)

    def read_text(self, artifact: str, run_id: str | None = None) -> str:
        """A text file of the campaign run (or of one of its runs)."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(run_id or self.run_id, artifact, tmp)
            except (MlflowException, OSError) as e:
                raise TrackingError(f"campaign {self.name!r}: cannot read {artifact}: {e}") from None
            return Path(path).read_text(encoding="utf-8")

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """One metric of a run, every step, in order of step."""
        history = self.store._call("reading a metric", self.client.get_metric_history, run_id, key)
        return sorted(history, key=lambda m: (m.step, m.timestamp))

    def trials(self, kind: str = "trial") -> list[TrialRecord]:
        """Every trial run (``kind`` final: the retrained ones), in order of trial number, then attempt."""
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
            self.client.set_tag(self.run_id, TAG + "heartbeat", f"{time.time():.0f}")
            self._progress_at = time.monotonic()

    def release(self, status: str) -> None:
        """End the campaign run (FINISHED, FAILED or KILLED) and drop the lock."""
        self._write_progress()
        self.client.log_batch(self.run_id, tags=[RunTag(TAG + "driver", "")])
        self.client.set_terminated(self.run_id, status)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- writing
    def set_tags(self, tags: dict[str, Any]) -> None:
        items = [RunTag(k, _text(v)) for k, v in tags.items()]
        for chunk in _chunks(items):
            self.client.log_batch(self.run_id, tags=chunk)

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
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
        self._progress, self._progress_at = None, time.monotonic()

    def mark_killed(self, record: TrialRecord, reason: str) -> None:
        """A trial left RUNNING by a driver that died: KILLED, with why."""
        self.client.log_batch(
            record.run_id,
            tags=[RunTag(TAG + "outcome", Outcome.KILLED), RunTag(TAG + "reason", reason)],
        )
        self.client.set_terminated(record.run_id, "KILLED")

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
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        known = {k: v for k, v in flatten(config).items() if k not in later}
        for chunk in _chunks(_params(known)):
            self.client.log_batch(run_id, params=chunk)
        return TrialRun(self.client, run, trial, name, config)

    def reopen_trial(self, record: Any, config: dict, offset: int) -> TrialRun:
        """A trial's run, RUNNING again: a multi-fidelity promotion trains it at the next rung, its
        epochs logged from step ``offset`` + 1 (``record``: what ``run_id`` and ``name`` it has)."""
        self.client.log_batch(record.run_id, tags=[RunTag(TAG + "outcome", Outcome.RUNNING)])
        self.client.update_run(record.run_id, status="RUNNING")
        run = self.client.get_run(record.run_id)
        return TrialRun(self.client, run, record.trial, record.name, config, offset)

    def restore(self, record: TrialRecord, metrics: dict[str, float], step: int) -> None:
        """A trial whose promotion was interrupted (its run left RUNNING or KILLED): ok again, with
        the metrics of the rung it ended (logged at ``step``, past the interrupted rung's epochs)."""
        ts = _now_ms()
        self.client.log_batch(
            record.run_id,
            metrics=[Metric(k, v, ts, step) for k, v in metrics.items()],
            tags=[RunTag(TAG + "outcome", Outcome.OK)],
        )
        if record.reason:
            self.client.delete_tag(record.run_id, TAG + "reason")
        self.client.set_terminated(record.run_id, "FINISHED")


class TrialRun:
    """One trial's child run while it runs.

    Per-epoch metrics are written at once when the last write is FLUSH_EVERY seconds old,
    else buffered until then or the end of the trial: long epochs show up live, short
    trials pay one write instead of one per epoch.
    """

    def __init__(self, client: Patient, run: Any, trial: int, name: str, config: dict, offset: int = 0):
        self.client, self.run_id, self.trial, self.name = client, run.info.run_id, trial, name
        self.config = config
        self.offset = offset  # the step of epoch 1, less one: a multi-fidelity rung's epochs go on
        # looked up once, not per file; mlflow-artifacts:/ URIs resolve against the client's server
        self.artifacts = get_artifact_repository(run.info.artifact_uri, tracking_uri=client.uri)
        self._pending: list[Metric] = []
        self._flushed_at = time.monotonic()
        self._last: dict[str, float] = {}  # the last epoch's metrics, not logged again at the end

    def started(self, where: str, device: str) -> None:
        """Where the trial runs: the worker (host:pid) and its device."""
        self.client.log_batch(
            self.run_id, tags=[RunTag(TAG + "worker", where), RunTag(TAG + "device", device)]
        )

    def log_param(self, key: str, value: Any) -> None:
        """A param held back when the run started (``later``), once known (a param is logged once)."""
        self.client.log_batch(self.run_id, params=_params({key: value}))

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
        for i in range(0, max(len(metrics), 1), _METRICS_PER_BATCH):
            last = i + _METRICS_PER_BATCH >= len(metrics)
            self.client.log_batch(
                self.run_id, metrics=metrics[i : i + _METRICS_PER_BATCH], tags=(tags or []) if last else []
            )
        self._flushed_at = time.monotonic()

    def finish(self, outcome: Outcome, reason: str | None, metrics: dict[str, float], **extra: Any) -> None:
        """Final metrics, outcome tags and files, then the run's end status."""
        ts = _now_ms()
        step = self.offset + int(metrics.get("epochs_done", 0))
        self._pending += [Metric(k, v, ts, step) for k, v in metrics.items() if self._last.get(k) != v]
        tags = [RunTag(TAG + "outcome", outcome)]
        if reason:
            tags.append(RunTag(TAG + "reason", reason[:5000]))
        self._flush(tags)
        with tempfile.TemporaryDirectory() as tmp:
            files = {"architecture.json": to_json(self.config, indent=2)}
            if extra.get("traceback"):
                files["traceback.txt"] = extra["traceback"]
            for name, text in files.items():
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            if extra.get("state_dict") is not None:
                torch.save(extra["state_dict"], Path(tmp) / "weights.pt")
            self.client.retry(self.artifacts.log_artifacts, tmp)
        self.client.set_terminated(self.run_id, STATUS[outcome])


def _record(run: Any) -> TrialRecord:
    tags, info = run.data.tags, run.info
    outcome = Outcome(tags.get(TAG + "outcome", Outcome.RUNNING))
    if info.status == "RUNNING":
        outcome = Outcome.RUNNING
    elif info.status == RunStatus.to_string(RunStatus.KILLED):
        outcome = Outcome.KILLED
    loss = run.data.metrics.get("loss")
    return TrialRecord(
        run_id=info.run_id,
        trial=int(tags.get(TAG + "trial", "-1")),
        attempt=int(tags.get(TAG + "attempt", "1")),
        outcome=outcome,
        reason=tags.get(TAG + "reason"),
        vals=json.loads(tags.get(TAG + "vals", "{}")),
        config_hash=tags.get(TAG + "config_hash", ""),
        loss=loss,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        name=info.run_name or "",
        start_time=info.start_time / 1000 if info.start_time else None,
        end_time=info.end_time / 1000 if info.end_time else None,
        source=tags.get(TAG + "source"),
    )
