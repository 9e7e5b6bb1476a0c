"""tf.data pipelines: parallel decode and resize, cache (memory or disk), shuffle, batch, augment,
prefetch."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from ict_api.spec import ImageCache
from ict_trainer.console import cache_root
from ict_trainer.data import Sample

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE
# Part of every disk cache file's name: bump it when decode_image or cached_image changes.
CACHE_VERSION = 1


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


def cached_image(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """decode_image rounded to uint8: what the image caches hold (a quarter of float32's bytes;
    a JPEG's pixels are 8-bit to begin with)."""
    return tf.cast(tf.round(decode_image(path, image_size)), tf.uint8)


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
    cache: ImageCache = ImageCache.MEMORY,
) -> tf.data.Dataset:
    """Batches of (float32 images, labels), decoded once and cached (in memory or on disk, the
    same uint8 pixels either way); without labels, images decoded in file order, not cached
    (predictions and features pass once).

    With shuffle_seed: the endless training stream of epoch_stream, from first_epoch on.
    """
    paths = [str(s.path) for s in samples]
    if not with_labels:
        return (
            tf.data.Dataset.from_tensor_slices(tf.constant(paths))
            .map(lambda p: decode_image(p, image_size), num_parallel_calls=AUTOTUNE)
            .batch(batch_size)
            .prefetch(AUTOTUNE)
        )
    labels = tf.data.Dataset.from_tensor_slices(
        encode_labels([s.label for s in samples], num_classes)
    )
    if cache is ImageCache.DISK:
        # The shuffle buffer holds file names, not pixels: RAM stays flat with the dataset.
        files = tf.data.Dataset.from_tensor_slices(disk_cache(paths, image_size))
        dataset, load = tf.data.Dataset.zip(files, labels), _disk_loader(image_size)
    else:
        images = tf.data.Dataset.from_tensor_slices(tf.constant(paths)).map(
            lambda p: cached_image(p, image_size), num_parallel_calls=AUTOTUNE
        )
        dataset, load = tf.data.Dataset.zip(images, labels).cache(), None
    if shuffle_seed is not None:
        return epoch_stream(
            dataset, len(samples), batch_size, shuffle_seed, first_epoch, augmenter, load
        )
    if load is not None:
        dataset = dataset.map(load, num_parallel_calls=AUTOTUNE)
    return dataset.batch(batch_size).map(_float_images).prefetch(AUTOTUNE)


def _float_images(images: tf.Tensor, labels: tf.Tensor) -> tuple:
    return tf.cast(images, tf.float32), labels


def _disk_loader(image_size: int):
    def load(file: tf.Tensor, label: tf.Tensor) -> tuple:
        pixels = tf.io.decode_raw(tf.io.read_file(file), tf.uint8)
        return tf.reshape(pixels, (image_size, image_size, 3)), label

    return load


def disk_cache(paths: Sequence[str], image_size: int) -> list[str]:
    """The cache file of each image, decoding (in parallel, a batch in RAM at a time) the ones
    not there yet.

    A file is named after the image's resolved path, size, modification time, imageSize and
    CACHE_VERSION, so an edited image or another size never reads stale pixels; each is
    written under a temporary name and renamed, so concurrent or killed runs leave whole files.
    """
    folder = cache_root() / "images" / f"{image_size}px"
    folder.mkdir(parents=True, exist_ok=True)
    files = [str(folder / f"{_cache_name(path, image_size)}.u8") for path in paths]
    missing = [(p, f) for p, f in zip(paths, files, strict=True) if not os.path.exists(f)]
    if missing:
        log.info("decoding %d image(s) into the disk cache %s", len(missing), folder)
        decoded = (
            tf.data.Dataset.from_tensor_slices(tf.constant([p for p, _ in missing]))
            .map(lambda p: cached_image(p, image_size), num_parallel_calls=AUTOTUNE)
            .prefetch(AUTOTUNE)
        )
        for (_, file), pixels in zip(missing, decoded.as_numpy_iterator(), strict=True):
            partial = f"{file}.{os.getpid()}.part"
            pixels.tofile(partial)
            os.replace(partial, file)
    return files


def _cache_name(path: str, image_size: int) -> str:
    stat = os.stat(path)
    material = f"{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{image_size}"
    return hashlib.sha256(f"{material}|{CACHE_VERSION}".encode()).hexdigest()[:32]


def steps_per_epoch(size: int, batch_size: int) -> int:
    return math.ceil(size / batch_size)


def epoch_stream(
    dataset: tf.data.Dataset,
    size: int,
    batch_size: int,
    seed: int,
    first_epoch: int = 0,
    augmenter: keras.Layer | None = None,
    load: Callable | None = None,
) -> tf.data.Dataset:
    """Shuffled (and augmented) batches of epochs first_epoch, first_epoch + 1, ... without end;
    fit takes steps_per_epoch of them per epoch.

    Epoch e's order and each of its batches' augmentation are drawn from (seed, e, batch) alone,
    by seeded shuffles and stateless random ops: neither the parallel map's scheduling nor how
    the run got to epoch e (uninterrupted or resumed) changes what it sees. `load` maps each
    element after the shuffle (the disk cache: names are shuffled, then read), so a seed gives
    the same order whatever is shuffled. Images come out float32.
    """

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        shuffled = dataset.shuffle(size, seed=seed * 1_000_003 + epoch)
        if load is not None:
            shuffled = shuffled.map(load, num_parallel_calls=AUTOTUNE)
        batches = shuffled.batch(batch_size)
        if augmenter is None:
            return batches.map(_float_images)

        def augment(index: tf.Tensor, batch: tuple) -> tuple:
            batch_seed = tf.stack([tf.constant(seed, tf.int64), epoch * 2**20 + index])
            images = tf.cast(batch[0], tf.float32)
            return augmenter(images, training=True, seed=batch_seed), batch[1]

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
