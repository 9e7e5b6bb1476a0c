"""What a finished run leaves in its output: model, weights, metrics, history, pictures, report.

Everything is written into a staging folder first, then published: an earlier metrics.json goes
first, the new files next, the new metrics.json last. An output with a metrics.json holds one
complete training; a kill while publishing leaves no metrics.json next to the checkpoints of the
run, and the next run of that spec resumes and publishes again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import platform
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ict_api.spec import ImageClassifierTrainingSpec, Strategy
from ict_trainer import __version__, evaluation, faults, report, selection
from ict_trainer.checkpoints import STATE
from ict_trainer.data import Dataset
from ict_trainer.errors import OutputError, StorageError
from ict_trainer.rerun import INPUTS
from ict_trainer.storage import UploadStats, is_s3
from ict_trainer.strategies import TrainResult

METRICS = "metrics.json"
MODEL = "model.keras"
WEIGHTS = "model.weights.h5"
HISTORY = "history.csv"
CURVES = "training-curves.png"
CONFUSION = "confusion-matrix.png"
REPORT = "index.html"
ALL = (MODEL, WEIGHTS, METRICS, HISTORY, CURVES, CONFUSION, REPORT)
# Fields that change what is trained; the rest (where it runs, where results go) do not.
RESULT_FIELDS = ("strategy", "dataset", "model", "training", "augmentation", "fine_tune")


def spec_digest(spec: ImageClassifierTrainingSpec) -> str:
    material = spec.model_dump(mode="json", by_alias=True, include=set(RESULT_FIELDS))
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


WRITE_PROBE = "checkpoints/.ict-write-probe"


def guard_output(store, digest: str, overwrite: bool) -> None:
    """Refuses an output that holds something else than this training, unless told, or that
    cannot be written (found now rather than after an hour of training)."""
    if is_s3(store.uri):
        store.put_bytes(WRITE_PROBE, b"")
        store.delete(WRITE_PROBE)
    if overwrite:
        return
    if store.exists(METRICS):
        found = _digest_in(store, METRICS)
        if found == digest:
            return
        raise OutputError(
            f"output {store.uri!r} already holds a different training (spec digest "
            f"{found!r}, this run {digest!r}). Choose another output, or pass --overwrite "
            "(output.overwrite: true) to replace it."
        )
    foreign = [o.key for o in store.list() if not o.key.startswith("checkpoints/")]
    if foreign and _digest_in(store, STATE) != digest:  # else: this spec's, half-published
        raise OutputError(
            f"output {store.uri!r} is not empty and holds no ict training ({len(foreign)} "
            f"file(s), e.g. {foreign[0]!r}). Choose an empty or new output, or pass "
            "--overwrite (output.overwrite: true)."
        )


def _digest_in(store, key: str) -> str | None:
    """The specDigest a metrics.json or checkpoint state records."""
    try:
        return json.loads(store.get_bytes(key)).get("specDigest")
    except (ValueError, AttributeError, StorageError):
        return None


def publish(store, staging: Path, metrics: dict) -> UploadStats:
    """Never a mix of two trainings: the old metrics.json goes before any new file is written,
    the new one after every other. A bucket keeps the objects that already hold a file's
    content (they are the new training's as much as the old's)."""
    store.delete(METRICS)
    faults.kill_point("publish:old-metrics-removed")
    stats = store.put_dir(staging)
    faults.kill_point("publish:before-metrics")
    store.put_bytes(METRICS, json.dumps(metrics, indent=2, default=str).encode())
    return stats


def run_summary(metrics: dict, store, seconds: float, up_to_date: bool) -> dict:
    """The summary line and termination message of a run, from the metrics.json it published
    (or, up_to_date, found in the output)."""
    return {
        "status": "succeeded",
        "upToDate": up_to_date,
        "final": metrics["final"],
        "best": metrics["best"],
        "saved": metrics["saved"],
        "keptHead": metrics["selection"].get("keptHead"),
        "accuracy": metrics["evaluation"]["accuracy"],
        "cacheHit": metrics["cacheHit"],
        "seconds": seconds,
        "artifacts": {name: store.uri_of(name) for name in ALL},
    }


def versions() -> dict[str, str]:
    return {
        "ict": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def run_metrics(
    name: str,
    spec: ImageClassifierTrainingSpec,
    digest: str,
    image_size: int,
    dataset: Dataset,
    result: TrainResult,
    inputs: dict[str, str],
) -> dict:
    """metrics.json's content, less the evaluation write_artifacts adds. inputs: what the
    weights were fitted on (see Checkpoints), which tells a re-run whether it is up to date."""
    history = result.history
    return {
        "name": name,
        "strategy": spec.strategy.value,
        "backbone": None if spec.strategy is Strategy.SCRATCH else spec.model.backbone.value,
        "imageSize": image_size,
        "classNames": dataset.class_names,
        "counts": dataset.counts(),
        "layout": dataset.layout,
        "validationSplit": dataset.validation_split,
        "skippedFiles": [{"path": str(p), "reason": why} for p, why in dataset.skipped],
        "ignoredFiles": dataset.ignored,
        "history": history,
        "stages": [{"stage": stage, "firstEpoch": first} for stage, first in result.stage_starts],
        **selection.selection_metrics(
            history,
            result.stage_starts,
            spec.training.early_stopping,
            result.saved,
            result.kept_head,
        ),
        "durations": result.durations,
        "cacheHit": result.cache_hit,
        "unfrozenLayers": result.unfrozen_layers,
        "seed": spec.training.seed,
        "specDigest": digest,
        INPUTS: inputs,
        "spec": spec.model_dump(mode="json", by_alias=True),
        "versions": versions(),
    }


def write_history_csv(path: Path, result: TrainResult) -> None:
    columns = sorted(result.history)
    epochs = len(result.history.get("loss", []))
    starts = sorted(result.stage_starts, key=lambda item: item[1])
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "stage", *columns])
        for index in range(epochs):
            stage = next(name for name, start in reversed(starts) if start <= index + 1)
            writer.writerow([index + 1, stage, *(result.history[c][index] for c in columns)])


def write_artifacts(
    staging: Path,
    metrics: dict,
    result: TrainResult,
    probabilities: np.ndarray,
    labels: np.ndarray,
    images: list[Path],
    fetch: Callable[[list[Path]], None] = lambda paths: None,
) -> dict:
    """Writes every artifact but metrics.json into staging and returns metrics.json's content."""
    result.model.save(staging / MODEL)
    result.model.save_weights(staging / WEIGHTS)
    write_history_csv(staging / HISTORY, result)
    class_names = metrics["classNames"]
    summary = evaluation.classification_summary(labels, probabilities, class_names)
    metrics["evaluation"] = summary
    report.plot_training_curves(
        result.history,
        staging / CURVES,
        [(stage, first - 1) for stage, first in result.stage_starts],
    )
    report.plot_confusion_matrix(summary["confusionMatrix"], class_names, staging / CONFUSION)
    worst = evaluation.worst_predictions(labels, probabilities)
    fetch([images[item["index"]] for item in worst])
    for item in worst:
        item["thumbnail"] = report.thumbnail(images[item["index"]])
        item["trueClass"] = class_names[item["trueIndex"]]
        item["predictedClass"] = class_names[item["predictedIndex"]]
        item["file"] = images[item["index"]].name
    report.write_html_report(
        staging / REPORT,
        metrics,
        {"curves": staging / CURVES, "confusion": staging / CONFUSION},
        worst,
    )
    metrics["worst"] = [{k: v for k, v in item.items() if k != "thumbnail"} for item in worst]
    return metrics
