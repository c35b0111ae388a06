"""``archsearch retrain``: the best architectures trained again, longer, on training + validation data.

A campaign chooses architectures on its validation split; a final model uses
those images too. Retraining takes the best K finished trials (by validation
loss), trains each with its own recipe for ``epochs`` (default: twice the
trial's) on training + validation images, evaluates it once on the test set,
and logs it as a run tagged ``final`` in the campaign's experiment, beside
its trial. The test set is touched here and only here; ``export`` then
prefers the retrained model of the best trial.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models import build_model

from .campaign import load_campaign
from .data import Data
from .errors import UserError, error_line
from .results import ranked
from .suggest import trial_seed
from .tracking import TAG, Campaign, TrialRecord
from .train import amp_of, train, validate
from .trial import Outcome, cpu_state, device_name, resolve_device, seeded


@dataclass
class Final:
    trial: int
    name: str
    run_id: str
    epochs: int
    test_acc: float
    test_loss: float
    val_acc: float  # of the trial, for comparison
    seconds: float


def best_trials(campaign: Campaign, top: int) -> list[TrialRecord]:
    ok = ranked(campaign.trials())
    if not ok:
        raise UserError(f"campaign {campaign.name!r} has no finished trial yet; nothing to retrain")
    return ok[:top]


def train_and_validation(data: Data) -> Data:
    """All labelled training images in one training set; the test set kept apart."""
    if data.x_test is None or data.y_test is None:
        raise UserError(
            f"{data.name}: has no test set; retrain evaluates on one (give x_test/y_test or test/)"
        )
    empty = data.x_val[:0]
    return dataclasses.replace(
        data,
        x_train=torch.cat([data.x_train, data.x_val]),
        y_train=torch.cat([data.y_train, data.y_val]),
        x_val=empty,
        y_val=data.y_val[:0],
    )


def retrain(
    campaign: Campaign,
    *,
    top: int,
    epochs: int | None = None,
    device: str = "auto",
    cache_dir: Path,
    data_dir: Path | None = None,
    say: Any = print,
) -> list[Final]:
    """Retrain the best ``top`` trials; returns one Final per trial, best trial first."""
    chosen = best_trials(campaign, top)
    dev = resolve_device(device)
    space, data = load_campaign(campaign, cache_dir, data_dir)
    data = train_and_validation(data).to(dev)
    seed = space.search["seed"]
    finals = []
    for record in chosen:
        config = json.loads(campaign.read_text("architecture.json", record.run_id))
        config["training"]["epochs"] = epochs or 2 * config["training"]["epochs"]
        tags = {TAG + "source_run": record.run_id}
        own = trial_seed(seed, record.trial)  # the trial's: its initial weights and batch order
        run = campaign.start_trial(record.trial, 1, config, record.vals, own, device_name(dev), "final", tags)
        t0 = time.perf_counter()
        try:
            with seeded(own, dev):
                model = build_model(config["architecture"], data.input_shape, data.n_classes, seed=own)
                model = model.to(dev, memory_format=torch.channels_last)
                train(model, config["training"], data, run.log_epoch)
            test_acc, test_loss = validate(model, data.x_test, data.y_test, amp_of(dev)[0])  # once
        except KeyboardInterrupt:
            run.finish(Outcome.KILLED, "interrupted (Ctrl-C or SIGTERM)", {})
            raise
        except Exception as e:  # a failed retrain is recorded, the others go on
            run.finish(Outcome.FAILED, error_line(e), {})
            say(f"final {record.name}: failed: {e}")
            continue
        seconds = time.perf_counter() - t0
        metrics = {
            "test_acc": test_acc,
            "test_loss": test_loss,
            "train_seconds": seconds,
            "epochs_done": float(config["training"]["epochs"]),
            "images_per_second": len(data.x_train) * config["training"]["epochs"] / seconds,
        }
        run.finish(Outcome.OK, None, metrics, state_dict=cpu_state(model))
        final = Final(
            record.trial,
            record.name,
            run.run_id,
            config["training"]["epochs"],
            test_acc,
            test_loss,
            record.metrics.get("val_acc", float("nan")),
            seconds,
        )
        say(
            f"final {record.name}: {final.epochs} epochs on {len(data.x_train):,} images, "
            f"test_acc {test_acc:.4f} (its val_acc {final.val_acc:.4f}), {seconds:.1f} s"
        )
        finals.append(final)
    return finals
