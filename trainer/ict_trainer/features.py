"""Bottleneck features: computed once per (dataset content, backbone, weights, size, extra
sizes, pooling, augmented passes).

An entry is bottleneck/<key>/ holding one .npy per array and manifest.json. The manifest is
written last, so an entry without one is incomplete and is never read. Features are stored as
float32 whatever precision computed them (numpy writes bfloat16 as raw '|V2' bytes that nothing
can read back), and an entry that cannot be read as the manifest says is a miss, rewritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from ict_trainer.data import Dataset
from ict_trainer.errors import StorageError
from ict_trainer.scratch import scratch_dir
from ict_trainer.storage import content_etag

log = logging.getLogger(__name__)

# Bump when decoding, resizing or pooling changes what features a given image yields.
PREPROCESSING_VERSION = 2
MANIFEST = "manifest.json"


def _stored(array: np.ndarray) -> bool:
    """What an entry may hold: float32 features and labels, unicode file names."""
    return array.dtype == np.float32 or array.dtype.kind == "U"


def dataset_fingerprint(
    dataset: Dataset, listing: dict[Path, tuple[int, str]] | None = None
) -> list[list]:
    """(split, class, relative path, size, content tag) of every image, in split order.

    For a bucket dataset size and ETag come from its listing (nothing need be downloaded);
    for local files, the file's size and md5.
    """
    rows = []
    for split, samples in (("train", dataset.train), ("validation", dataset.validation)):
        for sample in samples:
            size, tag = (listing or {}).get(sample.path) or (
                sample.path.stat().st_size,
                content_etag(sample.path),
            )
            relative = sample.path.relative_to(dataset.root).as_posix()
            rows.append([split, dataset.class_names[sample.label], relative, size, tag])
    return rows


def fingerprint_digest(fingerprint: list[list]) -> str:
    """One string for what the images are (resume checks that the data did not change)."""
    encoded = json.dumps(fingerprint, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def cache_key(
    fingerprint: list[list],
    *,
    backbone: str,
    alpha: float,
    weights: str,
    image_size: int,
    pooling: str,
    feature_passes: int = 0,
    augmentation: dict | None = None,
    feature_scales: list[int] | None = None,
) -> str:
    """The entry's name: a digest of everything its features depend on. `augmentation` (the
    augmentation options and the seed that drew them) matters only with feature_passes > 0,
    `feature_scales` (extra sizes, in the order their features are concatenated) only when
    given: keys without passes or scales are those of before. The compute precision is left out on
    purpose: features are stored as float32 whatever computed them, and a laptop's float32
    run reusing what a GPU's float16 run extracted is worth more than the last bits."""
    material = {
        "images": fingerprint,
        "backbone": backbone,
        "alpha": alpha,
        "weights": weights,
        "imageSize": image_size,
        "pooling": pooling,
        "preprocessing": PREPROCESSING_VERSION,
    }
    if feature_passes:
        material["featurePasses"] = {"passes": feature_passes, "augmentation": augmentation}
    if feature_scales:
        material["featureScales"] = list(feature_scales)
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


class FeatureCache:
    """Feature arrays in a Store (a local folder or a bucket prefix)."""

    def __init__(self, store):
        self.store = store

    def _prefix(self, key: str) -> str:
        return f"bottleneck/{key}"

    def uri(self, key: str) -> str:
        return self.store.uri_of(self._prefix(key))

    def load(self, key: str) -> dict | None:
        """The entry's arrays and manifest, or None when it is missing or unreadable."""
        prefix = self._prefix(key)
        if not self.store.exists(f"{prefix}/{MANIFEST}"):
            return None
        try:
            manifest = json.loads(self.store.get_bytes(f"{prefix}/{MANIFEST}"))
            arrays = {}
            for name, shape in manifest["arrays"].items():
                array = np.load(io.BytesIO(self.store.get_bytes(f"{prefix}/{name}.npy")))
                if list(array.shape) != shape or not _stored(array):
                    raise ValueError(f"{name}: {array.dtype} {list(array.shape)}, manifest {shape}")
                arrays[name] = array
        except (ValueError, KeyError, TypeError, EOFError, OSError, StorageError) as exc:
            # Damage of any kind (bytes, JSON, dtype, shape) only costs computing it again.
            log.warning(
                "bottleneck cache entry %s is unreadable (%s): recomputing", self.uri(key), exc
            )
            return None
        log.info("bottleneck features found at %s", self.uri(key))
        return {"arrays": arrays, "manifest": manifest}

    def save(self, key: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
        with scratch_dir("features") as staging:
            for name, array in arrays.items():
                if not _stored(array):  # bfloat16 or float16 features of mixed precision
                    array = np.asarray(array, dtype=np.float32)
                np.save(staging / f"{name}.npy", array)
            manifest = {
                "arrays": {name: list(array.shape) for name, array in arrays.items()},
                "key": key,
                **meta,
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
            self.store.put_dir(staging, self._prefix(key), last=[MANIFEST])
        log.info("bottleneck features saved to %s", self.uri(key))
