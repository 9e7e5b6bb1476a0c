"""One training run, from a validated spec to published artifacts."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from ict_api.defaults import resolve_defaults
from ict_api.load import run_name_for
from ict_api.spec import ImageClassifierTrainingSpec, Strategy
from ict_trainer import artifacts, backbones, faults, rerun, runtime, scratch
from ict_trainer.checkpoints import Checkpoints
from ict_trainer.errors import ModelError
from ict_trainer.features import FeatureCache, fingerprint_digest
from ict_trainer.progress import Reporter
from ict_trainer.sources import DataSource, cache_root, check_locations, fetch_weights
from ict_trainer.storage import is_s3
from ict_trainer.stores import open_store
from ict_trainer.strategies import STRATEGIES, RunContext, validation_predictions
from ict_trainer.termination import write_termination_message

log = logging.getLogger(__name__)


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
    spec: ImageClassifierTrainingSpec, name: str | None = None, reporter: Reporter | None = None
) -> dict:
    """Trains as the spec says and publishes the artifacts; returns the summary.

    The spec's unset fields take their strategy's defaults first: what is trained, digested,
    cached and written to metrics.json is the resolved spec. A run without a name is named
    after its output folder. An output that already holds this training (same spec digest,
    dataset and weights) is not trained again unless output.overwrite: the summary then
    reports the training found there, with "upToDate": true.
    """
    spec = resolve_defaults(spec)
    name = name or run_name_for(spec.output.uri)
    reporter = reporter or Reporter()
    started = time.monotonic()
    image_size = spec.model.input_size  # the saved model's input: the largest of the sizes
    reporter.emit(
        "start",
        name=name,
        strategy=spec.strategy.value,
        imageSize=image_size,
        gpus=runtime.visible_gpus(),
    )
    # Everything that can be refused is checked before any training.
    cache_uri = (
        cache_uri_of(spec) if spec.cache.enabled and spec.strategy is not Strategy.SCRATCH else None
    )
    check_locations(spec.dataset.uri, spec.output.uri, cache_uri)
    source = DataSource(spec, reporter)
    reporter.emit(
        "dataset",
        classes=source.dataset.class_names,
        counts=source.dataset.counts(),
        skipped=[str(path) for path, _ in source.dataset.skipped],
        ignored=source.dataset.ignored,
    )
    weights = weights_of(spec)
    output = open_store(spec.output.uri, spec.storage)
    digest = artifacts.spec_digest(spec)
    artifacts.guard_output(output, digest, spec.output.overwrite)
    scratch.clear_stale()
    inputs = {
        "dataset": fingerprint_digest(source.fingerprint()),
        "weights": backbones.weights_digest(weights),
    }
    if not spec.output.overwrite:
        found = rerun.finished_training(output, artifacts.METRICS, artifacts.ALL, digest, inputs)
        if found is not None:
            reporter.emit("upToDate", message=rerun.up_to_date_message(output.uri, digest))
            seconds = round(time.monotonic() - started, 3)
            return _finish(reporter, artifacts.run_summary(found, output, seconds, True))
    checkpoints = Checkpoints(output, digest, inputs)
    try:
        resumed = checkpoints.load(spec.output.overwrite)
        if resumed:
            done = {stage: state["epoch"] for stage, state in resumed.items()}
            log.info("resuming from %s: epochs done %s", output.uri_of("checkpoints"), done)
        cache = FeatureCache(open_store(cache_uri, spec.storage)) if cache_uri else None
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
        metrics = artifacts.run_metrics(
            name, spec, digest, image_size, source.dataset, result, inputs
        )
        metrics["resumed"] = {stage: state["epoch"] for stage, state in resumed.items()}
        with scratch.scratch_dir("artifacts") as staging:
            metrics = artifacts.write_artifacts(
                staging, metrics, result, *validation, source.fetch_files
            )
            uploaded = artifacts.publish(output, staging, metrics)
        reporter.emit("publish", uri=output.uri, **asdict(uploaded))
        faults.kill_point("publish:before-clear")
        checkpoints.clear()  # the artifacts are complete: nothing is left to resume
    finally:
        checkpoints.close()
    return _finish(
        reporter, artifacts.run_summary(metrics, output, result.durations["total"], False)
    )


def _finish(reporter: Reporter, summary: dict) -> dict:
    reporter.emit("summary", **summary)
    write_termination_message(summary)
    return summary
