"""Executors: where a campaign's trials run.

The driver hands an executor :class:`Job` s (a trial's config, seed and how to
load the data) and receives :class:`Event` s back, in the driver's process:

- ``started``: a worker began the job (``where``: host:pid, ``device``);
- ``epoch``: the metrics of one epoch, while the trial trains;
- ``done``: the :class:`TrialResult`, weights included;
- ``lost``: the worker running the job died (killed, out of memory, machine lost). The
  executor runs the job again in another worker unless the driver cancels it.

Three executors share that protocol (:class:`Executor`, its seven methods):

- :class:`Inline`: the driver's own process, one trial at a time (the default);
- :class:`Processes`: ``--workers W`` processes on this machine, each pinned to a GPU
  (round-robin, ``--trials-per-gpu K`` to a GPU) or, on CPU, given its share of the cores;
- :class:`search.cluster.Cluster`: ``--dask ADDRESS``, the workers of a Dask cluster.

The driver is the only process that writes to MLflow, so a worker needs no access to the
tracking store, and a worker that dies loses nothing that was recorded. Workers load the
dataset themselves (once per process) and check that its split is the driver's.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection
import os
import pickle
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from .data import Data, DataError, load_data
from .errors import UserError
from .evaluate import evaluate
from .outcome import Outcome
from .trial import DeviceFailed, TrialResult, device_name, release_memory, resolve_device

Handler = Callable[["Event"], None]
GPU_RESERVE = 0.05  # of a shared GPU's memory left out of the trials' shares (CUDA contexts, others)
WORKER_MEMORY = 350 << 20  # bytes a worker process takes with torch loaded, before its trial's data
ALLOC_CONF = "expandable_segments:True"  # the allocator of workers on a GPU: trials come in every size


@dataclass(frozen=True)
class DataSpec:
    """How a worker loads the campaign's dataset, and the fingerprint its split must have."""

    dataset: str
    options: dict  # the space's data block, without ``dataset``
    cache_dir: str  # absolute
    data_dir: str | None
    fingerprint: str


@dataclass(frozen=True)
class Job:
    """One trial, as a worker receives it."""

    key: str  # the trial number, as text
    config: dict
    seed: int
    limits: Any
    data: DataSpec
    device: str = "auto"  # auto | cpu | cuda, resolved on the worker
    threads: int | None = None  # torch CPU threads of the trial; None: as the worker has them
    fn: Callable[..., TrialResult] = evaluate  # module level, so that it pickles by reference
    timeout: float | None = None  # seconds the trial may take (search.trial_timeout)
    images: int | None = None  # training images (a multi-fidelity rung's: Data.head); None: all


@dataclass
class Event:
    kind: str  # started | epoch | done | lost
    key: str
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    result: TrialResult | None = None
    where: str | None = None  # started: host:pid of the worker
    device: str | None = None  # started: the device it trains on
    reason: str | None = None  # lost: what happened


class Executor(Protocol):
    """Where trials run: what :class:`Inline`, :class:`Processes` and ``search.cluster.Cluster``
    share, and all the campaign loop asks of them."""

    def describe(self) -> str:
        """Where trials run, for the campaign's first line: ``on 2 worker processes, ...``."""
        ...

    def capacity(self) -> int:
        """How many trials may be in flight now."""
        ...

    def submit(self, job: Job) -> None:
        """Start a job (the caller keeps at most ``capacity()`` in flight)."""
        ...

    def cancel(self, key: str) -> None:
        """Forget a job: it gets no more attempts, and what it sends is ignored."""
        ...

    def stop(self, key: str) -> None:
        """Stop a job at its next step (pruned): it ends without a ``done`` event."""
        ...

    def wait(self, handle: Handler, timeout: float) -> None:
        """Pass what happened to ``handle`` as events, waiting at most about ``timeout`` seconds
        for the first (the inline executor runs its job to the end here)."""
        ...

    def close(self) -> None:
        """Stop what runs and release the workers; calling it again does nothing."""
        ...


# ---------------------------------------------------------------- on the worker's side

_DATA: dict[tuple, Data] = {}  # per process: the dataset of the latest job, on its device


def worker_data(spec: DataSpec, device: torch.device) -> Data:
    """The job's dataset, loaded once per process and checked against the driver's split."""
    key = (spec.dataset, repr(sorted(spec.options.items())), spec.fingerprint, str(device))
    if key not in _DATA:
        cache = Path(spec.cache_dir)
        if not cache.parent.exists():  # another machine: its own cache
            cache = Path.home() / ".cache" / "archsearch" / "data"
        data_dir = Path(spec.data_dir) if spec.data_dir and Path(spec.data_dir).exists() else None
        data = load_data(spec.dataset, **spec.options, cache_dir=cache, data_dir=data_dir)
        if data.fingerprint != spec.fingerprint:
            raise DataError(
                f"the worker's copy of {spec.dataset} splits differently from the driver's "
                f"(fingerprint {data.fingerprint} != {spec.fingerprint}): its files differ"
            )
        _DATA.clear()  # one dataset per process
        _DATA[key] = data.to(device)
    return _DATA[key]


