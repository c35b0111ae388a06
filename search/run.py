"""``archsearch run``: open (or create) a campaign, load its data, run the driver, end cleanly.

A campaign is named; its name is the MLflow experiment's. Running a name
that exists resumes it, provided the space and settings are the same (only
the run limits of ``settings.RUN_LIMITS`` and where trials run may change).
Once the search ends, the final stage (``search.final``) trains the best
trials on all training images; a campaign resumed in that stage finishes it
without searching more. Ctrl-C or SIGTERM ends the current trial (or final
training) as KILLED, marks the campaign KILLED, says how to resume, and exits
with code 130.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .campaign import runs_flag, space_data, stored_settings
from .compile import CompiledSpace, OutsideSpace, dotted
from .cost import accuracy_line
from .data import Data
from .driver import Interrupts, Loop
from .ensemble import Averaged, ensemble_stage
from .errors import TrackingError, UserError
from .evaluate import evaluate
from .executor import DataSpec, Executor, Inline, Job, Processes, visible_gpus, worker_limit
from .outcome import counts_text, outcome_counts
from .progress import Progress
from .results import ranked
from .retrain import Final, final_data, final_stage
from .settings import CHANGEABLE, Settings, differences, identity
from .space import SpaceError, read_yaml
from .suggest import trial_seed
from .text import duration, plural
from .tracking import TAG, Campaign, Store
from .trial import DeviceFailed, device_name, planned, resolve_device


def launch(
    settings: Settings, store: Store, evaluate_fn: Any = evaluate, started: float | None = None
) -> int:
    """Run (or resume) the campaign of ``settings``; returns the exit code. ``started``: when the
    command began, on ``time.monotonic``'s clock (default now), from which the time budget and
    the campaign's duration count: loading the data is part of them."""
    started = time.monotonic() if started is None else started
    space = settings.space
    campaign = store.find(settings.name)
    if campaign is not None:
        check_same(campaign, settings)
    # before creating anything: a missing dataset leaves no empty campaign
    data = space_data(space, settings.cache_dir, settings.data_dir)
    compiled = CompiledSpace(space)
    points = given_points(settings, store, compiled)
    final = final_set(settings, data)  # before the search: a dataset without a test set fails now
    interrupts = Interrupts()
    executor, device_tag, job_device = make_executor(settings, data, interrupts)
    progress = Progress(settings.quiet, parallel=executor.capacity())
    campaign, verb = open_campaign(store, campaign, settings, data, executor)

    status = "FAILED"
    resume = f"archsearch run --resume {settings.name}{runs_flag(settings.runs)}"
    try:
        campaign.set_tags(campaign_tags(space.search))
        if not settings.quiet:
            print(first_line(settings, verb, data, executor, store), flush=True)
        loop = Loop(
            campaign,
            compiled,
            executor,
            space.search,
            make_job=job_maker(settings, data, job_device, evaluate_fn),
            device_tag=device_tag,
            progress=progress,
            interrupts=interrupts,
            points=points,
            plan=lambda config: planned(config["architecture"], data, space.constraints),
            plots=lambda: draw_plots(campaign),
            images=len(data.x_train),
            final_images=len(final.x_train) if final is not None else 0,
            classes=data.n_classes,
            started=started,
        )
        interrupts.install()
        if final is not None and campaign.run().data.tags.get(f"{TAG}stage") == "final":
            state, why = loop.state, "its search had ended; its final stage resumed"  # nothing repeated
        else:
            state, why = loop.run()
        executor.close()  # the workers and their memory go before the final stage trains
        finals, averaged = (
            run_final(settings, campaign, loop, final, interrupts) if final is not None else ([], None)
        )
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        progress.finish(f"interrupted: the current trials are marked KILLED; resume with `{resume}`")
        return 130
    except DeviceFailed as e:  # the trial is recorded; a new process gets a working GPU
        status = "KILLED"
        raise UserError(f"{e}; the campaign stopped: resume it with `{resume}`") from None
    finally:
        interrupts.restore()
        executor.close()
        try:
            campaign.release(status)
        except TrackingError:
            if status != "FAILED":  # else the error that stopped the campaign says it already
                raise
    progress.finish(last_lines(settings, store, state, why, time.monotonic() - started, finals, averaged))
    return 0


