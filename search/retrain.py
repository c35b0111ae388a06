"""The best architectures trained again, longer, on training + validation data: ``archsearch
retrain`` and a campaign's final stage (``search.final``).

A campaign chooses architectures on its validation split; a final model uses
those images too, and the whole training set (``data.subset``, which makes trials
cheap, does not apply). Retraining takes the best K finished trials (by validation
loss), trains each with its own recipe for more epochs on training + validation
images, evaluates it once on the test set, and logs it as a run tagged ``final``
in the campaign's experiment, beside its trial. The test set is touched here and
only here; ``export`` then prefers the retrained model of the best trial.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models import build_model

from .campaign import load_campaign, space_data
from .data import Data
from .ensemble import Averaged, ensemble_stage
from .errors import UserError
from .outcome import Outcome
from .results import ranked
from .space import Space
from .suggest import trial_seed
from .text import plural
from .tracking import TAG, Campaign, TrialRecord
from .train import amp_of, step_seconds, steps_per_epoch, train, validate
from .trial import cpu_state, device_name, resolve_device, seeded

SPEED_EPOCHS = 5  # a final training's recent epochs that plan the rest


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


def final_config(campaign: Campaign, record: TrialRecord, space: Space) -> dict:
    """A trial's configuration as its final model trains: its recipe with the settings of
    ``search.final.training`` in place of its own (augmentation's one by one)."""
    config = json.loads(campaign.read_text("architecture.json", record.run_id))
    given = space.search["final"].get("training") or {}
    recipe = config["training"]
    for key, value in given.items():
        recipe[key] = {**recipe.get(key, {}), **value} if key == "augmentation" else value
    return config


def best_trials(campaign: Campaign, top: int) -> list[TrialRecord]:
    ok = ranked(campaign.trials(params=False))
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
    ensemble: bool = False,
) -> tuple[list[Final], Averaged | None]:
    """Retrain the best ``top`` trials: one Final per trial, best trial first, and with
    ``ensemble`` their models averaged and tested (:func:`search.ensemble.ensemble_stage`)."""
    chosen = best_trials(campaign, top)
    dev = resolve_device(device)
    space, data = load_campaign(campaign, cache_dir, data_dir)
    data = final_data(space, cache_dir, data_dir, loaded=data).to(dev)
    finals = []
    for record in chosen:
        config = final_config(campaign, record, space)
        config["training"]["epochs"] = epochs or 2 * config["training"]["epochs"]
        final = train_final(campaign, record, config, data, dev, space.search["seed"], say)
        if final is not None:
            finals.append(final)
    return finals, ensemble_stage(campaign, finals, data, dev, say) if ensemble else None


def final_data(space: Space, cache_dir: Path, data_dir: Path | None, loaded: Data | None = None) -> Data:
    """The whole training set of a space's dataset (``data.subset`` does not apply: a final model
    is trained at full fidelity), its validation images included; the test set kept apart.
    ``loaded``: the space's data as its campaign split it, used when it is the whole set already."""
    if loaded is None or space.data.get("subset") is not None:
        whole = dataclasses.replace(space, data={**space.data, "subset": None})
        loaded = space_data(whole, cache_dir, data_dir)
    return train_and_validation(loaded)


def train_final(
    campaign: Campaign,
    record: TrialRecord,
    config: dict,
    data: Data,
    dev: torch.device,
    seed: int,
    say: Any,
    should_stop: Callable[[], bool] | None = None,
    replan: Callable[[list[float]], int] | None = None,
) -> Final | None:
    """Train one trial's configuration on ``data`` (training + validation images), test it once,
    log it as a ``final`` run; None when it failed (recorded, the others go on). ``replan``: the
    epochs planned again after each one from their seconds (:func:`search.train.train`); the
    run's ``training.epochs`` is logged once it trained them."""
    tags = {TAG + "source_run": record.run_id}
    own = trial_seed(seed, record.trial)  # the trial's: its initial weights and batch order
    later = ("training.epochs",) if replan is not None else ()
    run = campaign.start_trial(
        record.trial, 1, config, record.vals, own, device_name(dev), "final", tags, later=later
    )
    t0 = time.perf_counter()

    def trained() -> tuple[torch.nn.Module, float, float]:
        with seeded(own, dev):
            model = build_model(config["architecture"], data.input_shape, data.n_classes, seed=own)
            model = model.to(dev, memory_format=torch.channels_last)
            history = train(model, config["training"], data, run.log_epoch, should_stop, replan=replan)
        if replan is not None:
            config["training"]["epochs"] = len(history)
            run.log_param("training.epochs", len(history))
        return model, *validate(model, data.x_test, data.y_test, amp_of(dev)[0])  # tested once

    done, error = run.recording(trained)
    if error is not None:
        say(f"final {record.name}: failed: {error}")
        return None
    model, test_acc, test_loss = done
    seconds, epochs = time.perf_counter() - t0, config["training"]["epochs"]
    metrics = {
        "test_acc": test_acc,
        "test_loss": test_loss,
        "train_seconds": seconds,
        "epochs_done": float(epochs),
        "images_per_second": len(data.x_train) * epochs / seconds,
        "train_images": float(len(data.x_train)),  # training + validation images: what export says
    }
    run.finish(Outcome.OK, None, metrics, state_dict=cpu_state(model))
    val_acc = record.metrics.get("val_acc", float("nan"))
    final = Final(record.trial, record.name, run.run_id, epochs, test_acc, test_loss, val_acc, seconds)
    say(
        f"final {record.name}: {plural(epochs, 'epoch')} on {len(data.x_train):,} images, "
        f"test_acc {test_acc:.4f} (its val_acc {val_acc:.4f}), {seconds:.1f} s"
    )
    return final


