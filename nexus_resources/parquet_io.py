"""Frames stored as Parquet, one file per partition: `features` (read by scoring, drift and training) and the
batch predictions people read outside Dagster. Columnar and compressed, so a day of 10 million feature rows loads
in a third of the time of a pickle and takes a seventh of the space (docs/benchmarks.md)."""

from __future__ import annotations

from urllib.parse import urlparse

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class ParquetIOManager(dg.ConfigurableIOManager):
    """`location` is a folder or `s3://bucket/prefix`; S3 credentials come from the AWS environment variables."""

    location: str
    endpoint_url: str | None = None

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        filesystem, path = self._where(context.asset_key, context.partition_key if context.has_partition_key else None)
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(pa.Table.from_pandas(obj, preserve_index=False), path, filesystem=filesystem)
        context.add_output_metadata({"parquet": self._display(path)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """One partition (or an unpartitioned asset) as a frame; several as `{partition: frame}`, as Dagster's own
        IO managers do, leaving out missing ones when the input's metadata sets `allow_missing_partitions`."""
        if not context.has_asset_partitions:
            return self._read(context.asset_key, None)
        keys = context.asset_partition_keys
        if len(keys) == 1:
            return self._read(context.asset_key, keys[0])
        allow_missing = (context.definition_metadata or {}).get("allow_missing_partitions", False)
        frames = {}
        for key in keys:
            try:
                frames[key] = self._read(context.asset_key, key)
            except FileNotFoundError:
                if not allow_missing:
                    raise
        return frames

    def _read(self, asset_key: dg.AssetKey, partition: str | None) -> pd.DataFrame:
        filesystem, path = self._where(asset_key, partition)
        if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
            what = asset_key.to_user_string() + (f" partition {partition}" if partition else "")
            raise FileNotFoundError(f"{what} has no stored value at {path}; materialize it first")
        table = pq.read_table(path, filesystem=filesystem)
        frame = table.to_pandas()
        # A missing string went in as NaN and comes back as None, which scikit-learn's imputers do not recognise.
        for field in table.schema:
            if pa.types.is_string(field.type) and table.column(field.name).null_count:
                frame[field.name] = frame[field.name].fillna(np.nan)
        return frame

    def _where(self, asset_key: dg.AssetKey, partition: str | None) -> tuple[pafs.FileSystem, str]:
        name = "/".join(asset_key.path) + (f"/{partition}" if partition else "") + ".parquet"
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
