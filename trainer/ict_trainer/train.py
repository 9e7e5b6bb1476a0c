"""One training run, from a validated spec to published artifacts."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ict_api.spec import ImageClassifierTrainingSpec, Strategy
from ict_trainer import artifacts, runtime
from ict_trainer.backbones import BACKBONES
from ict_trainer.data import load_dataset
from ict_trainer.errors import ModelError
from ict_trainer.features import FeatureCache, dataset_fingerprint
from ict_trainer.progress import Reporter
from ict_trainer.storage import is_s3, open_store
from ict_trainer.strategies import STRATEGIES, RunContext, predict_probabilities

log = logging.getLogger(__name__)

SCRATCH_IMAGE_SIZE = 150


def image_size_of(spec: ImageClassifierTrainingSpec) -> int:
    if spec.model.image_size:
        return spec.model.image_size
    if spec.strategy is Strategy.SCRATCH:
        return SCRATCH_IMAGE_SIZE
    return BACKBONES[spec.model.backbone].default_size


def cache_uri_of(spec: ImageClassifierTrainingSpec) -> str:
    if spec.cache.uri:
        return spec.cache.uri
    if is_s3(spec.output.uri):
        bucket = spec.output.uri.removeprefix("s3://").split("/", 1)[0]
        return f"s3://{bucket}/.ict-cache"
    return os.environ.get("ICT_CACHE_DIR") or str(Path.home() / ".cache" / "ict")


def local_weights(spec: ImageClassifierTrainingSpec) -> str:
    weights = spec.model.weights
    if weights in ("imagenet", "none") or spec.strategy is Strategy.SCRATCH:
        return weights
    if not Path(weights).is_file():
        raise ModelError(
            f"weights file {weights!r} does not exist. Fix model.weights (or --weights), or "
            "use 'imagenet' (needs internet) or 'none'."
        )
    return weights


def run_training(
    spec: ImageClassifierTrainingSpec, name: str = "local", reporter: Reporter | None = None
) -> dict:
    """Trains as the spec says and publishes the artifacts; returns the summary."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    image_size = image_size_of(spec)
    reporter.emit("start", name=name, strategy=spec.strategy.value, imageSize=image_size)
    dataset = load_dataset(
        Path(spec.dataset.uri), spec.dataset.validation_split, spec.training.seed
    )
    counts = dataset.counts()
    reporter.emit(
        "dataset",
        classes=dataset.class_names,
        counts=counts,
        skipped=[str(path) for path, _ in dataset.skipped],
    )
    weights = local_weights(spec)
    output = open_store(spec.output.uri, spec.storage)
    digest = artifacts.spec_digest(spec)
    artifacts.guard_output(output, digest, spec.output.overwrite)

    distribution = runtime.configure(spec.training.mixed_precision, spec.training.seed)
    cache = None
    if spec.cache.enabled and spec.strategy is not Strategy.SCRATCH:
        cache = FeatureCache(open_store(cache_uri_of(spec), spec.storage))
    ctx = RunContext(
        spec=spec,
        dataset=dataset,
        image_size=image_size,
        reporter=reporter,
        distribution=distribution,
        weights=weights,
        cache=cache,
        fingerprint=lambda: dataset_fingerprint(dataset),
    )
    result = STRATEGIES[spec.strategy](ctx)
    probabilities = predict_probabilities(result.model, ctx)
    labels = np.array([s.label for s in dataset.validation])
    result.durations["total"] = round(time.monotonic() - started, 3)
    history = result.history
    metrics = {
        "name": name,
        "strategy": spec.strategy.value,
        "backbone": None if spec.strategy is Strategy.SCRATCH else spec.model.backbone.value,
        "imageSize": image_size,
        "classNames": dataset.class_names,
        "counts": counts,
        "layout": dataset.layout,
        "validationSplit": dataset.validation_split,
        "skippedFiles": [{"path": str(p), "reason": why} for p, why in dataset.skipped],
        "history": history,
        "stages": [{"stage": stage, "firstEpoch": first} for stage, first in result.stage_starts],
        "final": {key: values[-1] for key, values in history.items()},
        "best": artifacts.best_epoch(history),
        "durations": result.durations,
        "cacheHit": result.cache_hit,
        "unfrozenLayers": result.unfrozen_layers,
        "seed": spec.training.seed,
        "specDigest": digest,
        "spec": spec.model_dump(mode="json", by_alias=True),
        "versions": artifacts.versions(),
    }
    with tempfile.TemporaryDirectory(prefix="ict-artifacts-") as staging:
        metrics = artifacts.write_artifacts(
            Path(staging),
            metrics,
            result,
            probabilities,
            labels,
            [s.path for s in dataset.validation],
        )
        output.put_dir(Path(staging), last=[artifacts.METRICS])
    names = (
        artifacts.MODEL,
        artifacts.WEIGHTS,
        artifacts.METRICS,
        artifacts.HISTORY,
        artifacts.CURVES,
        artifacts.CONFUSION,
        artifacts.REPORT,
    )
    summary = {
        "status": "succeeded",
        "final": metrics["final"],
        "best": metrics["best"],
        "accuracy": metrics["evaluation"]["accuracy"],
        "cacheHit": result.cache_hit,
        "seconds": result.durations["total"],
        "artifacts": {name: output.uri_of(name) for name in names},
    }
    reporter.emit("summary", **summary)
    return summary
