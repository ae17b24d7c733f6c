"""The time-based train / validation / holdout split, with a manifest that pins the holdout's rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec

PARTS = ("train", "validation", "holdout")


@dataclass
class TrainingDataset:
    """The three parts of the training window and what is needed to reproduce them."""

    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame
    spec: FeatureSpec
    manifest: dict = field(default_factory=dict)

    def part(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


def content_hash(frame: pd.DataFrame) -> str:
    """A stable hash of a frame's columns and values (not its index)."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def split_by_partition(
    partitions: dict[str, pd.DataFrame], config: NexusConfig, spec: FeatureSpec, since: str | None = None
) -> TrainingDataset:
    """Oldest partitions train, the next validate, the newest are the frozen holdout. The window is the newest
    `training.window_partitions` (default all), newest first until `training.max_rows`.

    `since` (the start of a change a retrain was requested for) cuts the window to the partitions from there on,
    so the model learns the new regime, when they hold `training.min_rows` training rows; the manifest says which."""
    if since is None or not config.training.cut_at_change:
        return _split_window(partitions, config, spec)
    recent = {key: frame for key, frame in partitions.items() if key >= since}
    cut = _split_window(recent, config, spec) if sum(map(len, recent.values())) else None
    if cut is not None and len(cut.train) >= config.training.min_rows and len(cut.holdout):
        cut.manifest["window"] = f"from {since}, where the change the retrain was requested for began"
        return cut
    data = _split_window(partitions, config, spec)
    rows = 0 if cut is None else len(cut.train)
    data.manifest["window"] = (
        f"the whole window: the partitions since the change at {since} hold {rows} training rows, fewer than "
        f"training.min_rows={config.training.min_rows}"
    )
    return data


def _split_window(partitions: dict[str, pd.DataFrame], config: NexusConfig, spec: FeatureSpec) -> TrainingDataset:
    keys = (
        sorted(partitions)[-config.training.window_partitions :]
        if config.training.window_partitions
        else sorted(partitions)
    )
    window, rows = [], 0
    for key in reversed(keys):
        if window and rows + len(partitions[key]) > config.training.max_rows:
            break
        window.insert(0, key)
        rows += len(partitions[key])
    filled = [key for key in window if len(partitions[key])]
    if len(filled) < 3:
        # Too few partitions to split by: split the rows by time instead.
        frame = pd.concat([partitions[key] for key in window], ignore_index=True)
        return split_by_row(frame, config, spec)
    n_holdout = max(1, round(len(filled) * config.training.holdout_fraction))
    n_validation = max(1, round(len(filled) * config.training.validation_fraction))
    groups = {
        "train": filled[: len(filled) - n_holdout - n_validation],
        "validation": filled[len(filled) - n_holdout - n_validation : len(filled) - n_holdout],
        "holdout": filled[len(filled) - n_holdout :],
    }
    frames = {name: pd.concat([partitions[k] for k in part], ignore_index=True) for name, part in groups.items()}
    ranges = {name: [part[0], part[-1]] for name, part in groups.items()}
    return _dataset(frames, spec, ranges)


def split_by_row(frame: pd.DataFrame, config: NexusConfig, spec: FeatureSpec) -> TrainingDataset:
    """By time when there is a timestamp (oldest rows train, newest are the holdout), else a seeded shuffle."""
    timestamp = config.dataset.timestamp
    if timestamp and timestamp in frame:
        order = np.argsort(frame[timestamp].to_numpy(), kind="stable")
    else:
        order = np.random.default_rng(config.training.seed).permutation(len(frame))
    n_holdout = round(len(frame) * config.training.holdout_fraction)
    n_validation = round(len(frame) * config.training.validation_fraction)
    cuts = [len(frame) - n_holdout - n_validation, len(frame) - n_holdout]
    frames = {
        name: frame.iloc[np.sort(rows)].reset_index(drop=True)
        for name, rows in zip(PARTS, np.split(order, cuts), strict=True)
    }
    return _dataset(frames, spec, ranges=None)


def _dataset(frames: dict[str, pd.DataFrame], spec: FeatureSpec, ranges: dict | None) -> TrainingDataset:
    manifest = {
        name: {"rows": len(part), "content_hash": content_hash(part)} | ({"partitions": ranges[name]} if ranges else {})
        for name, part in frames.items()
    }
    manifest["window_hash"] = content_hash(pd.concat(frames.values(), ignore_index=True))
    return TrainingDataset(**frames, spec=spec, manifest=manifest)
