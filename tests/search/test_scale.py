"""Campaigns of thousands of trials: the synthetic benchmark objective, and a 2,000-trial campaign
killed with SIGKILL and resumed, each trial ending once."""

import signal
import subprocess
from pathlib import Path

import pytest

from search.bench.scale import TRIAL_LINE, command, environment_vars
from search.bench.synthetic import synthetic_loss, synthetic_trial
from search.campaign import open_store
from search.cli import main
from search.compile import CompiledSpace
from search.data import load_data
from search.settings import resolve

SCALE = """\
name: scale
data: {dataset: digits}
architecture:
  depth: {choice: [1, 2]}
  layers:
    filters: {count: {choice: [4, 8, 16]}, size: {choice: [3, 5]}}
    activation: {choice: [relu, gelu]}
    pool:
      choice:
        - {kind: lp, order: {uniform: [1, 10]}, size: 2, stride: 2}
        - {kind: max, size: 2, stride: 2}
    norm: {choice: [batch, none]}
    padding: same
training:
  lr: {loguniform: [1e-4, 1e-1]}
  epochs: 1
search: {algo: random, trials: 2000}
"""  # smaller than bench scale's space at 28x28: its shape passes keep this test under 2 minutes


@pytest.fixture
def scale_space(tmp_path) -> Path:
    path = tmp_path / "scale.yaml"
    path.write_text(SCALE)
    return path


def test_the_synthetic_objective_is_deterministic_learnable_and_reports_its_epochs(scale_space, runs):
    from search.suggest import Search

    space = resolve(str(scale_space), ["training.epochs=3"], name="scale").space
    compiled = CompiledSpace(space)
    data = load_data("digits", cache_dir=runs / "data")
    search = Search(compiled, {**space.search, "algo": "random"})
    configs = [search.ask(t)[1] for t in range(20)]
    losses = [synthetic_loss(c) for c in configs]
    assert losses == [synthetic_loss(c) for c in configs] and len(set(losses)) == 20
    assert all(0.05 <= x <= 0.8 for x in losses)
    lr = {**configs[0], "training": {**configs[0]["training"], "lr": 3e-3}}
    far = {**configs[0], "training": {**configs[0]["training"], "lr": 1e-4}}
    assert synthetic_loss(lr) < synthetic_loss(far)  # something to learn
    epochs = []
    result = synthetic_trial(configs[0], data, seed=0, on_epoch=lambda e, m: epochs.append((e, m["val_acc"])))
    assert [e for e, _ in epochs] == [1, 2, 3] and epochs[0][1] <= epochs[-1][1]
    assert result.outcome == "ok" and result.loss == pytest.approx(losses[0]) and result.macs > 0


@pytest.mark.slow
def test_a_2000_trial_campaign_killed_past_trial_1500_resumes_and_ends_each_trial_once(scale_space, runs):
    """``archsearch run`` with two worker processes and the synthetic objective, SIGKILLed past
    trial 1,500 (no chance to clean up), then resumed: exactly 2,000 trials ended, once each."""
    env, run = environment_vars(), command("run", "--runs", str(runs), "--workers", "2")
    driver = subprocess.Popen(
        [*run, str(scale_space)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen = []
    for line in driver.stdout:
        seen.append(line)
        if TRIAL_LINE.match(line) and int(line.split("[")[1].split("/")[0]) > 1500:
            driver.send_signal(signal.SIGKILL)
            break
    driver.wait(timeout=60)
    driver.stdout.close()
    assert driver.returncode == -signal.SIGKILL, "".join(seen[-20:])

    resumed = subprocess.run(
        [*run, "--resume", "scale", "-q"], capture_output=True, text=True, env=env, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    campaign = open_store(runs, None).require("scale")
    trials = campaign.trials()
    ended = [r.trial for r in trials if r.outcome in ("ok", "invalid", "failed", "pruned")]
    assert sorted(ended) == list(range(2000))  # every trial once: none lost, none repeated
    assert not [r for r in trials if r.outcome == "running"]
    assert main(["status", "scale", "--runs", str(runs)]) == 0
    assert main(["leaderboard", "scale", "--runs", str(runs), "--top", "20"]) == 0
