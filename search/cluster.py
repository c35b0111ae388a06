"""The Dask executor: ``archsearch run ... --dask tcp://host:8786`` runs trials on a cluster.

A scheduler (``dask scheduler``) and workers (``dask worker tcp://host:8786 --nthreads 1
--resources GPU=1`` on each GPU) are started by the user; archsearch must be installed
on every worker. Each trial is one task; a trial asks for ``search.gpu`` of the ``GPU``
resource when the space sets it (1: a whole GPU, 0.5: two trials share one).

Workers report what they do as Dask events on a topic of the campaign's own
(``started``, ``epoch``), which the driver turns into MLflow writes while the trial
trains. When a worker dies mid-trial, the scheduler runs the task again on another
worker; the driver sees the second ``started`` and records the first attempt as lost
(or, after ``MAX_ATTEMPTS``, cancels the task and records the trial as failed). A task
that errs with ``KilledWorker`` (a scheduler whose ``allowed-failures`` is lower) is
submitted again by the executor itself.
"""

from __future__ import annotations

import contextlib
import math
import queue
import sys
import time
import uuid
from typing import Any

from .errors import UserError, error_line
from .executor import Event, Handler, Job, device_of, run_job, where
from .outcome import Outcome
from .trial import TrialResult

CONNECT_TIMEOUT = 30  # seconds to reach the scheduler
CAPACITY_EVERY = 5.0  # seconds between readings of the cluster's size


