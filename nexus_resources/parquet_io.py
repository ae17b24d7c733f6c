"""Tables people read outside Dagster (batch predictions) stored as Parquet, one file per partition."""

from __future__ import annotations

from urllib.parse import urlparse

import dagster as dg
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

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        frames = []
        for key in keys:
            filesystem, path = self._where(context.asset_key, key)
            frames.append(pq.read_table(path, filesystem=filesystem).to_pandas())
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

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
