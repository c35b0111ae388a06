"""Executors without processes: a GPU worker's set-up, failures on a shared GPU."""

import pytest
import torch

from search import executor
from search.executor import gpu_share, prepare_gpu, shared_oom
from search.trial import TrialResult


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