def run_job(
    job: Job,
    on_epoch: Callable[[int, dict[str, float]], None],
    should_stop: Callable[[], bool],
) -> TrialResult:
    """Run one job where this function is called (a worker process or a Dask worker)."""
    try:
        device = resolve_device(job.device)
        if job.threads:
            torch.set_num_threads(job.threads)
        data = worker_data(job.data, device)
    except (UserError, OSError) as e:
        return TrialResult(Outcome.FAILED, reason=f"the worker on {where()} cannot run trials: {e}")
    try:
        return job.fn(
            job.config,
            data.head(job.images),
            seed=job.seed,
            limits=job.limits,
            on_epoch=on_epoch,
            should_stop=should_stop,
            timeout=job.timeout,
        )
    finally:
        release_memory(device, collect=False)  # the next trial starts with the GPU's cache empty


def where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def device_of(job: Job) -> str:
    """The device tag of a job's run, as this worker will train it."""
    try:
        return device_name(resolve_device(job.device))
    except UserError:
        return job.device  # the trial fails with the reason


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (none: empty)."""
    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [g.strip() for g in listed.split(",") if g.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (MemAvailable; None where unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def worker_limit(device: str, per_gpu: int = 1) -> tuple[int, str]:
    """The most worker processes this machine runs at once, and what sets that limit: its cores
    (CPU) or its GPUs x trials per GPU, and the memory a worker takes."""
    if device == "cuda":
        gpus = len(visible_gpus())
        limit, why = gpus * per_gpu, f"{gpus} GPU{'s' * (gpus != 1)} x {per_gpu} trials per GPU"
    else:
        limit = cpu_count()
        why = f"{limit} CPU core{'s' * (limit != 1)}"
    memory = available_memory()
    if memory is not None and memory // WORKER_MEMORY < limit:
        limit = max(1, memory // WORKER_MEMORY)
        why = f"{memory / 2**30:.1f} GiB of free memory, at ~{WORKER_MEMORY >> 20} MB a worker"
    return limit, why


def gpu_share(per_gpu: int) -> float:
    """The fraction of its GPU's memory that each of ``per_gpu`` trials packed on it may take."""
    return (1 - GPU_RESERVE) / per_gpu if per_gpu > 1 else 1.0


