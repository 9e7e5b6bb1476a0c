"""One training run, from a validated spec to published artifacts."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from ict_api.spec import ImageClassifierTrainingSpec, Strategy
from ict_trainer import artifacts, runtime
from ict_trainer.backbones import BACKBONES
from ict_trainer.checkpoints import Checkpoints
from ict_trainer.errors import ModelError
from ict_trainer.features import FeatureCache
from ict_trainer.progress import Reporter
from ict_trainer.sources import DataSource, cache_root, fetch_weights
from ict_trainer.storage import is_s3, open_store
from ict_trainer.strategies import STRATEGIES, RunContext, validation_predictions
from ict_trainer.termination import write_termination_message

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
    return str(cache_root())


def weights_of(spec: ImageClassifierTrainingSpec) -> str:
    """The backbone's weights as 'imagenet', 'none' or a local file (fetched if remote)."""
    if spec.strategy is Strategy.SCRATCH:
        return "none"
    weights = fetch_weights(spec)
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
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
    reporter.emit(
        "start",
        name=name,
        strategy=spec.strategy.value,
        imageSize=image_size,
        gpus=runtime.visible_gpus(),
    )
    # Everything that can be refused is checked before any training.
    source = DataSource(spec, reporter)
    reporter.emit(
        "dataset",
        classes=source.dataset.class_names,
        counts=source.dataset.counts(),
        skipped=[str(path) for path, _ in source.dataset.skipped],
    )
    weights = weights_of(spec)
    output = open_store(spec.output.uri, spec.storage)
    digest = artifacts.spec_digest(spec)
    artifacts.guard_output(output, digest, spec.output.overwrite)
    checkpoints = Checkpoints(output, digest)
    try:
        resumed = checkpoints.load(spec.output.overwrite)
        if resumed:
            done = {stage: state["epoch"] for stage, state in resumed.items()}
            log.info("resuming from %s: epochs done %s", output.uri_of("checkpoints"), done)
        cache = None
        if spec.cache.enabled and spec.strategy is not Strategy.SCRATCH:
            cache = FeatureCache(open_store(cache_uri_of(spec), spec.storage))
        ctx = RunContext(
            spec=spec,
            source=source,
            image_size=image_size,
            reporter=reporter,
            distribution=runtime.configure(spec.training.mixed_precision, spec.training.seed),
            weights=weights,
            cache=cache,
            checkpoints=checkpoints,
        )
        result = STRATEGIES[spec.strategy](ctx)
        validation = validation_predictions(ctx, result)
        result.durations["total"] = round(time.monotonic() - started, 3)
        metrics = artifacts.run_metrics(name, spec, digest, image_size, source.dataset, result)
        metrics["resumed"] = {stage: state["epoch"] for stage, state in resumed.items()}
        with tempfile.TemporaryDirectory(prefix="ict-artifacts-") as staging:
            metrics = artifacts.write_artifacts(
                Path(staging), metrics, result, *validation, source.fetch_files
            )
            output.put_dir(Path(staging), last=[artifacts.METRICS])
        checkpoints.clear()  # the artifacts are complete: nothing is left to resume
    finally:
        checkpoints.close()
    summary = {
        "status": "succeeded",
        "final": metrics["final"],
        "best": metrics["best"],
        "accuracy": metrics["evaluation"]["accuracy"],
        "cacheHit": result.cache_hit,
        "seconds": result.durations["total"],
        "artifacts": {name: output.uri_of(name) for name in artifacts.ALL},
    }
    reporter.emit("summary", **summary)
    write_termination_message(summary)
    return summary
