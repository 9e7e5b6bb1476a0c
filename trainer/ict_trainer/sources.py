"""Where a run's inputs come from: a local folder, or a bucket mirrored into a local cache.

A bucket dataset is planned from its listing alone (classes, splits, ETags), so a run whose
bottleneck features are cached never downloads the images; the others download them once into
a cache keyed by key + ETag + size, and a re-run downloads only what changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ict_api.spec import ImageClassifierTrainingSpec
from ict_trainer.console import cache_root
from ict_trainer.data import Dataset, check_image, load_dataset, plan_dataset
from ict_trainer.errors import DataError, ModelError
from ict_trainer.features import dataset_fingerprint
from ict_trainer.progress import Reporter
from ict_trainer.storage import is_s3
from ict_trainer.stores import open_store

log = logging.getLogger(__name__)


def local_copy_dir(kind: str, uri: str, endpoint: str | None) -> Path:
    """A stable local folder for a remote location (endpoint included: two servers may share
    bucket names)."""
    digest = hashlib.sha256(f"{endpoint or ''}|{uri}".encode()).hexdigest()[:16]
    return cache_root() / kind / digest


class DataSource:
    def __init__(self, spec: ImageClassifierTrainingSpec, reporter: Reporter):
        self.uri, self.spec, self.reporter = spec.dataset.uri, spec, reporter
        self.split, self.seed = spec.dataset.validation_split, spec.training.seed
        self._fingerprint: list[list] | None = None
        if not is_s3(self.uri):
            self.dataset = load_dataset(Path(self.uri), self.split, self.seed)
            self.store, self.objects, self.listing, self.fetched = None, [], None, True
            return
        self.store = open_store(self.uri, spec.storage)
        # As the folder scan does: dot-names (.ict-cache at a bucket root, .DS_Store) are no data.
        self.objects = [o for o in self.store.list() if not _hidden(o.key.split("/"))]
        if not self.objects:
            raise DataError(
                f"dataset {self.uri!r} holds no objects. Upload the class folders there "
                "(e.g. aws s3 sync data/ <uri>/), or fix dataset.uri."
            )
        self.root = local_copy_dir("datasets", self.uri, spec.storage.endpoint)
        self.dataset = plan_dataset(self._keys(), self.root, self.split, self.seed, self.uri)
        self.listing = {self.root / o.key: (o.size, o.etag) for o in self.objects}
        self.fetched = False

    def _keys(self) -> list[str]:
        return [o.key for o in self.objects]

    def fingerprint(self) -> list[list]:
        """What the dataset's content is, from the listing (bucket) or file hashes (local)."""
        if self._fingerprint is None:
            self._fingerprint = dataset_fingerprint(self.dataset, self.listing)
        return self._fingerprint

    def fetch(self) -> Dataset:
        """Downloads what is missing or changed, then checks every file."""
        if not self.fetched:
            self.fingerprint()  # from the listing, before checks drop files
            stats = self.store.sync_down("", self.root, self.objects)
            self.reporter.emit(
                "download",
                uri=self.uri,
                downloaded=stats.downloaded,
                skipped=stats.skipped,
                bytes=stats.bytes,
                seconds=round(stats.seconds, 3),
            )
            self.dataset = plan_dataset(
                self._keys(), self.root, self.split, self.seed, self.uri, check=check_image
            )
            self.fetched = True
        return self.dataset

    def fetch_files(self, paths: list[Path]) -> None:
        """Downloads single files (the report's thumbnails) without the whole dataset."""
        for path in paths:
            if self.store is not None and not path.is_file():
                self.store.download(path.relative_to(self.root).as_posix(), path)


def _hidden(parts) -> bool:
    # '.' and '..' are not hidden names: the store refuses keys holding them, and must see them.
    return any(part.startswith(".") and part not in (".", "..") for part in parts)


def _location_parts(uri: str) -> tuple[str, ...]:
    """A location as comparable path segments: ('s3:', bucket, ...) or ('/', ...) resolved."""
    if is_s3(uri):
        return ("s3:", *(part for part in uri[5:].split("/") if part))
    path = uri.removeprefix("file://")
    return Path(os.path.realpath(os.path.expanduser(path))).parts


def _below(inner: str, outer: str) -> tuple[str, ...] | None:
    """inner's segments below outer (() when they are the same), or None when it is not inside."""
    inner_parts, outer_parts = _location_parts(inner), _location_parts(outer)
    if inner_parts[: len(outer_parts)] != outer_parts:
        return None
    return inner_parts[len(outer_parts) :]


def check_locations(dataset: str, output: str, cache: str | None) -> None:
    """Refuses an output or cache that the next run would read as data (a class named 'runs'
    holding plots), and a dataset that overwriting the output would delete. Dot-folders are
    never read as data, so a default cache at <bucket>/.ict-cache may sit in a bucket dataset."""
    for field, where in (("output.uri", output), ("cache.uri", cache)):
        below = _below(where, dataset) if where else None
        if below is not None and not _hidden(below):
            raise DataError(
                f"{field} {where!r} is inside dataset.uri {dataset!r}: the next run would take "
                f"{below[0] if below else where!r} for a class or its files for images. Put "
                f"{field} outside the dataset (or in a folder whose name starts with '.')."
            )
    if _below(dataset, output) is not None:
        raise DataError(
            f"dataset.uri {dataset!r} is inside output.uri {output!r}: --overwrite would delete "
            "it. Put the output somewhere else."
        )


def fetch_weights(spec: ImageClassifierTrainingSpec) -> str:
    """'imagenet', 'none', or a local path to the weights file (downloaded if remote)."""
    weights = spec.model.weights
    if weights in ("imagenet", "none") or not is_s3(weights):
        return weights
    folder, name = weights.rsplit("/", 1)
    store = open_store(folder, spec.storage)
    objects = [o for o in store.list() if o.key == name]
    if not objects:
        raise ModelError(
            f"weights file {weights!r} does not exist. Upload it there, or fix model.weights."
        )
    local = local_copy_dir("weights", weights, spec.storage.endpoint)
    store.sync_down("", local, objects)
    return str(local / name)
