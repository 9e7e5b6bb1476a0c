"""One interface for a location that is either a local folder or s3://bucket/prefix.

Keys are '/'-separated names relative to the store's root. A prefix names a folder: list("train")
returns train/... but never trainer/.... Every failure is a StorageError whose message names the
location and the fix; credentials never appear in messages, logs or reprs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ict_trainer.errors import StorageError

log = logging.getLogger(__name__)

SYNC_INDEX = ".ict-sync.json"
TMP_PREFIX = ".ict-tmp-"
_INDEX_VERSION = 1

# (key relative to the store root, size if known, local destination)
DownloadJob = tuple[str, int | None, Path]


@dataclass(frozen=True)
class ObjectInfo:
    """key: relative to the store's root, '/'-separated. etag: the S3 ETag without quotes; for a
    local file the hex md5 of its content (what S3 gives for a single-part upload)."""

    key: str
    size: int
    etag: str


@dataclass
class SyncStats:
    """What sync_down did; removed counts files of earlier syncs whose object is gone."""

    downloaded: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0
    removed: int = 0


@dataclass
class UploadStats:
    """What put_dir did; skipped counts files whose object already held their content."""

    uploaded: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0


def is_s3(uri: str) -> bool:
    return uri[:5].lower() == "s3://"


def content_etag(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _is_reserved(name: str) -> bool:
    return name == SYNC_INDEX or name.startswith(TMP_PREFIX)


def check_key(key: str, root: str, *, allow_empty: bool = False) -> str:
    """Return key when it is a safe relative name below root; raise StorageError otherwise.

    S3 accepts any string as a key, so a listing can hold names that would escape a local
    folder ('../x', '/etc/x') or that two file systems read differently ('a\\b', 'a//b').
    """
    if key == "" and allow_empty:
        return key
    segments = key.split("/")
    if (
        not key
        or "\\" in key
        or "\x00" in key
        or any(s in ("", ".", "..") for s in segments)
        or any(_is_reserved(s) for s in segments)
    ):
        raise StorageError(
            f"key {key!r} under {root!r} is not a safe relative name: keys must be "
            "'/'-separated without a leading '/', '.' or '..' segments, empty segments or "
            f"backslashes, and must not use the reserved names {SYNC_INDEX!r} or "
            f"{TMP_PREFIX + '*'!r}; rename the object"
        )
    return key


def join_key(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix and key else prefix or key


def temp_path(dest: Path) -> Path:
    # Same folder as dest, so that os.replace is a rename within one file system.
    return dest.with_name(f"{TMP_PREFIX}{dest.name}.{uuid.uuid4().hex[:12]}")


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    # No fsync: the promise is to concurrent readers and interrupted writers, not to power loss;
    # every file written here can be fetched or computed again.
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _os_error(exc: OSError, verb: str, target: str, fix: str = "") -> StorageError:
    reason = exc.strerror or type(exc).__name__
    return StorageError(f"cannot {verb} {target!r}: {reason}{'; ' + fix if fix else ''}")


class Store(ABC):
    """A local folder or an S3 prefix; both implementations behave the same."""

    uri: str

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    @abstractmethod
    def _join(self, key: str) -> str:
        """Full URI of key, without checking it (for messages)."""

    def uri_of(self, key: str) -> str:
        return self._join(self._prefix(key))

    def _key(self, key: str) -> str:
        return check_key(key, self.uri)

    def _prefix(self, prefix: str) -> str:
        return check_key(prefix.rstrip("/"), self.uri, allow_empty=True)

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    def download(self, key: str, path: Path) -> None:
        _, error = self._download_many([(self._key(key), None, Path(path))])
        if error is not None:
            raise error

    def upload(self, path: Path, key: str) -> None:
        self._upload_many([(Path(path), self._key(key))])

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Removes one object; a missing one is not an error."""

    @abstractmethod
    def _download_many(self, jobs: list[DownloadJob]) -> tuple[list[DownloadJob], Exception | None]:
        """Fetch jobs in parallel, each atomically; return those that succeeded and the first
        failure (a StorageError), so that the caller can record the successes before raising."""

    @abstractmethod
    def _upload_many(self, jobs: list[tuple[Path, str]]) -> None:
        """Upload (local file, key) pairs in parallel; return once all have completed."""

    def _unchanged(self, jobs: list[tuple[Path, str]], prefix: str) -> set[str]:
        """Keys of jobs (all below prefix) whose object already holds the file's content: none
        here, where writing a file costs what comparing it would."""
        return set()

    def put_dir(self, local_dir: Path, prefix: str = "", last: Sequence[str] = ()) -> UploadStats:
        """Uploads every file below local_dir to prefix/, the `last` ones after all others.
        Files whose object already holds their content are not uploaded again (the `last`
        ones always are: they announce a complete upload)."""
        started = time.monotonic()
        local_dir = Path(local_dir)
        prefix = self._prefix(prefix)
        if not local_dir.is_dir():
            raise StorageError(
                f"cannot upload {str(local_dir)!r} to {self._join(prefix)!r}: it is not a folder"
            )
        last_names = [check_key(name, str(local_dir)) for name in last]
        for name in last_names:
            if not (local_dir / name).is_file():
                raise StorageError(
                    f"cannot upload {str(local_dir / name)!r} last: no such file in "
                    f"{str(local_dir)!r}; write it before calling put_dir"
                )
        try:
            files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        except OSError as exc:
            raise _os_error(exc, "read", str(local_dir)) from exc
        first: list[tuple[Path, str]] = []
        for path in files:
            rel = path.relative_to(local_dir).as_posix()
            if any(_is_reserved(part) for part in rel.split("/")) or rel in last_names:
                continue
            first.append((path, join_key(prefix, check_key(rel, str(local_dir)))))
        unchanged = self._unchanged(first, prefix)
        jobs = [job for job in first if job[1] not in unchanged]
        self._upload_many(jobs)
        # The `last` files (manifests) announce a complete upload, so they start only after
        # every other upload has completed, one by one in the order given.
        for name in last_names:
            self.upload(local_dir / name, join_key(prefix, name))
            jobs.append((local_dir / name, name))
        stats = UploadStats(
            uploaded=len(jobs),
            skipped=len(unchanged),
            bytes=sum(path.stat().st_size for path, _ in jobs),
            seconds=round(time.monotonic() - started, 3),
        )
        log.debug(  # a run reports its publish as an event; this is for --verbose
            "put %s to %s: %d written (%d bytes), %d unchanged, %.2f s",
            local_dir,
            self._join(prefix),
            stats.uploaded,
            stats.bytes,
            stats.skipped,
            stats.seconds,
        )
        return stats

    def sync_down(
        self, prefix: str, local_dir: Path, objects: list[ObjectInfo] | None = None
    ) -> SyncStats:
        started = time.monotonic()
        prefix = self._prefix(prefix)
        local_dir = Path(local_dir)
        if objects is None:
            objects = self.list(prefix)
        wanted: dict[str, ObjectInfo] = {}
        for obj in objects:
            self._key(obj.key)
            if prefix and not obj.key.startswith(prefix + "/"):
                raise StorageError(
                    f"object {self._join(obj.key)!r} is not below {self._join(prefix)!r}; "
                    "pass only objects listed under the prefix being synced"
                )
            wanted[obj.key[len(prefix) + 1 :] if prefix else obj.key] = obj
        _refuse_file_folder_clash(wanted, self._join(prefix))
        try:
            local_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_error(exc, "create", str(local_dir)) from exc
        index_path = local_dir / SYNC_INDEX
        old = _read_index(index_path)
        index: dict[str, dict] = {}
        stats = SyncStats()
        jobs: list[DownloadJob] = []
        for rel, obj in sorted(wanted.items()):
            dest = local_dir / rel
            entry = {"etag": obj.etag, "size": obj.size}
            if old.get(rel) == entry and _has_size(dest, obj.size):
                stats.skipped += 1
                index[rel] = entry
            else:
                jobs.append((obj.key, obj.size, dest))
        for rel in sorted(old.keys() - wanted.keys()):
            stats.removed += _remove_synced(local_dir, rel)
        done: list[DownloadJob] = []
        error: Exception | None = None
        try:
            if jobs:
                done, error = self._download_many(jobs)
        finally:
            for _, size, dest in done:
                rel = dest.relative_to(local_dir).as_posix()
                index[rel] = {"etag": wanted[rel].etag, "size": size}
                stats.downloaded += 1
                stats.bytes += size or 0
            if index != old:
                _write_index(index_path, self._join(prefix), index)
        stats.seconds = time.monotonic() - started
        log.info(
            "synced %s to %s: %d downloaded (%d bytes), %d unchanged, %d removed, %.2f s",
            self._join(prefix),
            local_dir,
            stats.downloaded,
            stats.bytes,
            stats.skipped,
            stats.removed,
            stats.seconds,
        )
        if error is not None:
            raise error
        return stats


