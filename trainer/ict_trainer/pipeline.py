"""tf.data pipelines: parallel decode and resize, cache, shuffle, batch, augment, prefetch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from ict_trainer.data import Sample

AUTOTUNE = tf.data.AUTOTUNE


def _decode_jpeg(raw: tf.Tensor, image_size: int) -> tf.Tensor:
    # libjpeg can decode at 1/2, 1/4 or 1/8 scale for a fraction of the cost: take the
    # smallest scale that still covers image_size (typical photos are 3x the training size).
    shape = tf.image.extract_jpeg_shape(raw)
    shortest = tf.minimum(shape[0], shape[1])
    ratios = (1, 2, 4, 8)
    index = tf.add_n([tf.cast(shortest // r >= image_size, tf.int32) for r in ratios[1:]])
    return tf.switch_case(
        index, [lambda r=r: tf.io.decode_jpeg(raw, channels=3, ratio=r) for r in ratios]
    )


def decode_image(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """File -> float32 HxWx3 in [0, 255], squashed to image_size (as flow_from_directory)."""
    raw = tf.io.read_file(path)
    image = tf.cond(
        tf.io.is_jpeg(raw),
        lambda: _decode_jpeg(raw, image_size),
        lambda: tf.io.decode_image(raw, channels=3, expand_animations=False),
    )
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def load_image(path: str, image_size: int) -> np.ndarray:
    return decode_image(tf.constant(str(path)), image_size).numpy()


def encode_labels(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Binary problems train one sigmoid unit on 0/1; others a softmax on one-hot rows."""
    labels = np.asarray(labels, dtype=np.int64)
    if num_classes == 2:
        return labels.astype(np.float32)[:, None]
    return np.eye(num_classes, dtype=np.float32)[labels]


def decode_labels(encoded: np.ndarray) -> np.ndarray:
    """Class indices of encode_labels' rows."""
    return encoded[:, 0].astype(int) if encoded.shape[1] == 1 else encoded.argmax(axis=1)


def image_dataset(
    samples: Sequence[Sample],
    num_classes: int,
    image_size: int,
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    augmenter: keras.Layer | None = None,
    with_labels: bool = True,
    first_epoch: int = 0,
) -> tf.data.Dataset:
    """Batches of (images, labels); decoded images are cached in memory after the first pass.

    With shuffle_seed: the endless training stream of epoch_stream, from first_epoch on.
    """
    paths = tf.constant([str(s.path) for s in samples])
    images = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: decode_image(p, image_size), num_parallel_calls=AUTOTUNE, deterministic=True
    )
    if with_labels:
        labels = tf.data.Dataset.from_tensor_slices(
            encode_labels([s.label for s in samples], num_classes)
        )
        dataset = tf.data.Dataset.zip(images, labels)
    else:
        dataset = images
    dataset = dataset.cache()
    if shuffle_seed is not None:
        return epoch_stream(dataset, len(samples), batch_size, shuffle_seed, first_epoch, augmenter)
    return dataset.batch(batch_size).prefetch(AUTOTUNE)


def steps_per_epoch(size: int, batch_size: int) -> int:
    return math.ceil(size / batch_size)


def epoch_stream(
    dataset: tf.data.Dataset,
    size: int,
    batch_size: int,
    seed: int,
    first_epoch: int = 0,
    augmenter: keras.Layer | None = None,
) -> tf.data.Dataset:
    """Shuffled (and augmented) batches of epochs first_epoch, first_epoch + 1, ... without end;
    fit takes steps_per_epoch of them per epoch.

    Epoch e's order and each of its batches' augmentation are drawn from (seed, e, batch) alone,
    by seeded shuffles and stateless random ops: neither the parallel map's scheduling nor how
    the run got to epoch e (uninterrupted or resumed) changes what it sees.
    """

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        batches = dataset.shuffle(size, seed=seed * 1_000_003 + epoch).batch(batch_size)
        if augmenter is None:
            return batches

        def augment(index: tf.Tensor, batch: tuple) -> tuple:
            batch_seed = tf.stack([tf.constant(seed, tf.int64), epoch * 2**20 + index])
            return augmenter(batch[0], training=True, seed=batch_seed), batch[1]

        return batches.enumerate().map(augment, num_parallel_calls=AUTOTUNE)

    stream = tf.data.Dataset.counter(first_epoch).flat_map(one_epoch)
    return stream.prefetch(AUTOTUNE)


def array_dataset(
    features: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
    first_epoch: int = 0,
) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    if shuffle_seed is not None:
        return epoch_stream(dataset, len(features), batch_size, shuffle_seed, first_epoch)
    return dataset.batch(batch_size).prefetch(AUTOTUNE)
