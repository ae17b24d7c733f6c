"""The IO managers: values stored one file per partition in a folder or `s3://bucket/prefix`, written and read a
partition range at a time as `{partition: value}` (a backfill as one run, `BackfillPolicy.single_run()`).

`PickleIOManager` holds every value as Python wrote it (raw data as read, mixed types included, models, reports),
at the paths Dagster's `FilesystemIOManager` and `S3PickleIOManager` use. `ParquetIOManager` holds the frames
other tools read too, `features` and the batch predictions: columnar and compressed, so a day of 10 million
feature rows loads in a third of the time of a pickle and takes a seventh of the space (docs/benchmarks.md)."""

from __future__ import annotations

import pickle
from typing import Any
from urllib.parse import urlparse

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class _PartitionFiles(dg.ConfigurableIOManager):
    """`location` is a folder or `s3://bucket/prefix`; S3 credentials come from the AWS environment variables."""

    location: str
    endpoint_url: str | None = None
    _suffix = ""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """One value, or for a step over several partitions `{partition: value}`, one file each."""
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        if len(keys) > 1 and not (isinstance(obj, dict) and set(obj) == set(keys)):
            raise TypeError(f"a step over {len(keys)} partitions must return {{partition: value}} for each of them")
        for key in keys:
            filesystem, path = self._where(context.asset_key, key)
            filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
            self._write(obj[key] if len(keys) > 1 else obj, path, filesystem)
        if len(keys) == 1:
            context.add_output_metadata({"stored": self._display(path)})

    def load_input(self, context: dg.InputContext) -> Any:
        """One partition (or an unpartitioned asset) as a value; several as `{partition: value}`, as Dagster's own
        IO managers do, leaving out missing ones when the input's metadata sets `allow_missing_partitions`."""
        if not context.has_asset_partitions:
            return self._read(context.asset_key, None)
        keys = context.asset_partition_keys
        if len(keys) == 1:
            return self._read(context.asset_key, keys[0])
        allow_missing = (context.definition_metadata or {}).get("allow_missing_partitions", False)
        values = {}
        for key in keys:
            try:
                values[key] = self._read(context.asset_key, key)
            except FileNotFoundError:
                if not allow_missing:
                    raise
        return values

    def _read(self, asset_key: dg.AssetKey, partition: str | None) -> Any:
        filesystem, path = self._where(asset_key, partition)
        if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
            what = asset_key.to_user_string() + (f" partition {partition}" if partition else "")
            raise FileNotFoundError(f"{what} has no stored value at {path}; materialize it first")
        return self._load(path, filesystem)

    def _write(self, obj: Any, path: str, filesystem: pafs.FileSystem) -> None:
        raise NotImplementedError

    def _load(self, path: str, filesystem: pafs.FileSystem) -> Any:
        raise NotImplementedError

    def _where(self, asset_key: dg.AssetKey, partition: str | None) -> tuple[pafs.FileSystem, str]:
        name = "/".join(asset_key.path) + (f"/{partition}" if partition else "") + self._suffix
        if self.location.startswith("s3://"):
            return self._s3(), f"{self.location.removeprefix('s3://').rstrip('/')}/{name}"
        return pafs.LocalFileSystem(), f"{self.location.rstrip('/')}/{name}"

    def _s3(self) -> pafs.S3FileSystem:
        if not self.endpoint_url:
            return pafs.S3FileSystem()
        endpoint = urlparse(self.endpoint_url)
        return pafs.S3FileSystem(endpoint_override=endpoint.netloc, scheme=endpoint.scheme or "https")

    def _display(self, path: str) -> dg.MetadataValue:
        return (
            dg.MetadataValue.url(f"s3://{path}") if self.location.startswith("s3://") else dg.MetadataValue.path(path)
        )


class PickleIOManager(_PartitionFiles):
    """Any value, pickled."""

    def _write(self, obj: Any, path: str, filesystem: pafs.FileSystem) -> None:
        with filesystem.open_output_stream(path) as stream:
            pickle.dump(obj, stream, protocol=pickle.HIGHEST_PROTOCOL)

    def _load(self, path: str, filesystem: pafs.FileSystem) -> Any:
        with filesystem.open_input_stream(path) as stream:
            return pickle.load(stream)  # our own store, as Dagster's pickling IO managers read theirs


class ParquetIOManager(_PartitionFiles):
    """Frames as Parquet."""

    _suffix = ".parquet"

    def _write(self, obj: pd.DataFrame, path: str, filesystem: pafs.FileSystem) -> None:
        pq.write_table(pa.Table.from_pandas(obj, preserve_index=False), path, filesystem=filesystem)

    def _load(self, path: str, filesystem: pafs.FileSystem) -> pd.DataFrame:
        table = pq.read_table(path, filesystem=filesystem)
        frame = table.to_pandas()
        # A missing string went in as NaN and comes back as None, which scikit-learn's imputers do not recognise.
        for field in table.schema:
            if pa.types.is_string(field.type) and table.column(field.name).null_count:
                frame[field.name] = frame[field.name].fillna(np.nan)
        return frame
