"""The Dask executor: GPU trials never as threads of one worker; a worker whose GPU failed is
restarted or retired. (Whole campaigns on a real cluster: test_parallel.py.)"""

import pytest

from search import cluster


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
