"""Object store: one small interface, a local-folder backend and an S3 backend.

Keys are ``/``-separated relative paths (``alarms/2026/11/25/<id>-1.jpg``).
The local backend writes atomically (temp file + rename) so a crash never
leaves a half-written object under its final key.
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

KEY_RE = re.compile(r"^[A-Za-z0-9_\-./]+$")


class ObjectStoreError(Exception):
    """The store is unreachable or refused an operation."""


class ObjectNotFound(ObjectStoreError, KeyError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime
    content_type: str


def check_key(key: str) -> str:
    if not key or not KEY_RE.match(key) or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid object key {key!r}")
    return key


def guess_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str | None = None) -> None: ...
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None: ...
    def get(self, key: str) -> bytes: ...
    def get_range(self, key: str, start: int, length: int) -> bytes: ...
    def stat(self, key: str) -> ObjectInfo: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def url(self, key: str, expires_s: int = 3600) -> str | None: ...
    def check(self) -> None: ...


class LocalObjectStore:
    """Objects as files under a root folder; content types kept in a side file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        name = check_key(key).rsplit("/", 1)[-1]
        if name.endswith(".ctype") or name.startswith(".tmp-"):  # our side files
            raise ValueError(f"invalid object key {key!r} (reserved name)")
        return self.root / key

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        ctype = content_type or guess_type(key)
        meta = path.with_name(path.name + ".ctype")
        if ctype != guess_type(key):
            meta.write_text(ctype)
        else:
            meta.unlink(missing_ok=True)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        self.put(key, Path(path).read_bytes(), content_type)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                f.seek(start)
                return f.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        meta = path.with_name(path.name + ".ctype")
        ctype = meta.read_text() if meta.exists() else guess_type(key)
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), ctype)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".ctype").unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order (as S3 lists them)."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / check_key(folder) if folder else self.root  # walk only that subtree
        if not start.is_dir():
            return
        keys = []
        for path in start.rglob("*"):
            if not path.is_file() or path.name.startswith(".tmp-") or path.suffix == ".ctype":
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                keys.append(key)
        for key in sorted(keys):
            try:
                yield self.stat(key)
            except ObjectNotFound:  # deleted while we were listing
                continue

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        return None  # served through the API

    def check(self) -> None:
        """Write and remove a probe file: ``os.access`` says yes to root for any folder."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-check-")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise ObjectStoreError(
                f"object store folder {self.root} is not writable: {exc.strerror or exc}"
            ) from None


class S3ObjectStore:
    """An S3-compatible store (MinIO, AWS, ...) through the ``minio`` client."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str = "us-east-1",
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 20.0,
    ) -> None:
        from minio import Minio
        from urllib3 import PoolManager, Retry, Timeout

        # Bounded: a dead or silent endpoint costs at most 3 tries of these timeouts.
        http = PoolManager(
            timeout=Timeout(connect=connect_timeout_s, read=read_timeout_s),
            retries=Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            maxsize=16,
        )
        self.endpoint = endpoint
        self.client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        self.bucket = bucket
        self._bucket_ready = False

    def _ensure_bucket(self, force: bool = False) -> None:
        if self._bucket_ready and not force:
            return
        try:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
        except Exception as exc:
            raise ObjectStoreError(
                f"S3 object store at {self.endpoint} (bucket {self.bucket!r}) unavailable: "
                f"{_reason(exc)}"
            ) from exc
        self._bucket_ready = True

    def _call(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        from minio.error import S3Error

        self._ensure_bucket()
        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise ObjectNotFound(args[1] if len(args) > 1 else "") from None
            raise ObjectStoreError(f"S3 object store at {self.endpoint}: {exc}") from exc
        except ObjectStoreError:
            raise
        except Exception as exc:
            raise ObjectStoreError(
                f"S3 object store at {self.endpoint}: request failed: {_reason(exc)}"
            ) from exc

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        check_key(key)
        self._call(
            self.client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type or guess_type(key),
        )

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        check_key(key)
        self._call(
            self.client.fput_object,
            self.bucket,
            key,
            str(path),
            content_type=content_type or guess_type(key),
        )

    def _read(self, key: str, offset: int = 0, length: int = 0) -> bytes:
        resp = self._call(self.client.get_object, self.bucket, check_key(key), offset, length)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def get(self, key: str) -> bytes:
        return self._read(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self._read(key, start, length)

    def stat(self, key: str) -> ObjectInfo:
        st = self._call(self.client.stat_object, self.bucket, check_key(key))
        return ObjectInfo(key, st.size, st.last_modified, st.content_type)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call(self.client.remove_object, self.bucket, check_key(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        objs = self._call(self.client.list_objects, self.bucket, prefix=prefix, recursive=True)
        try:
            for o in objs:
                yield ObjectInfo(o.object_name, o.size, o.last_modified, guess_type(o.object_name))
        except Exception as exc:
            raise ObjectStoreError(f"S3 list failed: {exc}") from exc

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        return self._call(
            self.client.presigned_get_object,
            self.bucket,
            check_key(key),
            expires=timedelta(seconds=expires_s),
        )

    def check(self) -> None:
        """Ask the server every time: health checks must notice an outage after start."""
        self._ensure_bucket(force=True)


def _reason(exc: BaseException) -> str:
    """The innermost cause of a urllib3 error, on one line (not the whole retry story)."""
    reason = getattr(exc, "reason", None) or exc
    return str(reason).splitlines()[0] if str(reason) else reason.__class__.__name__


def open_store(settings: object) -> ObjectStore:
    """Build the store named by the settings (a ``vms.config.Settings``)."""
    s = settings.objects  # type: ignore[attr-defined]
    if s.backend == "s3":
        if not s.endpoint:
            raise ObjectStoreError("objects.endpoint must be set for the s3 backend")
        return S3ObjectStore(s.endpoint, s.access_key, s.secret_key, s.bucket, s.secure, s.region)
    return LocalObjectStore(settings.objects_path)  # type: ignore[attr-defined]
