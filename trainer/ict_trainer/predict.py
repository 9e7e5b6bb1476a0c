"""Using a trained model (`ict predict`) and looking at augmentation (`ict preview`)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ict_api.defaults import resolve_defaults
from ict_api.spec import ImageClassifierTrainingSpec
from ict_trainer import report
from ict_trainer.augment import build_augmenter
from ict_trainer.data import IMAGE_SUFFIXES, check_image, scan
from ict_trainer.errors import DataError, IctError, ModelError
from ict_trainer.pipeline import AUTOTUNE, decode_image, load_image
from ict_trainer.progress import Reporter
from ict_trainer.sources import DataSource, local_copy_dir
from ict_trainer.storage import is_s3
from ict_trainer.stores import open_store

log = logging.getLogger(__name__)


def class_names_for(model_path: Path, num_outputs: int) -> list[str]:
    metrics = model_path.parent / "metrics.json"
    if metrics.is_file():
        return json.loads(metrics.read_text())["classNames"]
    return [str(index) for index in range(max(2, num_outputs))]


def local_model(uri: str) -> Path:
    """The model file, downloaded with its metrics.json (class names) when it is in a bucket."""
    if not is_s3(uri):
        return Path(uri)
    folder, name = uri.rsplit("/", 1)
    store = open_store(folder)
    local = local_copy_dir("models", uri, os.environ.get("AWS_ENDPOINT_URL"))
    if not store.exists(name):
        raise ModelError(f"model {uri!r} does not exist. Give the model.keras of a run.")
    for key in (name, "metrics.json"):
        if store.exists(key):
            store.download(key, local / key)
    return local / name


def load_model(path: Path) -> keras.Model:
    if not path.is_file():
        raise ModelError(f"model {str(path)!r} does not exist. Give the model.keras of a run.")
    try:
        return keras.saving.load_model(path)
    except (ValueError, OSError) as exc:
        raise ModelError(
            f"{str(path)!r} is not a Keras model ({exc}). Give the model.keras of a run."
        ) from exc


def image_files(arguments: list[str]) -> list[tuple[str, Path]]:
    """(name to print, local file) of every image the arguments name: files, folders searched
    recursively for the trainer's accepted types, s3:// objects or prefixes (downloaded).

    A named file that is no usable image is refused; one found in a folder is skipped, with a
    warning, as the trainer does."""
    found = []
    for argument in arguments:
        if is_s3(argument):
            found += _bucket_images(argument)
        elif Path(argument).is_dir():
            folder = Path(argument)
            found += _usable(
                [(str(folder / key), folder / key) for key in _image_keys(scan(folder))]
            )
        else:
            path = Path(argument)
            problem = "no such file" if not path.is_file() else check_image(path)
            if problem:
                raise DataError(f"cannot classify {argument!r}: {problem}. Give image files.")
            found.append((argument, path))
    if not found:
        raise DataError(
            f"no images in {arguments!r} (accepted: {', '.join(sorted(IMAGE_SUFFIXES))}). Give "
            "image files or folders holding some."
        )
    return found


def _image_keys(keys: list[str]) -> list[str]:
    return sorted(key for key in keys if Path(key).suffix.lower() in IMAGE_SUFFIXES)


def _usable(candidates: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    usable = []
    for name, path in candidates:
        problem = check_image(path)
        if problem:
            log.warning("skipping %s: %s", name, problem)
        else:
            usable.append((name, path))
    return usable


def _bucket_images(uri: str) -> list[tuple[str, Path]]:
    local = local_copy_dir("predict", uri, os.environ.get("AWS_ENDPOINT_URL"))
    folder, name = uri.rstrip("/").rsplit("/", 1)
    parent = open_store(folder)
    if "/" in uri[5:].rstrip("/") and parent.exists(name):  # one object
        parent.download(name, local / name)
        problem = check_image(local / name)
        if problem:
            raise DataError(f"cannot classify {uri!r}: {problem}. Give image files.")
        return [(uri, local / name)]
    store = open_store(uri)
    listed = store.list()
    wanted = set(_image_keys([o.key for o in listed]))
    objects = [o for o in listed if o.key in wanted]
    store.sync_down("", local, objects)
    return _usable([(f"{uri.rstrip('/')}/{o.key}", local / o.key) for o in objects])


def predict_files(
    model_uri: str, images: list[str], classes: list[str] | None = None, batch_size: int = 32
) -> Iterator[dict]:
    """One row per image, yielded batch by batch: memory stays flat in the number of images."""
    # The images are checked first: a bad file is named at once, before the model loads.
    files = image_files(images)
    model_path = local_model(model_uri)
    model = load_model(model_path)
    size = int(model.input_shape[1])
    outputs = int(model.output_shape[-1])
    names = classes or class_names_for(model_path, outputs)
    if len(names) != (2 if outputs == 1 else outputs):
        raise IctError(
            f"{len(names)} class names {names!r} for a model with {outputs} output(s). Give "
            "one name per class with --classes."
        )
    paths = tf.data.Dataset.from_tensor_slices([str(path) for _, path in files])
    batches = paths.map(lambda p: decode_image(p, size), num_parallel_calls=AUTOTUNE)
    batches = batches.batch(batch_size).prefetch(1)
    shown = [name for name, _ in files]
    start = 0
    for batch in batches:
        probabilities = np.asarray(model.predict_on_batch(batch))
        if outputs == 1:  # one sigmoid unit: the probability of class 1
            probabilities = np.concatenate([1 - probabilities, probabilities], axis=1)
        for image, row in zip(
            shown[start : start + len(probabilities)], probabilities, strict=True
        ):
            best = int(np.argmax(row))
            yield {
                "image": image,
                "class": names[best],
                "probability": round(float(row[best]), 6),
                "probabilities": {
                    name: round(float(p), 6) for name, p in zip(names, row, strict=True)
                },
            }
        start += len(probabilities)


def write_preview(
    spec: ImageClassifierTrainingSpec, path: Path, images: int, variants: int
) -> Path:
    """One row per training image: the original, then `variants` augmented copies."""
    dataset = DataSource(spec, Reporter(json_lines=False)).fetch()
    size = resolve_defaults(spec).model.input_size
    augmenter = build_augmenter(spec.augmentation, spec.training.seed)
    # Take images round-robin over classes so that every class shows up.
    by_class = [[s for s in dataset.train if s.label == k] for k in range(len(dataset.class_names))]
    chosen = [
        group[i] for i in range(max(map(len, by_class))) for group in by_class if i < len(group)
    ][:images]
    cells, captions = [], []
    for sample in chosen:
        original = load_image(sample.path, size)
        copies = np.repeat(original[None], variants, axis=0)
        augmented = augmenter(copies, training=True).numpy() if augmenter else copies
        cells.extend([original, *augmented])
        name = dataset.class_names[sample.label]
        captions.extend([f"{name}: {sample.path.name}", *["augmented"] * variants])
    return report.image_grid(
        [np.clip(c, 0, 255).astype(np.uint8) for c in cells],
        path,
        columns=variants + 1,
        captions=captions,
    )
