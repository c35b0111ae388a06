"""Export: the best (or a chosen) trial of a campaign as a self-contained bundle.

The bundle needs only torch (or onnxruntime) to use::

    model.pt              TorchScript: images in [0, 1], (N, C, H, W) -> logits (N, classes)
    model.onnx            the same graph in ONNX (opset of torch's exporter), batch size free
    weights.safetensors   the trained state_dict of the network (standardized input)
    architecture.json     the trial's config: architecture and training recipe
    metrics.json          the trial's metrics, where it came from, and the export's self-check
    preprocessing.json    input size, channels, scaling, mean and std, class names
    MODEL.md              what the model is, its layers, its metrics, how to load it

``model.pt`` and ``model.onnx`` include the standardization (``(x - mean) / std``),
so they take plain [0, 1] images. Before the bundle is moved into place, the
export checks itself: TorchScript and ONNX Runtime give the torch model's
logits on a batch of validation images within ``TOLERANCE``, with the same
predictions. Nothing is written to ``--out`` unless every step succeeds.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import build_model

from .campaign import load_campaign
from .data import Data
from .ensemble import member_runs, read_ensemble
from .errors import TrackingError, UserError
from .outcome import Outcome
from .results import ranked
from .retrain import final_data
from .space import Space
from .tracking import TAG, Campaign, TrialRecord

TOLERANCE = 1e-3  # largest allowed |logit difference| between torch, TorchScript and ONNX Runtime
CHECK_BATCH = 256  # validation images used by the self-check


class ExportError(UserError):
    """An export that cannot be made as asked."""


class Standardized(nn.Module):
    """The network behind its input standardization: [0, 1] images in, logits out."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)


@dataclass
class Exported:
    out: Path
    record: TrialRecord
    files: list[str]
    check: dict[str, float]
    seconds: float
    bytes: int
    registered: str | None = None  # "models:/NAME/VERSION"


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Errors only from these loggers (the exporter reports every op set it skips), and nothing
    printed to stdout meanwhile (onnxscript 0.6 prints the rewrite rules it applied)."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


# The MLflow model of a registered bundle, as "models from code": it needs torch and numpy only.
PYFUNC_MODEL = """\
import mlflow
import numpy as np
import torch


class ArchsearchModel(mlflow.pyfunc.PythonModel):
    \"\"\"An exported archsearch network: images in [0, 1], (N, C, H, W) -> class probabilities.\"\"\"

    def load_context(self, context):
        self.model = torch.jit.load(context.artifacts["model"]).eval()

    def predict(self, context, model_input, params=None):
        images = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            return self.model(images).softmax(dim=1).numpy()


mlflow.models.set_model(ArchsearchModel())
"""


# ---------------------------------------------------------------- which trial


def choose_trial(campaign: Campaign, trial: int | None = None, run_id: str | None = None) -> TrialRecord:
    """The run to export: a run id, a trial number, or else the latest ensemble of final models
    (:mod:`search.ensemble`) when there is one, else the best finished trial (lowest loss); a
    trial's retrained model (``final``) rather than the trial's own when there is one."""
    records = campaign.trials(params=False)
    ensembles = [r for r in campaign.trials("ensemble") if r.outcome == Outcome.OK or r.run_id == run_id]
    if run_id is None and trial is None and ensembles:
        return ensembles[-1]
    if run_id is not None:
        found = [r for r in records + campaign.trials("final") + ensembles if r.run_id == run_id]
        if not found:
            raise ExportError(
                f"run {run_id} is not a trial of campaign {campaign.name!r}; "
                f"see `archsearch leaderboard {campaign.name} --format csv` for its run ids"
            )
        chosen = found[0]
    elif trial is not None:
        found = [r for r in records if r.trial == trial and r.outcome == Outcome.OK]
        if not found:
            known = [r for r in records if r.trial == trial]
            what = f"ended {known[-1].outcome}" if known else "does not exist"
            raise ExportError(
                f"trial {trial} of campaign {campaign.name!r} {what}; only finished trials export"
            )
        chosen = found[-1]
    else:
        ok = ranked(records)  # on validation, never on the test set
        if not ok:
            raise ExportError(
                f"campaign {campaign.name!r} has no finished trial yet ({len(records)} trial runs); "
                "nothing to export"
            )
        finals = {r.trial for r in campaign.trials("final") if r.outcome == Outcome.OK}
        chosen = next((r for r in ok if r.trial in finals), ok[0])
    if run_id is None:  # a retrained model of the chosen trial, when there is one
        retrained = [
            r for r in campaign.trials("final") if r.trial == chosen.trial and r.outcome == Outcome.OK
        ]
        chosen = retrained[-1] if retrained else chosen
    if chosen.outcome != Outcome.OK:
        raise ExportError(f"run {chosen.run_id} ended {chosen.outcome}; only finished trials export")
    return chosen


