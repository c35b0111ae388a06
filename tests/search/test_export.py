"""Export: the bundle of a trial, used from a fresh process with torch and onnxruntime only."""

import json
import subprocess
import sys

import numpy as np
import torch

from search.campaign import open_store
from search.cli import main
from search.data import load_data
from search.run import launch
from search.settings import resolve
from search.trial import TrialResult

BUNDLE = {
    "MODEL.md",
    "architecture.json",
    "metrics.json",
    "model.onnx",
    "model.pt",
    "preprocessing.json",
    "weights.safetensors",
}

# Runs in a fresh interpreter (-I: no project paths) that imports torch, numpy and onnxruntime only.
USE_BUNDLE = """
import json, sys
import numpy as np, onnxruntime, torch
bundle, data = sys.argv[1], np.load(sys.argv[2])
images, labels = torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])
model = torch.jit.load(f"{bundle}/model.pt").eval()
with torch.no_grad():
    torch_acc = (model(images).argmax(1) == labels).float().mean().item()
session = onnxruntime.InferenceSession(f"{bundle}/model.onnx", providers=["CPUExecutionProvider"])
logits = session.run(None, {"images": data["images"]})[0]
onnx_acc = float((logits.argmax(1) == data["labels"]).mean())
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("search", "models"))
print(json.dumps({"torchscript": torch_acc, "onnx": onnx_acc, "project_modules": loaded}))
"""


def test_the_bundle_reproduces_the_logged_accuracy_without_the_project(campaign_runs, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["export", "tiny", "--runs", str(campaign_runs), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "self-check on 144 validation images" in said
    assert {p.name for p in out.iterdir()} == BUNDLE

    metrics = json.loads((out / "metrics.json").read_text())
    campaign = open_store(campaign_runs, None).require("tiny")
    best = min((r for r in campaign.trials() if r.outcome == "ok"), key=lambda r: r.loss)
    assert metrics["run_id"] == best.run_id and metrics["trial"] == best.trial
    assert metrics["self_check"]["onnx_max_abs_diff"] <= metrics["self_check"]["tolerance"]
    prep = json.loads((out / "preprocessing.json").read_text())
    assert prep["input_shape"] == [1, 8, 8] and prep["classes"] == [str(i) for i in range(10)]

    # the validation split as plain [0, 1] pixels, as a user would feed them
    data = load_data("digits", cache_dir=campaign_runs / "data")
    mean, std = np.array(data.mean), np.array(data.std)
    pixels = data.x_val.numpy() * std[None, :, None, None] + mean[None, :, None, None]
    np.savez(tmp_path / "val.npz", images=pixels.astype(np.float32), labels=data.y_val.numpy())
    result = subprocess.run(
        [sys.executable, "-I", "-c", USE_BUNDLE, str(out), str(tmp_path / "val.npz")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    used = json.loads(result.stdout)
    assert used["project_modules"] == []
    logged = metrics["metrics"]["val_acc"]
    assert abs(used["torchscript"] - logged) <= 0.001
    assert abs(used["onnx"] - logged) <= 0.001
    assert (
        "how to load" in (out / "MODEL.md").read_text().lower()
        or "## Load it" in (out / "MODEL.md").read_text()
    )


def test_a_chosen_trial_and_force(campaign_runs, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["export", "tiny", "--runs", str(campaign_runs), "--out", str(out), "--trial", "0"]) == 0
    assert json.loads((out / "metrics.json").read_text())["trial"] == 0
    capsys.readouterr()
    # an existing bundle is not replaced without --force, and is left as it was
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["export", "tiny", "--runs", str(campaign_runs), "--out", str(out), "--trial", "1"]) == 2
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert (
        main(["export", "tiny", "--runs", str(campaign_runs), "--out", str(out), "--trial", "1", "--force"])
        == 0
    )
    assert json.loads((out / "metrics.json").read_text())["trial"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_export_errors_are_one_line_and_write_nothing(campaign_runs, tiny, tmp_path, capsys):
    def failing(config, data, **kwargs):
        return TrialResult("failed", reason="RuntimeError: x")

    settings = resolve(str(tiny), ["search.trials=1"], name="broken", runs=campaign_runs, quiet=True)
    assert launch(settings, open_store(campaign_runs, None), evaluate_fn=failing) == 0
    other = open_store(campaign_runs, None).require("broken").trials()[0].run_id
    out = tmp_path / "never"
    cases = [
        (["export", "nope"], "no campaign named 'nope'"),
        (["export", "broken"], "has no finished trial yet"),
        (["export", "tiny", "--run-id", other], "is not a trial of campaign 'tiny'"),
        (["export", "tiny", "--trial", "7"], "trial 7 of campaign 'tiny' does not exist"),
        (["export", "broken", "--trial", "0"], "ended failed; only finished trials export"),
    ]
    for args, message in cases:
        assert main([*args, "--runs", str(campaign_runs), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_registry_round_trip(campaign_runs, tmp_path, capsys, monkeypatch):
    import mlflow

    out = tmp_path / "bundle"
    args = ["export", "tiny", "--runs", str(campaign_runs), "--out", str(out), "--register", "tiny-best"]
    assert main(args) == 0
    assert "registered as models:/tiny-best/1" in capsys.readouterr().out

    uri = f"sqlite:///{(campaign_runs / 'mlflow.db').resolve()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/tiny-best/1")
    assert model.metadata.signature is not None
    data = load_data("digits", cache_dir=campaign_runs / "data")
    mean, std = np.array(data.mean), np.array(data.std)
    pixels = (data.x_val[:16].numpy() * std[None, :, None, None] + mean[None, :, None, None]).astype(
        np.float32
    )
    probabilities = model.predict(pixels)
    assert probabilities.shape == (16, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # the registered model agrees with the bundle's TorchScript model

    with torch.no_grad():
        expected = torch.jit.load(str(out / "model.pt"))(torch.from_numpy(pixels)).softmax(1).numpy()
    assert np.allclose(probabilities, expected, atol=1e-6)
    # the registration run sits in the campaign's experiment, not among its trials
    campaign = open_store(campaign_runs, None).require("tiny")
    assert len(campaign.trials()) == 2
