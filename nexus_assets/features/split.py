"""The time-based train / validation / holdout split, with a manifest that pins the holdout's rows."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import dagster as dg
import numpy as np
import pandas as pd

from nexus_assets.lib.reference import sample
from nexus_core import names
from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec

PARTS = ("train", "validation", "holdout")
OLDER_ROWS = 2_000  # rows older than the validation part the gate scores a challenger on


@dataclass(frozen=True)
class Labelling:
    """Which rows a model can learn from: those with a label, with classes too rare to learn grouped or reported."""

    target: str
    awaiting: int
    rare: dict[str, int]
    group: bool
    seen: tuple = ()  # every class of a classifier's target, as stored

    @property
    def classes(self) -> list:
        """The classes a classifier learns, in order: rare ones as `OTHER_CLASS` when they are pooled."""
        if not (self.group and self.rare):
            return sorted(self.seen)
        return sorted({names.OTHER_CLASS if str(c) in self.rare else str(c) for c in self.seen})

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        labelled = frame[frame[self.target].notna()]
        if not (self.group and self.rare):
            return labelled
        target = labelled[self.target].astype(str)
        return labelled.assign(**{self.target: target.where(~target.isin(self.rare.keys()), names.OTHER_CLASS)})

    def metadata(self) -> dict[str, dg.MetadataValue]:
        rare = ", ".join(f"{name} ({rows})" for name, rows in self.rare.items()) or "none"
        how = f"trained as {names.OTHER_CLASS!r}" if self.group else "kept; set dataset.rare_classes.group to pool them"
        return {
            "awaiting_label": dg.MetadataValue.int(self.awaiting),
            "rare_classes": dg.MetadataValue.text(f"{rare}" + (f" ({how})" if self.rare else "")),
        }


def labelling(config: NexusConfig, targets: Iterable[pd.Series]) -> Labelling:
    """How the labels (`targets`, a partition's at a time) are used: rows awaiting one are left out, rare classes
    counted (and pooled if asked), rarest first, ties by name."""
    dataset = config.dataset
    counts, awaiting = pd.Series(dtype="float64"), 0
    for target in targets:
        awaiting += int(target.isna().sum())
        if dataset.task != "regression":
            counts = counts.add(target.dropna().value_counts(), fill_value=0)
    named = pd.Series(counts.to_numpy(), index=counts.index.map(str))
    rare = named[named < dataset.rare_classes.min_rows].sort_index().sort_values(kind="stable")
    return Labelling(
        dataset.target,
        awaiting,
        {name: int(rows) for name, rows in rare.items()},
        dataset.rare_classes.group,
        tuple(counts.index),
    )


@dataclass
class TrainingDataset:
    """The three parts of the training window and what is needed to reproduce them."""

    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame
    spec: FeatureSpec
    manifest: dict = field(default_factory=dict)
    partition_rows: dict[str, dict[str, int]] = field(default_factory=dict)  # per part: rows per partition, in order
    weights: np.ndarray | None = None  # of the training rows; None: all alike
    older: pd.DataFrame = field(default_factory=pd.DataFrame)  # a sample of rows older than the validation part
    labels: Labelling | None = None  # how the stored rows were labelled, to read more of them the same way
    # Every partition before the validation part a family that trains on the cluster learns from: the training
    # part and, beyond training.max_rows, older ones the run's process does not read; with the change since which
    # rows weigh training.change_weight times more (training.on_change: weight).
    history: list[str] = field(default_factory=list)
    change: tuple[str, float] | None = None
    in_time_order: bool = True  # False: the rows were split by a seeded shuffle (no timestamp), kept in file order

    def part(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    def partitions(self, parts: tuple[str, ...], minimum: int, count: int) -> list[pd.DataFrame]:
        """Up to `count` of the partitions of `parts` with at least `minimum` rows, evenly spread over time."""
        rows = pd.concat([self.part(name) for name in parts], ignore_index=True)
        bounds = np.cumsum([0, *(n for name in parts for n in self.partition_rows.get(name, {}).values())])
        frames = [rows.iloc[a:b] for a, b in itertools.pairwise(bounds) if b - a >= minimum]
        return spread(frames, count)

    def older_windows(self, count: int, min_rows: int, seed: int, classes_of: str | None) -> list[TrainingDataset]:
        """Up to `count` windows of the validation part's length cut from the end of the training part, newest
        first, each a dataset that trains on the rows before it and validates on it (rolling origin): where a family
        is scored besides the validation part, so one slice (one season) does not choose alone. Rows in no time
        order are cut from a `seed`ed shuffle instead (a file sorted by class must not give a window of one class).
        A window is cut only while at least `min_rows`, and as many rows as it holds, are left before it; with
        `classes_of` (a classifier's target), only while those rows hold every class the training part does."""
        size, rows, windows = len(self.validation), len(self.train), []
        order = np.arange(rows) if self.in_time_order else np.random.default_rng(seed).permutation(rows)
        classes = set(self.train[classes_of].unique()) if classes_of else set()
        for k in range(1, count + 1):
            start, end = rows - k * size, rows - (k - 1) * size
            if size == 0 or start < max(min_rows, size):
                break
            before, inside = np.sort(order[:start]), np.sort(order[start:end])
            train = self.train.iloc[before]
            if classes_of and set(train[classes_of].unique()) != classes:
                break
            weights = None if self.weights is None else self.weights[before]
            window = self.train.iloc[inside].reset_index(drop=True)
            windows.append(replace(self, train=train.reset_index(drop=True), validation=window, weights=weights))
        return windows


class History(Mapping[str, pd.DataFrame]):
    """The labelled rows of each partition, read only when a split needs them; how many rows each holds is known
    without reading it, so choosing the window of a long history costs no more memory than the window."""

    def __init__(self, rows: Mapping[str, int], read: Callable[[str], pd.DataFrame]) -> None:
        self.rows = dict(rows)
        self._read = read

    @classmethod
    def of(cls, frames: Mapping[str, pd.DataFrame]) -> History:
        """A history already in memory."""
        return cls({key: len(frame) for key, frame in frames.items()}, frames.__getitem__)

    def only(self, keys: list[str]) -> History:
        return History({key: self.rows[key] for key in keys}, self._read)

    def __getitem__(self, key: str) -> pd.DataFrame:
        if key not in self.rows:
            raise KeyError(key)
        return self._read(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def spread(items: list, count: int) -> list:
    """Up to `count` of `items`, evenly spaced from the first to the last."""
    if not items:
        return []
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int))]