# ---------------------------------------------------------------- the final stage of a campaign


def final_stage(
    campaign: Campaign,
    space: Space,
    data: Data,
    dev: torch.device,
    seconds_left: float | None,
    say: Any = print,
    should_stop: Callable[[], bool] | None = None,
) -> list[Final]:
    """``search.final``: once the search ends, its best ``top`` trials trained on ``data`` (from
    :func:`final_data`) and tested once. A trial whose final run ended OK is not trained again
    (a resumed campaign); one killed, or left RUNNING by a driver that died, is, for the epochs
    it was given (a fixed number; one filling the time is planned again). Epochs:
    ``final.epochs``, else as many as fit in ``seconds_left`` (shared by the trials still to
    train; planned from training steps timed on ``data``, then again after each epoch), else
    twice the trial's."""
    settings = space.search["final"]
    ok = ranked(campaign.trials(params=False))[: settings["top"]]
    finals = campaign.trials("final")
    for r in finals:
        if r.outcome == Outcome.RUNNING:
            campaign.mark_killed(r, "the driver stopped while this final training ran")
    done = {r.trial: r for r in finals if r.outcome == Outcome.OK}
    # a final training that did not end (a resume): its fixed epochs again (one that filled the
    # time logs them when it ends: it is planned again, in the time this run has)
    begun = {r.trial: int(r.params["training.epochs"]) for r in finals if "training.epochs" in r.params}
    todo = [r for r in ok if r.trial not in done]
    out = [_logged(done[r.trial]) for r in ok if r.trial in done]
    for f in out:
        say(f"final {f.name}: trained before this run, kept (test_acc {f.test_acc:.4f})")
    # each final model passes over the test set once alone and, averaged, once in the ensemble
    passes = 2 if settings["ensemble"] else 1
    t0 = time.monotonic()
    for i, record in enumerate(todo):
        config = final_config(campaign, record, space)
        epochs, replan = begun.get(record.trial), None
        if epochs is None:
            fill = settings["epochs"] is None and seconds_left is not None
            step = measured_step(config, data, dev) if fill else None  # its seconds count too
            left = None if seconds_left is None else seconds_left - (time.monotonic() - t0)
            epochs = final_epochs(settings, config, data, left, len(todo) - i, step, passes)
            if fill:  # its share of the time, planned again after each epoch
                test = passes * testing_seconds(step, data, config["training"]["batch_size"])
                replan = filling(time.monotonic() + left / (len(todo) - i), test)
        config["training"]["epochs"] = epochs
        final = train_final(
            campaign, record, config, data, dev, space.search["seed"], say, should_stop, replan
        )
        if final is not None:
            out.append(final)
    return sorted(out, key=lambda f: [r.trial for r in ok].index(f.trial))


def final_epochs(
    settings: dict,
    config: dict,
    data: Data,
    seconds: float | None,
    trials: int,
    step: float | None,
    passes: int = 1,
) -> int:
    """Epochs of one final training on ``data``: ``final.epochs``; else those that fit in its
    share of ``seconds`` (split evenly over the ``trials`` still to train, less ``passes`` tests)
    at ``step`` seconds per training step (:func:`measured_step`); at least one; else (no time
    budget) twice the trial's."""
    if settings["epochs"] is not None:
        return int(settings["epochs"])
    if seconds is None or not step:
        return 2 * config["training"]["epochs"]
    bs = config["training"]["batch_size"]
    test = passes * testing_seconds(step, data, bs)
    return max(1, int((seconds / trials - test) / (step * steps_per_epoch(len(data.x_train), bs))))


def filling(end: float, test: float) -> Callable[[list[float]], int]:
    """The epochs in all, after epochs of these seconds, that end by ``end`` (on
    ``time.monotonic``'s clock) with ``test`` seconds left for the test: at the speed of the last
    ``SPEED_EPOCHS`` epochs but the first (its warm-up makes it slower), or of the first alone."""

    def epochs(seconds: list[float]) -> int:
        recent = seconds[1:][-SPEED_EPOCHS:] or seconds
        return len(seconds) + int(max(0.0, end - time.monotonic() - test) / (sum(recent) / len(recent)))

    return epochs


def testing_seconds(step: float, data: Data, batch_size: int) -> float:
    """The test set's evaluation, predicted from a training step's seconds (forward passes only)."""
    return step * len(data.x_test if data.x_test is not None else ()) / batch_size / 3


def measured_step(config: dict, data: Data, dev: torch.device) -> float:
    """Seconds of one training step of a configuration on the final's images, measured on a
    model thrown away after (a trial's speed on fewer images, or in a worker beside others,
    can be far from it)."""
    model = build_model(config["architecture"], data.input_shape, data.n_classes)
    return step_seconds(model.to(dev, memory_format=torch.channels_last), config["training"], data)


def _logged(record: TrialRecord) -> Final:
    """A final run already logged, as a Final."""
    m = record.metrics
    return Final(
        record.trial,
        record.name.removeprefix("final "),
        record.run_id,
        int(m.get("epochs_done", 0)),
        m.get("test_acc", float("nan")),
        m.get("test_loss", float("nan")),
        float("nan"),
        m.get("train_seconds", 0.0),
    )