def _refuse_file_folder_clash(wanted: dict[str, ObjectInfo], where: str) -> None:
    # S3 can hold both "a" and "a/b"; a file system cannot.
    for rel in wanted:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in wanted:
                raise StorageError(
                    f"{where!r} holds both an object {parent!r} and objects below "
                    f"{parent + '/'!r}, which cannot both be files locally; rename one of them"
                )


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.is_file() and path.stat().st_size == size
    except OSError:
        return False


def _read_index(path: Path) -> dict[str, dict]:
    # A missing or unreadable index only costs downloads, never correctness.
    try:
        data = json.loads(path.read_text())
        if data.get("version") == _INDEX_VERSION and isinstance(data.get("objects"), dict):
            return data["objects"]
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _write_index(path: Path, source: str, objects: dict[str, dict]) -> None:
    body = {"version": _INDEX_VERSION, "source": source, "objects": dict(sorted(objects.items()))}
    try:
        atomic_write_bytes(path, json.dumps(body, indent=0).encode())
    except OSError as exc:
        raise _os_error(exc, "write", str(path)) from exc


def _remove_synced(local_dir: Path, rel: str) -> int:
    """Delete a file an earlier sync wrote whose object is gone, and folders it leaves empty."""
    try:
        check_key(rel, str(local_dir))
    except StorageError:
        return 0  # a tampered index never makes us delete outside local_dir
    path = local_dir / rel
    if not path.is_file():
        return 0
    try:
        path.unlink()
        parent = path.parent
        while parent != local_dir and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    except OSError as exc:
        raise _os_error(exc, "remove", str(path), "its object no longer exists") from exc
    return 1


