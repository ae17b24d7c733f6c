"""Where HTML reports go: a local folder in the embedded mode, an S3 prefix in production."""

from __future__ import annotations

from pathlib import Path

import boto3
import dagster as dg


class ReportStore(dg.ConfigurableResource):
    """`location` is a folder path or `s3://bucket/prefix`; S3 credentials come from the AWS environment."""

    location: str
    endpoint_url: str | None = None

    def save(self, key: str, html: str) -> str:
        """Store `html` under `key`; returns where it went (a path or an s3:// URL)."""
        if self.location.startswith("s3://"):
            bucket, _, prefix = self.location.removeprefix("s3://").partition("/")
            object_key = f"{prefix.rstrip('/')}/{key}" if prefix else key
            boto3.client("s3", endpoint_url=self.endpoint_url).put_object(
                Bucket=bucket, Key=object_key, Body=html.encode(), ContentType="text/html"
            )
            return f"s3://{bucket}/{object_key}"
        path = Path(self.location) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html)
        return str(path)