# ---------------------------------------------------------------- the bundle


def _trained_on(record: TrialRecord, space: Space, data: Data, cache_dir: Path, data_dir: Path | None) -> int:
    """The training and validation images a final or ensemble run trained on, as it logged them
    (a run logged before it did so: counted again from the dataset); 0 for a trial."""
    if not record.name.startswith(("final ", "ensemble ")):
        return 0
    if "train_images" in record.metrics:
        return int(record.metrics["train_images"])
    return len(final_data(space, cache_dir, data_dir, loaded=data).x_train)


def _network(campaign: Campaign, record: TrialRecord, data: Data) -> tuple[nn.Module, dict]:
    """The run's trained network, on the CPU (an ensemble run's: its members averaged), and its
    configuration (an ensemble's: its members')."""
    try:
        if member_runs(record):
            return read_ensemble(campaign, record, data.input_shape, data.n_classes)
        config = json.loads(campaign.read_text("architecture.json", record.run_id))
        state = campaign.read_weights(record.run_id)
    except TrackingError as e:  # a missing artifact, a store that cannot be read
        raise ExportError(f"run {record.run_id}: cannot read its model ({e})") from None
    net = build_model(config["architecture"], data.input_shape, data.n_classes)
    net.load_state_dict(state)
    return net, config


def _check(model: nn.Module, scripted: Any, onnx_path: Path, batch: torch.Tensor) -> dict[str, float]:
    import onnxruntime

    with torch.no_grad():
        reference = model(batch)
        from_script = scripted(batch)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    from_onnx = torch.from_numpy(session.run(None, {name: batch.numpy()})[0])
    check = {
        "batch": len(batch),
        "tolerance": TOLERANCE,
        "torchscript_max_abs_diff": float((from_script - reference).abs().max()),
        "onnx_max_abs_diff": float((from_onnx - reference).abs().max()),
        "torchscript_same_predictions": bool((from_script.argmax(1) == reference.argmax(1)).all()),
        "onnx_same_predictions": bool((from_onnx.argmax(1) == reference.argmax(1)).all()),
    }
    for what in ("torchscript", "onnx"):
        if check[f"{what}_max_abs_diff"] > TOLERANCE or not check[f"{what}_same_predictions"]:
            raise ExportError(
                f"self-check failed: {what} differs from the torch model by "
                f"{check[f'{what}_max_abs_diff']:.2e} (tolerance {TOLERANCE:g}); nothing was written"
            )
    return check


