"""Using a trained model (`ict predict`) and looking at augmentation (`ict preview`)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from ict_api.defaults import resolve_defaults
from ict_api.spec import ImageClassifierTrainingSpec
from ict_trainer import report
from ict_trainer.augment import build_augmenter
from ict_trainer.data import check_image
from ict_trainer.errors import DataError, IctError, ModelError
from ict_trainer.pipeline import load_image
from ict_trainer.progress import Reporter
from ict_trainer.sources import DataSource


def class_names_for(model_path: Path, num_outputs: int) -> list[str]:
    metrics = model_path.parent / "metrics.json"
    if metrics.is_file():
        return json.loads(metrics.read_text())["classNames"]
    return [str(index) for index in range(max(2, num_outputs))]


def load_model(path: Path) -> keras.Model:
    if not path.is_file():
        raise ModelError(f"model {str(path)!r} does not exist. Give the model.keras of a run.")
    try:
        return keras.saving.load_model(path)
    except (ValueError, OSError) as exc:
        raise ModelError(
            f"{str(path)!r} is not a Keras model ({exc}). Give the model.keras of a run."
        ) from exc


def predict_files(model_path: Path, images: list[Path], classes: list[str] | None = None):
    # Headers only, before the model loads: a bad file is named at once, whatever its size.
    for path in images:
        problem = "it does not exist" if not path.is_file() else check_image(path)
        if problem:
            raise DataError(f"cannot classify {str(path)!r}: {problem}. Give image files.")
    model = load_model(model_path)
    size = int(model.input_shape[1])
    outputs = int(model.output_shape[-1])
    names = classes or class_names_for(model_path, outputs)
    if len(names) != (2 if outputs == 1 else outputs):
        raise IctError(
            f"{len(names)} class names {names!r} for a model with {outputs} output(s). Give "
            "one name per class with --classes."
        )
    batch = np.stack([load_image(path, size) for path in images])
    probabilities = model.predict(batch, verbose=0)
    if outputs == 1:  # one sigmoid unit: the probability of class 1
        probabilities = np.concatenate([1 - probabilities, probabilities], axis=1)
    rows = []
    for path, row in zip(images, probabilities, strict=True):
        best = int(np.argmax(row))
        rows.append(
            {
                "image": str(path),
                "class": names[best],
                "probability": round(float(row[best]), 6),
                "probabilities": {
                    name: round(float(p), 6) for name, p in zip(names, row, strict=True)
                },
            }
        )
    return rows


def write_preview(
    spec: ImageClassifierTrainingSpec, path: Path, images: int, variants: int
) -> Path:
    """One row per training image: the original, then `variants` augmented copies."""
    dataset = DataSource(spec, Reporter(json_lines=False)).fetch()
    size = resolve_defaults(spec).model.image_size
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