def campaign_tags(search: dict) -> dict[str, Any]:
    """The campaign run's tags of its search settings (the nested blocks are params)."""
    out = {f"{TAG}{k}": v for k, v in search.items() if k not in ("tpe", "pruning", "final", "fidelity")}
    out.update({f"{TAG}final.{k}": v for k, v in search["final"].items()})
    return out


def final_set(settings: Settings, data: Data) -> Data | None:
    """The images of the final stage (None: ``search.final.top`` is 0): the whole training set,
    validation images included."""
    space = settings.space
    if not space.search["final"]["top"]:
        return None
    return final_data(space, settings.cache_dir, settings.data_dir, loaded=data)


def run_final(
    settings: Settings, campaign: Campaign, loop: Loop, data: Data, interrupts: Interrupts
) -> tuple[list[Final], Averaged | None]:
    """The final stage: the best trials trained on the whole training set, in this process (on
    --device's device, a Dask campaign's too), with the time the budget has left; then, with
    ``search.final.ensemble``, their final models averaged and tested."""
    space = settings.space
    if loop.state.best is None:
        return [], None
    dev = resolve_device(settings.device)
    data = data.to(dev)
    campaign.set_tags({f"{TAG}stage": "final"})  # a resume finishes this stage, and searches no more
    budget = space.search["time_budget"]
    left = None if budget is None else budget - (loop.clock() - loop.started)
    say = (lambda line: None) if settings.quiet else (lambda line: print(line, flush=True))
    if not settings.quiet:
        top = space.search["final"]["top"]
        room = f", {duration(max(0.0, left))} left" if left is not None else ""
        recipe = ", ".join(
            f"{k}={json.dumps(v)}" for k, v in dotted(space.search["final"]["training"], "training").items()
        )
        recipe = f", with {recipe}" if recipe else ""
        print(
            f"final stage: the best {top} trained on {len(data.x_train):,} images{recipe}{room}", flush=True
        )
    finals = final_stage(campaign, space, data, dev, left, say, interrupts.should_stop)
    averaged = ensemble_stage(campaign, finals, data, dev, say) if space.search["final"]["ensemble"] else None
    return finals, averaged


def check_same(campaign: Campaign, settings: Settings) -> None:
    """Refuse to run an existing campaign with other settings than its own (but its run limits)."""
    changed = differences(identity(stored_settings(campaign)["resolved"]), settings.identity())
    if changed:
        raise UserError(
            f"campaign {settings.name!r} already exists with other settings ({'; '.join(changed[:3])}); "
            f"resume it with `archsearch run --resume {settings.name}` or choose another --name"
        )


def open_campaign(
    store: Store, campaign: Campaign | None, settings: Settings, data: Data, executor: Executor
) -> tuple[Campaign, str]:
    """The campaign, created when new, and held by this driver (its lock); "started" or "resumed"."""
    try:
        verb = "resumed"
        if campaign is None:
            campaign = store.create(settings.name, _params(settings, data), _files(settings, data), tags={})
            verb = "started"
        campaign.acquire()
        campaign.write_behind()  # the next trial starts without waiting for the store
    except BaseException:
        executor.close()
        raise
    return campaign, verb


