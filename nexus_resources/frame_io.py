"""The IO managers: values stored one file per partition in a folder or `s3://bucket/prefix`, written and read a
partition range at a time as `{partition: value}` (a backfill as one run, `BackfillPolicy.single_run()`).

`PickleIOManager` holds every value as Python wrote it (raw data as read, mixed types included, models, reports),
at the paths Dagster's `FilesystemIOManager` and `S3PickleIOManager` use. `ParquetIOManager` holds the frames
other tools read too, `features` and the batch predictions: columnar and compressed, so a day of 10 million
feature rows loads in a third of the time of a pickle and takes a seventh of the space (docs/benchmarks.md).

Both read and write through `PartitionFiles`, plain data that also travels to a Dask worker, where a task reads
and writes its partition's files itself (`nexus_resources/compute.py`)."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


@dataclass(frozen=True)
class PartitionFiles:
    """One file per asset partition under `location`, a folder or `s3://bucket/prefix` (S3 credentials from the
    AWS environment variables), as a pickle or as Parquet."""

    location: str
    endpoint_url: str | None = None
    format: Literal["pickle", "parquet"] = "parquet"

    def read(self, asset_key: Sequence[str], partition: str | None, columns: list[str] | None = None) -> Any:
        """The partition's value; of a Parquet frame, only `columns` when given."""
        filesystem, path = self.where(asset_key, partition)
        if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
            what = "/".join(asset_key) + (f" partition {partition}" if partition else "")
            raise FileNotFoundError(f"{what} has no stored value at {path}; materialize it first")
        if self.format == "pickle":
            with filesystem.open_input_stream(path) as stream:
                return pickle.load(stream)  # our own store, as Dagster's pickling IO managers read theirs
        table = pq.read_table(path, filesystem=filesystem, columns=columns)
        frame = table.to_pandas()
        # A missing string went in as NaN and comes back as None, which scikit-learn's imputers do not recognise.
        for field in table.schema:
            if pa.types.is_string(field.type) and table.column(field.name).null_count:
                frame[field.name] = frame[field.name].fillna(np.nan)
        return frame

    def write(self, asset_key: Sequence[str], partition: str | None, obj: Any) -> dg.MetadataValue:
        """Stores `obj` as the partition's value, replacing an earlier one; returns where, for metadata."""
        filesystem, path = self.where(asset_key, partition)
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if self.format == "pickle":
            with filesystem.open_output_stream(path) as stream:
                pickle.dump(obj, stream, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            pq.write_table(pa.Table.from_pandas(obj, preserve_index=False), path, filesystem=filesystem)
        return self.display(asset_key, partition)

    def display(self, asset_key: Sequence[str], partition: str | None) -> dg.MetadataValue:
        """Where the partition's value is stored, as metadata."""
        path = self.where(asset_key, partition)[1]
        return dg.MetadataValue.url(f"s3://{path}") if self._on_s3 else dg.MetadataValue.path(path)

    def where(self, asset_key: Sequence[str], partition: str | None) -> tuple[pafs.FileSystem, str]:
        suffix = ".parquet" if self.format == "parquet" else ""
        name = "/".join(asset_key) + (f"/{partition}" if partition else "") + suffix
        if self._on_s3:
            return self._s3(), f"{self.location.removeprefix('s3://').rstrip('/')}/{name}"
        return pafs.LocalFileSystem(), f"{self.location.rstrip('/')}/{name}"

    @property
    def _on_s3(self) -> bool:
        return self.location.startswith("s3://")

    def _s3(self) -> pafs.S3FileSystem:
        if not self.endpoint_url:
            return pafs.S3FileSystem()
        endpoint = urlparse(self.endpoint_url)
        return pafs.S3FileSystem(endpoint_override=endpoint.netloc, scheme=endpoint.scheme or "https")


class _PartitionIOManager(dg.ConfigurableIOManager):
    """`location` is a folder or `s3://bucket/prefix`; S3 credentials come from the AWS environment variables."""

    location: str
    endpoint_url: str | None = None
    _format: Literal["pickle", "parquet"] = "pickle"

    def files(self) -> PartitionFiles:
        return PartitionFiles(self.location, self.endpoint_url, self._format)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """One value, or for a step over several partitions `{partition: value}`, one file each."""
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        if len(keys) > 1 and not (isinstance(obj, dict) and set(obj) == set(keys)):
            raise TypeError(f"a step over {len(keys)} partitions must return {{partition: value}} for each of them")
        for key in keys:
            stored = self.files().write(context.asset_key.path, key, obj[key] if len(keys) > 1 else obj)
        if len(keys) == 1:
            context.add_output_metadata({"stored": stored})

    def load_input(self, context: dg.InputContext) -> Any:
        """One partition (or an unpartitioned asset) as a value; several as `{partition: value}`, as Dagster's own
        IO managers do."""
        files, path = self.files(), context.asset_key.path
        if not context.has_asset_partitions:
            return files.read(path, None)
        keys = context.asset_partition_keys
        if len(keys) == 1:
            return files.read(path, keys[0])
        return {key: files.read(path, key) for key in keys}


class PickleIOManager(_PartitionIOManager):
    """Any value, pickled."""


class ParquetIOManager(_PartitionIOManager):
    """Frames as Parquet."""

    _format = "parquet"