def prepare_gpu(per_gpu: int) -> None:
    """Set up a worker process that trains on one GPU, before CUDA starts: the expandable-segments
    allocator (unless the user chose one) and, with ``per_gpu`` > 1 trials packed on the GPU, this
    worker's share of its memory, so that a trial that runs out of memory ran out of its own."""
    if not any(os.environ.get(v) for v in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")):
        os.environ["PYTORCH_ALLOC_CONF"] = ALLOC_CONF
    if per_gpu > 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(gpu_share(per_gpu), 0)


def shared_oom(result: TrialResult, gpu: str, per_gpu: int, neighbours: int) -> TrialResult:
    """A trial that ran out of memory on a GPU it shared, said so in its reason."""
    if result.outcome == Outcome.FAILED and (result.reason or "").startswith("out of memory"):
        result.reason = (
            f"out of memory in its share of GPU {gpu} ({gpu_share(per_gpu):.0%}, {per_gpu} trials packed), "
            f"while {neighbours} other trial{'s' * (neighbours != 1)} ran there: "
            + (result.reason or "").removeprefix("out of memory: ")
        )
    return result


def assign_gpus(workers: int, gpus: list[str], per_gpu: int = 1) -> list[str | None]:
    """The GPU of each worker: ``per_gpu`` workers to a GPU, round-robin (None: no GPU)."""
    if not gpus:
        return [None] * workers
    return [gpus[i // per_gpu % len(gpus)] for i in range(workers)]


# ---------------------------------------------------------------- in the driver's process


class Inline:
    """One trial at a time in the driver's process, on the data the driver loaded."""

    def __init__(self, data: Data, should_stop: Callable[[], bool]):
        self.data, self.should_stop = data, should_stop
        self.job: Job | None = None
        self.stopping: str | None = None  # the key of a trial told to stop (pruned)

    def describe(self) -> str:
        return f"on {self.data.x_train.device} in this process"

    def capacity(self) -> int:
        return 1

    def submit(self, job: Job) -> None:
        self.job = job

    def cancel(self, key: str) -> None:
        self.job = None

    def stop(self, key: str) -> None:
        """Stop the running trial at its next step (it ends without a result)."""
        self.stopping = key

    def wait(self, handle: Handler, timeout: float) -> None:
        """Run the submitted job here, reporting its epochs as they end."""
        job, self.job = self.job, None
        if job is None:
            return
        self.stopping = None

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            handle(Event("epoch", job.key, epoch=epoch, metrics=metrics))

        try:
            result = job.fn(
                job.config,
                self.data.head(job.images),
                seed=job.seed,
                limits=job.limits,
                on_epoch=on_epoch,
                should_stop=lambda: self.stopping == job.key or self.should_stop(),
                timeout=job.timeout,
            )
        except KeyboardInterrupt:
            if self.stopping == job.key and not self.should_stop():
                return  # stopped by the driver, which has recorded it
            raise
        finally:
            release_memory(self.data.x_train.device, collect=False)
        handle(Event("done", job.key, result=result))
        if result.device_error:  # recorded as failed; no later trial could use this process's GPU
            raise DeviceFailed(f"trial {job.key} left the GPU of this process unusable ({result.reason})")

    def close(self) -> None:
        self.job = None


# ---------------------------------------------------------------- worker processes


@dataclass
class _Slot:
    index: int
    gpu: str | None
    process: Any = None
    conn: Any = None
    job: Job | None = None


class Processes:
    """``workers`` processes on this machine, each running one trial at a time.

    With GPUs, worker i sees only GPU ``gpus[i // per_gpu % len(gpus)]`` (CUDA_VISIBLE_DEVICES),
    so ``per_gpu`` trials share each GPU; on CPU each worker gets ``threads`` torch threads
    (the cores divided between the workers). Workers ignore Ctrl-C (the driver decides), die
    with the driver, and a worker that dies is replaced at once.
    """

    def __init__(self, workers: int, *, device: str, threads: int | None, per_gpu: int = 1):
        self.ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
        gpus = visible_gpus() if device != "cpu" else []
        self.gpus, self.per_gpu = gpus, per_gpu
        self.threads = threads or max(1, cpu_count() // workers)
        self.slots = [_Slot(i, gpu) for i, gpu in enumerate(assign_gpus(workers, gpus, per_gpu))]
        self.closed = False
        for slot in self.slots:
            self._spawn(slot)

    def describe(self) -> str:
        n = len(self.slots)
        workers = f"{n} worker process{'es' * (n > 1)}"
        if self.gpus:
            return f"on {workers} on GPU {', '.join(sorted({s.gpu for s in self.slots}))}"
        return f"on {workers}, {self.threads} CPU thread{'s' * (self.threads > 1)} each"

    def _spawn(self, slot: _Slot) -> None:
        ours, theirs = self.ctx.Pipe()
        slot.process = self.ctx.Process(
            target=_worker_main,
            args=(theirs, slot.gpu, self.threads, self.per_gpu),
            name=f"archsearch-worker-{slot.index}",
            daemon=True,
        )
        slot.process.start()
        theirs.close()
        slot.conn = ours

    def capacity(self) -> int:
        return len(self.slots)

    def submit(self, job: Job) -> None:
        slot = next(s for s in self.slots if s.job is None)
        if not slot.process.is_alive():  # died while idle
            self._replace(slot)
        slot.job = job
        slot.conn.send_bytes(pickle.dumps(job))

    def cancel(self, key: str) -> None:
        for slot in self.slots:
            if slot.job is not None and slot.job.key == key:
                slot.job = None
                self._replace(slot)

    def stop(self, key: str) -> None:
        """Tell the worker running ``key`` to stop at its next step; the slot takes a job at once
        (the worker reads it once it has stopped)."""
        for slot in self.slots:
            if slot.job is not None and slot.job.key == key:
                slot.job = None
                with contextlib.suppress(OSError):
                    slot.conn.send_bytes(pickle.dumps(("stop", key)))

    def wait(self, handle: Handler, timeout: float) -> None:
        busy = [s for s in self.slots if s.job is not None]
        waitables = {s.conn: s for s in busy} | {s.process.sentinel: s for s in busy}
        for ready in mp.connection.wait(list(waitables), timeout):
            slot = waitables[ready]
            if slot.job is None:
                continue  # ended or cancelled by an earlier event of this round
            if ready is slot.conn:
                self._receive(slot, handle, drain=False)  # one message each: no worker starves
            elif not slot.process.is_alive():
                self._receive(slot, handle, drain=True)  # what it sent before it died
                if slot.job is not None:
                    self._lost(slot, handle)

    def _receive(self, slot: _Slot, handle: Handler, drain: bool) -> None:
        """Handle the next message of a worker (``drain``: every message it has sent)."""
        while slot.job is not None:
            try:
                if not slot.conn.poll():
                    return
                kind, key, payload = pickle.loads(slot.conn.recv_bytes())
            except (EOFError, OSError):
                return  # the process is gone; its sentinel says so
            if key != slot.job.key:
                continue  # the last words of a trial it was told to stop
            if kind == "started":
                handle(Event("started", key, where=payload[0], device=payload[1]))
            elif kind == "epoch":
                handle(Event("epoch", key, epoch=payload[0], metrics=payload[1]))
            else:
                slot.job = None
                handle(Event("done", key, result=self._finished(slot, payload)))
            if not drain:
                return

    def _finished(self, slot: _Slot, result: TrialResult) -> TrialResult:
        """A worker's result, with what only the driver knows: whether it shared its GPU; a
        worker whose GPU failed is replaced before it gets another trial."""
        if slot.gpu is not None and self.per_gpu > 1:
            neighbours = sum(1 for s in self.slots if s is not slot and s.gpu == slot.gpu and s.job)
            result = shared_oom(result, slot.gpu, self.per_gpu, neighbours)
        if result.device_error:
            self._replace(slot)
            result.reason = f"{result.reason} (its worker process was replaced)"
        return result

    def _lost(self, slot: _Slot, handle: Handler) -> None:
        job, code, pid = slot.job, slot.process.exitcode, slot.process.pid
        how = (
            f"was killed by {signal.Signals(-code).name}" if code and code < 0 else f"exited with code {code}"
        )
        reason = f"worker process {pid} {how} while running the trial"
        if code == -signal.SIGKILL:
            reason += " (out of memory, or killed)"
        handle(Event("lost", job.key, reason=reason))  # the driver may cancel the job (and replace it)
        if slot.job is job:  # not cancelled: run it again in a new process
            self._replace(slot)
            slot.conn.send_bytes(pickle.dumps(job))

    def _replace(self, slot: _Slot) -> None:
        _stop(slot.process)
        slot.conn.close()
        self._spawn(slot)

    def close(self) -> None:
        """Stop the workers: idle ones when they read the stop, busy ones at once."""
        if self.closed:
            return
        self.closed = True
        for slot in self.slots:
            if slot.job is None and slot.process.is_alive():
                with contextlib.suppress(OSError):
                    slot.conn.send_bytes(pickle.dumps(None))
        for slot in self.slots:
            if slot.job is not None:
                _stop(slot.process)
            slot.process.join(timeout=5)
            _stop(slot.process)
            slot.conn.close()
            slot.job = None


def _stop(process: Any) -> None:
    if process.is_alive():
        process.terminate()
        process.join(timeout=5)
    if process.is_alive():
        process.kill()
        process.join()


def _worker_main(conn: Any, gpu: str | None, threads: int, per_gpu: int = 1) -> None:
    """A worker process: run the jobs the driver sends, one at a time, until told to stop (or
    until its GPU fails: the driver replaces it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the driver acts on it
    _die_with_parent()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # read when CUDA starts, which is later
        prepare_gpu(per_gpu)
    torch.set_num_threads(threads)
    parent = os.getppid()
    me = where()
    inbox: list = []  # what the driver sent while a trial ran (the next job)
    told_to_stop: set[str] = set()

    def send(kind: str, key: str, payload: Any) -> None:
        conn.send_bytes(pickle.dumps((kind, key, payload)))

    def should_stop(key: str) -> bool:
        if os.getppid() != parent:
            return True
        while conn.poll():  # a syscall per step: microseconds against milliseconds
            message = pickle.loads(conn.recv_bytes())
            if isinstance(message, tuple) and message[0] == "stop":
                told_to_stop.add(message[1])
            else:
                inbox.append(message)
        return key in told_to_stop

    while True:
        try:
            job = inbox.pop(0) if inbox else pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if job is None:
            return
        if isinstance(job, tuple):  # a stop for a trial that had ended already
            continue
        send("started", job.key, (me, device_of(job)))
        try:
            result = run_job(
                job,
                lambda epoch, metrics, key=job.key: send("epoch", key, (epoch, metrics)),
                lambda key=job.key: should_stop(key),
            )
        except KeyboardInterrupt:
            if os.getppid() != parent:
                return  # the driver is gone
            continue  # stopped (pruned): the driver has recorded it
        send("done", job.key, result)
        if result.device_error:
            return  # this process's GPU is unusable: the driver starts another


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the driver dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