def job_maker(settings: Settings, data: Data, device: str, evaluate_fn: Any) -> Callable[..., Job]:
    """What the loop hands the executor for a trial: its config, seed, limits and how to load the
    data (with the split's fingerprint, which a worker checks); ``images``: the training images of
    a multi-fidelity rung (None: all)."""
    space = settings.space
    spec = DataSpec(
        dataset=space.data["dataset"],
        options={k: v for k, v in space.data.items() if k != "dataset"},
        cache_dir=str(Path(settings.cache_dir).resolve()),
        data_dir=str(Path(settings.data_dir).resolve()) if settings.data_dir else None,
        fingerprint=data.fingerprint,
    )

    def make_job(trial: int, config: dict, images: int | None = None) -> Job:
        seed = trial_seed(space.search["seed"], trial)
        return Job(
            str(trial),
            config,
            seed,
            space.constraints,
            spec,
            device,
            settings.threads,
            evaluate_fn,
            timeout=space.search["trial_timeout"],
            images=images,
        )

    return make_job


def first_line(settings: Settings, verb: str, data: Data, executor: Executor, store: Store) -> str:
    search, summary = settings.space.search, data.summary()
    return (
        f"campaign {settings.name} {verb}: {summary['name']} ({summary['n_train']:,} train / "
        f"{summary['n_val']:,} validation images), {search['algo']} search, seed {search['seed']}, "
        f"{search['trials']} trials {executor.describe()}; tracking: {store.where()}"
    )


def last_lines(
    settings: Settings,
    store: Store,
    state: Any,
    why: str,
    seconds: float,
    finals: Sequence[Final] = (),
    averaged: Averaged | None = None,
) -> str:
    """The summary: why it stopped, the trials by outcome, the time and compute, the best, its
    final test accuracy, how well trial times were predicted, where the results are."""
    counts = counts_text(outcome_counts(state.ended.values()))
    lines = [
        f"campaign {settings.name}: {why} ({counts or 'none'}) in {duration(seconds)}; "
        f"compute {duration(state.compute)} of training (device time, all trials)",
    ]
    if state.best:
        lines.append(f"best: {state.best['name']}  val_acc {state.best['val_acc']:.4f}")
    for f in finals:
        lines.append(
            f"final: {f.name}  test_acc {f.test_acc:.4f} ({plural(f.epochs, 'epoch')}, {duration(f.seconds)})"
        )
    if averaged is not None:
        lines.append(f"{averaged.name}: test_acc {averaged.test_acc:.4f} (the mean of their probabilities)")
    predicted = accuracy_line(state.predictions)
    if predicted:
        lines.append(predicted)
    runs = runs_flag(settings.runs)
    lines.append(
        f"results: {store.where()} (experiment {settings.name!r}); "
        f"`archsearch leaderboard {settings.name}{runs}`, `archsearch ui{runs}`"
    )
    return "\n".join(lines)


def given_points(settings: Settings, store: Store, compiled: CompiledSpace) -> list[tuple[dict, dict, str]]:
    """(vals, config, source) of the configurations to evaluate first: the best ``warm_top`` trials
    of the ``--warm-start`` campaign (best validation loss first), then the ``--points`` file's."""
    found: list[tuple[dict, str]] = []
    if settings.warm_start:
        earlier = store.require(settings.warm_start)
        ok = ranked(earlier.trials(params=False))
        if not ok:
            raise UserError(f"--warm-start {settings.warm_start}: that campaign has no finished trial yet")
        for r in ok[: settings.warm_top]:
            config = json.loads(earlier.read_text("architecture.json", run_id=r.run_id))
            found.append((config, f"warm-start {settings.warm_start} t{r.trial:03d}"))
    if settings.points:
        found += [
            (c, f"points {Path(settings.points).name}[{i}]")
            for i, c in enumerate(read_points(settings.points))
        ]
    out = []
    for config, source in found:
        try:
            vals = compiled.encode(config)
        except OutsideSpace as e:
            raise UserError(f"{source}: not a configuration of {settings.space.path}: {e}") from None
        out.append((vals, compiled.decode(vals), source))
    return out + compiled.points  # the space file's own (search.points) last


