"""What deterministic augmentation costs: augmented images/s of the training stream with
stateless per-batch seeds (pipeline.epoch_stream) against a stateful RandomAffine in a parallel
map (how ict augmented before; not reproducible run to run). In-memory random images, so only
shuffling, batching and the affine resampling are measured.

    .venv/bin/python bench/augment_determinism.py [OLD_AUGMENT_PY]

OLD_AUGMENT_PY: the former augment.py (git show 42fbf7b:trainer/ict_trainer/augment.py).
"""

from __future__ import annotations

import importlib.util
import sys
import time

import numpy as np
import tensorflow as tf

from ict_api.spec import AugmentationSpec
from ict_trainer.augment import build_augmenter
from ict_trainer.pipeline import AUTOTUNE, epoch_stream, steps_per_epoch

IMAGES, SIZE, BATCH, EPOCHS = 512, 150, 32, 3


def rate(stream: tf.data.Dataset, steps: int) -> float:
    batches = iter(stream)
    next(batches)  # tracing and the first fill are not the steady state
    started, seen = time.monotonic(), 0
    for _ in range(steps):
        seen += int(next(batches)[0].shape[0])
    return seen / (time.monotonic() - started)


def main() -> None:
    pixels = np.random.default_rng(0).uniform(0, 255, (IMAGES, SIZE, SIZE, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((pixels, np.zeros((IMAGES, 1), "float32"))).cache()
    spec = AugmentationSpec(rotation_range=20, shear_range=0.2, zoom_range=0.2)
    steps = steps_per_epoch(IMAGES, BATCH) * EPOCHS
    rates = {
        "stateless": rate(epoch_stream(data, IMAGES, BATCH, 1, 0, build_augmenter(spec, 1)), steps)
    }
    if len(sys.argv) > 1:
        loaded = importlib.util.spec_from_file_location("old_augment", sys.argv[1])
        old = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(old)
        augmenter = old.build_augmenter(spec, 1)
        stream = (
            data.shuffle(IMAGES, seed=1)
            .batch(BATCH)
            .map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=AUTOTUNE)
            .repeat()
            .prefetch(AUTOTUNE)
        )
        rates["stateful"] = rate(stream, steps)
    print({name: round(value, 1) for name, value in rates.items()})


if __name__ == "__main__":
    main()