def _model_card(
    campaign: Campaign, record: TrialRecord, config: dict, data: Data, metrics: dict, whole: int
) -> str:
    """MODEL.md; ``whole``: the training and validation images a retrained model trained on (the
    whole training set, which a campaign's ``data.subset`` does not limit)."""
    from models import plan_model

    c, h, w = data.input_shape
    members = config.get("members")  # an ensemble's
    nets = [(m["name"], m["config"]) for m in members] if members else [(record.name, config)]
    plans = [plan_model(n["architecture"], data.input_shape, data.n_classes) for _, n in nets]
    shown = {
        "test_acc": "test accuracy (retrained on training + validation images)",
        "test_loss": "test loss",
        "best_member_test_acc": "test accuracy of its best model alone",
        "val_acc": "validation accuracy",
        "val_loss": "validation loss",
    }
    if members:
        title = f"{campaign.name}: {record.name}"
        what = (
            f"The mean of the class probabilities of {len(members)} models of the archsearch campaign "
            f"`{campaign.name}` (MLflow run `{record.run_id}`): its best trials by validation loss,\n"
            f"each retrained on all {whole:,} training and validation images of `{data.name}`"
        )
        output = "the log of the mean probability of each class (its softmax is the mean probabilities)"
    else:
        title = f"{campaign.name} trial {record.trial}: {record.name.partition(' ')[2]}"
        if record.name.startswith("final "):
            trained = f"retrained on all {whole:,} training and validation images of `{data.name}`"
        else:
            trained = f"trained on {len(data.y_train):,} training images of `{data.name}`"
        what = (
            f"Trial {record.trial} of the archsearch campaign `{campaign.name}` "
            f"(MLflow run `{record.run_id}`),\n{trained}"
        )
        output = "one logit per class"
    rows = "".join(f"| {label} | {metrics[key]:.4f} |\n" for key, label in shown.items() if key in metrics)
    layers = "".join(
        (f"\n### {name}\n" if members else "")
        + f"\n```\n{plan.table()}\n```\n\nTraining recipe:\n\n```json\n"
        + json.dumps(net["training"], indent=2, sort_keys=True)
        + "\n```\n"
        for (name, net), plan in zip(nets, plans, strict=True)
    )
    return f"""# {title}

{what}, selected on its validation split
({len(data.y_val):,} images, fingerprint `{data.fingerprint}`).

| metric | value |
|---|---|
{rows}| parameters | {sum(p.params for p in plans):,} |
| multiply-accumulates per image | {sum(p.macs for p in plans):,} |

## Input

Images of {c}x{h}x{w} (channels x height x width), pixel values scaled to [0, 1]
(uint8 / 255). `model.pt` and `model.onnx` standardize them themselves with
mean {list(data.mean)} and std {list(data.std)}; `weights.safetensors` holds the
bare network, which expects standardized input. Output: {output},
classes {list(data.classes)}. See `preprocessing.json`.

## Load it

```python
import torch
model = torch.jit.load("model.pt").eval()
probabilities = model(images).softmax(dim=1)  # images: float32 (N, {c}, {h}, {w}) in [0, 1]
```

or with ONNX Runtime:
`onnxruntime.InferenceSession("model.onnx").run(None, {{"images": images_numpy}})[0]`.

## {"Members" if members else "Layers"}
{layers}"""


