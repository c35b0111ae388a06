"""A campaign as stored: its tracking store, the settings it was started with, its space and data.

Every command that reads a campaign back (``status``, ``export``, ``retrain``, ``--resume``,
``--warm-start``) starts here: :func:`open_store` finds the store (``--tracking-uri``, else
``MLFLOW_TRACKING_URI``, else SQLite under ``--runs``), :func:`stored_settings` reads what the
campaign was started with (its ``campaign.json``), and :func:`load_campaign` gives the space it
ran and its dataset, split as the campaign split it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError
from .settings import PATIENCE, RUNS, Settings, resolve, tracking_uri
from .space import Space
from .tracking import Campaign, Store

if TYPE_CHECKING:
    from .data import Data


def open_store(runs: Path, tracking_flag: str | None, patience: float = PATIENCE) -> Store:
    return Store(tracking_uri(tracking_flag, runs), runs, patience)


def runs_flag(runs: Path) -> str:
    """`` --runs DIR`` for the commands a message suggests, when DIR is not the default."""
    return "" if Path(runs) == RUNS else f" --runs {runs}"


def stored_settings(campaign: Campaign) -> dict:
    """What a campaign was started with (campaign.json of its run)."""
    try:
        return json.loads(campaign.read_text("campaign.json"))
    except json.JSONDecodeError as e:
        raise UserError(f"campaign {campaign.name!r}: campaign.json is not valid JSON ({e})") from None


def resume_settings(store: Store, name: str, overrides: list[str], **run: Any) -> Settings:
    """Settings of an existing campaign, with new run limits applied."""
    stored = stored_settings(store.require(name))
    return resolve(stored["space_path"], overrides, name=name, base_raw=stored["resolved"], **run)


def space_data(space: Space, cache_dir: Path, data_dir: Path | None) -> Data:
    """The dataset a space's data block describes, loaded and split."""
    from .data import load_data  # torch: not for the commands that only read a campaign back

    d = dict(space.data)
    return load_data(d.pop("dataset"), **d, cache_dir=cache_dir, data_dir=data_dir)


def load_campaign(campaign: Campaign, cache_dir: Path, data_dir: Path | None) -> tuple[Space, Data]:
    """The space a campaign ran (validated, with defaults) and its dataset with the same split."""
    stored = stored_settings(campaign)
    space = resolve(stored["space_path"], (), name=campaign.name, base_raw=stored["resolved"]).space
    data = space_data(space, cache_dir, data_dir)
    fingerprint = stored.get("dataset", {}).get("fingerprint")
    if fingerprint and fingerprint != data.fingerprint:
        raise UserError(
            f"campaign {campaign.name!r}: the dataset's validation split differs from the one the campaign "
            f"used (fingerprint {data.fingerprint} != {fingerprint})"
        )
    return space, data
