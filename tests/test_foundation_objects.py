"""Object store: the local folder backend and the S3 backend against a real S3 server."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storage.objects import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
    open_store,
)
from vms.config import load_settings

from .s3server import S3Server

BAD_KEYS = ["../x", "a/../../x", "/abs", "", "a b", "a\\b", "x/..", "ключ"]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


def _s3_store(s3: S3Server, **kwargs: float) -> S3ObjectStore:
    bucket = f"t-{uuid.uuid4().hex[:20]}"  # one bucket per test: no cross-test leftovers
    return S3ObjectStore(s3.endpoint, s3.access_key, s3.secret_key, bucket, **kwargs)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    return _s3_store(request.getfixturevalue("s3"))


# --- behaviour shared by both backends ------------------------------------------------------


def test_put_get_stat_exists(store: ObjectStore) -> None:
    store.put("alarms/2026/11/25/a-1.jpg", b"\xff\xd8jpeg")
    assert store.get("alarms/2026/11/25/a-1.jpg") == b"\xff\xd8jpeg"
    info = store.stat("alarms/2026/11/25/a-1.jpg")
    assert info.size == 6 and info.key == "alarms/2026/11/25/a-1.jpg"
    assert info.modified.tzinfo is not None
    assert store.exists("alarms/2026/11/25/a-1.jpg")
    assert not store.exists("alarms/2026/11/25/a-2.jpg")
    store.put("alarms/2026/11/25/a-1.jpg", b"second")  # overwrite
    assert store.get("alarms/2026/11/25/a-1.jpg") == b"second"


def test_content_types(store: ObjectStore, tmp_path: Path) -> None:
    store.put("a/snap.jpg", b"x")
    store.put("a/clip.mp4", b"x")
    store.put("a/seg.bin", b"x")
    store.put("a/seg.ts", b"x", content_type="video/mp2t")
    store.put("a/data", b"{}", content_type="application/json")
    src = tmp_path / "upload.png"
    src.write_bytes(b"\x89PNG")
    store.put_file("a/from-file.png", src)
    assert store.stat("a/snap.jpg").content_type == "image/jpeg"
    assert store.stat("a/clip.mp4").content_type == "video/mp4"
    assert store.stat("a/seg.bin").content_type == "application/octet-stream"
    assert store.stat("a/seg.ts").content_type == "video/mp2t"
    assert store.stat("a/data").content_type == "application/json"
    assert store.stat("a/from-file.png").content_type == "image/png"
    assert store.get("a/from-file.png") == b"\x89PNG"


def test_list_by_prefix_and_delete(store: ObjectStore) -> None:
    for key in ["rec/ch1/0001.ts", "rec/ch1/0002.ts", "rec/ch10/0001.ts", "alarms/x.jpg"]:
        store.put(key, key.encode())
    assert [o.key for o in store.list("rec/ch1/")] == ["rec/ch1/0001.ts", "rec/ch1/0002.ts"]
    assert len(list(store.list("rec/"))) == 3
    partial = [o.key for o in store.list("rec/ch1")]  # a prefix need not end at a folder
    assert partial == ["rec/ch1/0001.ts", "rec/ch1/0002.ts", "rec/ch10/0001.ts"]
    assert list(store.list("nothing/here/")) == []
    assert len(list(store.list())) == 4
    assert [o.size for o in store.list("alarms/")] == [len(b"alarms/x.jpg")]
    store.delete("rec/ch1/0001.ts")
    store.delete("rec/ch1/never-existed.ts")  # deleting nothing is not an error
    assert [o.key for o in store.list("rec/ch1/")] == ["rec/ch1/0002.ts"]
    with pytest.raises(ObjectNotFound):
        store.get("rec/ch1/0001.ts")


def test_range_get(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    store.put("rec/seg.ts", data)
    assert store.get_range("rec/seg.ts", 0, 188) == data[:188]
    assert store.get_range("rec/seg.ts", 1000, 500) == data[1000:1500]
    assert store.get_range("rec/seg.ts", len(data) - 10, 100) == data[-10:]
    with pytest.raises(ObjectNotFound):
        store.get_range("rec/missing.ts", 0, 10)


def test_missing_objects_raise_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("nope.jpg")
    with pytest.raises(ObjectNotFound):
        store.stat("nope.jpg")
    assert isinstance(ObjectNotFound("k"), KeyError)  # callers may catch either


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        store.put(key, b"x")
    with pytest.raises(ValueError, match="invalid object key"):
        store.get(key)


# --- local folder ---------------------------------------------------------------------------


def test_local_put_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("a/b.jpg", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        store.put("a/b.jpg", b"new and longer")
    monkeypatch.undo()
    assert store.get("a/b.jpg") == b"old"  # the old object is intact
    assert sorted(p.name for p in (tmp_path / "objects" / "a").iterdir()) == ["b.jpg"]
    assert [o.key for o in store.list()] == ["a/b.jpg"]


def test_local_keys_stay_inside_the_root(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    for reserved in ("a/b.jpg.ctype", "a/.tmp-x"):  # names of the store's own side files
        with pytest.raises(ValueError, match="reserved"):
            store.put(reserved, b"x")
    (tmp_path / "secret.txt").write_text("s")
    with pytest.raises(ValueError):
        store.get("../secret.txt")
    with pytest.raises(ValueError):
        store.delete("../secret.txt")
    assert (tmp_path / "secret.txt").exists()
    assert store.url("a.jpg") is None  # served through the API


def test_local_check_detects_an_unwritable_folder(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.check()
    os.rmdir(store.root)
    store.root.write_text("a file where the folder was")  # unwritable even for root
    with pytest.raises(ObjectStoreError, match="not writable"):
        store.check()


def test_open_store_follows_settings(tmp_path: Path, s3: S3Server) -> None:
    local = open_store(load_settings(server={"data_dir": tmp_path}))
    assert isinstance(local, LocalObjectStore) and local.root == tmp_path / "objects"
    with pytest.raises(ObjectStoreError, match="endpoint"):
        open_store(load_settings(objects={"backend": "s3"}))
    remote = open_store(
        load_settings(
            objects={
                "backend": "s3",
                "endpoint": s3.endpoint,
                "access_key": s3.access_key,
                "secret_key": s3.secret_key,
                "bucket": f"t-{uuid.uuid4().hex[:16]}",
            }
        )
    )
    remote.check()  # creates the bucket
    remote.put("k.txt", b"v")
    assert remote.get("k.txt") == b"v"


# --- S3 -------------------------------------------------------------------------------------


def test_s3_presigned_get_url(s3: S3Server) -> None:
    store = _s3_store(s3)
    store.put("alarms/a-1.jpg", b"\xff\xd8snapshot")
    url = store.url("alarms/a-1.jpg", expires_s=600)
    assert url is not None and url.startswith(s3.url) and "X-Amz-Signature=" in url
    resp = httpx.get(url, timeout=5)
    assert resp.status_code == 200
    assert resp.content == b"\xff\xd8snapshot"
    assert resp.headers["content-type"] == "image/jpeg"


def test_s3_server_down_is_a_clear_error_quickly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens
    store = S3ObjectStore(f"127.0.0.1:{port}", "a", "b", "vms", connect_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(ObjectStoreError) as info:
        store.put("a.jpg", b"x")
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "unavailable" in message and "\n" not in message
    with pytest.raises(ObjectStoreError):
        store.check()


def test_s3_silent_server_times_out(tmp_path: Path) -> None:
    """A server that accepts connections and never answers costs bounded time, not a hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
        store = S3ObjectStore(endpoint, "a", "b", "vms", connect_timeout_s=1, read_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(ObjectStoreError, match=endpoint):
            store.get("a.jpg")
        assert time.monotonic() - started < 15
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_s3_outage_after_start_is_noticed() -> None:
    with S3Server() as server:
        store = _s3_store(server, connect_timeout_s=1)
        store.put("x.jpg", b"x")
        store.check()
    # the server is gone now
    with pytest.raises(ObjectStoreError, match="unavailable"):
        store.check()
    with pytest.raises(ObjectStoreError):
        store.get("x.jpg")
