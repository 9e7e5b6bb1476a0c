"""tf.data pipelines: parallel decode and resize, cache, shuffle, batch, augment, prefetch."""

from __future__ import annotations

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


def image_dataset(
    samples: Sequence[Sample],
    num_classes: int,
    image_size: int,
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    augmenter: keras.Sequential | None = None,
    with_labels: bool = True,
) -> tf.data.Dataset:
    """Batches of (images, labels); decoded images are cached in memory after the first pass."""
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
        dataset = dataset.shuffle(len(samples), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augmenter is not None:
        dataset = dataset.map(
            lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=AUTOTUNE
        )
    return dataset.prefetch(AUTOTUNE)


def array_dataset(
    features: np.ndarray, labels: np.ndarray, batch_size: int, shuffle_seed: int | None = None
) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(features), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(AUTOTUNE)
