"""The Store interface behaves the same on a local folder, moto and SeaweedFS (real SigV4)."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.exceptions import ResponseStreamingError

from ict_api.spec import StorageSpec
from ict_trainer import storage as storage_module
from ict_trainer.errors import StorageError
from ict_trainer.s3 import S3Store
from ict_trainer.storage import (
    SYNC_INDEX,
    TMP_PREFIX,
    LocalStore,
    ObjectInfo,
    Store,
    content_etag,
    is_s3,
)
from ict_trainer.stores import open_store
from tests.conftest import S3Credentials, S3Server
from tests.s3servers import free_ports

pytestmark = pytest.mark.s3

BACKENDS = ["local", "moto", "seaweedfs"]


@dataclass
class Backend:
    name: str
    store: Store
    server: S3Server | None = None
    bucket: str = ""


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def s3_server(request: pytest.FixtureRequest, name: str) -> S3Server:
    return request.getfixturevalue("moto_s3" if name == "moto" else "seaweedfs")


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, aws_env, make_bucket) -> Backend:
    if request.param == "local":
        return Backend("local", open_store(str(tmp_path / "store")))
    server = s3_server(request, request.param)
    # The endpoint comes from AWS_ENDPOINT_URL, as in a trainer pod.
    aws_env(server.endpoint, server.credentials)
    bucket = make_bucket(server)
    store = open_store(f"s3://{bucket}/root/prefix/")
    assert store.uri == f"s3://{bucket}/root/prefix"
    return Backend(request.param, store, server, bucket)


def s3_store_as(server: S3Server, aws_env, uri: str, credentials: S3Credentials | None) -> S3Store:
    aws_env(server.endpoint, credentials)
    store = open_store(uri)
    assert isinstance(store, S3Store)
    return store


def assert_clean(text: str, *credentials: S3Credentials) -> None:
    for creds in credentials:
        assert creds.secret_key not in text
        assert creds.access_key not in text


def tmp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(TMP_PREFIX)]


# -- behaviour shared by all backends ------------------------------------------------------------


def test_put_get_round_trip(backend: Backend) -> None:
    store = backend.store
    store.put_bytes("a/b.txt", b"hello")
    assert store.get_bytes("a/b.txt") == b"hello"
    store.put_bytes("a/b.txt", b"hello again")
    assert store.get_bytes("a/b.txt") == b"hello again"
    assert store.exists("a/b.txt")
    assert not store.exists("a/missing.txt")
    assert not store.exists("a")
    assert store.list() == [ObjectInfo("a/b.txt", 11, md5(b"hello again"))]
    assert store.uri_of("a/b.txt") == store.uri + "/a/b.txt"
    assert store.uri_of("") == store.uri


def test_upload_download_files(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    backend.store.upload(source, "blobs/x.bin")
    target = tmp_path / "out" / "deep" / "x.bin"
    backend.store.download("blobs/x.bin", target)
    assert target.read_bytes() == data
    target.write_bytes(b"stale")
    backend.store.download("blobs/x.bin", target)
    assert target.read_bytes() == data
    assert tmp_files(tmp_path) == []


def test_list_treats_a_prefix_as_a_folder(backend: Backend) -> None:
    store = backend.store
    for key in ["train/x", "train/sub/z", "trainer/y", "top"]:
        store.put_bytes(key, key.encode())
    assert [o.key for o in store.list("train")] == ["train/sub/z", "train/x"]
    assert [o.key for o in store.list("train/")] == ["train/sub/z", "train/x"]
    assert [o.key for o in store.list()] == ["top", "train/sub/z", "train/x", "trainer/y"]
    assert store.list("nothing") == []
    assert store.list("top") == []
    if backend.server is not None:
        # Zero-byte "folder" markers, as S3 consoles make them, are not objects.
        backend.server.client().put_object(
            Bucket=backend.bucket, Key="root/prefix/train/", Body=b""
        )
        assert [o.key for o in store.list("train")] == ["train/sub/z", "train/x"]


def test_list_of_an_empty_location_is_empty(backend: Backend) -> None:
    if backend.server is None:
        empty = open_store(backend.store.uri + "-never-written")
    else:
        empty = open_store(f"s3://{backend.bucket}/never/written")
    assert empty.list() == []
    assert empty.list("train") == []


def test_delete_prefix(backend: Backend) -> None:
    store = backend.store
    for key in ["a/x", "a/y/z", "ab/w"]:
        store.put_bytes(key, b"1")
    store.delete_prefix("a")
    assert [o.key for o in store.list()] == ["ab/w"]
    store.delete_prefix("never-written")
    store.delete_prefix("")
    assert store.list() == []


def test_every_key_is_checked(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    for bad in ["../x", "/abs", "a//b", "a\\b", "a/./b", "", "a/.ict-sync.json"]:
        with pytest.raises(StorageError, match="not a safe relative name") as info:
            store.put_bytes(bad, b"1")
        assert repr(bad) in str(info.value)
        with pytest.raises(StorageError):
            store.get_bytes(bad)
    with pytest.raises(StorageError):
        store.download("../x", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_put_dir_writes_last_files_after_all_others(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "run"
    for i in range(24):
        (src / "shards").mkdir(parents=True, exist_ok=True)
        (src / "shards" / f"{i:02d}.bin").write_bytes(os.urandom(1000 + i))
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "sub" / "deep" / "f.txt").write_bytes(b"deep")
    (src / "manifest.json").write_bytes(b'{"complete": true}')
    (src / "done.txt").write_bytes(b"done")

    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(kind: str, name: str) -> None:
        with lock:
            events.append((kind, name))

    store = backend.store
    if isinstance(store, S3Store):
        # provide-client-params and after-call share the request's context dict.
        def started(params, context, **_):
            context["test_key"] = params["Key"].rsplit("/run/", 1)[1]
            record("start", context["test_key"])

        def ended(context, **_):
            record("end", context["test_key"])

        for op in ("PutObject", "CreateMultipartUpload"):
            store.client.meta.events.register(f"provide-client-params.s3.{op}", started)
        for op in ("PutObject", "CompleteMultipartUpload"):
            store.client.meta.events.register(f"after-call.s3.{op}", ended)
    else:
        real_copy = storage_module.atomic_copy

        def copy(src_path: Path, dest: Path) -> None:
            name = dest.relative_to(Path(store.uri) / "run").as_posix()
            record("start", name)
            real_copy(src_path, dest)
            record("end", name)

        monkeypatch.setattr(storage_module, "atomic_copy", copy)

    store.put_dir(src, "run", last=["manifest.json", "done.txt"])

    position = {event: i for i, event in enumerate(events)}
    others = [name for kind, name in events if kind == "end" and "/" in name]
    assert len(others) == 25
    manifest_start = position[("start", "manifest.json")]
    assert all(position[("end", name)] < manifest_start for name in others)
    assert position[("end", "manifest.json")] < position[("start", "done.txt")]

    listed = {o.key: o for o in store.list("run")}
    assert len(listed) == 27
    for path in src.rglob("*"):
        if path.is_file():
            info = listed[f"run/{path.relative_to(src).as_posix()}"]
            assert (info.size, info.etag) == (path.stat().st_size, content_etag(path))


def test_put_dir_skips_what_a_bucket_already_holds_and_uploads_what_changed(
    backend: Backend, tmp_path: Path
) -> None:
    src = tmp_path / "run"
    src.mkdir()
    # Over s3transfer's 8 MiB threshold: a two-part upload, whose ETag is no plain md5.
    (src / "model.keras").write_bytes(os.urandom(9 * 1024 * 1024))
    (src / "history.csv").write_bytes(b"epoch,loss\n1,0.5\n")
    (src / "plots").mkdir()
    (src / "plots" / "curves.png").write_bytes(os.urandom(3000))
    (src / "manifest.json").write_bytes(b"{}")
    store = backend.store
    sent: list[str] = []
    if isinstance(store, S3Store):
        for op in ("PutObject", "CreateMultipartUpload"):
            store.client.meta.events.register(
                f"provide-client-params.s3.{op}",
                lambda params, **_: sent.append(params["Key"].rsplit("/out/", 1)[1]),
            )

    first = store.put_dir(src, "out", last=["manifest.json"])
    assert (first.uploaded, first.skipped) == (4, 0)
    assert first.bytes == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    if backend.name != "local":
        assert sorted(sent) == ["history.csv", "manifest.json", "model.keras", "plots/curves.png"]
        etag = {o.key: o.etag for o in store.list("out")}["out/model.keras"]
        assert etag.endswith("-2")  # what upload_etag computes, checked by the skip below

    sent.clear()
    (src / "history.csv").write_bytes(b"epoch,loss\n1,0.4\n")  # same size, other content
    again = store.put_dir(src, "out", last=["manifest.json"])
    if backend.name == "local":  # copying costs what comparing would: everything is written
        assert (again.uploaded, again.skipped) == (4, 0)
    else:
        assert sorted(sent) == ["history.csv", "manifest.json"]  # the last file always goes
        assert (again.uploaded, again.skipped) == (2, 2)
        assert again.bytes == len(b"epoch,loss\n1,0.4\n") + 2
    assert store.get_bytes("out/history.csv") == b"epoch,loss\n1,0.4\n"
    listed = {o.key: o for o in store.list("out")}
    for path in src.rglob("*"):
        if path.is_file():
            assert listed[f"out/{path.relative_to(src).as_posix()}"].size == path.stat().st_size


def test_sync_down_mirrors_skips_unchanged_and_refetches_changed(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = backend.store
    content = {
        "data/a.txt": b"aaaa",
        "data/b.txt": b"bbbbbb",
        "data/sub/c.txt": b"c" * 5000,
        "data/sub/d.bin": os.urandom(20_000),
        "data/sub/deep/e.txt": b"e",
        "data/f": b"",
        "other/x.txt": b"not synced",
    }
    for key, data in content.items():
        store.put_bytes(key, data)
    dest = tmp_path / "cache"

    def local_files() -> dict[str, bytes]:
        return {
            p.relative_to(dest).as_posix(): p.read_bytes()
            for p in dest.rglob("*")
            if p.is_file() and p.name != SYNC_INDEX
        }

    expected = {k[len("data/") :]: v for k, v in content.items() if k.startswith("data/")}
    first = store.sync_down("data", dest)
    assert (first.downloaded, first.skipped, first.removed) == (6, 0, 0)
    assert first.bytes == sum(len(v) for v in expected.values())
    assert first.seconds >= 0
    assert local_files() == expected
    assert (dest / SYNC_INDEX).is_file()

    again = store.sync_down("data/", dest)
    assert (again.downloaded, again.skipped, again.bytes) == (0, 6, 0)

    # Same size, other content: only the ETag tells the change.
    store.put_bytes("data/a.txt", b"AAAA")
    changed = store.sync_down("data", dest)
    assert (changed.downloaded, changed.skipped, changed.bytes) == (1, 5, 4)
    assert (dest / "a.txt").read_bytes() == b"AAAA"

    (dest / "sub" / "c.txt").unlink()
    restored = store.sync_down("data", dest)
    assert (restored.downloaded, restored.skipped) == (1, 5)
    assert (dest / "sub" / "c.txt").read_bytes() == content["data/sub/c.txt"]

    # An object gone from the store disappears from the mirror; files we did not write stay.
    (dest / "mine.txt").write_bytes(b"user file")
    store.delete_prefix("data/sub/deep")
    pruned = store.sync_down("data", dest)
    assert (pruned.downloaded, pruned.skipped, pruned.removed) == (0, 5, 1)
    assert not (dest / "sub" / "deep").exists()
    assert (dest / "mine.txt").read_bytes() == b"user file"

    # A listing the caller already has is used as is: no second LIST.
    listing = store.list("data")
    store.put_bytes("data/b.txt", b"BBBBBB")
    listing = store.list("data")

    def no_listing(*args, **kwargs):
        raise AssertionError("sync_down listed although it was given the objects")

    monkeypatch.setattr(store, "list", no_listing)
    given = store.sync_down("data", dest, objects=listing)
    assert (given.downloaded, given.skipped) == (1, 4)
    assert (dest / "b.txt").read_bytes() == b"BBBBBB"
    assert tmp_files(dest) == []


def test_sync_down_rejects_keys_that_escape(backend: Backend, tmp_path: Path) -> None:
    dest = tmp_path / "sandbox" / "cache"
    bad_keys = [
        "data/../../escape.txt",
        "/data/abs.txt",
        "data\\..\\..\\escape.txt",
        "data//double.txt",
        "data/./dot.txt",
        "data/",
        "",
    ]
    for bad in bad_keys:
        objects = [ObjectInfo("data/ok.txt", 1, "x"), ObjectInfo(bad, 1, "x")]
        with pytest.raises(StorageError) as info:
            backend.store.sync_down("data", dest, objects=objects)
        assert repr(bad) in str(info.value)
    assert not (tmp_path / "sandbox" / "escape.txt").exists()
    assert not (tmp_path / "escape.txt").exists()
    assert not dest.exists() or list(dest.iterdir()) == []


def test_sync_down_rejects_a_real_escaping_key(
    moto_s3: S3Server, aws_env, make_bucket, tmp_path: Path
) -> None:
    # moto keeps keys verbatim, like AWS. SeaweedFS answers InvalidRequest to '.' and '..'
    # segments and rewrites '//', a leading '/' and '\\' to '/', so it cannot hold such keys.
    bucket = make_bucket(moto_s3)
    raw = moto_s3.client()
    raw.put_object(Bucket=bucket, Key="ds/train/ok.jpg", Body=b"1")
    raw.put_object(Bucket=bucket, Key="ds/train/../../../escape.jpg", Body=b"1")
    store = s3_store_as(moto_s3, aws_env, f"s3://{bucket}/ds", moto_s3.credentials)
    dest = tmp_path / "a" / "b" / "cache"
    with pytest.raises(StorageError) as info:
        store.sync_down("train", dest)
    assert repr("train/../../../escape.jpg") in str(info.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_writes_and_downloads_are_atomic(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = backend.store
    store.put_bytes("k.txt", b"new")
    target = tmp_path / "got" / "k.txt"
    target.parent.mkdir()
    target.write_bytes(b"old")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", failing_replace)
        with pytest.raises(StorageError):
            store.download("k.txt", target)
        if backend.server is None:
            with pytest.raises(StorageError, match="No space left") as info:
                store.put_bytes("k.txt", b"newer")
            assert store.uri_of("k.txt") in str(info.value)
    assert target.read_bytes() == b"old"
    assert store.get_bytes("k.txt") == b"new"
    assert tmp_files(tmp_path) == []


def test_missing_object_names_its_uri(backend: Backend, tmp_path: Path) -> None:
    uri = backend.store.uri_of("nope/x.bin")
    with pytest.raises(StorageError, match="does not exist") as info:
        backend.store.get_bytes("nope/x.bin")
    assert repr(uri) in str(info.value)
    with pytest.raises(StorageError, match="does not exist") as info:
        backend.store.download("nope/x.bin", tmp_path / "x.bin")
    assert repr(uri) in str(info.value)
    assert not (tmp_path / "x.bin").exists()


def test_a_download_cut_short_is_fetched_again_and_a_wrong_size_never_lands(
    moto_s3: S3Server, aws_env, make_bucket, tmp_path: Path, monkeypatch
) -> None:
    aws_env(moto_s3.endpoint, moto_s3.credentials)
    store = open_store(f"s3://{make_bucket(moto_s3)}/p")
    store.put_bytes("a/x.bin", b"0123456789")
    real_get = store.client.get_object
    calls = []

    def flaky_get(**kwargs):
        calls.append(kwargs["Key"])
        response = real_get(**kwargs)
        if len(calls) == 1:  # the first body breaks off mid-transfer
            response["Body"].read = lambda *args: (_ for _ in ()).throw(
                ResponseStreamingError(error="connection reset")
            )
        return response

    monkeypatch.setattr(store.client, "get_object", flaky_get)
    stats = store.sync_down("", tmp_path / "mirror")
    assert (stats.downloaded, len(calls)) == (1, 2)
    assert (tmp_path / "mirror" / "a" / "x.bin").read_bytes() == b"0123456789"

    # The object changed between listing and reading: nothing is renamed into place.
    (listed,) = store.list()
    stale = ObjectInfo(listed.key, listed.size + 1, "stale")
    with pytest.raises(StorageError, match="came back with 10 bytes where its listing says 11"):
        store.sync_down("", tmp_path / "other", [stale])
    assert not (tmp_path / "other" / "a" / "x.bin").exists()
    assert tmp_files(tmp_path / "other") == []


# -- pagination ---------------------------------------------------------------------------------


def test_list_paginates_past_1000_keys(moto_s3: S3Server, aws_env, make_bucket) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    bucket = make_bucket(moto_s3)
    # Written straight into moto's in-process backend: 1,003 PUTs over HTTP would take seconds
    # on two cores and test nothing the other tests do not. The listing goes over HTTP.
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    for i in range(1003):
        backend.put_object(bucket, f"p/many/{i:04d}.txt", b"%d" % i)
    store = s3_store_as(moto_s3, aws_env, f"s3://{bucket}/p", moto_s3.credentials)
    calls = []
    store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: calls.append(1))
    listed = store.list("many")
    assert len(calls) == 2
    assert [o.key for o in listed] == [f"many/{i:04d}.txt" for i in range(1003)]
    assert listed[7] == ObjectInfo("many/0007.txt", 1, md5(b"7"))


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["moto", "seaweedfs"])
def test_missing_bucket(request, name: str, aws_env, tmp_path: Path) -> None:
    server = s3_server(request, name)
    bucket = f"ict-missing-{uuid.uuid4().hex[:12]}"
    store = s3_store_as(server, aws_env, f"s3://{bucket}/data", server.credentials)
    calls = [
        lambda: store.list(),
        lambda: store.get_bytes("x"),
        lambda: store.put_bytes("x", b"1"),
        lambda: store.exists("x"),
        lambda: store.download("x", tmp_path / "x"),
        lambda: store.sync_down("", tmp_path / "cache"),
    ]
    for call in calls:
        with pytest.raises(StorageError) as info:
            call()
        message = str(info.value)
        assert f"S3 bucket {bucket!r} does not exist" in message
        assert f"'s3://{bucket}/data" in message
        assert_clean(message, server.credentials)


def test_no_credentials(moto_s3: S3Server, aws_env) -> None:
    store = s3_store_as(moto_s3, aws_env, "s3://some-bucket/data", None)
    with pytest.raises(StorageError) as info:
        store.list()
    message = str(info.value)
    assert "no complete S3 credentials found for 's3://some-bucket/data'" in message
    assert "AWS_ACCESS_KEY_ID" in message and "credentialsSecret" in message


@pytest.fixture
def weed_bucket(seaweedfs: S3Server, make_bucket) -> str:
    bucket = make_bucket(seaweedfs)
    seaweedfs.client().put_object(Bucket=bucket, Key="data/a.txt", Body=b"a")
    return bucket


def test_unknown_access_key_id(seaweedfs: S3Server, weed_bucket: str, aws_env, tmp_path) -> None:
    wrong = S3Credentials(f"unknown{uuid.uuid4().hex[:8]}", seaweedfs.secret_key)
    store = s3_store_as(seaweedfs, aws_env, f"s3://{weed_bucket}/data", wrong)
    for call in [
        lambda: store.list(),
        lambda: store.get_bytes("a.txt"),
        lambda: store.exists("a.txt"),
        lambda: store.put_bytes("b.txt", b"b"),
        lambda: store.download("a.txt", tmp_path / "a.txt"),
    ]:
        with pytest.raises(StorageError, match="InvalidAccessKeyId") as info:
            call()
        message = str(info.value)
        assert f"'s3://{weed_bucket}/data" in message and "AWS_ACCESS_KEY_ID" in message
        assert_clean(message, wrong, seaweedfs.credentials)


def test_wrong_secret_key(seaweedfs: S3Server, weed_bucket: str, aws_env, tmp_path) -> None:
    wrong = S3Credentials(seaweedfs.access_key, f"wrong-secret-{uuid.uuid4().hex}")
    store = s3_store_as(seaweedfs, aws_env, f"s3://{weed_bucket}/data", wrong)
    for call in [
        lambda: store.list(),
        lambda: store.get_bytes("a.txt"),
        lambda: store.exists("a.txt"),
        lambda: store.put_bytes("b.txt", b"b"),
        lambda: store.download("a.txt", tmp_path / "a.txt"),
    ]:
        with pytest.raises(StorageError, match="SignatureDoesNotMatch") as info:
            call()
        message = str(info.value)
        assert f"'s3://{weed_bucket}/data" in message and "AWS_SECRET_ACCESS_KEY" in message
        assert_clean(message, wrong, seaweedfs.credentials)


def test_access_denied_on_read(seaweedfs: S3Server, weed_bucket: str, aws_env, tmp_path) -> None:
    creds = seaweedfs.identities["no-access"]
    store = s3_store_as(seaweedfs, aws_env, f"s3://{weed_bucket}/data", creds)
    for call, permission in [
        (lambda: store.list(), "s3:ListBucket"),
        (lambda: store.get_bytes("a.txt"), "s3:GetObject"),
        (lambda: store.exists("a.txt"), "s3:GetObject"),
        (lambda: store.download("a.txt", tmp_path / "a.txt"), "s3:GetObject"),
        (lambda: store.sync_down("", tmp_path / "cache"), "s3:ListBucket"),
        (
            lambda: store.sync_down(
                "", tmp_path / "cache", objects=[ObjectInfo("a.txt", 1, md5(b"a"))]
            ),
            "s3:GetObject",
        ),
    ]:
        with pytest.raises(StorageError, match="access denied") as info:
            call()
        message = str(info.value)
        assert f"'s3://{weed_bucket}/data" in message and permission in message
        assert_clean(message, creds)
    assert not (tmp_path / "a.txt").exists()


def test_access_denied_on_write(seaweedfs: S3Server, weed_bucket: str, aws_env, tmp_path) -> None:
    creds = seaweedfs.identities["read-only"]
    store = s3_store_as(seaweedfs, aws_env, f"s3://{weed_bucket}/data", creds)
    assert store.get_bytes("a.txt") == b"a"
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f.txt").write_bytes(b"f")
    for call in [
        lambda: store.put_bytes("b.txt", b"b"),
        lambda: store.upload(tmp_path / "dir" / "f.txt", "f.txt"),
        lambda: store.put_dir(tmp_path / "dir", "out"),
    ]:
        with pytest.raises(StorageError, match="access denied while writing") as info:
            call()
        message = str(info.value)
        assert f"'s3://{weed_bucket}/data/" in message and "s3:PutObject" in message
        assert_clean(message, creds)
    assert [o.key for o in store.list()] == ["a.txt"]


def test_unreachable_endpoint(aws_env) -> None:
    aws_env(None, S3Credentials("some-key-id", "some-secret"))
    (port,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{port}"
    # No retry: botocore's backoff between eight would make this test slow, not better.
    store = S3Store("s3://bkt/data", StorageSpec(endpoint=endpoint), max_attempts=0)
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint") as info:
        store.list()
    assert repr(endpoint) in str(info.value) and "'s3://bkt/data'" in str(info.value)


def test_credentials_never_appear_in_messages_logs_or_reprs(
    seaweedfs: S3Server, weed_bucket: str, aws_env, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    uri = f"s3://{weed_bucket}/data"
    used = [
        seaweedfs.credentials,
        S3Credentials(seaweedfs.access_key, f"wrong-{uuid.uuid4().hex}"),
        S3Credentials(f"unknown{uuid.uuid4().hex[:8]}", seaweedfs.secret_key),
        seaweedfs.identities["no-access"],
        seaweedfs.identities["read-only"],
    ]
    calls = [
        ("list", ()),
        ("get_bytes", ("a.txt",)),
        ("get_bytes", ("missing.txt",)),
        ("exists", ("a.txt",)),
        ("put_bytes", ("b.txt", b"b")),
        ("sync_down", ("", tmp_path / "cache")),
        ("download", ("a.txt", tmp_path / "a.txt")),
    ]
    messages = []
    for creds in used:
        store = s3_store_as(seaweedfs, aws_env, uri, creds)
        messages += [repr(store), str(store), repr(vars(store))]
        for method, args in calls:
            try:
                getattr(store, method)(*args)
            except StorageError as exc:
                messages.append(str(exc))
    assert any("SignatureDoesNotMatch" in m for m in messages)
    assert any("access denied" in m for m in messages)
    records = caplog.records
    assert records, "botocore logs at DEBUG, so the check below has something to search"
    for creds in used:
        assert_clean("\n".join(messages), creds)
        # botocore's DEBUG lines show the Authorization header, which names the key id (never
        # the secret); our own lines and anything at INFO or above name neither.
        assert creds.secret_key not in caplog.text
        for record in records:
            if record.name.startswith("ict_trainer") or record.levelno >= logging.INFO:
                assert_clean(record.getMessage(), creds)


# -- configuration ------------------------------------------------------------------------------


def test_client_configuration(moto_s3: S3Server, aws_env) -> None:
    aws_env(moto_s3.endpoint, moto_s3.credentials)
    from_env = open_store("s3://bkt/x")
    assert isinstance(from_env, S3Store)
    assert from_env.client.meta.endpoint_url == moto_s3.endpoint
    config = from_env.client.meta.config
    # botocore's max_attempts counts retries; it reports the total, the first try included.
    assert config.retries == {"mode": "standard", "total_max_attempts": 9}
    assert config.s3 == {"addressing_style": "path"}
    assert config.max_pool_connections >= from_env.max_concurrency

    spec = StorageSpec(
        endpoint="http://s3.example:9000", region="eu-west-3", addressing_style="auto"
    )
    from_spec = open_store("s3://bkt/x", spec)
    assert isinstance(from_spec, S3Store)
    assert from_spec.client.meta.endpoint_url == "http://s3.example:9000"
    assert from_spec.client.meta.region_name == "eu-west-3"
    assert from_spec.client.meta.config.s3 == {"addressing_style": "auto"}


def test_open_store_and_locations(tmp_path: Path, aws_env, monkeypatch) -> None:
    aws_env(None, None)
    assert is_s3("s3://b/p") and is_s3("S3://b/p") and not is_s3(str(tmp_path))
    assert open_store("s3://bkt").uri == "s3://bkt"
    assert open_store("s3://bkt/a/b/").uri_of("c/d") == "s3://bkt/a/b/c/d"
    for bad, reason in [
        ("s3:///x", "names no bucket"),
        ("s3://bkt/a//b", "not a safe relative name"),
        ("s3://bkt/../b", "not a safe relative name"),
        ("gs://bkt/x", "unsupported location"),
    ]:
        with pytest.raises(StorageError, match=reason) as info:
            open_store(bad)
        assert repr(bad) in str(info.value)
    monkeypatch.setenv("HOME", str(tmp_path))
    home = open_store("~/data/")
    assert isinstance(home, LocalStore) and home.uri == str(tmp_path / "data")
    assert open_store(f"file://{tmp_path}/x").uri == str(tmp_path / "x")
    assert repr(home) == f"LocalStore({str(tmp_path / 'data')!r})"