def read_points(path: str) -> list[dict]:
    """Configurations from a YAML or JSON file: a list of {architecture, training} mappings (a
    trial's architecture.json, say), or of `archsearch sample --json` records ({arch, training})."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        items = json.loads(text) if path.endswith(".json") else read_yaml(text, path)
    except OSError as e:
        raise UserError(f"--points {path}: cannot read it ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"--points {path}: not valid JSON ({e})") from None
    except SpaceError as e:
        raise UserError(f"--points {e}") from None
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items:
        raise UserError(f"--points {path}: expected a list of configurations (architecture and training)")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and "arch" in item and "training" in item:  # archsearch sample --json
            item = {"architecture": item["arch"], "training": item["training"]}
        if not isinstance(item, dict):
            raise UserError(f"--points {path}: item {i} is not a mapping")
        out.append(item)
    return out


def draw_plots(campaign: Campaign) -> None:
    """The campaign run's plots/, drawn again (matplotlib is imported only when there is something
    to draw)."""
    from .report import log_plots

    log_plots(campaign)


def make_executor(settings: Settings, data: Data, interrupts: Interrupts) -> tuple[Executor, str, str]:
    """Where the trials run (this process, worker processes, a Dask cluster), the device tag of
    their runs (a worker's own replaces it when it starts the trial) and the device jobs ask for."""
    gpu = settings.search["gpu"]
    if settings.dask:
        from .cluster import Cluster

        share = 1 / settings.trials_per_gpu if settings.trials_per_gpu else gpu
        return Cluster(settings.dask, gpu=share, workers=settings.workers), "dask", settings.device
    device = resolve_device(settings.device)
    if settings.trials_per_gpu and device.type != "cuda":
        raise UserError(
            "--trials-per-gpu packs trials on GPUs, and torch sees none here; use --workers N to run "
            "trials side by side on the CPU"
        )
    if settings.workers is None and settings.trials_per_gpu is None:
        return Inline(data.to(device), interrupts.should_stop), device_name(device), device.type
    per_gpu = settings.trials_per_gpu or (max(1, round(1 / gpu)) if gpu else 1)
    if device.type == "cuda":
        workers = settings.workers or len(visible_gpus()) * per_gpu
    else:
        workers = settings.workers or 1
    limit, why = worker_limit(device.type, per_gpu)
    if workers > limit and not settings.oversubscribe:
        raise UserError(
            f"--workers {workers}: this machine runs at most {limit} worker process{'es' * (limit != 1)} "
            f"({why}); use --workers {limit}, or add --oversubscribe to start {workers} anyway"
        )
    executor = Processes(workers, device=device.type, threads=settings.threads, per_gpu=per_gpu)
    return executor, f"{device.type} (worker processes)", device.type


def _params(settings: Settings, data: Any) -> dict[str, Any]:
    """The campaign's settings as flat MLflow params."""
    space = settings.space
    out: dict[str, Any] = {"space": space.path, "overrides": " ".join(settings.overrides) or "-"}
    # run limits may change on resume, so they are tags (archsearch.trials, ...), not params
    fixed = {
        k: v
        for k, v in space.search.items()
        if k not in ("tpe", "pruning", "fidelity") and f"search.{k}" not in CHANGEABLE
    }
    out.update({f"search.{k}": v for k, v in fixed.items()})
    for block in ("tpe", "pruning", "fidelity"):
        out.update({f"search.{block}.{k}": v for k, v in space.search[block].items()})
    out.update({f"data.{k}": v for k, v in space.data.items()})
    out.update({f"constraints.{k}": v for k, v in vars(space.constraints).items()})
    out.update({f"dataset.{k}": v for k, v in data.summary().items() if k != "name"})
    return out


def _files(settings: Settings, data: Any) -> dict[str, str]:
    record = {
        "name": settings.name,
        "space_path": settings.space.path,
        "overrides": list(settings.overrides),
        "resolved": settings.raw,
        "dataset": data.summary(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
    }
    return {
        "space.yaml": _original_text(settings),
        "space.resolved.yaml": settings.resolved_yaml(),
        "campaign.json": json.dumps(record, indent=2, default=str),
    }


def _original_text(settings: Settings) -> str:
    path = Path(settings.space.path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return settings.resolved_yaml()
