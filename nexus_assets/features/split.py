"""The time-based train / validation / holdout split, with a manifest that pins the holdout's rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nexus_assets.features.transform import FeatureSpec
from nexus_resources.config import NexusConfig

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


def split_by_day(partitions: dict[str, pd.DataFrame], config: NexusConfig, spec: FeatureSpec) -> TrainingDataset:
    """Oldest days train, the next validate, the newest are the frozen holdout."""
    days = sorted(partitions)[-config.training.window_days :]
    if len(days) < 3:
        raise ValueError(
            f"training needs at least 3 materialized partitions of features, found {len(days)}; "
            "materialize raw_data and features for more days first"
        )
    n_holdout = max(1, round(len(days) * config.training.holdout_fraction))
    n_validation = max(1, round(len(days) * config.training.validation_fraction))
    groups = {
        "train": days[: len(days) - n_holdout - n_validation],
        "validation": days[len(days) - n_holdout - n_validation : len(days) - n_holdout],
        "holdout": days[len(days) - n_holdout :],
    }
    frames = {name: pd.concat([partitions[d] for d in keys], ignore_index=True) for name, keys in groups.items()}
    ranges = {name: [keys[0], keys[-1]] for name, keys in groups.items()}
    return _dataset(frames, spec, ranges)


def split_by_row(frame: pd.DataFrame, config: NexusConfig, spec: FeatureSpec) -> TrainingDataset:
    """For data without a timestamp: a seeded shuffle, then the same proportions."""
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
