"""Executors without processes: a GPU worker's set-up, shared-GPU failures, device errors."""

import pytest
import torch

from search import cluster, executor
from search.executor import gpu_share, prepare_gpu, shared_oom
from search.trial import TrialResult, failures, is_device_error, release_memory


@pytest.mark.parametrize(("per_gpu", "share"), [(1, None), (2, 0.475), (4, 0.2375)])
def test_a_packed_worker_takes_its_share_of_the_gpu_and_the_expandable_allocator(monkeypatch, per_gpu, share):
    calls = []
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: calls.append((f, d)))
    prepare_gpu(per_gpu)
    assert executor.os.environ["PYTORCH_ALLOC_CONF"] == "expandable_segments:True"
    assert calls == ([] if share is None else [(pytest.approx(share), 0)])
    if per_gpu > 1:  # the shares leave room for the CUDA contexts
        assert gpu_share(per_gpu) * per_gpu <= 1 - executor.GPU_RESERVE + 1e-12


def test_an_allocator_the_user_chose_is_kept(monkeypatch):
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "backend:cudaMallocAsync")
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    prepare_gpu(2)
    assert "PYTORCH_ALLOC_CONF" not in executor.os.environ


def test_an_out_of_memory_on_a_shared_gpu_says_so():
    oom = TrialResult("failed", reason="out of memory: CUDA out of memory. Tried to allocate 2.00 GiB")
    said = shared_oom(oom, "0", 4, 3).reason
    assert said == (
        "out of memory in its share of GPU 0 (24%, 4 trials packed), while 3 other trials ran there: "
        "CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    other = TrialResult("failed", reason="diverged: the training loss became nan in epoch 2")
    assert shared_oom(other, "0", 4, 3).reason == "diverged: the training loss became nan in epoch 2"


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
        (RuntimeError("CUDA error: device-side assert triggered"), True),
        (getattr(torch, "AcceleratorError", RuntimeError)("CUDA error: unspecified launch failure"), True),
        (RuntimeError("CUDA error: out of memory"), False),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("CUDA error: not a runtime error"), False),
    ],
)
def test_cuda_errors_that_poison_the_process_are_told_apart(error, fatal):
    assert is_device_error(error) is fatal
    result = TrialResult("ok")
    with failures(result):
        raise error
    assert result.outcome == "failed" and result.device_error is fatal


def test_releasing_memory_never_raises_after_a_cuda_error(monkeypatch):
    def poisoned():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "empty_cache", poisoned)
    release_memory(torch.device("cuda"))  # the failure is recorded already; cleanup is best effort


class FakeClient:
    def __init__(self, workers):
        self.workers, self.closed, self.restarted, self.retired = workers, False, [], []

    def scheduler_info(self):
        return {"workers": self.workers}

    def close(self, timeout=None):
        self.closed = True

    def restart_workers(self, addresses, timeout=None):
        if "nonanny" in addresses[0]:
            raise RuntimeError("no nanny")
        self.restarted += addresses

    def retire_workers(self, addresses, close_workers=True):
        self.retired += addresses


def _cluster(workers, gpu):
    c = cluster.Cluster.__new__(cluster.Cluster)
    c.client, c.resources = FakeClient(workers), {"GPU": gpu} if gpu else {}
    c.warned, c.address_of = set(), {}
    return c


def test_gpu_trials_as_threads_of_one_dask_worker_are_found():
    two_threads = {"tcp://a:1": {"nthreads": 2, "resources": {"GPU": 1}}}
    one_each = {f"tcp://a:{i}": {"nthreads": 1, "resources": {"GPU": 0.5}} for i in (1, 2)}
    assert _cluster(two_threads, 0.5)._threaded_gpu_workers() == ("tcp://a:1", 2)
    assert _cluster(one_each, 0.5)._threaded_gpu_workers() is None
    assert _cluster(two_threads, 0)._threaded_gpu_workers() is None  # a CPU campaign asks no GPU
    c = _cluster(two_threads, 0.5)
    c._threaded_gpu_workers()
    assert c._threaded_gpu_workers() is None  # said once per worker


def test_a_dask_worker_whose_gpu_failed_is_restarted_or_retired():
    c = _cluster({}, 1)
    assert c._restart("tcp://h:1") == "its Dask worker tcp://h:1 was restarted"
    assert c.client.restarted == ["tcp://h:1"]
    assert "has no nanny to restart it, so it was retired" in c._restart("tcp://nonanny:2")
    assert c.client.retired == ["tcp://nonanny:2"]


def test_a_gpu_campaign_refuses_a_dask_worker_that_would_run_trials_as_threads(monkeypatch):
    import distributed

    from search.errors import UserError

    made = []

    def client(address, **kwargs):
        made.append(FakeClient({"tcp://gpu-host:4000": {"nthreads": 2, "resources": {"GPU": 1}}}))
        return made[-1]

    monkeypatch.setattr(distributed, "Client", client)
    with pytest.raises(UserError, match=r"tcp://gpu-host:4000 runs 2 threads with a GPU resource") as e:
        cluster.Cluster("tcp://s:8786", gpu=0.5)
    assert "two workers with `--nthreads 1 --resources GPU=0.5`" in str(e.value)
    assert made[0].closed