def export_bundle(
    campaign: Campaign,
    out: Path,
    *,
    trial: int | None = None,
    run_id: str | None = None,
    force: bool = False,
    cache_dir: Path,
    data_dir: Path | None = None,
    register_as: str | None = None,
) -> Exported:
    """Write the bundle of one trial to ``out`` (refused if it holds files, unless ``force``)."""
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ExportError(
            f"{out} exists and is not empty; choose another --out or pass --force to replace it"
        )
    record = choose_trial(campaign, trial, run_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp_name:
        tmp = Path(tmp_name)
        bundle = tmp / "bundle"
        bundle.mkdir()
        space, data = load_campaign(campaign, cache_dir, data_dir)
        net, config = _network(campaign, record, data)
        model = Standardized(net, data.mean, data.std).eval()
        batch = (data.x_val[:CHECK_BATCH] * model.std + model.mean).contiguous()  # back to [0, 1] pixels

        check = _write_models(net, model, batch, bundle)
        whole = _trained_on(record, space, data, cache_dir, data_dir)
        _write_records(campaign, record, config, data, check, bundle, whole)

        # into place: nothing under `out` until every file is written and checked
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        bundle.rename(out)
    out.chmod(0o755)  # made as a private temporary folder
    for path in out.iterdir():
        path.chmod(0o644)
    files = sorted(p.name for p in out.iterdir())
    size = sum(p.stat().st_size for p in out.iterdir())
    campaign.client.set_tag(record.run_id, TAG + "exported", str(out.resolve()))
    registered = register(campaign, record, out, register_as, batch[:4]) if register_as else None
    return Exported(out, record, files, check, time.perf_counter() - t0, size, registered)


def _write_models(net: nn.Module, model: Standardized, batch: torch.Tensor, bundle: Path) -> dict[str, float]:
    """weights.safetensors, model.pt (TorchScript) and model.onnx, then their self-check."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(bundle / "weights.safetensors"))
    with warnings.catch_warnings(), _quiet("torch.onnx", "torch.export", "onnxscript"):
        warnings.simplefilter("ignore")  # TorchScript's and the exporter's deprecation notices
        scripted = torch.jit.trace(model, batch[:2])
        scripted.save(str(bundle / "model.pt"))
        batch_dim = torch.export.Dim("batch", min=1)
        torch.onnx.export(
            model,
            (batch[:2],),
            str(bundle / "model.onnx"),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes={"images": {0: batch_dim}},
            dynamo=True,
            external_data=False,  # one file, weights inside
            verbose=False,
        )
        reloaded = torch.jit.load(str(bundle / "model.pt"))
    return _check(model, reloaded, bundle / "model.onnx", batch)


def _write_records(
    campaign: Campaign, record: TrialRecord, config: dict, data: Data, check: dict, bundle: Path, whole: int
) -> None:
    """architecture.json, metrics.json, preprocessing.json and MODEL.md (``whole``: see
    :func:`_model_card`)."""
    metrics = dict(record.metrics)
    c, h, w = data.input_shape
    (bundle / "architecture.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    where = {"campaign": campaign.name, "trial": record.trial, "run_id": record.run_id, "name": record.name}
    summary = {**where, "metrics": metrics, "dataset": data.summary(), "self_check": check}
    (bundle / "metrics.json").write_text(json.dumps(summary, indent=2))
    preprocessing = {
        "input_shape": [c, h, w],
        "channels": "grey" if c == 1 else "RGB",
        "scale": "pixel values / 255 for 8-bit images: float32 in [0, 1]",
        "resize": f"to {h}x{w} (bilinear) if the images are of another size",
        "mean": list(data.mean),
        "std": list(data.std),
        "standardization": "inside model.pt and model.onnx; weights.safetensors expects (x - mean) / std",
        "layout": "NCHW",
        "classes": list(data.classes),
    }
    (bundle / "preprocessing.json").write_text(json.dumps(preprocessing, indent=2))
    (bundle / "MODEL.md").write_text(_model_card(campaign, record, config, data, metrics, whole))


def register(campaign: Campaign, record: TrialRecord, bundle: Path, name: str, example: torch.Tensor) -> str:
    """Log the bundle's TorchScript model as an MLflow pyfunc model and register it as ``name``.

    The model is logged in a run of the campaign's experiment (nested under the campaign
    run), with a signature and an input example; ``mlflow.pyfunc.load_model("models:/NAME/V")``
    then predicts class probabilities on a NumPy batch of [0, 1] images.
    """
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(campaign.store.uri)
    mlflow.set_registry_uri(campaign.store.uri)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice
        probabilities = torch.jit.load(str(bundle / "model.pt"))(example).softmax(dim=1).numpy()
    signature = infer_signature(example.numpy(), probabilities)
    tags = {"mlflow.parentRunId": campaign.run_id, TAG + "kind": "export", TAG + "trial": str(record.trial)}
    with tempfile.TemporaryDirectory() as tmp, _quiet("mlflow"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's advice on type hints, TorchScript's deprecation
        code = Path(tmp) / "archsearch_model.py"
        code.write_text(PYFUNC_MODEL)
        with mlflow.start_run(
            experiment_id=campaign.experiment_id, run_name=f"registered {record.name}", tags=tags
        ):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                artifacts={"model": str(bundle / "model.pt")},
                signature=signature,
                input_example=example.numpy(),
                registered_model_name=name,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "mlflow"],
            )
    return f"models:/{name}/{info.registered_model_version}"