class Cluster:
    """Trials as tasks on an existing Dask cluster."""

    def __init__(self, address: str, *, gpu: float = 0.0, workers: int | None = None):
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - a dependency of archsearch
            raise UserError("--dask needs dask.distributed: pip install 'dask[distributed]'") from None
        self.address = address
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise UserError(
                f"--dask {address}: cannot reach a Dask scheduler there ({error_line(e, 200, typed=False)}); "
                f"start one with `dask scheduler` and workers with `dask worker {address} --nthreads 1`"
            ) from None
        self.resources = {"GPU": gpu} if gpu else {}
        self.limit = workers
        self.warned: set[str] = set()  # workers said to run several GPU trials as threads
        crowded = self._threaded_gpu_workers()
        if crowded:
            self.client.close()
            raise UserError(
                f"--dask {address}: {crowded[0]} runs {crowded[1]} threads with a GPU resource; trials "
                "that share a worker process share its random generators and mix their seeds. Start "
                "one single-thread worker per trial slot instead (for two trials per GPU, two workers "
                "with `--nthreads 1 --resources GPU=0.5`)"
            )
        self.topic = f"archsearch-{uuid.uuid4().hex[:12]}"
        self.inbox: queue.Queue = queue.Queue()
        self.client.subscribe_topic(self.topic, lambda event: self.inbox.put(("event", event[1])))
        self.jobs: dict[str, Job] = {}
        self.futures: dict[str, Any] = {}
        self.running_on: dict[str, str] = {}  # key -> host:pid of the latest start
        self.address_of: dict[str, str] = {}  # key -> the Dask address of that worker
        self._capacity, self._capacity_at = 1, -math.inf

    def describe(self) -> str:
        n = len(self.client.scheduler_info().get("workers", {}))
        return f"on the Dask cluster {self.address} ({n} workers, {self.capacity()} trials at once)"

    def _threaded_gpu_workers(self) -> tuple[str, int] | None:
        """(address, threads) of a worker that would run several GPU trials as threads of one
        process, new since the last call (None: none)."""
        if not self.resources:
            return None
        for addr, w in self.client.scheduler_info().get("workers", {}).items():
            if addr not in self.warned and w.get("nthreads", 1) > 1 and w.get("resources", {}).get("GPU"):
                self.warned.add(addr)
                return addr, w["nthreads"]
        return None

    def capacity(self) -> int:
        """Trials the cluster can run at once (its threads, or its GPU shares), at most --workers."""
        if time.monotonic() - self._capacity_at >= CAPACITY_EVERY:
            crowded = self._threaded_gpu_workers()  # one that joined since the campaign started
            if crowded:
                print(
                    f"archsearch: warning: Dask worker {crowded[0]} runs {crowded[1]} threads with a GPU "
                    "resource: trials packed on it share one process and mix their seeds; start "
                    "single-thread workers (--nthreads 1)",
                    file=sys.stderr,
                )
            slots = 0
            for w in self.client.scheduler_info().get("workers", {}).values():
                n = w.get("nthreads", 1)
                for name, need in self.resources.items():
                    n = min(n, int(w.get("resources", {}).get(name, 0) / need + 1e-9))
                slots += n
            self._capacity, self._capacity_at = max(1, slots), time.monotonic()
        return min(self._capacity, self.limit) if self.limit else self._capacity

    def submit(self, job: Job) -> None:
        self.jobs[job.key] = job
        self.running_on.pop(job.key, None)
        future = self.client.submit(
            _run_task,
            job,
            self.topic,
            key=f"archsearch-t{job.key}-{uuid.uuid4().hex[:8]}",
            resources=self.resources or None,
            pure=False,
        )
        self.futures[job.key] = future
        future.add_done_callback(lambda f, key=job.key: self.inbox.put(("done", key, f)))

    def cancel(self, key: str) -> None:
        self.jobs.pop(key, None)
        self.running_on.pop(key, None)
        self.address_of.pop(key, None)
        future = self.futures.pop(key, None)
        if future is not None:
            future.cancel()

    def stop(self, key: str) -> None:
        """Stop a trial (pruned): its task ends at its next step."""
        self.cancel(key)

    def wait(self, handle: Handler, timeout: float) -> None:
        try:
            items = [self.inbox.get(timeout=timeout)]
        except queue.Empty:
            return
        while True:
            try:
                items.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        for item in items:
            if item[0] == "event":
                self._event(item[1], handle)
            else:
                self._done(item[1], item[2], handle)

    def _event(self, msg: dict, handle: Handler) -> None:
        key = msg.get("key")
        if key not in self.jobs:
            return
        if msg["kind"] == "started":
            previous = self.running_on.get(key)
            if previous is not None and previous != msg["where"]:
                handle(Event("lost", key, reason=f"worker {previous} was lost while running the trial"))
                if key not in self.jobs:  # cancelled: no more attempts
                    return
            self.running_on[key] = msg["where"]
            self.address_of[key] = msg.get("address", "")
            handle(Event("started", key, where=msg["where"], device=msg["device"]))
        elif msg["kind"] == "epoch" and self.running_on.get(key) == msg["where"]:
            handle(Event("epoch", key, epoch=msg["epoch"], metrics=msg["metrics"]))

    def _done(self, key: str, future: Any, handle: Handler) -> None:
        if self.futures.get(key) is not future:
            return  # cancelled, or an attempt that was replaced
        if future.status == "finished":
            result = future.result()
            if result is None:  # stopped by a cancel that arrived late
                return
        elif future.status == "error":
            from distributed import KilledWorker

            error = future.exception()
            if isinstance(error, KilledWorker):
                previous = self.running_on.get(key, "a worker")
                handle(Event("lost", key, reason=f"{previous} was lost while running the trial ({error})"))
                if key in self.jobs:
                    self.submit(self.jobs[key])
                return
            result = TrialResult(
                Outcome.FAILED, reason=f"the task failed on the cluster: {error_line(error)}"
            )
        else:  # cancelled
            return
        self.jobs.pop(key, None)
        self.futures.pop(key, None)
        self.running_on.pop(key, None)
        address = self.address_of.pop(key, "")
        if result.device_error and address:
            result.reason = f"{result.reason} ({self._restart(address)})"
        handle(Event("done", key, result=result))

    def _restart(self, address: str) -> str:
        """Replace a worker process whose GPU failed (its nanny starts a new one), or, without a
        nanny, retire it so that it gets no more trials; returns what was done."""
        try:
            self.client.restart_workers([address], timeout=60)
            return f"its Dask worker {address} was restarted"
        except Exception:  # no nanny, or the worker is gone already
            with contextlib.suppress(Exception):
                self.client.retire_workers([address], close_workers=True)
            return f"its Dask worker {address} has no nanny to restart it, so it was retired"

    def close(self) -> None:
        """Cancel what runs and leave the cluster (it stays up for other campaigns)."""
        if self.client.status in ("closing", "closed"):
            return
        for key in list(self.futures):
            self.cancel(key)
        with contextlib.suppress(Exception):  # the scheduler may be gone already
            self.client.unsubscribe_topic(self.topic)
        self.client.close(timeout=10)


def _run_task(job: Job, topic: str) -> TrialResult | None:
    """The task a Dask worker runs: one trial, its progress sent as events on ``topic``."""
    from distributed import get_worker

    worker = get_worker()
    task = worker.get_current_task()
    me = where()

    def send(kind: str, **msg: Any) -> None:
        worker.log_event(topic, {"kind": kind, "key": job.key, "where": me, **msg})

    def cancelled() -> bool:
        state = worker.state.tasks.get(task)
        return state is None or state.state in ("cancelled", "released", "forgotten")

    send("started", device=device_of(job), address=worker.address)
    try:
        return run_job(
            job,
            lambda epoch, metrics: send(
                "epoch", epoch=epoch, metrics={k: float(v) for k, v in metrics.items()}
            ),
            cancelled,
        )
    except KeyboardInterrupt:  # cancelled by the driver
        return None