class LocalStore(Store):
    """A folder on the local file system (or a mounted volume)."""

    def __init__(self, uri: str, *, max_workers: int = 8):
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        self.root = Path(os.path.abspath(os.path.expanduser(path)))
        self.uri = str(self.root)
        self.max_workers = max_workers

    def _join(self, key: str) -> str:
        return str(self.root / key) if key else self.uri

    def _path(self, key: str) -> Path:
        return self.root / self._key(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        prefix = self._prefix(prefix)
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []

        def fail(exc: OSError) -> None:
            raise exc

        out = []
        try:
            for dirpath, dirnames, filenames in os.walk(base, onerror=fail):
                dirnames[:] = [d for d in dirnames if not _is_reserved(d)]
                for name in filenames:
                    if _is_reserved(name):
                        continue
                    path = Path(dirpath, name)
                    out.append(
                        ObjectInfo(
                            key=path.relative_to(self.root).as_posix(),
                            size=path.stat().st_size,
                            etag=content_etag(path),
                        )
                    )
        except OSError as exc:
            raise _os_error(exc, "list", self._join(prefix)) from exc
        return sorted(out, key=lambda o: o.key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise StorageError(
                f"{str(path)!r} does not exist; check the path and that it was written"
            ) from exc
        except OSError as exc:
            raise _os_error(exc, "read", str(path)) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise _os_error(exc, "write", str(path)) from exc

    def delete_prefix(self, prefix: str) -> None:
        prefix = self._prefix(prefix)
        target = self.root / prefix if prefix else self.root
        try:
            if not target.is_dir():
                return
            if prefix:
                shutil.rmtree(target)
                return
            # The root itself stays: it may be a mount point or a folder the user made.
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        except OSError as exc:
            raise _os_error(exc, "delete", str(target)) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise _os_error(exc, "delete", str(path)) from exc

    def _copy(self, src: Path, dest: Path, missing: str) -> None:
        try:
            atomic_copy(src, dest)
        except (FileNotFoundError, IsADirectoryError) as exc:
            if not src.is_file():
                raise StorageError(
                    f"{str(src)!r} does not exist; check the path and that it was {missing}"
                ) from exc
            raise _os_error(exc, "write", str(dest)) from exc
        except OSError as exc:
            raise _os_error(exc, f"copy {str(src)!r} to", str(dest)) from exc

    def _download_many(self, jobs: list[DownloadJob]) -> tuple[list[DownloadJob], Exception | None]:
        def one(job: DownloadJob) -> Exception | None:
            try:
                self._copy(self.root / job[0], job[2], "written")
            except StorageError as exc:
                return exc
            return None

        with ThreadPoolExecutor(max_workers=max(1, min(self.max_workers, len(jobs)))) as pool:
            results = list(pool.map(one, jobs))
        done = [job for job, err in zip(jobs, results, strict=True) if err is None]
        return done, next((err for err in results if err is not None), None)

    def _upload_many(self, jobs: list[tuple[Path, str]]) -> None:
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(jobs))) as pool:
            futures = [
                pool.submit(self._copy, src, self.root / key, "created") for src, key in jobs
            ]
        for future in futures:
            future.result()
