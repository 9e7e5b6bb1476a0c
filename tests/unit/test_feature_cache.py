"""The bottleneck cache: what it stores, and that a damaged entry is a miss, never a crash."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from ict_trainer.features import FeatureCache
from ict_trainer.storage import LocalStore


def entry(features_dtype=np.float32) -> dict[str, np.ndarray]:
    return {
        "train_features": np.arange(6, dtype=np.float32).reshape(3, 2).astype(features_dtype),
        "train_labels": np.array([[0.0], [1.0], [1.0]], dtype=np.float32),
        "train_files": np.array(["train/a/1.jpg", "train/b/2.jpg", "train/b/3.jpg"]),
    }


def test_mixed_precision_features_are_stored_as_float32(tmp_path):
    cache = FeatureCache(LocalStore(str(tmp_path)))
    cache.save("k", entry(ml_dtypes.bfloat16), {"skipped": [["train/a/bad.jpg", "truncated"]]})
    loaded = cache.load("k")
    assert loaded["arrays"]["train_features"].dtype == np.float32
    np.testing.assert_array_equal(loaded["arrays"]["train_features"], entry()["train_features"])
    assert loaded["manifest"]["skipped"] == [["train/a/bad.jpg", "truncated"]]


@pytest.mark.parametrize(
    "damage",
    [
        # what the mixed-precision runs of before left: bfloat16 written by numpy as '|V2'
        lambda folder: np.save(
            folder / "train_features.npy", entry(ml_dtypes.bfloat16)["train_features"]
        ),
        lambda folder: (folder / "train_labels.npy").write_bytes(b"\x93NUMPY garbage"),
        lambda folder: (folder / "train_files.npy").unlink(),
        lambda folder: np.save(folder / "train_features.npy", np.zeros((2, 2), np.float32)),
        lambda folder: (folder / "manifest.json").write_text("{not json"),
    ],
    ids=["bfloat16-as-V2", "garbage-bytes", "missing-array", "wrong-shape", "bad-manifest"],
)
def test_an_unreadable_entry_is_a_miss_and_is_rewritten(tmp_path, damage, caplog):
    cache = FeatureCache(LocalStore(str(tmp_path)))
    cache.save("k", entry(), {})
    damage(tmp_path / "bottleneck" / "k")
    assert cache.load("k") is None
    assert "unreadable" in caplog.text
    cache.save("k", entry(), {})
    np.testing.assert_array_equal(
        cache.load("k")["arrays"]["train_labels"], entry()["train_labels"]
    )
