"""The benchmarks' harness: nvidia-smi's samples, with and without nvidia-smi."""

import os
import time

from search.bench.harness import GpuSampler, parse_gpu_query


def test_parse_gpu_query():
    text = "37, 1024\n 100 , 80000 \n"
    assert parse_gpu_query(text) == [(37.0, 1024.0), (100.0, 80000.0)]
    assert parse_gpu_query("[N/A], 512\n") == [(None, 512.0)]
    # a header, nvidia-smi's complaint, blank lines: not samples
    junk = "utilization.gpu [%], memory.used [MiB]\nNVIDIA-SMI has failed because it couldn't communicate\n\n"
    assert parse_gpu_query(junk) == []


def fake_nvidia_smi(folder, script):
    path = folder / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_gpu_sampler_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nvidia-smi
    with GpuSampler(every=0.01) as sampler:
        time.sleep(0.05)
    assert sampler.samples == [] and "not found" in sampler.error
    summary = sampler.summary()
    assert summary["samples"] == 0
    assert summary["utilization_mean"] is summary["utilization_max"] is summary["memory_peak_mib"] is None


def test_gpu_sampler_samples_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, 'echo "42, 2048"\necho "7, 10"\n')  # two GPUs; -i picks one
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    sampler = GpuSampler(gpu="0", every=0.02)
    assert sampler.command[-2:] == ["-i", "0"]
    with sampler:
        deadline = time.monotonic() + 10
        while len(sampler.samples) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    n = len(sampler.samples)
    time.sleep(0.1)
    assert len(sampler.samples) == n >= 3  # stopped with the block
    assert {(u, m) for _, u, m in sampler.samples} == {(42.0, 2048.0)}
    summary = sampler.summary()
    assert summary["utilization_mean"] == summary["utilization_max"] == 42.0
    assert summary["memory_peak_mib"] == 2048.0 and summary["sampler_error"] is None


def test_gpu_sampler_stops_when_nvidia_smi_fails(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed because it couldn\'t communicate"\nexit 9\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    with GpuSampler(every=0.01) as sampler:
        time.sleep(0.05)
    assert sampler.samples == []
    assert "code 9" in sampler.error and "NVIDIA-SMI has failed" in sampler.error