def content_hash(frame: pd.DataFrame) -> str:
    """A stable hash of a frame's columns and values (not its index)."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def split_by_partition(
    partitions: History, config: NexusConfig, spec: FeatureSpec, since: str | None = None
) -> TrainingDataset:
    """Oldest partitions train, the next validate, the newest are the frozen holdout. The window is the newest
    `training.window_partitions` (default all), newest first until `training.max_rows`.

    `since` (the start of a change a retrain was requested for) is used as `training.on_change` says: `weight`
    trains on the whole window with the rows from there on weighing `training.change_weight` times the older ones
    (the model leans to the new regime and keeps the seasons the older rows hold); `cut` trains on the partitions
    from there on only, when they hold `training.min_rows` training rows; the manifest's `window` says which.
    Every split keeps a sample of rows older than its validation part, for the gate's check that a challenger has
    not forgotten them."""
    on_change = "ignore" if since is None else config.training.on_change
    data = _cut(partitions, config, spec, since) if on_change == "cut" else None
    if data is None:
        data = _split_window(partitions, config, spec, since if on_change == "weight" else None)
        if on_change == "cut":
            data.manifest["window"] = (
                f"the whole window: the partitions since the change at {since} hold too few training rows "
                f"(training.min_rows={config.training.min_rows})"
            )
        elif on_change == "weight" and data.partition_rows:
            recent = sum(rows for key, rows in data.partition_rows["train"].items() if key >= since)
            weight = config.training.change_weight
            data.weights = np.r_[np.ones(len(data.train) - recent), np.full(recent, weight)]
            data.change = (since, weight)
            data.manifest["window"] = (
                f"the whole window; the {recent} training rows since the change at {since} weigh {weight:g} times "
                "the older ones (training.change_weight)"
            )
    if data.partition_rows:  # else split by row (too few partitions), with a sample of its train part
        data.older = _older(partitions, next(iter(data.partition_rows["validation"])), config.training.seed)
    return data


def _older(partitions: History, before: str, seed: int) -> pd.DataFrame:
    """A sample of the rows of the partitions before `before`, spread over all of them (every season they hold)."""
    chosen = spread(sorted(key for key in partitions if key < before), 200)
    each = -(-OLDER_ROWS // max(len(chosen), 1))
    return sample(
        pd.concat([sample(partitions[key], each, seed) for key in chosen], ignore_index=True), OLDER_ROWS, seed
    )


def _cut(partitions: History, config: NexusConfig, spec: FeatureSpec, since: str) -> TrainingDataset | None:
    recent = partitions.only([key for key in partitions if key >= since])
    cut = _split_window(recent, config, spec) if sum(recent.rows.values()) else None
    if cut is None or len(cut.train) < config.training.min_rows or not len(cut.holdout):
        return None
    cut.manifest["window"] = f"from {since}, where the change the retrain was requested for began (training.on_change)"
    return cut


def _split_window(
    partitions: History, config: NexusConfig, spec: FeatureSpec, since: str | None = None
) -> TrainingDataset:
    """The window split by partition; with `since`, validation and holdout are sized on the partitions from there
    on (when they are three or more), so the training part holds some of the new regime beside the old."""
    keys = (
        sorted(partitions)[-config.training.window_partitions :]
        if config.training.window_partitions
        else sorted(partitions)
    )
    window, rows = [], 0
    for key in reversed(keys):
        if window and rows + partitions.rows[key] > config.training.max_rows:
            break
        window.insert(0, key)
        rows += partitions.rows[key]
    filled = [key for key in window if partitions.rows[key]]
    if len(filled) < 3:
        # Too few partitions to split by: split the rows by time instead.
        frame = pd.concat([partitions[key] for key in window], ignore_index=True)
        return split_by_row(frame, config, spec)
    recent = [key for key in filled if since is not None and key >= since]
    count = len(recent) if len(recent) >= 3 else len(filled)
    n_holdout = max(1, round(count * config.training.holdout_fraction))
    n_validation = max(1, round(count * config.training.validation_fraction))
    groups = {
        "train": filled[: len(filled) - n_holdout - n_validation],
        "validation": filled[len(filled) - n_holdout - n_validation : len(filled) - n_holdout],
        "holdout": filled[len(filled) - n_holdout :],
    }
    frames = {name: pd.concat([partitions[k] for k in part], ignore_index=True) for name, part in groups.items()}
    ranges = {name: [part[0], part[-1]] for name, part in groups.items()}
    data = _dataset(frames, spec, ranges)
    data.partition_rows = {name: {k: partitions.rows[k] for k in part} for name, part in groups.items()}
    data.history = [key for key in keys if key < groups["validation"][0] and partitions.rows[key]]
    return data


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
    data = _dataset(frames, spec, ranges=None)
    data.older = sample(data.train, OLDER_ROWS, config.training.seed)
    data.in_time_order = bool(timestamp and timestamp in frame)
    return data


def _dataset(frames: dict[str, pd.DataFrame], spec: FeatureSpec, ranges: dict | None) -> TrainingDataset:
    manifest = {
        name: {"rows": len(part), "content_hash": content_hash(part)} | ({"partitions": ranges[name]} if ranges else {})
        for name, part in frames.items()
    }
    manifest["window_hash"] = content_hash(pd.concat(frames.values(), ignore_index=True))
    return TrainingDataset(**frames, spec=spec, manifest=manifest)
