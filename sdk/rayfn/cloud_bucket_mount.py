"""Modal's ``CloudBucketMount``: rayfn does not mount buckets itself. Accepted where a
file declares it; a deploy that mounts one is refused with what to do instead."""

from __future__ import annotations

from typing import Any

from rayfn.exception import InvalidError

__all__ = ["CloudBucketMount"]


class CloudBucketMount:
    def __init__(self, bucket_name: str, **options: Any) -> None:
        self.bucket_name = bucket_name
        self.options = options

    def __repr__(self) -> str:
        return f"CloudBucketMount({self.bucket_name!r})"

    def refuse(self, path: str) -> InvalidError:
        return InvalidError(
            f"CloudBucketMount({self.bucket_name!r}) at {path}: rayfn does not mount cloud "
            f"buckets; mount the bucket on every node (s3fs, gcsfuse, mountpoint-s3) and "
            f"read it at that path, or copy its data into a rayfn Volume")
