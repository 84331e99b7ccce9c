"""One object-storage interface for dreamops's own files (datasets, uploads): a local folder by
default, any S3 endpoint (AWS, MinIO, moto) when `DREAMOPS_STORAGE_URI=s3://bucket/prefix`.

MLflow artifacts do not go through here: the MLflow server writes them to its own artifact store.
"""
from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import urlparse

from dreamops.settings import Settings


class ObjectStore(ABC):
    """Keys are '/'-separated relative paths, e.g. `datasets/<hash>/manifest.parquet`."""

    @abstractmethod
    def uri(self, key: str) -> str: ...

    @abstractmethod
    def put_file(self, local: Path, key: str) -> None: ...

    @abstractmethod
    def get_file(self, key: str, local: Path) -> None: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix` (recursive)."""

    def exists(self, key: str) -> bool:
        return key in self.list(key)

    def put_dir(self, local: Path, prefix: str) -> int:
        """Upload every file under `local`; returns the number of files."""
        files = [p for p in sorted(local.rglob("*")) if p.is_file()]
        for path in files:
            self.put_file(path, f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}")
        return len(files)

    def get_dir(self, prefix: str, local: Path) -> int:
        """Download every key under `prefix/` into `local`; returns the number of files."""
        prefix = prefix.rstrip("/") + "/"
        keys = self.list(prefix)
        for key in keys:
            self.get_file(key, local / key[len(prefix):])
        return len(keys)


class LocalStore(ObjectStore):
    def __init__(self, root: Path):
        self.root = root.resolve()

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri()

    def put_file(self, local: Path, key: str) -> None:
        dst = self.root / key
        if dst.resolve() == local.resolve():
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dst)

    def get_file(self, key: str, local: Path) -> None:
        src = self.root / key
        if not src.is_file():
            raise FileNotFoundError(f"{self.uri(key)} does not exist")
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, local)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return [p.relative_to(self.root).as_posix() for p in sorted(base.rglob("*")) if p.is_file()]


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None):
        import boto3

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put_file(self, local: Path, key: str) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(key))

    def get_file(self, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, self._key(key), str(local))

    def list(self, prefix: str) -> list[str]:
        keys, strip = [], len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                         Prefix=self._key(prefix)):
            keys += [obj["Key"][strip:] for obj in page.get("Contents", [])]
        return keys


def open_store(settings: Settings) -> ObjectStore:
    """The configured store. Without `storage_uri` the local dataset folder's parent is the store, so
    `datasets/<name>` is the dataset folder itself and publishing costs nothing."""
    uri = settings.storage_uri
    if uri is None:
        return LocalStore(settings.datasets.parent) if settings.datasets.name == "datasets" \
            else LocalStore(settings.resolved_home / "store")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"storage_uri {uri!r} has no bucket (expected s3://bucket/prefix)")
        return S3Store(parsed.netloc, parsed.path, settings.s3_endpoint)
    if parsed.scheme in ("", "file"):
        return LocalStore(Path(parsed.path if parsed.scheme else uri))
    raise ValueError(f"unsupported storage_uri {uri!r}: use a folder or s3://bucket/prefix")
